//! Deterministic simulation of the consensus: electors and observers exchanging state over a
//! lossy, reordering network, checked for safety after every step and liveness at the end.

use super::*;

/// Fair rounds allowed for consensus after the random schedule. A round lets every node think
/// and hear every other once; promises, the accept request and the acceptances need about four.
const FAIR_ROUNDS: usize = 10;

#[derive(Clone, Debug)]
enum Op {
    /// `to` hears `from` at once and reacts: the common, lossless case.
    Gossip {
        from: usize,
        to: usize,
    },
    /// Snapshot `from`'s state (through the codec) into the network, addressed to `to`.
    Send {
        from: usize,
        to: usize,
    },
    /// Deliver some in-flight message; `keep` leaves a copy (duplication), `think` makes the
    /// receiver react at once as the actor does (otherwise it waits for a later `Think`).
    Deliver {
        pick: usize,
        keep: bool,
        think: bool,
    },
    /// Message loss.
    Drop {
        pick: usize,
    },
    Think {
        node: usize,
    },
    ProposeAgain {
        node: usize,
    },
    /// Splits the mesh in two by the bits of `sides` (bit i: node i's side); gossip between the
    /// sides is lost until the next split or `Heal`. Partitions make proposers with partial
    /// knowledge, hence competing values, and minorities holding stale acceptances.
    Partition {
        sides: u16,
    },
    Heal,
    /// A late elector starts: until then it hears nothing and does nothing, as peers of a new
    /// mesh come up one by one (so early proposers know only part of it).
    Start {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..16, 0usize..16).prop_map(|(from, to)| Op::Gossip { from, to }),
        3 => (0usize..16, 0usize..16).prop_map(|(from, to)| Op::Send { from, to }),
        3 => (0usize..64, any::<bool>(), any::<bool>())
            .prop_map(|(pick, keep, think)| Op::Deliver { pick, keep, think }),
        1 => (0usize..64).prop_map(|pick| Op::Drop { pick }),
        2 => (0usize..16).prop_map(|node| Op::Think { node }),
        1 => (0usize..16).prop_map(|node| Op::ProposeAgain { node }),
        1 => any::<u16>().prop_map(|sides| Op::Partition { sides }),
        1 => Just(Op::Heal),
        1 => (0usize..16).prop_map(|node| Op::Start { node }),
    ]
}

#[derive(Clone, Debug)]
struct Scenario {
    electors: usize,
    observer: bool,
    uids: Vec<u64>,
    /// Electors that start only at an `Op::Start` (or when the fair phase begins).
    late: Vec<bool>,
    ops: Vec<Op>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    // Three to five electors give the most contested schedules per step; the rest keep coverage.
    let electors = prop_oneof![1 => 1usize..=2, 3 => 3usize..=5, 2 => 6usize..=9];
    (electors, any::<bool>()).prop_flat_map(|(electors, observer)| {
        (
            prop::collection::vec(any::<u64>(), electors),
            prop::collection::vec(prop::bool::weighted(0.4), electors),
            prop::collection::vec(op(), 0..300),
        )
            .prop_map(move |(uids, late, ops)| Scenario {
                electors,
                observer,
                uids,
                late,
                ops,
            })
    })
}

struct Sim {
    nodes: Vec<Paxos>,
    quorum: usize,
    participants: BTreeSet<PeerName>,
    in_flight: Vec<(usize, usize, PaxosState)>,
    /// Each node's side of the current partition (all 0 when healed).
    sides: Vec<bool>,
    alive: Vec<bool>,
    /// The first value any node decided: every later decision anywhere must equal it.
    agreed: Option<Vec<PeerName>>,
    /// Nodes that have decided, which must never go back to undecided.
    decided: Vec<bool>,
    /// Omniscient history: every accepted proposal's value, and every elector that ever accepted
    /// it (from its own entry). Lets the check see a proposal chosen before any node learns it.
    values_ever: BTreeMap<ProposalId, Vec<PeerName>>,
    acceptors_ever: BTreeMap<ProposalId, BTreeSet<PeerName>>,
}

impl Sim {
    fn new(scenario: &Scenario) -> Self {
        let quorum = quorum_for(scenario.electors);
        let mut nodes: Vec<Paxos> = (1..=scenario.electors as u64)
            .zip(&scenario.uids)
            .map(|(n, &uid)| Paxos::new(name(n), PeerUid(uid), quorum))
            .collect();
        if scenario.observer {
            nodes.push(Paxos::observer(quorum));
        }
        let count = nodes.len();
        Sim {
            nodes,
            quorum,
            participants: (1..=scenario.electors as u64).map(name).collect(),
            in_flight: Vec::new(),
            sides: vec![false; count],
            alive: (0..count)
                .map(|node| !scenario.late.get(node).copied().unwrap_or(false))
                .collect(),
            agreed: None,
            decided: vec![false; count],
            values_ever: BTreeMap::new(),
            acceptors_ever: BTreeMap::new(),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let count = self.nodes.len();
        match *op {
            Op::Gossip { from, to } => {
                let (from, to) = (from % count, to % count);
                if from != to && self.alive[from] && self.connected(from, to) {
                    let snapshot = self.nodes[from].state().clone();
                    if self.nodes[to].merge(&snapshot) {
                        self.nodes[to].think();
                    }
                }
            }
            Op::Send { from, to } => {
                let (from, to) = (from % count, to % count);
                if from != to && self.alive[from] {
                    let bytes = encode_state(self.nodes[from].state()).unwrap();
                    let snapshot = decode_state(&bytes).unwrap();
                    prop_assert_eq!(&snapshot, self.nodes[from].state());
                    self.in_flight.push((from, to, snapshot));
                }
            }
            Op::Deliver { pick, keep, think } if !self.in_flight.is_empty() => {
                let pick = pick % self.in_flight.len();
                let (from, to, state) = if keep {
                    self.in_flight[pick].clone()
                } else {
                    self.in_flight.swap_remove(pick)
                };
                if self.connected(from, to) && self.nodes[to].merge(&state) && think {
                    self.nodes[to].think();
                }
            }
            Op::Drop { pick } if !self.in_flight.is_empty() => {
                let pick = pick % self.in_flight.len();
                self.in_flight.swap_remove(pick);
            }
            Op::Think { node } if self.alive[node % count] => {
                self.nodes[node % count].think();
            }
            Op::ProposeAgain { node } if self.alive[node % count] => {
                self.nodes[node % count].propose_again();
            }
            Op::Start { node } => self.alive[node % count] = true,
            Op::Partition { sides } => {
                for (node, side) in self.sides.iter_mut().enumerate() {
                    *side = sides & (1 << node) != 0;
                }
            }
            Op::Heal => self.sides.fill(false),
            Op::Deliver { .. } | Op::Drop { .. } | Op::Think { .. } | Op::ProposeAgain { .. } => {}
        }
        self.check_safety()
    }

    /// Whether a message from `from` reaches `to` now (a dead receiver loses it).
    fn connected(&self, from: usize, to: usize) -> bool {
        self.alive[to] && self.sides[from] == self.sides[to]
    }

    fn check_safety(&mut self) -> Result<(), TestCaseError> {
        self.check_paxos_invariant()?;
        for (index, node) in self.nodes.iter().enumerate() {
            prop_assert_eq!(node.state().check(), Ok(()));
            let Some(value) = node.consensus() else {
                prop_assert!(!self.decided[index], "node {} forgot its decision", index);
                continue;
            };
            self.decided[index] = true;
            prop_assert!(
                value.windows(2).all(|pair| pair[0] < pair[1]),
                "{:?}",
                value
            );
            prop_assert!(
                value.len() >= self.quorum,
                "{:?} below quorum {}",
                value,
                self.quorum
            );
            prop_assert!(
                value.iter().all(|name| self.participants.contains(name)),
                "{:?} names a non-elector",
                value
            );
            match &self.agreed {
                None => self.agreed = Some(value),
                Some(agreed) => prop_assert_eq!(agreed, &value, "two decisions"),
            }
        }
        Ok(())
    }

    /// Paxos's invariant, over the whole history: one value per proposal, and once a proposal is
    /// chosen (a quorum accepted it, whether or not anyone knows yet) every higher accepted
    /// proposal carries its value.
    fn check_paxos_invariant(&mut self) -> Result<(), TestCaseError> {
        for node in &self.nodes {
            for (id, claims) in node.state().nodes() {
                let Some(accepted) = claims.accepted else {
                    continue;
                };
                let value = node.state().value(&accepted).unwrap_or_default().to_vec();
                let known = self
                    .values_ever
                    .entry(accepted)
                    .or_insert_with(|| value.clone());
                prop_assert_eq!(&*known, &value, "two values for {:?}", accepted);
                // Only an elector's own entry is first-hand; copies may lag behind it.
                if Some(*id) == node.me {
                    self.acceptors_ever
                        .entry(accepted)
                        .or_default()
                        .insert(id.name);
                }
            }
        }
        let chosen = self
            .acceptors_ever
            .iter()
            .find(|(_, names)| names.len() >= self.quorum);
        if let Some((&chosen, _)) = chosen {
            let value = &self.values_ever[&chosen];
            for (later, later_value) in self.values_ever.range(chosen..) {
                prop_assert_eq!(later_value, value, "{:?} chosen, then {:?}", chosen, later);
            }
        }
        Ok(())
    }

    /// Every node thinks, then every node hears every other (no loss); true once all decided.
    fn fair_round(&mut self) -> Result<bool, TestCaseError> {
        for node in &mut self.nodes {
            node.think();
        }
        self.check_safety()?;
        for from in 0..self.nodes.len() {
            for to in 0..self.nodes.len() {
                if from != to {
                    let snapshot = self.nodes[from].state().clone();
                    if self.nodes[to].merge(&snapshot) {
                        self.nodes[to].think();
                    }
                    self.check_safety()?;
                }
            }
        }
        Ok(self.nodes.iter().all(|node| node.consensus().is_some()))
    }
}

fn simulation_config() -> ProptestConfig {
    ProptestConfig {
        cases: crate::sim_cases::sim_cases(128),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(simulation_config())]

    #[test]
    fn simulated_consensus_is_safe_and_live(scenario in scenario()) {
        let mut sim = Sim::new(&scenario);
        for op in &scenario.ops {
            sim.step(op)?;
        }
        // The fair phase: everyone up, no partition; whatever is still in flight is lost.
        sim.in_flight.clear();
        sim.alive.fill(true);
        sim.sides.fill(false);
        let mut decided = false;
        for _ in 0..FAIR_ROUNDS {
            if sim.fair_round()? {
                decided = true;
                break;
            }
        }
        prop_assert!(decided, "no consensus after {} fair rounds", FAIR_ROUNDS);
        let agreed = sim.agreed.clone();
        for node in &sim.nodes {
            prop_assert_eq!(&node.consensus(), &agreed);
        }
    }
}
