//! Messages from other peers: merging their rings (and what to do when a ring cannot merge),
//! giving space to a peer that asks, handing over a single address, and the answers to our
//! own requests.
//!
//! Split brain, beyond Weave Net: two rings made separately cannot merge. Weave Net then drops
//! the link for ever, and an operator must wipe one side. Here a side that has no allocations
//! anywhere in its ring drops its ring and takes the other one, automatically. Which side
//! gives way is decided by [`RingWeight`], the same way on both sides, so two empty sides never
//! swap rings with each other.

use std::time::Instant;

use super::Allocator;
use super::CONFLICT_REPORT_INTERVAL;
use crate::ipam::allocator::api::Effect;
use crate::ipam::messages::{ClaimDenial, IpamMessage};
use crate::ipam::{Address, AddressRange, Cidr, Ring, RingError, RingState, Space};
use crate::topology::PeerName;

impl Allocator {
    pub(super) fn handle_message(&mut self, from: PeerName, msg: IpamMessage, now: Instant) {
        match msg {
            IpamMessage::Ring(ring) => self.receive_ring(from, &ring, now),
            IpamMessage::Paxos(state) => self.receive_paxos(from, &state, now),
            IpamMessage::RingRequest => self.receive_ring_request(from, now),
            IpamMessage::SpaceRequest { subnet } => self.donate_space(from, subnet),
            IpamMessage::SpaceGranted { subnet, ring } => {
                self.pending.space_answered(subnet, from, None);
                self.receive_ring(from, &ring, now);
            }
            IpamMessage::SpaceDenied { subnet } => {
                self.pending.space_answered(subnet, from, Some(now));
            }
            IpamMessage::ClaimRequest { address } => self.hand_over_address(from, address),
            IpamMessage::ClaimGranted { ring, .. } => self.receive_ring(from, &ring, now),
            IpamMessage::ClaimDenied { address, reason } => match reason {
                ClaimDenial::InUse => self.claim_refused_in_use(address, from),
                // Its ring came along; the claim is retried when our ring names another owner,
                // or after the retry interval.
                ClaimDenial::NotOwner => {}
            },
        }
    }

    /// Merges `incoming` into our ring and brings the space in step with it.
    pub(super) fn receive_ring(&mut self, from: PeerName, incoming: &RingState, now: Instant) {
        let space = &self.space;
        match self
            .ring
            .merge(incoming, |part| space.has_allocations_in(part))
        {
            Ok(outcome) => {
                self.space.add_ranges(&outcome.gained);
                for lost in outcome.lost {
                    // The merge only takes parts without allocations, which we owned.
                    let _ = self.space.release(lost);
                }
                if outcome.changed {
                    self.out.persist = true;
                }
                if !self.ring.is_empty() {
                    self.ring_established();
                    if outcome.incoming_outdated {
                        self.send_ring(from);
                    }
                }
            }
            Err(error @ (RingError::DifferentSeeds { .. } | RingError::DifferentRange { .. })) => {
                self.split_brain(from, incoming, &error);
            }
            Err(error) => self.report_conflict(from, error.to_string(), now),
        }
    }

    /// `incoming` was made separately from our ring. One side may give way (see the module
    /// documentation); otherwise the actor is told to keep the two apart.
    fn split_brain(&mut self, from: PeerName, incoming: &RingState, error: &RingError) {
        let same_range = incoming.range() == self.ring.range();
        let ours = RingWeight::of(self.ring.state());
        let theirs = RingWeight::of(incoming);
        let we_hold_nothing = self.owned.is_empty() && self.space.allocated_count() == 0;
        if same_range && we_hold_nothing && !ours.has_allocations && theirs > ours {
            self.adopt(from, incoming);
        } else if same_range && !theirs.has_allocations && ours > theirs {
            // They will give way when they see ours: make sure they do.
            self.send_ring(from);
        } else {
            self.out.effects.push(Effect::SplitBrain {
                peer: from,
                reason: error.to_string(),
            });
        }
    }

    /// Drops our ring (which has no allocations) for `incoming`.
    fn adopt(&mut self, from: PeerName, incoming: &RingState) {
        let mut ring = Ring::new(self.config.universe, self.config.local);
        let outcome = match ring.merge(incoming, |_| false) {
            Ok(outcome) => outcome,
            Err(error) => {
                self.out.effects.push(Effect::SplitBrain {
                    peer: from,
                    reason: error.to_string(),
                });
                return;
            }
        };
        let note = format!(
            "dropped our IP allocation ring (seeded by {:?}, no allocations anywhere) for the \
             one of {from} (seeded by {:?}); we now own {} addresses",
            self.ring.seeds(),
            incoming.seeds(),
            outcome.gained.iter().map(AddressRange::size).sum::<u32>(),
        );
        self.ring = ring;
        self.space = Space::new();
        self.space.add_ranges(&outcome.gained);
        self.pending.forget_space_requests();
        self.ring_established();
        self.out.persist = true;
        self.out.broadcast_ring = true;
        self.out.effects.push(Effect::Adopted { from, note });
    }

    /// Reports a ring we refused for another reason than split brain, at most once per
    /// [`CONFLICT_REPORT_INTERVAL`] per peer for the same reason.
    fn report_conflict(&mut self, peer: PeerName, reason: String, now: Instant) {
        if let Some((last_reason, at)) = self.conflicts_reported.get(&peer)
            && *last_reason == reason
            && now.saturating_duration_since(*at) < CONFLICT_REPORT_INTERVAL
        {
            return;
        }
        self.conflicts_reported.insert(peer, (reason.clone(), now));
        self.out.effects.push(Effect::Conflict { peer, reason });
    }

    /// A peer asks for space in `subnet`: give it part of our free space there (at most half),
    /// and tell everyone. The ring change is persisted before the grant leaves.
    fn donate_space(&mut self, to: PeerName, subnet: Cidr) {
        let inside = self.ring.range().range().contains_range(&subnet.range());
        let donation = if inside && !self.ring.is_empty() {
            self.space.donate(subnet)
        } else {
            None
        };
        let Some(block) = donation else {
            self.unicast(to, IpamMessage::SpaceDenied { subnet });
            return;
        };
        if self.ring.grant_range(block, to).is_err() {
            // The space only donates what the ring gives us; keep it if the ring disagrees.
            self.space.add_ranges(&[block]);
            self.unicast(to, IpamMessage::SpaceDenied { subnet });
            return;
        }
        self.out.persist = true;
        self.out.broadcast_ring = true;
        let ring = self.ring.state().clone();
        self.unicast(to, IpamMessage::SpaceGranted { subnet, ring });
    }

    /// A peer claims `address`, which it thinks is ours: hand it over if it is free.
    fn hand_over_address(&mut self, to: PeerName, address: Address) {
        let reason = if self.ring.owner(address) != Some(self.config.local) {
            ClaimDenial::NotOwner
        } else if self.space.is_allocated(address) {
            ClaimDenial::InUse
        } else {
            match AddressRange::single(address) {
                Some(single) if self.space.release(single).is_ok() => {
                    if self.ring.grant_range(single, to).is_ok() {
                        self.out.persist = true;
                        self.out.broadcast_ring = true;
                        let ring = self.ring.state().clone();
                        self.unicast(to, IpamMessage::ClaimGranted { address, ring });
                        return;
                    }
                    self.space.add_ranges(&[single]);
                    ClaimDenial::NotOwner
                }
                _ => ClaimDenial::NotOwner,
            }
        };
        if reason == ClaimDenial::NotOwner {
            self.send_ring(to);
        }
        self.unicast(to, IpamMessage::ClaimDenied { address, reason });
    }
}

/// Which of two separately made rings gives way: the one ordered lower. A ring with
/// allocations beats one without; then more seeds beat fewer (the bigger cluster stays put);
/// then the seed lists are compared, so any two different rings are ordered the same way on
/// every peer.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RingWeight {
    has_allocations: bool,
    seed_count: usize,
    seeds: Vec<PeerName>,
}

impl RingWeight {
    fn of(ring: &RingState) -> Self {
        Self {
            has_allocations: shows_allocations(ring),
            seed_count: ring.seeds().len(),
            seeds: ring.seeds().to_vec(),
        }
    }
}

/// Whether the free counts of `ring` show any address in use. Counts are as last reported, so
/// a very recent allocation may not show yet; a peer that gave way on such stale counts takes
/// the other ring back when fresher counts arrive (a ring with allocations beats one without),
/// and never gave away an allocation of its own, as it had none.
fn shows_allocations(ring: &RingState) -> bool {
    ring.entries()
        .iter()
        .enumerate()
        .any(|(index, entry)| entry.free < ring.part(index).size())
}
