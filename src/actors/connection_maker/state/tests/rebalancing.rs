//! Tests of what the mesh graph changes in the target table: discovery leaves near peers alone,
//! rebalancing dials far targets and drops redundant links, and a dropped peer is held back.

use super::*;
use crate::actors::connection_maker::rebalance::{
    MAX_VIEW_LAG, MIN_LINK_AGE, REDIAL_HOLD_AFTER_DROP,
};
use crate::mesh::ClosingReason;

/// A state with a connection limit of 30, as rebalancing needs one.
fn limited_state(discovery: bool) -> ConnectionMakerState {
    let mut st = state(discovery);
    st.set_conn_limit(30);
    st
}

fn addr_of(n: u64) -> String {
    format!("10.0.0.{n}:6783")
}

fn discover(st: &mut ConnectionMakerState, peers: impl IntoIterator<Item = u64>, now: Instant) {
    let listed = peers
        .into_iter()
        .map(|n| (name(n), sock(&addr_of(n))))
        .collect();
    st.set_discovered(listed, now);
}

/// A graph of `us()` and peers 1..=20 (limit 10: too many to link them all), with `links` (0
/// stands for us).
fn mesh(links: &[(u64, u64)]) -> Arc<MeshGraph> {
    mesh_limited(10, links)
}

fn mesh_limited(limit: u32, links: &[(u64, u64)]) -> Arc<MeshGraph> {
    let peer = |n: u64| if n == 0 { us() } else { name(n) };
    Arc::new(MeshGraph::new(
        (0..=20).map(|n| (peer(n), limit)),
        links.iter().map(|(a, b)| (peer(*a), peer(*b))),
    ))
}

/// us - 1 - 2 - 3, 2 - 4, where 3 links to 10..=15 and 4 to 16..=20: a link from us to 3 would
/// save 2 + 6 × 2 hops, one to 4 2 + 5 × 2, one to any other peer under the bar.
fn far_hubs() -> Vec<(u64, u64)> {
    let mut links = vec![(0, 1), (1, 2), (2, 3), (2, 4)];
    links.extend((10..=15).map(|leaf| (3, leaf)));
    links.extend((16..=20).map(|leaf| (4, leaf)));
    links
}

/// Rebalancing's first call (`free_permits` free) makes no change, it only schedules
/// the first one.
fn schedule_rebalancing(st: &mut ConnectionMakerState, now: Instant, free_permits: usize) {
    assert_eq!(
        st.rebalance(now, free_permits),
        None,
        "the first call only schedules"
    );
}

#[test]
fn discovery_leaves_peers_within_two_hops_alone() {
    let now = Instant::now();
    let mut st = limited_state(true);
    // us - 1 - 2 - 3: 2 is near, 3 is not.
    discover(&mut st, [2, 3], now);
    st.set_connected_peers(BTreeSet::from([name(1)]));
    st.set_mesh(mesh(&[(0, 1), (1, 2), (2, 3)]));
    assert_eq!(st.due(now, 10), strings(&[&addr_of(3)]));
    // A direct target is the operator's: dialled however near.
    st.add_direct(&[addr_of(2)], false, now).unwrap();
    assert_eq!(st.due(now, 10), strings(&[&addr_of(2)]));
}

#[test]
fn a_mesh_within_the_limit_links_every_pair() {
    let now = Instant::now();
    for limit in [0, 20, 30] {
        let mut st = limited_state(true);
        discover(&mut st, [2, 3], now);
        st.set_connected_peers(BTreeSet::from([name(1)]));
        st.set_mesh(mesh_limited(limit, &[(0, 1), (1, 2), (2, 3)]));
        assert_eq!(
            sorted(st.due(now, 10)),
            strings(&[&addr_of(2), &addr_of(3)]),
            "limit {limit}"
        );
    }
}

#[test]
fn without_a_link_near_peers_are_dialled() {
    let now = Instant::now();
    let mut st = limited_state(true);
    discover(&mut st, [1, 2], now);
    // A stale view that still shows our old link: isolated now, nothing is near.
    st.set_mesh(mesh(&[(1, 2)]));
    assert_eq!(
        sorted(st.due(now, 10)),
        strings(&[&addr_of(1), &addr_of(2)])
    );
}

#[test]
fn rebalancing_dials_the_far_target() {
    let now = Instant::now();
    let mut st = limited_state(true);
    discover(&mut st, [2, 3, 4], now);
    st.set_connected_peers(BTreeSet::from([name(1)]));
    st.set_mesh(mesh(&far_hubs()));
    schedule_rebalancing(&mut st, now, 10);
    let later = now + secs(3600);
    assert_eq!(
        st.rebalance(later, 10),
        Some(RebalanceAction::Dial(addr_of(3)))
    );
    assert!(matches!(
        st.target(&addr_of(3)).unwrap().state(),
        TargetState::Attempting { .. }
    ));
    assert_eq!(st.rebalance(later, 10), None, "one change per interval");
}

/// Links us to 1..=4, dialled as `direct` targets or discovered ones, in a mesh where a far
/// hub is worth a link: 1 and 2 linked (each is the other's common neighbour with us); all of
/// 1..=4 linked to 10 and 11 (above the floor); 4 - 5 - 6, and 6 linked to 12..=19: a link to
/// 6 would save 2 + 8 × 2 hops. Returns the mesh's links.
fn linked_to_four_with_a_far_hub(
    st: &mut ConnectionMakerState,
    direct: bool,
    now: Instant,
) -> Vec<(u64, u64)> {
    let addrs: Vec<String> = (1..=4).map(addr_of).collect();
    if direct {
        st.add_direct(&addrs, false, now).unwrap();
    } else {
        discover(st, 1..=4, now);
    }
    for addr in st.due(now, 10) {
        let n = addr.trim_start_matches("10.0.0.").trim_end_matches(":6783");
        st.attempt_succeeded(&addr, name(n.parse().unwrap()), now);
    }
    // As gossip does, discovery no longer lists the peers we are linked to: the targets that
    // dialled them are retired while their links last, and still ours to drop.
    discover(st, 5..=8, now);
    st.set_connected_peers((1..=4).map(name).collect());
    let mut links = vec![(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (4, 5), (5, 6)];
    links.extend((12..=19).map(|leaf| (6, leaf)));
    for n in 1..=4 {
        links.extend([(n, 10), (n, 11)]);
    }
    st.set_mesh(mesh(&links));
    links
}

#[test]
fn rebalancing_makes_room_and_the_dropped_peer_is_held_back() {
    let now = Instant::now();
    let mut st = limited_state(true);
    let links = linked_to_four_with_a_far_hub(&mut st, false, now);
    schedule_rebalancing(&mut st, now, 0);
    let young = now + MIN_LINK_AGE - secs(1);
    assert_eq!(st.rebalance(young, 0), None, "links too young to drop");
    let later = now + secs(3600);
    let Some(RebalanceAction::Drop(dropped)) = st.rebalance(later, 0) else {
        panic!("a full peer with a far peer drops a redundant link");
    };
    assert!(dropped == name(1) || dropped == name(2), "{dropped}");
    let addr = addr_of(dropped.as_u64());
    st.link_dropped(&addr, ClosingReason::Rebalanced.to_string(), later);
    // Its target was retired: it goes, the address's wait remembered, and rebalancing holds
    // the peer back.
    assert!(st.target(&addr).is_none());
    assert_eq!(st.rebalance_dials.get(&dropped), Some(&later));
    // Once the hold is over the peer is still near (through the other one): not dialled.
    let mut links_after = links.clone();
    links_after.retain(|link| *link != (0, dropped.as_u64()));
    st.set_connected_peers((1..=4).map(name).filter(|p| *p != dropped).collect());
    st.set_mesh(mesh(&links_after));
    let after_hold = later + REDIAL_HOLD_AFTER_DROP;
    assert!(!st.due(after_hold, 30).contains(&addr));
}

#[test]
fn links_to_direct_targets_are_dropped_only_beyond_the_limit() {
    // Four direct targets: the operator's links under a limit of 30, but a Node list's
    // addresses under a limit of 3.
    for (limit, dropped) in [(30, false), (3, true)] {
        let now = Instant::now();
        let mut st = state(true);
        st.set_conn_limit(limit);
        linked_to_four_with_a_far_hub(&mut st, true, now);
        schedule_rebalancing(&mut st, now, 0);
        let decision = st.rebalance(now + secs(3600), 0);
        assert_eq!(
            matches!(decision, Some(RebalanceAction::Drop(_))),
            dropped,
            "limit {limit}: {decision:?}"
        );
    }
}

/// us - 1 - 2 - 3 - 5 and 2 - 6 - 4 - 7, where 3 and 4 are at their limit of 2 (and far: three
/// and four hops).
fn far_and_full() -> Arc<MeshGraph> {
    let peer = |n: u64| if n == 0 { us() } else { name(n) };
    let links = [(0, 1), (1, 2), (2, 3), (3, 5), (2, 6), (6, 4), (4, 7)];
    Arc::new(MeshGraph::new(
        (0..=7).map(|n| (peer(n), if n == 3 || n == 4 { 2 } else { 10 })),
        links.iter().map(|(a, b)| (peer(*a), peer(*b))),
    ))
}

#[test]
fn once_linked_no_target_is_dialled_while_the_view_shows_it_full() {
    let now = Instant::now();
    let mut st = limited_state(true);
    // 3 is a direct target (a seed every router is given), 4 a discovered one.
    st.add_direct(&[addr_of(3)], false, now).unwrap();
    discover(&mut st, [4], now);
    let known = [3, 4].map(|n| (name(n), sock(&addr_of(n))));
    st.learn_peer_addresses(&known);
    st.set_mesh(far_and_full());
    st.set_connected_peers(BTreeSet::from([name(1)]));
    assert_eq!(st.due(now, 10), Vec::<String>::new());
    assert_eq!(st.next_wakeup(), None, "nothing to wake up for");
    // And the status says why.
    let infos: Vec<String> = st
        .target_statuses(now)
        .into_iter()
        .map(|s| s.info)
        .collect();
    let why = "not dialled while its peer is at its connection limit";
    assert_eq!(infos, [why, why], "{infos:?}");
    // Isolated, every way into the mesh is tried, whatever the view says.
    st.set_connected_peers(BTreeSet::new());
    assert_eq!(
        sorted(st.due(now, 10)),
        strings(&[&addr_of(3), &addr_of(4)])
    );
    for n in [3, 4] {
        let refused = "refused by the remote: connection limit reached (2)".to_string();
        st.attempt_failed(&addr_of(n), Some(name(n)), refused, true, now);
    }
    // Linked again, and the view shows room: dialled once the back-off is over.
    st.set_connected_peers(BTreeSet::from([name(1)]));
    let links = [(0, 1), (1, 2), (2, 3), (2, 6), (6, 4)];
    st.set_mesh(mesh(&links));
    assert_eq!(
        sorted(st.due(now + secs(60), 10)),
        strings(&[&addr_of(3), &addr_of(4)])
    );
}

#[test]
fn direct_targets_beyond_the_limit_are_dialled_as_discovered_ones() {
    let now = Instant::now();
    // A chain us - 1 - 2 - ... - 7 and every one of 2..=7 a direct target: 2 is near.
    let links: Vec<(u64, u64)> = (0..7).map(|n| (n, n + 1)).collect();
    let addrs: Vec<String> = (2..=7).map(addr_of).collect();
    let linked = |limit: u32, seed: u64| {
        let mut st = ConnectionMakerState::new(us(), PORT, true, seed);
        st.set_conn_limit(limit);
        st.add_direct(&addrs, false, now).unwrap();
        let known: Vec<(PeerName, SocketAddr)> =
            (1..=7).map(|n| (name(n), sock(&addr_of(n)))).collect();
        st.learn_peer_addresses(&known);
        st.set_connected_peers(BTreeSet::from([name(1)]));
        st.set_mesh(mesh(&links));
        st
    };
    // Within our limit they are the operator's links: all dialled, near or not, by address.
    assert_eq!(linked(30, 1).due_within(now, 10, 2), addrs);
    // Beyond it (six targets, limit 5): within the discovery permits, not near, and in an
    // order of each peer's own, so that a cluster's routers do not all dial the lowest
    // addresses first.
    let mut picks = BTreeSet::new();
    for seed in 0..20 {
        let due = linked(5, seed).due_within(now, 10, 2);
        assert_eq!(due.len(), 2, "seed {seed}: {due:?}");
        assert!(!due.contains(&addr_of(2)), "seed {seed}: {due:?}");
        picks.insert(sorted(due));
    }
    assert!(picks.len() > 1, "always the same targets: {picks:?}");
}

#[test]
fn rebalancing_dials_a_backing_off_far_target_once_per_hold() {
    let now = Instant::now();
    let mut st = limited_state(true);
    // 3 and 4 are far hubs, both refused a moment ago (backing off).
    discover(&mut st, [2, 3, 4], now);
    st.set_connected_peers(BTreeSet::from([name(1)]));
    st.set_mesh(mesh(&far_hubs()));
    let refused = "refused by the remote: connection limit reached (10)".to_string();
    for n in [3, 4] {
        st.attempt_failed(&addr_of(n), Some(name(n)), refused.clone(), true, now);
    }
    schedule_rebalancing(&mut st, now, 10);
    let later = now + secs(60);
    assert!(
        due_at(&st, &addr_of(3)) <= now + secs(3),
        "backing off, not yet due"
    );
    assert_eq!(
        st.rebalance(later, 10),
        Some(RebalanceAction::Dial(addr_of(3)))
    );
    st.attempt_failed(&addr_of(3), Some(name(3)), refused, true, later);
    // Refused again: not dialled by rebalancing again until the hold is over (4, the next
    // best, is tried instead, once).
    let mut dials = Vec::new();
    for second in (70..REDIAL_HOLD_AFTER_DROP.as_secs()).step_by(5) {
        if let Some(RebalanceAction::Dial(addr)) = st.rebalance(now + secs(second), 10) {
            st.attempt_failed(&addr, None, "refused".into(), true, now + secs(second));
            dials.push(addr);
        }
    }
    assert_eq!(dials, strings(&[&addr_of(4)]));
    // Once the hold is over, 3 is dialled again (drawn with 4, whose hold is over too: if 4
    // comes first, it is held again and 3 is next).
    let after_hold = later + REDIAL_HOLD_AFTER_DROP + secs(60);
    let mut dials = Vec::new();
    for second in (0..30).step_by(5) {
        let at = after_hold + secs(second);
        if let Some(RebalanceAction::Dial(addr)) = st.rebalance(at, 10) {
            st.attempt_failed(&addr, None, "refused".into(), true, at);
            dials.push(addr);
        }
    }
    assert!(dials.contains(&addr_of(3)), "{dials:?}");
}

/// [`far_hubs`], linked with 1, the addresses of 1..=4 (and ours) known from gossip and none of
/// them a discovery target.
fn chain_known_only_from_gossip(st: &mut ConnectionMakerState) {
    st.set_connected_peers(BTreeSet::from([name(1)]));
    let known: Vec<(PeerName, SocketAddr)> = (1..=4)
        .map(|n| (name(n), sock(&addr_of(n))))
        .chain([(us(), sock("10.0.0.99:6783"))])
        .collect();
    st.learn_peer_addresses(&known);
    st.set_mesh(mesh(&far_hubs()));
}

/// Discovery lists only peers below four fifths of their limit: in a mesh where every peer is
/// past that, rebalancing must still reach a far peer, by the address gossip gives for it.
#[test]
fn rebalancing_dials_a_far_peer_known_only_from_gossip_and_keeps_no_target_for_it() {
    let now = Instant::now();
    let mut st = limited_state(true);
    chain_known_only_from_gossip(&mut st);
    assert!(st.due(now, 10).is_empty(), "discovery dials none of them");
    schedule_rebalancing(&mut st, now, 10);
    let later = now + secs(3600);
    assert_eq!(
        st.rebalance(later, 10),
        Some(RebalanceAction::Dial(addr_of(3)))
    );
    // A target of no source (the status lists none), held while the attempt lasts.
    assert!(st.target(&addr_of(3)).is_none());
    assert!(matches!(
        st.targets[&addr_of(3)].state(),
        TargetState::Attempting { .. }
    ));
    // Refused (3 is full): nothing keeps the target, nothing else dials it, and rebalancing
    // holds it back like any peer it dialled.
    st.attempt_failed(&addr_of(3), Some(name(3)), "refused".into(), true, later);
    assert!(!st.targets.contains_key(&addr_of(3)));
    assert!(st.due(later + secs(60), 10).is_empty());
    assert_eq!(
        st.rebalance(later + secs(60), 10),
        Some(RebalanceAction::Dial(addr_of(4))),
        "3 is held back; the other hub is dialled"
    );
}

#[test]
fn without_discovery_rebalancing_dials_no_peer_known_only_from_gossip() {
    let now = Instant::now();
    let mut st = limited_state(false);
    chain_known_only_from_gossip(&mut st);
    assert_eq!(st.rebalance(now, 10), None);
    assert_eq!(st.rebalance(now + secs(3600), 10), None);
}

#[test]
fn rebalancing_waits_until_the_view_shows_our_links() {
    let now = Instant::now();
    let mut st = limited_state(true);
    discover(&mut st, [2, 3, 4], now);
    st.set_mesh(mesh(&far_hubs()));
    st.set_connected_peers(BTreeSet::from([name(1)]));
    schedule_rebalancing(&mut st, now, 10);
    // A link to 5 came up; the view does not list it at 5's end yet.
    st.set_connected_peers(BTreeSet::from([name(1), name(5)]));
    let later = now + secs(3600);
    assert_eq!(st.rebalance(later, 10), None, "the view lags our links");
    let lagging = later + MAX_VIEW_LAG - secs(1);
    assert_eq!(st.rebalance(lagging, 10), None);
    // The view catches up: the decision is made at once.
    let mut links = far_hubs();
    links.push((0, 5));
    st.set_mesh(mesh(&links));
    assert_eq!(
        st.rebalance(lagging, 10),
        Some(RebalanceAction::Dial(addr_of(3)))
    );
}

#[test]
fn a_view_that_never_catches_up_holds_rebalancing_back_for_a_while_only() {
    let now = Instant::now();
    let mut st = limited_state(true);
    discover(&mut st, [2, 3, 4], now);
    st.set_mesh(mesh(&far_hubs()));
    // Linked with 1 and with 5, whose record never lists us.
    st.set_connected_peers(BTreeSet::from([name(1), name(5)]));
    let later = now + secs(3600);
    assert_eq!(st.rebalance(later, 10), None);
    schedule_rebalancing(&mut st, later + MAX_VIEW_LAG, 10);
    assert_eq!(
        st.rebalance(later + MAX_VIEW_LAG + secs(3600), 10),
        Some(RebalanceAction::Dial(addr_of(3)))
    );
}
