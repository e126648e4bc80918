//! Routes derived from the topology: unicast next hops and broadcast trees, by deterministic
//! breadth-first search (neighbours visited in ascending name order), so that every peer computes
//! the same trees from the same topology. Hop-by-hop forwarding only works because of that: each
//! peer decides the next step on its own, and the steps must add up to one loop-free path or tree.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{PeerName, Topology};

/// Unicast next hops and broadcast children, seen from the local peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// destination → next hop, over established connections listed by both ends.
    pub unicast: BTreeMap<PeerName, PeerName>,
    /// destination → next hop, over any connection listed by both ends (used for gossip).
    pub unicast_all: BTreeMap<PeerName, PeerName>,
    /// source → the neighbours we forward that source's broadcasts to (our children in the
    /// source's tree), over established symmetric connections. Every reachable source, ourselves
    /// included, has an entry (possibly empty).
    pub broadcast: BTreeMap<PeerName, Vec<PeerName>>,
    /// Same as `broadcast` over any symmetric connection (used for gossip).
    pub broadcast_all: BTreeMap<PeerName, Vec<PeerName>>,
}

impl Routes {
    /// Computes all routes of `topology.local_name()`.
    pub fn compute(topology: &Topology) -> Self {
        let graph = Graph::build(topology);
        let Some(local) = graph.index_of(topology.local_name()) else {
            // Unreachable (a topology always holds our record), but no routes is the safe answer.
            return Self::default();
        };
        let (unicast, broadcast) = graph.routes(&graph.established, local);
        // Once every link is established (a settled mesh) the two graphs are one: the second
        // pass would repeat the first's search per reachable peer, which profiles of 250 routers
        // show dominating their CPU (half of all samples in `Tree::search`).
        let (unicast_all, broadcast_all) = if graph.all == graph.established {
            (unicast.clone(), broadcast.clone())
        } else {
            graph.routes(&graph.all, local)
        };
        Self {
            unicast,
            unicast_all,
            broadcast,
            broadcast_all,
        }
    }

    pub fn unicast(&self, dest: PeerName) -> Option<PeerName> {
        self.unicast.get(&dest).copied()
    }

    pub fn unicast_all(&self, dest: PeerName) -> Option<PeerName> {
        self.unicast_all.get(&dest).copied()
    }

    pub fn broadcast(&self, source: PeerName) -> &[PeerName] {
        self.broadcast
            .get(&source)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn broadcast_all(&self, source: PeerName) -> &[PeerName] {
        self.broadcast_all
            .get(&source)
            .map(Vec::as_slice)
            .unwrap_or(&[])
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
        // `peers()` yields records in name order, so indices follow name order.
        let names: Vec<PeerName> = topology.peers().map(|record| record.name).collect();
        let index: HashMap<PeerName, usize> = names
            .iter()
            .enumerate()
            .map(|(i, &name)| (name, i))
            .collect();
        let mut established = vec![Vec::new(); names.len()];
        let mut all = vec![Vec::new(); names.len()];
        for (from, record) in topology.peers().enumerate() {
            // `connections` iterates in name order too, so every list comes out ascending.
            for (remote, summary) in &record.connections {
                let Some(&to) = index.get(remote) else {
                    continue; // no record for the remote: it cannot confirm the connection
                };
                if to == from {
                    continue; // a peer connected to itself routes nothing
                }
                let Some(back) = topology
                    .peer(*remote)
                    .and_then(|other| other.connections.get(&record.name))
                else {
                    continue; // one-sided: the remote does not (or no longer) lists us
                };
                all[from].push(to);
                if summary.established && back.established {
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

    fn index_of(&self, name: PeerName) -> Option<usize> {
        self.names.binary_search(&name).ok()
    }

    /// Unicast next hops and broadcast children of `local` over `adjacency`.
    fn routes(
        &self,
        adjacency: &Adjacency,
        local: usize,
    ) -> (
        BTreeMap<PeerName, PeerName>,
        BTreeMap<PeerName, Vec<PeerName>>,
    ) {
        let ours = Tree::search(adjacency, local);
        let unicast = ours
            .next_hops(local)
            .into_iter()
            .map(|(dest, hop)| (self.names[dest], self.names[hop]))
            .collect();
        // Broadcast sources are exactly the peers reachable from us: others' broadcasts cannot
        // arrive here. One search per source keeps the total at O(peers × connections).
        let broadcast = ours
            .order
            .iter()
            .map(|&source| {
                let tree = Tree::search(adjacency, source);
                let children = tree
                    .children(adjacency, local)
                    .map(|child| self.names[child])
                    .collect();
                (self.names[source], children)
            })
            .collect();
        (unicast, broadcast)
    }
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
