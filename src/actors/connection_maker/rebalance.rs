//! Rebalancing: the periodic decision that moves our links towards a random-like graph of degree
//! about the connection limit, whose diameter is small (2–3 for 250 peers of degree 30), instead
//! of the mesh discovery alone builds. Discovery only lists peers below four fifths of their
//! limit, which soon means the peers that joined about when we did: late peers link to each
//! other, early ones are full, and 250 routers settle with half of all pairs three hops apart
//! and some four. Pure: the graph, our links, time and a seed go in; at most one change comes
//! out per interval.
//!
//! The rules, and why:
//! - **Dial where it counts**: score a link to each peer by the hops it would save us
//!   ([`reach::Reach::gain`]: the peer comes to one hop, each of its neighbours beyond two hops
//!   to two) and dial the best among those with room for another link (a full one would refuse
//!   us), if it saves at least [`MIN_NET_GAIN`]; among the peers that come close to the best
//!   ([`NEAR_BEST_GAIN_PERCENT`]) the one dialled is drawn by the room each has left, since
//!   every peer deciding on a similar view finds the same best one, and once the first dial
//!   fills it the others are refused. Scoring, not "the farthest peer", is what moves
//!   a mesh that is three hops wide almost everywhere: one far peer's neighbourhood at once. Any
//!   peer whose address gossip gives may be dialled, not only discovery's targets: those leave
//!   out peers past four fifths of their limit, which in a settled mesh is nearly every peer.
//! - **Make room**: when we are at our limit, drop our most redundant link instead, if the best
//!   link saves [`MIN_NET_GAIN`] hops more than the drop costs ([`reach::Reach::loss`]: the peer
//!   goes to two hops, and the peers only it brought within two go to three); the next interval
//!   dials. Only a peer that stays within two hops of us (a common neighbour) may be dropped,
//!   which also means dropping it can never disconnect the graph; the cheapest drop, then the
//!   best-connected peer, goes first. Drops are made one at a time: the next waits until a
//!   link rebalancing dialled came up (or the hold is over), since on 250 routers peers whose
//!   dial had been refused after a drop kept dropping, handing their freed places to each other.
//! - **Who drops**: only links we dialled (also once their discovered target is retired: gossip
//!   stops listing a peer we are linked to). The other end accepted, so it holds no target that
//!   would re-dial at once; its discovered or hinted target for us is held back by the dial
//!   filter (`ConnectionMakerState::due_within`: peers within [`NEAR_HOPS`] are not dialled by
//!   discovery), and we are within two hops of it after the drop, by the rule above. Links to
//!   our direct targets (the operator's) are never dropped while there are no more of them than
//!   our limit; beyond it (a large cluster's Node list) they are dialled and dropped as
//!   discovered ones (`ConnectionMakerState::direct_beyond_limit`).
//! - **Incoming**: a full peer keeps refusing with hints (`src/mesh/limit.rs`, the listener)
//!   rather than accepting and dropping: gains are nearly symmetric, so a full peer that a far
//!   peer wants sees a gain in it too, and its own rebalancing makes room and dials. The
//!   simulation tried a full peer accepting a worthwhile dialler over its limit and dropping a
//!   link for it: at 250 peers the mesh settled the same (diameter 3, mean 1.93, before drops
//!   went one at a time) with or without, so one place decides what to drop, and a flood of
//!   dials cannot make a peer shed links.
//! - **Hysteresis**: a link younger than [`MIN_LINK_AGE`] is never dropped (it includes every
//!   link rebalancing made); a dropped or dialled peer is not dialled by rebalancing again for
//!   [`REDIAL_HOLD_AFTER_DROP`]; neither end goes below [`MIN_LINKS`]; the interval is jittered
//!   from a seeded generator so that peers do not all act in the same instant on the same stale
//!   view, and a decision waits (up to [`MAX_VIEW_LAG`]) until the view shows our own links as
//!   they are. A change must save [`MIN_NET_GAIN`] hops net, so once no link would, nothing
//!   changes.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::mesh_graph::MeshGraph;
use crate::topology::PeerName;
use reach::Reach;

/// Mean time between two rebalancing decisions. Each decision changes at most one link, so a
/// peer needs ~10 decisions to move a third of its 30 default links: minutes, far below the
/// hour a cluster lives between upgrades, and slow next to gossip (a topology change reaches
/// every peer in about a second), so decisions rest on a current view.
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(10);
/// Before the first decision: discovery makes the first links in a burst, and the view of a
/// peer that just joined is incomplete.
pub const FIRST_REBALANCE_DELAY: Duration = Duration::from_secs(30);
/// Hops (summed over the peers it moves) a change must save us, net of what it costs. Eight:
/// the simulation at 250 peers of limit 30 settled at diameter 3, mean 1.93 hops with it (12:
/// 1.97, 16: 2.01, fewer drops; measured before drops went one at a time), and with 60 peers
/// of limit 10 it still reached diameter 3, which 12 and 16 did not. A bar is needed at all
/// because some gain is always there: a random graph of degree 30 leaves a few peers three
/// hops away.
pub const MIN_NET_GAIN: u32 = 8;
/// A dial is drawn among the peers whose gain is at least this share (in percent) of the best
/// one's, weighted by the room each has left. On 250 real routers, whose views lag on a loaded
/// machine, 2,277 rebalancing dials were refused (2026-12-08): the few peers with room were
/// the ones every router with room dialled at once. In the simulation on views six seconds old
/// (four seeds), refusals of rebalancing dials went from 2,246 to 1,287 with 75 (90: 349 and
/// 50: 338 on the first seed, against 285), through one seed with fresh views from 510 to 322;
/// mean hops and diameter the same, settling 10% slower on the old views.
pub const NEAR_BEST_GAIN_PERCENT: u32 = 75;
/// Discovery does not dial a peer this close (it is reachable through a common neighbour); a
/// dropped link's ends are this close by construction, so neither re-dials it.
pub const NEAR_HOPS: u32 = 2;
/// A link this young is never dropped: two minutes, twelve decisions, time for the gossip of the
/// links it made to settle everywhere.
pub const MIN_LINK_AGE: Duration = Duration::from_secs(120);
/// How long a decision waits for the mesh view to show our own links as they are: beyond it
/// the view is taken as it is (a peer whose record never arrives must not stop rebalancing).
/// A minute: gossip brings a change everywhere in about a second when the nodes are not
/// overloaded.
pub const MAX_VIEW_LAG: Duration = Duration::from_secs(60);
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
    /// When we last dropped a link to make room, until a link rebalancing dialled comes up.
    unspent_drop_at: Option<Instant>,
}

impl Rebalancer {
    pub fn new(seed: u64) -> Self {
        Self {
            next_at: None,
            rng: StdRng::seed_from_u64(seed),
            unspent_drop_at: None,
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
        let reach = Reach::new(input.graph, us);
        let (far, gain) = self.best_dialable(input, &reach)?;
        if input.free_permits > 0 {
            return Some(Rebalance::Dial(far));
        }
        // Only one drop at a time: on 250 routers, peers that dropped again while their dial
        // had been refused (others had taken the room) kept handing their freed places to each
        // other.
        let unspent = self
            .unspent_drop_at
            .is_some_and(|at| now.saturating_duration_since(at) < REDIAL_HOLD_AFTER_DROP);
        if unspent {
            return None;
        }
        let (spare, loss) = self.most_redundant(input, us, &reach)?;
        if gain < loss + MIN_NET_GAIN {
            return None;
        }
        self.unspent_drop_at = Some(now);
        Some(Rebalance::Drop(spare))
    }

    /// A link rebalancing dialled came up: the place the last drop freed was spent as meant,
    /// and the next drop may come.
    pub fn dial_succeeded(&mut self) {
        self.unspent_drop_at = None;
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

    /// A dialable peer with room for another link (in our view) that a link to would gain us
    /// nearly the most hops ([`NEAR_BEST_GAIN_PERCENT`]), at least [`MIN_NET_GAIN`], drawn by
    /// the room each has left; and its gain. A full peer is never dialled: it would refuse us.
    /// On 250 routers such dials (our view said full, but we had room) were a third of all
    /// refusals, and the simulation settles the same without them.
    fn best_dialable(
        &mut self,
        input: &RebalanceInput<'_>,
        reach: &Reach,
    ) -> Option<(PeerName, u32)> {
        let graph = input.graph;
        let mut candidates: Vec<(u32, usize)> = (0..graph.len())
            .filter(|&peer| graph.has_room(peer))
            .filter_map(|peer| {
                let gain = reach.gain(graph, peer);
                (gain >= MIN_NET_GAIN && (input.dialable)(graph.name(peer))).then_some((gain, peer))
            })
            .collect();
        let best = candidates.iter().map(|&(gain, _)| gain).max()?;
        let floor = (best * NEAR_BEST_GAIN_PERCENT / 100).max(MIN_NET_GAIN);
        candidates.retain(|&(gain, _)| gain >= floor);
        let &(gain, peer) = candidates
            .choose_weighted(&mut self.rng, |&(_, peer)| graph.room(peer))
            .ok()?;
        Some((graph.name(peer), gain))
    }

    /// The link we would miss least, and what dropping it costs: among links we dialled that
    /// are old enough, whose peer stays within two hops of us (a common neighbour, so dropping
    /// it never disconnects the graph) and keeps more than [`MIN_LINKS`].
    fn most_redundant(
        &mut self,
        input: &RebalanceInput<'_>,
        us: usize,
        reach: &Reach,
    ) -> Option<(PeerName, u32)> {
        let graph = input.graph;
        if graph.degree(us) <= MIN_LINKS {
            return None;
        }
        let mut redundant: Vec<(u32, usize, PeerName)> = input
            .droppable
            .iter()
            .filter(|(_, since)| input.now.saturating_duration_since(*since) >= MIN_LINK_AGE)
            .filter_map(|(peer, _)| {
                let index = graph.index_of(*peer)?;
                if !graph.neighbours(us).contains(&index) || graph.degree(index) <= MIN_LINKS {
                    return None;
                }
                (graph.common_neighbours(us, index) > 0)
                    .then(|| (reach.loss(graph, index), graph.degree(index), *peer))
            })
            .collect();
        redundant.shuffle(&mut self.rng);
        redundant.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        redundant.first().map(|&(loss, _, peer)| (peer, loss))
    }
}

mod reach;

#[cfg(test)]
mod tests;
