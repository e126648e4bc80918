//! Routes derived from the topology: deterministic breadth-first search, so that every peer
//! computes the same trees from the same topology. (Placeholder API: to be implemented.)

use std::collections::BTreeMap;

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
        let _ = topology;
        unimplemented!()
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
