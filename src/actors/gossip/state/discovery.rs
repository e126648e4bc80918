//! What gossip tells the connection maker and refused peers: where the peers we know listen,
//! which of them have room for another link, and which to name in a refusal.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rand::seq::SliceRandom;

use super::{GossipState, REFUSAL_HINTS};
use crate::mesh::discovery_ceiling;
use crate::topology::{PeerName, PeerRecord};

impl GossipState {
    /// Where to find each peer we are not linked with: its advertised listen address, or, when it
    /// listens on all addresses, the IP others see it at.
    pub fn discovered_targets(&self) -> Vec<(PeerName, SocketAddr)> {
        self.peer_addresses()
            .into_iter()
            .filter(|(name, _)| !self.links.contains_key(name))
            .collect()
    }

    /// Where to find every other known peer (linked or not), as `discovered_targets` works it
    /// out. The connection maker uses it to tell which of its targets lead to peers we are
    /// already linked with, so that it does not dial a second link to them.
    pub fn peer_addresses(&self) -> Vec<(PeerName, SocketAddr)> {
        let local = self.local_name();
        let mut seen_at: BTreeMap<PeerName, IpAddr> = BTreeMap::new();
        for record in self.topology.peers() {
            for (remote, summary) in &record.connections {
                seen_at.entry(*remote).or_insert(summary.remote_addr.ip());
            }
        }
        self.topology
            .peers()
            .filter(|record| record.name != local)
            .filter_map(|record| {
                let addr = record.listen_addr;
                if !addr.ip().is_unspecified() {
                    return Some((record.name, addr));
                }
                let ip = seen_at.get(&record.name)?;
                Some((record.name, SocketAddr::new(*ip, addr.port())))
            })
            .collect()
    }

    /// The discovered peers worth dialling: those whose links, as their records say, are still
    /// below the share of the limit discovery may fill. The rest of their capacity is left for
    /// newcomers and refused peers.
    pub fn discovery_targets(&self) -> Vec<(PeerName, SocketAddr)> {
        self.discovered_targets()
            .into_iter()
            .filter(|(name, _)| {
                self.topology.peer(*name).is_some_and(|record| {
                    discovery_ceiling(record.conn_limit)
                        .is_none_or(|ceiling| record.connections.len() < ceiling)
                })
            })
            .collect()
    }

    /// Addresses a refused peer may try instead of us: peers with room left, the fewest
    /// connections first.
    pub fn refusal_hints(&mut self) -> Vec<SocketAddr> {
        let full = |record: &PeerRecord| {
            record.conn_limit != 0 && record.connections.len() >= record.conn_limit as usize
        };
        let mut candidates: Vec<(usize, SocketAddr)> = self
            .discovered_targets()
            .into_iter()
            .filter_map(|(name, addr)| {
                let record = self.topology.peer(name)?;
                (!full(record)).then_some((record.connections.len(), addr))
            })
            .collect();
        // Shuffle first so that equally loaded peers share the newcomers.
        candidates.shuffle(&mut self.rng);
        candidates.sort_by_key(|(connections, _)| *connections);
        let mut hints: Vec<SocketAddr> = candidates
            .into_iter()
            .map(|(_, addr)| addr)
            .take(REFUSAL_HINTS)
            .collect();
        // Our neighbours are always reachable from us, so they are worth naming too.
        if hints.len() < REFUSAL_HINTS {
            for record in self.topology.peers() {
                if hints.len() >= REFUSAL_HINTS {
                    break;
                }
                if self.links.contains_key(&record.name) && !full(record) {
                    let addr = if record.listen_addr.ip().is_unspecified() {
                        self.links[&record.name].remote_addr.ip()
                    } else {
                        record.listen_addr.ip()
                    };
                    hints.push(SocketAddr::new(addr, record.listen_addr.port()));
                }
            }
        }
        hints
    }
}
