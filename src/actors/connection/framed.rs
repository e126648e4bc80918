//! A message encoded and framed once for every link that sends it. Gossip sends the same
//! message to many links: a topology update to 2·log2(peers) neighbours, a broadcast to every
//! child of the tree, a full state to each new neighbour. Framed per link, a router at 30 links
//! held 30 copies of each in its outboxes; framed once, links without a password share one
//! buffer, and links with one seal from it.

use bytes::{Bytes, BytesMut};

use crate::wire::{ProtocolMsg, WireError, encode_frame, encode_message};

/// A message as the links send it: its length-prefixed frame, or why it cannot be sent.
#[derive(Clone, Debug, PartialEq)]
pub enum FramedMessage {
    Frame(Bytes),
    /// Over the frame limit: sending it would fail the link for the message's fault.
    TooLarge {
        bytes: usize,
    },
    /// MessagePack could not encode it.
    Unencodable(String),
}

impl FramedMessage {
    pub fn of(msg: &ProtocolMsg) -> Self {
        let mut out = BytesMut::new();
        match encode_message("message", msg).and_then(|bytes| encode_frame(bytes, &mut out)) {
            Ok(()) => Self::Frame(out.freeze()),
            Err(WireError::FrameTooLarge { len, .. }) => Self::TooLarge { bytes: len },
            Err(err) => Self::Unencodable(err.to_string()),
        }
    }
}
