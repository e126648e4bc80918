//! Turning a connection away before any link exists for it: the listener's answer when even a
//! pending-handshake place is out of reach.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::LinkContext;
use crate::wire::{
    Hello, ProtocolHeader, Refusal, Security, WireError, encode_frame, encode_message,
};

/// Turns a connection away with `refusal`: header and refusal sent, nothing read, then closed.
/// Cheap by design: it runs before any state is created for the connection. A mesh with a
/// password sends its header alone: the refusal names other peers, which only a peer that proved
/// the password may learn, and proving it is the work this path exists to skip.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal, links: Arc<LinkContext>) {
    let security = match links.mesh_key {
        Some(_) => Security::Sealed,
        None => Security::Clear,
    };
    let _ = tokio::time::timeout(links.timers.handshake_timeout, async {
        let io = |source| WireError::Io {
            op: "refusing a connection",
            source,
        };
        let mut out = BytesMut::with_capacity(256);
        out.extend_from_slice(&ProtocolHeader::OURS.encode_for(security));
        if security == Security::Clear {
            encode_frame(encode_message("hello", &Hello::Refused(refusal))?, &mut out)?;
        }
        stream.write_all(&out).await.map_err(io)?;
        stream.shutdown().await.map_err(io)
    })
    .await;
}
