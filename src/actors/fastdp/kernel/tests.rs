//! The reconciliation's kernel side against the real kernel, in a throwaway namespace: a plan
//! applied through `LinkOps` reads back as planned with `observe`, and a removal plan removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::*;
use crate::actors::fastdp::fdb_plan::{FdbPlan, Port};
use crate::actors::fastdp::plan::FloodPlan;
use crate::dataplane::testns::TestNs;
use crate::dataplane::{MacAddr, NetlinkLinkOps, NodeConfig, setup_node, sleeve_tap_name};

const M1: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 1]);
const M2: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 2]);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

#[test]
fn a_plan_applied_reads_back_and_is_removed_again() {
    let ns = TestNs::new("fdbrec");
    ns.ip(&[
        "tuntap",
        "add",
        "dev",
        &sleeve_tap_name(6783),
        "mode",
        "tap",
    ]);
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let mut cfg = NodeConfig::new(MacAddr([0x7e, 0, 0, 0, 0, 1]), 6783, 42);
        cfg.mtu = Some(1450);
        setup_node(&ops, &cfg).await.expect("node");
        let devices = Devices {
            vxlan: cfg.vxlan_name.clone(),
            tap: sleeve_tap_name(6783),
        };
        let isolated = crate::dataplane::PortMode {
            isolated: true,
            hairpin: false,
        };
        ops.attach_to_bridge(&devices.tap, &cfg.bridge, isolated)
            .await
            .expect("tap port");
        let flood = FloodPlan {
            add: vec![PEER_IP],
            remove: vec![],
        };
        let fdb = FdbPlan {
            bridge_set: vec![(M1, Port::Vxlan), (M2, Port::Tap)],
            vxlan_set: vec![(M1, PEER_IP)],
            ..FdbPlan::default()
        };
        apply(&ops, &devices, flood, Some(fdb)).await;
        let (view, _) = observe(&ops, &devices).await.expect("observe");
        assert!(view.tap_present);
        assert_eq!(view.flood, BTreeSet::from([PEER_IP]));
        assert_eq!(
            view.entries.bridge,
            BTreeMap::from([(M1, Port::Vxlan), (M2, Port::Tap)])
        );
        assert_eq!(view.entries.vxlan, BTreeMap::from([(M1, PEER_IP)]));
        // Our per-MAC VXLAN entries are dynamic: they read back as learnable.
        assert!(view.learned.iter().any(|entry| entry.mac == M1));

        let removal = FdbPlan {
            bridge_del: vec![(M1, Port::Vxlan), (M2, Port::Tap)],
            vxlan_del: vec![(M1, PEER_IP)],
            ..FdbPlan::default()
        };
        let unflood = FloodPlan {
            add: vec![],
            remove: vec![PEER_IP],
        };
        apply(&ops, &devices, unflood, Some(removal)).await;
        let (view, _) = observe(&ops, &devices).await.expect("observe");
        assert!(view.flood.is_empty());
        assert!(view.entries.bridge.is_empty(), "{:?}", view.entries.bridge);
        assert!(view.entries.vxlan.is_empty(), "{:?}", view.entries.vxlan);
    });
}

#[test]
fn without_the_tap_the_view_says_so() {
    let ns = TestNs::new("fdbnotap");
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let mut cfg = NodeConfig::new(MacAddr([0x7e, 0, 0, 0, 0, 1]), 6783, 42);
        cfg.mtu = Some(1450);
        setup_node(&ops, &cfg).await.expect("node");
        let devices = Devices {
            vxlan: cfg.vxlan_name.clone(),
            tap: sleeve_tap_name(6783),
        };
        let (view, stats) = observe(&ops, &devices).await.expect("observe");
        assert!(!view.tap_present);
        assert!(view.entries.bridge.is_empty());
        assert_eq!(stats.rx_packets, 0);
    });
}
