//! Handshakes under way on accepted sockets, bounded apart from the connection limit. A socket
//! that has not finished its handshake has proved nothing, so it must not hold one of the
//! `--conn-limit` places real peers need: with one permit taken at accept, about thirty silent
//! sockets kept every real peer out. Bounded in total and per source, so that one host cannot
//! take every pending place either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Handshakes that may be under way at once: twice the default `--conn-limit` (30), rounded up,
/// so that a whole mesh restarting and dialling us at once still gets in. Each costs one socket
/// and a buffer of at most `MAX_HELLO_BYTES`.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// Handshakes one source may have under way at once. A peer dials us once per target; a restart
/// racing its old incarnation's link, or a simultaneous connect, makes two; four leaves room.
pub const MAX_PENDING_PER_SOURCE: usize = 4;
/// Length of the IPv6 prefix counted as one source: a host is usually given a whole /64, so
/// counting single addresses would bound nothing.
const IPV6_SOURCE_PREFIX_BITS: u32 = 64;

/// Which bound turned a socket away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PendingFull {
    #[error("{limit} handshakes already under way")]
    Total { limit: usize },
    #[error("{limit} handshakes from that source already under way")]
    Source { limit: usize },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The pending-handshake places; clones share them.
#[derive(Clone, Debug)]
pub struct PendingHandshakes {
    counts: Arc<Mutex<Counts>>,
    total_limit: usize,
    per_source_limit: usize,
}

/// One place, given back when dropped (the handshake ended, whatever the outcome).
#[derive(Debug)]
pub struct PendingPermit {
    counts: Arc<Mutex<Counts>>,
    source: IpAddr,
}

impl Default for PendingHandshakes {
    fn default() -> Self {
        Self::new(MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_SOURCE)
    }
}

impl PendingHandshakes {
    pub fn new(total_limit: usize, per_source_limit: usize) -> Self {
        Self {
            counts: Arc::default(),
            total_limit,
            per_source_limit,
        }
    }

    /// A place for a handshake with a socket from `addr`, unless a bound is reached.
    pub fn try_acquire(&self, addr: IpAddr) -> Result<PendingPermit, PendingFull> {
        let source = source_of(addr);
        let mut counts = lock(&self.counts);
        if counts.total >= self.total_limit {
            return Err(PendingFull::Total {
                limit: self.total_limit,
            });
        }
        let from_source = counts.by_source.entry(source).or_default();
        if *from_source >= self.per_source_limit {
            return Err(PendingFull::Source {
                limit: self.per_source_limit,
            });
        }
        *from_source += 1;
        counts.total += 1;
        Ok(PendingPermit {
            counts: self.counts.clone(),
            source,
        })
    }

    pub fn pending(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total -= 1;
        if let Some(count) = counts.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

/// The counts stay consistent whatever panicked while holding the lock: every update is a
/// single step.
fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What counts as one source: the IPv4 address (IPv4-mapped IPv6 included), or the /64 of an
/// IPv6 address.
fn source_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - IPV6_SOURCE_PREFIX_BITS);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let pending = PendingHandshakes::new(10, 2);
        let _a = pending.try_acquire(v4(1)).unwrap();
        let _b = pending.try_acquire(v4(1)).unwrap();
        assert_eq!(
            pending.try_acquire(v4(1)).unwrap_err(),
            PendingFull::Source { limit: 2 }
        );
        assert!(
            pending.try_acquire(v4(2)).is_ok(),
            "other sources still get in"
        );
    }

    #[test]
    fn the_total_is_bounded_and_places_come_back_on_drop() {
        let pending = PendingHandshakes::new(3, 2);
        let held: Vec<_> = (1..=3)
            .map(|i| pending.try_acquire(v4(i)).unwrap())
            .collect();
        assert_eq!(
            pending.try_acquire(v4(9)).unwrap_err(),
            PendingFull::Total { limit: 3 }
        );
        drop(held);
        assert_eq!(pending.pending(), 0);
        let _again: Vec<_> = (0..2)
            .map(|_| pending.try_acquire(v4(9)).unwrap())
            .collect();
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source_and_mapped_ipv4_is_ipv4() {
        let pending = PendingHandshakes::new(10, 1);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let _held = pending.try_acquire(one).unwrap();
        assert!(pending.try_acquire(same_64).is_err());
        assert!(
            pending
                .try_acquire("2001:db8:1:3::1".parse().unwrap())
                .is_ok()
        );
        let _v4 = pending.try_acquire(v4(7)).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert!(pending.try_acquire(mapped).is_err());
    }
}
