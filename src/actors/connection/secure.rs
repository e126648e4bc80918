//! The lowest layer of a link, sans-IO: the protocol header both ends send first, and, when the
//! mesh has a password, the Noise channel every other byte goes through. Above it the link sees
//! one plaintext stream each way (the handshake's frames, then messages), the same with or
//! without a password.
//!
//! With a password the header's magic says so (`src/wire/header.rs`), and the two ends run
//! `Noise_NNpsk2_25519_ChaChaPoly_BLAKE2s` keyed by the mesh key (`psk.rs`): `-> e`, then
//! `<- e, ee, psk`. Fresh ephemeral keys give each link its own keys (forward secrecy); the PSK
//! enters after the Diffie-Hellman, so someone who only listens has nothing to test a guessed
//! password against. The prologue is both headers, dialler's first, so a header altered in
//! transit (a forced downgrade of versions) fails the handshake. After it, the plaintext stream
//! travels in transport records of at most 65,535 bytes (`src/wire/record.rs`).
//!
//! Who proves what, and which end logs which line:
//! - The dialler learns first whether the acceptor knows the password (the second message's tag).
//!   If not it logs `authentication failed`, sends the abort notice and closes.
//! - The acceptor learns it from the dialler's first transport record, and sends nothing inside
//!   the channel before that record authenticated (the link's handshake would not anyway: the
//!   acceptor answers the dialler's `Hello`). A dialler that aborts, or whose first record does
//!   not open, is logged as `connection refused: peer does not know the mesh password`.
//! - Header against header: the end with a password logs `connection refused: peer does not know
//!   the mesh password`, the end without one that the peer requires a password. A router with a
//!   password sends nothing in the clear but its header, its Noise handshake messages and the
//!   abort notice.

use std::sync::Arc;

use bytes::BytesMut;
use snow::{HandshakeState, TransportState};

use super::ClosingReason;
use super::psk::MeshKey;
use crate::wire::{
    HEADER_LEN, MAX_RECORD_PLAINTEXT, ProtocolHeader, RECORD_TAG_BYTES, Record, Security,
    decode_record, encode_record, negotiate,
};

/// The Noise protocol of sealed links. Changing it is a change of the mesh protocol.
pub const NOISE_PARAMS: &str = "Noise_NNpsk2_25519_ChaChaPoly_BLAKE2s";
/// Where the mesh key enters the handshake: after the second message's tokens (`psk2`).
const PSK_LOCATION: u8 = 2;
/// Most plaintext held while the channel is not yet open: the link's handshake sends at most a
/// `Hello` and a reveal before the peer answered, each within `MAX_HELLO_BYTES`.
const MAX_HELD_BYTES: usize = 2 * super::handshake::MAX_HELLO_BYTES;

#[derive(Debug)]
enum Stage {
    /// Waiting for the peer's header.
    Preamble,
    /// No password at either end: bytes pass through.
    Clear,
    /// The Noise handshake is under way.
    Handshake(Box<HandshakeState>),
    /// The acceptor holds the keys, and waits for the dialler to prove it knows the password.
    Unproven(Box<TransportState>),
    Open(Box<TransportState>),
    /// Failed: nothing more goes in or out.
    Failed,
}

/// One link's header exchange and, with a password, its Noise channel.
#[derive(Debug)]
pub struct SecureChannel {
    key: Option<Arc<MeshKey>>,
    dialler: bool,
    our_header: [u8; HEADER_LEN],
    stage: Stage,
    /// Bytes from the socket not yet opened.
    raw: BytesMut,
    /// Plaintext to send once the channel may carry it.
    held: BytesMut,
    /// Fixed ephemeral private key, for known-answer tests only.
    #[cfg(test)]
    fixed_ephemeral: Option<[u8; 32]>,
}

impl SecureChannel {
    /// Starts a link's lowest layer: our header is appended to `out`. With `key` the link is
    /// sealed with it.
    pub fn start(key: Option<Arc<MeshKey>>, dialler: bool, out: &mut BytesMut) -> Self {
        let security = match key {
            Some(_) => Security::Sealed,
            None => Security::Clear,
        };
        let our_header = ProtocolHeader::OURS.encode_for(security);
        out.extend_from_slice(&our_header);
        Self {
            key,
            dialler,
            our_header,
            stage: Stage::Preamble,
            raw: BytesMut::new(),
            held: BytesMut::new(),
            #[cfg(test)]
            fixed_ephemeral: None,
        }
    }

    /// Without a password plaintext goes out as it comes, from the first byte: the dialler's
    /// `Hello` follows its header at once, as it always did.
    pub fn in_clear(&self) -> bool {
        self.key.is_none() && !matches!(self.stage, Stage::Failed)
    }

    /// Bytes read from the socket: the plaintext they carry is appended to `plain`, what the
    /// channel must answer (handshake messages, held plaintext now sealed, an abort notice) to
    /// `out`, also when it fails.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        plain: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<(), ClosingReason> {
        match self.stage {
            Stage::Failed => return Ok(()),
            // The common case without a password: one copy, as before there was a channel.
            Stage::Clear => {
                plain.extend_from_slice(bytes);
                return Ok(());
            }
            _ => {}
        }
        self.raw.extend_from_slice(bytes);
        let advanced = self.advance(plain, out);
        if advanced.is_err() {
            self.stage = Stage::Failed;
            self.raw.clear();
            self.held.clear();
        }
        advanced
    }

    /// Plaintext for the peer: sealed into `out`, or held until the channel is open.
    pub fn send(&mut self, plain: &[u8], out: &mut BytesMut) -> Result<(), ClosingReason> {
        let in_clear = self.in_clear();
        match &mut self.stage {
            Stage::Failed => Ok(()),
            Stage::Open(transport) => seal(transport, plain, out),
            _ if in_clear => {
                out.extend_from_slice(plain);
                Ok(())
            }
            _ => {
                if self.held.len() + plain.len() > MAX_HELD_BYTES {
                    return Err(protocol("too much to send before the channel opened"));
                }
                self.held.extend_from_slice(plain);
                Ok(())
            }
        }
    }

    fn advance(&mut self, plain: &mut BytesMut, out: &mut BytesMut) -> Result<(), ClosingReason> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Failed) {
                Stage::Preamble => {
                    let Some(header) = self.raw.first_chunk::<HEADER_LEN>().copied() else {
                        self.stage = Stage::Preamble;
                        return Ok(());
                    };
                    let _ = self.raw.split_to(HEADER_LEN);
                    self.stage = self.preamble(header, out)?;
                }
                Stage::Clear => {
                    plain.extend_from_slice(&self.raw.split());
                    self.stage = Stage::Clear;
                    return Ok(());
                }
                Stage::Handshake(mut handshake) => {
                    let Some(record) = decode_record(&mut self.raw).map_err(wire)? else {
                        self.stage = Stage::Handshake(handshake);
                        return Ok(());
                    };
                    let Record::Sealed(message) = record else {
                        return Err(protocol("an abort notice during the Noise handshake"));
                    };
                    let mut payload = vec![0u8; message.len()];
                    if handshake.read_message(&message, &mut payload).is_err() {
                        return Err(if self.dialler {
                            // The acceptor's message carries the PSK's proof: it is not ours.
                            let _ = encode_record(&Record::Abort, out);
                            ClosingReason::AuthenticationFailed
                        } else {
                            // The first message proves nothing but the headers both sides saw.
                            protocol("the Noise handshake does not match the headers exchanged")
                        });
                    }
                    if !self.dialler {
                        write_handshake(&mut handshake, out)?;
                    }
                    let mut transport = Box::new(handshake.into_transport_mode().map_err(noise)?);
                    if self.dialler {
                        let held = self.held.split();
                        seal(&mut transport, &held, out)?;
                        self.stage = Stage::Open(transport);
                    } else {
                        self.stage = Stage::Unproven(transport);
                    }
                }
                Stage::Unproven(mut transport) => {
                    let Some(record) = decode_record(&mut self.raw).map_err(wire)? else {
                        self.stage = Stage::Unproven(transport);
                        return Ok(());
                    };
                    let Record::Sealed(message) = record else {
                        return Err(ClosingReason::PeerLacksPassword);
                    };
                    open(&mut transport, &message, plain)
                        .map_err(|_| ClosingReason::PeerLacksPassword)?;
                    let held = self.held.split();
                    seal(&mut transport, &held, out)?;
                    self.stage = Stage::Open(transport);
                }
                Stage::Open(mut transport) => {
                    let Some(record) = decode_record(&mut self.raw).map_err(wire)? else {
                        self.stage = Stage::Open(transport);
                        return Ok(());
                    };
                    let Record::Sealed(message) = record else {
                        return Err(protocol("an abort notice on an open channel"));
                    };
                    open(&mut transport, &message, plain).map_err(|_| {
                        protocol("a record did not authenticate: the stream was altered")
                    })?;
                    self.stage = Stage::Open(transport);
                }
                Stage::Failed => return Ok(()),
            }
        }
    }

    /// The peer's header: versions, then whether both ends agree on a password.
    fn preamble(
        &mut self,
        header: [u8; HEADER_LEN],
        out: &mut BytesMut,
    ) -> Result<Stage, ClosingReason> {
        let (theirs, security) = ProtocolHeader::decode(&header).map_err(wire)?;
        negotiate(ProtocolHeader::OURS, theirs).map_err(wire)?;
        let key = match (&self.key, security) {
            (None, Security::Clear) => return Ok(Stage::Clear),
            (None, Security::Sealed) => return Err(ClosingReason::PasswordRequired),
            (Some(_), Security::Clear) => return Err(ClosingReason::PeerLacksPassword),
            (Some(key), Security::Sealed) => key.clone(),
        };
        let (dialler_header, acceptor_header) = match self.dialler {
            true => (self.our_header, header),
            false => (header, self.our_header),
        };
        let prologue = [dialler_header, acceptor_header].concat();
        let params = NOISE_PARAMS
            .parse()
            .map_err(|err| protocol(&format!("{NOISE_PARAMS}: {err}")))?;
        let builder = snow::Builder::new(params)
            .psk(PSK_LOCATION, key.bytes())
            .and_then(|builder| builder.prologue(&prologue))
            .map_err(noise)?;
        #[cfg(test)]
        let builder = match &self.fixed_ephemeral {
            Some(ephemeral) => builder.fixed_ephemeral_key_for_testing_only(ephemeral),
            None => builder,
        };
        let mut handshake = match self.dialler {
            true => builder.build_initiator(),
            false => builder.build_responder(),
        }
        .map_err(noise)?;
        if self.dialler {
            write_handshake(&mut handshake, out)?;
        }
        Ok(Stage::Handshake(Box::new(handshake)))
    }

    #[cfg(test)]
    pub(super) fn fix_ephemeral(&mut self, private: [u8; 32]) {
        self.fixed_ephemeral = Some(private);
    }
}

/// Our next handshake message, with an empty payload: nothing is said before both ends are
/// authenticated.
fn write_handshake(
    handshake: &mut HandshakeState,
    out: &mut BytesMut,
) -> Result<(), ClosingReason> {
    let mut message = [0u8; 128];
    let len = handshake.write_message(&[], &mut message).map_err(noise)?;
    encode_record(&Record::Sealed(message[..len].to_vec().into()), out).map_err(wire)
}

/// Seals `plain` into as many records as it takes.
fn seal(
    transport: &mut TransportState,
    plain: &[u8],
    out: &mut BytesMut,
) -> Result<(), ClosingReason> {
    for chunk in plain.chunks(MAX_RECORD_PLAINTEXT) {
        let mut message = vec![0u8; chunk.len() + RECORD_TAG_BYTES];
        let len = transport
            .write_message(chunk, &mut message)
            .map_err(noise)?;
        message.truncate(len);
        encode_record(&Record::Sealed(message.into()), out).map_err(wire)?;
    }
    Ok(())
}

fn open(
    transport: &mut TransportState,
    message: &[u8],
    plain: &mut BytesMut,
) -> Result<(), snow::Error> {
    let mut payload = vec![0u8; message.len()];
    let len = transport.read_message(message, &mut payload)?;
    plain.extend_from_slice(&payload[..len]);
    Ok(())
}

fn protocol(why: &str) -> ClosingReason {
    ClosingReason::Protocol(why.to_string())
}

fn wire(err: crate::wire::WireError) -> ClosingReason {
    ClosingReason::Protocol(err.to_string())
}

fn noise(err: snow::Error) -> ClosingReason {
    ClosingReason::Protocol(format!("Noise: {err}"))
}

#[cfg(test)]
mod tests;
