//! Unit tests of route computation: which connections count, tie-breaking, tree shapes.

use super::*;
use crate::topology::PeerRecord;
use crate::topology::test_support::{name, record};

/// The topology of peer `local` holding all `records` (which must include one for `local`).
fn topology_of(local: u64, records: &[PeerRecord]) -> Topology {
    let (ours, others): (Vec<_>, Vec<_>) =
        records.iter().cloned().partition(|r| r.name == name(local));
    let mut topology = Topology::new(ours.into_iter().next().expect("local record present"));
    topology.merge(others);
    topology
}

/// Records for undirected, established connections between the listed pairs.
fn mesh(peers: &[u64], edges: &[(u64, u64)]) -> Vec<PeerRecord> {
    peers
        .iter()
        .map(|&peer| {
            let connections: Vec<(u64, bool)> = edges
                .iter()
                .filter_map(|&(a, b)| {
                    if peer == a {
                        Some((b, true))
                    } else if peer == b {
                        Some((a, true))
                    } else {
                        None
                    }
                })
                .collect();
            record(peer, 1, 1, &connections)
        })
        .collect()
}

fn hops(pairs: &[(u64, u64)]) -> BTreeMap<PeerName, PeerName> {
    pairs.iter().map(|&(d, h)| (name(d), name(h))).collect()
}

fn children(entries: &[(u64, &[u64])]) -> BTreeMap<PeerName, Vec<PeerName>> {
    entries
        .iter()
        .map(|&(source, kids)| (name(source), kids.iter().map(|&k| name(k)).collect()))
        .collect()
}

#[test]
fn lone_peer_has_only_its_own_empty_broadcast_entry() {
    let routes = Routes::compute(&Topology::new(record(1, 1, 1, &[])));
    assert!(routes.unicast.is_empty());
    assert!(routes.unicast_all.is_empty());
    assert_eq!(routes.broadcast.to_map(), children(&[(1, &[])]));
    assert_eq!(routes.broadcast_all.to_map(), children(&[(1, &[])]));
    assert_eq!(routes.broadcast(name(1)), &[] as &[PeerName]);
    assert_eq!(routes.unicast(name(2)), None);
}

#[test]
fn one_sided_connections_are_not_used() {
    // 1 lists 2 but 2 does not list 1; 2 lists 3 and 3 lists 2.
    let records = [
        record(1, 1, 1, &[(2, true)]),
        record(2, 1, 1, &[(3, true)]),
        record(3, 1, 1, &[(2, true)]),
    ];
    let routes = Routes::compute(&topology_of(1, &records));
    assert!(routes.unicast_all.is_empty());
    assert_eq!(routes.broadcast_all.to_map(), children(&[(1, &[])]));
}

#[test]
fn unestablished_connections_only_count_for_the_all_routes() {
    // 1–2 established on both ends; 2–3 established only on 3's end; 3–4 on neither.
    let records = [
        record(1, 1, 1, &[(2, true)]),
        record(2, 1, 1, &[(1, true), (3, false)]),
        record(3, 1, 1, &[(2, true), (4, false)]),
        record(4, 1, 1, &[(3, false)]),
    ];
    let routes = Routes::compute(&topology_of(1, &records));
    assert_eq!(routes.unicast, hops(&[(2, 2)]));
    assert_eq!(routes.unicast_all, hops(&[(2, 2), (3, 2), (4, 2)]));
    assert_eq!(routes.broadcast.to_map(), children(&[(1, &[2]), (2, &[])]));
    assert_eq!(
        routes.broadcast_all.to_map(),
        children(&[(1, &[2]), (2, &[]), (3, &[]), (4, &[])])
    );
}

#[test]
fn references_to_peers_without_records_are_ignored() {
    let records = [
        record(1, 1, 1, &[(2, true), (9, true)]),
        record(2, 1, 1, &[(1, true)]),
    ];
    let routes = Routes::compute(&topology_of(1, &records));
    assert_eq!(routes.unicast, hops(&[(2, 2)]));
    assert_eq!(routes.broadcast.to_map(), children(&[(1, &[2]), (2, &[])]));
}

#[test]
fn self_connections_are_ignored() {
    let records = [record(1, 1, 1, &[(1, true)])];
    let routes = Routes::compute(&topology_of(1, &records));
    assert!(routes.unicast.is_empty());
    assert_eq!(routes.broadcast.to_map(), children(&[(1, &[])]));
}

#[test]
fn line_routes_go_through_the_neighbour() {
    let records = mesh(&[1, 2, 3, 4], &[(1, 2), (2, 3), (3, 4)]);
    let routes = Routes::compute(&topology_of(2, &records));
    assert_eq!(routes.unicast, hops(&[(1, 1), (3, 3), (4, 3)]));
    // From 1 the broadcast comes through us and we pass it on to 3; from 4 the reverse.
    assert_eq!(
        routes.broadcast.to_map(),
        children(&[(1, &[3]), (2, &[1, 3]), (3, &[1]), (4, &[1])])
    );
}

#[test]
fn equally_short_paths_are_broken_towards_the_lower_name() {
    // A diamond: 1–2–4 and 1–3–4.
    let records = mesh(&[1, 2, 3, 4], &[(1, 2), (1, 3), (2, 4), (3, 4)]);
    let routes_1 = Routes::compute(&topology_of(1, &records));
    assert_eq!(routes_1.unicast, hops(&[(2, 2), (3, 3), (4, 2)]));
    // In 1's tree, 4 hangs under 2, so 2 forwards 1's broadcasts to 4 and 3 forwards none.
    assert_eq!(routes_1.broadcast(name(1)), &[name(2), name(3)]);
    let routes_2 = Routes::compute(&topology_of(2, &records));
    assert_eq!(routes_2.broadcast(name(1)), &[name(4)]);
    let routes_3 = Routes::compute(&topology_of(3, &records));
    assert_eq!(routes_3.broadcast(name(1)), &[] as &[PeerName]);
    // From 4, the same rule hangs 1 under 2.
    assert_eq!(routes_3.unicast(name(1)), Some(name(1)));
    assert_eq!(routes_2.broadcast(name(4)), &[name(1)]);
    assert_eq!(routes_3.broadcast(name(4)), &[] as &[PeerName]);
}

#[test]
fn unreachable_peers_get_no_routes() {
    let records = mesh(&[1, 2, 3, 4], &[(1, 2), (3, 4)]);
    let routes = Routes::compute(&topology_of(1, &records));
    assert_eq!(routes.unicast, hops(&[(2, 2)]));
    assert_eq!(routes.broadcast.to_map(), children(&[(1, &[2]), (2, &[])]));
    assert_eq!(routes.broadcast(name(3)), &[] as &[PeerName]);
}

#[test]
fn large_mesh_is_fully_routed() {
    // 500 peers, each connected to the next 15 (30 connections each, wrapping around).
    const PEERS: u64 = 500;
    let edges: Vec<(u64, u64)> = (0..PEERS)
        .flat_map(|a| (1..=15).map(move |step| (a + 1, (a + step) % PEERS + 1)))
        .collect();
    let peers: Vec<u64> = (1..=PEERS).collect();
    let routes = Routes::compute(&topology_of(1, &mesh(&peers, &edges)));
    assert_eq!(routes.unicast.len(), 499);
    assert_eq!(routes.broadcast.to_map().len(), 500);
    // Our own broadcast goes to all 30 neighbours directly.
    assert_eq!(routes.broadcast(name(1)).len(), 30);
}

/// A ring of `peers`, each also linked to the peers `step`s away (30 links each for 15 steps).
fn circulant(peers: u64, steps: u64) -> Vec<PeerRecord> {
    let edges: Vec<(u64, u64)> = (0..peers)
        .flat_map(|a| (1..=steps).map(move |step| (a + 1, (a + step * 7) % peers + 1)))
        .filter(|(a, b)| a != b)
        .collect();
    let ids: Vec<u64> = (1..=peers).collect();
    mesh(&ids, &edges)
}

/// What the routes held before trees were searched lazily: every reachable source's tree
/// searched up front, our children in each.
fn every_tree(
    graph: &Graph,
    adjacency: &Adjacency,
    local: usize,
) -> BTreeMap<PeerName, Vec<PeerName>> {
    Tree::search(adjacency, local)
        .order
        .iter()
        .map(|&source| {
            let tree = Tree::search(adjacency, source);
            let children = tree
                .children(adjacency, local)
                .map(|c| graph.names[c])
                .collect();
            (graph.names[source], children)
        })
        .collect()
}

#[test]
fn a_settled_mesh_shares_one_search_and_one_cache_between_both_route_sets() {
    let topology = topology_of(1, &circulant(120, 15));
    let graph = Graph::build(&topology);
    assert_eq!(graph.all, graph.established, "every link is established");
    let local = graph.index_of(name(1)).expect("local peer");
    let routes = Routes::compute(&topology);
    assert_eq!(routes.unicast, routes.unicast_all);
    assert_eq!(
        routes.broadcast.searched(),
        1,
        "only our own tree, with the unicast search"
    );
    let _ = routes.broadcast_all(name(50));
    assert_eq!(
        routes.broadcast.searched(),
        2,
        "the gossip's search serves the sleeve too"
    );
    assert_eq!(
        routes.broadcast_all.to_map(),
        every_tree(&graph, &graph.all, local)
    );
    assert_eq!(routes.broadcast.searched(), 120);
}

#[test]
fn one_pending_link_gives_the_all_routes_their_own_trees() {
    let mut records = circulant(120, 15);
    // Peer 2 reports one of its links as not yet established: it leaves the established graph.
    let pending = *records[1]
        .connections
        .keys()
        .next()
        .expect("peer 2 has links");
    records[1]
        .connections
        .get_mut(&pending)
        .expect("that link")
        .established = false;
    let topology = topology_of(1, &records);
    let graph = Graph::build(&topology);
    assert_ne!(graph.all, graph.established);
    let local = graph.index_of(name(1)).expect("local peer");
    let routes = Routes::compute(&topology);
    assert_ne!(routes.broadcast, routes.broadcast_all);
    assert_eq!(
        routes.broadcast_all.to_map(),
        every_tree(&graph, &graph.all, local)
    );
    assert_eq!(
        routes.broadcast.searched(),
        1,
        "the other graph's trees are its own"
    );
    assert_eq!(
        routes.broadcast.to_map(),
        every_tree(&graph, &graph.established, local)
    );
}

#[test]
fn a_tree_is_searched_once_when_first_asked_for_and_clones_share_it() {
    let routes = Routes::compute(&topology_of(1, &circulant(60, 5)));
    let trees = routes.broadcast.clone();
    assert_eq!(trees.searched(), 1);
    let first = routes.broadcast(name(30)).to_vec();
    assert_eq!(
        trees.searched(),
        2,
        "the clone sees the search made through the original"
    );
    assert_eq!(trees.children(name(30)), first.as_slice());
    assert_eq!(trees.searched(), 2, "asked again: no second search");
    // A peer we do not know costs no search.
    assert!(trees.children(name(999)).is_empty());
    assert_eq!(trees.searched(), 2);
}

#[test]
fn trees_are_equal_when_their_graphs_are_whatever_was_searched() {
    let records = circulant(40, 4);
    let one = Routes::compute(&topology_of(1, &records));
    let other = Routes::compute(&topology_of(1, &records));
    let _ = one.broadcast(name(7));
    assert_eq!(one, other);
    let elsewhere = Routes::compute(&topology_of(2, &records));
    assert_ne!(
        one.broadcast, elsewhere.broadcast,
        "same graph, another local peer"
    );
    let fewer = Routes::compute(&topology_of(1, &circulant(40, 3)));
    assert_ne!(one.broadcast, fewer.broadcast);
}

#[test]
fn routes_from_links_are_the_routes_of_a_topology_listing_them() {
    let edges = [(1, 2), (1, 3), (2, 4), (3, 4), (4, 5), (6, 7)];
    let records = mesh(&[1, 2, 3, 4, 5, 6, 7], &edges);
    let links: Vec<(PeerName, PeerName)> = edges.iter().map(|&(a, b)| (name(a), name(b))).collect();
    for local in [1, 4, 6] {
        let computed = Routes::compute(&topology_of(local, &records));
        let from_links = Routes::from_links(name(local), &links);
        assert_eq!(from_links, computed);
        assert_eq!(from_links.broadcast.to_map(), computed.broadcast.to_map());
    }
}

proptest::proptest! {
    /// Searching a source's tree when asked gives what searching every tree up front gave.
    #[test]
    fn lazily_searched_trees_match_every_tree_searched_up_front(
        edges in proptest::collection::vec((0u64..24, 0u64..24), 0..80),
        local in 0u64..24,
    ) {
        let links: Vec<(PeerName, PeerName)> =
            edges.iter().map(|&(a, b)| (name(a + 1), name(b + 1))).collect();
        let graph = Graph::from_links(name(local + 1), &links);
        let index = graph.index_of(name(local + 1)).expect("local peer");
        let expected = every_tree(&graph, &graph.established, index);
        let routes = Routes::from_links(name(local + 1), &links);
        for (source, children) in &expected {
            proptest::prop_assert_eq!(routes.broadcast(*source), children.as_slice());
        }
        proptest::prop_assert_eq!(routes.broadcast.to_map(), expected);
    }
}
