//! The order in which the sleeve learns of switches, with injected time.

use super::*;

const A: PeerName = match PeerName::from_u64(0x7e_00_00_00_00_01) {
    Some(name) => name,
    None => panic!("a 48-bit name"),
};
const B: PeerName = match PeerName::from_u64(0x7e_00_00_00_00_02) {
    Some(name) => name,
    None => panic!("a 48-bit name"),
};

fn set(peers: &[PeerName]) -> BTreeSet<PeerName> {
    peers.iter().copied().collect()
}

#[test]
fn a_peer_the_kernel_takes_over_drains_before_the_sleeve_lets_its_unicast_go() {
    let t0 = Instant::now();
    let mut handover = SleeveHandover::default();
    // Gaining a peer tells the sleeve nothing before the kernel moved it.
    assert_eq!(handover.before_kernel(&set(&[A])), None);
    let told = handover.after_kernel(&set(&[A]), t0).expect("a new peer");
    assert_eq!(told.carried, set(&[A]));
    assert_eq!(told.draining, set(&[A]));
    assert_eq!(handover.next_drain_end(), Some(t0 + TAP_DRAIN));
    // Still draining just before the end; a second reconcile changes nothing.
    let almost = t0 + TAP_DRAIN - Duration::from_millis(1);
    assert_eq!(handover.drained(almost), None);
    assert_eq!(handover.after_kernel(&set(&[A]), almost), None);
    let done = handover.drained(t0 + TAP_DRAIN).expect("the drain ended");
    assert_eq!(done.carried, set(&[A]));
    assert!(done.draining.is_empty());
    assert_eq!(handover.next_drain_end(), None);
    assert_eq!(handover.drained(t0 + TAP_DRAIN * 2), None);
}

#[test]
fn a_peer_the_kernel_gives_up_leaves_the_sleeves_sets_before_the_kernel_moves() {
    let t0 = Instant::now();
    let mut handover = SleeveHandover::default();
    handover.after_kernel(&set(&[A, B]), t0);
    handover.drained(t0 + TAP_DRAIN);
    let first = handover.before_kernel(&set(&[B])).expect("A leaves first");
    assert_eq!(first.carried, set(&[B]));
    // After the kernel followed, nothing more to say.
    assert_eq!(handover.after_kernel(&set(&[B]), t0 + TAP_DRAIN * 2), None);
    assert_eq!(handover.told().carried, set(&[B]));
}

#[test]
fn a_peer_that_falls_back_while_draining_stops_draining_and_drains_again_when_it_returns() {
    let t0 = Instant::now();
    let mut handover = SleeveHandover::default();
    handover.after_kernel(&set(&[A]), t0);
    let gone = handover.before_kernel(&set(&[])).expect("A leaves");
    assert!(gone.carried.is_empty() && gone.draining.is_empty());
    assert_eq!(handover.next_drain_end(), None);
    let t1 = t0 + Duration::from_millis(100);
    let back = handover.after_kernel(&set(&[A]), t1).expect("A is back");
    assert_eq!(back.draining, set(&[A]));
    assert_eq!(handover.next_drain_end(), Some(t1 + TAP_DRAIN));
}

#[test]
fn each_peer_drains_from_its_own_move() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(200);
    let mut handover = SleeveHandover::default();
    handover.after_kernel(&set(&[A]), t0);
    let both = handover.after_kernel(&set(&[A, B]), t1).expect("B joins");
    assert_eq!(both.draining, set(&[A, B]));
    let a_done = handover.drained(t0 + TAP_DRAIN).expect("A's drain ended");
    assert_eq!(a_done.draining, set(&[B]));
    assert_eq!(handover.next_drain_end(), Some(t1 + TAP_DRAIN));
}
