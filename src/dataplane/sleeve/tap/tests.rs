//! The TAP against the real kernel, in throwaway namespaces: queues opened on one device, a
//! count outside the bounds refused, and a single-queue device left by an older router replaced.

use super::*;
use crate::dataplane::netlink::NetlinkLinkOps;
use crate::dataplane::testns::TestNs;

const BRIDGE: &str = "weave";
const TAP: &str = "sleeve-6783";

/// The `numqueues N` `ip -d link` shows for a multi-queue TUN/TAP, `None` for a single-queue one.
fn attached_queues(ns: &TestNs) -> Option<usize> {
    let details = ns.ip(&["-d", "link", "show", TAP]);
    details.contains("multi_queue").then(|| {
        let after = details.split("numqueues ").nth(1).expect("numqueues shown");
        after.split_whitespace().next().unwrap().parse().unwrap()
    })
}

fn bridge_in(ns: &TestNs) {
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().unwrap();
        let mac = crate::dataplane::link::MacAddr([0x02, 0, 0, 0, 0, 1]);
        ops.ensure_bridge(BRIDGE, mac, 1450).await.unwrap();
    });
}

#[test]
fn every_queue_attaches_to_one_device_and_closing_them_keeps_it() {
    let ns = TestNs::new("tapq");
    bridge_in(&ns);
    let taps = ns.run(|| async {
        let ops = NetlinkLinkOps::new().unwrap();
        let (taps, link) = ensure_sleeve_tap(&ops, BRIDGE, TAP, 3).await.unwrap();
        assert!(link.up);
        assert_eq!(link.mtu, 1450);
        taps
    });
    assert_eq!(taps.len(), 3);
    assert!(taps.iter().all(|tap| tap.name() == TAP));
    assert_eq!(attached_queues(&ns), Some(3));
    drop(taps);
    // Persistent: the device stays, with no queue attached, for the next router to adopt.
    assert_eq!(attached_queues(&ns), Some(0));
    let again = ns.run(|| async {
        let ops = NetlinkLinkOps::new().unwrap();
        ensure_sleeve_tap(&ops, BRIDGE, TAP, 1).await.unwrap().0
    });
    assert_eq!(attached_queues(&ns), Some(1));
    drop(again);
}

#[test]
fn queue_counts_outside_one_to_the_maximum_are_refused() {
    for count in [0, MAX_TAP_QUEUES + 1] {
        match Tap::open_queues("sleeve-never", count) {
            Err(DataplaneError::Invalid { reason, .. }) => {
                assert!(reason.contains(&count.to_string()), "{reason}")
            }
            other => panic!("{count} queues: {other:?}"),
        }
    }
}

#[test]
fn a_single_queue_tap_from_an_older_router_is_replaced() {
    let ns = TestNs::new("tapold");
    bridge_in(&ns);
    ns.ip(&["tuntap", "add", "mode", "tap", "name", TAP, "vnet_hdr"]);
    assert_eq!(attached_queues(&ns), None);
    let taps = ns.run(|| async {
        let ops = NetlinkLinkOps::new().unwrap();
        ensure_sleeve_tap(&ops, BRIDGE, TAP, 2).await.unwrap().0
    });
    assert_eq!(attached_queues(&ns), Some(2));
    assert!(
        ns.ip(&["link", "show", TAP])
            .contains(&format!("master {BRIDGE}"))
    );
    drop(taps);
}
