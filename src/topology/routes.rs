//! Routes derived from the topology: unicast next hops and broadcast trees, by deterministic
//! breadth-first search (neighbours visited in ascending name order), so that every peer computes
//! the same trees from the same topology. Hop-by-hop forwarding only works because of that: each
//! peer decides the next step on its own, and the steps must add up to one loop-free path or tree.
//!
//! Unicast routes take one search from us and are computed with the topology. A broadcast tree
//! takes one search from its source, and every reachable peer is a source: 250 routers on two
//! cores spent half their CPU searching trees nobody asked for (a perf profile of
//! `load-tests/mesh_convergence.py --routers 250`), so [`BroadcastTrees`] searches a source's
//! tree the first time a broadcast from it is forwarded and keeps it while the topology lasts.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::{PeerName, Topology};

/// Unicast next hops and broadcast children, seen from the local peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// destination → next hop, over established connections listed by both ends.
    pub unicast: BTreeMap<PeerName, PeerName>,
    /// destination → next hop, over any connection listed by both ends (used for gossip).
    pub unicast_all: BTreeMap<PeerName, PeerName>,
    /// Per source, the neighbours we forward that source's broadcasts to (our children in the
    /// source's tree), over established symmetric connections.
    pub broadcast: BroadcastTrees,
    /// Same as `broadcast` over any symmetric connection (used for gossip).
    pub broadcast_all: BroadcastTrees,
}

impl Routes {
    /// Computes all routes of `topology.local_name()`.
    pub fn compute(topology: &Topology) -> Self {
        let graph = Graph::build(topology);
        let Some(local) = graph.index_of(topology.local_name()) else {
            // Unreachable (a topology always holds our record), but no routes is the safe answer.
            return Self::default();
        };
        graph.routes_of(local)
    }

    /// The routes of `local` in a mesh of established `links` (each pair linked both ways):
    /// what [`Self::compute`] gives for a topology whose records list exactly these links.
    /// Lets the data plane's tests and simulations build their tables the way the router does.
    pub fn from_links(local: PeerName, links: &[(PeerName, PeerName)]) -> Self {
        let graph = Graph::from_links(local, links);
        let local = graph
            .index_of(local)
            .expect("from_links numbers the local peer");
        graph.routes_of(local)
    }

    pub fn unicast(&self, dest: PeerName) -> Option<PeerName> {
        self.unicast.get(&dest).copied()
    }

    pub fn unicast_all(&self, dest: PeerName) -> Option<PeerName> {
        self.unicast_all.get(&dest).copied()
    }

    pub fn broadcast(&self, source: PeerName) -> &[PeerName] {
        self.broadcast.children(source)
    }

    pub fn broadcast_all(&self, source: PeerName) -> &[PeerName] {
        self.broadcast_all.children(source)
    }
}

/// Our children in each reachable source's broadcast tree (ourselves included as a source), each
/// searched on first use and cached. Clones share the cache, so the gossip, the sleeve's tables
/// and the I/O threads reading them search each tree at most once per topology. Equality is the
/// graph's: two values over the same links give the same children for every source.
#[derive(Clone, Default)]
pub struct BroadcastTrees {
    /// `None` when we know no graph at all (no peer is a source).
    trees: Option<Arc<Trees>>,
}

struct Trees {
    /// Peers by ascending name; indices into `adjacency`.
    names: Arc<[PeerName]>,
    adjacency: Adjacency,
    local: usize,
    /// Peers reachable from us: the only sources whose broadcasts can reach us.
    reachable: Vec<bool>,
    /// Per source, our children in its tree, once searched.
    children: Vec<OnceLock<Vec<PeerName>>>,
}

impl BroadcastTrees {
    fn new(names: Arc<[PeerName]>, adjacency: Adjacency, local: usize, ours: &Tree) -> Self {
        let mut reachable = vec![false; names.len()];
        for &peer in &ours.order {
            reachable[peer] = true;
        }
        let trees = Trees {
            children: (0..names.len()).map(|_| OnceLock::new()).collect(),
            names,
            adjacency,
            local,
            reachable,
        };
        // Our own tree is the unicast search: its children come without a second search.
        let own = trees.named(ours.children(&trees.adjacency, local));
        let _ = trees.children[local].set(own);
        Self {
            trees: Some(Arc::new(trees)),
        }
    }

    /// Our children in `source`'s tree, ascending; empty for a source we cannot reach (its
    /// broadcasts cannot arrive here) or do not know.
    pub fn children(&self, source: PeerName) -> &[PeerName] {
        let Some(trees) = &self.trees else {
            return &[];
        };
        let Ok(source) = trees.names.binary_search(&source) else {
            return &[];
        };
        if !trees.reachable[source] {
            return &[];
        }
        trees.children[source].get_or_init(|| {
            let tree = Tree::search(&trees.adjacency, source);
            trees.named(tree.children(&trees.adjacency, trees.local))
        })
    }

    /// Every reachable source with our children in its tree: searches every tree not searched
    /// yet, so it is for the status report and tests, not for forwarding.
    pub fn to_map(&self) -> BTreeMap<PeerName, Vec<PeerName>> {
        let Some(trees) = &self.trees else {
            return BTreeMap::new();
        };
        trees
            .names
            .iter()
            .zip(&trees.reachable)
            .filter(|(_, reachable)| **reachable)
            .map(|(&source, _)| (source, self.children(source).to_vec()))
            .collect()
    }

    /// How many sources' trees have been searched so far (ours is searched with the routes).
    pub fn searched(&self) -> usize {
        self.trees.as_ref().map_or(0, |trees| {
            trees
                .children
                .iter()
                .filter(|cell| cell.get().is_some())
                .count()
        })
    }
}

impl Trees {
    fn named(&self, peers: impl Iterator<Item = usize>) -> Vec<PeerName> {
        peers.map(|peer| self.names[peer]).collect()
    }
}

impl PartialEq for BroadcastTrees {
    fn eq(&self, other: &Self) -> bool {
        match (&self.trees, &other.trees) {
            (None, None) => true,
            (Some(ours), Some(theirs)) => {
                Arc::ptr_eq(ours, theirs)
                    || (ours.local == theirs.local
                        && ours.names == theirs.names
                        && ours.adjacency == theirs.adjacency)
            }
            _ => false,
        }
    }
}

impl Eq for BroadcastTrees {}

impl fmt::Debug for BroadcastTrees {
    /// The trees searched so far (printing must not search the rest).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(trees) = &self.trees else {
            return f.write_str("BroadcastTrees(none)");
        };
        let searched = trees
            .names
            .iter()
            .zip(&trees.children)
            .filter_map(|(source, cell)| cell.get().map(|children| (source, children)));
        f.debug_map().entries(searched).finish()
    }
}

/// Adjacency lists, one per peer, holding indices of the neighbours.
type Adjacency = Vec<Vec<usize>>;

/// The usable connections of a topology, with peers numbered by ascending name so that sorting
/// by index is sorting by name, the order every peer breaks ties in.
struct Graph {
    names: Vec<PeerName>,
    /// Connections listed by both ends with both ends reporting them established.
    established: Adjacency,
    /// Connections listed by both ends, established or not.
    all: Adjacency,
}

impl Graph {
    fn build(topology: &Topology) -> Self {
        // `peers()` yields records in name order, so indices follow name order, and each
        // record's `connections` iterate in name order too, so every list comes out ascending.
        let names: Vec<PeerName> = topology.peers().map(|record| record.name).collect();
        // First what each peer lists, by index: (remote, established). Lookups in sorted vectors
        // rather than maps keep this a fraction of a millisecond at 250 peers of 30 links.
        let listed: Vec<Vec<(usize, bool)>> = topology
            .peers()
            .enumerate()
            .map(|(from, record)| {
                record
                    .connections
                    .iter()
                    // No record for the remote: it cannot confirm the connection. A peer
                    // connected to itself routes nothing.
                    .filter_map(|(remote, summary)| {
                        let to = names.binary_search(remote).ok()?;
                        (to != from).then_some((to, summary.established))
                    })
                    .collect()
            })
            .collect();
        let with_room = || -> Adjacency {
            listed
                .iter()
                .map(|connections| Vec::with_capacity(connections.len()))
                .collect()
        };
        let (mut established, mut all) = (with_room(), with_room());
        for (from, connections) in listed.iter().enumerate() {
            for &(to, ours_established) in connections {
                let back = &listed[to];
                let Ok(at) = back.binary_search_by_key(&from, |&(remote, _)| remote) else {
                    continue; // one-sided: the remote does not (or no longer) lists us
                };
                all[from].push(to);
                if ours_established && back[at].1 {
                    established[from].push(to);
                }
            }
        }
        Self {
            names,
            established,
            all,
        }
    }

    /// `local` and the ends of `links`, every link established both ways.
    fn from_links(local: PeerName, links: &[(PeerName, PeerName)]) -> Self {
        let mut names: Vec<PeerName> = links.iter().flat_map(|&(a, b)| [a, b]).collect();
        names.push(local);
        names.sort_unstable();
        names.dedup();
        let index = |name: &PeerName| {
            names
                .binary_search(name)
                .expect("every end of a link was numbered above")
        };
        let adjacency =
            undirected_adjacency(names.len(), links.iter().map(|(a, b)| (index(a), index(b))));
        Self {
            names,
            all: adjacency.clone(),
            established: adjacency,
        }
    }

    fn index_of(&self, name: PeerName) -> Option<usize> {
        self.names.binary_search(&name).ok()
    }

    fn routes_of(self, local: usize) -> Routes {
        let names: Arc<[PeerName]> = self.names.into();
        // Once every link is established (a settled mesh) the two graphs are one, and so are
        // their routes and trees: one search, and one cache the gossip and the sleeve share.
        let settled = self.all == self.established;
        let (unicast, broadcast) = routes_over(&names, self.established, local);
        let (unicast_all, broadcast_all) = if settled {
            (unicast.clone(), broadcast.clone())
        } else {
            routes_over(&names, self.all, local)
        };
        Routes {
            unicast,
            unicast_all,
            broadcast,
            broadcast_all,
        }
    }
}

/// Adjacency lists of `peers` peers linked both ways by `links` (pairs of indices): each list
/// ascending, without duplicates or self-links. The routes and the connection maker's mesh graph
/// both number peers by ascending name and build their graphs of links here.
pub(crate) fn undirected_adjacency(
    peers: usize,
    links: impl IntoIterator<Item = (usize, usize)>,
) -> Vec<Vec<usize>> {
    let mut adjacency = vec![Vec::new(); peers];
    for (a, b) in links {
        if a != b {
            adjacency[a].push(b);
            adjacency[b].push(a);
        }
    }
    for neighbours in &mut adjacency {
        neighbours.sort_unstable();
        neighbours.dedup();
    }
    adjacency
}

/// Unicast next hops of `local` over `adjacency`, and the broadcast trees over it.
fn routes_over(
    names: &Arc<[PeerName]>,
    adjacency: Adjacency,
    local: usize,
) -> (BTreeMap<PeerName, PeerName>, BroadcastTrees) {
    let ours = Tree::search(&adjacency, local);
    let unicast = ours
        .next_hops(local)
        .into_iter()
        .map(|(dest, hop)| (names[dest], names[hop]))
        .collect();
    let broadcast = BroadcastTrees::new(Arc::clone(names), adjacency, local, &ours);
    (unicast, broadcast)
}

/// A breadth-first search tree.
struct Tree {
    /// Each peer's parent; the root is its own parent; `None` when unreachable.
    parent: Vec<Option<usize>>,
    /// Reachable peers in the order visited, root first: every parent precedes its children.
    order: Vec<usize>,
}

impl Tree {
    /// Breadth-first search from `root`, visiting each peer's neighbours in ascending order, so
    /// that ties between equally short paths are broken identically on every peer.
    fn search(adjacency: &Adjacency, root: usize) -> Self {
        let mut parent = vec![None; adjacency.len()];
        let mut order = Vec::new();
        let mut queue = VecDeque::from([root]);
        parent[root] = Some(root);
        while let Some(peer) = queue.pop_front() {
            order.push(peer);
            for &neighbour in &adjacency[peer] {
                if parent[neighbour].is_none() {
                    parent[neighbour] = Some(peer);
                    queue.push_back(neighbour);
                }
            }
        }
        Self { parent, order }
    }

    /// For every reachable peer other than `root`, the first hop on the tree path from `root`:
    /// the root's child it descends from. Tree paths are shortest paths, which is what keeps
    /// hop-by-hop forwarding loop-free: each hop is one step closer to the destination.
    fn next_hops(&self, root: usize) -> Vec<(usize, usize)> {
        let mut first_hop = vec![None; self.parent.len()];
        // Visit order puts every parent before its children, so the parent's hop is known.
        for &peer in &self.order {
            let Some(parent) = self.parent[peer] else {
                continue;
            };
            if peer == root {
                continue;
            }
            first_hop[peer] = if parent == root {
                Some(peer)
            } else {
                first_hop[parent]
            };
        }
        first_hop
            .into_iter()
            .enumerate()
            .filter_map(|(dest, hop)| hop.map(|hop| (dest, hop)))
            .collect()
    }

    /// `peer`'s children in this tree, ascending. Children are always neighbours, and the
    /// adjacency list is ascending, so filtering it keeps them sorted. (The root is its own
    /// parent, but no peer is its own neighbour, so the root never shows up as a child.)
    fn children<'a>(
        &'a self,
        adjacency: &'a Adjacency,
        peer: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        adjacency[peer]
            .iter()
            .copied()
            .filter(move |&neighbour| self.parent[neighbour] == Some(peer))
    }
}

#[cfg(test)]
mod tests;
