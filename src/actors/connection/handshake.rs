//! The handshake of a new TCP link. Both sides send the protocol header at once. The dialler then
//! sends its `Hello` (who it is, and a commitment to its share of the link id); the acceptor reads
//! it first, and only then decides whether it has room (a refusal goes out instead of its own
//! `Hello`), so a socket that says nothing never costs a connection-limit place. Each side reveals
//! its share once it holds the other's commitment (the scheme: `src/wire/link_id.rs`). The whole
//! exchange is bounded in time and size.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClosingReason;
use crate::wire::{
    Features, HEADER_LEN, Hello, LinkNonce, ProtocolHeader, Refusal, Reveal, WireError,
    decode_message, encode_frame, encode_message, link_id, negotiate,
};

/// Largest `Hello` accepted: features and a refusal with its hints are a few hundred bytes.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// How a handshake that did not produce a link ended.
#[derive(Debug)]
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

/// Which end of the link we are. The acceptor's `admit` runs once the dialler's `Hello` is in:
/// `Err` turns it away with that refusal, `ClosingReason` being what we log.
pub enum Side<A> {
    Dialler,
    Acceptor { admit: A },
}

/// What a successful handshake learned.
#[derive(Debug)]
pub struct Handshaken {
    pub theirs: Features,
    /// The same number at both ends; unpredictable as long as one end is honest.
    pub link_id: u64,
}

fn wire_failure(err: WireError) -> HandshakeFailure {
    match err {
        WireError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            ClosingReason::PeerClosed.into()
        }
        WireError::Io { op, source } => ClosingReason::Io(format!("{op}: {source}")).into(),
        other => ClosingReason::Protocol(other.to_string()).into(),
    }
}

async fn send(stream: &mut TcpStream, out: &[u8]) -> Result<(), WireError> {
    stream.write_all(out).await.map_err(|source| WireError::Io {
        op: "sending the handshake",
        source,
    })
}

fn frame<T: serde::Serialize>(
    what: &'static str,
    message: &T,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    encode_frame(&encode_message(what, message)?, out)
}

async fn read_frame<T: serde::de::DeserializeOwned>(
    stream: &mut TcpStream,
    what: &'static str,
) -> Result<T, WireError> {
    let io = |source| WireError::Io {
        op: "reading the handshake",
        source,
    };
    let len = stream.read_u32().await.map_err(io)? as usize;
    if len > MAX_HELLO_BYTES {
        return Err(WireError::FrameTooLarge {
            len,
            max: MAX_HELLO_BYTES,
        });
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(io)?;
    decode_message(what, &body)
}

async fn read_header(stream: &mut TcpStream) -> Result<(), WireError> {
    let mut header = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|source| WireError::Io {
            op: "reading the handshake",
            source,
        })?;
    negotiate(ProtocolHeader::OURS, ProtocolHeader::decode(&header)?)?;
    Ok(())
}

/// Reads the other side's `Hello`: its features, or its refusal as a failure.
async fn read_hello(stream: &mut TcpStream) -> Result<Features, HandshakeFailure> {
    match read_frame(stream, "hello").await.map_err(wire_failure)? {
        Hello::Features(theirs) => Ok(theirs),
        Hello::Refused(refusal) => Err(HandshakeFailure {
            reason: ClosingReason::Refused(refusal.reason),
            alternatives: refusal.alternatives,
        }),
    }
}

/// Presents `ours` (committing to `nonce`) and returns the remote's features and the link id,
/// within `timeout`.
pub async fn handshake<A>(
    stream: &mut TcpStream,
    ours: &Features,
    nonce: &LinkNonce,
    side: Side<A>,
    timeout: Duration,
) -> Result<Handshaken, HandshakeFailure>
where
    A: FnOnce() -> Result<(), (ClosingReason, Refusal)>,
{
    let exchange = async {
        let mut out = BytesMut::with_capacity(256);
        out.extend_from_slice(&ProtocolHeader::OURS.encode());
        let theirs = match side {
            Side::Dialler => {
                frame("hello", &Hello::Features(ours.clone()), &mut out).map_err(wire_failure)?;
                send(stream, &out).await.map_err(wire_failure)?;
                out.clear();
                read_header(stream).await.map_err(wire_failure)?;
                read_hello(stream).await?
            }
            Side::Acceptor { admit } => {
                // The header goes out at once, so that whoever connected sees what listens here
                // even before it speaks.
                send(stream, &out).await.map_err(wire_failure)?;
                out.clear();
                read_header(stream).await.map_err(wire_failure)?;
                let theirs = read_hello(stream).await?;
                if let Err((reason, refusal)) = admit() {
                    frame("hello", &Hello::Refused(refusal), &mut out).map_err(wire_failure)?;
                    let _ = send(stream, &out).await;
                    let _ = stream.shutdown().await;
                    return Err(reason.into());
                }
                // Goes out with our reveal below: the dialler is committed already.
                frame("hello", &Hello::Features(ours.clone()), &mut out).map_err(wire_failure)?;
                theirs
            }
        };
        // A commitment sent back to us would let its sender open it with our own nonce once we
        // reveal it, making the link id 0, the id that wins every tie-break.
        if theirs.conn_commit == ours.conn_commit {
            return Err(protocol("the remote sent our own link id commitment back").into());
        }
        frame("reveal", &Reveal { nonce: *nonce }, &mut out).map_err(wire_failure)?;
        send(stream, &out).await.map_err(wire_failure)?;
        let revealed: Reveal = read_frame(stream, "reveal").await.map_err(wire_failure)?;
        if !revealed.nonce.opens(&theirs.conn_commit) {
            return Err(
                protocol("the remote's link id share does not match its commitment").into(),
            );
        }
        Ok(Handshaken {
            link_id: link_id(nonce, &revealed.nonce),
            theirs,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(ClosingReason::HandshakeTimeout.into()))
}

fn protocol(why: &str) -> ClosingReason {
    ClosingReason::Protocol(why.to_string())
}

/// Turns a connection away with `refusal`: header and refusal sent, nothing read, then closed.
/// Cheap by design: it runs before any state is created for the connection.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let mut out = BytesMut::with_capacity(256);
        out.extend_from_slice(&ProtocolHeader::OURS.encode());
        frame("hello", &Hello::Refused(refusal), &mut out)?;
        send(&mut stream, &out).await?;
        stream.shutdown().await.map_err(|source| WireError::Io {
            op: "closing a refused connection",
            source,
        })
    })
    .await;
}
