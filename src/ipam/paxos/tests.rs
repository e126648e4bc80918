//! Tests of the gossip Paxos: small scenarios step by step (including the two orderings that
//! break Paxos's acceptor and proposer rules when they are got wrong), the codec's limits, the
//! merge laws, and a deterministic simulation of whole meshes (lossy, duplicating and reordering
//! gossip, partitions, late starters, random thinking and re-proposing) checking after every step
//! that no two nodes decide differently and that no proposal contradicts a chosen one, then that
//! a fair phase always reaches consensus.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::codec::{BoundedVec, WireNode, WireState};
use super::*;

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

fn uid(n: u64) -> PeerUid {
    PeerUid(1_000 + n)
}

fn node_id(n: u64, incarnation: u64) -> NodeId {
    NodeId {
        name: name(n),
        uid: PeerUid(incarnation),
    }
}

fn elector(n: u64, quorum: usize) -> Paxos {
    Paxos::new(name(n), uid(n), quorum)
}

fn names(ns: &[u64]) -> Vec<PeerName> {
    ns.iter().map(|&n| name(n)).collect()
}

/// `to` hears `from` and reacts as the IPAM actor would.
fn hear(to: &mut Paxos, from: &Paxos) -> bool {
    let learned = to.merge(from.state());
    learned && to.think()
}

/// Everyone hears everyone until nothing changes; the number of passes it took.
fn gossip_until_quiet(nodes: &mut [Paxos]) -> usize {
    for pass in 1..=20 {
        let mut changed = false;
        for from in 0..nodes.len() {
            for to in 0..nodes.len() {
                if from != to {
                    let snapshot = nodes[from].clone();
                    changed |= hear(&mut nodes[to], &snapshot);
                }
            }
        }
        if !changed {
            return pass;
        }
    }
    panic!("gossip did not settle in 20 passes");
}

#[test]
fn quorum_is_a_strict_majority() {
    let quorums: Vec<usize> = (1..=6).map(quorum_for).collect();
    assert_eq!(quorums, [1, 2, 2, 3, 3, 4]);
    assert_eq!(quorum_for(0), 1);
    assert_eq!(elector(1, 0).quorum(), 1, "quorum 0 would need nobody");
}

#[test]
fn single_node_with_quorum_one_decides_alone() {
    let mut node = elector(1, 1);
    assert_eq!(
        node.status().to_string(),
        "awaiting consensus (quorum: 1, known: 0)"
    );
    assert!(
        node.state().is_empty(),
        "nothing to gossip before taking part"
    );
    assert!(node.think());
    assert_eq!(node.consensus(), Some(names(&[1])));
    assert!(!node.think(), "nothing left to do");
    assert!(!node.propose_again(), "no point re-proposing once decided");
}

#[test]
fn two_nodes_with_quorum_two_agree() {
    let (mut a, mut b) = (elector(1, 2), elector(2, 2));
    assert!(a.think(), "a proposes round 1");
    assert_eq!(a.consensus(), None, "one promise is no quorum");
    assert_eq!(
        a.status().to_string(),
        "awaiting consensus (quorum: 2, known: 1)"
    );
    assert!(hear(&mut b, &a), "b promises a's proposal");
    assert!(hear(&mut a, &b), "a has its quorum and accepts");
    assert_eq!(a.consensus(), None, "only a accepted so far");
    assert!(hear(&mut b, &a), "b accepts too");
    assert_eq!(b.consensus(), Some(names(&[1, 2])));
    assert!(a.merge(b.state()));
    assert_eq!(a.consensus(), Some(names(&[1, 2])));
}

#[test]
fn simultaneous_proposals_resolve_to_the_highest() {
    let mut nodes = vec![elector(1, 2), elector(2, 2), elector(3, 2)];
    for node in &mut nodes {
        assert!(node.think(), "each proposes round 1");
    }
    let passes = gossip_until_quiet(&mut nodes);
    assert!(passes <= 4, "settled only after {passes} passes");
    for node in &nodes {
        assert_eq!(node.consensus(), Some(names(&[1, 2, 3])));
        let (_, claims) = node.state().nodes().last().unwrap();
        assert_eq!(claims.accepted.map(|p| p.proposer.name), Some(name(3)));
    }
}

#[test]
fn observer_learns_but_is_not_in_the_value() {
    let mut observer = Paxos::observer(2);
    assert!(observer.is_observer());
    assert!(!observer.think());
    assert!(!observer.propose_again());
    assert!(observer.state().is_empty());
    // The observer's peer (say 3) is on the mesh but has no identity in the consensus.
    let mut nodes = vec![elector(1, 2), elector(2, 2), observer];
    nodes[0].think();
    gossip_until_quiet(&mut nodes);
    assert_eq!(nodes[2].consensus(), Some(names(&[1, 2])));
    assert_eq!(nodes[0].consensus(), Some(names(&[1, 2])));
    assert_eq!(
        nodes[2].status().known,
        2,
        "the observer counts only electors"
    );
    let relayed = nodes[2].state().clone();
    assert!(!nodes[0].merge(&relayed), "an observer relays, never adds");
}

#[test]
fn propose_again_outranks_a_dead_proposer() {
    let (mut a, mut b, mut dead) = (elector(1, 2), elector(2, 2), elector(3, 2));
    dead.think();
    hear(&mut a, &dead);
    hear(&mut b, &dead);
    // dead never hears the promises: a and b are stuck on its proposal.
    hear(&mut a, &b);
    hear(&mut b, &a);
    assert_eq!((a.consensus(), b.consensus()), (None, None));
    assert!(a.propose_again());
    let (_, ours) = a.state().nodes().next().unwrap();
    assert_eq!(
        (ours.promise.round, ours.promise.proposer.name),
        (2, name(1))
    );
    hear(&mut b, &a);
    hear(&mut a, &b);
    hear(&mut b, &a);
    hear(&mut a, &b);
    assert_eq!(a.consensus(), Some(names(&[1, 2, 3])), "dead was heard of");
    assert_eq!(b.consensus(), a.consensus());
}

#[test]
fn a_later_proposal_adopts_an_earlier_accepted_value() {
    let (mut a, mut b, mut c) = (elector(1, 2), elector(2, 2), elector(3, 2));
    a.think();
    hear(&mut b, &a);
    hear(&mut a, &b);
    let (_, a_claims) = a.state().nodes().next().unwrap();
    assert!(
        a_claims.accepted.is_some(),
        "a accepted {{1, 2}}; b has not yet"
    );
    // c never hears b; its new proposal is promised by a, which reports its acceptance.
    c.propose_again();
    hear(&mut a, &c);
    hear(&mut c, &a);
    let (_, c_claims) = c.state().nodes().last().unwrap();
    let accepted = c_claims.accepted.expect("c had a quorum of promises");
    assert_eq!(accepted.proposer.name, name(3));
    assert_eq!(
        c.state().value(&accepted),
        Some(&names(&[1, 2])[..]),
        "not {{1, 2, 3}}"
    );
    hear(&mut a, &c);
    assert_eq!(a.consensus(), Some(names(&[1, 2])));
}

/// Three electors (quorum 2) after a contest: a accepted its round-1 proposal with value {1, 2}
/// (nobody else did); c then proposed round 2, b promised it, and c accepted it with {1, 2, 3}.
fn contested_start() -> (Paxos, Paxos, Paxos) {
    let (mut a, mut b, mut c) = (elector(1, 2), elector(2, 2), elector(3, 2));
    a.think();
    hear(&mut b, &a);
    hear(&mut a, &b);
    hear(&mut c, &b);
    assert!(c.propose_again());
    hear(&mut b, &c);
    hear(&mut c, &b);
    let accepted = |node: &Paxos, n: u64| {
        let (_, claims) = node
            .state()
            .nodes()
            .find(|(id, _)| id.name == name(n))
            .unwrap();
        claims.accepted.map(|p| (p.round, p.proposer.name))
    };
    assert_eq!(accepted(&a, 1), Some((1, name(1))));
    assert_eq!(accepted(&c, 3), Some((2, name(3))));
    assert_eq!(accepted(&b, 2), None);
    (a, b, c)
}

#[test]
fn an_acceptor_never_accepts_below_its_promise() {
    let (mut a, mut b, mut c) = contested_start();
    // b promised round 2: hearing of a's round-1 acceptance must not make it accept round 1,
    // else {1, 2} would be chosen by a and b while c's round 2 goes on to choose {1, 2, 3}.
    assert!(!hear(&mut b, &a));
    assert_eq!(b.consensus(), None);
    hear(&mut b, &c);
    hear(&mut c, &b);
    hear(&mut a, &b);
    for node in [&a, &b, &c] {
        assert_eq!(node.consensus(), Some(names(&[1, 2, 3])));
    }
}

#[test]
fn a_new_proposal_carries_the_highest_earlier_acceptance() {
    let (mut a, mut b, mut c) = contested_start();
    hear(&mut b, &c);
    assert_eq!(
        b.consensus(),
        Some(names(&[1, 2, 3])),
        "b and c accepted round 2"
    );
    // a, unaware, proposes round 3; b promises it, reporting its round-2 acceptance, which must
    // win over a's own older round-1 acceptance.
    a.propose_again();
    a.propose_again();
    hear(&mut b, &a);
    hear(&mut a, &b);
    hear(&mut b, &a);
    hear(&mut a, &b);
    hear(&mut c, &a);
    for node in [&a, &b, &c] {
        assert_eq!(node.consensus(), Some(names(&[1, 2, 3])));
    }
}

#[test]
fn a_decision_is_never_forgotten() {
    let (mut a, mut b, mut c) = (elector(1, 2), elector(2, 2), elector(3, 2));
    let mut observer = Paxos::observer(2);
    a.think();
    hear(&mut b, &a);
    hear(&mut a, &b);
    hear(&mut b, &a);
    assert!(observer.merge(b.state()));
    assert_eq!(
        observer.consensus(),
        Some(names(&[1, 2])),
        "a and b accepted"
    );
    // a never heard b accept, so it proposes again (adopting its value) with c's promise.
    assert!(a.propose_again());
    hear(&mut c, &a);
    hear(&mut a, &c);
    // The observer now sees a on round 2 alone and b on round 1: no quorum on either.
    assert!(observer.merge(a.state()));
    assert_eq!(observer.consensus(), Some(names(&[1, 2])));
}

#[test]
fn merge_ignores_claims_about_ourselves() {
    let mut a = elector(1, 2);
    a.think();
    let mut forged = a.state().clone();
    let mut claims = forged.nodes[&node_id(1, 1_001)];
    claims.promise.round = 99;
    forged.nodes.insert(node_id(1, 1_001), claims);
    assert!(!a.merge(&forged));
    assert_eq!(a.state().nodes().next().unwrap().1.promise.round, 1);
}

#[test]
fn state_round_trips_through_the_codec() {
    let mut nodes = vec![elector(1, 2), elector(2, 2), elector(3, 2)];
    nodes[0].think();
    gossip_until_quiet(&mut nodes);
    let bytes = encode_state(nodes[1].state()).unwrap();
    assert_eq!(&decode_state(&bytes).unwrap(), nodes[1].state());
    let empty = encode_state(&PaxosState::default()).unwrap();
    assert!(decode_state(&empty).unwrap().is_empty());
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let error = decode_state(&vec![0; MAX_ENCODED_BYTES + 1]).unwrap_err();
    assert!(matches!(error, PaxosCodecError::TooLarge { .. }), "{error}");
}

#[test]
fn a_million_announced_entries_are_rejected_before_reading_them() {
    // {"nodes": [<1_000_000 entries>...: the announced length alone is refused.
    let mut bytes = vec![0x82, 0xa5];
    bytes.extend(b"nodes");
    bytes.push(0xdd);
    bytes.extend(1_000_000u32.to_be_bytes());
    let error = decode_state(&bytes).unwrap_err().to_string();
    assert!(
        error.contains("1000000 items exceeds the limit of 16384"),
        "{error}"
    );
}

#[test]
fn one_entry_too_many_is_rejected() {
    let claims = |n| Claims {
        promise: ProposalId {
            round: 1,
            proposer: node_id(n, 1),
        },
        accepted: None,
    };
    let mut state = PaxosState::default();
    for n in 0..=MAX_NODES as u64 {
        state.nodes.insert(node_id(n, 1), claims(n));
    }
    let bytes = rmp_serde::to_vec_named(&WireState::from(state.clone())).unwrap();
    let error = decode_state(&bytes).unwrap_err().to_string();
    assert!(error.contains("exceeds the limit of 16384"), "{error}");
    assert!(matches!(
        encode_state(&state),
        Err(PaxosCodecError::Invalid(InvalidState::TooManyNodes { .. }))
    ));
}

/// The byte limit must admit every state within the count limits, or an honest peer could make
/// a state nobody accepts: the largest numbers, the most entries, the most value names.
#[test]
fn states_at_the_limits_round_trip() {
    let big = |n: u64| name((1 << 48) - 1 - n);
    let id = |n: u64| NodeId {
        name: big(n),
        uid: PeerUid(u64::MAX - n),
    };
    let proposal = |n: u64| ProposalId {
        round: u64::MAX - n,
        proposer: id(n),
    };
    let value_count = (MAX_VALUE_NAMES / MAX_NODES) as u64;
    let mut state = PaxosState::default();
    for n in 0..MAX_NODES as u64 {
        let accepted = (n < value_count).then(|| proposal(n));
        let promise = proposal(0);
        state.nodes.insert(id(n), Claims { promise, accepted });
    }
    let mut value: Vec<PeerName> = (0..MAX_NODES as u64).map(big).collect();
    value.sort();
    for n in 0..value_count {
        state.values.insert(proposal(n), value.clone());
    }
    let bytes = encode_state(&state).unwrap();
    eprintln!("LIMIT BYTES {}", bytes.len());
    assert!(bytes.len() <= MAX_ENCODED_BYTES);
    assert_eq!(decode_state(&bytes).unwrap(), state);
}

#[test]
fn invalid_states_are_rejected() {
    let proposal = |round| ProposalId {
        round,
        proposer: node_id(1, 1),
    };
    let node = |promise, accepted| (node_id(1, 1), Claims { promise, accepted });
    let build = |nodes: &[(NodeId, Claims)], values: &[(ProposalId, Vec<PeerName>)]| PaxosState {
        nodes: nodes.iter().copied().collect(),
        values: values.iter().cloned().collect(),
    };
    let cases = [
        (build(&[node(proposal(0), None)], &[]), "ZeroRound"),
        (
            build(
                &[node(proposal(1), Some(proposal(2)))],
                &[(proposal(2), names(&[1]))],
            ),
            "AcceptedAbovePromise",
        ),
        (
            build(&[node(proposal(2), Some(proposal(1)))], &[]),
            "MissingValue",
        ),
        (
            build(&[node(proposal(2), None)], &[(proposal(1), names(&[1]))]),
            "UnreferencedValue",
        ),
        (
            build(
                &[node(proposal(2), Some(proposal(2)))],
                &[(proposal(2), names(&[2, 1]))],
            ),
            "MalformedValue",
        ),
        (
            build(
                &[node(proposal(2), Some(proposal(2)))],
                &[(proposal(2), vec![])],
            ),
            "MalformedValue",
        ),
    ];
    for (state, expected) in cases {
        let bytes = rmp_serde::to_vec_named(&WireState::from(state)).unwrap();
        let error = decode_state(&bytes).unwrap_err();
        assert!(matches!(error, PaxosCodecError::Invalid(_)), "{error}");
        assert!(
            format!("{error:?}").contains(expected),
            "{error:?} is not {expected}"
        );
    }
    let twice = WireState {
        nodes: BoundedVec(vec![
            WireNode {
                node: node_id(1, 1),
                promise: proposal(1),
                accepted: None,
            },
            WireNode {
                node: node_id(1, 1),
                promise: proposal(2),
                accepted: None,
            },
        ]),
        values: BoundedVec(vec![]),
    };
    let error = decode_state(&rmp_serde::to_vec_named(&twice).unwrap()).unwrap_err();
    assert!(matches!(
        error,
        PaxosCodecError::Invalid(InvalidState::DuplicateNode(_))
    ));
}

// ---- merge laws over small random states ----

fn small_id() -> impl Strategy<Value = NodeId> {
    (1u64..=4, 1u64..=2).prop_map(|(n, incarnation)| node_id(n, incarnation))
}

fn small_proposal() -> impl Strategy<Value = ProposalId> {
    (1u64..=4, small_id()).prop_map(|(round, proposer)| ProposalId { round, proposer })
}

/// Names 1..=4 picked by the bits of `mask` (never empty).
fn value_from_mask(mask: u8) -> Vec<PeerName> {
    let mask = mask % 15 + 1;
    (1..=4)
        .filter(|n| mask & (1 << (n - 1)) != 0)
        .map(name)
        .collect()
}

/// A valid state. `consistent`: one value per proposal across all generated states, as honest
/// meshes have; otherwise values for the same proposal may conflict (hostile gossip).
fn state(consistent: bool) -> impl Strategy<Value = PaxosState> {
    let entry = (
        small_proposal(),
        prop::option::of(small_proposal()),
        any::<u8>(),
    );
    prop::collection::btree_map(small_id(), entry, 0..6).prop_map(move |entries| {
        let mut state = PaxosState::default();
        for (id, (promise, accepted, mask)) in entries {
            let accepted = accepted.map(|a| a.min(promise));
            if let Some(proposal) = accepted {
                let seed = if consistent {
                    (proposal.round as u8) ^ (proposal.proposer.name.as_u64() as u8) << 2
                } else {
                    mask
                };
                state
                    .values
                    .entry(proposal)
                    .or_insert_with(|| value_from_mask(seed));
            }
            state.nodes.insert(id, Claims { promise, accepted });
        }
        state
    })
}

fn merged(a: &PaxosState, b: &PaxosState) -> PaxosState {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #[test]
    fn merge_is_commutative(a in state(false), b in state(false)) {
        let ab = merged(&a, &b);
        prop_assert_eq!(&ab, &merged(&b, &a));
        prop_assert_eq!(ab.check(), Ok(()));
    }

    #[test]
    fn merge_is_idempotent(a in state(false), b in state(false)) {
        let mut again = a.clone();
        prop_assert!(!again.merge(&a));
        prop_assert_eq!(&again, &a);
        let mut ab = merged(&a, &b);
        prop_assert!(!ab.merge(&b), "hearing the same gossip twice changes nothing");
        prop_assert!(!ab.merge(&a));
    }

    #[test]
    fn merge_is_associative(a in state(true), b in state(true), c in state(true)) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_reports_exactly_the_changes(a in state(false), b in state(false)) {
        let mut ab = a.clone();
        let changed = ab.merge(&b);
        prop_assert_eq!(changed, ab != a);
    }

    #[test]
    fn codec_round_trips(state in state(false)) {
        let bytes = encode_state(&state).unwrap();
        prop_assert_eq!(decode_state(&bytes).unwrap(), state);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_state(&bytes);
    }

    #[test]
    fn decoding_corrupted_states_never_panics(
        state in state(false),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_state(&state).unwrap();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(decoded) = decode_state(&bytes) {
            prop_assert_eq!(decoded.check(), Ok(()));
        }
    }
}

#[test]
fn a_proposer_expecting_three_electors_waits_for_all_of_them_until_told_to_stop() {
    let mut a = elector(1, 2);
    a.expect_electors(3);
    let (mut b, mut c) = (elector(2, 2), elector(3, 2));
    a.think();
    hear(&mut b, &a);
    hear(&mut a, &b);
    assert_eq!(
        a.consensus(),
        None,
        "a quorum promised, but the third elector has not"
    );
    hear(&mut c, &a);
    hear(&mut a, &c);
    let mut nodes = [a, b, c];
    gossip_until_quiet(&mut nodes);
    assert_eq!(
        nodes[0].consensus(),
        Some(names(&[1, 2, 3])),
        "all three share the range"
    );

    // An expected elector that never shows up does not block the start once patience ends.
    let mut d = elector(4, 2);
    d.expect_electors(3);
    let mut e = elector(5, 2);
    d.think();
    hear(&mut e, &d);
    hear(&mut d, &e);
    assert_eq!(d.consensus(), None);
    d.stop_waiting();
    d.think();
    hear(&mut e, &d);
    hear(&mut d, &e);
    assert_eq!(d.consensus(), Some(names(&[4, 5])));
}

mod simulation;
