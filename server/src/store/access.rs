//! Access tracking for eviction: each entry's 32-bit `access` word, read and written as Redis
//! does with its 24-bit `lru` field.
//!
//! - LRU policies: the word is the last access time in unix milliseconds, truncated to 32 bits
//!   (it wraps every 49.7 days; an idle time is the wrapping difference, so a key idle longer
//!   than that looks recent, as Redis's 24-bit seconds clock wraps after 194 days). Redis keeps
//!   seconds; milliseconds let LRU tell apart keys touched within the same second.
//! - LFU policies: `minutes (16 bits) << 8 | counter (8 bits)`, Redis's layout: a logarithmic
//!   counter (`lfu-log-factor`) that starts at 5 and halves its growth probability as it rises,
//!   and loses one per `lfu-decay-time` minutes without access.
//!
//! Only the replica that serves a read touches its word; writes touch it in `apply` with the
//! entry's clock. The word is never read by `apply`, so it is not replicated state: a new leader
//! starts from its own words (see ARCHITECTURE.md).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::entry::UnixMillis;

/// Redis's `LFU_INIT_VAL`: a new key is not evicted before it has had a chance to be used.
pub const LFU_INIT_VAL: u8 = 5;

/// How a node tracks accesses; changed live by `CONFIG SET maxmemory-policy` and the LFU knobs.
#[derive(Debug)]
pub struct Tracking {
    lfu: AtomicBool,
    log_factor: AtomicU32,
    decay_minutes: AtomicU32,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            lfu: AtomicBool::new(false),
            log_factor: AtomicU32::new(10),
            decay_minutes: AtomicU32::new(1),
        }
    }
}

impl Tracking {
    pub fn set(&self, lfu: bool, log_factor: u32, decay_minutes: u32) {
        self.lfu.store(lfu, Ordering::Relaxed);
        self.log_factor.store(log_factor, Ordering::Relaxed);
        self.decay_minutes.store(decay_minutes, Ordering::Relaxed);
    }

    pub fn is_lfu(&self) -> bool {
        self.lfu.load(Ordering::Relaxed)
    }

    /// The word of a key created at `now`.
    pub fn initial(&self, now: UnixMillis) -> u32 {
        if self.is_lfu() {
            lfu_word(now, LFU_INIT_VAL)
        } else {
            lru_clock(now)
        }
    }

    /// The word after an access at `now`.
    pub fn touched(&self, word: u32, now: UnixMillis) -> u32 {
        if !self.is_lfu() {
            return lru_clock(now);
        }
        let counter = self.lfu_counter(word, now);
        let log_factor = self.log_factor.load(Ordering::Relaxed);
        lfu_word(
            now,
            lfu_log_incr(counter, log_factor, rand::random::<f64>()),
        )
    }

    /// The word `RESTORE ... IDLETIME | FREQ` gives a key at `now` (Redis's
    /// `objectSetLRUOrLFU`): `freq` counts under LFU, `idle_ms` under LRU; `None` if the one
    /// that counts was not given.
    pub fn restored(&self, now: UnixMillis, idle_ms: Option<u64>, freq: Option<u8>) -> Option<u32> {
        if self.is_lfu() {
            freq.map(|f| lfu_word(now, f))
        } else {
            idle_ms.map(|idle| lru_clock(now.saturating_sub(idle)))
        }
    }

    /// The LFU counter after decay (`OBJECT FREQ`, Redis's `LFUDecrAndReturn`).
    pub fn lfu_counter(&self, word: u32, now: UnixMillis) -> u8 {
        let decay = self.decay_minutes.load(Ordering::Relaxed);
        lfu_decayed(word, now, decay)
    }

    /// The eviction score of a word at `now` for the pool: higher is a better victim.
    pub fn idle_score(&self, word: u32, now: UnixMillis) -> u64 {
        if self.is_lfu() {
            255 - self.lfu_counter(word, now) as u64
        } else {
            lru_idle_ms(word, now)
        }
    }
}

pub fn lru_clock(now: UnixMillis) -> u32 {
    now as u32
}

/// Milliseconds since the access recorded in an LRU word.
pub fn lru_idle_ms(word: u32, now: UnixMillis) -> u64 {
    lru_clock(now).wrapping_sub(word) as u64
}

fn minutes(now: UnixMillis) -> u16 {
    (now / 60_000) as u16
}

fn lfu_word(now: UnixMillis, counter: u8) -> u32 {
    (minutes(now) as u32) << 8 | counter as u32
}

/// Redis's `LFUDecrAndReturn`: one off the counter per `decay` minutes since the last access.
pub fn lfu_decayed(word: u32, now: UnixMillis, decay: u32) -> u8 {
    let counter = (word & 0xff) as u8;
    if decay == 0 {
        return counter;
    }
    let last = (word >> 8) as u16;
    let elapsed = minutes(now).wrapping_sub(last) as u32;
    counter.saturating_sub((elapsed / decay).min(255) as u8)
}

/// Redis's `LFULogIncr`: increments with probability `1 / ((counter - 5) * log_factor + 1)`;
/// `draw` is uniform in [0, 1).
pub fn lfu_log_incr(counter: u8, log_factor: u32, draw: f64) -> u8 {
    if counter == 255 {
        return 255;
    }
    let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
    let p = 1.0 / (base * log_factor as f64 + 1.0);
    if draw < p {
        counter + 1
    } else {
        counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        // At factor 10 Redis's table: ~100 hits take the counter to about 10, 1000 to ~18.
        let mut c = LFU_INIT_VAL;
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..1000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            c = lfu_log_incr(c, 10, (seed >> 11) as f64 / (1u64 << 53) as f64);
        }
        assert!((12..=24).contains(&c), "counter after 1000 hits: {c}");
        let word = lfu_word(0, c);
        assert_eq!(lfu_decayed(word, 0, 1), c);
        assert_eq!(lfu_decayed(word, 3 * 60_000, 1), c - 3);
        assert_eq!(lfu_decayed(word, 3 * 60_000, 0), c);
        assert_eq!(lfu_decayed(word, 1000 * 60_000, 1), 0);
    }

    #[test]
    fn lru_idle_is_the_wrapping_distance() {
        let t = Tracking::default();
        let w = t.initial(5_000);
        assert_eq!(t.idle_score(w, 7_500), 2_500);
        let near_wrap = (u32::MAX as u64) - 10;
        assert_eq!(lru_idle_ms(lru_clock(near_wrap), near_wrap + 20), 20);
        t.set(true, 10, 1);
        assert_eq!(t.lfu_counter(t.initial(0), 0), LFU_INIT_VAL);
        assert_eq!(t.idle_score(t.initial(0), 0), 250);
    }
}
