//! The mesh as the connection maker sees it: who is linked to whom (a link counts once both ends
//! list it, as routes count it) and each peer's connection limit. Built from gossip's peer
//! records (the actor) or from a simulated mesh (the tests), and shared as an `Arc` since one
//! graph serves every decision until the next view.
//!
//! Answers the questions the dial filter and the rebalancing ask: hop distances from us, whether
//! a peer is within two hops, common neighbours, degrees.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::topology::{PeerName, PeerRecord, undirected_adjacency};

/// The mesh's symmetric links, peers numbered by ascending name.
#[derive(Clone, Debug, Default)]
pub struct MeshGraph {
    names: Vec<PeerName>,
    index: HashMap<PeerName, usize>,
    /// Ascending neighbour indices per peer.
    adjacency: Vec<Vec<usize>>,
    /// Each peer's `--conn-limit` (0: unlimited).
    limits: Vec<u32>,
}

impl MeshGraph {
    /// The graph of gossip's records: a link counts when both ends list it, established or not
    /// (a link in its handshake already takes a slot at both ends).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a PeerRecord>) -> Self {
        let records: BTreeMap<PeerName, &PeerRecord> =
            records.into_iter().map(|r| (r.name, r)).collect();
        let peers = records.values().map(|r| (r.name, r.conn_limit));
        let links = records.values().flat_map(|record| {
            record
                .connections
                .keys()
                .filter(|remote| {
                    **remote > record.name
                        && records
                            .get(remote)
                            .is_some_and(|other| other.connections.contains_key(&record.name))
                })
                .map(|remote| (record.name, *remote))
        });
        Self::new(peers, links)
    }

    /// A graph of `peers` (name, connection limit) and undirected `links`; links naming an
    /// unknown peer or a peer twice are ignored.
    pub fn new(
        peers: impl IntoIterator<Item = (PeerName, u32)>,
        links: impl IntoIterator<Item = (PeerName, PeerName)>,
    ) -> Self {
        let by_name: BTreeMap<PeerName, u32> = peers.into_iter().collect();
        let names: Vec<PeerName> = by_name.keys().copied().collect();
        let limits: Vec<u32> = by_name.values().copied().collect();
        let index: HashMap<PeerName, usize> =
            names.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        // A link to a peer we hold no record of leads nowhere.
        let known = links
            .into_iter()
            .filter_map(|(a, b)| Some((*index.get(&a)?, *index.get(&b)?)));
        let adjacency = undirected_adjacency(names.len(), known);
        Self {
            names,
            index,
            adjacency,
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn index_of(&self, peer: PeerName) -> Option<usize> {
        self.index.get(&peer).copied()
    }

    pub fn name(&self, index: usize) -> PeerName {
        self.names[index]
    }

    pub fn neighbours(&self, index: usize) -> &[usize] {
        &self.adjacency[index]
    }

    pub fn degree(&self, index: usize) -> usize {
        self.adjacency[index].len()
    }

    /// Whether the peer has room for one more link by its own limit.
    pub fn has_room(&self, index: usize) -> bool {
        let limit = self.limits[index] as usize;
        limit == 0 || self.degree(index) < limit
    }

    /// Links the peer may still accept: its limit less its links; an unlimited peer, as many as
    /// there are peers.
    pub fn room(&self, index: usize) -> usize {
        match self.limits[index] as usize {
            0 => self.len(),
            limit => limit.saturating_sub(self.degree(index)),
        }
    }

    /// Whether the peer's limit lets it link to every other peer directly.
    pub fn fits_in_limit(&self, index: usize) -> bool {
        let limit = self.limits[index] as usize;
        limit == 0 || self.len() <= limit + 1
    }

    /// Peers adjacent to both `a` and `b`.
    pub fn common_neighbours(&self, a: usize, b: usize) -> usize {
        let (mut i, mut j, mut count) = (0, 0, 0);
        let (left, right) = (&self.adjacency[a], &self.adjacency[b]);
        while i < left.len() && j < right.len() {
            match left[i].cmp(&right[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    count += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        count
    }

    /// Which peers are at most two hops from `from` (itself included): O(degree²), cheaper than
    /// a full search when only nearness matters.
    pub fn within_two_hops(&self, from: usize) -> Vec<bool> {
        let mut near = vec![false; self.len()];
        near[from] = true;
        for &neighbour in &self.adjacency[from] {
            near[neighbour] = true;
            for &second in &self.adjacency[neighbour] {
                near[second] = true;
            }
        }
        near
    }

    /// Hop distances from `from` by breadth-first search; `None` when unreachable.
    pub fn distances(&self, from: usize) -> Vec<Option<u32>> {
        let mut distance = vec![None; self.len()];
        distance[from] = Some(0);
        let mut queue = VecDeque::from([from]);
        while let Some(peer) = queue.pop_front() {
            let next = distance[peer].map(|d| d + 1);
            for &neighbour in &self.adjacency[peer] {
                if distance[neighbour].is_none() {
                    distance[neighbour] = next;
                    queue.push_back(neighbour);
                }
            }
        }
        distance
    }
}

#[cfg(test)]
mod tests;
