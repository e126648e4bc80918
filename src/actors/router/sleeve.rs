//! Start-up of the sleeve: the TAP on the bridge, the UDP socket on the mesh port, the I/O
//! threads of the hot path ([`SleeveEngine`]) and the `Sleeve` actor that drives heartbeats and
//! path-MTU probes and publishes the forwarding table. A pump thread carries the engine's
//! events to the actors (control records to `Sleeve`, learned MACs to the `MacLearner`) and its
//! counters to the metrics; frames themselves never leave the engine's threads.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::dataplane::Dataplane;
use crate::actors::gossip::Gossip;
use crate::actors::overlay::{MacsSeen, Subscriber};
use crate::actors::sleeve::{ControlReceived, Sleeve, SleeveIo};
use crate::actors::supervisor::Supervised;
use crate::api::metrics::{self, ActorKind, OverlayPath};
use crate::dataplane::sleeve::{
    ForwardingTable, SharedTable, SleeveEngine, SleeveEvent, SleeveSocket, SleeveStats,
    ensure_sleeve_tap,
};
use crate::dataplane::{DataplaneError, LinkStats, NetlinkLinkOps};
use crate::topology::PeerName;
use crate::wire::sleeve::effective_mtu;

/// How often the pump copies the engine's counters into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Events queued between the engine and the pump. The engine sends at most one MAC batch per
/// burst and one event per control record, and drops (counting) rather than wait when full.
const EVENT_QUEUE: usize = 1024;

/// The running sleeve: dropping it stops the I/O threads.
pub struct SleeveRuntime {
    pub actor: Supervised<Sleeve>,
    _engine: SleeveEngine,
}

/// Publishes into the engine's shared table and sends on a clone of its socket.
struct EngineIo {
    table: SharedTable,
    socket: SleeveSocket,
}

impl SleeveIo for EngineIo {
    fn publish(&self, table: Arc<ForwardingTable>) {
        self.table.store(table);
    }

    fn send_control(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_control(to, datagram)
    }
}

/// Opens the TAP and the socket, starts the engine, the actor and the pump. `underlay_mtu`
/// bounds the path-MTU search. Must run inside the actix system.
pub async fn start(
    name: PeerName,
    mesh_port: u16,
    underlay_mtu: u32,
    bridge: &str,
    dataplane: &Dataplane,
    gossip: Supervised<Gossip>,
) -> Result<SleeveRuntime, DataplaneError> {
    let ops = NetlinkLinkOps::new()?;
    let (tap, _) = ensure_sleeve_tap(&ops, bridge, &dataplane.tap).await?;
    let bind = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, mesh_port);
    let socket = SleeveSocket::bind(bind)?;
    let control_socket = socket.try_clone().map_err(|source| DataplaneError::Io {
        op: "duplicate the sleeve socket of",
        name: dataplane.tap.clone(),
        source,
    })?;
    let table: SharedTable = Arc::new(arc_swap::ArcSwap::from_pointee(ForwardingTable::alone(
        name,
    )));
    let (events, received) = mpsc::channel(EVENT_QUEUE);
    let engine = SleeveEngine::start(tap, socket, Arc::clone(&table), events)?;
    let stats = engine.stats();
    let io: Arc<dyn SleeveIo> = Arc::new(EngineIo {
        table,
        socket: control_socket,
    });
    let max_mtu = u16::try_from(effective_mtu(underlay_mtu)).unwrap_or(u16::MAX);
    let actor = Supervised::start(ActorKind::Sleeve, move || {
        Sleeve::new(name, max_mtu, mesh_port, io.clone(), gossip.clone()).start()
    });
    dataplane.fastdp_peers.add(Arc::new(actor.clone()));
    dataplane.mac_table.add(Arc::new(actor.clone()));
    spawn_pump(received, actor.clone(), dataplane.macs_seen.clone(), stats);
    Ok(SleeveRuntime {
        actor,
        _engine: engine,
    })
}

/// The task between the engine and the actors. It ends when the engine is gone.
fn spawn_pump(
    mut events: mpsc::Receiver<SleeveEvent>,
    sleeve: Supervised<Sleeve>,
    macs_seen: Subscriber<MacsSeen>,
    stats: Arc<SleeveStats>,
) {
    actix_rt::spawn(async move {
        let mut export = tokio::time::interval(STATS_INTERVAL);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => deliver(event, &sleeve, &macs_seen),
                    None => return,
                },
                _ = export.tick() => export_stats(&stats),
            }
        }
    });
}

fn deliver(event: SleeveEvent, sleeve: &Supervised<Sleeve>, macs_seen: &Subscriber<MacsSeen>) {
    match event {
        SleeveEvent::Control {
            from,
            sender,
            control,
            ..
        } => {
            let received = ControlReceived {
                from,
                sender,
                control,
            };
            // A full mailbox drops one heartbeat or probe: both are sent again.
            let _ = sleeve.addr().try_send(received);
        }
        SleeveEvent::MacsSeen(macs) => {
            let _ = macs_seen.recipient().try_send(MacsSeen(macs));
        }
        SleeveEvent::Failed { thread, error } => {
            error!("sleeve: the {thread} thread stopped: {error}");
        }
    }
}

/// Sleeve traffic as frames between the bridge and the overlay: what it captured and sent (tx)
/// and what it delivered (rx), like the VXLAN device's own counters for fastdp.
fn export_stats(stats: &SleeveStats) {
    let now = stats.snapshot();
    let traffic = LinkStats {
        rx_packets: now.tap_frames_out,
        rx_bytes: now.tap_bytes_out,
        tx_packets: now.tap_frames_in,
        tx_bytes: now.tap_bytes_in,
    };
    metrics::record_overlay_traffic(OverlayPath::Sleeve, &traffic);
    if now.drops.iter().any(|(_, count)| *count > 0) {
        metrics::record_sleeve_drops(&now.drops);
    }
}

/// Logs and carries on: the sleeve is one overlay of two; the mesh and fastdp work without it.
pub fn report_failure(err: &DataplaneError) {
    warn!("sleeve is not running: {err}; peers without a working fastdp path are unreachable");
}
