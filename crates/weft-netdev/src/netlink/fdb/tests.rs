//! Tests of the VXLAN FDB operations against the real kernel, in throwaway namespaces (see
//! `testns`): first the table itself, then the end-to-end proof that programming only the FDB
//! carries pod traffic between two nodes. Every packet stays inside the test's namespaces.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::run_in;

use crate::error::DataplaneError;
use crate::link::{FdbEntry, LinkOps, MacAddr, PortMode, VethSpec, VxlanConfig};
use crate::netlink::NetlinkLinkOps;
use crate::testns::TestNs;

/// Weave's fastdp UDP port.
const FASTDP_PORT: u16 = 6784;
/// Any VNI works as long as both nodes agree.
const VNI: u32 = 42;
/// Overlay MTU on the 1500-byte veth underlay: 1500 - 50 bytes of VXLAN overhead.
const OVERLAY_MTU: u32 = 1450;
/// Underlay addresses of the two nodes (RFC 5737 TEST-NET-1, never routed).
const NODE_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Pod addresses in Weave's default 10.32.0.0/12 range.
const POD_A: &str = "10.32.0.2/12";
const POD_B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 3);
const POD_B: &str = "10.32.0.3/12";
/// The port pod B listens on; any unprivileged port.
const POD_B_PORT: u16 = 8080;
/// How long a TCP connect may take over two veths and a tunnel before we call it unreachable:
/// ARP plus the handshake take well under a millisecond here, so one second is generous even on
/// a loaded machine. (A failed earlier attempt can leave ARP waiting for its next 1 s probe, so
/// the test flushes the neighbour table before expecting success.)
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Locally administered unicast MACs, as pod MACs would be.
const MAC_1: MacAddr = MacAddr([0x0a, 0x00, 0x00, 0x00, 0x00, 0x01]);
const FLOOD: MacAddr = MacAddr([0; 6]);
const REMOTE_1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const REMOTE_2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

fn fastdp(local: Option<Ipv4Addr>) -> VxlanConfig {
    VxlanConfig {
        name: "vxlan-6784".into(),
        vni: VNI,
        port: FASTDP_PORT,
        learning: false,
        df: false,
        mtu: OVERLAY_MTU,
        local,
    }
}

/// `bridge fdb show dev <dev>` in the namespace, as iproute2 sees the table.
fn bridge_fdb_show(ns: &TestNs, dev: &str) -> String {
    let out = Command::new("bridge")
        .args(["-n", ns.name(), "fdb", "show", "dev", dev])
        .output()
        .expect("run `bridge` (install iproute2)");
    assert!(
        out.status.success(),
        "bridge fdb show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sorted(mut entries: Vec<FdbEntry>) -> Vec<FdbEntry> {
    entries.retain(|entry| entry.remote.is_some());
    entries.sort_by_key(|entry| (entry.mac.0, entry.remote));
    entries
}

fn entry(mac: MacAddr, remote: Ipv4Addr) -> FdbEntry {
    FdbEntry {
        mac,
        remote: Some(remote),
    }
}

#[test]
fn fdb_unicast_replace_and_flood_append_read_back() {
    let ns = TestNs::new("fdb");
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", MAC_1, OVERLAY_MTU)
            .await
            .expect("bridge");
        ops.ensure_vxlan(&fastdp(None), "weave")
            .await
            .expect("vxlan");
        let vx = "vxlan-6784";

        ops.fdb_add(vx, MAC_1, REMOTE_1).await.expect("add");
        // Replace semantics: the MAC moved to another node, so it is re-pointed, not doubled.
        ops.fdb_add(vx, MAC_1, REMOTE_2).await.expect("replace");
        ops.fdb_append_flood(vx, REMOTE_1).await.expect("flood 1");
        ops.fdb_append_flood(vx, REMOTE_2).await.expect("flood 2");
        ops.fdb_append_flood(vx, REMOTE_2)
            .await
            .expect("appending twice is a no-op");
        let entries = sorted(ops.fdb_entries(vx).await.expect("list"));
        assert_eq!(
            entries,
            vec![
                entry(FLOOD, REMOTE_1),
                entry(FLOOD, REMOTE_2),
                entry(MAC_1, REMOTE_2),
            ]
        );
    });
    let shown = bridge_fdb_show(&ns, "vxlan-6784");
    for line in [
        "0a:00:00:00:00:01 dst 192.0.2.11 self permanent",
        "00:00:00:00:00:00 dst 192.0.2.10 self permanent",
        "00:00:00:00:00:00 dst 192.0.2.11 self permanent",
    ] {
        assert!(shown.contains(line), "{line:?} missing from:\n{shown}");
    }
    assert!(
        !shown.contains("0a:00:00:00:00:01 dst 192.0.2.10"),
        "{shown}"
    );

    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let vx = "vxlan-6784";
        assert!(ops.fdb_del_flood(vx, REMOTE_1).await.expect("del flood"));
        assert!(!ops.fdb_del_flood(vx, REMOTE_1).await.expect("again"));
        // The wrong remote is not this entry: nothing is deleted.
        assert!(!ops.fdb_del(vx, MAC_1, REMOTE_1).await.expect("wrong dst"));
        assert_eq!(
            sorted(ops.fdb_entries(vx).await.expect("list")),
            vec![entry(FLOOD, REMOTE_2), entry(MAC_1, REMOTE_2)]
        );
        assert!(ops.fdb_del(vx, MAC_1, REMOTE_2).await.expect("del"));
        assert!(ops.fdb_del_flood(vx, REMOTE_2).await.expect("del flood"));
        assert_eq!(sorted(ops.fdb_entries(vx).await.expect("list")), vec![]);
    });
    assert!(!bridge_fdb_show(&ns, "vxlan-6784").contains(" dst "));
}

#[test]
fn fdb_operations_on_a_missing_or_wrong_device_name_it() {
    let ns = TestNs::new("fdb-missing");
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let err = ops
            .fdb_append_flood("vxlan-none", REMOTE_1)
            .await
            .expect_err("no such device");
        assert!(err.to_string().contains("vxlan-none"), "{err}");
        ops.ensure_bridge("weave", MAC_1, OVERLAY_MTU)
            .await
            .expect("bridge");
        let err = ops.fdb_entries("weave").await.expect_err("not a vxlan");
        assert!(err.to_string().contains("weave"), "{err}");
    });
}

/// One overlay node: a bridge `weave`, the fastdp vxlan on it sourced from the node's underlay
/// address, and one pod (`pod`'s `eth0` at `pod_addr`) on a veth.
async fn build_node(pod: PathBuf, local: Ipv4Addr, bridge_mac: MacAddr, pod_host: &str) {
    let ops = NetlinkLinkOps::new().expect("netlink");
    ops.ensure_bridge("weave", bridge_mac, OVERLAY_MTU)
        .await
        .expect("bridge");
    ops.ensure_vxlan(&fastdp(Some(local)), "weave")
        .await
        .expect("vxlan");
    let spec = VethSpec {
        host_name: pod_host,
        peer_name: "eth0",
        netns: &pod,
        mtu: OVERLAY_MTU,
    };
    ops.create_veth_into_netns(&spec).await.expect("pod veth");
    let mode = PortMode {
        isolated: false,
        hairpin: false,
    };
    ops.attach_to_bridge(pod_host, "weave", mode)
        .await
        .expect("attach pod");
    ops.set_up(pod_host, true).await.expect("pod veth up");
}

/// Whether a TCP connection from inside `from` to `to` completes, from a thread that entered
/// the namespace (ping may not be installed).
fn tcp_reaches(from: &TestNs, to: SocketAddr) -> bool {
    run_in(&from.path(), "fdb-connect", move || {
        Ok(TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).is_ok())
    })
    .expect("enter the namespace")
}

/// A listening socket inside `ns`; it stays in that namespace after the thread ends, and the
/// kernel completes handshakes into its backlog without an accept.
fn listen_in(ns: &TestNs, at: SocketAddr) -> TcpListener {
    run_in(&ns.path(), "fdb-listen", move || TcpListener::bind(at)).expect("listen in pod")
}

#[test]
fn fdb_flood_entries_alone_carry_pod_traffic_between_nodes() {
    // Guards first: whatever fails below, every namespace (and the devices in it) goes away.
    let node_a = TestNs::new("fdb-node-a");
    let node_b = TestNs::new("fdb-node-b");
    let pod_a = TestNs::new("fdb-pod-a");
    let pod_b = TestNs::new("fdb-pod-b");

    // The underlay: one veth pair between the two nodes.
    node_a.ip(&[
        "link",
        "add",
        "ul",
        "type",
        "veth",
        "peer",
        "name",
        "ul",
        "netns",
        node_b.name(),
    ]);
    for (node, address) in [(&node_a, "192.0.2.1/24"), (&node_b, "192.0.2.2/24")] {
        node.ip(&["addr", "add", address, "dev", "ul"]);
        node.ip(&["link", "set", "ul", "up"]);
    }
    let path = pod_a.path();
    node_a.run(move || build_node(path, NODE_A, MacAddr([0x0a, 0, 0, 0, 0xa, 1]), "vethpoda"));
    let path = pod_b.path();
    node_b.run(move || build_node(path, NODE_B, MacAddr([0x0a, 0, 0, 0, 0xb, 1]), "vethpodb"));
    for (pod, address) in [(&pod_a, POD_A), (&pod_b, POD_B)] {
        pod.ip(&["addr", "add", address, "dev", "eth0"]);
        pod.ip(&["link", "set", "eth0", "up"]);
    }
    let target = SocketAddr::from((POD_B_ADDR, POD_B_PORT));
    let _listener = listen_in(&pod_b, target);

    assert!(
        !tcp_reaches(&pod_a, target),
        "with an empty FDB and learning off, nothing may cross"
    );

    node_a.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.fdb_append_flood("vxlan-6784", NODE_B)
            .await
            .expect("flood to B");
    });
    node_b.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.fdb_append_flood("vxlan-6784", NODE_A)
            .await
            .expect("flood to A");
    });
    // The failed attempt above left pod A's ARP entry for pod B waiting to retry.
    pod_a.ip(&["neigh", "flush", "all"]);
    assert!(
        tcp_reaches(&pod_a, target),
        "pods must reach each other through the flood entries"
    );

    for (node, remote) in [(&node_a, NODE_B), (&node_b, NODE_A)] {
        node.run(move || async move {
            let ops = NetlinkLinkOps::new().expect("netlink");
            assert!(
                ops.fdb_del_flood("vxlan-6784", remote)
                    .await
                    .expect("unflood")
            );
        });
    }
    assert!(
        !tcp_reaches(&pod_a, target),
        "without FDB entries, traffic must stop"
    );

    // Unicast entries alone carry unicast traffic: both pods' ARP entries are still cached from
    // the exchange above, and a re-probe is unicast too.
    let mac_of = |pod: &TestNs| {
        pod.run(|| async {
            let ops = NetlinkLinkOps::new().expect("netlink");
            let eth0 = ops.link("eth0").await.expect("lookup").expect("eth0");
            eth0.mac.expect("eth0 has a MAC")
        })
    };
    let (mac_a, mac_b) = (mac_of(&pod_a), mac_of(&pod_b));
    for (node, mac, remote) in [(&node_a, mac_b, NODE_B), (&node_b, mac_a, NODE_A)] {
        node.run(move || async move {
            let ops = NetlinkLinkOps::new().expect("netlink");
            ops.fdb_add("vxlan-6784", mac, remote)
                .await
                .expect("unicast entry");
        });
    }
    assert!(
        tcp_reaches(&pod_a, target),
        "pods must reach each other through unicast entries alone"
    );
}

#[test]
fn vxlan_local_address_is_set_and_checked_on_adoption() {
    let ns = TestNs::new("fdb-local");
    let err = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", MAC_1, OVERLAY_MTU)
            .await
            .expect("bridge");
        ops.ensure_vxlan(&fastdp(Some(NODE_A)), "weave")
            .await
            .expect("vxlan");
        ops.ensure_vxlan(&fastdp(Some(NODE_A)), "weave")
            .await
            .expect("adopt, same local");
        ops.ensure_vxlan(&fastdp(None), "weave")
            .await
            .expect("adopt, any local");
        ops.ensure_vxlan(&fastdp(Some(NODE_B)), "weave")
            .await
            .expect_err("another local address")
    });
    assert!(
        matches!(&err, DataplaneError::Mismatch { setting: "local address", found, .. }
            if found == "192.0.2.1"),
        "{err:?}"
    );
    assert!(
        ns.ip(&["-d", "link", "show", "vxlan-6784"])
            .contains("local 192.0.2.1")
    );
}
