//! The IPAM allocator: a pure, synchronous state machine that owns this peer's view of IP
//! allocation (the ring, the local space, which ident holds which address, the requests waiting
//! for space or for consensus) and decides what to persist, gossip and reply. The IPAM actor
//! feeds it requests, gossip, topology changes and clock ticks, and carries out the returned
//! [`Effect`]s in order; there is no I/O and no clock here, so tests drive it step by step.
//!
//! The ring and the space are kept in step exactly as [`crate::ipam`] prescribes. Parts:
//! - `allocator_api.rs`: the types exchanged with the actor;
//! - `allocator_local.rs`: requests from the HTTP API (allocate, claim, free, rmpeer, reset);
//! - `allocator_pending.rs`: requests waiting for space, an address's owner or the ring;
//! - `allocator_gossip.rs`: messages from other peers (rings, space and address requests);
//! - `allocator_bootstrap.rs`: making the ring (seed, consensus, observer);
//! - `allocator_status.rs`: `weave status ipam` and the metrics.

pub(super) mod api;
mod bootstrap;
mod gossip;
mod local;
mod pending;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use self::api::{AddressCidr, AllocatorConfig, Effect, PersistedState, Request};
use self::api::{InitMode, RequestId};
use super::messages::IpamMessage;
use super::{Address, AddressRange, Cidr, IpamError, Ring, RingState, Space};
use crate::topology::PeerName;

use bootstrap::Bootstrap;
use pending::Pending;
pub use status::{IpamState, IpamStatus, PeerShareStatus};

/// How often the whole ring is broadcast even when unchanged, so that peers that missed an
/// update (a lost message, a healed partition) catch up: the mesh's periodic gossip interval
/// in Weave Net (`mesh/gossip.go`, 30 s).
pub const RING_REGOSSIP_INTERVAL: Duration = Duration::from_secs(30);

/// Changes of free counts alone (every allocation and free makes one) are not broadcast at
/// once but at most this often, coalescing bursts of pod starts. Counts only guide the choice of
/// donors, and a stale count costs one denied request. Ours; Weave Net waits for its 30 s
/// periodic gossip.
pub const FREE_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A peer whose ring contradicts ours is reported at most this often (per peer and reason), so
/// that its periodic gossip does not flood the log (Weave Net issue #3659). Ours.
pub const CONFLICT_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The allocator of one peer. See the module documentation. `Clone` lets the actor keep the last
/// persisted allocator and go back to it when a write fails.
#[derive(Clone)]
pub struct Allocator {
    config: AllocatorConfig,
    ring: Ring,
    /// Always owns exactly `ring.owned_ranges(local)`; its allocations are exactly the addresses
    /// in `owned`.
    space: Space,
    owned: BTreeMap<String, Vec<Address>>,
    /// The subnet of owned addresses outside the default subnet (for lookups).
    subnets: BTreeMap<Address, Cidr>,
    bootstrap: Bootstrap,
    pending: Pending,
    /// Peers the topology says are reachable (never ourselves).
    live: BTreeSet<PeerName>,
    /// Every nickname ever heard of, so that `rmpeer` by nickname works after the peer is gone.
    nicknames: BTreeMap<PeerName, String>,
    /// Weighted random choice of donors; seeded from our name and uid so that runs replay.
    rng: StdRng,
    last_ring_broadcast: Option<Instant>,
    /// Free counts changed since the last broadcast of the ring.
    free_report_due: bool,
    conflicts_reported: BTreeMap<PeerName, (String, Instant)>,
    /// Effects of the call in progress.
    out: Outbox,
}

/// What one call produced, turned into the effect list by [`Allocator::finish`].
#[derive(Clone, Default)]
struct Outbox {
    /// Our state changed: persist it before anything else.
    persist: bool,
    /// Broadcast the ring now: who owns what changed by our own edit, or a re-gossip is due.
    broadcast_ring: bool,
    effects: Vec<Effect>,
}

impl Allocator {
    /// An allocator from its configuration and what was persisted last time. The persisted
    /// ring is checked as gossip would be and must cover the configured range; every persisted
    /// address must lie in our part of it, once. Nothing is dropped: any mismatch is an error,
    /// and the actor decides (typically: report it, and start afresh only if told to).
    pub fn new(
        config: AllocatorConfig,
        restored: Option<PersistedState>,
    ) -> Result<Self, IpamError> {
        if !config
            .universe
            .range()
            .contains_range(&config.default_subnet.range())
        {
            return Err(IpamError::DefaultSubnetOutsideRange {
                subnet: config.default_subnet,
                range: config.universe,
            });
        }
        if matches!(&config.mode, InitMode::Seed(peers) if peers.is_empty()) {
            return Err(IpamError::EmptySeedList);
        }
        let seed = config.local.as_u64() ^ config.uid.0.rotate_left(16);
        let mut allocator = Self {
            ring: Ring::new(config.universe, config.local),
            space: Space::new(),
            owned: BTreeMap::new(),
            subnets: BTreeMap::new(),
            bootstrap: Bootstrap::Idle,
            pending: Pending::default(),
            live: BTreeSet::new(),
            nicknames: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            last_ring_broadcast: None,
            free_report_due: false,
            conflicts_reported: BTreeMap::new(),
            out: Outbox::default(),
            config,
        };
        if let Some(state) = restored {
            allocator.restore(state)?;
        }
        Ok(allocator)
    }

    fn restore(&mut self, state: PersistedState) -> Result<(), IpamError> {
        let PersistedState {
            ring,
            owned,
            paxos,
            subnets,
        } = state;
        let address_count = owned.values().map(Vec::len).sum();
        match ring {
            Some(ring) if !ring.entries().is_empty() => {
                if ring.range() != self.config.universe {
                    return Err(IpamError::PersistedRangeMismatch {
                        persisted: ring.range(),
                        configured: self.config.universe,
                    });
                }
                self.ring =
                    Ring::restore(ring, self.config.local).map_err(IpamError::PersistedRing)?;
                self.space
                    .add_ranges(&self.ring.owned_ranges(self.config.local));
                self.bootstrap = Bootstrap::Established;
            }
            _ if address_count > 0 => {
                return Err(IpamError::PersistedAllocationsWithoutRing {
                    count: address_count,
                });
            }
            _ => {
                if let Some(paxos) = paxos {
                    self.bootstrap = Bootstrap::restored(&self.config, &paxos);
                }
            }
        }
        let mut holders: BTreeMap<Address, &str> = BTreeMap::new();
        for (ident, addresses) in &owned {
            for &address in addresses {
                if let Some(first) = holders.insert(address, ident) {
                    return Err(IpamError::PersistedAddressTwice {
                        address,
                        first: first.to_string(),
                        second: ident.clone(),
                    });
                }
                self.space
                    .claim(address)
                    .map_err(|_| IpamError::PersistedAddressNotOwned {
                        address,
                        ident: ident.clone(),
                    })?;
            }
        }
        // Subnets of addresses no longer held are meaningless; the rest are kept.
        self.subnets = subnets
            .into_iter()
            .filter(|(address, _)| holders.contains_key(address))
            .collect();
        // An ident with an empty list holds nothing; it is not kept as a key.
        self.owned = owned
            .into_iter()
            .filter(|(_, addresses)| !addresses.is_empty())
            .collect();
        Ok(())
    }

    /// Handles a request from the HTTP API. Its reply may come now or from a later call.
    pub fn request(&mut self, id: RequestId, request: Request, now: Instant) -> Vec<Effect> {
        // Idents are stored and shown: refused before anything is done with them.
        if let Some(Err(invalid)) = request.ident().map(super::check_ident) {
            self.reply(id, Err(invalid));
            return self.finish(Some(now));
        }
        match request {
            Request::Allocate { ident, subnet } => self.allocate(id, ident, subnet, now),
            Request::Claim {
                ident,
                addr,
                subnet,
            } => self.claim(id, ident, addr, subnet, now),
            Request::Free { ident } => self.free(id, &ident, now),
            Request::FreeAddress { ident, addr } => self.free_address(id, &ident, addr, now),
            Request::RemovePeer { peer } => self.remove_peer(id, &peer, now),
            Request::Reset => self.reset(id),
        }
        self.finish(Some(now))
    }

    /// The addresses of `ident`, each with its subnet's prefix length (`GET /ip/{id}`).
    pub fn lookup(&self, ident: &str) -> Vec<AddressCidr> {
        self.owned
            .get(ident)
            .into_iter()
            .flatten()
            .map(|&address| AddressCidr {
                address,
                subnet: self.subnet_of(address),
            })
            .collect()
    }

    /// Every ident with its addresses (`GET /ip`).
    pub fn owned(&self) -> &BTreeMap<String, Vec<Address>> {
        &self.owned
    }

    /// The ring as it stands, once it is made (`GET /ring`, the report, tests).
    pub fn ring_state(&self) -> Option<&RingState> {
        (!self.ring.is_empty()).then(|| self.ring.state())
    }

    /// The ranges this peer owns, as maximal runs.
    pub fn owned_ranges(&self) -> Vec<AddressRange> {
        self.space.owned()
    }

    /// The HTTP client of request `id` went away: drop the request, no reply.
    pub fn cancel(&mut self, id: RequestId) -> Vec<Effect> {
        self.pending.remove_request(id);
        self.finish(None)
    }

    /// Handles a gossip message from `from`.
    pub fn on_message(&mut self, from: PeerName, msg: IpamMessage, now: Instant) -> Vec<Effect> {
        if from != self.config.local {
            self.handle_message(from, msg, now);
            self.process_pending(now);
        }
        self.finish(Some(now))
    }

    /// The topology changed: `live` are the reachable peers, `nicknames` what peers call
    /// themselves. A peer that just became reachable is sent our ring (or consensus state).
    pub fn peers_changed(
        &mut self,
        live: &BTreeSet<PeerName>,
        nicknames: &BTreeMap<PeerName, String>,
        now: Instant,
    ) -> Vec<Effect> {
        let live: BTreeSet<PeerName> = live
            .iter()
            .copied()
            .filter(|&peer| peer != self.config.local)
            .collect();
        let newcomers: Vec<PeerName> = live.difference(&self.live).copied().collect();
        self.live = live;
        self.pending.forget_requests_to_unreachable(&self.live);
        self.nicknames
            .extend(nicknames.iter().map(|(peer, nick)| (*peer, nick.clone())));
        if !newcomers.is_empty() {
            self.greet(&newcomers, now);
        }
        self.process_pending(now);
        self.finish(Some(now))
    }

    /// About once a second: retries what waits (space, addresses, consensus) and re-gossips.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        self.tick_bootstrap(now);
        self.pending.expire_denials(now);
        self.process_pending(now);
        if !self.ring.is_empty() {
            let since_broadcast = self
                .last_ring_broadcast
                .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
            if since_broadcast >= RING_REGOSSIP_INTERVAL
                || (self.free_report_due && since_broadcast >= FREE_REPORT_INTERVAL)
            {
                self.out.broadcast_ring = true;
            }
        }
        self.finish(Some(now))
    }

    /// Ends a call: reports free counts into the ring, then lists the effects with `Persist`
    /// first, the ring broadcast next, and the rest in the order they were made.
    fn finish(&mut self, now: Option<Instant>) -> Vec<Effect> {
        if !self.ring.is_empty() {
            let space = &self.space;
            if self.ring.report_free(|part| space.free_in(part)) {
                self.out.persist = true;
                self.free_report_due = true;
            }
        }
        let out = std::mem::take(&mut self.out);
        let mut effects = Vec::with_capacity(out.effects.len() + 2);
        if out.persist {
            effects.push(Effect::Persist(self.persisted_state()));
        }
        if out.broadcast_ring
            && !self.ring.is_empty()
            && let Some(now) = now
        {
            effects.push(Effect::Broadcast(IpamMessage::Ring(
                self.ring.state().clone(),
            )));
            self.last_ring_broadcast = Some(now);
            self.free_report_due = false;
        }
        effects.extend(out.effects);
        effects
    }

    /// Everything a restart needs.
    pub fn persisted_state(&self) -> PersistedState {
        PersistedState {
            ring: self.ring_state().cloned(),
            owned: self.owned.clone(),
            paxos: self.bootstrap.paxos().map(|paxos| paxos.state().clone()),
            subnets: self.subnets.clone(),
        }
    }

    fn reply(&mut self, id: RequestId, result: Result<super::Reply, IpamError>) {
        self.out.effects.push(Effect::Reply { id, result });
    }

    fn unicast(&mut self, to: PeerName, msg: IpamMessage) {
        self.out.effects.push(Effect::Unicast { to, msg });
    }

    fn broadcast(&mut self, msg: IpamMessage) {
        self.out.effects.push(Effect::Broadcast(msg));
    }

    /// Sends our ring to `to`, if we have one.
    fn send_ring(&mut self, to: PeerName) {
        if !self.ring.is_empty() {
            self.unicast(to, IpamMessage::Ring(self.ring.state().clone()));
        }
    }

    /// Records that `ident` holds `address` (already allocated in the space).
    fn hold(&mut self, ident: &str, address: Address, subnet: Cidr) {
        self.owned
            .entry(ident.to_string())
            .or_default()
            .push(address);
        if subnet != self.config.default_subnet {
            self.subnets.insert(address, subnet);
        }
        self.out.persist = true;
    }

    /// The ident holding `address`, if any.
    fn holder_of(&self, address: Address) -> Option<&str> {
        if !self.space.is_allocated(address) {
            return None;
        }
        self.owned
            .iter()
            .find(|(_, addresses)| addresses.contains(&address))
            .map(|(ident, _)| ident.as_str())
    }

    /// An address `ident` holds in `subnet`, for idempotent allocation (as Weave Net's
    /// `findOwned`: any held address inside the subnet).
    fn address_of(&self, ident: &str, subnet: Cidr) -> Option<Address> {
        self.owned
            .get(ident)?
            .iter()
            .copied()
            .find(|&address| subnet.contains(address))
    }

    /// The subnet `address` was allocated or claimed in: recorded when not the default one.
    fn subnet_of(&self, address: Address) -> Cidr {
        match self.subnets.get(&address) {
            Some(&subnet) => subnet,
            None if self.config.default_subnet.contains(address) => self.config.default_subnet,
            None => self.config.universe,
        }
    }

    fn is_live(&self, peer: PeerName) -> bool {
        self.live.contains(&peer)
    }
}

#[cfg(test)]
mod tests;
