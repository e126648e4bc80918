//! Property tests of the ring and space together, over simulated clusters: peers allocate,
//! donate, hand out single addresses, report free space, leave (`reset`) and are removed
//! (`rmpeer`), each edit made by the owner as the IPAM actor would, while gossip delivers any
//! ring state ever produced, stale ones included, to any live peer. Checked throughout: no
//! merge is refused, each peer's space is exactly what its ring says it owns, no address has two
//! live owners, and every ring covers the range exactly once. At the end, every live peer merges
//! everything in its own random order and all end with the same ring. The merge itself is also
//! checked to be commutative, associative and idempotent on states from these histories.

use proptest::prelude::*;

use crate::ipam::{Address, AddressRange, Cidr, Ring, RingState, Space};
use crate::topology::PeerName;

/// Small enough that donations run out and parts get fragmented quickly.
const UNIVERSE: &str = "10.0.0.0/24";
const MAX_PEERS: usize = 5;

fn peer(index: usize) -> PeerName {
    PeerName::from_u64(index as u64 + 1).expect("small names fit in 48 bits")
}

/// A peer that owns nothing, so that its merges are the plain join of rings.
fn observer() -> PeerName {
    PeerName::from_u64(999).expect("fits")
}

/// Subnets allocations and donations ask within: all, halves, a /28 and a /30.
fn subnets() -> Vec<Cidr> {
    [
        UNIVERSE,
        "10.0.0.0/25",
        "10.0.0.128/25",
        "10.0.0.32/28",
        "10.0.0.200/30",
    ]
    .iter()
    .map(|s| s.parse().expect("valid subnet"))
    .collect()
}

#[derive(Clone, Debug)]
enum Op {
    /// Deliver a state from the history to a peer.
    Gossip {
        to: usize,
        snapshot: usize,
    },
    Allocate {
        node: usize,
        subnet: usize,
    },
    Free {
        node: usize,
        pick: usize,
    },
    ReportFree {
        node: usize,
    },
    /// `asker` ran out and asked `donor`, which donates and sends its ring back.
    Donate {
        donor: usize,
        asker: usize,
        subnet: usize,
    },
    /// `asker` claims a specific address; if another peer owns it, that peer grants it.
    Claim {
        asker: usize,
        offset: u32,
    },
    /// `node` leaves, handing its ranges to `heir`.
    Reset {
        node: usize,
        heir: usize,
    },
    /// `victim` died; `taker` takes over its ranges (after hearing its last state).
    RmPeer {
        victim: usize,
        taker: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..MAX_PEERS;
    prop_oneof![
        6 => (node.clone(), any::<usize>()).prop_map(|(to, snapshot)| Op::Gossip { to, snapshot }),
        4 => (node.clone(), 0..5usize).prop_map(|(node, subnet)| Op::Allocate { node, subnet }),
        2 => (node.clone(), any::<usize>()).prop_map(|(node, pick)| Op::Free { node, pick }),
        2 => node.clone().prop_map(|node| Op::ReportFree { node }),
        3 => (node.clone(), node.clone(), 0..5usize)
            .prop_map(|(donor, asker, subnet)| Op::Donate { donor, asker, subnet }),
        2 => (node.clone(), 0u32..256).prop_map(|(asker, offset)| Op::Claim { asker, offset }),
        1 => (node.clone(), node.clone()).prop_map(|(node, heir)| Op::Reset { node, heir }),
        1 => (node.clone(), node).prop_map(|(victim, taker)| Op::RmPeer { victim, taker }),
    ]
}

struct Node {
    ring: Ring,
    space: Space,
    alive: bool,
}

struct Cluster {
    nodes: Vec<Node>,
    /// Every ring state any peer ever had, in order: what gossip may still deliver.
    history: Vec<RingState>,
}

impl Cluster {
    /// `peers` peers over the universe; with `seeded`, all build the ring at once (`seed=`),
    /// otherwise only the first does and the others learn it by gossip (as after consensus).
    fn new(peers: usize, seeded: bool) -> Self {
        let universe: Cidr = UNIVERSE.parse().expect("valid universe");
        let names: Vec<PeerName> = (0..peers).map(peer).collect();
        let nodes = (0..peers)
            .map(|index| {
                let mut ring = Ring::new(universe, peer(index));
                let mut space = Space::new();
                if seeded || index == 0 {
                    ring.claim_for_peers(&names).expect("empty ring");
                    space.add_ranges(&ring.owned_ranges(peer(index)));
                }
                Node {
                    ring,
                    space,
                    alive: true,
                }
            })
            .collect::<Vec<_>>();
        let history = nodes.iter().map(|n| n.ring.state().clone()).collect();
        Self { nodes, history }
    }

    fn live(&self, index: usize) -> Option<usize> {
        let index = index % self.nodes.len();
        self.nodes[index].alive.then_some(index)
    }

    fn record(&mut self, index: usize) {
        self.history.push(self.nodes[index].ring.state().clone());
    }

    /// Merges `state` into peer `to` and keeps its space in step, as the IPAM actor does.
    fn deliver(&mut self, state: &RingState, to: usize) -> Result<(), TestCaseError> {
        let node = &mut self.nodes[to];
        let space = &node.space;
        let outcome = node
            .ring
            .merge(state, |r| space.has_allocations_in(r))
            .map_err(|e| TestCaseError::fail(format!("peer {to} refused a merge: {e}")))?;
        node.space.add_ranges(&outcome.gained);
        for lost in outcome.lost {
            prop_assert!(node.space.release(lost).is_ok());
        }
        self.record(to);
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        let subnets = subnets();
        match op {
            Op::Gossip { to, snapshot } => {
                if let Some(to) = self.live(to) {
                    let state = self.history[snapshot % self.history.len()].clone();
                    self.deliver(&state, to)?;
                }
            }
            Op::Allocate { node, subnet } => {
                if let Some(node) = self.live(node) {
                    self.nodes[node].space.allocate(subnets[subnet]);
                }
            }
            Op::Free { node, pick } => {
                if let Some(node) = self.live(node) {
                    let space = &mut self.nodes[node].space;
                    let allocated: Vec<Address> = space
                        .allocated_ranges()
                        .iter()
                        .flat_map(|r| (r.start.as_u32()..r.end.as_u32()).map(Address::new))
                        .collect();
                    if !allocated.is_empty() {
                        prop_assert!(space.free(allocated[pick % allocated.len()]).is_ok());
                    }
                }
            }
            Op::ReportFree { node } => {
                if let Some(node) = self.live(node) {
                    let Node { ring, space, .. } = &mut self.nodes[node];
                    if ring.report_free(|r| space.free_in(r)) {
                        self.record(node);
                    }
                }
            }
            Op::Donate {
                donor,
                asker,
                subnet,
            } => {
                let (Some(donor), Some(asker)) = (self.live(donor), self.live(asker)) else {
                    return Ok(());
                };
                if donor == asker {
                    return Ok(());
                }
                let Node { ring, space, .. } = &mut self.nodes[donor];
                if let Some(block) = space.donate(subnets[subnet]) {
                    prop_assert!(ring.grant_range(block, peer(asker)).is_ok());
                    self.record(donor);
                    let state = self.nodes[donor].ring.state().clone();
                    self.deliver(&state, asker)?;
                }
            }
            Op::Claim { asker, offset } => self.claim(asker, offset)?,
            Op::Reset { node, heir } => {
                let (Some(node), Some(heir)) = (self.live(node), self.live(heir)) else {
                    return Ok(());
                };
                if node == heir {
                    return Ok(());
                }
                let leaving = &mut self.nodes[node];
                leaving.ring.transfer(peer(node), peer(heir));
                leaving.space.clear();
                leaving.alive = false;
                self.record(node);
                let state = self.nodes[node].ring.state().clone();
                self.deliver(&state, heir)?;
            }
            Op::RmPeer { victim, taker } => {
                let (Some(victim), Some(taker)) = (self.live(victim), self.live(taker)) else {
                    return Ok(());
                };
                if victim == taker {
                    return Ok(());
                }
                self.nodes[victim].alive = false;
                let last_words = self.nodes[victim].ring.state().clone();
                self.deliver(&last_words, taker)?;
                let Node { ring, space, .. } = &mut self.nodes[taker];
                space.add_ranges(&ring.remove_peer(peer(victim)));
                self.record(taker);
            }
        }
        Ok(())
    }

    fn claim(&mut self, asker: usize, offset: u32) -> Result<(), TestCaseError> {
        let Some(asker) = self.live(asker) else {
            return Ok(());
        };
        let address = Address::new(0x0A00_0000 + offset);
        let Some(owner) = self.nodes[asker].ring.owner(address) else {
            return Ok(());
        };
        let Some(owner) = (0..self.nodes.len()).find(|&i| peer(i) == owner) else {
            return Ok(());
        };
        if owner != asker && self.nodes[owner].alive {
            let single = AddressRange::single(address).expect("not the top address");
            let Node { ring, space, .. } = &mut self.nodes[owner];
            // The owner grants only what it owns and has free; otherwise the claim is refused.
            if space.release(single).is_err() {
                return Ok(());
            }
            prop_assert!(ring.grant_range(single, peer(asker)).is_ok());
            self.record(owner);
            let state = self.nodes[owner].ring.state().clone();
            self.deliver(&state, asker)?;
            prop_assert!(self.nodes[asker].space.claim(address).is_ok());
        } else if owner == asker {
            let _ = self.nodes[asker].space.claim(address);
        }
        Ok(())
    }

    /// Spaces match rings, live owners never overlap, rings cover the range exactly.
    fn check(&self) -> Result<(), TestCaseError> {
        let mut claimed: Vec<AddressRange> = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            check_coverage(node.ring.state())?;
            if !node.alive {
                continue;
            }
            prop_assert_eq!(node.space.owned(), node.ring.owned_ranges(peer(index)));
            claimed.extend(node.space.owned());
        }
        claimed.sort();
        for pair in claimed.windows(2) {
            prop_assert!(pair[0].end <= pair[1].start, "two live owners: {:?}", pair);
        }
        Ok(())
    }
}

/// The parts of a ring tile the range: sorted, starting at its start, summing to its size. And
/// no free count exceeds its part: every edit that shrinks a part bumps its version, so a stale
/// count from before the shrink never wins.
fn check_coverage(state: &RingState) -> Result<(), TestCaseError> {
    let entries = state.entries();
    if entries.is_empty() {
        return Ok(());
    }
    prop_assert_eq!(entries[0].token, state.range().start());
    let mut total = 0u64;
    for (index, entry) in entries.iter().enumerate() {
        let part = state.part(index);
        prop_assert!(!part.is_empty(), "empty part at {}", part.start);
        prop_assert!(
            entry.free <= part.size(),
            "free over size at {}",
            part.start
        );
        total += u64::from(part.size());
    }
    prop_assert_eq!(total, u64::from(state.range().size()));
    Ok(())
}

/// The plain join of `states` (in that order) as seen by a peer owning nothing.
fn join_all<'a>(states: impl IntoIterator<Item = &'a RingState>) -> RingState {
    let universe: Cidr = UNIVERSE.parse().expect("valid universe");
    let mut ring = Ring::new(universe, observer());
    for state in states {
        ring.merge(state, |_| false)
            .expect("an observer accepts any history");
    }
    ring.state().clone()
}

/// `items` reordered by sorting on `keys` (cycled): a random permutation from the generator.
fn shuffled<T: Clone>(items: &[T], keys: &[u32]) -> Vec<T> {
    let mut keyed: Vec<(u32, usize)> = (0..items.len())
        .map(|i| (keys[i % keys.len()].wrapping_mul(i as u32 + 1), i))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| items[i].clone()).collect()
}

proptest! {
    #[test]
    fn rings_converge_and_never_give_an_address_two_owners(
        peers in 2..=MAX_PEERS,
        seeded in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
        order_keys in prop::collection::vec(any::<u32>(), 1..16),
    ) {
        let mut cluster = Cluster::new(peers, seeded);
        for op in ops {
            cluster.apply(op)?;
            cluster.check()?;
        }
        let everything = cluster.history.clone();
        let expected = join_all(&everything);
        for index in 0..cluster.nodes.len() {
            if cluster.nodes[index].alive {
                let keys: Vec<u32> = order_keys.iter().map(|k| k ^ index as u32).collect();
                for state in shuffled(&everything, &keys) {
                    cluster.deliver(&state, index)?;
                }
                prop_assert_eq!(cluster.nodes[index].ring.state(), &expected);
            }
        }
        cluster.check()?;
        prop_assert_eq!(join_all(everything.iter().rev()), expected);
    }

    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        peers in 2..=MAX_PEERS,
        ops in prop::collection::vec(op(), 1..60),
        picks in (any::<usize>(), any::<usize>(), any::<usize>()),
    ) {
        let mut cluster = Cluster::new(peers, true);
        for op in ops {
            cluster.apply(op)?;
        }
        let history = &cluster.history;
        let a = &history[picks.0 % history.len()];
        let b = &history[picks.1 % history.len()];
        let c = &history[picks.2 % history.len()];
        prop_assert_eq!(join_all([a, b]), join_all([b, a]));
        prop_assert_eq!(join_all([a, a]), join_all([a]));
        let ab = join_all([a, b]);
        let bc = join_all([b, c]);
        prop_assert_eq!(join_all([&ab, c]), join_all([a, &bc]));
        check_coverage(&join_all([a, b, c]))?;
    }
}
