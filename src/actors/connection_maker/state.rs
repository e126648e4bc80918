//! Which peers to dial and when: targets from the command line, `connect`, gossip discovery and
//! refusal hints, each with its retry schedule. Pure state machine, time passed in.
//!
//! This module owns the target table: one entry per normalised `host:port`, recording why we
//! dial it (direct, discovered, hinted), which peer it is known to lead to, whether an attempt
//! or link is under way, and when to try again. It never dials, resolves or sleeps: the
//! `ConnectionMaker` actor asks [`ConnectionMakerState::due`] what to dial, reports every
//! outcome back, and sleeps until [`ConnectionMakerState::next_wakeup`]. Randomness (retry
//! jitter) comes from a seeded generator so the schedule is reproducible in tests.
//!
//! Modelled on weaveworks/mesh `connection_maker.go`, with one difference in bookkeeping: a
//! target keeps one flag per reason it exists (direct, discovered, hinted) rather than a single
//! kind, so forgetting a direct target that gossip also advertises leaves the discovered target
//! (and its schedule) in place instead of dropping and re-adding it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::target_address::socket_target;
pub use super::target_address::{TargetError, normalise_target};
use crate::api::snapshot::{ConnectionState, ConnectionStatus};
use crate::topology::PeerName;

/// First retry interval after a failure (Weave Net: 2 s).
pub const INITIAL_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Growth of the retry interval per consecutive failure (Weave Net: ×1.5).
pub const RETRY_BACKOFF_FACTOR: f64 = 1.5;
/// Ceiling of the retry interval (Weave Net: 6 min).
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(6 * 60);
/// A link that lived at least this long is re-dialled at once when it ends (Weave Net: 1 min).
pub const LONG_LIVED_LINK: Duration = Duration::from_secs(60);

/// Where a target came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    /// Command line or `connect`: kept until `forget`.
    Direct,
    /// Learned from gossip (another peer's advertised address): dropped when no longer advertised.
    Discovered,
    /// Named by a peer that refused us for its connection limit.
    Hinted,
}

/// Takes one from a budget; false when it is spent.
fn take_one(budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    true
}

/// Where a target is in its dial cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Scheduled: `due` may hand it out from `at` on.
    Waiting { at: Instant },
    /// Handed out by `due`; the actor has not reported the outcome yet. `after_error` tells a
    /// first attempt ("connecting") from a retry ("retrying").
    Attempting { started: Instant, after_error: bool },
    /// The attempt succeeded and the link is up.
    Connected { peer: PeerName, since: Instant },
    /// Never retried (connection to ourselves, name collision); `forget` and `connect` again to
    /// start over.
    Suspended { error: String },
}

/// One target and its retry schedule.
#[derive(Clone, Debug)]
pub struct Target {
    // One flag per reason to keep the target; with none left it is dropped as soon as no attempt
    // or link is under way (until then it is "retired": invisible, never handed out again).
    direct: bool,
    discovered: bool,
    hinted: bool,
    peer: Option<PeerName>,
    state: TargetState,
    last_error: Option<String>,
    /// Interval the next failure's delay is drawn around (before jitter).
    retry_interval: Duration,
}

impl Target {
    fn new(now: Instant) -> Self {
        Self {
            direct: false,
            discovered: false,
            hinted: false,
            peer: None,
            state: TargetState::Waiting { at: now },
            last_error: None,
            retry_interval: INITIAL_RETRY_INTERVAL,
        }
    }

    fn retired(&self) -> bool {
        !(self.direct || self.discovered || self.hinted)
    }

    /// Retired and idle: an attempt or link under way keeps the entry until its outcome is
    /// reported, so the address cannot be handed out again (and dialled twice) meanwhile.
    fn removable(&self) -> bool {
        self.retired()
            && matches!(
                self.state,
                TargetState::Waiting { .. } | TargetState::Suspended { .. }
            )
    }

    /// The strongest reason the target exists (direct beats discovered beats hinted).
    pub fn source(&self) -> TargetSource {
        if self.direct {
            TargetSource::Direct
        } else if self.discovered {
            TargetSource::Discovered
        } else {
            TargetSource::Hinted
        }
    }

    /// The peer this address is known to lead to (from gossip or an earlier handshake).
    pub fn peer(&self) -> Option<PeerName> {
        self.peer
    }

    pub fn state(&self) -> &TargetState {
        &self.state
    }

    /// The error of the last attempt or link, cleared by a successful attempt.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The interval the next failure's delay is drawn around.
    pub fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// Dial order: direct targets first (the operator asked for them), hints last (they are only
    /// suggestions).
    fn rank(&self) -> u8 {
        match self.source() {
            TargetSource::Direct => 0,
            TargetSource::Discovered => 1,
            TargetSource::Hinted => 2,
        }
    }

    /// Known to lead to a peer we already hold a link to, so dialling it would only duplicate it.
    fn leads_to(&self, connected: &BTreeSet<PeerName>) -> bool {
        self.peer.is_some_and(|peer| connected.contains(&peer))
    }

    /// Schedules the next try after a failure and grows the interval for the one after.
    fn back_off(&mut self, rng: &mut StdRng, now: Instant) {
        let delay = jittered(rng, self.retry_interval);
        self.state = TargetState::Waiting { at: now + delay };
        self.retry_interval = self
            .retry_interval
            .mul_f64(RETRY_BACKOFF_FACTOR)
            .min(MAX_RETRY_INTERVAL);
    }
}

/// A delay uniformly drawn from `[interval/2, 3·interval/2]`, so peers that failed together do
/// not all retry in the same instant.
fn jittered(rng: &mut StdRng, interval: Duration) -> Duration {
    // The interval is capped at minutes, so nanoseconds fit a u64 comfortably.
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX / 2);
    let low = nanos / 2;
    let high = low.saturating_add(nanos);
    Duration::from_nanos(rng.random_range(low..=high))
}

/// The target table and its schedules; driven by the `ConnectionMaker` actor.
pub struct ConnectionMakerState {
    our_name: PeerName,
    default_port: u16,
    discovery: bool,
    /// Keyed by the normalised address; the map's order makes every listing deterministic.
    targets: BTreeMap<String, Target>,
    connected_peers: BTreeSet<PeerName>,
    rng: StdRng,
}

impl ConnectionMakerState {
    /// `seed` feeds the jitter of retry delays, so tests are reproducible.
    pub fn new(our_name: PeerName, default_port: u16, discovery: bool, seed: u64) -> Self {
        Self {
            our_name,
            default_port,
            discovery,
            targets: BTreeMap::new(),
            connected_peers: BTreeSet::new(),
            rng: StdRng::seed_from_u64(seed),
        }
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
        for (addr, target) in &mut self.targets {
            target.discovered = listed.contains_key(addr);
        }
        for (addr, peer) in listed {
            let target = self.targets.entry(addr).or_insert_with(|| Target::new(now));
            target.discovered = true;
            target.peer = Some(peer);
        }
        self.reap_all();
    }

    /// Adds the alternatives a refusing peer named (ignored when discovery is off).
    ///
    /// Tells which peer listens where, so that a target (say a direct one that never connected
    /// itself) is known to lead to a peer that may already be linked with us the other way.
    pub fn learn_peer_addresses(&mut self, known: &[(PeerName, SocketAddr)]) {
        for (peer, addr) in known {
            if let Some(target) = socket_target(*addr).and_then(|key| self.targets.get_mut(&key)) {
                target.peer = Some(*peer);
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
            let target = self.targets.entry(addr).or_insert_with(|| Target::new(now));
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
    pub fn due_within(
        &mut self,
        now: Instant,
        permits: usize,
        discovery_permits: usize,
    ) -> Vec<String> {
        let isolated = self.connected_peers.is_empty();
        let hint_in_flight = self.hint_in_flight();
        let mut ready: Vec<(u8, &String, TargetSource)> = self
            .targets
            .iter()
            .filter(|(_, target)| {
                matches!(target.state, TargetState::Waiting { at } if at <= now)
                    && !target.retired()
                    && !target.leads_to(&self.connected_peers)
            })
            .map(|(addr, target)| (target.rank(), addr, target.source()))
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
        let mut discovery_left = discovery_permits;
        let mut isolated_hints_left = usize::from(!hint_in_flight);
        let picked: Vec<String> = ready
            .into_iter()
            .filter(|(_, _, source)| match source {
                TargetSource::Direct => true,
                TargetSource::Hinted if isolated => take_one(&mut isolated_hints_left),
                TargetSource::Hinted | TargetSource::Discovered => take_one(&mut discovery_left),
            })
            .take(permits)
            .map(|(_, addr, _)| addr.clone())
            .collect();
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

    /// When `due` may next return something (None: nothing scheduled).
    ///
    /// Targets leading to a connected peer are left out (they wait for `set_connected_peers`,
    /// not for a time), so an overdue one cannot make the actor spin. The result may be in the
    /// past when targets are due but `due` ran out of permits.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let hints_held_back = self.connected_peers.is_empty() && self.hint_in_flight();
        self.targets
            .values()
            .filter(|target| !target.retired() && !target.leads_to(&self.connected_peers))
            .filter(|target| !(hints_held_back && target.source() == TargetSource::Hinted))
            .filter_map(|target| match target.state {
                TargetState::Waiting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Direct targets, as given (normalised), in order.
    pub fn direct_targets(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|(_, target)| target.direct)
            .map(|(addr, _)| addr.clone())
            .collect()
    }

    /// Targets not currently connected, for `weave status connections`.
    ///
    /// Also left out: forgotten or dropped targets whose last attempt is still under way, and
    /// waiting targets leading to a peer we are linked to (that link is listed instead, and the
    /// target is not dialled while it lasts). Ordered by address.
    pub fn target_statuses(&self, now: Instant) -> Vec<ConnectionStatus> {
        let mut statuses = Vec::new();
        for (addr, target) in &self.targets {
            if target.retired() {
                continue;
            }
            let (state, info) = match &target.state {
                TargetState::Connected { .. } => continue,
                TargetState::Waiting { .. } if target.leads_to(&self.connected_peers) => continue,
                TargetState::Attempting {
                    after_error: false, ..
                } => (ConnectionState::Connecting, String::new()),
                TargetState::Attempting {
                    after_error: true, ..
                } => (
                    ConnectionState::Retrying,
                    target.last_error.clone().unwrap_or_default(),
                ),
                TargetState::Waiting { at } => match &target.last_error {
                    None => (ConnectionState::Connecting, String::new()),
                    Some(error) => (
                        ConnectionState::Failed,
                        format!("{error}, retry: {}s", seconds_until(now, *at)),
                    ),
                },
                TargetState::Suspended { error } => (ConnectionState::Failed, error.clone()),
            };
            statuses.push(ConnectionStatus {
                address: addr.clone(),
                outbound: true,
                state,
                peer: target.peer,
                nick_name: None,
                info,
                overlay: None,
                attrs: vec![],
            });
        }
        statuses
    }

    /// The target at `addr` (a normalised address), unless there is none or it was forgotten or
    /// dropped and only lingers until its attempt or link ends.
    pub fn target(&self, addr: &str) -> Option<&Target> {
        self.targets.get(addr).filter(|target| !target.retired())
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
        if self.targets.get(addr).is_some_and(Target::removable) {
            self.targets.remove(addr);
        }
    }

    fn reap_all(&mut self) {
        self.targets.retain(|_, target| !target.removable());
    }
}

/// Whole seconds from `now` until `at`, rounded up (0 when already due).
fn seconds_until(now: Instant, at: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
