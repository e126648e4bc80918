//! Tests of what gossip tells the connection maker and refused peers: where peers listen, which
//! ones have room for more links, and which to name in a refusal.

use super::*;

#[test]
fn discovered_targets_use_the_listen_address_or_the_ip_others_see() {
    let t0 = Instant::now();
    let explicit = SocketAddr::from(([192, 168, 7, 4], 7000));
    let listening_on_one_address = PeerRecord {
        listen_addr: explicit,
        ..record_listing(4, 3, &[2])
    };
    // Peer 2 lists peer 3 as an inbound connection, from 10.0.0.3 and an ephemeral port.
    let state = linked(
        1,
        &[(12, 2)],
        &[
            record_listing(2, 3, &[1, 3, 4]),
            record_listing(3, 3, &[2]),
            listening_on_one_address,
        ],
        t0,
    );

    // Peer 2 is linked already, so it is no target.
    assert_eq!(
        state.discovered_targets(),
        vec![
            (name(3), SocketAddr::new(ip(3), MESH_PORT)),
            (name(4), explicit),
        ]
    );
}

#[test]
fn refusal_hints_prefer_peers_with_fewer_connections_up_to_the_limit() {
    let t0 = Instant::now();
    // Twelve peers hang off our neighbour 2; the k-th of them has k + 1 connections.
    let spokes: Vec<u64> = (10..22).collect();
    let hub: Vec<u64> = std::iter::once(1).chain(spokes.iter().copied()).collect();
    let mut records = vec![record_listing(2, 3, &hub)];
    for (k, &spoke) in spokes.iter().enumerate() {
        let remotes: Vec<u64> = std::iter::once(2)
            .chain(spokes[..k].iter().copied())
            .collect();
        records.push(record_listing(spoke, 3, &remotes));
    }
    let mut state = linked(1, &[(12, 2)], &records, t0);

    let least_connected: Vec<SocketAddr> = spokes[..REFUSAL_HINTS]
        .iter()
        .map(|&spoke| SocketAddr::new(ip(spoke), MESH_PORT))
        .collect();
    assert_eq!(state.refusal_hints(), least_connected);
}

#[test]
fn refusal_hints_name_our_neighbours_when_few_others_are_known() {
    let t0 = Instant::now();
    let mut state = linked(1, &[(12, 2)], &[record_listing(2, 3, &[1])], t0);

    // Peer 2 listens on all addresses: the hint takes the IP we reach it at.
    assert_eq!(
        state.refusal_hints(),
        vec![SocketAddr::new(ip(2), MESH_PORT)]
    );
}

#[test]
fn discovery_and_hints_leave_full_peers_alone() {
    let t0 = Instant::now();
    // Our neighbour 2 knows spokes 10..=15; spoke 10+k has k+1 connections.
    let spokes: Vec<u64> = (10..16).collect();
    let hub: Vec<u64> = std::iter::once(1).chain(spokes.iter().copied()).collect();
    let mut records = vec![record_listing(2, 3, &hub)];
    for (k, &spoke) in spokes.iter().enumerate() {
        let remotes: Vec<u64> = std::iter::once(2)
            .chain(spokes[..k].iter().copied())
            .collect();
        records.push(record_listing(spoke, 3, &remotes));
    }
    // A limit of 5 keeps one slot from discovery: only peers below 4 links are discovery targets.
    for record in &mut records {
        record.conn_limit = 5;
    }
    let mut state = linked(1, &[(12, 2)], &records, t0);
    let discovered: Vec<PeerName> = state
        .discovery_targets()
        .into_iter()
        .map(|(peer, _)| peer)
        .collect();
    assert_eq!(discovered, vec![name(10), name(11), name(12)]);
    // Hints may name peers in their reserve (4 links) but never full ones (5 or more).
    let hinted = state.refusal_hints();
    assert!(hinted.contains(&SocketAddr::new(ip(13), MESH_PORT)));
    assert!(!hinted.contains(&SocketAddr::new(ip(14), MESH_PORT)));
    assert!(!hinted.contains(&SocketAddr::new(ip(15), MESH_PORT)));
}

#[test]
fn hints_never_name_a_full_neighbour() {
    let t0 = Instant::now();
    // Our only neighbour, 2, holds 3 links: at a limit of 3 it is full, at 4 it has room.
    for (limit, expected) in [(3, vec![]), (4, vec![SocketAddr::new(ip(2), MESH_PORT)])] {
        let mut record = record_listing(2, 3, &[1, 7, 8]);
        record.conn_limit = limit;
        let mut state = linked(1, &[(12, 2)], &[record], t0);
        assert_eq!(state.refusal_hints(), expected, "limit {limit}");
    }
}

/// The gossip actor asks for all three at once after the peers change, from one pass over the
/// records: the answers must be the ones each question gets alone.
#[test]
fn the_peer_directory_answers_as_each_question_does_alone() {
    let t0 = Instant::now();
    let explicit = SocketAddr::from(([192, 168, 7, 4], 7000));
    let mut records = vec![
        record_listing(2, 3, &[1, 3, 4, 5]),
        record_listing(3, 3, &[2]),
        PeerRecord {
            listen_addr: explicit,
            ..record_listing(4, 3, &[2])
        },
    ];
    // Peer 5 is full: no discovery target, and not a hint.
    records.push(PeerRecord {
        conn_limit: 1,
        ..record_listing(5, 3, &[2])
    });
    let mut state = linked(1, &[(12, 2)], &records, t0);
    let directory = state.peer_directory();
    assert_eq!(directory.addresses, state.peer_addresses());
    assert_eq!(directory.discovery_targets, state.discovery_targets());
    // Equally loaded peers are shuffled (they share the newcomers): compare as sets.
    let sorted = |mut hints: Vec<SocketAddr>| {
        hints.sort();
        hints
    };
    assert_eq!(
        sorted(directory.refusal_hints.clone()),
        sorted(state.refusal_hints())
    );
    assert!(
        !directory
            .refusal_hints
            .contains(&SocketAddr::new(ip(5), MESH_PORT))
    );
    assert_eq!(directory.addresses.len(), 4, "every peer but us");
}
