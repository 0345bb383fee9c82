//! The process-wide budget of retries after a connection reset.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Retries of idempotent requests after a connection reset, bounded so that a failing upstream
/// is not hit twice as hard: at most `max` per `window`, process-wide.
pub struct RetryBudget {
    window: Duration,
    max: u32,
    state: Mutex<(Instant, u32)>,
}

impl RetryBudget {
    pub fn new(window: Duration, max: u32) -> RetryBudget {
        RetryBudget {
            window,
            max,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_take(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.0.elapsed() >= self.window {
            *state = (Instant::now(), 0);
        }
        if state.1 < self.max {
            state.1 += 1;
            true
        } else {
            false
        }
    }
}
