//! The forwarding table the sleeve hot path reads: which neighbours we hold a direct link with
//! (their UDP address, how big a datagram their path carries, whether the kernel's fastdp path
//! already carries our frames to them), the next hop towards every reachable peer, our children
//! in every source's broadcast tree, and the MAC table. The `Sleeve` actor builds it from the
//! gossip's routes, the overlay switch and the `MacLearner`'s snapshot, and publishes it whole as
//! an `Arc`; the I/O threads swap the `Arc` in between batches and never lock or wait for it.
//!
//! Delivery rules this table supports (each peer gets each broadcast exactly once):
//! - a frame captured from our bridge for a MAC at peer P goes towards P along the unicast route,
//!   unless P is a fastdp neighbour (the kernel already carried it);
//! - a broadcast, multicast or unknown-unicast frame captured from our bridge goes to each of our
//!   children in our own broadcast tree: a delivering copy to a sleeve child, a relay-only copy
//!   to a fastdp child that has children of its own (the kernel delivered it there, but cannot
//!   pass it on: the bridge isolates the overlay ports), nothing to a fastdp leaf;
//! - a broadcast arriving from the overlay is delivered (unless relay-only) and passed to our
//!   children in its source's tree, always delivering: peers two or more hops from the source
//!   are never its fastdp neighbours.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::dataplane::mac_table::MacSnapshot;
use crate::topology::{BroadcastTrees, PeerName};

/// A peer we hold an established mesh connection with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Neighbour {
    /// Where its sleeve listens: the link's remote IP and the peer's mesh port.
    pub udp_addr: SocketAddr,
    /// Largest datagram (UDP payload, bytes) the path to it carries: verified by PMTU probes, or
    /// derived from our underlay MTU until they answer.
    pub payload_limit: usize,
    /// The overlay switch chose fastdp for this peer: the kernel carries our frames to it.
    pub fastdp: bool,
    /// The kernel took this fastdp peer over moments ago: unicast frames captured for it were
    /// queued on the TAP before the bridge moved its MACs, so the sleeve still sends them.
    pub draining: bool,
}

/// Everything the hot path forwards by; immutable once published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardingTable {
    pub local: PeerName,
    /// Peers with an established direct link.
    pub neighbours: HashMap<PeerName, Neighbour>,
    /// Every reachable peer → the neighbour that is the next hop towards it.
    pub next_hops: HashMap<PeerName, PeerName>,
    /// Our children in each broadcast source's tree (ourselves included), from the gossip's
    /// routes. A source's tree is searched the first time one of its broadcasts passes, here or
    /// in the control plane, and then kept: on the I/O thread that is one breadth-first search
    /// of the mesh (tens of microseconds at 250 peers) per source per topology change.
    pub broadcast: BroadcastTrees,
    pub macs: Arc<MacSnapshot>,
}

impl ForwardingTable {
    /// A table that knows only ourselves: everything captured is dropped, nothing is relayed.
    pub fn alone(local: PeerName) -> Self {
        Self {
            local,
            neighbours: HashMap::new(),
            next_hops: HashMap::new(),
            broadcast: BroadcastTrees::default(),
            macs: Arc::new(MacSnapshot::default()),
        }
    }

    /// The neighbour to send a frame for `dest` to, with its path.
    pub fn route(&self, dest: PeerName) -> Option<(PeerName, &Neighbour)> {
        let hop = *self.next_hops.get(&dest)?;
        self.neighbours.get(&hop).map(|neighbour| (hop, neighbour))
    }

    /// Our children in `source`'s broadcast tree.
    pub fn children_of(&self, source: PeerName) -> &[PeerName] {
        self.broadcast.children(source)
    }

    /// Whether our broadcasts must be relayed through `child`: some other peer's route from us
    /// goes through it. Our broadcast tree and our unicast routes come from the same breadth-first
    /// search, so a peer below `child` in one is below it in the other.
    pub fn relays_through(&self, child: PeerName) -> bool {
        self.next_hops
            .iter()
            .any(|(&dest, &hop)| hop == child && dest != child)
    }
}
