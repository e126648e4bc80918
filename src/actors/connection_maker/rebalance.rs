//! Rebalancing: the periodic decision that moves our links towards a random-like graph of degree
//! about the connection limit, whose diameter is small (2–3 for 250 peers of degree 30), instead
//! of the first-come mesh discovery alone builds (early peers fill up, late ones chain behind
//! them: 14 hops at 250 routers). Pure: the graph, our links, time and a seed go in; at most one
//! change comes out per interval.
//!
//! The rules, and why:
//! - **Dial far**: when a peer is [`FAR_HOPS`] or more away, dial the farthest such peer,
//!   preferring one with room for another link (a full one would refuse us). Any peer whose
//!   address gossip gives may be dialled, not only discovery's targets: those leave out peers past
//!   four fifths of their limit, which in a settled mesh is nearly every peer.
//! - **Make room**: when that peer is there but we are at our limit, drop our most redundant
//!   link instead; the next interval dials. A link is redundant when its peer stays within two
//!   hops of us without it (a common neighbour), which also means dropping it can never
//!   disconnect the graph; among those, the one with the most common neighbours, then the
//!   best-connected peer, goes first.
//! - **Who drops**: only links we dialled. The other end accepted, so it holds no target that
//!   would re-dial at once; its discovered or hinted target for us is held back by the dial
//!   filter (`ConnectionMakerState::due_within`: peers within [`NEAR_HOPS`] are not dialled by
//!   discovery), and we are within two hops of it after the drop, by the rule above. Links to
//!   our direct targets (the operator's) are never dropped.
//! - **Incoming**: a full peer keeps refusing with hints (`src/mesh/limit.rs`, the listener)
//!   rather than accepting and dropping: distances are symmetric, so a full peer that a far peer
//!   wants to reach sees that far peer too, and its own rebalancing makes room (drops a redundant
//!   link) and dials out. Refusing keeps one place that decides what to drop, and a flood of
//!   dials cannot make a peer shed links.
//! - **Hysteresis**: a link younger than [`MIN_LINK_AGE`] is never dropped (it includes every
//!   link rebalancing made); a dropped peer is not re-dialled for [`REDIAL_HOLD_AFTER_DROP`];
//!   neither end goes below [`MIN_LINKS`]; the interval is jittered from a seeded generator so
//!   that peers do not all act in the same instant on the same stale view. Rebalancing only acts
//!   while a peer is [`FAR_HOPS`] away, so once the diameter is below that nothing changes.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::mesh_graph::MeshGraph;
use crate::topology::PeerName;

/// Mean time between two rebalancing decisions. Each decision changes at most one link, so a
/// peer needs ~10 decisions to move a third of its 30 default links: minutes, far below the
/// hour a cluster lives between upgrades, and slow next to gossip (a topology change reaches
/// every peer in about a second), so decisions rest on a current view.
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(10);
/// Before the first decision: discovery makes the first links in a burst, and the view of a
/// peer that just joined is incomplete.
pub const FIRST_REBALANCE_DELAY: Duration = Duration::from_secs(30);
/// A peer this many hops away (or more) is far: worth a link of its own. Four, because the goal
/// is a diameter of three (a degree-30 random graph of 250 peers has diameter 2–3).
pub const FAR_HOPS: u32 = 4;
/// Discovery does not dial a peer this close (it is reachable through a common neighbour); a
/// dropped link's ends are this close by construction, so neither re-dials it.
pub const NEAR_HOPS: u32 = 2;
/// A link this young is never dropped: two minutes, twelve decisions, time for the gossip of the
/// links it made to settle everywhere.
pub const MIN_LINK_AGE: Duration = Duration::from_secs(120);
/// Neither end of a dropped link may be left with fewer links than this: one lost peer must not
/// isolate anyone.
pub const MIN_LINKS: usize = 3;
/// How long a peer we dropped is not dialled again (ten minutes, longer than it takes the
/// mesh to settle around the change).
pub const REDIAL_HOLD_AFTER_DROP: Duration = Duration::from_secs(600);

/// One change to our links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rebalance {
    Dial(PeerName),
    Drop(PeerName),
}

/// What a decision looks at.
pub struct RebalanceInput<'a> {
    pub graph: &'a MeshGraph,
    pub us: PeerName,
    /// Our `--conn-limit`; 0 (unlimited) disables rebalancing: discovery links everyone.
    pub limit: u32,
    /// Links we may still open.
    pub free_permits: usize,
    /// Links we dialled to a peer that is not a direct target, with the time each came up.
    pub droppable: &'a [(PeerName, Instant)],
    /// Whether we hold a target for the peer that may be dialled now.
    pub dialable: &'a dyn Fn(PeerName) -> bool,
    pub now: Instant,
}

/// When the next decision is due, and the jitter of the interval.
pub struct Rebalancer {
    next_at: Option<Instant>,
    rng: StdRng,
}

impl Rebalancer {
    pub fn new(seed: u64) -> Self {
        Self {
            next_at: None,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A change to make now, if a decision is due and finds one. Every due decision schedules
    /// the next, whatever it finds.
    pub fn decide(&mut self, input: &RebalanceInput<'_>) -> Option<Rebalance> {
        let now = input.now;
        let Some(next_at) = self.next_at else {
            self.next_at = Some(now + self.jittered(FIRST_REBALANCE_DELAY));
            return None;
        };
        if now < next_at {
            return None;
        }
        self.next_at = Some(now + self.jittered(REBALANCE_INTERVAL));
        if input.limit == 0 {
            return None;
        }
        let us = input.graph.index_of(input.us)?;
        let far = self.farthest_dialable(input, us)?;
        if input.free_permits > 0 {
            return Some(Rebalance::Dial(far));
        }
        self.most_redundant(input, us).map(Rebalance::Drop)
    }

    /// Whether [`Self::decide`] would do more than wait: lets the caller skip gathering its
    /// input between decisions.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|at| now >= at)
    }

    /// The interval drawn uniformly from `[interval/2, 3·interval/2]`.
    fn jittered(&mut self, interval: Duration) -> Duration {
        interval.mul_f64(self.rng.random_range(0.5..=1.5))
    }

    /// The farthest dialable peer with room; when a far peer is full (it would refuse us), one
    /// of its neighbours with room that is not near us instead, which brings the full one within
    /// two hops. Failing both, the farthest dialable peer: our view of its links may be stale.
    fn farthest_dialable(&mut self, input: &RebalanceInput<'_>, us: usize) -> Option<PeerName> {
        let graph = input.graph;
        let distances = graph.distances(us);
        let mut far: Vec<(u32, usize)> = distances
            .iter()
            .enumerate()
            .filter_map(|(peer, distance)| distance.filter(|d| *d >= FAR_HOPS).map(|d| (d, peer)))
            .collect();
        far.shuffle(&mut self.rng);
        far.sort_by_key(|(distance, _)| std::cmp::Reverse(*distance));
        let dialable = |peer: usize| (input.dialable)(graph.name(peer));
        let not_near = |peer: usize| distances[peer].is_some_and(|d| d > NEAR_HOPS);
        if let Some(&(_, peer)) = far
            .iter()
            .find(|(_, peer)| graph.has_room(*peer) && dialable(*peer))
        {
            return Some(graph.name(peer));
        }
        for &(_, peer) in &far {
            let mut neighbours = graph.neighbours(peer).to_vec();
            neighbours.shuffle(&mut self.rng);
            if let Some(&via) = neighbours
                .iter()
                .find(|&&n| graph.has_room(n) && not_near(n) && dialable(n))
            {
                return Some(graph.name(via));
            }
        }
        let fallback = far
            .iter()
            .find(|(_, peer)| dialable(*peer))
            .map(|(_, peer)| *peer);
        fallback.map(|peer| graph.name(peer))
    }

    fn most_redundant(&mut self, input: &RebalanceInput<'_>, us: usize) -> Option<PeerName> {
        let graph = input.graph;
        if graph.degree(us) <= MIN_LINKS {
            return None;
        }
        let mut redundant: Vec<(usize, usize, PeerName)> = input
            .droppable
            .iter()
            .filter(|(_, since)| input.now.saturating_duration_since(*since) >= MIN_LINK_AGE)
            .filter_map(|(peer, _)| {
                let index = graph.index_of(*peer)?;
                if !graph.neighbours(us).contains(&index) || graph.degree(index) <= MIN_LINKS {
                    return None;
                }
                let common = graph.common_neighbours(us, index);
                (common > 0).then_some((common, graph.degree(index), *peer))
            })
            .collect();
        redundant.shuffle(&mut self.rng);
        redundant.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        redundant.first().map(|(_, _, peer)| *peer)
    }
}

#[cfg(test)]
mod tests;
