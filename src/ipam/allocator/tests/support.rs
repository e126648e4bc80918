//! Helpers for the allocator's tests: names, configurations, picking effects apart, and a
//! lossless cluster in which every peer reaches every other and messages arrive in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::ipam::{
    Address, Allocator, AllocatorConfig, Cidr, Effect, InitMode, IpamError, IpamMessage,
    PersistedState, Reply, Request, RequestId,
};
use crate::topology::{PeerName, PeerUid};

pub(crate) fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

pub(crate) fn cidr(text: &str) -> Cidr {
    text.parse().expect("test CIDRs are valid")
}

pub(crate) fn addr(text: &str) -> Address {
    text.parse().expect("test addresses are valid")
}

/// Peer `n` over `universe` (also the default subnet), nicknamed `node<n>`.
pub(crate) fn config(n: u64, universe: &str, mode: InitMode) -> AllocatorConfig {
    AllocatorConfig {
        local: peer(n),
        uid: PeerUid(n * 1_000 + 7),
        nickname: format!("node{n}"),
        universe: cidr(universe),
        default_subnet: cidr(universe),
        mode,
    }
}

pub(crate) fn allocate(ident: &str, subnet: &str) -> Request {
    Request::Allocate {
        ident: ident.to_string(),
        subnet: cidr(subnet),
    }
}

pub(crate) fn replies(effects: &[Effect]) -> Vec<(RequestId, Result<Reply, IpamError>)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Reply { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

/// The one reply in `effects`.
pub(crate) fn only_reply(effects: &[Effect]) -> Result<Reply, IpamError> {
    let all = replies(effects);
    assert_eq!(all.len(), 1, "expected one reply in {effects:#?}");
    all[0].1.clone()
}

/// The address of an `Allocated` reply, as text with its prefix.
pub(crate) fn allocated(result: &Result<Reply, IpamError>) -> String {
    match result {
        Ok(Reply::Allocated(cidr)) => cidr.to_string(),
        other => panic!("expected an allocation, got {other:?}"),
    }
}

pub(crate) fn persisted(effects: &[Effect]) -> Option<&PersistedState> {
    effects.iter().find_map(|effect| match effect {
        Effect::Persist(state) => Some(state),
        _ => None,
    })
}

/// Messages sent: `(Some(to), msg)` for unicasts, `(None, msg)` for broadcasts.
pub(crate) fn messages(effects: &[Effect]) -> Vec<(Option<PeerName>, IpamMessage)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Broadcast(msg) => Some((None, msg.clone())),
            Effect::Unicast { to, msg } => Some((Some(*to), msg.clone())),
            _ => None,
        })
        .collect()
}

/// Checks the ordering promise: a `Persist`, if any, comes first.
pub(crate) fn assert_persist_first(effects: &[Effect]) {
    if let Some(position) = effects.iter().position(|e| matches!(e, Effect::Persist(_))) {
        assert_eq!(position, 0, "Persist must come first: {effects:#?}");
        let count = effects
            .iter()
            .filter(|e| matches!(e, Effect::Persist(_)))
            .count();
        assert_eq!(count, 1, "one Persist per call: {effects:#?}");
    }
}

/// Allocators that all reach each other over a lossless, in-order bus.
pub(crate) struct Cluster {
    pub nodes: BTreeMap<PeerName, Allocator>,
    pub now: Instant,
    queue: VecDeque<(PeerName, PeerName, IpamMessage)>,
    /// Replies by peer, in arrival order.
    pub replies: Vec<(PeerName, RequestId, Result<Reply, IpamError>)>,
    /// Effects other than replies, persists and messages, by peer.
    pub reports: Vec<(PeerName, Effect)>,
    pub persisted: BTreeMap<PeerName, PersistedState>,
}

/// Deliveries after which a test cluster is taken to be looping.
const MAX_DELIVERIES: usize = 10_000;

impl Cluster {
    pub(crate) fn new(configs: Vec<AllocatorConfig>) -> Self {
        let nodes = configs
            .into_iter()
            .map(|config| {
                let name = config.local;
                (name, Allocator::new(config, None).expect("valid config"))
            })
            .collect();
        Self {
            nodes,
            now: Instant::now(),
            queue: VecDeque::new(),
            replies: Vec::new(),
            reports: Vec::new(),
            persisted: BTreeMap::new(),
        }
    }

    /// Tells every peer that all the others are reachable.
    pub(crate) fn connect_all(&mut self) {
        let live: BTreeSet<PeerName> = self.nodes.keys().copied().collect();
        let nicknames: BTreeMap<PeerName, String> = live
            .iter()
            .map(|&peer| (peer, format!("node{}", peer.as_u64())))
            .collect();
        for name in live.clone() {
            let node = self.nodes.get_mut(&name).expect("known node");
            let effects = node.peers_changed(&live, &nicknames, self.now);
            self.absorb(name, effects);
        }
    }

    pub(crate) fn node(&self, n: u64) -> &Allocator {
        &self.nodes[&peer(n)]
    }

    pub(crate) fn request(&mut self, n: u64, id: RequestId, request: Request) {
        let now = self.now;
        let effects = self
            .nodes
            .get_mut(&peer(n))
            .expect("known node")
            .request(id, request, now);
        self.absorb(peer(n), effects);
    }

    pub(crate) fn tick_all(&mut self, advance: Duration) {
        self.now += advance;
        for name in self.nodes.keys().copied().collect::<Vec<_>>() {
            let now = self.now;
            let effects = self.nodes.get_mut(&name).expect("known node").tick(now);
            self.absorb(name, effects);
        }
    }

    /// Delivers messages until none are left.
    pub(crate) fn settle(&mut self) {
        for _ in 0..MAX_DELIVERIES {
            let Some((from, to, msg)) = self.queue.pop_front() else {
                return;
            };
            let now = self.now;
            if let Some(node) = self.nodes.get_mut(&to) {
                let effects = node.on_message(from, msg, now);
                self.absorb(to, effects);
            }
        }
        panic!("the cluster keeps sending messages");
    }

    /// Drops every message not yet delivered (for peers that were not connected).
    pub(crate) fn forget_messages(&mut self) {
        self.queue.clear();
    }

    /// The reply to request `id` of peer `n`, if it came.
    pub(crate) fn reply_to(&self, n: u64, id: RequestId) -> Option<Result<Reply, IpamError>> {
        self.replies
            .iter()
            .find(|(from, reply_id, _)| *from == peer(n) && *reply_id == id)
            .map(|(_, _, result)| result.clone())
    }

    fn absorb(&mut self, from: PeerName, effects: Vec<Effect>) {
        assert_persist_first(&effects);
        for effect in effects {
            match effect {
                Effect::Persist(state) => {
                    self.persisted.insert(from, state);
                }
                Effect::Reply { id, result } => self.replies.push((from, id, result)),
                Effect::Broadcast(msg) => {
                    for &to in self.nodes.keys().filter(|&&to| to != from) {
                        self.queue.push_back((from, to, msg.clone()));
                    }
                }
                Effect::Unicast { to, msg } => self.queue.push_back((from, to, msg)),
                other => self.reports.push((from, other)),
            }
        }
    }
}
