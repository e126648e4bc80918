//! The FDB diff: what each MAC's entries become as peers switch overlays and MACs move.

use std::time::Instant;

use super::*;
use crate::actors::mac_learner::state::MacTable;

const P: PeerName = peer(1);
const Q: PeerName = peer(2);
const P_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const Q_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const M1: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 1]);
const M2: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 2]);
const M3: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 3]);

const fn peer(n: u8) -> PeerName {
    // 7e:00:00:00:00:0n
    match PeerName::from_u64(0x7e00_0000_0000 | n as u64) {
        Some(name) => name,
        None => panic!("a 48-bit name"),
    }
}

fn table(entries: &[(MacAddr, Location)]) -> (MacSnapshot, BTreeSet<MacAddr>) {
    let mut table = MacTable::new();
    let now = Instant::now();
    for &(mac, at) in entries {
        table.observe(mac, at, now);
    }
    let known = entries.iter().map(|(mac, _)| *mac).collect();
    (table.snapshot().as_ref().clone(), known)
}

fn carriers(kernel: &[(PeerName, Ipv4Addr)], tap_present: bool) -> Carriers {
    Carriers {
        kernel: kernel.iter().copied().collect(),
        tap_present,
    }
}

fn ips(carriers: &Carriers) -> BTreeSet<Ipv4Addr> {
    carriers.kernel.values().copied().collect()
}

#[test]
fn fastdp_peers_get_both_entries_sleeve_peers_the_tap_local_macs_none() {
    let (macs, _) = table(&[
        (M1, Location::Remote(P)),
        (M2, Location::Remote(Q)),
        (M3, Location::Local),
    ]);
    let want = desired(&macs, &carriers(&[(P, P_IP)], true));
    assert_eq!(
        want.bridge,
        BTreeMap::from([(M1, Port::Vxlan), (M2, Port::Tap)])
    );
    assert_eq!(want.vxlan, BTreeMap::from([(M1, P_IP)]));
}

#[test]
fn without_the_tap_sleeve_macs_get_no_entry_and_flood() {
    let (macs, _) = table(&[(M2, Location::Remote(Q))]);
    let want = desired(&macs, &carriers(&[(P, P_IP)], false));
    assert_eq!(want, Present::default());
}

#[test]
fn a_peer_falling_back_moves_its_macs_to_the_tap_and_drops_their_vxlan_entries() {
    let (macs, known) = table(&[(M1, Location::Remote(P))]);
    let on_fastdp = carriers(&[(P, P_IP)], true);
    let present = desired(&macs, &on_fastdp);
    let on_sleeve = carriers(&[], true);
    let want = desired(&macs, &on_sleeve);
    let plan = plan(&present, &want, &known, &ips(&on_sleeve));
    assert_eq!(plan.bridge_set, vec![(M1, Port::Tap)]);
    assert!(plan.bridge_del.is_empty(), "the replace moves it");
    assert_eq!(plan.vxlan_del, vec![(M1, P_IP)]);
    // And back.
    let back = super::plan(&want, &present, &known, &ips(&on_fastdp));
    assert_eq!(back.bridge_set, vec![(M1, Port::Vxlan)]);
    assert_eq!(back.vxlan_set, vec![(M1, P_IP)]);
    assert!(back.bridge_del.is_empty() && back.vxlan_del.is_empty());
}

#[test]
fn a_mac_that_moves_between_fastdp_peers_is_repointed() {
    let (before, _) = table(&[(M1, Location::Remote(P))]);
    let both = carriers(&[(P, P_IP), (Q, Q_IP)], true);
    let present = desired(&before, &both);
    let (after, known) = table(&[(M1, Location::Remote(Q))]);
    let plan = plan(&present, &desired(&after, &both), &known, &ips(&both));
    assert!(plan.bridge_set.is_empty(), "still behind the vxlan port");
    assert_eq!(plan.vxlan_set, vec![(M1, Q_IP)]);
    assert!(plan.vxlan_del.is_empty());
}

#[test]
fn forgotten_macs_lose_their_entries_but_kernel_learned_ones_stay() {
    let both = carriers(&[(P, P_IP)], true);
    let present = Present {
        bridge: BTreeMap::from([(M1, Port::Vxlan), (M2, Port::Tap)]),
        vxlan: BTreeMap::from([(M1, P_IP), (M3, P_IP)]),
    };
    let (empty, known) = table(&[]);
    let plan = plan(&present, &desired(&empty, &both), &known, &ips(&both));
    assert_eq!(plan.bridge_del, vec![(M1, Port::Vxlan), (M2, Port::Tap)]);
    // M1 and M3 are unknown to the table and point at a carried address: the kernel's learning.
    assert!(plan.vxlan_del.is_empty());
    // Once the address is no longer carried they go.
    let plan = super::plan(&present, &Present::default(), &known, &BTreeSet::new());
    assert_eq!(plan.vxlan_del, vec![(M1, P_IP), (M3, P_IP)]);
}

#[test]
fn a_programmed_kernel_is_left_alone() {
    let (macs, known) = table(&[(M1, Location::Remote(P)), (M2, Location::Remote(Q))]);
    let c = carriers(&[(P, P_IP)], true);
    let want = desired(&macs, &c);
    assert!(plan(&want, &want, &known, &ips(&c)).is_empty());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn mac() -> impl Strategy<Value = MacAddr> {
        (0u8..12).prop_map(|n| MacAddr([0x0a, 0, 0, 0, 0, n]))
    }

    fn ip() -> impl Strategy<Value = Ipv4Addr> {
        (1u8..4).prop_map(|n| Ipv4Addr::new(192, 0, 2, n))
    }

    fn port() -> impl Strategy<Value = Port> {
        prop_oneof![Just(Port::Vxlan), Just(Port::Tap)]
    }

    fn present() -> impl Strategy<Value = Present> {
        (
            proptest::collection::btree_map(mac(), port(), 0..8),
            proptest::collection::btree_map(mac(), ip(), 0..8),
        )
            .prop_map(|(bridge, vxlan)| Present { bridge, vxlan })
    }

    proptest! {
        /// Applying the plan gives exactly the wanted bridge entries, every wanted VXLAN entry,
        /// and no other VXLAN entry but the kernel's own learning of unknown MACs at kept
        /// addresses.
        #[test]
        fn applying_the_plan_reaches_the_wanted_state(
            present in present(),
            want in present(),
            known in proptest::collection::btree_set(mac(), 0..12),
            kept in proptest::collection::btree_set(ip(), 0..3),
        ) {
            let mut known = known;
            known.extend(want.bridge.keys().chain(want.vxlan.keys()).copied());
            let plan = plan(&present, &want, &known, &kept);
            let mut after = present.clone();
            for (mac, port) in &plan.bridge_set {
                after.bridge.insert(*mac, *port);
            }
            for (mac, ip) in &plan.vxlan_set {
                after.vxlan.insert(*mac, *ip);
            }
            for (mac, _) in &plan.bridge_del {
                after.bridge.remove(mac);
            }
            for (mac, _) in &plan.vxlan_del {
                after.vxlan.remove(mac);
            }
            prop_assert_eq!(&after.bridge, &want.bridge);
            for (mac, ip) in &after.vxlan {
                match want.vxlan.get(mac) {
                    Some(wanted) => prop_assert_eq!(wanted, ip),
                    None => prop_assert!(!known.contains(mac) && kept.contains(ip)),
                }
            }
            for (mac, ip) in &want.vxlan {
                prop_assert_eq!(after.vxlan.get(mac), Some(ip));
            }
            // And a second plan from there has nothing to do.
            prop_assert!(super::plan(&after, &want, &known, &kept).is_empty());
        }
    }
}
