//! The connection limit (`--conn-limit`) as a component of its own: a permit per link, taken
//! before any work is done for it (inbound: before the handshake; outbound: before dialling), and
//! given back when the link actor goes away, whatever the reason.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limit used for `--conn-limit 0` (unlimited): effectively no limit, but still a semaphore so
/// that the code path is the same.
const UNLIMITED: usize = Semaphore::MAX_PERMITS;

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
    fn zero_means_unlimited() {
        let limiter = ConnectionLimiter::new(0);
        let held: Vec<_> = (0..1000).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(held.len(), 1000);
    }
}
