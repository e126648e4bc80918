use super::*;

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).unwrap()
}

fn graph(peers: u64, limit: u32, links: &[(u64, u64)]) -> MeshGraph {
    MeshGraph::new(
        (1..=peers).map(|n| (name(n), limit)),
        links.iter().map(|(a, b)| (name(*a), name(*b))),
    )
}

/// `hub`'s links to each of `leaves`.
fn star(hub: u64, leaves: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
    leaves.map(|leaf| (hub, leaf)).collect()
}

/// 1 - 2 - 3 - 4, and 4 linked to ten peers (10..=19) linked to nothing else: a link from us
/// (1) to 4 brings it from three hops to one and its ten from four to two.
fn far_hub_links() -> Vec<(u64, u64)> {
    let mut links = vec![(1, 2), (2, 3), (3, 4)];
    links.extend(star(4, 10..=19));
    links
}

fn far_hub() -> MeshGraph {
    graph(19, 30, &far_hub_links())
}

/// A decision at `now` after the first delay has been drawn at `start`.
fn decide_at(
    rebalancer: &mut Rebalancer,
    graph: &MeshGraph,
    free_permits: usize,
    droppable: &[(PeerName, Instant)],
    start: Instant,
    now: Instant,
) -> Option<Rebalance> {
    let all = |_: PeerName| true;
    let input = |now| RebalanceInput {
        graph,
        us: name(1),
        limit: 30,
        free_permits,
        droppable,
        dialable: &all,
        now,
    };
    assert_eq!(
        rebalancer.decide(&input(start)),
        None,
        "the first call only schedules"
    );
    rebalancer.decide(&input(now))
}

const LATER: Duration = Duration::from_secs(3600);

/// What a full peer (no free permit) decides an hour after its first call.
fn full_peer_decides(
    mesh: &MeshGraph,
    droppable: &[(PeerName, Instant)],
    start: Instant,
) -> Option<Rebalance> {
    decide_at(
        &mut Rebalancer::new(3),
        mesh,
        0,
        droppable,
        start,
        start + LATER,
    )
}

#[test]
fn dials_the_peer_that_brings_the_most_peers_within_two_hops() {
    // 4 (three hops) gains 2 + 10 × 2 hops; each of its leaves, though farther (four hops),
    // gains 3 + 1.
    let mesh = far_hub();
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(1);
    let decision = decide_at(&mut rebalancer, &mesh, 1, &[], start, start + LATER);
    assert_eq!(decision, Some(Rebalance::Dial(name(4))));
}

#[test]
fn a_link_that_saves_few_hops_is_not_made() {
    // 1 - 2 - 3 - 4 - 5 - 6: the best link (to 5) saves 3 + 1 + 2 hops, under the bar.
    let path = graph(6, 30, &[(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]);
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(1);
    assert_eq!(
        decide_at(&mut rebalancer, &path, 1, &[], start, start + LATER),
        None
    );
}

#[test]
fn prefers_a_far_peer_with_room() {
    // Two hubs three hops away: 4 with twelve leaves but full (limit 13, thirteen links), 5
    // with ten and room. A full peer would refuse us.
    let mut links = vec![(1, 2), (2, 3), (3, 4), (3, 5)];
    links.extend(star(4, 10..=21));
    links.extend(star(5, 30..=39));
    let mesh = MeshGraph::new(
        (1..=39).map(|n| (name(n), if n == 4 { 13 } else { 30 })),
        links.iter().map(|(a, b)| (name(*a), name(*b))),
    );
    for seed in 0..20 {
        let start = Instant::now();
        let mut rebalancer = Rebalancer::new(seed);
        let decision = decide_at(&mut rebalancer, &mesh, 1, &[], start, start + LATER);
        assert_eq!(decision, Some(Rebalance::Dial(name(5))), "seed {seed}");
    }
}

#[test]
fn spreads_dials_among_nearly_best_peers_by_the_room_they_have_left() {
    // Three hubs three hops away: 4 and 5 with ten leaves each (a gain of 22 hops), 4 with one
    // link of room left (limit 12) and 5 with nineteen; 6 with four leaves (10 hops: worth a
    // link, but far below the best). Routers deciding on this view must not all dial one hub.
    let mut links = vec![(1, 2), (2, 3), (3, 4), (3, 5), (3, 6)];
    links.extend(star(4, 10..=19));
    links.extend(star(5, 20..=29));
    links.extend(star(6, 30..=33));
    let mesh = MeshGraph::new(
        (1..=33).map(|n| (name(n), if n == 4 { 12 } else { 30 })),
        links.iter().map(|(a, b)| (name(*a), name(*b))),
    );
    let mut dialled = std::collections::BTreeMap::new();
    for seed in 0..200 {
        let start = Instant::now();
        let mut rebalancer = Rebalancer::new(seed);
        let decision = decide_at(&mut rebalancer, &mesh, 1, &[], start, start + LATER);
        let Some(Rebalance::Dial(peer)) = decision else {
            panic!("seed {seed}: {decision:?}");
        };
        *dialled.entry(peer).or_insert(0) += 1;
    }
    let (to_4, to_5) = (dialled[&name(4)], dialled[&name(5)]);
    assert_eq!(to_4 + to_5, 200, "only the two best: {dialled:?}");
    assert!(to_4 > 0 && to_5 > 5 * to_4, "by room left: {dialled:?}");
}

#[test]
fn never_dials_a_full_peer() {
    // As above without 5: the one peer worth a link is at its limit, and we have room.
    let mut links = vec![(1, 2), (2, 3), (3, 4)];
    links.extend(star(4, 10..=21));
    let mesh = MeshGraph::new(
        (1..=21).map(|n| (name(n), if n == 4 { 13 } else { 30 })),
        links.iter().map(|(a, b)| (name(*a), name(*b))),
    );
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(1);
    assert_eq!(
        decide_at(&mut rebalancer, &mesh, 1, &[], start, start + LATER),
        None
    );
}

/// Us (1) linked to 2..=5, which are all linked to 40 and 41 (so every one has more links than
/// the floor); 2 and 3 also to each other, so 3 is a common neighbour of us and 2. A chain
/// 5 - 6 - 7 ends in a hub with ten leaves (20..=29): a link to 7 would save 22 hops.
fn crowded() -> Vec<(u64, u64)> {
    let mut links = vec![(1, 2), (1, 3), (1, 4), (1, 5), (2, 3), (5, 6), (6, 7)];
    for hub in [40, 41] {
        links.extend((2..=5).map(|n| (n, hub)));
    }
    links.extend(star(7, 20..=29));
    links
}

#[test]
fn when_full_drops_the_most_redundant_old_link() {
    let mesh = graph(41, 30, &crowded());
    let start = Instant::now();
    let old = start;
    let droppable = [(name(2), old), (name(4), old), (name(5), old)];
    let mut rebalancer = Rebalancer::new(3);
    let decision = decide_at(&mut rebalancer, &mesh, 0, &droppable, start, start + LATER);
    // 2 shares 3 with us, and 40 and 41 stay two hops away through 3, 4 and 5: dropping it
    // costs one hop. 4 and 5 share nobody with us (40 and 41 are not our neighbours).
    assert_eq!(decision, Some(Rebalance::Drop(name(2))));
}

#[test]
fn drops_one_link_at_a_time() {
    let mesh = graph(41, 30, &crowded());
    let start = Instant::now();
    let droppable = [(name(2), start), (name(3), start)];
    let all = |_: PeerName| true;
    let input = |now| RebalanceInput {
        graph: &mesh,
        us: name(1),
        limit: 30,
        free_permits: 0,
        droppable: &droppable,
        dialable: &all,
        now,
    };
    let mut rebalancer = Rebalancer::new(3);
    let dropped_at = start + LATER;
    let first = decide_at(&mut rebalancer, &mesh, 0, &droppable, start, dropped_at);
    assert!(matches!(first, Some(Rebalance::Drop(_))), "{first:?}");
    // Still full (another peer took the place): no second drop while the first is unspent...
    let soon = dropped_at + Duration::from_secs(30);
    assert_eq!(rebalancer.decide(&input(soon)), None);
    // ...until a link rebalancing dialled came up, or the hold is over.
    rebalancer.dial_succeeded();
    let next = rebalancer.decide(&input(soon + Duration::from_secs(30)));
    assert!(matches!(next, Some(Rebalance::Drop(_))), "{next:?}");
    let mut unspent = Rebalancer::new(3);
    decide_at(&mut unspent, &mesh, 0, &droppable, start, dropped_at);
    let after_hold = dropped_at + REDIAL_HOLD_AFTER_DROP;
    let next = unspent.decide(&input(after_hold));
    assert!(matches!(next, Some(Rebalance::Drop(_))), "{next:?}");
}

#[test]
fn never_drops_for_a_peer_without_room() {
    // As `crowded`, but 7 is at its limit (11: 6 and its ten leaves): it would refuse us.
    let links = crowded();
    let mesh = MeshGraph::new(
        (1..=41).map(|n| (name(n), if n == 7 { 11 } else { 30 })),
        links.iter().map(|(a, b)| (name(*a), name(*b))),
    );
    let start = Instant::now();
    let droppable = [(name(2), start)];
    assert_eq!(full_peer_decides(&mesh, &droppable, start), None);
}

#[test]
fn a_drop_must_cost_less_than_the_far_link_gains() {
    // As `crowded`, but only 2 leads to 50..=65: dropping it would put those sixteen three
    // hops away (cost 17), more than the link to 7 gains (22) less the bar.
    let mut links = crowded();
    links.extend(star(2, 50..=65));
    let mesh = graph(65, 30, &links);
    let start = Instant::now();
    let droppable = [(name(2), start)];
    assert_eq!(full_peer_decides(&mesh, &droppable, start), None);
    // 3 is as redundant as 2 was: dropping it costs one hop.
    let droppable = [(name(2), start), (name(3), start)];
    assert_eq!(
        full_peer_decides(&mesh, &droppable, start),
        Some(Rebalance::Drop(name(3)))
    );
}

#[test]
fn never_drops_a_young_link_or_one_without_a_common_neighbour() {
    let mesh = graph(41, 30, &crowded());
    let start = Instant::now();
    let now = start + LATER;
    let young = now - MIN_LINK_AGE + Duration::from_secs(1);
    let mut rebalancer = Rebalancer::new(3);
    let droppable = [(name(2), young), (name(4), start), (name(5), start)];
    assert_eq!(
        decide_at(&mut rebalancer, &mesh, 0, &droppable, start, now),
        None,
        "2 is too young, 4 and 5 have no common neighbour with us"
    );
}

#[test]
fn never_drops_below_the_floor() {
    // Us with three links (the floor), 2 and 3 linked: dropping 2 would keep it near, but
    // would leave us with two. A hub far away is worth a link.
    let mut links = vec![(1, 2), (1, 3), (1, 4), (2, 3), (4, 5), (5, 6)];
    links.extend(star(6, 10..=19));
    let mesh = graph(19, 30, &links);
    let start = Instant::now();
    let droppable = [(name(2), start), (name(3), start)];
    assert_eq!(full_peer_decides(&mesh, &droppable, start), None);
}

#[test]
fn gains_and_losses_count_the_hops_a_link_changes() {
    let mut links = crowded();
    links.extend(star(2, 50..=52));
    let mesh = graph(52, 30, &links);
    let reach = Reach::new(&mesh, 0);
    let index = |n: u64| mesh.index_of(name(n)).unwrap();
    // 7: three hops to one, its ten leaves four to two; 6 is two hops away already.
    assert_eq!(reach.gain(&mesh, index(7)), 2 + 10 * 2);
    // A leaf of 7: four hops to one, and 7 three to two.
    assert_eq!(reach.gain(&mesh, index(20)), 3 + 1);
    // Peers within two hops gain nothing.
    assert_eq!(reach.gain(&mesh, index(6)), 0);
    assert_eq!(reach.gain(&mesh, index(2)), 0);
    // Dropping 2: itself one hop to two, and 50..=52 (only through 2) two to three.
    assert_eq!(reach.loss(&mesh, index(2)), 1 + 3);
    // Dropping 3: only itself; 40 and 41 stay two hops away through 4 and 5.
    assert_eq!(reach.loss(&mesh, index(3)), 1);
}

#[test]
fn unlimited_peers_never_rebalance() {
    let unlimited = graph(19, 0, &far_hub_links());
    let start = Instant::now();
    let all = |_: PeerName| true;
    let input = |now| RebalanceInput {
        graph: &unlimited,
        us: name(1),
        limit: 0,
        free_permits: 1,
        droppable: &[],
        dialable: &all,
        now,
    };
    let mut rebalancer = Rebalancer::new(1);
    assert_eq!(rebalancer.decide(&input(start)), None);
    assert_eq!(rebalancer.decide(&input(start + LATER)), None);
}

#[test]
fn decisions_come_at_jittered_intervals_from_the_seed() {
    let path = far_hub();
    let all = |_: PeerName| true;
    let schedule = |seed| {
        let start = Instant::now();
        let mut rebalancer = Rebalancer::new(seed);
        let mut decided = Vec::new();
        for second in 0..300u64 {
            let now = start + Duration::from_secs(second);
            let input = RebalanceInput {
                graph: &path,
                us: name(1),
                limit: 30,
                free_permits: 1,
                droppable: &[],
                dialable: &all,
                now,
            };
            if rebalancer.decide(&input).is_some() {
                decided.push(second);
            }
        }
        decided
    };
    let first = schedule(9);
    assert_eq!(first, schedule(9), "same seed, same schedule");
    assert_ne!(first, schedule(10), "another seed, another schedule");
    assert!(
        first[0] >= 15 && first[0] <= 46,
        "first after 30 s ± 50 %: {first:?}"
    );
    for pair in first.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((5..=16).contains(&gap), "interval 10 s ± 50 %: {first:?}");
    }
}
