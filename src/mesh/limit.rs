//! The connection limit (`--conn-limit`) as a component of its own: a permit per link, taken
//! before any work is done for it (inbound: before the handshake; outbound: before dialling), and
//! given back when the link actor goes away, whatever the reason.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limit used for `--conn-limit 0` (unlimited): effectively no limit, but still a semaphore so
/// that the code path is the same.
const UNLIMITED: usize = Semaphore::MAX_PERMITS;

/// Share of the limit that discovery may not fill, kept for peers that dial us because an
/// operator or a refusal told them to: one fifth of the limit (6 of the default 30), at least one.
/// Without it, the first `limit + 1` peers of a larger mesh form a full clique through discovery
/// and every later peer is refused by all of them (Weave Net's stranded newcomers).
const RESERVE_DIVISOR: u32 = 5;

/// How many links discovery may fill at most, `None` when unlimited.
pub fn discovery_ceiling(limit: u32) -> Option<usize> {
    if limit == 0 {
        return None;
    }
    let reserve = (limit / RESERVE_DIVISOR).max(1);
    Some(limit.saturating_sub(reserve) as usize)
}

#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    limit: u32,
    permits: Arc<Semaphore>,
}

impl ConnectionLimiter {
    /// `limit == 0` means unlimited, as in Weave Net.
    pub fn new(limit: u32) -> Self {
        let permits = if limit == 0 {
            UNLIMITED
        } else {
            limit as usize
        };
        Self {
            limit,
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// A permit for one more link, or `None` when the limit is reached.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Permits discovery may still take: what is left below its ceiling.
    pub fn available_to_discovery(&self) -> usize {
        match discovery_ceiling(self.limit) {
            None => self.available(),
            Some(ceiling) => {
                let in_use = self.limit as usize - self.available();
                ceiling.saturating_sub(in_use)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_limited_and_returned_on_drop() {
        let limiter = ConnectionLimiter::new(2);
        let first = limiter.try_acquire().expect("first link");
        let _second = limiter.try_acquire().expect("second link");
        assert!(
            limiter.try_acquire().is_none(),
            "third link is over the limit"
        );
        drop(first);
        assert!(
            limiter.try_acquire().is_some(),
            "a freed permit is reusable"
        );
    }

    #[test]
    fn discovery_leaves_a_reserve() {
        assert_eq!(discovery_ceiling(30), Some(24));
        assert_eq!(discovery_ceiling(2), Some(1));
        assert_eq!(discovery_ceiling(1), Some(0));
        assert_eq!(discovery_ceiling(0), None);
        let limiter = ConnectionLimiter::new(10);
        let held: Vec<_> = (0..7).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(held.len(), 7);
        assert_eq!(limiter.available(), 3);
        assert_eq!(limiter.available_to_discovery(), 1, "ceiling 8, 7 in use");
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = ConnectionLimiter::new(0);
        let held: Vec<_> = (0..1000).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(held.len(), 1000);
    }
}
