//! Tests of the sleeve's control state: heartbeats answered and timed out, path MTU verified,
//! and the forwarding table it publishes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::actors::overlay::FastdpPeers;
use crate::actors::sleeve::heartbeat::{FAST_HEARTBEAT, HEARTBEAT_TIMEOUT};
use crate::actors::sleeve::state::{
    NeighbourLink, SleeveOutput, SleeveState, payload_limit_for_mtu,
};
use crate::topology::{PeerName, Routes};
use crate::wire::sleeve::Control;

const LOCAL: PeerName = match PeerName::from_u64(0x02_00_00_00_00_01) {
    Some(name) => name,
    None => panic!("a 48-bit name"),
};
const B: PeerName = match PeerName::from_u64(0x02_00_00_00_00_02) {
    Some(name) => name,
    None => panic!("a 48-bit name"),
};
const C: PeerName = match PeerName::from_u64(0x02_00_00_00_00_03) {
    Some(name) => name,
    None => panic!("a 48-bit name"),
};

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, last], 6783))
}

fn link(peer: PeerName, link_id: u64, last: u8) -> NeighbourLink {
    NeighbourLink {
        peer,
        nickname: format!("node-{last}"),
        link_id,
        udp_addr: addr(last),
    }
}

/// B is a neighbour; C is reached through B.
fn routes() -> Routes {
    Routes::from_links(LOCAL, &[(LOCAL, B), (B, C)])
}

fn carried_draining(carried: &[PeerName], draining: &[PeerName]) -> FastdpPeers {
    FastdpPeers {
        carried: carried.iter().copied().collect(),
        draining: draining.iter().copied().collect(),
    }
}

fn with_b(now: Instant) -> SleeveState {
    let mut state = SleeveState::new(LOCAL, 1437);
    state.set_links(vec![link(B, 7, 2)], &routes(), now);
    state
}

fn sends(outputs: &[SleeveOutput]) -> Vec<(SocketAddr, Control)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            SleeveOutput::Send { to, control, .. } => Some((*to, *control)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_link_heartbeats_at_once_and_probes_only_after_an_ack() {
    let now = Instant::now();
    let mut state = with_b(now);
    let first = sends(&state.on_tick(now));
    assert_eq!(
        first,
        vec![(addr(2), Control::Heartbeat { connection_id: 7 })]
    );
    assert!(sends(&state.on_tick(now + FAST_HEARTBEAT / 2)).is_empty());

    let ack = Control::HeartbeatAck { connection_id: 7 };
    assert!(state.on_control(addr(2), B, ack, now).is_empty());
    let probes = sends(&state.on_tick(now + FAST_HEARTBEAT / 2));
    assert!(
        matches!(probes[..], [(to, Control::PmtuProbe { mtu: 1437, .. })] if to == addr(2)),
        "{probes:?}"
    );
}

#[test]
fn a_probe_ack_verifies_the_mtu_and_resizes_the_neighbours_datagrams() {
    let now = Instant::now();
    let mut state = with_b(now);
    state.on_tick(now);
    state.on_control(addr(2), B, Control::HeartbeatAck { connection_id: 7 }, now);
    let _ = state.take_table();
    let probe = sends(&state.on_tick(now))[0].1;
    let Control::PmtuProbe { probe_id, mtu } = probe else {
        panic!("expected a probe, got {probe:?}")
    };
    let outputs = state.on_control(addr(2), B, Control::PmtuAck { probe_id, mtu }, now);
    assert!(matches!(
        outputs[..],
        [SleeveOutput::MtuVerified {
            peer: B,
            mtu: 1437,
            ..
        }]
    ));
    let table = state
        .take_table()
        .expect("the verified MTU changes the table");
    assert_eq!(
        table.neighbours[&B].payload_limit,
        payload_limit_for_mtu(1437)
    );
    assert_eq!(
        payload_limit_for_mtu(1437),
        1472,
        "a 1500-byte underlay's UDP payload"
    );
    let status = state.status();
    assert_eq!(status[0].verified_mtu, Some(1437));
    assert!(status[0].established);
}

#[test]
fn heartbeats_and_probes_from_a_neighbour_are_answered_where_they_came_from() {
    let now = Instant::now();
    let mut state = with_b(now);
    let _ = state.take_table();
    let natted = SocketAddr::from(([203, 0, 113, 9], 40_000));
    let outputs = state.on_control(natted, B, Control::Heartbeat { connection_id: 7 }, now);
    assert!(outputs.contains(&SleeveOutput::AddressChanged {
        peer: B,
        from: addr(2),
        to: natted
    }));
    assert_eq!(
        sends(&outputs),
        vec![(natted, Control::HeartbeatAck { connection_id: 7 })]
    );
    let table = state
        .take_table()
        .expect("the new address changes the table");
    assert_eq!(table.neighbours[&B].udp_addr, natted);

    let probe = Control::PmtuProbe {
        probe_id: 3,
        mtu: 1200,
    };
    assert_eq!(
        sends(&state.on_control(natted, B, probe, now)),
        vec![(
            natted,
            Control::PmtuAck {
                probe_id: 3,
                mtu: 1200
            }
        )]
    );
}

#[test]
fn a_heartbeat_without_the_connection_id_moves_nothing_and_gets_no_answer() {
    let now = Instant::now();
    let mut state = with_b(now);
    let _ = state.take_table();
    // Anyone can name B in a datagram; only B (and we) know the id of our connection.
    let forger = SocketAddr::from(([203, 0, 113, 66], 6783));
    let outputs = state.on_control(forger, B, Control::Heartbeat { connection_id: 8 }, now);
    assert_eq!(outputs, Vec::new());
    assert!(state.take_table().is_none(), "B's address is unchanged");
    assert_eq!(state.status()[0].udp_addr, addr(2));
    // Nor does it keep a silent link alive.
    let later = now + HEARTBEAT_TIMEOUT;
    state.on_control(forger, B, Control::Heartbeat { connection_id: 8 }, later);
    assert!(
        state
            .on_tick(later)
            .iter()
            .any(|output| matches!(output, SleeveOutput::Failed { peer: B, .. }))
    );
}

#[test]
fn strangers_get_no_answer() {
    let now = Instant::now();
    let mut state = with_b(now);
    let beat = Control::Heartbeat { connection_id: 1 };
    assert!(state.on_control(addr(3), C, beat, now).is_empty());
}

#[test]
fn silence_fails_the_link_once() {
    let now = Instant::now();
    let mut state = with_b(now);
    let later = now + HEARTBEAT_TIMEOUT;
    let failed = |outputs: &[SleeveOutput]| {
        outputs
            .iter()
            .filter(|output| matches!(output, SleeveOutput::Failed { peer: B, .. }))
            .count()
    };
    assert_eq!(failed(&state.on_tick(later - Duration::from_millis(1))), 0);
    assert_eq!(failed(&state.on_tick(later)), 1);
    assert_eq!(failed(&state.on_tick(later + FAST_HEARTBEAT)), 0);
}

#[test]
fn a_new_connection_to_the_same_peer_starts_afresh() {
    let now = Instant::now();
    let mut state = with_b(now);
    state.on_control(addr(2), B, Control::HeartbeatAck { connection_id: 7 }, now);
    state.set_links(vec![link(B, 8, 2)], &routes(), now);
    assert!(!state.status()[0].established);
    let beats = sends(&state.on_tick(now));
    assert_eq!(
        beats,
        vec![(addr(2), Control::Heartbeat { connection_id: 8 })]
    );
    // A late ack of the old connection proves nothing about the new one.
    state.on_control(addr(2), B, Control::HeartbeatAck { connection_id: 7 }, now);
    assert!(!state.status()[0].established);
}

/// A pod's first frame must find its way: the gossip reports a link as soon as its handshake is done, but routes it
/// only once the peer's record lists the link too, a moment later. A heartbeat ack in between
/// proves the UDP path, not that the table sends pod frames there: the link is not established
/// until the routes reach the peer.
#[test]
fn an_acked_link_is_established_only_once_the_routes_reach_its_peer() {
    let now = Instant::now();
    let mut state = SleeveState::new(LOCAL, 1437);
    let unrouted = Routes::from_links(LOCAL, &[]);
    state.set_links(vec![link(B, 7, 2)], &unrouted, now);
    state.on_tick(now);
    state.on_control(addr(2), B, Control::HeartbeatAck { connection_id: 7 }, now);
    assert!(!state.status()[0].established, "acked, but no route to B");
    let table = state.take_table().expect("the first table");
    assert!(table.children_of(LOCAL).is_empty() && table.route(B).is_none());

    state.set_links(vec![link(B, 7, 2)], &routes(), now);
    assert!(state.status()[0].established);
    let table = state.take_table().expect("the routes changed");
    assert_eq!(table.children_of(LOCAL), &[B]);
    assert_eq!(table.route(B).map(|(hop, _)| hop), Some(B));
}

#[test]
fn the_table_carries_routes_fastdp_and_is_published_only_on_change() {
    let now = Instant::now();
    let mut state = with_b(now);
    let table = state.take_table().expect("the first table");
    assert_eq!(table.local, LOCAL);
    assert_eq!(table.route(C).map(|(hop, _)| hop), Some(B));
    assert_eq!(table.children_of(LOCAL), &[B]);
    assert!(table.relays_through(B), "C lies behind B");
    assert!(!table.neighbours[&B].fastdp);
    assert!(state.take_table().is_none(), "nothing changed");

    state.set_links(vec![link(B, 7, 2)], &routes(), now);
    assert!(state.take_table().is_none(), "the same links and routes");

    state.set_fastdp(carried_draining(&[B], &[B]));
    let table = state.take_table().expect("fastdp changed");
    assert!(table.neighbours[&B].fastdp && table.neighbours[&B].draining);
    state.set_fastdp(carried_draining(&[B], &[]));
    let table = state.take_table().expect("the drain ended");
    assert!(table.neighbours[&B].fastdp && !table.neighbours[&B].draining);

    state.set_links(Vec::new(), &Routes::default(), now);
    let table = state.take_table().expect("the link went");
    assert!(table.neighbours.is_empty());
    assert!(table.route(C).is_none());
}

#[test]
fn silence_on_a_fastdp_link_is_reported_but_does_not_fail_it_until_fastdp_goes() {
    let now = Instant::now();
    let mut state = with_b(now);
    state.set_fastdp(carried_draining(&[B], &[]));
    let later = now + HEARTBEAT_TIMEOUT;
    let outputs = state.on_tick(later);
    assert!(
        outputs.contains(&SleeveOutput::Silent { peer: B }),
        "{outputs:?}"
    );
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, SleeveOutput::Failed { .. }))
    );
    assert!(
        sends(&outputs).contains(&(addr(2), Control::Heartbeat { connection_id: 7 })),
        "sleeve keeps trying"
    );
    assert!(
        !state
            .on_tick(later + FAST_HEARTBEAT)
            .contains(&SleeveOutput::Silent { peer: B }),
        "reported once"
    );
    // Fastdp stops too: now no overlay carries the link.
    state.set_fastdp(FastdpPeers::default());
    let outputs = state.on_tick(later + FAST_HEARTBEAT * 2);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, SleeveOutput::Failed { peer: B, .. })),
        "{outputs:?}"
    );
}

#[test]
fn a_sealed_sleeve_sizes_datagrams_for_the_sealed_mtu_plus_the_seal() {
    use crate::wire::sleeve::seal::{SEAL_OVERHEAD, sealed_effective_mtu};
    let now = Instant::now();
    let mtu = u16::try_from(sealed_effective_mtu(1500)).unwrap();
    assert_eq!(mtu, 1413);
    let mut sealed = SleeveState::new(LOCAL, mtu).sealed();
    sealed.set_links(vec![link(B, 7, 2)], &routes(), now);
    let table = sealed.take_table().unwrap();
    // The datagram on the wire fills a 1500-byte underlay exactly, as a plain one does.
    assert_eq!(
        table.neighbours[&B].payload_limit,
        payload_limit_for_mtu(1413) + SEAL_OVERHEAD
    );
    assert_eq!(table.neighbours[&B].payload_limit, 1472);
    let plain = with_b(now).take_table().unwrap();
    assert_eq!(plain.neighbours[&B].payload_limit, 1472);
    assert_eq!(payload_limit_for_mtu(1437), 1472);
}
