//! `client-output-buffer-limit`: how much reply data may wait for a client that does not read
//! it before the client is disconnected, instead of the server's memory growing.
//!
//! Redis's syntax and defaults: per class (`normal`, `replica`/`slave`, `pubsub`) a hard limit
//! (bytes; reached: disconnect at once), a soft limit and seconds (disconnect once pending
//! output has stayed at or above the soft limit for longer than that); 0 turns a limit off.
//! `replica` is accepted and shown but unused (shoal has no Redis replicas).

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::parse_memory;

/// One class's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClassLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_secs: u64,
}

/// Which limits apply to a client: a subscribed client is `pubsub`, every other `normal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Normal,
    Replica,
    Pubsub,
}

impl Class {
    /// The class's name in logs and `CONFIG`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Normal => "normal",
            Class::Replica => "replica",
            Class::Pubsub => "pubsub",
        }
    }
}

/// Every class's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimits {
    pub normal: ClassLimit,
    pub replica: ClassLimit,
    pub pubsub: ClassLimit,
}

impl Default for OutputLimits {
    /// Redis 7's: `normal 0 0 0 replica 256mb 64mb 60 pubsub 32mb 8mb 60`.
    fn default() -> Self {
        OutputLimits {
            normal: ClassLimit::default(),
            replica: ClassLimit {
                hard: 256 << 20,
                soft: 64 << 20,
                soft_secs: 60,
            },
            pubsub: ClassLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_secs: 60,
            },
        }
    }
}

impl OutputLimits {
    pub fn of(&self, class: Class) -> ClassLimit {
        match class {
            Class::Normal => self.normal,
            Class::Replica => self.replica,
            Class::Pubsub => self.pubsub,
        }
    }

    /// These limits changed by `words`: groups of `<class> <hard> <soft> <soft seconds>` (a
    /// config line or `CONFIG SET` value); all or nothing, with Redis's error texts.
    pub fn with(&self, words: &[impl AsRef<str>]) -> Result<OutputLimits, String> {
        if words.is_empty() || !words.len().is_multiple_of(4) {
            return Err("Wrong number of arguments in buffer limit configuration.".into());
        }
        let mut next = *self;
        for group in words.chunks_exact(4) {
            let slot = match group[0].as_ref().to_ascii_lowercase().as_str() {
                "normal" => &mut next.normal,
                "replica" | "slave" => &mut next.replica,
                "pubsub" => &mut next.pubsub,
                _ => {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    )
                }
            };
            let bad =
                |_| "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
            *slot = ClassLimit {
                hard: parse_memory(group[1].as_ref()).map_err(bad)?,
                soft: parse_memory(group[2].as_ref()).map_err(bad)?,
                soft_secs: group[3].as_ref().parse().map_err(|_| bad(String::new()))?,
            };
        }
        Ok(next)
    }
}

/// As `CONFIG GET` shows them (Redis 7 names the replica class `slave` there).
impl fmt::Display for OutputLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classes = [
            ("normal", self.normal),
            ("slave", self.replica),
            ("pubsub", self.pubsub),
        ];
        for (i, (name, l)) in classes.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name} {} {} {}", l.hard, l.soft, l.soft_secs)?;
        }
        Ok(())
    }
}

/// Which limit a client passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Hard,
    Soft,
}

/// One connection's soft-limit clock: since when its pending output has been at or above the
/// soft limit.
#[derive(Debug, Default)]
pub struct Watch {
    soft_since: Option<Instant>,
}

impl Watch {
    /// Checks `pending` output bytes at `now` against `limit` (Redis's
    /// `checkClientOutputBufferLimits`).
    pub fn check(&mut self, limit: ClassLimit, pending: u64, now: Instant) -> Option<Exceeded> {
        if limit.hard > 0 && pending >= limit.hard {
            return Some(Exceeded::Hard);
        }
        if limit.soft == 0 || pending < limit.soft {
            self.soft_since = None;
            return None;
        }
        let since = *self.soft_since.get_or_insert(now);
        (now.saturating_duration_since(since) > Duration::from_secs(limit.soft_secs))
            .then_some(Exceeded::Soft)
    }

    /// When the soft limit will have been passed for too long if output stays pending.
    pub fn soft_deadline(&self, limit: ClassLimit) -> Option<Instant> {
        let since = self.soft_since?;
        Some(since + Duration::from_secs(limit.soft_secs) + Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_syntax_defaults_and_errors() {
        let d = OutputLimits::default();
        assert_eq!(
            d.to_string(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
        let l = d
            .with(&["pubsub", "1mb", "512kb", "5", "NORMAL", "10mb", "0", "0"])
            .unwrap();
        assert_eq!(
            l.pubsub,
            ClassLimit {
                hard: 1 << 20,
                soft: 512 << 10,
                soft_secs: 5
            }
        );
        assert_eq!(l.normal.hard, 10 << 20);
        assert_eq!(l.replica, d.replica);
        assert_eq!(d.with(&["replica", "1", "1", "1"]).unwrap().replica.hard, 1);
        assert!(d.with(&["pubsub", "1mb", "1mb"]).is_err());
        assert!(d.with(&["master", "1", "1", "1"]).is_err());
        assert!(d.with(&["normal", "x", "1", "1"]).is_err());
        // What CONFIG GET shows reads back as the same limits.
        let shown = d.to_string();
        let words: Vec<&str> = shown.split(' ').collect();
        assert_eq!(d.with(&words), Ok(d));
    }

    #[test]
    fn hard_at_once_soft_after_its_seconds_and_reset_below() {
        let limit = ClassLimit {
            hard: 100,
            soft: 10,
            soft_secs: 2,
        };
        let t0 = Instant::now();
        let mut w = Watch::default();
        assert_eq!(w.check(limit, 100, t0), Some(Exceeded::Hard));
        assert_eq!(w.check(limit, 9, t0), None);
        assert_eq!(w.check(limit, 10, t0), None);
        assert_eq!(w.check(limit, 50, t0 + Duration::from_secs(2)), None);
        assert_eq!(
            w.check(limit, 50, t0 + Duration::from_millis(2001)),
            Some(Exceeded::Soft)
        );
        // Dropping below the soft limit restarts its clock.
        assert_eq!(w.check(limit, 1, t0 + Duration::from_secs(3)), None);
        assert_eq!(w.check(limit, 50, t0 + Duration::from_secs(4)), None);
        assert!(w.soft_deadline(limit).is_some());
        let off = ClassLimit::default();
        assert_eq!(Watch::default().check(off, u64::MAX, t0), None);
    }
}
