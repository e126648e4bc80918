//! The `Sleeve` actor: the control side of the userspace overlay. It keeps one heartbeat and
//! path-MTU search per established mesh link, closes links whose UDP heartbeats stop, and
//! publishes the forwarding table the hot path reads (neighbours, routes, fastdp set, MACs),
//! rebuilt as soon as the gossip publishes new links or routes.
//! Frames never pass through it: the I/O threads read and write the TAP and the socket, and
//! hand it only control records. All decisions are in [`state::SleeveState`].

pub mod heartbeat;
pub mod pmtu;
pub mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, info, warn};

use crate::actors::connection::sleeve_keying::KeyRole;
use crate::actors::connection::{ClosingReason, SleeveKeyUpdate};
use crate::actors::gossip::Gossip;
use crate::actors::gossip::messages::{ClosePeerLink, GossipStatus};
use crate::actors::gossip::view::{GossipView, follow};
use crate::actors::overlay::{FastdpPeers, MacTablePublished};
use crate::actors::supervisor::SupervisedAddr;
use crate::dataplane::sleeve::{ForwardingTable, SleeveKeys};
use crate::topology::PeerName;
use crate::wire::sleeve::{Control, encode_control_datagram};
pub use state::{NeighbourLink, SleeveLinkStatus, SleeveOutput, SleeveState};

/// Period of the heartbeat/probe clock: below every interval it drives (probes wait 200 ms).
const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// What the actor needs from the hot path: somewhere to publish the table, and a way to send a
/// control datagram on the sleeve's socket.
pub trait SleeveIo: Send + Sync + 'static {
    fn publish(&self, table: Arc<ForwardingTable>);
    /// Sends one plain datagram to `peer` at `to`, sealed with its key when the mesh has a
    /// password; an `io::ErrorKind` of EMSGSIZE (raw OS error) means a local link is smaller
    /// than the datagram.
    fn send_control(&self, peer: PeerName, to: SocketAddr, datagram: &[u8]) -> io::Result<()>;
    /// The sleeve's keys, when the mesh has a password.
    fn keys(&self) -> Option<&SleeveKeys>;
}

/// A control record the hot path received.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct ControlReceived {
    pub from: SocketAddr,
    pub sender: PeerName,
    pub control: Control,
}

/// The sleeve's per-link state, for status and report.
#[derive(Message)]
#[rtype(result = "Vec<SleeveLinkStatus>")]
pub struct GetSleeveStatus;

pub struct Sleeve {
    local: PeerName,
    state: SleeveState,
    io: Arc<dyn SleeveIo>,
    gossip: SupervisedAddr<Gossip>,
    /// The links and routes, followed as the gossip publishes them.
    view: GossipView,
    /// The mesh port peers listen on when their record does not say otherwise.
    mesh_port: u16,
    datagram: Vec<u8>,
}

impl Sleeve {
    /// `max_mtu`: the largest IP packet our own underlay lets one datagram carry (sealed, when
    /// `io` has keys).
    pub fn new(
        local: PeerName,
        max_mtu: u16,
        mesh_port: u16,
        io: Arc<dyn SleeveIo>,
        gossip: SupervisedAddr<Gossip>,
        view: GossipView,
    ) -> Self {
        Self {
            local,
            state: match io.keys() {
                Some(_) => SleeveState::new(local, max_mtu).sealed(),
                None => SleeveState::new(local, max_mtu),
            },
            io,
            gossip,
            view,
            mesh_port,
            datagram: Vec::new(),
        }
    }

    /// A new view of the mesh: links and routes go into the table at once.
    fn on_view(&mut self, _: &mut Context<Self>, status: Arc<GossipStatus>) {
        let links = neighbour_links(&status, self.mesh_port);
        self.state.set_links(links, &status.routes, Instant::now());
        self.publish();
    }

    fn tick(&mut self) {
        let outputs = self.state.on_tick(Instant::now());
        self.carry_out(outputs);
        self.publish();
    }

    fn publish(&mut self) {
        if let Some(table) = self.state.take_table() {
            self.io.publish(table);
        }
    }

    fn carry_out(&mut self, outputs: Vec<SleeveOutput>) {
        for output in outputs {
            match output {
                SleeveOutput::Send { peer, to, control } => self.send(peer, to, control),
                SleeveOutput::MtuVerified {
                    peer,
                    nickname,
                    addr,
                    mtu,
                } => info!("sleeve ->[{addr}|{peer}({nickname})]: Effective MTU verified at {mtu}"),
                SleeveOutput::AddressChanged { peer, from, to } => {
                    info!("sleeve ->[{peer}]: Peer UDP address changed from {from} to {to}")
                }
                SleeveOutput::Silent { peer } => warn!(
                    "sleeve ->[{peer}]: timed out waiting for UDP heartbeat; fastdp carries the traffic, so the link stays"
                ),
                SleeveOutput::Failed { peer, reason } => {
                    warn!("sleeve ->[{peer}]: {reason}");
                    let close = ClosePeerLink {
                        peer,
                        reason: ClosingReason::UdpHeartbeatTimeout,
                    };
                    if self.gossip.addr().try_send(close).is_err() {
                        warn!("sleeve: cannot ask the gossip to close the link to {peer}");
                    }
                }
            }
        }
    }

    fn send(&mut self, peer: PeerName, to: SocketAddr, control: Control) {
        if let Err(err) = encode_control_datagram(self.local, control, &mut self.datagram) {
            return warn!("sleeve: cannot encode {control:?}: {err}");
        }
        match self.io.send_control(peer, to, &self.datagram) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                let outputs = self.state.on_too_big(peer, control);
                self.carry_out(outputs);
            }
            // UDP sends fail transiently (no route yet, buffer full): heartbeats retry.
            Err(err) => debug!("sleeve ->[{to}|{peer}]: send failed: {err}"),
        }
    }
}

/// The established links of a gossip status, with the UDP address each peer's sleeve listens
/// on: the IP the link runs to and the peer's advertised mesh port.
pub fn neighbour_links(status: &GossipStatus, default_port: u16) -> Vec<NeighbourLink> {
    status
        .links
        .iter()
        .filter(|link| link.established)
        .map(|link| {
            let port = status
                .peers
                .iter()
                .find(|record| record.name == link.remote)
                .map_or(default_port, |record| record.listen_addr.port());
            NeighbourLink {
                peer: link.remote,
                nickname: link.remote_nickname.clone(),
                link_id: link.conn_uid,
                udp_addr: SocketAddr::new(link.remote_addr.ip(), port),
            }
        })
        .collect()
}

impl Actor for Sleeve {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.publish();
        follow(self, ctx, self.view.clone(), Self::on_view);
        ctx.run_interval(TICK_INTERVAL, |act, _| act.tick());
    }
}

impl Handler<ControlReceived> for Sleeve {
    type Result = ();

    fn handle(&mut self, msg: ControlReceived, _: &mut Context<Self>) {
        let outputs = self
            .state
            .on_control(msg.from, msg.sender, msg.control, Instant::now());
        self.carry_out(outputs);
        self.publish();
    }
}

impl Handler<FastdpPeers> for Sleeve {
    type Result = ();

    fn handle(&mut self, msg: FastdpPeers, _: &mut Context<Self>) {
        self.state.set_fastdp(msg);
        self.publish();
    }
}

impl Handler<MacTablePublished> for Sleeve {
    type Result = ();

    fn handle(&mut self, msg: MacTablePublished, _: &mut Context<Self>) {
        self.state.set_macs(msg.snapshot);
        self.publish();
    }
}

/// Keys agreed on a link with a password: installed before the link acknowledges them.
impl Handler<SleeveKeyUpdate> for Sleeve {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: SleeveKeyUpdate, _: &mut Context<Self>) -> Self::Result {
        let Some(keys) = self.io.keys() else {
            // A sleeve without a password never seals: nothing to install.
            return Ok(());
        };
        match msg {
            SleeveKeyUpdate::Install {
                peer,
                link_id,
                role: KeyRole::Opening,
                direction,
                key,
            } => keys
                .install_opening(peer, link_id, direction, &key)
                .map_err(|err| err.to_string()),
            SleeveKeyUpdate::Install {
                peer,
                link_id,
                role: KeyRole::Sealing,
                direction,
                key,
            } => {
                keys.install_sealing(peer, link_id, direction, &key, Instant::now());
                info!("sleeve ->[{peer}]: sealing with key epoch {}", key.epoch);
                Ok(())
            }
            SleeveKeyUpdate::Forget { peer, link_id } => {
                keys.forget(peer, link_id);
                Ok(())
            }
        }
    }
}

impl Handler<GetSleeveStatus> for Sleeve {
    type Result = MessageResult<GetSleeveStatus>;

    fn handle(&mut self, _: GetSleeveStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.status())
    }
}
