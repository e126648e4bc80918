//! Property tests of the topology over random meshes: merge order does not matter, routes agree
//! across peers, and garbage collection removes exactly the unreachable peers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::test_support::{name, record};
use super::{PeerName, PeerRecord, Routes, Topology};

/// Peer names used by the generators: 0..MAX_PEERS.
const MAX_PEERS: u64 = 12;

/// One generated record: name, uid, version and connections `(remote, established)`.
type RawRecord = (u64, u64, u64, Vec<(u64, bool)>);

fn raw_record() -> impl Strategy<Value = RawRecord> {
    // Small uid and version ranges, so that ties and collisions are common.
    (
        0..MAX_PEERS,
        0..3u64,
        0..5u64,
        prop::collection::vec((0..MAX_PEERS, any::<bool>()), 0..6),
    )
}

fn build((n, uid, version, connections): &RawRecord) -> PeerRecord {
    record(*n, *uid, *version, connections)
}

/// Records with distinct (name, uid, version): a real author never publishes two different
/// records under one version, and the merge rule cannot order such a pair.
fn distinct_records(raw: &[RawRecord]) -> Vec<PeerRecord> {
    let mut by_key = BTreeMap::new();
    for r in raw {
        by_key.entry((r.0, r.1, r.2)).or_insert_with(|| build(r));
    }
    by_key.into_values().collect()
}

/// One edit of a topology, for the change-count property.
#[derive(Debug, Clone)]
enum Step {
    Merge(Vec<RawRecord>),
    Connect(u64, bool),
    Disconnect(u64),
    Collect,
}

/// Merges `batches` one after the other into a fresh topology of `local`.
fn merged(local: &PeerRecord, batches: &[&[PeerRecord]]) -> Topology {
    let mut topology = Topology::new(local.clone());
    for batch in batches {
        topology.merge(batch.to_vec());
    }
    topology
}

/// Neighbours of each peer.
type Adjacency = BTreeMap<PeerName, BTreeSet<PeerName>>;

/// One kind of routes (established-only or all) computed by one peer.
struct PeerRoutes {
    unicast: BTreeMap<PeerName, PeerName>,
    broadcast: BTreeMap<PeerName, Vec<PeerName>>,
}

/// Peers reachable from `from` over `adjacency`, by plain breadth-first search.
fn reachable(adjacency: &Adjacency, from: PeerName) -> BTreeSet<PeerName> {
    let mut seen = BTreeSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(peer) = queue.pop_front() {
        for &next in adjacency.get(&peer).into_iter().flatten() {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    seen
}

/// The symmetric connections among `records`, optionally only those established at both ends.
fn symmetric(records: &[PeerRecord], established_only: bool) -> Adjacency {
    let by_name: BTreeMap<PeerName, &PeerRecord> = records.iter().map(|r| (r.name, r)).collect();
    let mut adjacency = Adjacency::new();
    for r in records {
        for (remote, ours) in &r.connections {
            let theirs = by_name.get(remote).and_then(|o| o.connections.get(&r.name));
            let usable = match theirs {
                Some(theirs) if *remote != r.name => {
                    !established_only || (ours.established && theirs.established)
                }
                _ => false,
            };
            if usable {
                adjacency.entry(r.name).or_default().insert(*remote);
            }
        }
    }
    adjacency
}

fn is_neighbour(adjacency: &Adjacency, from: PeerName, to: PeerName) -> bool {
    adjacency.get(&from).is_some_and(|n| n.contains(&to))
}

/// Checks the routes of every peer against each other and against the reference reachability
/// over `adjacency`.
fn check_routes(
    routes: &BTreeMap<PeerName, PeerRoutes>,
    adjacency: &Adjacency,
) -> Result<(), TestCaseError> {
    for (&source, ours) in routes {
        let component = reachable(adjacency, source);
        let mut others = component.clone();
        others.remove(&source);
        prop_assert_eq!(
            ours.unicast.keys().copied().collect::<BTreeSet<_>>(),
            others
        );
        prop_assert_eq!(
            ours.broadcast.keys().copied().collect::<BTreeSet<_>>(),
            component.clone()
        );
        for &dest in ours.unicast.keys() {
            check_unicast_path(routes, adjacency, source, dest)?;
        }
        check_broadcast(routes, adjacency, source, &component)?;
    }
    Ok(())
}

/// Follows next hops from `source` to `dest`, each peer using only its own routes.
fn check_unicast_path(
    routes: &BTreeMap<PeerName, PeerRoutes>,
    adjacency: &Adjacency,
    source: PeerName,
    dest: PeerName,
) -> Result<(), TestCaseError> {
    let mut at = source;
    let mut steps = 0;
    while at != dest {
        let Some(&next) = routes[&at].unicast.get(&dest) else {
            return Err(TestCaseError::fail(format!("{at} has no route to {dest}")));
        };
        prop_assert!(
            is_neighbour(adjacency, at, next),
            "hop {} of {} is no neighbour",
            next,
            at
        );
        at = next;
        steps += 1;
        prop_assert!(steps < routes.len(), "loop routing {} to {}", source, dest);
    }
    Ok(())
}

/// Broadcasts from `source`, each peer forwarding to its own children for `source`, and checks
/// that every peer of the component gets it exactly once.
fn check_broadcast(
    routes: &BTreeMap<PeerName, PeerRoutes>,
    adjacency: &Adjacency,
    source: PeerName,
    component: &BTreeSet<PeerName>,
) -> Result<(), TestCaseError> {
    let mut received = BTreeMap::from([(source, 1usize)]);
    let mut queue = VecDeque::from([source]);
    while let Some(at) = queue.pop_front() {
        let Some(children) = routes[&at].broadcast.get(&source) else {
            return Err(TestCaseError::fail(format!(
                "{at} has no tree for {source}"
            )));
        };
        for &child in children {
            prop_assert!(
                is_neighbour(adjacency, at, child),
                "child {} of {} is no neighbour",
                child,
                at
            );
            let count = received.entry(child).or_insert(0);
            *count += 1;
            if *count == 1 {
                queue.push_back(child);
            }
        }
    }
    prop_assert_eq!(
        &received.keys().copied().collect::<BTreeSet<_>>(),
        component
    );
    prop_assert!(
        received.values().all(|&n| n == 1),
        "duplicate delivery from {}",
        source
    );
    Ok(())
}

/// One record per peer 0..n with random connections (possibly to the same peer or to names
/// without a record) and random flags.
fn mesh() -> impl Strategy<Value = Vec<PeerRecord>> {
    (1..=MAX_PEERS as usize).prop_flat_map(|n| {
        prop::collection::vec(
            (
                0..4u64,
                0..4u64,
                prop::collection::vec((0..n as u64 + 1, prop::bool::weighted(0.7)), 0..n + 2),
            ),
            n,
        )
        .prop_map(|peers| {
            peers
                .iter()
                .enumerate()
                .map(|(i, (uid, version, connections))| {
                    record(i as u64, *uid, *version, connections)
                })
                .collect()
        })
    })
}

proptest! {
    #[test]
    fn merge_is_commutative_and_idempotent(
        local in raw_record(),
        raw in prop::collection::vec(raw_record(), 0..30),
        sides in prop::collection::vec(0..3u8, 30),
    ) {
        let local = build(&local);
        // Honest input only: a record in our name and uid at or above our version, other than
        // our own, is a forgery, and whether it looks like our own echo depends on how far we
        // had to jump when it arrives (the forgery rules have unit tests in peers/tests.rs).
        let records: Vec<PeerRecord> = distinct_records(&raw)
            .into_iter()
            .filter(|r| {
                !(r.name == local.name && r.uid == local.uid && r.version >= local.version)
                    || *r == local
            })
            .collect();
        // Each record goes to batch a, batch b or both.
        let pick = |want: u8| -> Vec<PeerRecord> {
            records
                .iter()
                .zip(&sides)
                .filter(|&(_, &side)| side == want || side == 2)
                .map(|(r, _)| r.clone())
                .collect()
        };
        let (a, b) = (pick(0), pick(1));

        let mut ab = merged(&local, &[&a, &b]);
        let ba = merged(&local, &[&b, &a]);
        let at_once = merged(&local, &[&[a.clone(), b.clone()].concat()]);
        prop_assert_eq!(ab.full_state(), ba.full_state());
        prop_assert_eq!(ab.full_state(), at_once.full_state());

        // Merging again changes nothing (it may only report records of other incarnations that
        // lost to ours: telling their sender is the gossip state's business).
        let before = ab.full_state();
        for batch in [a, b] {
            let outcome = ab.merge(batch);
            prop_assert_eq!(
                (outcome.improved, outcome.local_bumped, outcome.rejected),
                (Vec::new(), false, 0)
            );
        }
        prop_assert_eq!(ab.full_state(), before);
    }

    #[test]
    fn merge_reports_exactly_what_it_took(
        local in raw_record(),
        raw in prop::collection::vec(raw_record(), 0..30),
    ) {
        let local = build(&local);
        let mut records = distinct_records(&raw);
        records.extend(records.clone());
        let mut topology = Topology::new(local.clone());
        let outcome = topology.merge(records);
        let improved: BTreeSet<PeerName> = outcome.improved.iter().map(|r| r.name).collect();
        prop_assert_eq!(improved.len(), outcome.improved.len(), "one record per peer");
        for r in &outcome.improved {
            prop_assert!(r.name != local.name);
            prop_assert_eq!(topology.peer(r.name), Some(r));
        }
        prop_assert_eq!(topology.len(), outcome.improved.len() + 1);
        prop_assert_eq!(topology.local().connections.clone(), local.connections);
        prop_assert_eq!(outcome.local_bumped, topology.local().version != local.version);
    }

    #[test]
    fn routes_are_consistent_across_peers(records in mesh()) {
        let mut established = BTreeMap::new();
        let mut all = BTreeMap::new();
        for ours in &records {
            let others: Vec<PeerRecord> =
                records.iter().filter(|r| r.name != ours.name).cloned().collect();
            let routes = Routes::compute(&merged(ours, &[&others]));
            established.insert(
                ours.name,
                PeerRoutes { unicast: routes.unicast, broadcast: routes.broadcast.to_map() },
            );
            all.insert(
                ours.name,
                PeerRoutes { unicast: routes.unicast_all, broadcast: routes.broadcast_all.to_map() },
            );
        }
        check_routes(&established, &symmetric(&records, true))?;
        check_routes(&all, &symmetric(&records, false))?;
    }

    /// The change count is what lets the gossip skip comparing every record before publishing
    /// its view: whatever is done to the table, the count moves exactly when the records do.
    #[test]
    fn the_change_count_moves_exactly_when_the_records_change(
        steps in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(raw_record(), 0..4).prop_map(Step::Merge),
                (0..MAX_PEERS, any::<bool>()).prop_map(|(n, e)| Step::Connect(n, e)),
                (0..MAX_PEERS).prop_map(Step::Disconnect),
                Just(Step::Collect),
            ],
            0..24,
        ),
    ) {
        let mut topology = Topology::new(record(0, 0, 0, &[]));
        for step in steps {
            let (before, count) = (topology.full_state(), topology.changes());
            match step {
                Step::Merge(raw) => {
                    topology.merge(distinct_records(&raw));
                }
                Step::Connect(n, established) => topology.set_local_connection(
                    name(n),
                    super::test_support::summary(established),
                ),
                Step::Disconnect(n) => {
                    topology.remove_local_connection(name(n));
                }
                Step::Collect => {
                    topology.garbage_collect();
                }
            }
            prop_assert_eq!(topology.full_state() != before, topology.changes() != count);
            prop_assert!(topology.changes() >= count);
        }
    }

    #[test]
    fn garbage_collect_removes_exactly_the_unreachable(
        local in prop::collection::vec((0..MAX_PEERS, any::<bool>()), 0..4),
        raw in prop::collection::vec(raw_record(), 0..20),
    ) {
        // We are peer 0; other records may reference names that have no record.
        let local = record(0, 0, 0, &local);
        let records: Vec<PeerRecord> =
            distinct_records(&raw).into_iter().filter(|r| r.name != local.name).collect();
        let mut topology = merged(&local, &[&records]);
        let before = topology.full_state();

        // Reference: directed reachability over the stored records.
        let listed: BTreeMap<PeerName, BTreeSet<PeerName>> = before
            .iter()
            .map(|r| (r.name, r.connections.keys().copied().collect()))
            .collect();
        let wanted = reachable(&listed, name(0));

        let removed = topology.garbage_collect();
        let kept: BTreeSet<PeerName> = topology.peers().map(|r| r.name).collect();
        prop_assert!(kept.contains(&name(0)));
        prop_assert_eq!(
            kept.clone(),
            before.iter().map(|r| r.name).filter(|n| wanted.contains(n)).collect::<BTreeSet<_>>()
        );
        prop_assert!(removed.windows(2).all(|w| w[0].name < w[1].name), "removed in name order");
        prop_assert!(removed.iter().all(|r| !wanted.contains(&r.name)));
        prop_assert_eq!(removed.len() + kept.len(), before.len());
    }
}
