//! Tests of what the CNI plugin added to pod wiring, against the real kernel in throwaway
//! namespaces: a container-named host veth, removal from inside the pod, the read-back of
//! addresses and routes, the gratuitous ARP from the bridge that refreshes the node's and a
//! neighbour pod's stale entries, and the masquerading table's install and removal.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::attach::{AttachRequest, attach_pod, container_veth_name, detach_pod_interface};
use super::garp::BridgeAnnouncer;
use super::link::{LinkOps, MacAddr};
use super::masquerade;
use super::netlink::NetlinkLinkOps;
use super::node::{NodeConfig, setup_node};
use super::testns::TestNs;

/// A locally administered MAC no device here has: the "previous owner" of a reused address.
const STALE_MAC: &str = "02:00:00:00:00:99";

const POD_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 7);
const NEIGHBOUR_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 8);
const BRIDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 1);

fn node_with_bridge(node: &TestNs) {
    node.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let config = NodeConfig {
            mtu: Some(1450),
            ..NodeConfig::new(MacAddr([0x0a, 0, 0, 0, 0, 0x42]), 6783, 42)
        };
        setup_node(&ops, &config).await.expect("setup");
        ops.add_ipv4_address("weave", BRIDGE_ADDRESS, 12)
            .await
            .expect("bridge address");
    });
}

/// Polls `ns`'s ARP entry for 10.32.0.7 on `dev` until it names `mac` (3 s at most).
fn neighbour_entry_becomes(ns: &TestNs, dev: &str, mac: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let entry = ns.ip(&["neigh", "show", "10.32.0.7", "dev", dev]);
        if entry.contains(mac) || Instant::now() > deadline {
            return entry;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_container_named_pod_is_read_back_announced_and_removed_from_inside() {
    let node = TestNs::new("cni-garp");
    let pod = TestNs::new("cni-garp-pod");
    let neighbour = TestNs::new("cni-garp-nb");
    node_with_bridge(&node);
    let neighbour_request = AttachRequest {
        address: Some((NEIGHBOUR_ADDRESS, 12)),
        ..AttachRequest::new(neighbour.path())
    };
    let neighbour_port = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let attached = attach_pod(&ops, &neighbour_request).await;
        attached.expect("attach the neighbour").host.name
    });
    // The node and the neighbour pod still believe the address belongs to a pod that is gone.
    let stale = ["neigh", "replace", "10.32.0.7", "lladdr", STALE_MAC];
    node.ip(&[&stale[..], &["dev", "weave", "nud", "stale"]].concat());
    neighbour.ip(&[&stale[..], &["dev", "eth0", "nud", "stale"]].concat());
    let host_name = container_veth_name("0123456789abcdef", "eth0");
    let request = AttachRequest {
        address: Some((POD_ADDRESS, 12)),
        gateway: Some(BRIDGE_ADDRESS),
        host_name: Some(host_name.clone()),
        ..AttachRequest::new(pod.path())
    };
    let pod_path = pod.path();
    // The announcement floods from the bridge: the neighbour's port must forward by then.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !node
        .ip(&["-d", "link", "show", "dev", &neighbour_port])
        .contains("bridge_slave state forwarding")
    {
        assert!(
            Instant::now() < deadline,
            "the neighbour's port never forwards"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (attached, addresses, routes) = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let attached = attach_pod(&ops, &request).await.expect("attach");
        let (address, mac) = (POD_ADDRESS, attached.pod.mac.expect("pod MAC"));
        let announcer = BridgeAnnouncer::open(ops.clone(), "weave").expect("packet socket");
        announcer.announce(mac, address).await.expect("announce");
        let pod_ops = ops.in_netns(&pod_path).await.expect("pod netlink");
        let addresses = pod_ops.ipv4_addresses("eth0").await.expect("addresses");
        let routes = pod_ops.ipv4_routes().await.expect("routes");
        (attached, addresses, routes)
    });
    assert_eq!(attached.host.name, host_name);
    assert_eq!(addresses, [(POD_ADDRESS, 12)]);
    assert!(
        routes.iter().any(|r| r.prefix_len == 0
            && r.destination == Ipv4Addr::UNSPECIFIED
            && r.gateway == Some(BRIDGE_ADDRESS)
            && r.oif == Some(attached.pod.index)),
        "{routes:?}"
    );

    // The announcement replaced the stale MAC with the new pod's, at the node (set directly)
    // and at the neighbour pod (by the frame the bridge flooded).
    let pod_mac = attached.pod.mac.expect("pod MAC").to_string();
    let at_node = neighbour_entry_becomes(&node, "weave", &pod_mac);
    assert!(at_node.contains(&pod_mac), "{at_node} (pod MAC {pod_mac})");
    let at_neighbour = neighbour_entry_becomes(&neighbour, "eth0", &pod_mac);
    assert!(
        at_neighbour.contains(&pod_mac),
        "{at_neighbour} (pod MAC {pod_mac})"
    );

    let pod_path = pod.path();
    let (removed, removed_again) = node.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let removed = detach_pod_interface(&ops, &pod_path, "eth0").await;
        let again = detach_pod_interface(&ops, &pod_path, "eth0").await;
        (removed.expect("detach"), again.expect("detach again"))
    });
    assert!(removed && !removed_again);
    assert!(
        !node.ip(&["link"]).contains(&host_name),
        "host end went too"
    );
}

#[test]
fn the_masquerading_table_is_installed_replaced_and_removed() {
    let node = TestNs::new("cni-masq");
    let range = (Ipv4Addr::new(10, 32, 0, 0), 12);
    let (first, replaced, removed, removed_again, after) = node.run(move || async move {
        masquerade::install(range, "weave", &[6783, 6784]).expect("install");
        let first = masquerade::current().expect("list").expect("table exists");
        masquerade::install(range, "weave", &[6783, 6784]).expect("install again");
        let replaced = masquerade::current().expect("list").expect("table exists");
        let removed = masquerade::remove().expect("remove");
        let removed_again = masquerade::remove().expect("remove again");
        let after = masquerade::current().expect("list");
        (first, replaced, removed, removed_again, after)
    });
    assert!(
        first.contains("ip saddr 10.32.0.0/12 masquerade"),
        "{first}"
    );
    assert_eq!(
        first, replaced,
        "installing again replaces, never duplicates"
    );
    assert!(removed && !removed_again);
    assert_eq!(after, None);
}
