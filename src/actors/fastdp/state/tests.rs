//! The fastdp reconciliation step, with injected time and a simulated kernel that applies the
//! plans the step returns.

use super::*;
use crate::actors::fastdp::plan::FLOOD_GRACE;
use crate::actors::fastdp::switch::HEARTBEAT_INTERVAL;
use crate::actors::mac_learner::state::MacTable;

const POD: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 1]);

fn peer() -> LinkedPeer {
    LinkedPeer {
        name: PeerName::from_bytes([0x7e, 0, 0, 0, 0, 2]),
        nickname: "b".into(),
        ip: Ipv4Addr::new(192, 0, 2, 2),
    }
}

fn macs_at(peer: PeerName) -> Arc<MacSnapshot> {
    let mut table = MacTable::new();
    table.observe(POD, Location::Remote(peer), Instant::now());
    table.snapshot()
}

/// Applies a step's plans to the simulated kernel.
fn apply(kernel: &mut KernelView, step: &Step) {
    kernel.flood.extend(step.flood.add.iter().copied());
    for ip in &step.flood.remove {
        kernel.flood.remove(ip);
    }
    assert_eq!(
        kernel.flood, step.flooded,
        "the step's account of the flood list"
    );
    let Some(fdb) = &step.fdb else { return };
    for (mac, port) in &fdb.bridge_set {
        kernel.entries.bridge.insert(*mac, *port);
    }
    for (mac, ip) in &fdb.vxlan_set {
        kernel.entries.vxlan.insert(*mac, *ip);
    }
    for (mac, _) in &fdb.bridge_del {
        kernel.entries.bridge.remove(mac);
    }
    for (mac, _) in &fdb.vxlan_del {
        kernel.entries.vxlan.remove(mac);
    }
}

#[test]
fn a_new_peer_goes_sleeve_then_fastdp_and_its_entries_follow() {
    let t0 = Instant::now();
    let b = peer();
    let b_mac = MacAddr(b.name.to_bytes());
    let mut state = FastdpState::new(true);
    state.set_macs(macs_at(b.name));
    let mut kernel = KernelView {
        tap_present: true,
        ..KernelView::default()
    };
    let links = [b.clone()];
    let step = state.step(&links, &kernel, t0);
    apply(&mut kernel, &step);
    assert_eq!(step.switched[0].to, Overlay::Sleeve);
    assert!(kernel.flood.is_empty());
    assert_eq!(kernel.entries.bridge.get(&POD), Some(&Port::Tap));
    assert_eq!(
        kernel.entries.vxlan.get(&b_mac),
        Some(&b.ip),
        "heartbeats need the peer's bridge MAC on the VXLAN device"
    );
    for i in 1..=3 {
        state.on_ack(b.name, t0 + HEARTBEAT_INTERVAL * i);
    }
    let step = state.step(&links, &kernel, t0 + HEARTBEAT_INTERVAL * 3);
    apply(&mut kernel, &step);
    assert_eq!(kernel.flood, BTreeSet::from([b.ip]));
    assert_eq!(step.carried, BTreeSet::from([b.name]));
    assert_eq!(kernel.entries.bridge.get(&POD), Some(&Port::Vxlan));
    assert_eq!(kernel.entries.vxlan.get(&POD), Some(&b.ip));
    // Steady: nothing more to do.
    let again = state.step(&links, &kernel, t0 + HEARTBEAT_INTERVAL * 3);
    assert!(again.switched.is_empty());
    assert!(again.flood == FloodPlan::default() && again.fdb.is_some_and(|f| f.is_empty()));

    // Heartbeats stop: fallback, flood entry and per-MAC VXLAN entry go, the MAC moves to the TAP.
    let late = t0 + HEARTBEAT_INTERVAL * 3 + Duration::from_secs(4);
    let step = state.step(&links, &kernel, late);
    apply(&mut kernel, &step);
    assert!(step.switched[0].fallback);
    assert!(step.carried.is_empty());
    assert!(kernel.flood.is_empty());
    assert_eq!(kernel.entries.bridge.get(&POD), Some(&Port::Tap));
    assert_eq!(kernel.entries.vxlan.get(&POD), None);
    assert!(kernel.entries.vxlan.contains_key(&b_mac), "still probed");
}

#[test]
fn a_lost_link_keeps_the_kernel_path_for_the_grace_then_moves_to_sleeve() {
    let t0 = Instant::now();
    let b = peer();
    let mut state = FastdpState::new(true);
    state.set_macs(macs_at(b.name));
    // The router restarted: the kernel already floods to the peer, so it is adopted healthy.
    let mut kernel = KernelView {
        flood: BTreeSet::from([b.ip]),
        tap_present: true,
        ..KernelView::default()
    };
    let step = state.step(std::slice::from_ref(&b), &kernel, t0);
    apply(&mut kernel, &step);
    assert_eq!(step.switched[0].to, Overlay::Fastdp);
    assert_eq!(kernel.entries.bridge.get(&POD), Some(&Port::Vxlan));
    let step = state.step(&[], &kernel, t0 + Duration::from_secs(1));
    apply(&mut kernel, &step);
    assert_eq!(
        kernel.flood,
        BTreeSet::from([b.ip]),
        "kept during the grace"
    );
    assert_eq!(kernel.entries.bridge.get(&POD), Some(&Port::Vxlan));
    assert_eq!(kernel.entries.vxlan.get(&POD), Some(&b.ip));
    let after = t0 + Duration::from_secs(1) + FLOOD_GRACE;
    let step = state.step(&[], &kernel, after);
    apply(&mut kernel, &step);
    assert!(kernel.flood.is_empty());
    assert_eq!(kernel.entries.bridge.get(&POD), Some(&Port::Tap));
    assert!(kernel.entries.vxlan.is_empty());
}

#[test]
fn fresh_kernel_learned_macs_are_reported_at_their_peer_and_stale_ones_not() {
    let b = peer();
    let mut state = FastdpState::new(true);
    let stale = MacAddr([0x0a, 0, 0, 0, 0, 9]);
    let stranger = MacAddr([0x0a, 0, 0, 0, 0, 8]);
    let kernel = KernelView {
        learned: vec![
            LearnedFdb {
                mac: POD,
                remote: b.ip,
                updated_ago: Duration::from_secs(1),
            },
            LearnedFdb {
                mac: stale,
                remote: b.ip,
                updated_ago: LEARNED_FRESH * 2,
            },
            LearnedFdb {
                mac: stranger,
                remote: Ipv4Addr::new(198, 51, 100, 1),
                updated_ago: Duration::ZERO,
            },
        ],
        ..KernelView::default()
    };
    let step = state.step(std::slice::from_ref(&b), &kernel, Instant::now());
    assert_eq!(step.seen, vec![(POD, Location::Remote(b.name))]);
    assert!(
        step.fdb.is_none(),
        "no MAC table yet: per-MAC entries untouched"
    );
}

#[test]
fn with_fastdp_disabled_every_mac_goes_to_the_tap_and_nothing_floods() {
    let b = peer();
    let mut state = FastdpState::new(false);
    state.set_macs(macs_at(b.name));
    let mut kernel = KernelView {
        tap_present: true,
        ..KernelView::default()
    };
    let step = state.step(std::slice::from_ref(&b), &kernel, Instant::now());
    apply(&mut kernel, &step);
    assert!(kernel.flood.is_empty());
    assert_eq!(kernel.entries.bridge, BTreeMap::from([(POD, Port::Tap)]));
    assert!(kernel.entries.vxlan.is_empty());
}
