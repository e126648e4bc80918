//! Turning a connection away before any link exists for it: the listener's answer when even a
//! pending-handshake place is out of reach.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire::{Hello, ProtocolHeader, Refusal, WireError, encode_frame, encode_message};

/// Turns a connection away with `refusal`: header and refusal sent, nothing read, then closed.
/// Cheap by design: it runs before any state is created for the connection.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let io = |source| WireError::Io {
            op: "refusing a connection",
            source,
        };
        let mut out = BytesMut::with_capacity(256);
        out.extend_from_slice(&ProtocolHeader::OURS.encode());
        encode_frame(encode_message("hello", &Hello::Refused(refusal))?, &mut out)?;
        stream.write_all(&out).await.map_err(io)?;
        stream.shutdown().await.map_err(io)
    })
    .await;
}
