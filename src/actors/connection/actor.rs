//! The link actor, a shell over [`LinkState`]: it moves bytes between the socket and the state,
//! wakes it at the time it asks for, and carries out its outputs (admission, gossip registration
//! and delivery, the connection maker's events). Its lifetime is the link's; it reports why the
//! link ended from `Drop`, so that even a panic is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::{BytesCodec, FramedRead};
use tracing::{info, warn};

use super::handshake::Handshaken;
use super::report::EndReport;
use super::sleeve_keying::KeyRole;
use super::slot::admission;
use super::state::{LinkOutput, LinkState};
use super::{
    ClosingReason, GossipPort, LinkContext, LinkEvent, LinkId, LinkSlot, Outgoing, SleeveKeyTarget,
    SleeveKeyUpdate,
};
use crate::actors::gossip::messages::{LinkEstablished, Received, RegisterLink};
use crate::actors::gossip::state::NewLink;
use crate::metrics;
use crate::topology::PeerName;
use crate::wire::sleeve::seal::{Direction as SealDirection, SleeveKey};
use crate::wire::{LinkNonce, MAX_FRAME_BYTES, ProtocolMsg};

/// Writes queued for the socket writer before further sends are dropped (and counted).
const OUTBOX_FRAMES: usize = 512;
/// How often a registered link checks whether gossip was re-created.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const MAILBOX_CAPACITY: usize = 256;
/// How long a link waits before handing a sleeve key again to a sleeve still starting: links
/// can come up in the moments between the listener's start and the sleeve's.
const SLEEVE_START_RETRY: Duration = Duration::from_millis(50);

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
    /// Its place under the connection limit; given back when the actor is dropped.
    slot: Option<LinkSlot>,
    state: LinkState,
    gossip: Option<GossipPort>,
    writer: Option<mpsc::Sender<Bytes>>,
    /// The wake-up armed for the state, and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
    /// The peer and the link's id once handshaken: what its sleeve keys are filed under.
    keyed_as: Option<(PeerName, u64)>,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        remote_addr: SocketAddr,
        direction: Direction,
        slot: LinkSlot,
        ctx: Arc<LinkContext>,
    ) -> Self {
        let dialler = matches!(direction, Direction::Outbound { .. });
        let state = LinkState::new(
            &ctx.identity,
            ctx.timers,
            ctx.mesh_key.clone(),
            LinkNonce::random(),
            dialler,
            Instant::now(),
        );
        Self {
            id: LinkId::next(),
            direction,
            remote_addr,
            stream: Some(stream),
            ctx,
            slot: Some(slot),
            state,
            gossip: None,
            writer: None,
            timer: None,
            keyed_as: None,
        }
    }

    fn arrow(&self) -> &'static str {
        match self.direction {
            Direction::Outbound { .. } => "->",
            Direction::Inbound => "<-",
        }
    }

    fn close(&mut self, reason: ClosingReason, ctx: &mut Context<Self>) {
        self.state.close(reason);
        self.pump(ctx);
    }

    /// Carries out the state's outputs in order. One that waits for another actor resumes the
    /// pump when answered; meanwhile the actor reads nothing more, which is the back-pressure.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while let Some(output) = self.state.poll_output() {
            match output {
                LinkOutput::Transmit(bytes) => self.write(bytes),
                LinkOutput::Admit => {
                    let decision = admission(&mut self.slot, &self.ctx);
                    self.state.on_admission(Instant::now(), decision);
                }
                LinkOutput::Handshaken(handshaken) => return self.register(handshaken, ctx),
                LinkOutput::Established => return self.established(ctx),
                LinkOutput::Received(msg) => return self.deliver(msg, ctx),
                LinkOutput::InstallSleeveKey {
                    role,
                    direction,
                    key,
                } => return self.install_key(role, direction, key, ctx),
                LinkOutput::Oversized { bytes } => {
                    warn!(
                        "->[{}] dropping a message of {bytes} bytes: over the {MAX_FRAME_BYTES}-byte frame limit",
                        self.remote_addr
                    );
                    metrics::message_dropped(metrics::DropReason::FrameTooLarge);
                }
                LinkOutput::Closed(_) => return ctx.stop(),
            }
        }
        self.arm_timer(ctx);
    }

    fn write(&mut self, bytes: Bytes) {
        let Some(writer) = &self.writer else {
            return;
        };
        match writer.try_send(bytes) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::message_dropped(metrics::DropReason::SocketBacklog);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.state
                    .close(ClosingReason::Io("write to the socket failed".into()));
            }
        }
    }

    /// Wakes the state when it asked to. An armed wake-up earlier than asked stays: the state
    /// re-evaluates then and the pump re-arms.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.state.poll_timeout() else {
            if let Some((_, handle)) = self.timer.take() {
                ctx.cancel_future(handle);
            }
            return;
        };
        if let Some((armed, handle)) = self.timer {
            if armed <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = deadline.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.state.handle_timeout(Instant::now());
            act.pump(ctx);
        });
        self.timer = Some((deadline, handle));
    }

    /// Asks gossip to register the link; the link does nothing else until gossip answered.
    fn register(&mut self, handshaken: Handshaken, ctx: &mut Context<Self>) {
        let Handshaken { theirs, link_id } = handshaken;
        self.keyed_as = Some((theirs.name, link_id));
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
        ctx.wait(
            port.register
                .send(register)
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let registered = match res {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(reason)) => Err(reason),
                        Err(_) => Err(ClosingReason::SubsystemRestarted),
                    };
                    if registered.is_ok() {
                        act.gossip = Some(port);
                        act.registered(theirs.name, &theirs.nickname, ctx);
                    }
                    act.state.on_registered(Instant::now(), registered);
                    act.pump(ctx);
                }),
        );
    }

    fn registered(
        &mut self,
        peer: crate::topology::PeerName,
        nickname: &str,
        ctx: &mut Context<Self>,
    ) {
        info!(
            "{}[{}|{peer}({nickname})]: connection added",
            self.arrow(),
            self.remote_addr,
        );
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
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| {
            let registered_with = act.gossip.as_ref().map(|port| port.generation);
            if registered_with
                .is_some_and(|generation| generation != act.ctx.gossip.current().generation)
            {
                act.close(ClosingReason::SubsystemRestarted, ctx);
            }
        });
    }

    fn established(&mut self, ctx: &mut Context<Self>) {
        let Some(port) = &self.gossip else {
            return self.pump(ctx);
        };
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
                        act.state.close(ClosingReason::SubsystemRestarted);
                    }
                    act.pump(ctx);
                }),
        );
    }

    /// Hands a sleeve key to the sleeve and waits for it to be installed before the link goes on:
    /// an opening key is acknowledged to the peer only once our sleeve can open with it.
    fn install_key(
        &mut self,
        role: KeyRole,
        direction: SealDirection,
        key: SleeveKey,
        ctx: &mut Context<Self>,
    ) {
        let epoch = key.epoch;
        let target = self.ctx.sleeve_keys.target();
        let (recipient, Some((peer, link_id))) = (target, self.keyed_as) else {
            return self.close(
                ClosingReason::Protocol("a sleeve key before the handshake".into()),
                ctx,
            );
        };
        let recipient = match recipient {
            SleeveKeyTarget::Sleeve(recipient) => recipient,
            SleeveKeyTarget::None => {
                self.state
                    .on_sleeve_key_installed(Instant::now(), role, epoch);
                return self.pump(ctx);
            }
            // Nothing else happens on the link meanwhile (`wait`), so the order holds.
            SleeveKeyTarget::Starting => {
                ctx.wait(
                    tokio::time::sleep(SLEEVE_START_RETRY)
                        .into_actor(self)
                        .map(move |(), act, ctx| act.install_key(role, direction, key, ctx)),
                );
                return;
            }
        };
        let update = SleeveKeyUpdate::Install {
            peer,
            link_id,
            role,
            direction,
            key,
        };
        ctx.wait(
            recipient
                .send(update)
                .into_actor(self)
                .map(move |res, act, ctx| {
                    match res {
                        Ok(Ok(())) => {
                            act.state
                                .on_sleeve_key_installed(Instant::now(), role, epoch)
                        }
                        Ok(Err(err)) => act.state.close(ClosingReason::Protocol(format!(
                            "sleeve refused key epoch {epoch}: {err}"
                        ))),
                        Err(_) => act.state.close(ClosingReason::SubsystemRestarted),
                    }
                    act.pump(ctx);
                }),
        );
    }

    fn deliver(&mut self, msg: ProtocolMsg, ctx: &mut Context<Self>) {
        let Some(port) = &self.gossip else {
            return self.pump(ctx);
        };
        ctx.wait(
            port.received
                .send(Received { link: self.id, msg })
                .into_actor(self)
                .map(|res, act, ctx| {
                    match res {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => act.state.close(ClosingReason::Protocol(err.to_string())),
                        Err(_) => act.state.close(ClosingReason::SubsystemRestarted),
                    }
                    act.pump(ctx);
                }),
        );
    }
}

async fn write_bytes(mut write_half: OwnedWriteHalf, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = queue.recv().await {
        if write_half.write_all(&bytes).await.is_err() {
            break;
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let Some(stream) = self.stream.take() else {
            return self.close(ClosingReason::Io("no socket".into()), ctx);
        };
        if let Direction::Outbound { .. } = self.direction {
            info!("->[{}] attempting connection", self.remote_addr);
        }
        let (read_half, write_half) = stream.into_split();
        ctx.add_stream(FramedRead::new(read_half, BytesCodec::new()));
        let (tx, rx) = mpsc::channel(OUTBOX_FRAMES);
        actix_rt::spawn(write_bytes(write_half, rx));
        self.writer = Some(tx);
        let shutdown = self.ctx.shutdown.clone();
        ctx.spawn(
            async move { shutdown.cancelled().await }
                .into_actor(self)
                .map(|(), act, ctx| act.close(ClosingReason::ShuttingDown, ctx)),
        );
        self.pump(ctx);
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for Connection {
    fn handle(&mut self, read: Result<BytesMut, std::io::Error>, ctx: &mut Context<Self>) {
        match read {
            Ok(bytes) => self.state.on_bytes(Instant::now(), &bytes),
            Err(err) => self.state.on_io_error(&err),
        }
        self.pump(ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.state.on_eof();
        self.pump(ctx);
    }
}

impl Handler<Outgoing> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Outgoing, ctx: &mut Context<Self>) {
        match msg {
            Outgoing::Message(framed) => self.state.send_framed(&framed),
            Outgoing::Close(reason) => self.state.close(reason),
        }
        self.pump(ctx);
    }
}

#[cfg(test)]
impl Handler<super::super::gossip::InjectPanic> for Connection {
    type Result = ();

    fn handle(&mut self, _: super::super::gossip::InjectPanic, _: &mut Context<Self>) {
        panic!("fault injected into a link");
    }
}

/// Reports the end of the link; `Drop` also runs when the actor panicked.
impl Drop for Connection {
    fn drop(&mut self) {
        if let (Some((peer, link_id)), SleeveKeyTarget::Sleeve(recipient)) =
            (self.keyed_as, self.ctx.sleeve_keys.target())
        {
            // A full mailbox leaves the keys until the peer's next link replaces them: they seal
            // for a link that is gone, which no one can open any more.
            if recipient
                .try_send(SleeveKeyUpdate::Forget { peer, link_id })
                .is_err()
            {
                warn!("->[{peer}] cannot tell the sleeve to forget the link's keys");
            }
        }
        let end = self
            .state
            .end(Instant::now(), self.ctx.shutdown.is_cancelled());
        EndReport {
            id: self.id,
            remote_addr: self.remote_addr,
            gossip_closed: self.gossip.take().map(|port| port.closed),
            outbound: match &self.direction {
                Direction::Outbound { target } => {
                    Some((target.clone(), self.ctx.maker.recipient()))
                }
                Direction::Inbound => None,
            },
        }
        .send(end);
    }
}
