//! Which peers to dial and when: targets from the command line, `connect`, gossip discovery and
//! refusal hints, each with its retry schedule. Pure state machine, time passed in.
//!
//! This module owns the target table: one entry per normalised `host:port`, recording why we
//! dial it (direct, discovered, hinted), which peer it is known to lead to, whether an attempt
//! or link is under way, and when to try again. It never dials, resolves or sleeps: the
//! `ConnectionMaker` actor asks [`ConnectionMakerState::due`] what to dial on every tick and
//! reports every outcome back; [`ConnectionMakerState::next_wakeup`] says when the next target
//! is due. Randomness (retry jitter) comes from a seeded generator so the schedule is
//! reproducible in tests.
//!
//! Modelled on weaveworks/mesh `connection_maker.go`, with one difference in bookkeeping: a
//! target keeps one flag per reason it exists (direct, discovered, hinted) rather than a single
//! kind, so forgetting a direct target that gossip also advertises leaves the discovered target
//! (and its schedule) in place instead of dropping and re-adding it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::discovery_limits::{BackoffMemory, DialBudget, MAX_DISCOVERED_TARGETS, Remembered};
use super::mesh_graph::MeshGraph;
use super::rebalance::Rebalancer;
pub use super::target::{Target, TargetSource, TargetState};
use super::target_address::socket_target;
pub use super::target_address::{TargetError, normalise_target};
use crate::topology::PeerName;

/// First retry interval after a failure (Weave Net: 2 s).
pub const INITIAL_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Growth of the retry interval per consecutive failure (Weave Net: ×1.5).
pub const RETRY_BACKOFF_FACTOR: f64 = 1.5;
/// Ceiling of the retry interval (Weave Net: 6 min).
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(6 * 60);
/// A link that lived at least this long is re-dialled at once when it ends (Weave Net: 1 min).
pub const LONG_LIVED_LINK: Duration = Duration::from_secs(60);

/// Mixed into the seed of the rebalancing's generator (any constant: it only has to differ).
const REBALANCE_SEED_SALT: u64 = 0x5eed_ba1a_4ce0_0001;

/// Takes one from a budget; false when it is spent.
fn take_one(budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    true
}

/// The target table and its schedules; driven by the `ConnectionMaker` actor.
pub struct ConnectionMakerState {
    our_name: PeerName,
    default_port: u16,
    discovery: bool,
    /// Our `--conn-limit` (0: unlimited).
    conn_limit: u32,
    /// Keyed by the normalised address; the map's order makes every listing deterministic.
    targets: BTreeMap<String, Target>,
    connected_peers: BTreeSet<PeerName>,
    rng: StdRng,
    /// What discovered and hinted targets may dial (direct ones never wait for it).
    dial_budget: DialBudget,
    /// Back-offs of addresses that failed and went away, resumed if they come back.
    backoffs: BackoffMemory,
    /// The mesh as gossip last described it (empty until the first view).
    mesh: Arc<MeshGraph>,
    /// Peers of `mesh` within [`super::rebalance::NEAR_HOPS`] of us, by index: discovery does
    /// not dial them.
    near: Vec<bool>,
    rebalancer: Rebalancer,
    /// Peers rebalancing dialled or dropped, and when: each is dialled at most once per
    /// [`REDIAL_HOLD_AFTER_DROP`] this way, whatever its back-off says.
    rebalance_dials: BTreeMap<PeerName, Instant>,
    /// Since when the mesh view has not shown our links as they are (see `view_lags`).
    view_lagging_since: Option<Instant>,
    /// Where gossip says every other known peer listens (as target addresses): rebalancing may
    /// dial a far peer that is no target of ours (see `rebalance`).
    peer_addresses: BTreeMap<PeerName, String>,
}

/// What the actor carries out for a rebalancing decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebalanceAction {
    /// Dial this target (marked as attempting; report it back like one `due` returned).
    Dial(String),
    /// Close our link to this peer with `ClosingReason::Rebalanced`; the link's end is reported
    /// with [`ConnectionMakerState::link_dropped`].
    Drop(PeerName),
}

impl ConnectionMakerState {
    /// `seed` feeds the jitter of retry delays, so tests are reproducible.
    pub fn new(our_name: PeerName, default_port: u16, discovery: bool, seed: u64) -> Self {
        Self {
            our_name,
            default_port,
            discovery,
            conn_limit: 0,
            targets: BTreeMap::new(),
            connected_peers: BTreeSet::new(),
            rng: StdRng::seed_from_u64(seed),
            dial_budget: DialBudget::default(),
            backoffs: BackoffMemory::default(),
            mesh: Arc::default(),
            near: Vec::new(),
            // Its own stream, so that rebalancing does not shift the retry jitter.
            rebalancer: Rebalancer::new(seed ^ REBALANCE_SEED_SALT),
            rebalance_dials: BTreeMap::new(),
            view_lagging_since: None,
            peer_addresses: BTreeMap::new(),
        }
    }

    /// Our `--conn-limit` (0, the default here: unlimited). Rebalancing needs one, and it
    /// decides how direct targets are dialled (see [`Self::due_within`]).
    pub fn set_conn_limit(&mut self, limit: u32) {
        self.conn_limit = limit;
    }

    /// Whether we hold more direct targets than links: the Kubernetes Node list of a cluster
    /// larger than our limit (or an operator listing every node). They cannot all be links, so
    /// they are addresses to join the mesh by and to find it again after a partition, and are
    /// dialled and dropped like discovered targets (see [`Self::due_within`]).
    pub(super) fn direct_beyond_limit(&self) -> bool {
        self.conn_limit != 0
            && self.targets.values().filter(|target| target.direct).count()
                > self.conn_limit as usize
    }

    /// Adds direct targets (`replace`: drop the direct targets not in `addrs`). New targets are
    /// due at once. Nothing changes when one address is invalid.
    ///
    /// An address that is already a target (discovered, hinted, or forgotten while its attempt is
    /// still under way) becomes direct and keeps its schedule, so it is never dialled twice at
    /// once. A suspended target stays suspended; `forget` it first to start over.
    pub fn add_direct(
        &mut self,
        addrs: &[String],
        replace: bool,
        now: Instant,
    ) -> Result<(), TargetError> {
        let wanted = self.normalise_all(addrs)?;
        if replace {
            let dropped: Vec<String> = self
                .targets
                .iter()
                .filter(|(addr, target)| target.direct && !wanted.contains(*addr))
                .map(|(addr, _)| addr.clone())
                .collect();
            for addr in dropped {
                self.unset_direct(&addr);
            }
        }
        for addr in wanted {
            self.targets
                .entry(addr)
                .or_insert_with(|| Target::new(now))
                .direct = true;
        }
        Ok(())
    }

    /// Forgets direct targets; an attempt under way finishes but is not retried.
    ///
    /// Addresses that are not direct targets are ignored; a target that gossip also advertises
    /// stays as a discovered one. Nothing changes when one address is invalid.
    pub fn forget(&mut self, addrs: &[String]) -> Result<(), TargetError> {
        for addr in self.normalise_all(addrs)? {
            self.unset_direct(&addr);
        }
        Ok(())
    }

    /// Replaces the set of discovered targets (ignored when discovery is off). Discovered targets
    /// no longer listed are dropped unless an attempt is under way.
    ///
    /// Entries naming ourselves are skipped. The advertised peer name overwrites what a target
    /// knew, because gossip is refreshed continually while a handshake's answer may be old.
    pub fn set_discovered(&mut self, discovered: Vec<(PeerName, SocketAddr)>, now: Instant) {
        if !self.discovery {
            return;
        }
        let mut listed: BTreeMap<String, PeerName> = BTreeMap::new();
        for (peer, addr) in discovered {
            if peer == self.our_name {
                continue;
            }
            if let Some(addr) = socket_target(addr) {
                listed.entry(addr).or_insert(peer);
            }
        }
        self.cap_discovered(&mut listed);
        for (addr, target) in &mut self.targets {
            target.discovered = listed.contains_key(addr);
        }
        for (addr, peer) in listed {
            let target = self.target_entry(addr, now);
            target.discovered = true;
            target.peer = Some(peer);
        }
        self.reap_all();
    }

    /// Keeps at most [`MAX_DISCOVERED_TARGETS`] of `listed`: those that are targets already, then
    /// others at random, so that a flood of made-up peers can neither grow the table without
    /// bound nor push the peers we know out by sorting first.
    fn cap_discovered(&mut self, listed: &mut BTreeMap<String, PeerName>) {
        if listed.len() <= MAX_DISCOVERED_TARGETS {
            return;
        }
        let (known, mut new): (Vec<String>, Vec<String>) = listed
            .keys()
            .cloned()
            .partition(|addr| self.targets.contains_key(addr));
        new.shuffle(&mut self.rng);
        let dropped = known.into_iter().chain(new).skip(MAX_DISCOVERED_TARGETS);
        for addr in dropped.collect::<Vec<_>>() {
            listed.remove(&addr);
        }
    }

    /// The target at `addr`, made if there is none; a new one resumes the back-off the address
    /// had when it last went away.
    fn target_entry(&mut self, addr: String, now: Instant) -> &mut Target {
        let remembered = if self.targets.contains_key(&addr) {
            None
        } else {
            self.backoffs.recall(&addr)
        };
        let target = self.targets.entry(addr).or_insert_with(|| Target::new(now));
        if let Some(remembered) = remembered {
            target.state = TargetState::Waiting {
                at: remembered.not_before.max(now),
            };
            target.retry_interval = remembered.retry_interval;
        }
        target
    }

    /// Adds the alternatives a refusing peer named (ignored when discovery is off).
    ///
    /// Tells which peer listens where, so that a target (say a direct one that never connected
    /// itself) is known to lead to a peer that may already be linked with us the other way.
    pub fn learn_peer_addresses(&mut self, known: &[(PeerName, SocketAddr)]) {
        self.peer_addresses.clear();
        for (peer, addr) in known {
            let Some(key) = socket_target(*addr) else {
                continue;
            };
            if let Some(target) = self.targets.get_mut(&key) {
                target.peer = Some(*peer);
            }
            if *peer != self.our_name {
                self.peer_addresses.insert(*peer, key);
            }
        }
    }

    /// Hints are only suggestions: an address that is already a target is left alone, and a hint
    /// is dropped after its first failed attempt that did not get as far as learning the remote
    /// peer's name. `set_discovered` does not drop hints.
    pub fn add_hints(&mut self, addrs: Vec<SocketAddr>, now: Instant) {
        if !self.discovery {
            return;
        }
        for addr in addrs.into_iter().filter_map(socket_target) {
            let target = self.target_entry(addr, now);
            // A retired target (attempt still under way) is revived; a live one keeps its source.
            if target.retired() {
                target.hinted = true;
            }
        }
    }

    /// The peers we currently hold a link to (either direction): targets known to lead to one of
    /// them are not dialled.
    ///
    /// Such targets keep their schedule; once the peer is gone, one that is already due is handed
    /// out by the next `due`, so the actor should call `due` after this.
    pub fn set_connected_peers(&mut self, peers: BTreeSet<PeerName>) {
        self.connected_peers = peers;
    }

    /// Targets to dial now, at most `permits`; they are marked as attempting.
    ///
    /// Order: direct targets first, then discovered, then hinted, each by address. The actor must
    /// report each one back with `attempt_succeeded` or `attempt_failed`.
    pub fn due(&mut self, now: Instant, permits: usize) -> Vec<String> {
        self.due_within(now, permits, permits)
    }

    /// Like [`Self::due`], but targets that exist only because gossip discovered them take at
    /// most `discovery_permits` of the `permits`. The actor keeps a reserve of its connection
    /// limit this way: if discovery could use every slot, the first peers of a large mesh would
    /// form a full clique and every later peer would be refused by all of them.
    ///
    /// Hints exist to get an isolated peer into the mesh, so they are spent sparingly: while we
    /// have no link, one hint at a time; once linked, they count as discovery. A refused newcomer
    /// that dialled every hint at once would take the reserve of several peers where it needs one.
    ///
    /// Direct targets beyond our limit ([`Self::direct_beyond_limit`]) are dialled as discovered
    /// ones (in a random order, within the discovery permits, not within two hops): given every
    /// node of 250 as direct targets, the simulation's routers dialled the same lowest addresses
    /// first, filled up to the limit leaving no room for a newcomer, and kept retrying the full
    /// ones for ever (176,175 of 179,406 dials refused, 25 minutes to settle, diameter 4).
    ///
    /// Once linked, no target is dialled while the mesh view shows its peer at its limit: it
    /// would refuse us (a seed every router is given was refused 1,379 times at 250 routers).
    /// It is dialled as soon as the view shows room.
    pub fn due_within(
        &mut self,
        now: Instant,
        permits: usize,
        discovery_permits: usize,
    ) -> Vec<String> {
        let isolated = self.connected_peers.is_empty();
        // Only an isolated peer limits its hints in flight: spare the scan otherwise.
        let hint_in_flight = isolated && self.hint_in_flight();
        // With no discovery permit left only direct targets (and a hint while isolated) can be
        // picked: leaving the rest out here spares shuffling hundreds of discovered targets on
        // every tick of a peer at its discovery ceiling, the usual state of a large mesh.
        let only_direct = discovery_permits == 0 && !isolated;
        let direct_as_discovered = self.direct_beyond_limit();
        let mut ready: Vec<(u8, &String, TargetSource)> = self
            .targets
            .iter()
            .filter_map(|(addr, target)| {
                let source = target.dialled_as(direct_as_discovered);
                let ready = matches!(target.state, TargetState::Waiting { at } if at <= now)
                    && !target.retired()
                    && (!only_direct || source == TargetSource::Direct)
                    && !target.leads_to(&self.connected_peers)
                    && self.held_back_by_view(target, source).is_none();
                ready.then(|| (Target::rank_of(source), addr, source))
            })
            .collect();
        // Direct targets by address; discovered ones in a random order of this peer's own, so
        // that peers do not all dial the same lowest addresses first, which would pile links onto
        // a few peers and stretch the routes of a large mesh.
        ready.shuffle(&mut self.rng);
        ready.sort_by(|a, b| {
            let by_address = a.2 == TargetSource::Direct;
            if by_address && b.2 == TargetSource::Direct {
                a.1.cmp(b.1)
            } else {
                a.0.cmp(&b.0)
            }
        });
        // Whatever gossip or a refusal named draws on the dial budget as well.
        let available = self.dial_budget.available(now);
        let mut budget = available;
        let mut discovery_left = discovery_permits;
        let mut isolated_hints_left = usize::from(!hint_in_flight);
        let picked: Vec<String> = ready
            .into_iter()
            .filter(|(_, _, source)| match source {
                TargetSource::Direct => true,
                TargetSource::Hinted if isolated => {
                    budget > 0 && take_one(&mut isolated_hints_left) && take_one(&mut budget)
                }
                TargetSource::Hinted | TargetSource::Discovered => {
                    budget > 0 && take_one(&mut discovery_left) && take_one(&mut budget)
                }
            })
            .take(permits)
            .map(|(_, addr, _)| addr.clone())
            .collect();
        // The filter above runs only for what `take` pulls, so the budget went down by exactly
        // the gossiped targets picked.
        self.dial_budget.spend(available - budget);
        for addr in &picked {
            if let Some(target) = self.targets.get_mut(addr) {
                target.state = TargetState::Attempting {
                    started: now,
                    after_error: target.last_error.is_some(),
                };
            }
        }
        picked
    }

    fn hint_in_flight(&self) -> bool {
        self.targets.values().any(|target| {
            target.source() == TargetSource::Hinted
                && matches!(target.state, TargetState::Attempting { .. })
        })
    }

    /// The attempt to `addr` reached `peer` and the link is up.
    ///
    /// `addr` is a string `due` returned; reports for unknown or suspended targets are ignored.
    pub fn attempt_succeeded(&mut self, addr: &str, peer: PeerName, now: Instant) {
        let Some(target) = self.targets.get_mut(addr) else {
            return;
        };
        if matches!(target.state, TargetState::Suspended { .. }) {
            return;
        }
        target.peer = Some(peer);
        target.state = TargetState::Connected { peer, since: now };
        target.last_error = None;
        target.retry_interval = INITIAL_RETRY_INTERVAL;
        // Also true for a peer rebalancing dropped (held in the same map) that came back: a link
        // came up all the same, and the one-drop-at-a-time rule only needs to know that.
        if self.rebalance_dials.contains_key(&peer) {
            self.rebalancer.dial_succeeded();
        }
    }

    /// The attempt to `addr` failed. `retry == false` (connect to ourselves, name collision)
    /// means never again. `peer` is the remote's name when the handshake got that far.
    pub fn attempt_failed(
        &mut self,
        addr: &str,
        peer: Option<PeerName>,
        error: String,
        retry: bool,
        now: Instant,
    ) {
        let Some(target) = self.targets.get_mut(addr) else {
            return;
        };
        if matches!(target.state, TargetState::Suspended { .. }) {
            return;
        }
        // A failed hint keeps its place and its back-off: dropping it would let the next refusal
        // that names it again make it due at once, and a refused peer would hammer full peers.
        if let Some(peer) = peer {
            target.peer = Some(peer);
        }
        if retry {
            target.back_off(&mut self.rng, now);
        } else {
            target.state = TargetState::Suspended {
                error: error.clone(),
            };
        }
        target.last_error = Some(error);
        self.reap(addr);
    }

    /// A link we dialled to `addr` ended after living `lived`.
    ///
    /// A link that lived long proves the target good, so it is re-dialled at once with a fresh
    /// interval; a short-lived one counts as a failure, so a flapping peer is not hammered.
    pub fn link_closed(
        &mut self,
        addr: &str,
        reason: String,
        retry: bool,
        lived: Duration,
        now: Instant,
    ) {
        let Some(target) = self.targets.get_mut(addr) else {
            return;
        };
        if matches!(target.state, TargetState::Suspended { .. }) {
            return;
        }
        if !retry {
            target.state = TargetState::Suspended {
                error: reason.clone(),
            };
        } else if lived >= LONG_LIVED_LINK {
            target.retry_interval = INITIAL_RETRY_INTERVAL;
            target.state = TargetState::Waiting { at: now };
        } else {
            target.back_off(&mut self.rng, now);
        }
        target.last_error = Some(reason);
        self.reap(addr);
    }

    fn normalise_all(&self, addrs: &[String]) -> Result<BTreeSet<String>, TargetError> {
        addrs
            .iter()
            .map(|addr| normalise_target(addr, self.default_port))
            .collect()
    }

    fn unset_direct(&mut self, addr: &str) {
        if let Some(target) = self.targets.get_mut(addr) {
            target.direct = false;
        }
        self.reap(addr);
    }

    /// Drops `addr` if nothing keeps it any more and no attempt or link is under way.
    fn reap(&mut self, addr: &str) {
        if self.targets.get(addr).is_some_and(Target::removable)
            && let Some(target) = self.targets.remove(addr)
        {
            self.remember_backoff(addr, &target);
        }
    }

    fn reap_all(&mut self) {
        let removable: Vec<String> = self
            .targets
            .iter()
            .filter(|(_, target)| target.removable())
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in removable {
            self.reap(&addr);
        }
    }

    /// Keeps the back-off of a target that failed last, for when its address comes back.
    fn remember_backoff(&mut self, addr: &str, target: &Target) {
        if let (Some(_), TargetState::Waiting { at }) = (&target.last_error, &target.state) {
            let remembered = Remembered {
                not_before: *at,
                retry_interval: target.retry_interval,
            };
            self.backoffs.remember(addr, remembered);
        }
    }
}

mod rebalancing;
mod status;

#[cfg(test)]
mod tests;
