//! What gossip tells the connection maker and refused peers: where the peers we know listen,
//! which of them have room for another link, and which to name in a refusal.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rand::seq::SliceRandom;

use super::{GossipState, REFUSAL_HINTS};
use crate::mesh::discovery_ceiling;
use crate::topology::{PeerName, PeerRecord};

/// What the connection maker and refused peers are told after the peers changed, worked out
/// from one pass over the records.
pub struct PeerDirectory {
    /// Where to find every other known peer: see [`GossipState::peer_addresses`].
    pub addresses: Vec<(PeerName, SocketAddr)>,
    /// See [`GossipState::discovery_targets`].
    pub discovery_targets: Vec<(PeerName, SocketAddr)>,
    /// See [`GossipState::refusal_hints`].
    pub refusal_hints: Vec<SocketAddr>,
}

impl GossipState {
    /// The addresses, discovery targets and refusal hints of the records as they are now.
    pub fn peer_directory(&mut self) -> PeerDirectory {
        let addresses = self.peer_addresses();
        let discovered = self.unlinked(&addresses);
        PeerDirectory {
            discovery_targets: self.discovery_targets_among(&discovered),
            refusal_hints: self.refusal_hints_among(discovered),
            addresses,
        }
    }

    /// Where to find each peer we are not linked with: its advertised listen address, or, when it
    /// listens on all addresses, the IP others see it at.
    pub fn discovered_targets(&self) -> Vec<(PeerName, SocketAddr)> {
        self.unlinked(&self.peer_addresses())
    }

    fn unlinked(&self, addresses: &[(PeerName, SocketAddr)]) -> Vec<(PeerName, SocketAddr)> {
        addresses
            .iter()
            .filter(|(name, _)| !self.links.contains_key(name))
            .copied()
            .collect()
    }

    /// Where to find every other known peer (linked or not), as `discovered_targets` works it
    /// out. The connection maker uses it to tell which of its targets lead to peers we are
    /// already linked with, so that it does not dial a second link to them.
    pub fn peer_addresses(&self) -> Vec<(PeerName, SocketAddr)> {
        let local = self.local_name();
        // Built only if some peer listens on all addresses: it takes a pass over every
        // connection of every record (7,500 at 250 peers of 30 links), and was an eighth of the
        // CPU of 250 routers that all listen on one address each.
        let mut seen_at: Option<BTreeMap<PeerName, IpAddr>> = None;
        self.topology
            .peers()
            .filter(|record| record.name != local)
            .filter_map(|record| {
                let addr = record.listen_addr;
                if !addr.ip().is_unspecified() {
                    return Some((record.name, addr));
                }
                let ip = seen_at
                    .get_or_insert_with(|| self.seen_at())
                    .get(&record.name)?;
                Some((record.name, SocketAddr::new(*ip, addr.port())))
            })
            .collect()
    }

    /// The IP each peer's connections come from, as the first record listing one says.
    fn seen_at(&self) -> BTreeMap<PeerName, IpAddr> {
        let mut seen_at = BTreeMap::new();
        for record in self.topology.peers() {
            for (remote, summary) in &record.connections {
                seen_at.entry(*remote).or_insert(summary.remote_addr.ip());
            }
        }
        seen_at
    }

    /// The discovered peers worth dialling: those whose links, as their records say, are still
    /// below the share of the limit discovery may fill. The rest of their capacity is left for
    /// newcomers and refused peers.
    pub fn discovery_targets(&self) -> Vec<(PeerName, SocketAddr)> {
        self.discovery_targets_among(&self.discovered_targets())
    }

    fn discovery_targets_among(
        &self,
        discovered: &[(PeerName, SocketAddr)],
    ) -> Vec<(PeerName, SocketAddr)> {
        discovered
            .iter()
            .copied()
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
        let discovered = self.discovered_targets();
        self.refusal_hints_among(discovered)
    }

    fn refusal_hints_among(&mut self, discovered: Vec<(PeerName, SocketAddr)>) -> Vec<SocketAddr> {
        let full = |record: &PeerRecord| {
            record.conn_limit != 0 && record.connections.len() >= record.conn_limit as usize
        };
        let mut candidates: Vec<(usize, SocketAddr)> = discovered
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
