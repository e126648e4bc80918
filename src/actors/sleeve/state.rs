//! The sleeve's control state, sans-IO: one entry per established mesh link (its UDP address,
//! heartbeats and path-MTU search), the routes and the overlay switch's fastdp set, from which
//! it builds the [`ForwardingTable`] the hot path reads. The actor feeds it gossip, control
//! records and clock ticks, and carries out the [`SleeveOutput`]s it returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::heartbeat::Heartbeats;
use super::pmtu::{PmtuProber, ProbeOutcome};
use crate::actors::mac_learner::state::MacSnapshot;
use crate::actors::overlay::FastdpPeers;
use crate::dataplane::sleeve::{ForwardingTable, Neighbour};
use crate::topology::{BroadcastTrees, PeerName, Routes};
use crate::wire::sleeve::{
    Control, DATAGRAM_HEADER_LEN, ETHERNET_HEADER_LEN, MAX_DATAGRAM_LEN, RECORD_HEADER_LEN,
    seal::SEAL_OVERHEAD,
};

/// An established mesh link, as the gossip reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NeighbourLink {
    pub peer: PeerName,
    pub nickname: String,
    /// The mesh link's id, agreed in its handshake: the same at both ends and known only to
    /// them. Heartbeats carry it, so a new connection starts afresh, and a datagram that merely
    /// names the peer proves nothing.
    pub link_id: u64,
    /// The link's remote IP with the peer's mesh port, where its sleeve listens.
    pub udp_addr: SocketAddr,
}

/// What the actor must do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SleeveOutput {
    /// Send a control datagram to a neighbour.
    Send {
        peer: PeerName,
        to: SocketAddr,
        control: Control,
    },
    /// The path to `peer` carries `mtu`-byte packets in one datagram (log it).
    MtuVerified {
        peer: PeerName,
        nickname: String,
        addr: SocketAddr,
        mtu: u16,
    },
    /// The peer answered from another address than we had: it is now sent there (log it).
    AddressChanged {
        peer: PeerName,
        from: SocketAddr,
        to: SocketAddr,
    },
    /// No heartbeat for the timeout: the mesh link must be closed.
    Failed { peer: PeerName, reason: String },
    /// No heartbeat for the timeout, but fastdp carries the peer: the link stays (log it).
    Silent { peer: PeerName },
}

/// What `/report` and `weave status` show of one sleeve link.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SleeveLinkStatus {
    pub peer: PeerName,
    pub udp_addr: SocketAddr,
    /// The peer acknowledged a heartbeat (the UDP path works both ways) and the routes send its
    /// frames straight to it: the sleeve carries pod frames to it now.
    pub established: bool,
    /// The verified path MTU, once the search ended.
    pub verified_mtu: Option<u16>,
    /// The MTU frames to this peer are sized for now (verified, or still assumed).
    pub mtu: u16,
}

#[derive(Clone, Debug)]
struct SleeveLink {
    nickname: String,
    link_id: u64,
    udp_addr: SocketAddr,
    heartbeats: Heartbeats,
    pmtu: PmtuProber,
    /// Reported as failed: not reported again while the link lingers.
    failed: bool,
    /// Reported as silent while fastdp carried the peer: reported once.
    silence_reported: bool,
}

/// The sleeve's control state.
#[derive(Debug)]
pub struct SleeveState {
    local: PeerName,
    /// The largest IP packet our own underlay lets one datagram carry: where PMTU searches start.
    max_mtu: u16,
    links: BTreeMap<PeerName, SleeveLink>,
    next_hops: HashMap<PeerName, PeerName>,
    /// Our children in each source's broadcast tree (searched lazily, shared with the table).
    broadcast: BroadcastTrees,
    fastdp: FastdpPeers,
    macs: Arc<MacSnapshot>,
    /// Something the forwarding table is built from changed since it was last built.
    dirty: bool,
    /// Bytes sealing adds to every datagram: 0 without a password, `SEAL_OVERHEAD` with one.
    seal_overhead: usize,
}

/// Bytes a datagram carrying one frame adds around the frame's IP packet: the datagram header,
/// the record header and the Ethernet header (7 + 14 + 14).
const PACKET_TO_PAYLOAD: usize = DATAGRAM_HEADER_LEN + RECORD_HEADER_LEN + ETHERNET_HEADER_LEN;

/// The datagram size (UDP payload) that carries one frame with an IP packet of `mtu` bytes.
pub fn payload_limit_for_mtu(mtu: u16) -> usize {
    (usize::from(mtu) + PACKET_TO_PAYLOAD).min(MAX_DATAGRAM_LEN)
}

impl SleeveState {
    /// `max_mtu`: what our underlay allows (`wire::sleeve::effective_mtu` of its MTU).
    pub fn new(local: PeerName, max_mtu: u16) -> Self {
        Self {
            local,
            max_mtu,
            links: BTreeMap::new(),
            next_hops: HashMap::new(),
            broadcast: BroadcastTrees::default(),
            fastdp: FastdpPeers::default(),
            macs: Arc::new(MacSnapshot::default()),
            dirty: true,
            seal_overhead: 0,
        }
    }

    /// The same state for a sleeve whose datagrams are sealed: each grows by `SEAL_OVERHEAD`
    /// on the wire, so a path's datagram limit is the plain one plus that. `max_mtu` must
    /// already be the sealed one (`seal::sealed_effective_mtu`).
    pub fn sealed(mut self) -> Self {
        self.seal_overhead = SEAL_OVERHEAD;
        self
    }

    /// The established links and routes changed (or may have): new links start heartbeating,
    /// a link with a new connection id starts afresh, gone links are dropped.
    pub fn set_links(&mut self, links: Vec<NeighbourLink>, routes: &Routes, now: Instant) {
        let wanted: BTreeSet<PeerName> = links.iter().map(|link| link.peer).collect();
        let before = self.links.len();
        self.links.retain(|peer, _| wanted.contains(peer));
        let mut changed = self.links.len() != before;
        for link in links {
            let fresh = |link: &NeighbourLink| SleeveLink {
                nickname: link.nickname.clone(),
                link_id: link.link_id,
                udp_addr: link.udp_addr,
                heartbeats: Heartbeats::new(link.link_id, now),
                pmtu: PmtuProber::new(self.max_mtu),
                failed: false,
                silence_reported: false,
            };
            match self.links.get_mut(&link.peer) {
                Some(known) if known.link_id == link.link_id => {
                    known.nickname = link.nickname;
                }
                _ => {
                    self.links.insert(link.peer, fresh(&link));
                    changed = true;
                }
            }
        }
        let next_hops: HashMap<PeerName, PeerName> =
            routes.unicast.iter().map(|(&d, &h)| (d, h)).collect();
        if next_hops != self.next_hops || routes.broadcast != self.broadcast {
            self.next_hops = next_hops;
            self.broadcast = routes.broadcast.clone();
            changed = true;
        }
        self.dirty |= changed;
    }

    /// The overlay switch's current fastdp peers.
    pub fn set_fastdp(&mut self, peers: FastdpPeers) {
        if peers != self.fastdp {
            self.fastdp = peers;
            self.dirty = true;
        }
    }

    pub fn set_macs(&mut self, macs: Arc<MacSnapshot>) {
        if macs.generation() != self.macs.generation() || macs.len() != self.macs.len() {
            self.macs = macs;
            self.dirty = true;
        }
    }

    /// A control record arrived from `from`, in a datagram sent by `sender`. Records from peers
    /// we hold no link with are ignored (never answered: no reflection to strangers), and so are
    /// heartbeats without the link's id: anyone can write a peer's name into a datagram, and one
    /// such heartbeat used to move the peer's sleeve address to its sender.
    pub fn on_control(
        &mut self,
        from: SocketAddr,
        sender: PeerName,
        control: Control,
        now: Instant,
    ) -> Vec<SleeveOutput> {
        let Some(link) = self.links.get_mut(&sender) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match control {
            Control::Heartbeat { connection_id } => {
                if connection_id != link.link_id {
                    return out;
                }
                link.heartbeats.on_heartbeat(now);
                if from != link.udp_addr {
                    // Behind NAT, or listening elsewhere than its mesh address says: answer and
                    // send where its heartbeats come from (Weave: "Peer UDP address changed").
                    out.push(SleeveOutput::AddressChanged {
                        peer: sender,
                        from: link.udp_addr,
                        to: from,
                    });
                    link.udp_addr = from;
                    self.dirty = true;
                }
                out.push(SleeveOutput::Send {
                    peer: sender,
                    to: from,
                    control: Control::HeartbeatAck { connection_id },
                });
            }
            Control::HeartbeatAck { connection_id } => {
                link.heartbeats.on_ack(connection_id, now);
            }
            Control::PmtuProbe { probe_id, mtu } => out.push(SleeveOutput::Send {
                peer: sender,
                to: from,
                control: Control::PmtuAck { probe_id, mtu },
            }),
            Control::PmtuAck { probe_id, mtu } => {
                if let ProbeOutcome::Verified(mtu) = link.pmtu.on_ack(probe_id, mtu) {
                    out.push(verified(sender, link, mtu));
                    self.dirty = true;
                }
            }
        }
        out
    }

    /// Our kernel refused to send `control` to `peer` because it is bigger than a local link.
    pub fn on_too_big(&mut self, peer: PeerName, control: Control) -> Vec<SleeveOutput> {
        let (Some(link), Control::PmtuProbe { mtu, .. }) = (self.links.get_mut(&peer), control)
        else {
            return Vec::new();
        };
        let outcome = link.pmtu.on_too_big(mtu);
        self.dirty = true;
        match outcome {
            ProbeOutcome::Verified(mtu) => vec![verified(peer, link, mtu)],
            _ => Vec::new(),
        }
    }

    /// Heartbeats and probes that are due, and links whose heartbeats stopped.
    pub fn on_tick(&mut self, now: Instant) -> Vec<SleeveOutput> {
        let mut out = Vec::new();
        let fastdp = &self.fastdp;
        for (&peer, link) in &mut self.links {
            if link.failed {
                continue;
            }
            if link.heartbeats.timed_out(now) {
                // A link fails only when no overlay carries it (as in Weave Net): while fastdp
                // works the mesh link stays, and sleeve keeps trying in case fastdp stops.
                if !fastdp.carried.contains(&peer) {
                    link.failed = true;
                    out.push(SleeveOutput::Failed {
                        peer,
                        reason: "timed out waiting for UDP heartbeat".to_string(),
                    });
                    continue;
                }
                if !link.silence_reported {
                    link.silence_reported = true;
                    out.push(SleeveOutput::Silent { peer });
                }
            } else {
                link.silence_reported = false;
            }
            if let Some(control) = link.heartbeats.poll(now) {
                out.push(SleeveOutput::Send {
                    peer,
                    to: link.udp_addr,
                    control,
                });
            }
            // Probing starts once the peer has answered a heartbeat: before that a lost probe
            // would say nothing about its size.
            if link.heartbeats.acknowledged()
                && let Some(control) = link.pmtu.poll(now)
            {
                out.push(SleeveOutput::Send {
                    peer,
                    to: link.udp_addr,
                    control,
                });
            }
        }
        out
    }

    /// The forwarding table, when something it is built from changed since the last call.
    pub fn take_table(&mut self) -> Option<Arc<ForwardingTable>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(Arc::new(self.table()))
    }

    fn table(&self) -> ForwardingTable {
        let neighbours = self
            .links
            .iter()
            .map(|(&peer, link)| {
                let neighbour = Neighbour {
                    udp_addr: link.udp_addr,
                    payload_limit: (payload_limit_for_mtu(link.pmtu.assumed())
                        + self.seal_overhead)
                        .min(MAX_DATAGRAM_LEN),
                    fastdp: self.fastdp.carried.contains(&peer),
                    draining: self.fastdp.draining.contains(&peer),
                };
                (peer, neighbour)
            })
            .collect();
        ForwardingTable {
            local: self.local,
            neighbours,
            next_hops: self.next_hops.clone(),
            broadcast: self.broadcast.clone(),
            macs: Arc::clone(&self.macs),
        }
    }

    pub fn status(&self) -> Vec<SleeveLinkStatus> {
        self.links
            .iter()
            .map(|(&peer, link)| SleeveLinkStatus {
                peer,
                udp_addr: link.udp_addr,
                established: link.heartbeats.acknowledged() && self.routes_through(peer),
                verified_mtu: link.pmtu.verified(),
                mtu: link.pmtu.assumed(),
            })
            .collect()
    }
}

impl SleeveState {
    /// Whether the table sends frames for `peer` straight to it, unicast and broadcast. The
    /// gossip's routes use a link only once both ends' records list it as established, which
    /// reaches us a moment after the link itself (and the peer's first heartbeat ack): until
    /// then the hot path drops a pod's first ARP broadcast for lack of children, so the link
    /// has not proven it carries pod frames yet.
    fn routes_through(&self, peer: PeerName) -> bool {
        self.next_hops.get(&peer) == Some(&peer)
            && self.broadcast.children(self.local).contains(&peer)
    }
}

fn verified(peer: PeerName, link: &SleeveLink, mtu: u16) -> SleeveOutput {
    SleeveOutput::MtuVerified {
        peer,
        nickname: link.nickname.clone(),
        addr: link.udp_addr,
        mtu,
    }
}

#[cfg(test)]
mod tests;
