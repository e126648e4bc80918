//! The handshake of a new link, sans-IO, on the plaintext stream the secure channel gives
//! (`secure.rs` has exchanged the protocol headers, and with a password runs Noise under it).
//! The dialler sends its `Hello` (who it is, and a commitment to its share of the link id); the
//! acceptor reads it first, and only then decides whether it has room (a refusal goes out instead
//! of its own `Hello`), so a socket that says nothing never costs a connection-limit place. Each
//! side reveals its share once it holds the other's commitment (the scheme:
//! `src/wire/link_id.rs`).
//! Every frame is bounded by [`MAX_HELLO_BYTES`]; the time bound is the link state's.

use bytes::BytesMut;

use super::ClosingReason;
use crate::wire::{
    Features, FrameCodec, Hello, LinkNonce, Refusal, Reveal, WireError, decode_message,
    encode_frame, encode_message, link_id,
};
use tokio_util::codec::Decoder;

/// Largest `Hello` accepted: features and a refusal with its hints are a few hundred bytes.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;
/// How a handshake that did not produce a link ended.
#[derive(Debug, PartialEq)]
pub struct HandshakeFailure {
    pub reason: ClosingReason,
    pub alternatives: Vec<std::net::SocketAddr>,
}

impl From<ClosingReason> for HandshakeFailure {
    fn from(reason: ClosingReason) -> Self {
        Self {
            reason,
            alternatives: Vec::new(),
        }
    }
}

impl From<WireError> for HandshakeFailure {
    fn from(err: WireError) -> Self {
        ClosingReason::Protocol(err.to_string()).into()
    }
}

/// What a successful handshake learned.
#[derive(Clone, Debug, PartialEq)]
pub struct Handshaken {
    pub theirs: Features,
    /// The same number at both ends; unpredictable as long as one end is honest.
    pub link_id: u64,
}

/// How far a handshake got with the bytes it was given.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// More bytes are needed.
    Pending,
    /// The acceptor holds the dialler's `Hello`: answer with [`Handshake::admitted`].
    Admit,
    Done(Handshaken),
}

#[derive(Debug)]
enum Stage {
    Hello,
    /// The acceptor waits for the admission decision on these features.
    Admitting(Features),
    Reveal(Features),
    Finished,
}

/// One side's handshake. Bytes to send are appended to the `out` buffer each method is given.
#[derive(Debug)]
pub struct Handshake {
    ours: Features,
    nonce: LinkNonce,
    dialler: bool,
    stage: Stage,
    /// Frames of the handshake, each within [`MAX_HELLO_BYTES`].
    frames: FrameCodec,
}

impl Handshake {
    /// Starts the handshake, presenting `ours` (committing to `nonce`).
    pub fn start(
        ours: Features,
        nonce: LinkNonce,
        dialler: bool,
        out: &mut BytesMut,
    ) -> Result<Self, HandshakeFailure> {
        let handshake = Self {
            ours,
            nonce,
            dialler,
            stage: Stage::Hello,
            frames: FrameCodec::new(MAX_HELLO_BYTES),
        };
        // The acceptor says nothing until it has read who dialled.
        if dialler {
            frame("hello", &Hello::Features(handshake.ours.clone()), out)?;
        }
        Ok(handshake)
    }

    /// Consumes what it can of `input`.
    pub fn advance(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<Progress, HandshakeFailure> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Finished) {
                Stage::Hello => {
                    let Some(hello) = self.frames.decode(input)? else {
                        self.stage = Stage::Hello;
                        return Ok(Progress::Pending);
                    };
                    let theirs = match decode_message("hello", &hello)? {
                        Hello::Features(theirs) => theirs,
                        Hello::Refused(refusal) => {
                            return Err(HandshakeFailure {
                                reason: ClosingReason::Refused(refusal.reason),
                                alternatives: refusal.alternatives,
                            });
                        }
                    };
                    if !self.dialler {
                        self.stage = Stage::Admitting(theirs);
                        return Ok(Progress::Admit);
                    }
                    self.reveal(theirs, out)?;
                }
                Stage::Admitting(theirs) => {
                    self.stage = Stage::Admitting(theirs);
                    return Ok(Progress::Pending);
                }
                Stage::Reveal(theirs) => {
                    let Some(reveal) = self.frames.decode(input)? else {
                        self.stage = Stage::Reveal(theirs);
                        return Ok(Progress::Pending);
                    };
                    let revealed: Reveal = decode_message("reveal", &reveal)?;
                    if !revealed.nonce.opens(&theirs.conn_commit) {
                        return Err(protocol(
                            "the remote's link id share does not match its commitment",
                        )
                        .into());
                    }
                    return Ok(Progress::Done(Handshaken {
                        link_id: link_id(&self.nonce, &revealed.nonce),
                        theirs,
                    }));
                }
                Stage::Finished => return Ok(Progress::Pending),
            }
        }
    }

    /// The acceptor's admission decision: `Err` turns the dialler away with that refusal,
    /// `ClosingReason` being what we log.
    pub fn admitted(
        &mut self,
        decision: Result<(), (ClosingReason, Refusal)>,
        out: &mut BytesMut,
    ) -> Result<(), HandshakeFailure> {
        let Stage::Admitting(theirs) = std::mem::replace(&mut self.stage, Stage::Finished) else {
            return Err(protocol("admission decided outside the handshake").into());
        };
        if let Err((reason, refusal)) = decision {
            frame("hello", &Hello::Refused(refusal), out)?;
            return Err(reason.into());
        }
        self.check_commitment(&theirs)?;
        // Goes out with our reveal: the dialler is committed already.
        frame("hello", &Hello::Features(self.ours.clone()), out)?;
        self.reveal(theirs, out)
    }

    /// A commitment sent back to us would let its sender open it with our own nonce once we
    /// reveal it, making the link id 0, the id that wins every tie-break.
    fn check_commitment(&self, theirs: &Features) -> Result<(), HandshakeFailure> {
        if theirs.conn_commit == self.ours.conn_commit {
            return Err(protocol("the remote sent our own link id commitment back").into());
        }
        Ok(())
    }

    fn reveal(&mut self, theirs: Features, out: &mut BytesMut) -> Result<(), HandshakeFailure> {
        self.check_commitment(&theirs)?;
        frame("reveal", &Reveal { nonce: self.nonce }, out)?;
        self.stage = Stage::Reveal(theirs);
        Ok(())
    }
}

fn protocol(why: &str) -> ClosingReason {
    ClosingReason::Protocol(why.to_string())
}

/// Appends `message` as one frame.
fn frame<T: serde::Serialize>(
    what: &'static str,
    message: &T,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    encode_frame(encode_message(what, message)?, out)
}
