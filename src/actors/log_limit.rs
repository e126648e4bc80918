//! Rate limits for log lines a remote peer can make us repeat at will (a warning per update it
//! sends): one line per kind per interval, with the count of those held back in the next.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most one line per kind this often: a minute, so that a hostile peer cannot flood the log
/// while an operator still sees within a minute that it goes on.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct LogLimiter {
    /// Per kind: when a line was last written, and how many were held back since.
    kinds: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    /// `Some(held_back)` when a line of `kind` may be written now, with the number held back
    /// since the last one; `None` when it must be held back.
    pub fn admit(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            Some((last, held_back)) if now.saturating_duration_since(*last) < LOG_INTERVAL => {
                *held_back += 1;
                None
            }
            Some((last, held_back)) => {
                *last = now;
                Some(std::mem::take(held_back))
            }
            None => {
                self.kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_counting_the_rest() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::default();
        assert_eq!(limiter.admit("a", t0), Some(0));
        assert_eq!(limiter.admit("b", t0), Some(0), "kinds are separate");
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(2)), None);
        assert_eq!(limiter.admit("a", t0 + LOG_INTERVAL), Some(2));
        assert_eq!(limiter.admit("a", t0 + LOG_INTERVAL), None);
    }
}
