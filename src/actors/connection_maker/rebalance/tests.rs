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

#[test]
fn dials_the_farthest_peer_when_there_is_room() {
    // 1 - 2 - 3 - 4 - 5 - 6: 5 is four hops away, 6 five.
    let path = graph(6, 30, &[(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]);
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(1);
    let decision = decide_at(&mut rebalancer, &path, 1, &[], start, start + LATER);
    assert_eq!(decision, Some(Rebalance::Dial(name(6))));
}

#[test]
fn nothing_to_do_within_three_hops() {
    let path = graph(4, 30, &[(1, 2), (2, 3), (3, 4)]);
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(1);
    assert_eq!(
        decide_at(&mut rebalancer, &path, 1, &[], start, start + LATER),
        None
    );
}

#[test]
fn prefers_a_far_peer_with_room() {
    // 1 - 2 - 3 - 4 - {5, 6}; 5 is full (limit 1 reached), 6 has room by its limit of 30.
    let mesh = MeshGraph::new(
        (1..=6).map(|n| (name(n), if n == 5 { 1 } else { 30 })),
        [(1, 2), (2, 3), (3, 4), (4, 5), (4, 6)]
            .iter()
            .map(|(a, b)| (name(*a), name(*b))),
    );
    for seed in 0..20 {
        let start = Instant::now();
        let mut rebalancer = Rebalancer::new(seed);
        let decision = decide_at(&mut rebalancer, &mesh, 1, &[], start, start + LATER);
        assert_eq!(decision, Some(Rebalance::Dial(name(6))), "seed {seed}");
    }
}

/// Us (1) linked to 2..=5, which are all linked to 10 and 11 (so every one has more links than
/// the floor); 2 and 3 also to each other, so 3 is a common neighbour of us and 2. A chain
/// 5 - 6 - 7 - 8 - 9 makes 9 far.
fn crowded() -> MeshGraph {
    let mut links = vec![
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
        (2, 3),
        (5, 6),
        (6, 7),
        (7, 8),
        (8, 9),
    ];
    for hub in [10, 11] {
        for n in 2..=5 {
            links.push((n, hub));
        }
    }
    graph(11, 30, &links)
}

#[test]
fn when_full_drops_the_most_redundant_old_link() {
    let mesh = crowded();
    let start = Instant::now();
    let old = start;
    let droppable = [(name(2), old), (name(4), old), (name(5), old)];
    let mut rebalancer = Rebalancer::new(3);
    let decision = decide_at(&mut rebalancer, &mesh, 0, &droppable, start, start + LATER);
    // 2 shares 3 with us; 4 and 5 share nobody (10 and 11 are not our neighbours).
    assert_eq!(decision, Some(Rebalance::Drop(name(2))));
}

#[test]
fn never_drops_a_young_link_or_one_without_a_common_neighbour() {
    let mesh = crowded();
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
    // would leave us with two.
    let mesh = graph(
        7,
        30,
        &[(1, 2), (1, 3), (1, 4), (2, 3), (4, 5), (5, 6), (6, 7)],
    );
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(3);
    let droppable = [(name(2), start), (name(3), start)];
    assert_eq!(
        decide_at(&mut rebalancer, &mesh, 0, &droppable, start, start + LATER),
        None
    );
}

#[test]
fn unlimited_peers_never_rebalance() {
    let path = graph(6, 0, &[(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]);
    let start = Instant::now();
    let all = |_: PeerName| true;
    let input = |now| RebalanceInput {
        graph: &path,
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
    let path = graph(6, 30, &[(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]);
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

#[test]
fn a_full_far_peer_is_reached_through_a_neighbour_with_room() {
    // 1 - 2 - 3 - 4 - 5 - 6 - 8: 5 and 6 are far and full (limit 2, two links each); 8, six
    // hops away, has room.
    let limits = |n: u64| match n {
        5 => 2,
        6 => 2,
        _ => 30,
    };
    let mesh = MeshGraph::new(
        [1, 2, 3, 4, 5, 6, 8].map(|n| (name(n), limits(n))),
        [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 8)]
            .iter()
            .map(|(a, b)| (name(*a), name(*b))),
    );
    // 8 is six hops away and has room: dialled first.
    let start = Instant::now();
    let mut rebalancer = Rebalancer::new(5);
    let decision = decide_at(&mut rebalancer, &mesh, 1, &[], start, start + LATER);
    assert_eq!(decision, Some(Rebalance::Dial(name(8))));
    // Without 8 to dial, the full 5 and 6 are reached through 4: a neighbour of 5 with room,
    // three hops from us (not near).
    let not_8 = |peer: PeerName| peer != name(8);
    let input = RebalanceInput {
        graph: &mesh,
        us: name(1),
        limit: 30,
        free_permits: 1,
        droppable: &[],
        dialable: &not_8,
        now: start + LATER + LATER,
    };
    assert_eq!(rebalancer.decide(&input), Some(Rebalance::Dial(name(4))));
}
