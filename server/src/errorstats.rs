//! Error replies counted by kind (the error's first word: `ERR`, `WRONGTYPE`, `MOVED`,
//! `TRYAGAIN`, ...), for `INFO errorstats` and the metrics endpoint.
//!
//! Only error replies reach the lock, so the common path costs nothing. As in Redis, at most
//! [`MAX_KINDS`] kinds are tracked; later new kinds are counted under `other`.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use shoal_protocol::Frame;

const MAX_KINDS: usize = 128;

#[derive(Default)]
pub struct ErrorStats {
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl ErrorStats {
    /// Counts `reply` if it is an error.
    pub fn record(&self, reply: &Frame) {
        let kind = match reply {
            Frame::Error(text) => kind_of(text.as_bytes()),
            Frame::BulkError(text) => kind_of(text),
            _ => return,
        };
        let mut kinds = self.kinds.lock();
        let key = if kinds.len() >= MAX_KINDS && !kinds.contains_key(&kind) {
            "other".to_owned()
        } else {
            kind
        };
        *kinds.entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.kinds
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn reset(&self) {
        self.kinds.lock().clear();
    }
}

fn kind_of(text: &[u8]) -> String {
    let word = text.split(|&b| b == b' ').next().unwrap_or_default();
    let word = &word[..word.len().min(64)];
    String::from_utf8_lossy(word).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_their_first_word() {
        let stats = ErrorStats::default();
        stats.record(&Frame::error("ERR syntax error"));
        stats.record(&Frame::error("ERR wrong number of arguments"));
        stats.record(&Frame::error("MOVED 12 127.0.0.1:7002"));
        stats.record(&Frame::ok());
        assert_eq!(
            stats.snapshot(),
            vec![("ERR".to_owned(), 2), ("MOVED".to_owned(), 1)]
        );
    }
}
