use super::*;
use crate::snapshot::{ConnectionStatus, PeerConnectionStatus};
use crate::topology::PeerUid;

const HOST1: &str = "4a:0f:f6:ec:1c:93";
const HOST2: &str = "7e:21:4a:70:2f:45";
const HOST3: &str = "c2:b1:9e:2d:44:10";

fn name(text: &str) -> PeerName {
    text.parse().expect("test peer names are valid")
}

fn base(nick: &str) -> RouterStatus {
    RouterStatus {
        version: "0.1.0".to_string(),
        protocol: "weft".to_string(),
        protocol_min_version: 1,
        protocol_max_version: 1,
        name: name(HOST1),
        nick_name: nick.to_string(),
        encryption: false,
        peer_discovery: true,
        port: 6783,
        conn_limit: 30,
        targets: vec![],
        connections: vec![],
        peers: vec![peer(HOST1, "host1", vec![])],
        unicast_routes: vec![],
        broadcast_routes: vec![],
        termination_count: 0,
        refused_for_limit_count: 0,
        trusted_subnets: vec![],
        ipam: None,
        macs: vec![],
        overlays: vec![],
        kubernetes: None,
    }
}

fn peer(peer_name: &str, nick: &str, connections: Vec<PeerConnectionStatus>) -> PeerStatus {
    PeerStatus {
        name: name(peer_name),
        nick_name: nick.to_string(),
        uid: PeerUid(7),
        version: 3,
        connections,
    }
}

fn peer_conn(
    peer_name: &str,
    nick: &str,
    address: &str,
    outbound: bool,
    established: bool,
) -> PeerConnectionStatus {
    PeerConnectionStatus {
        name: name(peer_name),
        nick_name: Some(nick.to_string()),
        address: address.to_string(),
        outbound,
        established,
    }
}

fn link(
    address: &str,
    outbound: bool,
    state: ConnectionState,
    remote: (&str, &str),
    overlay: Option<&str>,
    mtu: &str,
) -> ConnectionStatus {
    ConnectionStatus {
        address: address.to_string(),
        outbound,
        state,
        peer: Some(name(remote.0)),
        nick_name: Some(remote.1.to_string()),
        info: String::new(),
        overlay: overlay.map(str::to_string),
        attrs: vec![("mtu".to_string(), mtu.to_string())],
    }
}

fn target(address: &str, state: ConnectionState, info: &str) -> ConnectionStatus {
    ConnectionStatus {
        address: address.to_string(),
        outbound: true,
        state,
        peer: None,
        nick_name: None,
        info: info.to_string(),
        overlay: None,
        attrs: vec![],
    }
}

/// host1's view of a healthy three-node mesh: it dialled host3, host2 dialled it.
fn full_mesh() -> RouterStatus {
    let mut s = base("host1");
    s.targets = vec!["192.168.48.12".to_string(), "192.168.48.13".to_string()];
    s.connections = vec![
        link(
            "192.168.48.12:33866",
            false,
            ConnectionState::Established,
            (HOST2, "host2"),
            Some("fastdp"),
            "1376",
        ),
        link(
            "192.168.48.13:6783",
            true,
            ConnectionState::Established,
            (HOST3, "host3"),
            Some("sleeve"),
            "1438",
        ),
    ];
    // Deliberately out of order: the peers text sorts them.
    s.peers = vec![
        peer(
            HOST3,
            "host3",
            vec![
                peer_conn(HOST2, "host2", "192.168.48.12:6783", true, true),
                peer_conn(HOST1, "host1", "192.168.48.11:45120", false, true),
            ],
        ),
        peer(
            HOST1,
            "host1",
            vec![
                peer_conn(HOST3, "host3", "192.168.48.13:6783", true, true),
                peer_conn(HOST2, "host2", "192.168.48.12:33866", false, true),
            ],
        ),
        peer(
            HOST2,
            "host2",
            vec![
                peer_conn(HOST1, "host1", "192.168.48.11:6783", true, true),
                peer_conn(HOST3, "host3", "192.168.48.13:51432", false, true),
            ],
        ),
    ];
    s.trusted_subnets = vec!["10.0.0.0/8".to_string(), "192.168.48.0/24".to_string()];
    s
}

/// host1 with one link still settling and two targets it cannot reach.
fn failing() -> RouterStatus {
    let mut s = base("host1");
    s.peer_discovery = false;
    s.targets = vec![
        "192.168.48.12".to_string(),
        "10.0.0.5:6783".to_string(),
        "10.0.0.6:6783".to_string(),
    ];
    s.connections = vec![
        link(
            "192.168.48.12:6783",
            true,
            ConnectionState::Established,
            (HOST2, "host2"),
            None,
            "1410",
        ),
        target(
            "10.0.0.5:6783",
            ConnectionState::Failed,
            "connection refused, retry: 12s",
        ),
        target("10.0.0.6:6783", ConnectionState::Connecting, ""),
    ];
    s.peers = vec![
        peer(
            HOST1,
            "host1",
            vec![peer_conn(HOST2, "host2", "192.168.48.12:6783", true, true)],
        ),
        peer(
            HOST2,
            "host2",
            vec![peer_conn(
                HOST1,
                "host1",
                "192.168.48.11:40312",
                false,
                false,
            )],
        ),
    ];
    s
}

#[test]
fn status_of_a_full_mesh() {
    let expected = concat!(
        "        Version: 0.1.0\n",
        "\n",
        "        Service: router\n",
        "       Protocol: weft 1\n",
        "           Name: 4a:0f:f6:ec:1c:93(host1)\n",
        "     Encryption: disabled\n",
        "  PeerDiscovery: enabled\n",
        "        Targets: 2\n",
        "    Connections: 2 (2 established)\n",
        "          Peers: 3 (with 6 established connections)\n",
        " TrustedSubnets: 10.0.0.0/8, 192.168.48.0/24\n",
    );
    assert_eq!(status(&full_mesh(), None), expected);
}

#[test]
fn peers_of_a_full_mesh_local_first_then_by_name() {
    let expected = concat!(
        "4a:0f:f6:ec:1c:93(host1)\n",
        "   <- 192.168.48.12:33866   7e:21:4a:70:2f:45(host2)              established\n",
        "   -> 192.168.48.13:6783    c2:b1:9e:2d:44:10(host3)              established\n",
        "7e:21:4a:70:2f:45(host2)\n",
        "   -> 192.168.48.11:6783    4a:0f:f6:ec:1c:93(host1)              established\n",
        "   <- 192.168.48.13:51432   c2:b1:9e:2d:44:10(host3)              established\n",
        "c2:b1:9e:2d:44:10(host3)\n",
        "   <- 192.168.48.11:45120   4a:0f:f6:ec:1c:93(host1)              established\n",
        "   -> 192.168.48.12:6783    7e:21:4a:70:2f:45(host2)              established\n",
    );
    assert_eq!(peers(&full_mesh()), expected);
}

#[test]
fn connections_of_a_full_mesh() {
    let expected = concat!(
        "<- 192.168.48.12:33866   established fastdp 7e:21:4a:70:2f:45(host2) mtu=1376\n",
        "-> 192.168.48.13:6783    established sleeve c2:b1:9e:2d:44:10(host3) mtu=1438\n",
    );
    assert_eq!(connections(&full_mesh()), expected);
}

#[test]
fn targets_one_per_line() {
    assert_eq!(targets(&full_mesh()), "192.168.48.12\n192.168.48.13\n");
}

#[test]
fn status_with_failed_target_and_pending_peer_link() {
    let expected = concat!(
        "        Version: 0.1.0\n",
        "\n",
        "        Service: router\n",
        "       Protocol: weft 1\n",
        "           Name: 4a:0f:f6:ec:1c:93(host1)\n",
        "     Encryption: disabled\n",
        "  PeerDiscovery: disabled\n",
        "        Targets: 3\n",
        "    Connections: 3 (1 established, 1 connecting, 1 failed)\n",
        "          Peers: 2 (with 1 established, 1 pending connections)\n",
        " TrustedSubnets: none\n",
    );
    assert_eq!(status(&failing(), None), expected);
}

#[test]
fn connections_with_failed_target_and_no_overlay() {
    let expected = concat!(
        "-> 192.168.48.12:6783    established 7e:21:4a:70:2f:45(host2) mtu=1410\n",
        "-> 10.0.0.5:6783         failed      connection refused, retry: 12s\n",
        "-> 10.0.0.6:6783         connecting\n",
    );
    assert_eq!(connections(&failing()), expected);
}

#[test]
fn peers_with_pending_link() {
    let expected = concat!(
        "4a:0f:f6:ec:1c:93(host1)\n",
        "   -> 192.168.48.12:6783    7e:21:4a:70:2f:45(host2)              established\n",
        "7e:21:4a:70:2f:45(host2)\n",
        "   <- 192.168.48.11:40312   4a:0f:f6:ec:1c:93(host1)              pending\n",
    );
    assert_eq!(peers(&failing()), expected);
}

#[test]
fn status_with_no_connections() {
    let expected = concat!(
        "        Version: 0.1.0\n",
        "\n",
        "        Service: router\n",
        "       Protocol: weft 1\n",
        "           Name: 4a:0f:f6:ec:1c:93(lonely)\n",
        "     Encryption: disabled\n",
        "  PeerDiscovery: enabled\n",
        "        Targets: 0\n",
        "    Connections: 0\n",
        "          Peers: 1\n",
        " TrustedSubnets: none\n",
    );
    assert_eq!(status(&base("lonely"), None), expected);
}

#[test]
fn sections_with_no_connections() {
    let s = base("host1");
    assert_eq!(peers(&s), "4a:0f:f6:ec:1c:93(host1)\n");
    assert_eq!(connections(&s), "");
    assert_eq!(targets(&s), "");
}

#[test]
fn status_appends_ipam_section_after_blank_line() {
    let ipam = "        Service: ipam\n         Status: ready";
    let text = status(&base("host1"), Some(ipam));
    assert!(
        text.ends_with(concat!(
            " TrustedSubnets: none\n",
            "\n",
            "        Service: ipam\n",
            "         Status: ready\n",
        )),
        "{text}"
    );
}

#[test]
fn protocol_shows_range_when_versions_differ() {
    let mut s = base("host1");
    s.protocol_max_version = 2;
    assert!(status(&s, None).contains("\n       Protocol: weft 1..2\n"));
}

#[test]
fn encryption_enabled_and_unknown_nickname() {
    let mut s = base("host1");
    s.encryption = true;
    s.connections = vec![ConnectionStatus {
        nick_name: None,
        attrs: vec![("encrypted".to_string(), "true".to_string())],
        ..link(
            "192.168.48.12:6783",
            true,
            ConnectionState::Pending,
            (HOST2, ""),
            Some("sleeve"),
            "",
        )
    }];
    assert!(status(&s, None).contains("\n     Encryption: enabled\n"));
    assert_eq!(
        connections(&s),
        "-> 192.168.48.12:6783    pending     encrypted   sleeve 7e:21:4a:70:2f:45\n"
    );
    // A fastdp link of a mesh with a password is not encrypted (no ESP here): it says so.
    s.connections[0].attrs = vec![
        ("encrypted".to_string(), "false".to_string()),
        ("mtu".to_string(), "1376".to_string()),
    ];
    s.connections[0].overlay = Some("fastdp".to_string());
    assert_eq!(
        connections(&s),
        "-> 192.168.48.12:6783    pending     unencrypted fastdp 7e:21:4a:70:2f:45 mtu=1376\n"
    );
    // A link kept on sleeve by the trusted subnets says why, after its attributes.
    s.connections[0].attrs = vec![("encrypted".to_string(), "true".to_string())];
    s.connections[0].overlay = Some("sleeve".to_string());
    s.connections[0].info = "encrypted sleeve: this kernel has no ESP".to_string();
    assert_eq!(
        connections(&s),
        "-> 192.168.48.12:6783    pending     encrypted   sleeve 7e:21:4a:70:2f:45 \
         (encrypted sleeve: this kernel has no ESP)\n"
    );
}

#[test]
fn peer_discovery_shows_the_kubernetes_side() {
    let mut s = base("host1");
    let mut kube = KubeStatus {
        api_url: "https://198.51.100.2:6443/".into(),
        node_name: "node1".into(),
        nodes: 3,
        synced: true,
        error: None,
    };
    s.kubernetes = Some(kube.clone());
    assert!(status(&s, None).contains("\n  PeerDiscovery: kubernetes (3 nodes)\n"));
    kube.error = Some("connection refused".into());
    s.kubernetes = Some(kube);
    assert!(status(&s, None).contains(
        "\n  PeerDiscovery: kubernetes (3 nodes known; waiting for the API at \
         https://198.51.100.2:6443/: connection refused)\n"
    ));
}
