use super::*;

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).unwrap()
}

/// A path 1 - 2 - 3 - 4 - 5, limits 2 each.
fn path() -> MeshGraph {
    MeshGraph::new(
        (1..=5).map(|n| (name(n), 2)),
        (1..5).map(|n| (name(n), name(n + 1))),
    )
}

#[test]
fn distances_follow_the_links() {
    let graph = path();
    let first = graph.index_of(name(1)).unwrap();
    let distances = graph.distances(first);
    assert_eq!(distances, vec![Some(0), Some(1), Some(2), Some(3), Some(4)]);
    let near = graph.within_two_hops(first);
    assert_eq!(near, vec![true, true, true, false, false]);
}

#[test]
fn degrees_room_and_common_neighbours() {
    let graph = path();
    let (a, b, c) = (0, 1, 2);
    assert_eq!(graph.degree(a), 1);
    assert!(graph.has_room(a));
    assert!(!graph.has_room(b), "two links at a limit of two");
    assert_eq!(graph.common_neighbours(a, c), 1, "2 links 1 and 3");
    assert_eq!(graph.common_neighbours(a, b), 0);
}

#[test]
fn unreachable_and_unknown_peers() {
    let graph = MeshGraph::new(
        [(name(1), 0), (name(2), 0), (name(3), 0)],
        [(name(1), name(2)), (name(1), name(9)), (name(3), name(3))],
    );
    assert_eq!(graph.distances(0), vec![Some(0), Some(1), None]);
    assert_eq!(graph.degree(2), 0, "a link to itself is ignored");
    assert!(graph.has_room(0), "limit 0 is unlimited");
}

#[test]
fn records_count_a_link_only_when_both_ends_list_it() {
    use crate::topology::{ConnectionSummary, PeerUid};
    let summary = ConnectionSummary {
        remote_addr: "10.0.0.1:6783".parse().unwrap(),
        outbound: true,
        established: false,
    };
    let record = |n: u64, links: &[u64]| PeerRecord {
        name: name(n),
        nickname: format!("p{n}"),
        uid: PeerUid(n),
        version: 1,
        listen_addr: "0.0.0.0:6783".parse().unwrap(),
        conn_limit: 30,
        connections: links.iter().map(|l| (name(*l), summary.clone())).collect(),
    };
    let records = [record(1, &[2, 3]), record(2, &[1]), record(3, &[])];
    let graph = MeshGraph::from_records(&records);
    assert_eq!(graph.len(), 3);
    assert_eq!(graph.neighbours(0), &[1], "1-3 is listed by one end only");
    assert_eq!(graph.neighbours(1), &[0]);
    assert_eq!(graph.degree(2), 0);
}
