//! What to change in the VXLAN flood list: the pure part of the reconciliation.
//!
//! A peer whose link went away keeps its entry for [`FLOOD_GRACE`]: the kernel carries pod
//! traffic without the router, so a router that restarts (or a control link that blips) must not
//! cut the pods' connections; only a peer gone for good is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long a flood entry outlives the link to its peer. Weave Net's fastdp tolerated 60 s of
/// missed heartbeats before giving a path up; a router restart takes a few seconds.
pub const FLOOD_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct FloodPlan {
    pub add: Vec<Ipv4Addr>,
    pub remove: Vec<Ipv4Addr>,
}

/// Remembers since when each programmed peer has been without a link.
#[derive(Debug, Default)]
pub struct FloodTracker {
    absent_since: BTreeMap<Ipv4Addr, Instant>,
}

impl FloodTracker {
    /// The flood targets to add and remove, given what the kernel has (`present`) and one target
    /// per established direct peer (`wanted`).
    pub fn plan(
        &mut self,
        present: &BTreeSet<Ipv4Addr>,
        wanted: &BTreeSet<Ipv4Addr>,
        now: Instant,
    ) -> FloodPlan {
        self.plan_with_fallbacks(present, wanted, &BTreeSet::new(), now)
    }

    /// [`Self::plan`], where `fallen_back` are peers whose link is up but whose fastdp path
    /// failed: their entries go at once (no grace: the path is known broken, and the sleeve
    /// carries their frames now).
    pub fn plan_with_fallbacks(
        &mut self,
        present: &BTreeSet<Ipv4Addr>,
        wanted: &BTreeSet<Ipv4Addr>,
        fallen_back: &BTreeSet<Ipv4Addr>,
        now: Instant,
    ) -> FloodPlan {
        self.absent_since
            .retain(|remote, _| present.contains(remote));
        let mut remove = Vec::new();
        for remote in present.difference(wanted) {
            let since = *self.absent_since.entry(*remote).or_insert(now);
            if fallen_back.contains(remote) || now.saturating_duration_since(since) >= FLOOD_GRACE {
                remove.push(*remote);
            }
        }
        for remote in wanted {
            self.absent_since.remove(remote);
        }
        for remote in &remove {
            self.absent_since.remove(remote);
        }
        FloodPlan {
            add: wanted.difference(present).copied().collect(),
            remove,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ips: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
        ips.iter().map(|ip| Ipv4Addr::from(*ip)).collect()
    }

    #[test]
    fn new_peers_are_added_at_once_and_gone_ones_removed_after_the_grace() {
        let t0 = Instant::now();
        let mut tracker = FloodTracker::default();
        let present = set(&[[192, 0, 2, 1], [192, 0, 2, 2]]);
        let wanted = set(&[[192, 0, 2, 2], [192, 0, 2, 3]]);
        let plan = tracker.plan(&present, &wanted, t0);
        assert_eq!(plan.add, vec![Ipv4Addr::new(192, 0, 2, 3)]);
        assert!(
            plan.remove.is_empty(),
            "a peer that just lost its link keeps its entry"
        );
        let later = tracker.plan(&present, &wanted, t0 + FLOOD_GRACE);
        assert_eq!(later.remove, vec![Ipv4Addr::new(192, 0, 2, 1)]);
    }

    #[test]
    fn a_peer_that_fell_back_is_removed_at_once() {
        let t0 = Instant::now();
        let mut tracker = FloodTracker::default();
        let present = set(&[[192, 0, 2, 1], [192, 0, 2, 2]]);
        let plan = tracker.plan_with_fallbacks(&present, &set(&[]), &set(&[[192, 0, 2, 1]]), t0);
        assert_eq!(plan.remove, vec![Ipv4Addr::new(192, 0, 2, 1)]);
    }

    #[test]
    fn a_peer_that_comes_back_in_time_is_never_removed() {
        let t0 = Instant::now();
        let mut tracker = FloodTracker::default();
        let present = set(&[[192, 0, 2, 1]]);
        assert!(tracker.plan(&present, &set(&[]), t0).remove.is_empty());
        assert_eq!(
            tracker.plan(&present, &present, t0 + FLOOD_GRACE / 2),
            FloodPlan::default()
        );
        // Its absence clock starts again from zero.
        let plan = tracker.plan(&present, &set(&[]), t0 + FLOOD_GRACE);
        assert!(plan.remove.is_empty());
    }
}
