//! Every byte format of the mesh: the TCP protocol header, length-prefixed framing, the control
//! messages carried in frames, the records of a sealed (password-protected) link, the gossip
//! payloads and the sleeve UDP datagrams ([`sleeve`]).
//! Decoding checks before it parses, bounds every size, and never panics on arbitrary input (each
//! format has a property test for that).

mod framing;
mod gossip;
mod header;
mod link_id;
mod message;
mod record;
pub mod sleeve;

pub use framing::{FrameCodec, MAX_FRAME_BYTES, encode_frame};
pub use gossip::{
    MAX_RECORDS_PER_UPDATE, MAX_TOPOLOGY_PAYLOAD_BYTES, decode_topology, encode_topology,
    encode_topology_pieces,
};
pub use header::{
    HEADER_LEN, MAGIC, MAGIC_SEALED, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, ProtocolHeader,
    Security, negotiate,
};
pub use link_id::{LinkCommitment, LinkNonce, NONCE_LEN, Reveal, link_id};
pub use message::{
    Features, Hello, OVERLAYS_NONE, ProtocolMsg, Refusal, RefusalReason, SleeveKeyBytes,
    decode_message, encode_message,
};
pub use record::{
    MAX_RECORD_BYTES, MAX_RECORD_PLAINTEXT, RECORD_PREFIX_BYTES, RECORD_TAG_BYTES, Record,
    decode_record, encode_record,
};
pub use weft_netdev::mac::{MacAddr, MacAddrError};

/// Errors of the wire layer: what was being decoded and why it was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad protocol magic {found:?} (not a weft peer)")]
    BadMagic { found: [u8; 4] },
    #[error(
        "remote protocol version range {remote_min}..{remote_max} is incompatible with ours {ours_min}..{ours_max}"
    )]
    IncompatibleVersion {
        remote_min: u8,
        remote_max: u8,
        ours_min: u8,
        ours_max: u8,
    },
    #[error("record of {len} bytes is shorter than the {min}-byte tag it must carry")]
    RecordTooShort { len: usize, min: usize },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("malformed {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("topology update with {count} records exceeds the limit of {max}")]
    TooManyRecords { count: usize, max: usize },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("i/o error while {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<std::io::Error> for WireError {
    fn from(source: std::io::Error) -> Self {
        WireError::Io {
            op: "reading a frame",
            source,
        }
    }
}
