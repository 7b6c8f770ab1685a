//! A per-node circuit breaker, so a dead node costs one fast failure rather than a connect or
//! response timeout per request.
//!
//! Closed: requests pass; `threshold` consecutive failures open it. Open: requests fail at once
//! with [`crate::Error::CircuitOpen`] for `open_for`. Then half-open: one request (or the
//! background probe) is let through; its success closes the breaker, its failure opens it again.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What a breaker lets through, as callers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests fail fast.
    Open,
    /// One probe is let through; the others fail fast until it tells.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
}

/// What a recorded failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// The breaker was closed (or half-open) and is open now.
    Opened,
    No,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
        }
    }

    /// True if a request may go to the node now. When the open period is over, the first
    /// caller becomes the half-open probe; a probe that never reports back (its caller gave up)
    /// is replaced after another `open_for`.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now < until => false,
            State::HalfOpen { probe_started } if now < probe_started + self.open_for => false,
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { probe_started: now };
                true
            }
        }
    }

    pub fn record_success(&self) {
        let mut state = self.state.lock();
        if !matches!(*state, State::Closed { failures: 0 }) {
            *state = State::Closed { failures: 0 };
        }
    }

    pub fn record_failure(&self) -> Tripped {
        let mut state = self.state.lock();
        let open = State::Open {
            until: Instant::now() + self.open_for,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.threshold => {
                *state = open;
                Tripped::Opened
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                Tripped::No
            }
            State::HalfOpen { .. } => {
                *state = open;
                Tripped::Opened
            }
            State::Open { .. } => Tripped::No,
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(30));
        assert_eq!(b.record_failure(), Tripped::No);
        b.record_success();
        assert_eq!(b.record_failure(), Tripped::No);
        assert_eq!(b.record_failure(), Tripped::No);
        assert_eq!(b.record_failure(), Tripped::Opened);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "the first caller after the open period probes");
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(b.record_failure(), Tripped::Opened);
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }
}
