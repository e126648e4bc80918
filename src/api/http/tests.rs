use super::*;
use crate::actors::fastdp::PeerOverlay;
use crate::actors::overlay::Overlay;

#[test]
fn form_takes_repeated_peers_and_replace() {
    let (peers, replace) = peers_form(None, b"peer=10.0.0.1&peer=host%3A6783&replace=true");
    assert_eq!(peers, vec!["10.0.0.1".to_string(), "host:6783".to_string()]);
    assert!(replace);
    assert_eq!(peers_form(None, b"peer=a"), (vec!["a".to_string()], false));
}

#[test]
fn the_query_string_counts_as_well_as_the_body() {
    assert_eq!(
        peers_form(Some("peer=b&replace=true"), b"peer=a"),
        (vec!["a".to_string(), "b".to_string()], true)
    );
    // As Go's FormValue: the body's value wins.
    assert_eq!(
        peers_form(Some("replace=true"), b"replace=false"),
        (Vec::new(), false)
    );
    assert_eq!(peers_form(None, b""), (Vec::new(), false));
}

fn peer(byte: u8) -> PeerName {
    PeerName::from_bytes([0, 0, 0, 0, 0, byte])
}

fn fastdp_with(name: PeerName, healthy: bool) -> FastdpStatus {
    let overlay = PeerOverlay {
        nickname: "node2".to_string(),
        ip: std::net::Ipv4Addr::new(192, 0, 2, 2),
        overlay: if healthy {
            Overlay::Fastdp
        } else {
            Overlay::Sleeve
        },
        healthy,
        last_ack: None,
        reason: None,
    };
    FastdpStatus {
        enabled: true,
        programmed: if healthy {
            [overlay.ip].into_iter().collect()
        } else {
            Default::default()
        },
        peers: [(name, overlay)].into_iter().collect(),
        ..FastdpStatus::default()
    }
}

fn sleeve_with(name: PeerName, acked: bool) -> Vec<SleeveLinkStatus> {
    vec![SleeveLinkStatus {
        peer: name,
        udp_addr: "192.0.2.2:6783".parse().unwrap(),
        established: acked,
        verified_mtu: None,
        mtu: 1437,
    }]
}

#[test]
fn a_link_is_pending_until_an_overlay_proved_the_path() {
    let remote = peer(2);
    let unproven = fastdp_with(remote, false);
    let state = |fastdp: Option<&FastdpStatus>, sleeve: &[SleeveLinkStatus], mesh: bool| {
        link_state(true, fastdp, sleeve, mesh, remote)
    };
    // The mesh handshake alone proves no path for pod frames.
    assert_eq!(
        state(Some(&unproven), &sleeve_with(remote, false), true),
        ConnectionState::Pending
    );
    assert_eq!(state(None, &[], true), ConnectionState::Pending);
    // Either overlay proves it: sleeve heartbeats acked (and routed), or fastdp heartbeats
    // healthy with the peer in the flood list.
    assert_eq!(
        state(Some(&unproven), &sleeve_with(remote, true), true),
        ConnectionState::Established
    );
    assert_eq!(
        state(Some(&fastdp_with(remote, true)), &[], true),
        ConnectionState::Established
    );
    // Healthy heartbeats before the kernel floods to the peer carry no broadcast yet.
    let unprogrammed = FastdpStatus {
        programmed: Default::default(),
        ..fastdp_with(remote, true)
    };
    assert_eq!(
        state(Some(&unprogrammed), &[], true),
        ConnectionState::Pending
    );
    // Another peer's proof is not this one's.
    assert_eq!(
        state(
            Some(&fastdp_with(peer(3), true)),
            &sleeve_with(peer(3), true),
            true
        ),
        ConnectionState::Pending
    );
    // A link whose handshake is not done is pending whatever the overlays say.
    assert_eq!(
        state(
            Some(&fastdp_with(remote, true)),
            &sleeve_with(remote, true),
            false
        ),
        ConnectionState::Pending
    );
}

#[test]
fn without_a_data_plane_the_handshake_establishes_a_link() {
    let remote = peer(2);
    assert_eq!(
        link_state(false, None, &[], true, remote),
        ConnectionState::Established
    );
    assert_eq!(
        link_state(false, None, &[], false, remote),
        ConnectionState::Pending
    );
}
