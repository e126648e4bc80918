//! Tests of [`NetlinkLinkOps`] against the real kernel, each in its own throwaway network
//! namespace (see `testns`). Nothing here touches the host namespace or sends traffic.

use std::net::Ipv4Addr;

use crate::error::DataplaneError;
use crate::link::{LinkKind, LinkOps, MacAddr, PortMode, VethSpec, VxlanConfig, auto_vxlan_mtu};
use crate::netlink::NetlinkLinkOps;
use crate::testns::TestNs;

/// A locally administered unicast MAC, as a peer name would be.
const PEER_MAC: MacAddr = MacAddr([0x0a, 0x11, 0x22, 0x33, 0x44, 0x55]);

fn fastdp(vni: u32) -> VxlanConfig {
    VxlanConfig {
        name: "vxlan-6784".into(),
        vni,
        port: 6784,
        learning: false,
        df: false,
        mtu: 1450,
        local: None,
    }
}

#[test]
fn bridge_is_created_then_adopted_in_place() {
    let ns = TestNs::new("bridge");
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let created = ops
            .ensure_bridge("weave", PEER_MAC, 1450)
            .await
            .expect("create");
        assert_eq!(created.kind, Some(LinkKind::Bridge));
        assert_eq!(created.mac, Some(PEER_MAC));
        assert_eq!(created.mtu, 1450);
        assert!(created.up);

        let adopted = ops
            .ensure_bridge("weave", PEER_MAC, 1450)
            .await
            .expect("adopt");
        assert_eq!(adopted, created, "adopting must keep the very same device");

        // A new MTU is applied in place, not by recreating the bridge.
        let resized = ops
            .ensure_bridge("weave", PEER_MAC, 1400)
            .await
            .expect("resize");
        assert_eq!(resized.index, created.index);
        assert_eq!(resized.mtu, 1400);
    });
    assert!(
        ns.ip(&["-d", "link", "show", "weave"])
            .contains("0a:11:22:33:44:55")
    );
}

#[test]
fn bridge_name_taken_by_another_kind_is_an_error() {
    let ns = TestNs::new("wrongkind");
    ns.ip(&[
        "link",
        "add",
        "weave",
        "type",
        "veth",
        "peer",
        "name",
        "weave-other",
    ]);
    let err = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", PEER_MAC, 1450)
            .await
            .expect_err("must refuse a veth")
    });
    assert!(
        matches!(&err, DataplaneError::WrongKind { found, .. } if found == "veth"),
        "{err:?}"
    );
    // Says what conflicts, and advises nothing that would wipe the node.
    assert!(err.to_string().contains("weave"), "{err}");
    assert!(!err.to_string().contains("reset"), "{err}");
    // Nothing was deleted or recreated.
    assert!(ns.ip(&["-d", "link", "show", "weave"]).contains("veth"));
}

#[test]
fn vxlan_is_an_isolated_bridge_port_and_is_adopted() {
    let ns = TestNs::new("vxlan");
    let (bridge, vxlan) = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let err = ops
            .ensure_vxlan(&fastdp(42), "weave")
            .await
            .expect_err("no bridge yet");
        assert!(matches!(err, DataplaneError::NotFound { .. }), "{err:?}");
        assert_eq!(ops.link("vxlan-6784").await.expect("lookup"), None);
        let bridge = ops
            .ensure_bridge("weave", PEER_MAC, 1450)
            .await
            .expect("bridge");
        let vxlan = ops.ensure_vxlan(&fastdp(42), "weave").await.expect("vxlan");
        let adopted = ops.ensure_vxlan(&fastdp(42), "weave").await.expect("adopt");
        assert_eq!(adopted, vxlan);
        let err = ops
            .ensure_vxlan(&fastdp(43), "weave")
            .await
            .expect_err("other VNI");
        assert!(
            matches!(err, DataplaneError::Mismatch { setting: "VNI", .. }),
            "{err:?}"
        );
        (bridge, vxlan)
    });
    assert_eq!(vxlan.kind, Some(LinkKind::Vxlan));
    assert_eq!(vxlan.master, Some(bridge.index));
    assert_eq!(vxlan.mtu, 1450);
    assert!(vxlan.up);
    let shown = ns.ip(&["-d", "link", "show", "vxlan-6784"]);
    for expected in [
        "isolated on",
        "hairpin off",
        "id 42",
        "dstport 6784",
        "nolearning",
    ] {
        assert!(
            shown.contains(expected),
            "missing {expected:?} in:\n{shown}"
        );
    }
}

#[test]
fn veth_into_pod_namespace_with_address_and_default_route() {
    let host = TestNs::new("vethhost");
    let pod = TestNs::new("vethpod");
    let pod_path = pod.path();
    host.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", PEER_MAC, 1450)
            .await
            .expect("bridge");
        // TEST-NET-1 (RFC 5737): never routed anywhere.
        ops.add_ipv4_address("weave", Ipv4Addr::new(192, 0, 2, 1), 24)
            .await
            .expect("bridge ip");
        let spec = VethSpec {
            host_name: "vethwepl1234",
            peer_name: "eth0",
            netns: &pod_path,
            mtu: 1450,
        };
        let veth = ops.create_veth_into_netns(&spec).await.expect("veth");
        assert_eq!(veth.kind, Some(LinkKind::Veth));
        assert_eq!(veth.mtu, 1450);
        let mode = PortMode {
            isolated: false,
            hairpin: true,
        };
        ops.attach_to_bridge("vethwepl1234", "weave", mode)
            .await
            .expect("attach");
        ops.set_up("vethwepl1234", true).await.expect("up");
        assert_eq!(
            ops.link("eth0").await.expect("lookup"),
            None,
            "peer must not stay here"
        );

        let inside = ops.in_netns(&pod_path).await.expect("pod netlink");
        inside.set_up("eth0", true).await.expect("pod up");
        let pod_ip = Ipv4Addr::new(192, 0, 2, 5);
        inside
            .add_ipv4_address("eth0", pod_ip, 24)
            .await
            .expect("pod ip");
        inside
            .add_ipv4_address("eth0", pod_ip, 24)
            .await
            .expect("pod ip twice");
        inside
            .add_default_route(Ipv4Addr::new(192, 0, 2, 1))
            .await
            .expect("route");
        let eth0 = inside
            .link("eth0")
            .await
            .expect("lookup")
            .expect("eth0 in pod");
        assert_eq!(eth0.mtu, 1450);
        assert!(eth0.up);
    });
    let host_side = host.ip(&["-d", "link", "show", "vethwepl1234"]);
    assert!(host_side.contains("master weave"), "{host_side}");
    assert!(
        host_side.contains("hairpin on") && host_side.contains("isolated off"),
        "{host_side}"
    );
    assert!(
        pod.ip(&["-4", "addr", "show", "eth0"])
            .contains("192.0.2.5/24")
    );
    let routes = pod.ip(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains("default via 192.0.2.1 dev eth0"),
        "{routes}"
    );
}

#[test]
fn vxlan_mtu_is_detected_from_the_route_interface() {
    let ns = TestNs::new("mtu");
    ns.ip(&[
        "link", "add", "under0", "mtu", "9000", "type", "veth", "peer", "name", "under1",
    ]);
    ns.ip(&["link", "set", "under1", "up"]);
    let (mtu, no_route) = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        // TEST-NET-2 (RFC 5737) on the jumbo-frame "underlay".
        ops.add_ipv4_address("under0", Ipv4Addr::new(198, 51, 100, 1), 24)
            .await
            .expect("ip");
        ops.set_up("under0", true).await.expect("up");
        let (mtu, _) = auto_vxlan_mtu(&ops, Ipv4Addr::new(198, 51, 100, 2))
            .await
            .expect("mtu");
        // No default route in the namespace: TEST-NET-3 is unreachable.
        let no_route = auto_vxlan_mtu(&ops, Ipv4Addr::new(203, 0, 113, 9)).await;
        (mtu, no_route)
    });
    assert_eq!(mtu, 8950);
    assert!(
        matches!(no_route, Err(DataplaneError::NoRoute { .. })),
        "{no_route:?}"
    );
}

#[test]
fn links_are_listed_and_deleted_by_prefix() {
    let ns = TestNs::new("reset");
    ns.ip(&[
        "link",
        "add",
        "vethwepla",
        "type",
        "veth",
        "peer",
        "name",
        "vethweplb",
    ]);
    ns.ip(&[
        "link",
        "add",
        "vethweplc",
        "type",
        "veth",
        "peer",
        "name",
        "keep-me",
    ]);
    let (before, after, again) = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", PEER_MAC, 1450)
            .await
            .expect("bridge");
        let mut before: Vec<String> = ops
            .links_with_prefix("vethwepl")
            .await
            .expect("list")
            .into_iter()
            .map(|link| link.name)
            .collect();
        before.sort();
        for name in &before {
            // Deleting vethwepla takes vethweplb with it: the second delete finds nothing.
            ops.delete_link(name).await.expect("delete");
        }
        let after = ops.links_with_prefix("vethwepl").await.expect("list again");
        let again = ops.delete_link("vethwepla").await.expect("delete again");
        let bridge_kept = ops.link("weave").await.expect("lookup").is_some();
        assert!(bridge_kept, "only the prefix is deleted");
        (before, after, again)
    });
    assert_eq!(before, ["vethwepla", "vethweplb", "vethweplc"]);
    assert!(after.is_empty(), "{after:?}");
    assert!(!again, "deleting a missing link reports false");
    assert!(
        !ns.ip(&["link", "show"]).contains("keep-me"),
        "peer goes with its veth"
    );
}
