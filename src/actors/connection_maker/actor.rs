//! The `ConnectionMaker` actor: a thin shell over [`ConnectionMakerState`] that dials the targets
//! it says are due, starts a `Connection` for each socket, and feeds back what the links report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::mesh_graph::MeshGraph;
use super::state::{ConnectionMakerState, RebalanceAction, TargetError};
use crate::actors::connection::{
    ClosingReason, Connection, Direction, LinkContext, LinkEvent, LinkSlot,
};

use crate::actors::gossip::GossipView;
use crate::actors::gossip::messages::{ClosePeerLink, GossipStatus, PeersChanged};
use crate::actors::listener::ConnectionLimiter;
use crate::actors::supervisor::RecipientSource;
use crate::snapshot::ConnectionStatus;
use crate::store::Store;

/// How often due targets are looked at (besides right after every change).
const TICK_INTERVAL: Duration = Duration::from_millis(250);
const MAILBOX_CAPACITY: usize = 1024;

/// Adds direct targets (`weave connect`).
#[derive(Message)]
#[rtype(result = "Result<(), TargetError>")]
pub struct Connect {
    pub peers: Vec<String>,
    pub replace: bool,
}

/// Removes direct targets (`weave forget`).
#[derive(Message)]
#[rtype(result = "Result<(), TargetError>")]
pub struct Forget {
    pub peers: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct TargetsView {
    pub direct: Vec<String>,
    pub pending: Vec<ConnectionStatus>,
}

#[derive(Message)]
#[rtype(result = "TargetsView")]
pub struct GetTargets;

/// Everything the connection maker needs, shared by its incarnations.
pub struct MakerConfig {
    pub links: Arc<LinkContext>,
    pub limiter: ConnectionLimiter,
    /// Source address of outgoing connections (`--host`), so that routers on several loopback
    /// addresses of one machine look like separate hosts.
    pub bind_ip: Option<std::net::IpAddr>,
    pub default_port: u16,
    pub discovery: bool,
    pub store: Arc<Store>,
    /// What rebalancing needs (None: the mesh is left as discovery makes it).
    pub rebalancing: Option<Rebalancing>,
}

/// The view of the mesh rebalancing decides from, and where it asks for a link to be closed.
pub struct Rebalancing {
    pub view: GossipView,
    pub gossip: Arc<dyn RecipientSource<ClosePeerLink>>,
}

pub struct ConnectionMaker {
    state: ConnectionMakerState,
    config: Arc<MakerConfig>,
    /// A view of the mesh not yet turned into the state's graph: views come with every gossip
    /// change, the graph is rebuilt at most once a tick.
    pending_view: Option<Arc<GossipStatus>>,
}

impl ConnectionMaker {
    /// A new incarnation, starting from the persisted direct peers.
    pub fn new(config: Arc<MakerConfig>) -> Self {
        let mut state = ConnectionMakerState::new(
            config.links.identity.name,
            config.default_port,
            config.discovery,
            rand::random(),
        );
        state.set_conn_limit(config.limiter.limit());
        match config.store.direct_peers() {
            Ok(peers) => {
                if let Err(err) = state.add_direct(&peers, true, Instant::now()) {
                    warn!("ignoring persisted peers: {err}");
                }
            }
            Err(err) => warn!("cannot read persisted peers: {err}"),
        }
        Self {
            state,
            config,
            pending_view: None,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.dial_due(ctx);
        self.rebalance(ctx);
    }

    fn rebalance(&mut self, ctx: &mut Context<Self>) {
        let Some(rebalancing) = &self.config.rebalancing else {
            return;
        };
        if let Some(view) = self.pending_view.take() {
            self.state
                .set_mesh(Arc::new(MeshGraph::from_records(&view.peers)));
        }
        let limiter = &self.config.limiter;
        let decision = self.state.rebalance(Instant::now(), limiter.available());
        match decision {
            None => {}
            Some(RebalanceAction::Drop(peer)) => {
                info!("closing the link to {peer} to make room for a far peer (rebalancing)");
                let close = ClosePeerLink {
                    peer,
                    reason: ClosingReason::Rebalanced,
                };
                if rebalancing.gossip.recipient().try_send(close).is_err() {
                    debug!("gossip is busy: the rebalancing drop of {peer} waits for later");
                }
            }
            Some(RebalanceAction::Dial(target)) => {
                info!("->[{target}] dialling a far peer (rebalancing)");
                self.start_dial(target, ctx);
            }
        }
    }

    fn persist(&self) {
        if let Err(err) = self
            .config
            .store
            .set_direct_peers(&self.state.direct_targets())
        {
            warn!("cannot persist the direct peers: {err}");
        }
    }

    fn dial_due(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let limiter = &self.config.limiter;
        let due = self
            .state
            .due_within(now, limiter.available(), limiter.available_to_discovery());
        for target in due {
            self.start_dial(target, ctx);
        }
    }

    /// Dials `target` (marked as attempting by the state) if a permit is left.
    fn start_dial(&mut self, target: String, ctx: &mut Context<Self>) {
        let Some(permit) = self.config.limiter.try_acquire() else {
            self.state.attempt_failed(
                &target,
                None,
                format!("connection limit reached ({})", self.config.limiter.limit()),
                true,
                Instant::now(),
            );
            return;
        };
        let config = self.config.clone();
        let dial_target = target.clone();
        let dial = async move {
            dial(
                &dial_target,
                config.bind_ip,
                config.links.timers.handshake_timeout,
            )
            .await
        };
        ctx.spawn(
            dial.into_actor(self)
                .map(move |result, act, _| match result {
                    Ok((stream, remote_addr)) => {
                        Connection::new(
                            stream,
                            remote_addr,
                            Direction::Outbound { target },
                            LinkSlot::Held(permit),
                            act.config.links.clone(),
                        )
                        .start();
                    }
                    Err(error) => {
                        drop(permit);
                        info!("->[{target}] connection failed: {error}");
                        act.state
                            .attempt_failed(&target, None, error, true, Instant::now());
                    }
                }),
        );
    }
}

/// Resolves and connects to `target`, from `bind_ip` when given.
async fn dial(
    target: &str,
    bind_ip: Option<std::net::IpAddr>,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), String> {
    let connect = async {
        let addr = tokio::net::lookup_host(target)
            .await
            .map_err(|err| format!("cannot resolve {target}: {err}"))?
            .next()
            .ok_or_else(|| format!("{target} resolves to no address"))?;
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|err| err.to_string())?;
        if let Some(ip) = bind_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|err| format!("cannot bind to {ip}: {err}"))?;
        }
        let stream = socket.connect(addr).await.map_err(|err| err.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok((stream, addr))
    };
    tokio::time::timeout(timeout, connect)
        .await
        .unwrap_or_else(|_| Err("timed out connecting".to_string()))
}

impl Actor for ConnectionMaker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if let Some(rebalancing) = &self.config.rebalancing {
            crate::actors::gossip::view::follow(
                self,
                ctx,
                rebalancing.view.clone(),
                |act, _, view| {
                    act.pending_view = Some(view);
                },
            );
        }
        self.tick(ctx);
        ctx.run_interval(TICK_INTERVAL, |act, ctx| act.tick(ctx));
    }
}

impl Handler<LinkEvent> for ConnectionMaker {
    type Result = ();

    fn handle(&mut self, event: LinkEvent, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match event {
            LinkEvent::Up { target, peer } => self.state.attempt_succeeded(&target, peer, now),
            LinkEvent::Ended {
                target,
                peer,
                reason,
                alternatives,
                lived,
            } => {
                if !alternatives.is_empty() {
                    debug!("->[{target}] suggested {} other peers", alternatives.len());
                    self.state.add_hints(alternatives, now);
                }
                if reason == ClosingReason::Rebalanced {
                    self.state.link_dropped(&target, reason.to_string(), now);
                } else if lived.is_zero() {
                    self.state.attempt_failed(
                        &target,
                        peer,
                        reason.to_string(),
                        reason.retry(),
                        now,
                    );
                } else {
                    self.state
                        .link_closed(&target, reason.to_string(), reason.retry(), lived, now);
                }
                if reason == ClosingReason::Duplicate {
                    // We are linked to that peer already; nothing to dial now.
                    return;
                }
            }
        }
        self.dial_due(ctx);
    }
}

impl Handler<PeersChanged> for ConnectionMaker {
    type Result = ();

    fn handle(&mut self, msg: PeersChanged, ctx: &mut Context<Self>) {
        self.state.learn_peer_addresses(&msg.addresses);
        self.state.set_connected_peers(msg.connected);
        self.state.set_discovered(msg.discovered, Instant::now());
        self.dial_due(ctx);
    }
}

impl Handler<Connect> for ConnectionMaker {
    type Result = Result<(), TargetError>;

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) -> Self::Result {
        self.state
            .add_direct(&msg.peers, msg.replace, Instant::now())?;
        self.persist();
        self.dial_due(ctx);
        Ok(())
    }
}

impl Handler<Forget> for ConnectionMaker {
    type Result = Result<(), TargetError>;

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) -> Self::Result {
        self.state.forget(&msg.peers)?;
        self.persist();
        Ok(())
    }
}

impl Handler<GetTargets> for ConnectionMaker {
    type Result = MessageResult<GetTargets>;

    fn handle(&mut self, _: GetTargets, _: &mut Context<Self>) -> Self::Result {
        MessageResult(TargetsView {
            direct: self.state.direct_targets(),
            pending: self.state.target_statuses(Instant::now()),
        })
    }
}
