//! What one link more or one link fewer does to our hop distances: the measure rebalancing
//! weighs a change by. Computed from one breadth-first search from us plus, per peer two hops
//! away, how many of our neighbours lead to it, so that every candidate link costs O(its degree)
//! to score, whatever the size of the mesh.

use super::super::mesh_graph::MeshGraph;

/// Our distances and two-hop paths, as one view of the mesh shows them.
pub struct Reach {
    distances: Vec<Option<u32>>,
    /// Per peer two hops away: how many of our neighbours are linked to it.
    paths_in_two: Vec<u32>,
}

impl Reach {
    pub fn new(graph: &MeshGraph, us: usize) -> Self {
        let distances = graph.distances(us);
        let mut paths_in_two = vec![0; graph.len()];
        for &neighbour in graph.neighbours(us) {
            for &second in graph.neighbours(neighbour) {
                if distances[second] == Some(2) {
                    paths_in_two[second] += 1;
                }
            }
        }
        Self {
            distances,
            paths_in_two,
        }
    }

    /// Hops a link to `candidate` would save us, counted over the peers it brings within two
    /// hops: `candidate` itself comes to one, each of its neighbours farther than two comes to
    /// two. (Peers farther out gain too; leaving them out keeps the score local and only ever
    /// understates a far link's worth.) Zero for a peer within two hops or unreachable.
    pub fn gain(&self, graph: &MeshGraph, candidate: usize) -> u32 {
        let Some(distance) = self.distances[candidate].filter(|d| *d > 2) else {
            return 0;
        };
        let brought_in: u32 = graph
            .neighbours(candidate)
            .iter()
            .filter_map(|&peer| self.distances[peer])
            .filter(|d| *d > 2)
            .map(|d| d - 2)
            .sum();
        distance - 1 + brought_in
    }

    /// Hops dropping our link to `neighbour` would cost us: it goes from one hop to two, and
    /// each peer that only it brought within two hops goes to three. (A peer three hops away only
    /// through it may go to four: not counted, which the threshold a change must clear absorbs.)
    pub fn loss(&self, graph: &MeshGraph, neighbour: usize) -> u32 {
        let stranded = graph
            .neighbours(neighbour)
            .iter()
            .filter(|&&peer| self.distances[peer] == Some(2) && self.paths_in_two[peer] == 1)
            .count();
        1 + stranded as u32
    }
}
