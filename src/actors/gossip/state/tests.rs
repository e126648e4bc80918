//! Tests of [`GossipState`]: each operation on its own with injected instants, then a
//! deterministic simulation of whole meshes (many states wired together by a message bus, links
//! closing and re-opening) checking that topologies converge and that routed gossip arrives
//! exactly once.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use serde_bytes::ByteBuf;

use super::*;
use crate::wire::{decode_message, encode_message};

/// The mesh port every test peer listens on.
const MESH_PORT: u16 = 6783;
/// Source port of an inbound connection as the accepting end sees it (any ephemeral port).
const EPHEMERAL_PORT: u16 = 40000;
const MILLISECOND: Duration = Duration::from_millis(1);

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

/// The address peer `n` connects from and is reached at: 10.0.x.y.
fn ip(n: u64) -> IpAddr {
    let [.., high, low] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, 0, high, low))
}

fn uid(n: u64) -> PeerUid {
    PeerUid(1_000 + n)
}

/// Peer `n` as it starts: version 1, no connections, listening on all addresses (so discovery
/// has to find its IP in others' records).
fn fresh_record(n: u64) -> PeerRecord {
    PeerRecord {
        name: name(n),
        nickname: format!("peer-{n}"),
        uid: uid(n),
        version: 1,
        listen_addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), MESH_PORT),
        conn_limit: 0,
        connections: BTreeMap::new(),
    }
}

/// Peer `n`'s record as gossip brings it: at `version`, with established inbound connections from
/// `remotes`.
fn record_listing(n: u64, version: u64, remotes: &[u64]) -> PeerRecord {
    let inbound = |remote: u64| ConnectionSummary {
        remote_addr: SocketAddr::new(ip(remote), EPHEMERAL_PORT),
        outbound: false,
        established: true,
    };
    PeerRecord {
        version,
        connections: remotes
            .iter()
            .map(|&remote| (name(remote), inbound(remote)))
            .collect(),
        ..fresh_record(n)
    }
}

/// A link we dialled to peer `remote`'s mesh port.
fn dialled_link(id: u64, remote: u64, conn_uid: u64) -> NewLink {
    NewLink {
        id: LinkId(id),
        remote: name(remote),
        remote_nickname: format!("peer-{remote}"),
        remote_uid: uid(remote),
        conn_uid,
        outbound: true,
        remote_addr: SocketAddr::new(ip(remote), MESH_PORT),
    }
}

fn started(n: u64, now: Instant) -> GossipState {
    GossipState::new(fresh_record(n), now, n)
}

/// Peer `local` with registered and established links `(link id, remote)`, having heard `records`
/// from the first of them.
fn linked(local: u64, links: &[(u64, u64)], records: &[PeerRecord], now: Instant) -> GossipState {
    let mut state = started(local, now);
    for (&(id, remote), conn_uid) in links.iter().zip(1..) {
        state
            .register_link(dialled_link(id, remote, conn_uid), now)
            .expect("the only link to a peer is accepted");
        state
            .link_established(LinkId(id), now)
            .expect("the link was just registered");
    }
    if let Some(&(first, _)) = links.first()
        && !records.is_empty()
    {
        state
            .receive(LinkId(first), topology_gossip(records), now)
            .expect("well-formed gossip on a registered link");
    }
    state
}

/// The line 1 – 2 – 3 with every record known, seen from `peer`. At peer x, the link to peer y
/// has id 10·x + y.
fn line_of_three(peer: u64, now: Instant) -> GossipState {
    let records = [
        record_listing(1, 3, &[2]),
        record_listing(2, 3, &[1, 3]),
        record_listing(3, 3, &[2]),
    ];
    let links: Vec<(u64, u64)> = [1u64, 2, 3]
        .into_iter()
        .filter(|&other| other.abs_diff(peer) == 1)
        .map(|other| (10 * peer + other, other))
        .collect();
    let others: Vec<PeerRecord> = records
        .into_iter()
        .filter(|record| record.name != name(peer))
        .collect();
    linked(peer, &links, &others, now)
}

/// The topology channel's message carrying `records`, in one piece whatever its size.
fn topology_gossip(records: &[PeerRecord]) -> ProtocolMsg {
    // Records are plain data: encoding them cannot fail, but stay safe and send nothing if it did.
    let payload = crate::wire::encode_topology(records).unwrap_or_default();
    ProtocolMsg::Gossip {
        channel: TOPOLOGY_CHANNEL.to_string(),
        payload: ByteBuf::from(payload),
    }
}

fn is_topology_gossip(msg: &ProtocolMsg) -> bool {
    matches!(msg, ProtocolMsg::Gossip { channel, .. } if channel == TOPOLOGY_CHANNEL)
}

/// The records of each topology message sent by `effects`, with the link it goes on.
fn topology_sends(effects: &[Effect]) -> Vec<(LinkId, Vec<PeerRecord>)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { link, msg } if is_topology_gossip(msg) => {
                let ProtocolMsg::Gossip { payload, .. } = msg.as_ref() else {
                    return None;
                };
                let records = decode_message("topology gossip", payload)
                    .expect("the state encodes valid records");
                Some((*link, records))
            }
            _ => None,
        })
        .collect()
}

fn sent_links(effects: &[Effect]) -> Vec<LinkId> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { link, .. } => Some(*link),
            _ => None,
        })
        .collect()
}

fn deliveries(effects: &[Effect]) -> Vec<&Effect> {
    effects
        .iter()
        .filter(|effect| matches!(effect, Effect::Deliver { .. }))
        .collect()
}

fn removed_peers(effects: &[Effect]) -> BTreeSet<PeerName> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::PeersRemoved(records) => Some(records),
            _ => None,
        })
        .flatten()
        .map(|record| record.name)
        .collect()
}

#[test]
fn register_link_sends_the_full_state_down_the_new_link_and_reports_peers_changed() {
    let t0 = Instant::now();
    let mut state = linked(
        1,
        &[(12, 2)],
        &[record_listing(2, 3, &[1, 4]), record_listing(4, 3, &[2])],
        t0,
    );

    let effects = state
        .register_link(dialled_link(13, 3, 7), t0)
        .expect("the first link to peer 3 is accepted");

    let full_state = state.topology().full_state();
    assert_eq!(
        effects,
        vec![
            Effect::Send {
                link: LinkId(13),
                msg: Arc::new(topology_gossip(&full_state)),
            },
            Effect::PeersChanged,
        ]
    );
    // Everything we know, not just our own record, and already listing the new link.
    let names: Vec<PeerName> = full_state.iter().map(|record| record.name).collect();
    assert_eq!(names, vec![name(1), name(2), name(4)]);
    assert_eq!(
        state.topology().local().connections[&name(3)],
        ConnectionSummary {
            remote_addr: SocketAddr::new(ip(3), MESH_PORT),
            outbound: true,
            established: false,
        }
    );
    assert!(state.connected_peers().contains(&name(3)));
}

/// Registers links `first` and then `second` (id, conn_uid) to `remote`, checks that the loser is
/// turned away or closed as a duplicate and that its later closure changes nothing, and returns
/// the surviving link.
fn register_twice(
    state: &mut GossipState,
    remote: u64,
    first: (u64, u64),
    second: (u64, u64),
    now: Instant,
) -> LinkId {
    state
        .register_link(dialled_link(first.0, remote, first.1), now)
        .expect("the first link to a peer is accepted");
    match state.register_link(dialled_link(second.0, remote, second.1), now) {
        Ok(effects) => assert!(
            effects.contains(&Effect::Close {
                link: LinkId(first.0),
                reason: ClosingReason::Duplicate,
            }),
            "a winning second link closes the first: {effects:?}"
        ),
        Err(reason) => assert_eq!(reason, ClosingReason::Duplicate),
    }
    let links = state.links();
    assert_eq!(links.len(), 1, "one link per peer: {links:?}");
    let survivor = links[0].id;
    let loser = if survivor == LinkId(first.0) {
        LinkId(second.0)
    } else {
        LinkId(first.0)
    };
    // The loser's connection ends and reports it; the survivor must not go with it.
    assert!(state.link_closed(loser, now).is_empty());
    assert_eq!(state.links().len(), 1);
    assert!(
        state
            .topology()
            .local()
            .connections
            .contains_key(&name(remote))
    );
    survivor
}

#[test]
fn duplicate_link_keeps_the_lower_conn_uid_at_both_ends_whatever_the_order() {
    const LOWER_CONN_UID: u64 = 3;
    const HIGHER_CONN_UID: u64 = 7;
    // Each end numbers its links its own way, and not in conn_uid order: only the conn_uid, the
    // same number at both ends, may decide.
    let at_peer_1 = [(11, LOWER_CONN_UID), (10, HIGHER_CONN_UID)];
    let at_peer_2 = [(21, LOWER_CONN_UID), (20, HIGHER_CONN_UID)];
    for peer_1_registers_lower_first in [false, true] {
        for peer_2_registers_lower_first in [false, true] {
            let t0 = Instant::now();
            let mut peer_1 = started(1, t0);
            let mut peer_2 = started(2, t0);
            let order = |links: [(u64, u64); 2], lower_first: bool| {
                if lower_first {
                    (links[0], links[1])
                } else {
                    (links[1], links[0])
                }
            };
            let (first, second) = order(at_peer_1, peer_1_registers_lower_first);
            let survivor_at_1 = register_twice(&mut peer_1, 2, first, second, t0);
            let (first, second) = order(at_peer_2, peer_2_registers_lower_first);
            let survivor_at_2 = register_twice(&mut peer_2, 1, first, second, t0);

            assert_eq!(
                (survivor_at_1, survivor_at_2),
                (LinkId(11), LinkId(21)),
                "peer 1 registered the lower first: {peer_1_registers_lower_first}, \
                 peer 2: {peer_2_registers_lower_first}"
            );
        }
    }
}

#[test]
fn another_incarnation_never_evicts_the_link_that_is_up() {
    let t0 = Instant::now();
    let mut state = started(1, t0);
    state.register_link(dialled_link(12, 2, 7), t0).unwrap();
    assert_eq!(state.linked_uid(name(2)), Some(uid(2)));
    // Same name, another uid, and the lowest link id there is: it still loses.
    let impostor = NewLink {
        remote_uid: PeerUid(666),
        ..dialled_link(13, 2, 0)
    };
    assert_eq!(
        state.register_link(impostor, t0).unwrap_err(),
        ClosingReason::Duplicate
    );
    assert_eq!(state.links()[0].id, LinkId(12));
}

#[test]
fn link_established_marks_our_record_established() {
    let t0 = Instant::now();
    let mut state = started(1, t0);
    state.register_link(dialled_link(12, 2, 5), t0).unwrap();
    let version_before = state.topology().local().version;

    state.link_established(LinkId(12), t0).unwrap();

    let local = state.topology().local();
    assert!(local.connections[&name(2)].established);
    assert!(local.version > version_before, "others must learn of it");
    assert!(state.links()[0].established);
    // Later heartbeats change nothing.
    let version = state.topology().local().version;
    state.link_established(LinkId(12), t0).unwrap();
    assert_eq!(state.topology().local().version, version);
    assert_eq!(
        state.link_established(LinkId(99), t0),
        Err(GossipError::UnknownLink(LinkId(99)))
    );
}

#[test]
fn link_closed_removes_the_connection_and_the_peers_it_alone_reached() {
    let t0 = Instant::now();
    // 1 – 2 – 3: peer 3 is reached only through peer 2.
    let mut state = linked(
        1,
        &[(12, 2)],
        &[record_listing(2, 3, &[1, 3]), record_listing(3, 3, &[2])],
        t0,
    );
    assert_eq!(state.topology().len(), 3);
    let version_before = state.topology().local().version;

    let effects = state.link_closed(LinkId(12), t0);

    assert!(effects.contains(&Effect::PeersChanged));
    assert_eq!(removed_peers(&effects), BTreeSet::from([name(2), name(3)]));
    let local = state.topology().local();
    assert!(local.connections.is_empty());
    assert!(local.version > version_before);
    assert_eq!(state.topology().len(), 1);
    assert!(state.links().is_empty());
    assert!(state.routes().unicast.is_empty());
    // Closing it again (or any unregistered link) has nothing to do.
    assert!(state.link_closed(LinkId(12), t0).is_empty());
}

#[test]
fn link_closed_keeps_peers_still_reached_through_others() {
    let t0 = Instant::now();
    let mut state = linked(
        1,
        &[(12, 2), (13, 3)],
        &[record_listing(2, 3, &[1, 3]), record_listing(3, 3, &[1, 2])],
        t0,
    );

    let effects = state.link_closed(LinkId(12), t0);

    assert_eq!(effects, vec![Effect::PeersChanged]);
    assert!(!state.topology().local().connections.contains_key(&name(2)));
    assert!(state.topology().peer(name(2)).is_some());
    assert_eq!(state.routes().unicast(name(2)), Some(name(3)));
}

/// Peer 3 restarted as a new incarnation (uid 9003) whose versions are still below its old
/// incarnation's. Peer 5 holds the old record (version 6, linked only to 4); a neighbour sending
/// the new one (version 5, linked to 1 and 4) gets the old record back at once: it must travel to
/// peer 3 for the new incarnation to outrank it. Before, peer 5 ignored the new record in silence
/// (dropping peer 1, whom only it connects) until anti-entropy happened to carry the old record.
#[test]
fn a_record_losing_to_another_incarnation_we_hold_is_answered_with_ours() {
    let t0 = Instant::now();
    let old_incarnation = record_listing(3, 6, &[4]);
    let mut state = linked(
        5,
        &[(54, 4)],
        &[record_listing(4, 5, &[3, 5]), old_incarnation.clone()],
        t0,
    );
    let new_incarnation = PeerRecord {
        uid: PeerUid(9_003),
        ..record_listing(3, 5, &[1, 4])
    };

    let effects = state
        .receive(
            LinkId(54),
            topology_gossip(&[new_incarnation, record_listing(1, 2, &[3])]),
            t0,
        )
        .unwrap();

    assert_eq!(
        topology_sends(&effects),
        vec![(LinkId(54), vec![old_incarnation.clone()])]
    );
    assert_eq!(state.topology().peer(name(3)), Some(&old_incarnation));
    // An outdated record of the same incarnation is the sender's own business: no answer.
    let effects = state
        .receive(
            LinkId(54),
            topology_gossip(&[record_listing(3, 4, &[4])]),
            t0,
        )
        .unwrap();
    assert!(topology_sends(&effects).is_empty());
}

#[test]
fn tick_holds_local_changes_for_the_coalesce_delay_then_sends_our_record() {
    let t0 = Instant::now();
    let mut state = started(1, t0);
    state.register_link(dialled_link(12, 2, 5), t0).unwrap();
    state.register_link(dialled_link(13, 3, 6), t0).unwrap();
    // A later change of the same burst does not restart the delay, and goes out with it.
    state
        .link_established(LinkId(12), t0 + COALESCE_DELAY / 2)
        .unwrap();

    assert!(state.tick(t0 + COALESCE_DELAY - MILLISECOND).is_empty());
    let effects = state.tick(t0 + COALESCE_DELAY);

    let ours = state.topology().local().clone();
    assert!(ours.connections[&name(2)].established);
    // Two neighbours are within the fan-out, so both hear of it.
    assert_eq!(
        topology_sends(&effects),
        vec![
            (LinkId(12), vec![ours.clone()]),
            (LinkId(13), vec![ours.clone()])
        ]
    );
    assert!(state.tick(t0 + COALESCE_DELAY * 2).is_empty());
}

#[test]
fn coalesced_update_goes_to_at_most_two_log2_n_neighbours() {
    let t0 = Instant::now();
    // Us and fifteen neighbours: sixteen peers, so at most 2·log2(16) = 8 of the 15 links.
    let neighbours: Vec<u64> = (2..=16).collect();
    let links: Vec<(u64, u64)> = neighbours.iter().map(|&n| (100 + n, n)).collect();
    let records: Vec<PeerRecord> = neighbours
        .iter()
        .map(|&n| record_listing(n, 3, &[1]))
        .collect();
    let mut state = linked(1, &links, &records, t0);
    assert_eq!(state.topology().len(), 16);

    let effects = state.tick(t0 + COALESCE_DELAY);

    let chosen = sent_links(&effects);
    let distinct: BTreeSet<LinkId> = chosen.iter().copied().collect();
    assert_eq!(distinct.len(), chosen.len(), "each link at most once");
    assert!(
        (1..=8).contains(&chosen.len()),
        "sent on {} links",
        chosen.len()
    );
}

#[test]
fn anti_entropy_sends_the_full_state_every_interval() {
    let t0 = Instant::now();
    let mut state = linked(
        1,
        &[(12, 2)],
        &[record_listing(2, 3, &[1, 3]), record_listing(3, 3, &[2])],
        t0,
    );
    // The coalesced update of the set-up goes first; after it, only anti-entropy is due.
    assert!(!state.tick(t0 + COALESCE_DELAY).is_empty());
    assert!(
        state
            .tick(t0 + ANTI_ENTROPY_INTERVAL - MILLISECOND)
            .is_empty()
    );

    let full_state = state.topology().full_state();
    assert_eq!(full_state.len(), 3);
    let effects = state.tick(t0 + ANTI_ENTROPY_INTERVAL);
    assert_eq!(
        topology_sends(&effects),
        vec![(LinkId(12), full_state.clone())]
    );

    assert!(
        state
            .tick(t0 + ANTI_ENTROPY_INTERVAL + Duration::from_millis(100))
            .is_empty()
    );
    let effects = state.tick(t0 + ANTI_ENTROPY_INTERVAL * 2);
    assert_eq!(topology_sends(&effects), vec![(LinkId(12), full_state)]);
}

#[test]
fn malformed_topology_gossip_is_bad_topology_and_changes_nothing() {
    let t0 = Instant::now();
    let mut state = linked(1, &[(12, 2)], &[], t0);
    let before = state.topology().full_state();
    let not_msgpack = vec![0xc1];
    let not_records = encode_message("test payload", &"not a list of records").unwrap();

    for payload in [not_msgpack, not_records] {
        let msg = ProtocolMsg::Gossip {
            channel: TOPOLOGY_CHANNEL.to_string(),
            payload: ByteBuf::from(payload),
        };
        let result = state.receive(LinkId(12), msg, t0);
        assert!(
            matches!(&result, Err(GossipError::BadTopology { from, .. }) if *from == name(2)),
            "{result:?}"
        );
    }
    assert_eq!(state.topology().full_state(), before);
}

#[test]
fn message_from_an_unregistered_link_is_unknown_link() {
    let t0 = Instant::now();
    let mut state = linked(1, &[(12, 2)], &[], t0);

    assert_eq!(
        state.receive(LinkId(99), ProtocolMsg::Heartbeat, t0),
        Err(GossipError::UnknownLink(LinkId(99)))
    );
    // A closed link is unknown from then on: what was still on the wire is not taken.
    state.link_closed(LinkId(12), t0);
    assert_eq!(
        state.receive(
            LinkId(12),
            topology_gossip(&[record_listing(2, 9, &[1])]),
            t0
        ),
        Err(GossipError::UnknownLink(LinkId(12)))
    );
    assert_eq!(state.topology().len(), 1);
}

mod simulation;

mod discovery;

mod hostile;

mod channels;
