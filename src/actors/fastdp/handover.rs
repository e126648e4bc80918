//! The hand-over of a peer between the sleeve and the kernel, in the order that loses no frame:
//! what the sleeve is told ([`FastdpPeers`]) and when, relative to the kernel following a
//! switch.
//!
//! - Sleeve → fastdp: the kernel first (flood list, then the bridge sends the peer's MACs to the
//!   VXLAN port), then the sleeve. Frames the bridge put on the TAP just before the move may
//!   still be waiting there, and the kernel did not carry them: for [`TAP_DRAIN`] the peer is
//!   `draining`, and the sleeve still sends captured unicast to it. Telling the sleeve at once
//!   dropped the ping that crossed the switch (one in 80 every few runs on a loaded CI machine).
//! - Fastdp → sleeve: the sleeve first, then the kernel moves the MACs to the TAP, so a frame
//!   that reaches the TAP finds the sleeve already carrying that peer.
//!
//! Either way a flooded frame may go both ways for a moment (a duplicate, never a loss).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::actors::overlay::FastdpPeers;
use crate::topology::PeerName;

/// How long frames the bridge queued on the TAP before a peer's MACs moved to the kernel may
/// still be read by the sleeve: the TAP's queue empties within microseconds, unless the
/// sleeve's thread is not scheduled; 250 ms covers a loaded 2-core machine many times over.
pub const TAP_DRAIN: Duration = Duration::from_millis(250);

/// What the sleeve has been told, and since when each draining peer drains.
#[derive(Debug, Default)]
pub struct SleeveHandover {
    told: FastdpPeers,
    /// When the kernel took over each draining peer.
    moved_at: BTreeMap<PeerName, Instant>,
}

impl SleeveHandover {
    /// What the sleeve was told last.
    pub fn told(&self) -> &FastdpPeers {
        &self.told
    }

    /// Before the kernel follows a step after which it carries `carried`: peers it stops
    /// carrying leave the sleeve's sets now. The message to send before touching the kernel.
    pub fn before_kernel(&mut self, carried: &BTreeSet<PeerName>) -> Option<FastdpPeers> {
        let before = self.told.clone();
        self.told.carried.retain(|peer| carried.contains(peer));
        self.told.draining.retain(|peer| carried.contains(peer));
        self.moved_at.retain(|peer, _| carried.contains(peer));
        (self.told != before).then(|| self.told.clone())
    }

    /// After the kernel followed that step: peers new to it are carried, and drain for
    /// [`TAP_DRAIN`] from `now`. The message to send, if anything changed.
    pub fn after_kernel(
        &mut self,
        carried: &BTreeSet<PeerName>,
        now: Instant,
    ) -> Option<FastdpPeers> {
        let before = self.told.clone();
        self.before_kernel(carried);
        for &peer in carried {
            if self.told.carried.insert(peer) {
                self.moved_at.insert(peer, now);
            }
        }
        self.expire(now);
        (self.told != before).then(|| self.told.clone())
    }

    /// Ends the drains that have lasted [`TAP_DRAIN`] by `now`. The message to send, if any did.
    pub fn drained(&mut self, now: Instant) -> Option<FastdpPeers> {
        let before = self.told.clone();
        self.expire(now);
        (self.told != before).then(|| self.told.clone())
    }

    /// When the next drain ends.
    pub fn next_drain_end(&self) -> Option<Instant> {
        self.moved_at.values().min().map(|&at| at + TAP_DRAIN)
    }

    fn expire(&mut self, now: Instant) {
        self.moved_at
            .retain(|_, at| now.saturating_duration_since(*at) < TAP_DRAIN);
        self.told.draining = self.moved_at.keys().copied().collect();
    }
}

#[cfg(test)]
mod tests;
