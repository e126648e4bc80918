//! The link actor. Its lifetime is the link's: handshake, registration, heartbeats and framed
//! traffic, then a report of why it ended, sent from `Drop` so that even a panic is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{info, warn};

use super::handshake::{HandshakeFailure, Handshaken, Side, handshake};
use super::{ClosingReason, GossipPort, LinkContext, LinkEvent, LinkId, LinkSlot, Outgoing};
use crate::actors::gossip::messages::{LinkClosed, LinkEstablished, Received, RegisterLink};
use crate::actors::gossip::state::NewLink;
use crate::api::metrics;
use crate::topology::{PeerName, check_nickname};
use crate::wire::{
    Features, FrameCodec, LinkNonce, MAX_FRAME_BYTES, ProtocolMsg, Refusal, RefusalReason,
    WireError, decode_message, encode_message,
};

/// Frames queued for the socket writer before further sends are dropped (and counted).
const OUTBOX_FRAMES: usize = 512;
/// How often the link checks its read timeout and whether gossip was re-created.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const MAILBOX_CAPACITY: usize = 256;

/// Which side dialled.
#[derive(Clone, Debug)]
pub enum Direction {
    Outbound { target: String },
    Inbound,
}

pub struct Connection {
    id: LinkId,
    direction: Direction,
    remote_addr: SocketAddr,
    stream: Option<TcpStream>,
    ctx: Arc<LinkContext>,
    /// Its place under the connection limit; given back when the actor is dropped. Lent to the
    /// handshake while it runs, since an acceptor takes its permit in the middle of it.
    slot: Option<LinkSlot>,
    gossip: Option<GossipPort>,
    writer: Option<mpsc::Sender<Bytes>>,
    last_received: Instant,
    last_heartbeat_sent: Instant,
    established: bool,
    report: EndReport,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        remote_addr: SocketAddr,
        direction: Direction,
        slot: LinkSlot,
        ctx: Arc<LinkContext>,
    ) -> Self {
        let id = LinkId::next();
        let target = match &direction {
            Direction::Outbound { target } => Some(target.clone()),
            Direction::Inbound => None,
        };
        let now = Instant::now();
        Self {
            id,
            report: EndReport {
                id,
                remote_addr,
                outbound_target: target,
                ctx: ctx.clone(),
                gossip_closed: None,
                peer: None,
                reason: None,
                alternatives: Vec::new(),
                up_since: None,
            },
            direction,
            remote_addr,
            stream: Some(stream),
            ctx,
            slot: Some(slot),
            gossip: None,
            writer: None,
            last_received: now,
            last_heartbeat_sent: now,
            established: false,
        }
    }

    fn arrow(&self) -> &'static str {
        match self.direction {
            Direction::Outbound { .. } => "->",
            Direction::Inbound => "<-",
        }
    }

    fn close(&mut self, reason: ClosingReason, ctx: &mut Context<Self>) {
        self.report.reason.get_or_insert(reason);
        ctx.stop();
    }

    fn our_features(&self, nonce: &LinkNonce) -> Features {
        let identity = &self.ctx.identity;
        Features {
            name: identity.name,
            nickname: identity.nickname.clone(),
            uid: identity.uid,
            conn_commit: nonce.commitment(),
            overlays: identity.overlays.clone(),
            listen_port: identity.listen_port,
        }
    }

    /// Checks who answered: never ourselves, never someone using our name, and a nickname that
    /// is safe to log.
    fn vet(&self, theirs: &Features) -> Result<(), ClosingReason> {
        let identity = &self.ctx.identity;
        check_nickname(&theirs.nickname).map_err(|err| ClosingReason::Protocol(err.to_string()))?;
        if theirs.name != identity.name {
            return Ok(());
        }
        if theirs.uid == identity.uid {
            Err(ClosingReason::ConnectToSelf)
        } else {
            Err(ClosingReason::NameCollision)
        }
    }

    fn start_io(&mut self, stream: TcpStream, ctx: &mut Context<Self>) {
        let (read_half, write_half) = stream.into_split();
        ctx.add_stream(FramedRead::new(read_half, FrameCodec));
        let (tx, rx) = mpsc::channel(OUTBOX_FRAMES);
        actix_rt::spawn(write_frames(write_half, rx));
        self.writer = Some(tx);
    }

    fn send(&mut self, msg: &ProtocolMsg, ctx: &mut Context<Self>) {
        let Some(writer) = &self.writer else {
            return;
        };
        let frame = match encode_message("message", msg) {
            Ok(bytes) => Bytes::from(bytes),
            Err(err) => {
                warn!("->[{}] cannot encode a message: {err}", self.remote_addr);
                return;
            }
        };
        // Queued, it would fail the writer and with it the link, for a message's fault.
        if frame.len() > MAX_FRAME_BYTES {
            warn!(
                "->[{}] dropping a message of {} bytes: over the {MAX_FRAME_BYTES}-byte frame limit",
                self.remote_addr,
                frame.len()
            );
            metrics::message_dropped(metrics::DropReason::FrameTooLarge);
            return;
        }
        match writer.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::message_dropped(metrics::DropReason::SocketBacklog);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.close(ClosingReason::Io("write to the socket failed".into()), ctx);
            }
        }
    }

    fn registered(&mut self, theirs: &Features, ctx: &mut Context<Self>) {
        let peer = theirs.name;
        info!(
            "{}[{}|{}({})]: connection added",
            self.arrow(),
            self.remote_addr,
            peer,
            theirs.nickname
        );
        self.report.up_since = Some(Instant::now());
        if let Direction::Outbound { target } = &self.direction {
            let maker = self.ctx.maker.recipient();
            let up = LinkEvent::Up {
                target: target.clone(),
                peer,
            };
            actix_rt::spawn(async move {
                let _ = maker.send(up).await;
            });
        }
        // The first heartbeat goes out at once: it is what establishes the link at the far end.
        self.send(&ProtocolMsg::Heartbeat, ctx);
        self.last_heartbeat_sent = Instant::now();
        self.last_received = Instant::now();
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| act.check(ctx));
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if now.duration_since(self.last_received) > self.ctx.timers.read_timeout {
            return self.close(ClosingReason::HeartbeatTimeout, ctx);
        }
        let registered_with = self.gossip.as_ref().map(|port| port.generation);
        if registered_with
            .is_some_and(|generation| generation != self.ctx.gossip.current().generation)
        {
            return self.close(ClosingReason::SubsystemRestarted, ctx);
        }
        if now.duration_since(self.last_heartbeat_sent) >= self.ctx.timers.heartbeat_interval {
            self.last_heartbeat_sent = now;
            self.send(&ProtocolMsg::Heartbeat, ctx);
        }
    }

    fn on_message(&mut self, msg: ProtocolMsg, ctx: &mut Context<Self>) {
        let Some(port) = self.gossip.clone() else {
            return;
        };
        if matches!(msg, ProtocolMsg::Heartbeat) {
            if !self.established {
                self.established = true;
                info!(
                    "{}[{}]: connection fully established",
                    self.arrow(),
                    self.remote_addr
                );
                ctx.wait(
                    port.established
                        .send(LinkEstablished(self.id))
                        .into_actor(self)
                        .map(|res, act, ctx| {
                            if !matches!(res, Ok(Ok(()))) {
                                act.close(ClosingReason::SubsystemRestarted, ctx);
                            }
                        }),
                );
            }
            return;
        }
        // Waiting here is the back-pressure: the link reads no more until gossip took this.
        ctx.wait(
            port.received
                .send(Received { link: self.id, msg })
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => act.close(ClosingReason::Protocol(err.to_string()), ctx),
                    Err(_) => act.close(ClosingReason::SubsystemRestarted, ctx),
                }),
        );
    }
}

async fn write_frames(write_half: OwnedWriteHalf, mut frames: mpsc::Receiver<Bytes>) {
    let mut sink = FramedWrite::new(write_half, FrameCodec);
    while let Some(frame) = frames.recv().await {
        if sink.send(frame).await.is_err() {
            break;
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let Some(mut stream) = self.stream.take() else {
            return self.close(ClosingReason::Io("no socket".into()), ctx);
        };
        if let Direction::Outbound { .. } = self.direction {
            info!("->[{}] attempting connection", self.remote_addr);
        }
        let nonce = LinkNonce::random();
        let ours = self.our_features(&nonce);
        let timeout = self.ctx.timers.handshake_timeout;
        let outbound = matches!(self.direction, Direction::Outbound { .. });
        let mut slot = self.slot.take();
        let links = self.ctx.clone();
        let handshake = async move {
            let result = if outbound {
                let side = Side::<fn() -> _>::Dialler;
                handshake(&mut stream, &ours, &nonce, side, timeout).await
            } else {
                let admit = || admit(&mut slot, &links);
                handshake(
                    &mut stream,
                    &ours,
                    &nonce,
                    Side::Acceptor { admit },
                    timeout,
                )
                .await
            };
            (stream, slot, result)
        };
        ctx.wait(
            handshake
                .into_actor(self)
                .map(|(stream, slot, result), act, ctx| {
                    act.slot = slot;
                    let vetted = result.and_then(|handshaken| {
                        act.vet(&handshaken.theirs)
                            .map_err(HandshakeFailure::from)?;
                        Ok(handshaken)
                    });
                    match vetted {
                        Ok(handshaken) => act.register(stream, handshaken, ctx),
                        Err(failure) => {
                            act.report.alternatives = failure.alternatives;
                            act.close(failure.reason, ctx);
                        }
                    }
                }),
        );
    }
}

/// An inbound link's admission once the dialler's `Hello` is in: a connection-limit permit, or a
/// refusal naming other peers to try.
fn admit(slot: &mut Option<LinkSlot>, links: &LinkContext) -> Result<(), (ClosingReason, Refusal)> {
    let Some(slot) = slot else {
        return Ok(());
    };
    slot.admit().map_err(|reason| {
        let refusal = Refusal {
            reason: RefusalReason::ConnectionLimit {
                limit: links.conn_limit,
            },
            alternatives: links.refusal_hints.borrow().clone(),
        };
        (reason, refusal)
    })
}

impl Connection {
    /// Starts the framed I/O and asks gossip to register the link; the link does nothing else
    /// until gossip answered.
    fn register(&mut self, stream: TcpStream, handshaken: Handshaken, ctx: &mut Context<Self>) {
        let Handshaken { theirs, link_id } = handshaken;
        self.report.peer = Some(theirs.name);
        let port = self.ctx.gossip.current();
        let register = RegisterLink {
            link: NewLink {
                id: self.id,
                remote: theirs.name,
                remote_nickname: theirs.nickname.clone(),
                remote_uid: theirs.uid,
                conn_uid: link_id,
                outbound: matches!(self.direction, Direction::Outbound { .. }),
                remote_addr: self.remote_addr,
            },
            outbox: ctx.address().recipient(),
        };
        self.start_io(stream, ctx);
        ctx.wait(port.register.send(register).into_actor(self).map(
            move |res, act, ctx| match res {
                Ok(Ok(())) => {
                    act.report.gossip_closed = Some(port.closed.clone());
                    act.gossip = Some(port);
                    act.registered(&theirs, ctx);
                }
                Ok(Err(reason)) => act.close(reason, ctx),
                Err(_) => act.close(ClosingReason::SubsystemRestarted, ctx),
            },
        ));
    }
}

impl StreamHandler<Result<Bytes, WireError>> for Connection {
    fn handle(&mut self, frame: Result<Bytes, WireError>, ctx: &mut Context<Self>) {
        self.last_received = Instant::now();
        let decoded = frame.and_then(|bytes| decode_message::<ProtocolMsg>("message", &bytes));
        match decoded {
            Ok(msg) => self.on_message(msg, ctx),
            Err(WireError::Io { source, .. }) => {
                self.close(ClosingReason::Io(source.to_string()), ctx)
            }
            Err(err) => self.close(ClosingReason::Protocol(err.to_string()), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close(ClosingReason::PeerClosed, ctx);
    }
}

impl Handler<Outgoing> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Outgoing, ctx: &mut Context<Self>) {
        match msg {
            Outgoing::Message(msg) => self.send(&msg, ctx),
            Outgoing::Close(reason) => self.close(reason, ctx),
        }
    }
}

#[cfg(test)]
impl Handler<super::super::gossip::InjectPanic> for Connection {
    type Result = ();

    fn handle(&mut self, _: super::super::gossip::InjectPanic, _: &mut Context<Self>) {
        panic!("fault injected into a link");
    }
}

/// Reports the end of a link from `Drop`, which also runs when the actor panicked.
struct EndReport {
    id: LinkId,
    remote_addr: SocketAddr,
    outbound_target: Option<String>,
    ctx: Arc<LinkContext>,
    gossip_closed: Option<Recipient<LinkClosed>>,
    peer: Option<PeerName>,
    reason: Option<ClosingReason>,
    alternatives: Vec<SocketAddr>,
    up_since: Option<Instant>,
}

impl Drop for EndReport {
    fn drop(&mut self) {
        // An actor dropped without a reason either panicked or went down with the whole process.
        let reason = self.reason.take().unwrap_or(if super::shutting_down() {
            ClosingReason::ShuttingDown
        } else {
            ClosingReason::Panicked
        });
        let arrow = if self.outbound_target.is_some() {
            "->"
        } else {
            "<-"
        };
        match (&reason, self.peer) {
            (ClosingReason::Duplicate, _) => {
                info!(
                    "{arrow}[{}]: connection deleted: {reason}",
                    self.remote_addr
                )
            }
            (_, Some(peer)) => info!(
                "{arrow}[{}|{peer}]: connection shutting down due to error: {reason}",
                self.remote_addr
            ),
            (_, None) => info!(
                "{arrow}[{}]: connection shutting down due to error: {reason}",
                self.remote_addr
            ),
        }
        if reason.counts_as_termination() && self.up_since.is_some() {
            metrics::connection_terminated();
        }
        // Sent from a task of the current arbiter: Drop cannot wait, and the mailboxes are bounded.
        let Some(arbiter) = actix_rt::Arbiter::try_current() else {
            return;
        };
        let id = self.id;
        let closed = self.gossip_closed.take();
        let maker = self.outbound_target.take().map(|target| {
            (
                self.ctx.maker.recipient(),
                LinkEvent::Ended {
                    target,
                    peer: self.peer,
                    reason: reason.clone(),
                    alternatives: std::mem::take(&mut self.alternatives),
                    lived: self.up_since.map(|t| t.elapsed()).unwrap_or_default(),
                },
            )
        });
        arbiter.spawn(async move {
            if let Some(closed) = closed {
                let _ = closed.send(LinkClosed(id)).await;
            }
            if let Some((maker, event)) = maker {
                let _ = maker.send(event).await;
            }
        });
    }
}
