//! Tests of node setup, pod wiring and reset against the real kernel, in throwaway namespaces
//! (see `testns`): a "node" namespace holds the bridge, "pod" namespaces are attached to it, and
//! the only traffic (TCP connects) stays between those namespaces.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::dataplane::attach::{AttachRequest, attach_pod, detach_pod, host_veth_name};
use crate::dataplane::link::{LinkKind, LinkOps, MacAddr};
use crate::dataplane::netlink::NetlinkLinkOps;
use crate::dataplane::netns::spawn_in;
use crate::dataplane::node::{
    DEFAULT_BRIDGE, DEFAULT_VXLAN_NAME, MtuSource, NodeConfig, reset_node, setup_node,
};
use crate::dataplane::testns::TestNs;

/// A locally administered unicast MAC, as a peer name would be.
const PEER_MAC: MacAddr = MacAddr([0x0a, 0x11, 0x22, 0x33, 0x44, 0x66]);

/// How long a connect between namespaces may take before the test fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn node_config(mtu: Option<u32>) -> NodeConfig {
    NodeConfig {
        mtu,
        ..NodeConfig::new(PEER_MAC, 6783, 42)
    }
}

#[test]
fn setup_node_creates_bridge_and_isolated_vxlan_then_adopts() {
    let ns = TestNs::new("node-setup");
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let first = setup_node(&ops, &node_config(Some(1400)))
            .await
            .expect("setup");
        assert_eq!(first.mtu, 1400);
        assert_eq!(first.mtu_source, MtuSource::Configured);
        assert_eq!(first.bridge.mac, Some(PEER_MAC));
        assert_eq!(first.bridge.mtu, 1400);
        assert_eq!(first.vxlan.kind, Some(LinkKind::Vxlan));
        assert_eq!(first.vxlan.master, Some(first.bridge.index));
        assert_eq!(first.vxlan.mtu, 1400);

        let second = setup_node(&ops, &node_config(Some(1400)))
            .await
            .expect("adopt");
        assert_eq!(second.bridge.index, first.bridge.index);
        assert_eq!(second.vxlan.index, first.vxlan.index);
    });
    let vxlan = ns.ip(&["-d", "link", "show", "vxlan-6784"]);
    assert!(vxlan.contains("isolated on"), "{vxlan}");
    assert!(vxlan.contains("dstport 6784"), "{vxlan}");
    // Fastdp's settings: the kernel learns remote MACs (the router hears of them), DF is set
    // (the full-size heartbeat proves the MTU), and the bridge does not learn on this port (the
    // router decides which overlay port each remote MAC takes).
    assert!(!vxlan.contains("nolearning"), "{vxlan}");
    assert!(vxlan.contains("df set"), "{vxlan}");
    assert!(vxlan.contains("learning off"), "{vxlan}");
}

#[test]
fn setup_node_refuses_a_tiny_configured_mtu() {
    let ns = TestNs::new("node-tinymtu");
    let result = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        setup_node(&ops, &node_config(Some(500))).await.map(|_| ())
    });
    assert!(result.is_err());
    assert!(!ns.ip(&["link"]).contains("weave"), "nothing created");
}

/// A veth pair `under0`/`under1` with this MTU, `under0` holding 192.168.77.1/24, both up.
fn underlay(ns: &TestNs, mtu: &str) {
    ns.ip(&[
        "link", "add", "under0", "mtu", mtu, "type", "veth", "peer", "name", "under1", "mtu", mtu,
    ]);
    ns.ip(&["addr", "add", "192.168.77.1/24", "dev", "under0"]);
    ns.ip(&["link", "set", "under0", "up"]);
    ns.ip(&["link", "set", "under1", "up"]);
}

#[test]
fn auto_mtu_follows_the_route_to_the_probe_peer() {
    let ns = TestNs::new("node-jumbo");
    underlay(&ns, "9000");
    let state = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let cfg = NodeConfig {
            underlay_probe: Some(Ipv4Addr::new(192, 168, 77, 2)),
            ..node_config(None)
        };
        setup_node(&ops, &cfg).await.expect("setup")
    });
    assert_eq!(state.mtu, 8950);
    assert_eq!(state.bridge.mtu, 8950);
    assert_eq!(
        state.mtu_source,
        MtuSource::PeerRoute {
            peer: Ipv4Addr::new(192, 168, 77, 2),
            underlay: "under0".into()
        }
    );
}

#[test]
fn auto_mtu_falls_back_to_the_default_route_interface() {
    let ns = TestNs::new("node-defroute");
    underlay(&ns, "1500");
    ns.ip(&["route", "add", "default", "via", "192.168.77.254"]);
    let state = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let cfg = NodeConfig {
            // No peer known yet: the default route's interface decides.
            underlay_probe: None,
            ..node_config(None)
        };
        setup_node(&ops, &cfg).await.expect("setup")
    });
    assert_eq!(state.mtu, 1450);
    assert_eq!(
        state.mtu_source,
        MtuSource::DefaultRoute {
            underlay: "under0".into()
        }
    );
}

#[test]
fn auto_mtu_without_any_route_assumes_ethernet() {
    let ns = TestNs::new("node-noroute");
    let state = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        setup_node(&ops, &node_config(None)).await.expect("setup")
    });
    assert_eq!((state.mtu, state.mtu_source), (1450, MtuSource::Assumed));
}

/// A TCP connection from namespace `from` to a listener on `addr` in namespace `to`, with one
/// byte each way: proof that frames cross the bridge in both directions.
fn assert_reaches(from: PathBuf, to: PathBuf, addr: Ipv4Addr) {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_in(&to, "node-server", move || {
        let listener = TcpListener::bind((addr, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        tx.send(listener.local_addr().expect("port").port())
            .expect("send port");
        // Polled with a deadline, so a broken path fails the test instead of hanging it.
        let deadline = Instant::now() + CONNECT_TIMEOUT * 2;
        while Instant::now() < deadline {
            if let Ok((mut stream, _)) = listener.accept() {
                stream.set_nonblocking(false).expect("blocking");
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).expect("read");
                stream.write_all(&byte).expect("echo");
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    })
    .expect("enter the server namespace");
    let port = rx.recv().expect("listener port");
    let client = spawn_in(&from, "node-client", move || {
        let target = SocketAddr::from((addr, port));
        let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        stream.write_all(b"w")?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        Ok(byte)
    })
    .expect("enter the client namespace");
    let reply = client.join().expect("client thread");
    assert!(
        server.join().expect("server thread").expect("listen"),
        "no connection to {addr}"
    );
    assert_eq!(reply.expect("connect and echo"), *b"w", "to {addr}");
}

fn pod_request(pod: &TestNs, address: Ipv4Addr) -> AttachRequest {
    AttachRequest {
        address: Some((address, 12)),
        gateway: Some(Ipv4Addr::new(10, 32, 0, 1)),
        ..AttachRequest::new(pod.path())
    }
}

#[test]
fn attached_pods_reach_each_other_and_the_bridge_then_detach_and_reset() {
    let node = TestNs::new("node-pods");
    let pod1 = TestNs::new("node-pod1");
    let pod2 = TestNs::new("node-pod2");
    let (req1, req2) = (
        pod_request(&pod1, Ipv4Addr::new(10, 32, 0, 2)),
        pod_request(&pod2, Ipv4Addr::new(10, 32, 0, 3)),
    );
    let (first, again) = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        setup_node(&ops, &node_config(Some(1450)))
            .await
            .expect("setup");
        ops.add_ipv4_address("weave", Ipv4Addr::new(10, 32, 0, 1), 12)
            .await
            .expect("bridge address");
        let first = attach_pod(&ops, &req1).await.expect("attach pod1");
        attach_pod(&ops, &req2).await.expect("attach pod2");
        let again = attach_pod(&ops, &req1).await.expect("attach pod1 again");
        (first, again)
    });
    assert!(!first.existing);
    assert_eq!(first.host.name, host_veth_name(&pod1.path()));
    assert_eq!(first.pod.name, "eth0");
    assert_eq!(first.pod.mtu, 1450, "the bridge MTU");
    assert!(again.existing);
    assert_eq!(again.host.index, first.host.index, "attach again adopts");
    assert!(
        pod1.ip(&["route"])
            .contains("default via 10.32.0.1 dev eth0")
    );

    assert_reaches(pod1.path(), pod2.path(), Ipv4Addr::new(10, 32, 0, 3));
    assert_reaches(pod2.path(), pod1.path(), Ipv4Addr::new(10, 32, 0, 2));
    assert_reaches(pod1.path(), node.path(), Ipv4Addr::new(10, 32, 0, 1));

    let path1 = pod1.path();
    let (detached, detached_again, removed, removed_again) = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let detached = detach_pod(&ops, &path1).await.expect("detach");
        let detached_again = detach_pod(&ops, &path1).await.expect("detach again");
        let removed = reset_node(&ops, "weave", "vxlan-6784")
            .await
            .expect("reset");
        let removed_again = reset_node(&ops, "weave", "vxlan-6784")
            .await
            .expect("reset again");
        (detached, detached_again, removed, removed_again)
    });
    assert!(detached && !detached_again);
    assert!(!pod1.ip(&["link"]).contains("eth0"), "pod end went too");
    assert_eq!(
        removed,
        [
            host_veth_name(&pod2.path()),
            "vxlan-6784".into(),
            "weave".into()
        ]
    );
    assert!(removed_again.is_empty());
    let left = node.ip(&["link"]);
    assert!(
        !left.contains("vethwepl") && !left.contains("weave"),
        "{left}"
    );
}

#[test]
fn a_failed_attach_leaves_no_veth_behind() {
    let node = TestNs::new("node-halfwired");
    let pod = TestNs::new("node-halfpod");
    let request = AttachRequest {
        // No address in the pod, so the gateway is unreachable and the route is refused.
        gateway: Some(Ipv4Addr::new(10, 99, 0, 1)),
        ..AttachRequest::new(pod.path())
    };
    let result = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        setup_node(&ops, &node_config(Some(1450)))
            .await
            .expect("setup");
        attach_pod(&ops, &request).await.map(|_| ())
    });
    assert!(result.is_err());
    assert!(!node.ip(&["link"]).contains("vethwepl"));
    assert!(!pod.ip(&["link"]).contains("eth0"));
}

#[test]
fn attach_without_the_bridge_is_not_found() {
    let node = TestNs::new("node-nobridge");
    let pod = TestNs::new("node-nobridgepod");
    let request = AttachRequest::new(pod.path());
    let err = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        attach_pod(&ops, &request).await.expect_err("no bridge")
    });
    assert!(
        matches!(&err, crate::dataplane::DataplaneError::NotFound { name, .. } if name == "weave"),
        "{err:?}"
    );
}

#[test]
fn defaults_follow_the_mesh_port() {
    let cfg = NodeConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), 6783, 8);
    assert_eq!(cfg.bridge, DEFAULT_BRIDGE);
    assert_eq!(cfg.vxlan_name, DEFAULT_VXLAN_NAME);
    assert_eq!(cfg.vxlan_port, 6784);
    assert_eq!(
        NodeConfig::new(cfg.bridge_mac, 7000, 8).vxlan_name,
        "vxlan-7001"
    );
    assert_eq!(
        crate::dataplane::sleeve::sleeve_tap_name(6783),
        "sleeve-6783"
    );
}
