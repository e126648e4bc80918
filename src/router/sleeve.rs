//! Start-up of the sleeve: the TAP on the bridge, the UDP socket on the mesh port, the I/O
//! threads of the hot path ([`SleeveEngine`]) and the `Sleeve` actor that drives heartbeats and
//! path-MTU probes and publishes the forwarding table. A pump thread carries the engine's
//! events to the actors (control records to `Sleeve`, learned MACs to the `MacLearner`) and its
//! counters to the metrics; frames themselves never leave the engine's threads.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::dataplane::Dataplane;
use crate::actors::gossip::{Gossip, GossipView};
use crate::actors::overlay::{MacsSeen, Subscriber};
use crate::actors::sleeve::{ControlReceived, Sleeve, SleeveIo};
use crate::actors::supervisor::SupervisedAddr;
use crate::dataplane::sleeve::{
    EngineQueue, ForwardingTable, QueueSockets, SharedTable, SleeveEngine, SleeveEvent, SleeveKeys,
    SleeveSocket, SleeveStats, ensure_sleeve_tap,
};
use crate::dataplane::{DataplaneError, LinkStats, NetlinkLinkOps};
use crate::metrics::{self, ActorKind, OverlayPath};
use crate::topology::PeerName;
use crate::wire::sleeve::effective_mtu;
use crate::wire::sleeve::seal::{SEAL_HEADROOM, SEAL_TAG_LEN, sealed_effective_mtu};

/// How often the pump copies the engine's counters into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// First wait before restarting a failed engine; doubles per failure up to the ceiling (the
/// supervisor's values for actors).
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// An engine that ran this long resets the back-off: its end was not a crash loop.
const STABLE_LIFETIME: Duration = Duration::from_secs(30);
/// Events queued between the engine and the pump. The engine sends at most one MAC batch per
/// burst and one event per control record, and drops (counting) rather than wait when full.
const EVENT_QUEUE: usize = 1024;

/// The running sleeve: dropping it stops the I/O threads.
pub struct SleeveRuntime {
    pub actor: SupervisedAddr<Sleeve>,
    /// Dropped with the runtime: tells the pump to stop the engine and end.
    _stop: oneshot::Sender<()>,
}

/// Publishes into the engine's shared table and sends on a clone of its socket, sealing with
/// the engine's keys when the mesh has a password.
struct EngineIo {
    table: SharedTable,
    socket: SleeveSocket,
    keys: Option<Arc<SleeveKeys>>,
}

impl SleeveIo for EngineIo {
    fn publish(&self, table: Arc<ForwardingTable>) {
        self.table.store(table);
    }

    fn send_control(&self, peer: PeerName, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let Some(keys) = &self.keys else {
            return self.socket.send_control(to, datagram);
        };
        let mut sealed = Vec::with_capacity(SEAL_HEADROOM + datagram.len() + SEAL_TAG_LEN);
        sealed.resize(SEAL_HEADROOM, 0);
        sealed.extend_from_slice(datagram);
        sealed.resize(sealed.len() + SEAL_TAG_LEN, 0);
        keys.seal(peer, &mut sealed).map_err(io::Error::other)?;
        self.socket.send_control(to, &sealed)
    }

    fn keys(&self) -> Option<&SleeveKeys> {
        self.keys.as_deref()
    }
}

/// What it takes to (re)start the engine: the devices, the sockets and the shared table. The
/// sockets stay bound for the router's life (the actor sends on a clone of queue 0's mesh
/// socket), so a restarted engine gets clones of them rather than new binds.
struct EngineParts {
    ops: NetlinkLinkOps,
    bridge: String,
    tap: String,
    sockets: Vec<QueueSockets>,
    table: SharedTable,
    events: mpsc::Sender<SleeveEvent>,
    /// With a mesh password; kept across engine restarts, so no link must agree keys again.
    keys: Option<Arc<SleeveKeys>>,
}

impl EngineParts {
    fn duplicate_error(&self) -> impl Fn(io::Error) -> DataplaneError + '_ {
        |source| DataplaneError::Io {
            op: "duplicate the sleeve socket of",
            name: self.tap.clone(),
            source,
        }
    }

    /// A clone of queue 0's mesh socket (the mesh port), for the actor's control datagrams.
    fn control_socket(&self) -> Result<SleeveSocket, DataplaneError> {
        self.sockets[0]
            .mesh
            .try_clone()
            .map_err(self.duplicate_error())
    }

    async fn start(&self) -> Result<SleeveEngine, DataplaneError> {
        let (taps, _) =
            ensure_sleeve_tap(&self.ops, &self.bridge, &self.tap, self.sockets.len()).await?;
        let queues = taps
            .into_iter()
            .zip(&self.sockets)
            .map(|(tap, sockets)| {
                let sockets = sockets.try_clone().map_err(self.duplicate_error())?;
                Ok(EngineQueue { tap, sockets })
            })
            .collect::<Result<Vec<_>, DataplaneError>>()?;
        SleeveEngine::start(
            queues,
            Arc::clone(&self.table),
            self.events.clone(),
            self.keys.clone(),
        )
    }
}

/// Opens the TAP's `queues` queues and their sockets, starts the engine, the actor and the pump.
/// `underlay_mtu` bounds the path-MTU search. With `sealed` (a mesh password) every datagram is
/// sealed with keys the links agree. Must run inside the actix system.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    name: PeerName,
    mesh_port: u16,
    queues: usize,
    underlay_mtu: u32,
    bridge: &str,
    dataplane: &Dataplane,
    gossip: SupervisedAddr<Gossip>,
    view: GossipView,
    sealed: bool,
) -> Result<SleeveRuntime, DataplaneError> {
    let keys = sealed.then(|| Arc::new(SleeveKeys::new()));
    let bind = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, mesh_port);
    let sockets = QueueSockets::bind(bind, queues)?;
    let table: SharedTable = Arc::new(arc_swap::ArcSwap::from_pointee(ForwardingTable::alone(
        name,
    )));
    let (events, received) = mpsc::channel(EVENT_QUEUE);
    let parts = EngineParts {
        ops: NetlinkLinkOps::new()?,
        bridge: bridge.to_string(),
        tap: dataplane.tap.clone(),
        sockets,
        table: Arc::clone(&table),
        events,
        keys: keys.clone(),
    };
    let engine = parts.start().await?;
    let io: Arc<dyn SleeveIo> = Arc::new(EngineIo {
        table,
        socket: parts.control_socket()?,
        keys,
    });
    let max_mtu = if sealed {
        sealed_effective_mtu(underlay_mtu)
    } else {
        effective_mtu(underlay_mtu)
    };
    let max_mtu = u16::try_from(max_mtu).unwrap_or(u16::MAX);
    let actor = SupervisedAddr::start(ActorKind::Sleeve, move || {
        Sleeve::new(
            name,
            max_mtu,
            mesh_port,
            io.clone(),
            gossip.clone(),
            view.clone(),
        )
        .start()
    });
    dataplane.fastdp_peers.add(Arc::new(actor.clone()));
    dataplane.mac_table.add(Arc::new(actor.clone()));
    let (stop, stopped) = oneshot::channel();
    let pump = Pump {
        sleeve: actor.clone(),
        macs_seen: dataplane.macs_seen.clone(),
        parts,
        engine: Some(engine),
        restart_delay: FIRST_RESTART_DELAY,
        started_at: Instant::now(),
    };
    actix_rt::spawn(pump.run(received, stopped));
    Ok(SleeveRuntime { actor, _stop: stop })
}

/// The task between the engine and the actors: control records to the `Sleeve` actor, MACs to
/// the `MacLearner`, counters to the metrics, and a new engine when one of its threads died.
struct Pump {
    sleeve: SupervisedAddr<Sleeve>,
    macs_seen: Subscriber<MacsSeen>,
    parts: EngineParts,
    engine: Option<SleeveEngine>,
    restart_delay: Duration,
    /// When the current engine started: one that ran for a while resets the back-off.
    started_at: Instant,
}

impl Pump {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<SleeveEvent>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut export = tokio::time::interval(STATS_INTERVAL);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                event = events.recv() => match event {
                    Some(SleeveEvent::Failed { thread, error }) => {
                        error!("sleeve: the {thread} thread stopped: {error}; restarting the sleeve");
                        self.restart().await;
                    }
                    Some(event) => self.deliver(event),
                    // Unreachable while we hold a sender in `parts`, but an end is an end.
                    None => break,
                },
                _ = export.tick() => {
                    if let Some(engine) = &self.engine {
                        export_stats(&engine.stats());
                    }
                }
            }
        }
        // Joins the I/O threads (they notice within one poll timeout).
        drop(self.engine.take());
    }

    fn deliver(&self, event: SleeveEvent) {
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
                let _ = self.sleeve.addr().try_send(received);
            }
            SleeveEvent::MacsSeen(macs) => {
                let _ = self.macs_seen.recipient().try_send(MacsSeen(macs));
            }
            SleeveEvent::Failed { .. } => {}
        }
    }

    /// Stops what is left of the engine and starts a new one on fresh devices, backing off while
    /// that keeps failing (someone deleting the TAP in a loop must not make us spin).
    async fn restart(&mut self) {
        drop(self.engine.take());
        if self.started_at.elapsed() >= STABLE_LIFETIME {
            self.restart_delay = FIRST_RESTART_DELAY;
        }
        loop {
            tokio::time::sleep(self.restart_delay).await;
            self.restart_delay = (self.restart_delay * 2).min(MAX_RESTART_DELAY);
            match self.parts.start().await {
                Ok(engine) => {
                    metrics::actor_restarted(ActorKind::Sleeve);
                    warn!("sleeve: restarted on {}", self.parts.tap);
                    self.engine = Some(engine);
                    self.started_at = Instant::now();
                    return;
                }
                Err(err) => error!("sleeve: cannot restart: {err}"),
            }
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
    // Every cause, also at 0: a dashboard draws a 0 line instead of "No data".
    metrics::record_sleeve_drops(&now.drops);
}

/// Logs and carries on: the sleeve is one overlay of two; the mesh and fastdp work without it.
pub fn report_failure(err: &DataplaneError) {
    warn!("sleeve is not running: {err}; peers without a working fastdp path are unreachable");
}
