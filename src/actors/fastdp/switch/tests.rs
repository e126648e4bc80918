//! The overlay switch's timers and hysteresis, with injected time; `kernel`: the switch driven
//! by real fastdp heartbeats between two namespaced nodes.

mod kernel;

use super::*;

fn peer(n: u8) -> LinkedPeer {
    LinkedPeer {
        name: PeerName::from_bytes([0x7e, 0, 0, 0, 0, n]),
        nickname: format!("node-{n}"),
        ip: Ipv4Addr::new(192, 0, 2, n),
    }
}

fn none() -> BTreeSet<Ipv4Addr> {
    BTreeSet::new()
}

/// Acks every heartbeat interval from `start` for `count` intervals; the switches seen.
fn ack_every_second(
    switch: &mut OverlaySwitch,
    name: PeerName,
    start: Instant,
    count: u32,
) -> Vec<Switched> {
    let mut switched = Vec::new();
    for i in 1..=count {
        let now = start + HEARTBEAT_INTERVAL * i;
        switched.extend(switch.on_ack(name, now));
        switched.extend(switch.tick(now));
    }
    switched
}

#[test]
fn a_new_peer_starts_on_sleeve_and_moves_to_fastdp_after_three_acks_in_a_row() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(true);
    let a = peer(1);
    let first = switch.set_links(std::slice::from_ref(&a), &none(), t0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].to, Overlay::Sleeve);
    assert!(!first[0].fallback);
    assert!(switch.on_ack(a.name, t0 + HEARTBEAT_INTERVAL).is_empty());
    assert!(
        switch
            .on_ack(a.name, t0 + HEARTBEAT_INTERVAL * 2)
            .is_empty()
    );
    let switched = switch.on_ack(a.name, t0 + HEARTBEAT_INTERVAL * 3);
    assert_eq!(switched.len(), 1);
    assert_eq!(switched[0].to, Overlay::Fastdp);
    assert_eq!(
        switched[0].log_line(),
        format!("overlay_switch ->[{}(node-1)] using fastdp", a.name)
    );
    assert_eq!(switch.fastdp_peers(), BTreeSet::from([a.name]));
}

#[test]
fn acks_with_gaps_do_not_count_as_in_a_row() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(true);
    let a = peer(1);
    switch.set_links(std::slice::from_ref(&a), &none(), t0);
    // One ack every three seconds: each one starts a new streak.
    for i in 1..=10 {
        assert!(
            switch
                .on_ack(a.name, t0 + Duration::from_secs(3 * i))
                .is_empty()
        );
    }
    assert!(switch.fastdp_peers().is_empty());
}

#[test]
fn a_healthy_peer_falls_back_after_four_seconds_without_acks_and_logs_once() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(true);
    let a = peer(1);
    switch.set_links(std::slice::from_ref(&a), &none(), t0);
    ack_every_second(&mut switch, a.name, t0, 5);
    let last_ack = t0 + HEARTBEAT_INTERVAL * 5;
    assert!(
        switch
            .tick(last_ack + UNHEALTHY_AFTER - Duration::from_millis(1))
            .is_empty()
    );
    let switched = switch.tick(last_ack + UNHEALTHY_AFTER);
    assert_eq!(switched.len(), 1);
    assert_eq!(switched[0].to, Overlay::Sleeve);
    assert!(switched[0].fallback);
    // Further ticks say nothing more.
    for i in 1..10 {
        assert!(switch.tick(last_ack + UNHEALTHY_AFTER * i).is_empty());
    }
    assert!(switch.fastdp_peers().is_empty());
}

#[test]
fn recovery_needs_three_acks_again_and_one_ack_does_not_flap() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(true);
    let a = peer(1);
    switch.set_links(std::slice::from_ref(&a), &none(), t0);
    ack_every_second(&mut switch, a.name, t0, 4);
    let down = t0 + Duration::from_secs(20);
    assert_eq!(switch.tick(down).len(), 1);
    // A lone ack, then silence: still on sleeve.
    assert!(switch.on_ack(a.name, down + HEARTBEAT_INTERVAL).is_empty());
    assert!(switch.tick(down + Duration::from_secs(10)).is_empty());
    let back = ack_every_second(&mut switch, a.name, down + Duration::from_secs(10), 3);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].to, Overlay::Fastdp);
}

#[test]
fn an_adopted_peer_starts_on_fastdp_but_must_be_acked_in_time() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(true);
    let a = peer(1);
    let first = switch.set_links(std::slice::from_ref(&a), &BTreeSet::from([a.ip]), t0);
    assert_eq!(first[0].to, Overlay::Fastdp);
    let switched = switch.tick(t0 + UNHEALTHY_AFTER);
    assert_eq!(switched.len(), 1);
    assert!(switched[0].fallback);
}

#[test]
fn with_fastdp_disabled_every_peer_is_sleeve_and_nothing_is_probed() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(false);
    let a = peer(1);
    switch.set_links(std::slice::from_ref(&a), &BTreeSet::from([a.ip]), t0);
    ack_every_second(&mut switch, a.name, t0, 5);
    assert!(switch.fastdp_peers().is_empty());
    assert!(switch.heartbeat_targets().is_empty());
}

#[test]
fn a_peer_whose_link_goes_is_forgotten_and_starts_over_when_it_returns() {
    let t0 = Instant::now();
    let mut switch = OverlaySwitch::new(true);
    let a = peer(1);
    switch.set_links(std::slice::from_ref(&a), &none(), t0);
    ack_every_second(&mut switch, a.name, t0, 3);
    assert_eq!(switch.fastdp_peers().len(), 1);
    assert!(
        switch
            .set_links(&[], &none(), t0 + HEARTBEAT_INTERVAL * 4)
            .is_empty()
    );
    assert!(switch.fastdp_peers().is_empty());
    assert!(switch.peers().is_empty());
    let again = switch.set_links(&[a], &none(), t0 + HEARTBEAT_INTERVAL * 5);
    assert_eq!(again[0].to, Overlay::Sleeve);
}

#[test]
fn acks_from_unknown_peers_are_ignored() {
    let mut switch = OverlaySwitch::new(true);
    assert!(switch.on_ack(peer(9).name, Instant::now()).is_empty());
}

#[test]
fn with_a_password_a_peer_outside_the_trusted_subnets_stays_on_sleeve_and_says_why() {
    use crate::actors::fastdp::switch_policy::{FastdpPolicy, NO_ESP_REASON};
    let t0 = Instant::now();
    // peer(1) is 192.0.2.1, inside; peer(2) becomes an outsider at 198.51.100.2.
    let trusted = vec!["192.0.2.0/24".parse().unwrap()];
    let mut switch = OverlaySwitch::new(true).with_policy(FastdpPolicy::new(true, trusted));
    let inside = peer(1);
    let outside = LinkedPeer {
        ip: Ipv4Addr::new(198, 51, 100, 2),
        ..peer(2)
    };
    // Even a flood entry the kernel already had does not make the outsider healthy.
    let adopted = BTreeSet::from([outside.ip]);
    let first = switch.set_links(&[inside.clone(), outside.clone()], &adopted, t0);
    let of = |name: PeerName| first.iter().find(|s| s.peer == name).unwrap();
    assert_eq!(of(outside.name).to, Overlay::Sleeve);
    assert_eq!(
        of(outside.name).log_line(),
        format!(
            "overlay_switch ->[{}(node-2)] using sleeve ({NO_ESP_REASON})",
            outside.name
        )
    );
    assert_eq!(of(inside.name).reason, None);
    assert_eq!(switch.heartbeat_targets(), vec![inside.name]);
    let mut switched = ack_every_second(&mut switch, inside.name, t0, 5);
    switched.extend(ack_every_second(&mut switch, outside.name, t0, 5));
    assert_eq!(switch.fastdp_peers(), BTreeSet::from([inside.name]));
    assert!(
        switched.iter().all(|s| s.peer == inside.name),
        "{switched:?}"
    );
    assert_eq!(switch.peers()[&outside.name].reason, Some(NO_ESP_REASON));
    assert_eq!(switch.peers()[&inside.name].reason, None);

    // With fastdp off every peer is on sleeve for that reason alone: none is shown.
    let mut off = OverlaySwitch::new(false).with_policy(FastdpPolicy::new(true, vec![]));
    let first = off.set_links(std::slice::from_ref(&outside), &none(), t0);
    assert_eq!((first[0].to, first[0].reason), (Overlay::Sleeve, None));
}
