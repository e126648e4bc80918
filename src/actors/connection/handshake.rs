//! The handshake of a new TCP link: both sides send the protocol header and a `Hello` at once,
//! then read the other's. The whole exchange is bounded in time and size.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClosingReason;
use crate::wire::{
    Features, HEADER_LEN, Hello, ProtocolHeader, Refusal, WireError, decode_message, encode_frame,
    encode_message, negotiate,
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

fn wire_failure(err: WireError) -> HandshakeFailure {
    match err {
        WireError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            ClosingReason::PeerClosed.into()
        }
        WireError::Io { op, source } => ClosingReason::Io(format!("{op}: {source}")).into(),
        other => ClosingReason::Protocol(other.to_string()).into(),
    }
}

async fn send_hello(stream: &mut TcpStream, hello: &Hello) -> Result<(), WireError> {
    let mut out = BytesMut::with_capacity(256);
    out.extend_from_slice(&ProtocolHeader::OURS.encode());
    encode_frame(&encode_message("hello", hello)?, &mut out)?;
    stream
        .write_all(&out)
        .await
        .map_err(|source| WireError::Io {
            op: "sending the handshake",
            source,
        })
}

async fn read_hello(stream: &mut TcpStream) -> Result<Hello, WireError> {
    let io = |source| WireError::Io {
        op: "reading the handshake",
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await.map_err(io)?;
    negotiate(ProtocolHeader::OURS, ProtocolHeader::decode(&header)?)?;
    let len = stream.read_u32().await.map_err(io)? as usize;
    if len > MAX_HELLO_BYTES {
        return Err(WireError::FrameTooLarge {
            len,
            max: MAX_HELLO_BYTES,
        });
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(io)?;
    decode_message("hello", &body)
}

/// Presents `ours` and returns the remote's features, within `timeout`.
pub async fn handshake(
    stream: &mut TcpStream,
    ours: &Features,
    timeout: Duration,
) -> Result<Features, HandshakeFailure> {
    let exchange = async {
        send_hello(stream, &Hello::Features(ours.clone()))
            .await
            .map_err(wire_failure)?;
        match read_hello(stream).await.map_err(wire_failure)? {
            Hello::Features(theirs) => Ok(theirs),
            Hello::Refused(refusal) => Err(HandshakeFailure {
                reason: ClosingReason::Refused(refusal.reason),
                alternatives: refusal.alternatives,
            }),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(ClosingReason::HandshakeTimeout.into()))
}

/// Turns a connection away with `refusal`: header and refusal sent, nothing read, then closed.
/// Cheap by design: it runs before any state is created for the connection.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        send_hello(&mut stream, &Hello::Refused(refusal)).await?;
        stream.shutdown().await.map_err(|source| WireError::Io {
            op: "closing a refused connection",
            source,
        })
    })
    .await;
}
