//! The simulated cluster of the allocator simulation (`allocator_sim.rs`): allocators joined by
//! a message bus with random delays (so messages overtake each other) and drops (across a
//! partition, and at random while one is in force), nodes that crash and restart from what they
//! last persisted, and the checks made on every effect as it is carried out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ipam::allocator::tests::support::{config, peer};
use crate::ipam::{
    Address, Allocator, Cidr, Effect, InitMode, IpamMessage, PersistedState, Reply, Request,
    RequestId,
};
use crate::topology::{PeerName, PeerUid};

/// Small, so that space runs out: 30 host addresses for up to 5 nodes with 6 pods each.
pub(crate) const UNIVERSE: &str = "10.0.0.0/27";

/// Longest random delay of a message; later ones overtake earlier ones within it.
const MAX_DELAY: Duration = Duration::from_secs(3);
/// Chance, in percent, that a message is lost while any partition is in force.
const DROP_PERCENT_WHILE_PARTITIONED: u32 = 10;
/// Seconds per round of gossip: just over the ring's re-gossip interval, so that every node
/// broadcasts its ring at least once per round.
const ROUND_SECONDS: u64 = crate::ipam::RING_REGOSSIP_INTERVAL.as_secs() + 1;

struct InFlight {
    due: Instant,
    /// Tie-breaker for equal due times: sending order.
    seq: u64,
    from: PeerName,
    to: PeerName,
    msg: IpamMessage,
}

pub(crate) struct SimNode {
    pub mode: InitMode,
    pub alloc: Option<Allocator>,
    /// Exactly what the last `Persist` effect said.
    pub persisted: Option<PersistedState>,
    /// Removed by `rmpeer` or gone after `reset`: never comes back.
    pub removed: bool,
    /// Partition group; nodes reach each other only within a group.
    pub group: u8,
    incarnation: u64,
}

impl SimNode {
    pub(crate) fn is_up(&self) -> bool {
        self.alloc.is_some()
    }
}

/// What a request was, to check its reply against what was persisted.
#[derive(Clone, Debug)]
pub(crate) struct Outstanding {
    pub node: usize,
    pub ident: String,
    /// The address of a claim.
    pub claimed: Option<Address>,
    /// The subnet of an allocation.
    pub subnet: Option<Cidr>,
}

pub(crate) struct SimCluster {
    pub nodes: Vec<SimNode>,
    pub now: Instant,
    rng: StdRng,
    bus: Vec<InFlight>,
    seq: u64,
    next_request: RequestId,
    pub outstanding: BTreeMap<RequestId, Outstanding>,
    /// Split-brain and conflict reports, for the failure message.
    pub reports: Vec<String>,
    /// How often each kind of message, reply and event occurred, to show what a run covered.
    pub coverage: BTreeMap<&'static str, usize>,
}

impl SimCluster {
    pub(crate) fn new(modes: Vec<InitMode>, seed: u64) -> Self {
        let nodes = modes
            .into_iter()
            .map(|mode| SimNode {
                mode,
                alloc: None,
                persisted: None,
                removed: false,
                group: 0,
                incarnation: 0,
            })
            .collect();
        let mut cluster = Self {
            nodes,
            now: Instant::now(),
            rng: StdRng::seed_from_u64(seed),
            bus: Vec::new(),
            seq: 0,
            next_request: 1,
            outstanding: BTreeMap::new(),
            reports: Vec::new(),
            coverage: BTreeMap::new(),
        };
        for index in 0..cluster.nodes.len() {
            cluster.start(index);
        }
        cluster.topology_changed();
        cluster
    }

    pub(crate) fn name(index: usize) -> PeerName {
        peer(index as u64 + 1)
    }

    fn index_of(name: PeerName) -> usize {
        (name.as_u64() - 1) as usize
    }

    /// Starts (or restarts) a node from what it persisted, as a new incarnation.
    fn start(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.incarnation += 1;
        let mut config = config(index as u64 + 1, UNIVERSE, node.mode.clone());
        config.uid = PeerUid(node.incarnation * 100 + index as u64);
        match Allocator::new(config, node.persisted.clone()) {
            Ok(alloc) => node.alloc = Some(alloc),
            Err(error) => panic!("node {index} cannot restart from its persisted state: {error}"),
        }
    }

    pub(crate) fn partitioned(&self) -> bool {
        let groups: BTreeSet<u8> = self
            .nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.group)
            .collect();
        groups.len() > 1
    }

    fn reaches(&self, from: usize, to: usize) -> bool {
        let (a, b) = (&self.nodes[from], &self.nodes[to]);
        a.is_up() && b.is_up() && a.group == b.group
    }

    /// Tells every running node which peers it reaches now.
    pub(crate) fn topology_changed(&mut self) {
        let nicknames: BTreeMap<PeerName, String> = (0..self.nodes.len())
            .map(|i| (Self::name(i), format!("node{}", i + 1)))
            .collect();
        for index in 0..self.nodes.len() {
            let live: BTreeSet<PeerName> = (0..self.nodes.len())
                .filter(|&other| other != index && self.reaches(index, other))
                .map(Self::name)
                .collect();
            let now = self.now;
            if let Some(alloc) = self.nodes[index].alloc.as_mut() {
                let effects = alloc.peers_changed(&live, &nicknames, now);
                self.carry_out(index, effects);
            }
        }
    }

    pub(crate) fn request(&mut self, index: usize, ident: String, request: Request) {
        let (claimed, subnet) = match &request {
            Request::Claim { addr, .. } => (Some(*addr), None),
            Request::Allocate { subnet, .. } => (None, Some(*subnet)),
            _ => (None, None),
        };
        let id = self.next_request;
        self.next_request += 1;
        let now = self.now;
        let Some(alloc) = self.nodes[index].alloc.as_mut() else {
            return;
        };
        let op = Outstanding {
            node: index,
            ident,
            claimed,
            subnet,
        };
        self.outstanding.insert(id, op);
        let effects = alloc.request(id, request, now);
        self.carry_out(index, effects);
    }

    /// The client of the node's oldest unanswered request goes away; no reply may follow.
    pub(crate) fn cancel_oldest(&mut self, index: usize) {
        let oldest = self
            .outstanding
            .iter()
            .find(|(_, op)| op.node == index)
            .map(|(&id, _)| id);
        let Some(id) = oldest else {
            return;
        };
        self.outstanding.remove(&id);
        self.count("cancelled");
        let Some(alloc) = self.nodes[index].alloc.as_mut() else {
            return;
        };
        let effects = alloc.cancel(id);
        self.carry_out(index, effects);
    }

    /// Advances the clock by `seconds`, ticking every running node each second.
    pub(crate) fn advance(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.now += Duration::from_secs(1);
            for index in 0..self.nodes.len() {
                let now = self.now;
                if let Some(alloc) = self.nodes[index].alloc.as_mut() {
                    let effects = alloc.tick(now);
                    self.carry_out(index, effects);
                }
            }
        }
    }

    /// Delivers (or loses) up to `count` messages, the earliest due first.
    pub(crate) fn deliver(&mut self, count: usize) {
        for _ in 0..count {
            let Some(position) =
                (0..self.bus.len()).min_by_key(|&i| (self.bus[i].due, self.bus[i].seq))
            else {
                return;
            };
            let message = self.bus.swap_remove(position);
            let (from, to) = (Self::index_of(message.from), Self::index_of(message.to));
            let lost = !self.reaches(from, to)
                || (self.partitioned()
                    && self.rng.random_range(0..100) < DROP_PERCENT_WHILE_PARTITIONED);
            if lost {
                continue;
            }
            let now = self.now;
            if let Some(alloc) = self.nodes[to].alloc.as_mut() {
                let effects = alloc.on_message(message.from, message.msg, now);
                self.carry_out(to, effects);
            }
        }
    }

    /// Delivers every message, losing none between connected nodes, until the bus is empty.
    pub(crate) fn drain(&mut self) {
        const MAX_ROUNDS: usize = 10_000;
        for _ in 0..MAX_ROUNDS {
            if self.bus.is_empty() {
                return;
            }
            self.deliver(1);
        }
        panic!(
            "the cluster keeps sending messages: {} in flight",
            self.bus.len()
        );
    }

    /// Reconnects everyone.
    pub(crate) fn heal(&mut self) {
        for node in &mut self.nodes {
            node.group = 0;
        }
        self.topology_changed();
    }

    /// Rounds of [`ROUND_SECONDS`] one-second ticks, every message delivered after each tick.
    pub(crate) fn gossip_rounds(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for _ in 0..ROUND_SECONDS {
                self.advance(1);
                self.drain();
            }
        }
    }

    /// The node stops at once: what it did not persist is gone, its requests go unanswered.
    pub(crate) fn crash(&mut self, index: usize) {
        self.nodes[index].alloc = None;
        self.outstanding.retain(|_, op| op.node != index);
        self.topology_changed();
    }

    pub(crate) fn restart(&mut self, index: usize) {
        if self.nodes[index].is_up() || self.nodes[index].removed {
            return;
        }
        if self.nodes[index]
            .persisted
            .as_ref()
            .is_some_and(|s| !s.owned.is_empty())
        {
            self.count("restart with allocations");
        }
        self.start(index);
        self.topology_changed();
    }

    /// Carries out effects in order, checking each reply against what was persisted before it.
    fn carry_out(&mut self, index: usize, effects: Vec<Effect>) {
        if let Some(position) = effects.iter().position(|e| matches!(e, Effect::Persist(_))) {
            assert_eq!(position, 0, "Persist must come first");
        }
        for effect in effects {
            match effect {
                Effect::Persist(state) => self.nodes[index].persisted = Some(state),
                Effect::Reply { id, result } => self.check_reply(index, id, &result),
                Effect::Broadcast(msg) => {
                    for to in (0..self.nodes.len()).filter(|&to| to != index) {
                        self.send(index, to, msg.clone());
                    }
                }
                Effect::Unicast { to, msg } => self.send(index, Self::index_of(to), msg),
                Effect::SplitBrain { peer, reason } => {
                    self.count("split brain");
                    self.reports
                        .push(format!("node {index}: split brain with {peer}: {reason}"));
                }
                Effect::Conflict { peer, reason } => {
                    self.reports
                        .push(format!("node {index}: conflict with {peer}: {reason}"));
                }
                Effect::Adopted { from, note } => {
                    self.count("adopted");
                    self.reports
                        .push(format!("node {index}: adopted from {from}: {note}"));
                }
            }
        }
    }

    pub(crate) fn count(&mut self, what: &'static str) {
        *self.coverage.entry(what).or_default() += 1;
    }

    fn send(&mut self, from: usize, to: usize, msg: IpamMessage) {
        self.count(match &msg {
            IpamMessage::SpaceGranted { .. } => "space granted",
            IpamMessage::ClaimGranted { .. } => "claim granted",
            IpamMessage::ClaimDenied { .. } => "claim denied",
            IpamMessage::SpaceDenied { .. } => "space denied",
            IpamMessage::Paxos(_) => "paxos",
            _ => "other message",
        });
        let delay = Duration::from_millis(self.rng.random_range(0..=MAX_DELAY.as_millis() as u64));
        self.seq += 1;
        self.bus.push(InFlight {
            due: self.now + delay,
            seq: self.seq,
            from: Self::name(from),
            to: Self::name(to),
            msg,
        });
    }

    /// An allocation or claim reply must be backed by the state persisted before it.
    fn check_reply(
        &mut self,
        index: usize,
        id: RequestId,
        result: &Result<Reply, crate::ipam::IpamError>,
    ) {
        self.count(match result {
            Ok(Reply::Allocated(_)) => "allocated",
            Ok(Reply::TookOver { count, .. }) if *count > 0 => "took over",
            Ok(_) => "done",
            Err(_) => "refused",
        });
        let Some(op) = self.outstanding.remove(&id) else {
            panic!("node {index} replied to unknown or cancelled request {id}: {result:?}");
        };
        assert_eq!(op.node, index, "reply from the wrong node");
        let held = |address: Address| {
            self.nodes[index]
                .persisted
                .as_ref()
                .and_then(|state| state.owned.get(&op.ident))
                .is_some_and(|addresses| addresses.contains(&address))
        };
        match (result, op.claimed) {
            (Ok(Reply::Allocated(cidr)), _) => assert!(
                held(cidr.address),
                "node {index} replied {cidr} to {} before persisting it",
                op.ident
            ),
            (Ok(Reply::Done), Some(address)) => assert!(
                held(address),
                "node {index} confirmed the claim of {address} by {} before persisting it",
                op.ident
            ),
            _ => {}
        }
    }
}
