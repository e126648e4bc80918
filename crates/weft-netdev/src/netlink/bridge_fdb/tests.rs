//! Tests, against the real kernel in throwaway namespaces, of what the fastdp control side
//! programs beyond the VXLAN flood list: the bridge's static entries on the overlay ports, the
//! port learning flag, the VXLAN device's learning and DF settings (changed in place on
//! adoption), dynamic VXLAN entries and link counters.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::link::{LinkOps, MacAddr, VxlanConfig};
use crate::netlink::NetlinkLinkOps;
use crate::testns::TestNs;

const BRIDGE_MAC: MacAddr = MacAddr([0x7e, 0, 0, 0, 0, 1]);
const MAC_1: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 1]);
const MAC_2: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 2]);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const VXLAN: &str = "vxlan-6784";
/// The sleeve TAP's name for the default mesh port.
const TAP: &str = "sleeve-6783";

fn config(learning: bool, df: bool) -> VxlanConfig {
    VxlanConfig {
        name: VXLAN.into(),
        vni: 42,
        port: 6784,
        learning,
        df,
        mtu: 1450,
        local: None,
    }
}

fn show(ns: &TestNs, args: &[&str]) -> String {
    let out = Command::new("bridge")
        .args(["-n", ns.name()])
        .args(args)
        .output()
        .expect("run `bridge` (install iproute2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn learning_and_df_are_set_on_creation_and_changed_in_place_on_adoption() {
    let ns = TestNs::new("vxdf");
    let before = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", BRIDGE_MAC, 1450)
            .await
            .expect("bridge");
        ops.ensure_vxlan(&config(false, false), "weave")
            .await
            .expect("vxlan")
    });
    let shown = ns.ip(&["-d", "link", "show", VXLAN]);
    assert!(shown.contains("nolearning"), "{shown}");
    assert!(!shown.contains("df set"), "{shown}");
    let after = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_vxlan(&config(true, true), "weave")
            .await
            .expect("adopt")
    });
    assert_eq!(after.index, before.index, "adopted in place");
    let shown = ns.ip(&["-d", "link", "show", VXLAN]);
    assert!(!shown.contains("nolearning"), "{shown}");
    assert!(shown.contains("df set"), "{shown}");
}

#[test]
fn bridge_entries_move_between_overlay_ports_and_port_learning_turns_off() {
    let ns = TestNs::new("brfdb");
    ns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", BRIDGE_MAC, 1450)
            .await
            .expect("bridge");
        ops.ensure_vxlan(&config(true, true), "weave")
            .await
            .expect("vxlan");
        let isolated = crate::link::PortMode {
            isolated: true,
            hairpin: false,
        };
        ops.attach_to_bridge(TAP, "weave", isolated)
            .await
            .expect("tap port");
        ops.set_port_learning(VXLAN, false).await.expect("learning");
        ops.bridge_fdb_set(VXLAN, MAC_1).await.expect("set 1");
        ops.bridge_fdb_set(VXLAN, MAC_2).await.expect("set 2");
        ops.bridge_fdb_set(VXLAN, MAC_2).await.expect("set twice");
        let mut on_vxlan = ops.bridge_fdb_static(VXLAN).await.expect("list");
        on_vxlan.sort();
        assert_eq!(on_vxlan, vec![MAC_1, MAC_2]);
        // The sleeve takes MAC_2 over: one entry, now on the TAP.
        ops.bridge_fdb_set(TAP, MAC_2).await.expect("move");
        assert_eq!(
            ops.bridge_fdb_static(VXLAN).await.expect("list"),
            vec![MAC_1]
        );
        assert_eq!(ops.bridge_fdb_static(TAP).await.expect("list"), vec![MAC_2]);
        assert!(ops.bridge_fdb_del(TAP, MAC_2).await.expect("del"));
        assert!(!ops.bridge_fdb_del(TAP, MAC_2).await.expect("del again"));
        assert!(ops.bridge_fdb_static(TAP).await.expect("list").is_empty());
    });
    let shown = show(&ns, &["fdb", "show", "dev", VXLAN]);
    assert!(
        shown.contains("0a:00:00:00:00:01 master weave static"),
        "{shown}"
    );
    let port = show(&ns, &["-d", "link", "show", "dev", VXLAN]);
    assert!(port.contains("learning off"), "{port}");
}

#[test]
fn dynamic_vxlan_entries_read_back_as_learned_and_counters_count() {
    let ns = TestNs::new("vxdyn");
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.ensure_bridge("weave", BRIDGE_MAC, 1450)
            .await
            .expect("bridge");
        ops.ensure_vxlan(&config(true, true), "weave")
            .await
            .expect("vxlan");
        ops.fdb_add(VXLAN, MAC_1, REMOTE).await.expect("permanent");
        ops.fdb_set_dynamic(VXLAN, MAC_2, REMOTE)
            .await
            .expect("dynamic");
        let learned = ops.fdb_learned(VXLAN).await.expect("learned");
        assert_eq!(learned.len(), 1, "{learned:?}");
        assert_eq!(learned[0].mac, MAC_2);
        assert_eq!(learned[0].remote, REMOTE);
        assert!(learned[0].updated_ago.as_secs() < 5, "{learned:?}");
        // A permanent entry replaced by a dynamic one becomes learnable by the kernel.
        ops.fdb_set_dynamic(VXLAN, MAC_1, REMOTE)
            .await
            .expect("dynamic");
        assert_eq!(ops.fdb_learned(VXLAN).await.expect("learned").len(), 2);
    });
    ns.ip(&["link", "set", "lo", "up"]);
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "127.0.0.1",
        ])
        .output()
        .expect("run ping (install iputils-ping)");
    assert!(ping.status.success());
    let stats = ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        ops.link_stats("lo").await.expect("stats")
    });
    assert!(stats.tx_packets >= 4, "{stats:?}");
    assert!(stats.rx_bytes > 0, "{stats:?}");
}
