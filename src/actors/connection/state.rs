//! A link's state, sans-IO: the handshake and its vetting, registration, heartbeats, the read
//! timeout, the framing of messages both ways, and the facts of its end. The actor feeds it the
//! bytes the socket gave, timer expiries and commands, always with the current time, and carries
//! out the [`LinkOutput`]s it queues, in order; [`LinkState::poll_timeout`] says when it must be
//! woken next. Under it, between the socket's bytes and the plaintext stream, sits the link's
//! [`SecureChannel`]: the protocol headers and, when the mesh has a password, Noise.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::framed::FramedMessage;
use super::handshake::{Handshake, HandshakeFailure, Handshaken, Progress};
use super::psk::MeshKey;
use super::secure::SecureChannel;
use super::sleeve_keying::{KeyRole, KeyingOutput, SleeveKeying};
use super::{ClosingReason, LinkTimers, LocalIdentity};
use crate::topology::{PeerName, check_nickname};
use crate::wire::sleeve::seal::{Direction, SleeveKey};
use crate::wire::{
    Features, FrameCodec, LinkNonce, MAX_FRAME_BYTES, ProtocolMsg, Refusal, decode_message,
};

/// What the actor must do, in the order queued.
#[derive(Debug, PartialEq)]
pub enum LinkOutput {
    /// Write these bytes to the socket.
    Transmit(Bytes),
    /// An inbound link holds the dialler's `Hello`: decide whether there is room, and answer
    /// with [`LinkState::on_admission`].
    Admit,
    /// The handshake succeeded and the remote passed vetting: register the link with gossip and
    /// answer with [`LinkState::on_registered`]. Bytes that arrive meanwhile wait.
    Handshaken(Handshaken),
    /// The first heartbeat arrived: the link is up at both ends.
    Established,
    /// A message for gossip. The actor delivers it before it takes the next output, which is the
    /// link's back-pressure.
    Received(ProtocolMsg),
    /// A message to send was over the frame limit and was dropped; sent, it would have failed
    /// the link for a message's fault.
    Oversized { bytes: usize },
    /// With a password: hand this sleeve key to the sleeve (for opening the peer's datagrams, or
    /// sealing ours), then answer with [`LinkState::on_sleeve_key_installed`].
    InstallSleeveKey {
        role: KeyRole,
        direction: Direction,
        key: SleeveKey,
    },
    /// The link is over: stop. Nothing follows.
    Closed(ClosingReason),
}

/// Why and how a link ended, as the actor reports it.
#[derive(Debug, PartialEq)]
pub struct LinkEnd {
    pub reason: ClosingReason,
    pub peer: Option<PeerName>,
    /// Other peers a refusing remote suggested.
    pub alternatives: Vec<SocketAddr>,
    /// How long the link was registered (zero when it never was).
    pub lived: Duration,
    /// Whether the end counts as a termination of an up link, for metrics.
    pub terminated: bool,
}

#[derive(Debug)]
enum Phase {
    Handshake {
        /// Boxed: the features it holds make it several times the size of the other phases.
        handshake: Box<Handshake>,
        deadline: Instant,
    },
    /// Waiting for gossip to register the link.
    Registering,
    Up {
        established: bool,
        last_received: Instant,
        last_heartbeat_sent: Instant,
    },
    Closed,
}

/// One link, from its first byte to its end.
#[derive(Debug)]
pub struct LinkState {
    name: PeerName,
    uid: crate::topology::PeerUid,
    timers: LinkTimers,
    phase: Phase,
    /// The headers, and with a password the Noise channel: socket bytes in and out.
    channel: SecureChannel,
    /// Received plaintext not yet made into frames. Released whenever drained: a whole topology
    /// of a large mesh arrives in frames of hundreds of KiB, and 30 links keeping such buffers
    /// were half of a router's peak heap at 150 peers (heaptrack).
    input: BytesMut,
    /// Frames of the established link (the handshake has its own, with a lower limit).
    frames: FrameCodec,
    outputs: VecDeque<LinkOutput>,
    peer: Option<PeerName>,
    reason: Option<ClosingReason>,
    alternatives: Vec<SocketAddr>,
    up_since: Option<Instant>,
    /// With a password: the agreement of the sleeve's keys, started once the link is up.
    keying: Option<SleeveKeying>,
}

impl LinkState {
    /// A link whose socket just connected: its handshake's first bytes are queued at once.
    /// With `mesh_key` the link is sealed (Noise) before anything but the header is sent.
    pub fn new(
        identity: &LocalIdentity,
        timers: LinkTimers,
        mesh_key: Option<Arc<MeshKey>>,
        nonce: LinkNonce,
        dialler: bool,
        now: Instant,
    ) -> Self {
        let ours = Features {
            name: identity.name,
            nickname: identity.nickname.clone(),
            uid: identity.uid,
            conn_commit: nonce.commitment(),
            overlays: identity.overlays.clone(),
            listen_port: identity.listen_port,
        };
        let mut wire = BytesMut::new();
        let keying = mesh_key
            .is_some()
            .then(|| SleeveKeying::new(dialler, timers.sleeve_rekey_interval));
        let channel = SecureChannel::start(mesh_key, dialler, &mut wire);
        let mut state = Self {
            name: identity.name,
            uid: identity.uid,
            timers,
            phase: Phase::Closed,
            channel,
            input: BytesMut::new(),
            frames: FrameCodec::new(MAX_FRAME_BYTES),
            outputs: VecDeque::new(),
            peer: None,
            reason: None,
            alternatives: Vec::new(),
            up_since: None,
            keying,
        };
        let mut out = BytesMut::new();
        match Handshake::start(ours, nonce, dialler, &mut out) {
            Ok(handshake) => {
                state.phase = Phase::Handshake {
                    handshake: Box::new(handshake),
                    deadline: now + timers.handshake_timeout,
                };
                // Header and `Hello` in one write, as before there was a channel.
                let sealed = state.channel.send(&out, &mut wire);
                state.transmit(wire);
                if let Err(reason) = sealed {
                    state.finish(reason);
                }
            }
            Err(failure) => {
                state.transmit(wire);
                state.fail(failure);
            }
        }
        state
    }

    /// The next thing the actor must do.
    pub fn poll_output(&mut self) -> Option<LinkOutput> {
        self.outputs.pop_front()
    }

    /// When [`LinkState::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Handshake { deadline, .. } => Some(*deadline),
            Phase::Up {
                last_received,
                last_heartbeat_sent,
                ..
            } => {
                let link = (*last_received + self.timers.read_timeout)
                    .min(*last_heartbeat_sent + self.timers.heartbeat_interval);
                let rekey = self.keying.as_ref().and_then(SleeveKeying::next_deadline);
                Some(rekey.map_or(link, |rekey| rekey.min(link)))
            }
            Phase::Registering | Phase::Closed => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Bytes read from the socket.
    pub fn on_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        let mut wire = BytesMut::new();
        let opened = self.channel.receive(bytes, &mut self.input, &mut wire);
        self.transmit(wire);
        match opened {
            Ok(()) => self.process(now),
            Err(reason) => self.finish(reason),
        }
        // Frames are split off the front of this buffer, so once drained it still points into
        // their allocation, and would make it its own again on the next read: a link that once
        // received a large frame kept its size for good. Let it go with the frames instead.
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
    }

    /// Bytes the received-but-unframed buffer holds room for: none once drained.
    pub fn input_capacity(&self) -> usize {
        self.input.capacity()
    }

    /// The remote closed its side of the stream.
    pub fn on_eof(&mut self) {
        self.close(ClosingReason::PeerClosed);
    }

    /// Reading or writing the socket failed.
    pub fn on_io_error(&mut self, err: &std::io::Error) {
        self.close(ClosingReason::Io(err.to_string()));
    }

    /// Timers: the handshake's deadline, the read timeout, the next heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Handshake { deadline, .. } if now >= *deadline => {
                self.close(ClosingReason::HandshakeTimeout)
            }
            Phase::Up {
                last_received,
                last_heartbeat_sent,
                ..
            } => {
                if now.duration_since(*last_received) >= self.timers.read_timeout {
                    return self.close(ClosingReason::HeartbeatTimeout);
                }
                if now.duration_since(*last_heartbeat_sent) >= self.timers.heartbeat_interval {
                    *last_heartbeat_sent = now;
                    self.send(&ProtocolMsg::Heartbeat);
                }
                if let Some(keying) = &mut self.keying {
                    let outputs = keying.poll(now);
                    self.keying_outputs(outputs);
                }
            }
            Phase::Handshake { .. } | Phase::Registering | Phase::Closed => {}
        }
    }

    /// The answer to [`LinkOutput::Admit`].
    pub fn on_admission(&mut self, now: Instant, decision: Result<(), (ClosingReason, Refusal)>) {
        let Phase::Handshake { handshake, .. } = &mut self.phase else {
            return;
        };
        let mut out = BytesMut::new();
        let admitted = handshake.admitted(decision, &mut out);
        self.seal(&out);
        match admitted {
            Ok(()) => self.process(now),
            Err(failure) => self.fail(failure),
        }
    }

    /// The answer to [`LinkOutput::Handshaken`]. Once registered the link sends its first
    /// heartbeat at once: it is what establishes the link at the far end.
    pub fn on_registered(&mut self, now: Instant, registered: Result<(), ClosingReason>) {
        if !matches!(self.phase, Phase::Registering) {
            return;
        }
        if let Err(reason) = registered {
            return self.close(reason);
        }
        self.up_since = Some(now);
        self.phase = Phase::Up {
            established: false,
            last_received: now,
            last_heartbeat_sent: now,
        };
        self.send(&ProtocolMsg::Heartbeat);
        if let Some(keying) = &mut self.keying {
            let outputs = keying.start();
            self.keying_outputs(outputs);
        }
        self.process(now);
    }

    /// The answer to [`LinkOutput::InstallSleeveKey`]: the sleeve holds the key of `epoch`.
    pub fn on_sleeve_key_installed(&mut self, now: Instant, role: KeyRole, epoch: u32) {
        if !matches!(self.phase, Phase::Up { .. }) {
            return;
        }
        if let Some(keying) = &mut self.keying {
            let outputs = keying.installed(role, epoch, now);
            self.keying_outputs(Ok(outputs));
        }
    }

    /// Carries out what the key agreement asked for.
    fn keying_outputs(&mut self, outputs: Result<Vec<KeyingOutput>, ClosingReason>) {
        let outputs = match outputs {
            Ok(outputs) => outputs,
            Err(reason) => return self.close(reason),
        };
        for output in outputs {
            match output {
                KeyingOutput::Send(msg) => self.send(&msg),
                KeyingOutput::Install {
                    role,
                    direction,
                    key,
                } => self.outputs.push_back(LinkOutput::InstallSleeveKey {
                    role,
                    direction,
                    key,
                }),
            }
        }
    }

    /// Queues `msg` for the remote. Dropped before the link is registered, as no one can have
    /// meant it for a link that does not exist yet.
    pub fn send(&mut self, msg: &ProtocolMsg) {
        self.send_framed(&FramedMessage::of(msg));
    }

    /// Sends a message framed once for many links: without a password the frame's bytes go to
    /// the socket as they are, shared with the other links, and with one they are sealed.
    pub fn send_framed(&mut self, framed: &FramedMessage) {
        if !matches!(self.phase, Phase::Registering | Phase::Up { .. }) {
            return;
        }
        match framed {
            FramedMessage::Frame(frame) if self.channel.in_clear() => {
                if !frame.is_empty() {
                    self.outputs.push_back(LinkOutput::Transmit(frame.clone()));
                }
            }
            FramedMessage::Frame(frame) => self.seal(frame),
            FramedMessage::TooLarge { bytes } => self
                .outputs
                .push_back(LinkOutput::Oversized { bytes: *bytes }),
            FramedMessage::Unencodable(err) => self.close(ClosingReason::Protocol(err.clone())),
        }
    }

    /// Ends the link. The first reason given is the one reported; what was queued and not yet
    /// taken is dropped, bytes to send excepted.
    pub fn close(&mut self, reason: ClosingReason) {
        if self.is_closed() {
            return;
        }
        self.outputs
            .retain(|output| matches!(output, LinkOutput::Transmit(_)));
        self.finish(reason);
    }

    /// The facts of the link's end. A link dropped without a reason either panicked or went
    /// down with its router, which `shutting_down` tells apart.
    pub fn end(&mut self, now: Instant, shutting_down: bool) -> LinkEnd {
        let reason = self.reason.clone().unwrap_or(if shutting_down {
            ClosingReason::ShuttingDown
        } else {
            ClosingReason::Panicked
        });
        LinkEnd {
            terminated: reason.counts_as_termination() && self.up_since.is_some(),
            reason,
            peer: self.peer,
            alternatives: std::mem::take(&mut self.alternatives),
            lived: self
                .up_since
                .map(|since| now.saturating_duration_since(since))
                .unwrap_or_default(),
        }
    }

    /// Makes frames of the input as far as the phase allows: a registering link keeps them for
    /// later.
    fn process(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Handshake { handshake, .. } => {
                    let mut out = BytesMut::new();
                    let progress = handshake.advance(&mut self.input, &mut out);
                    self.seal(&out);
                    if self.is_closed() {
                        return;
                    }
                    match progress {
                        Ok(Progress::Pending) => return,
                        Ok(Progress::Admit) => return self.outputs.push_back(LinkOutput::Admit),
                        Ok(Progress::Done(handshaken)) => self.handshaken(handshaken),
                        Err(failure) => return self.fail(failure),
                    }
                }
                Phase::Up {
                    established,
                    last_received,
                    ..
                } => {
                    let msg = match self
                        .frames
                        .decode(&mut self.input)
                        .and_then(|frame| frame.map(|f| decode_message("message", &f)).transpose())
                    {
                        Ok(None) => return,
                        Ok(Some(msg)) => msg,
                        Err(err) => return self.finish(ClosingReason::Protocol(err.to_string())),
                    };
                    *last_received = now;
                    if let ProtocolMsg::SleeveKey { .. } | ProtocolMsg::SleeveKeyAck { .. } = msg {
                        let outputs = match &mut self.keying {
                            Some(keying) => keying.on_message(&msg),
                            None => Err(ClosingReason::Protocol(
                                "a sleeve key on a link without a mesh password".into(),
                            )),
                        };
                        self.keying_outputs(outputs);
                        if self.is_closed() {
                            return;
                        }
                    } else if msg != ProtocolMsg::Heartbeat {
                        self.outputs.push_back(LinkOutput::Received(msg));
                    } else if !*established {
                        *established = true;
                        self.outputs.push_back(LinkOutput::Established);
                    }
                }
                Phase::Registering | Phase::Closed => return,
            }
        }
    }

    /// Vets who answered: never ourselves, never someone using our name, and a nickname that is
    /// safe to log.
    fn handshaken(&mut self, handshaken: Handshaken) {
        let theirs = &handshaken.theirs;
        let vetted = check_nickname(&theirs.nickname)
            .map_err(|err| ClosingReason::Protocol(err.to_string()))
            .and_then(|()| match theirs.name == self.name {
                false => Ok(()),
                true if theirs.uid == self.uid => Err(ClosingReason::ConnectToSelf),
                true => Err(ClosingReason::NameCollision),
            });
        if let Err(reason) = vetted {
            return self.finish(reason);
        }
        self.peer = Some(theirs.name);
        self.phase = Phase::Registering;
        self.outputs.push_back(LinkOutput::Handshaken(handshaken));
    }

    /// Plaintext for the peer, through the channel.
    fn seal(&mut self, plain: &[u8]) {
        if plain.is_empty() {
            return;
        }
        let mut wire = BytesMut::new();
        let sealed = self.channel.send(plain, &mut wire);
        self.transmit(wire);
        if let Err(reason) = sealed {
            self.finish(reason);
        }
    }

    fn transmit(&mut self, out: BytesMut) {
        if !out.is_empty() {
            self.outputs.push_back(LinkOutput::Transmit(out.freeze()));
        }
    }

    fn fail(&mut self, failure: HandshakeFailure) {
        self.alternatives = failure.alternatives;
        self.finish(failure.reason);
    }

    /// Ends the link after what is queued.
    fn finish(&mut self, reason: ClosingReason) {
        if self.reason.is_some() {
            return;
        }
        self.phase = Phase::Closed;
        self.reason.get_or_insert(reason.clone());
        self.outputs.push_back(LinkOutput::Closed(reason));
    }
}

#[cfg(test)]
mod tests;
