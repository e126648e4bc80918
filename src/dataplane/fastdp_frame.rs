//! The fastdp heartbeat frame (sans-IO): an Ethernet frame sent through the VXLAN device from our
//! bridge MAC to a neighbour's bridge MAC, padded to the full overlay frame size, so that an ack
//! proves the kernel path carries full-MTU frames both ways (Weave Net's fastdp heartbeat also
//! doubled as its MTU check). Frames are built and parsed here; sockets are in
//! [`super::fastdp_heartbeat`].
//!
//! Layout after the 14-byte Ethernet header (ethertype [`ETHERTYPE`]):
//! `magic "WFDP" | version u8 | kind u8 | seq u64 BE | sender name 6B | size u32 BE | zero padding`.
//! `size` is the whole frame length the sender built: a frame that arrives shorter was cut
//! somewhere and proves nothing.

use crate::topology::PeerName;
use crate::wire::MacAddr;

/// IEEE 802 "Local Experimental Ethertype 1" (IEEE Std 802-2014 §9.2.4): never carried by pods'
/// own protocols, so a BPF filter on it copies nothing but heartbeats to userspace.
pub const ETHERTYPE: u16 = 0x88B5;
/// Identifies a Weft fastdp heartbeat among other experimental-ethertype frames.
pub const MAGIC: [u8; 4] = *b"WFDP";
/// Format version; a frame of another version is ignored, not misread.
pub const VERSION: u8 = 1;
/// Ethernet header: destination, source, ethertype.
pub const ETHERNET_HEADER_BYTES: usize = 14;
/// Heartbeat fields after the Ethernet header: magic 4 + version 1 + kind 1 + seq 8 + sender 6 +
/// size 4.
pub const BODY_BYTES: usize = 4 + 1 + 1 + 8 + 6 + 4;
/// The smallest frame we build: Ethernet's 60-byte minimum (IEEE 802.3, without FCS) covers the
/// header and body.
pub const MIN_FRAME_BYTES: usize = 60;

/// Heartbeat (asks for an ack) or ack (answers one, echoing its sequence number).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Heartbeat,
    Ack,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Heartbeat => 1,
            Kind::Ack => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::Ack),
            _ => None,
        }
    }
}

/// One heartbeat or ack, as carried.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Frame {
    /// The receiver's bridge MAC (its peer name).
    pub dst: MacAddr,
    /// The sender's bridge MAC (its peer name).
    pub src: MacAddr,
    pub kind: Kind,
    /// Heartbeats count up; an ack echoes the heartbeat's.
    pub seq: u64,
    pub sender: PeerName,
    /// Total frame length in bytes, header included.
    pub size: usize,
}

/// Why bytes are not a heartbeat frame. Not an error to log per frame: the socket's BPF filter
/// lets through every frame of the experimental ethertype, which other software may use too.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a heartbeat")]
    TooShort(usize),
    #[error("not a Weft heartbeat (ethertype or magic)")]
    NotHeartbeat,
    #[error("heartbeat version {0} is not ours")]
    Version(u8),
    #[error("unknown heartbeat kind {0}")]
    Kind(u8),
    #[error("frame of {got} bytes was sent as {sent} bytes")]
    Truncated { got: usize, sent: usize },
}

/// The frame length that proves an overlay MTU of `mtu` bytes: the MTU plus the Ethernet header,
/// never below [`MIN_FRAME_BYTES`].
pub fn frame_len_for_mtu(mtu: u32) -> usize {
    (mtu as usize + ETHERNET_HEADER_BYTES).max(MIN_FRAME_BYTES)
}

/// The frame's bytes, `frame.size` long (at least [`MIN_FRAME_BYTES`]).
pub fn encode(frame: &Frame) -> Vec<u8> {
    let size = frame.size.max(MIN_FRAME_BYTES);
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&frame.dst.0);
    bytes.extend_from_slice(&frame.src.0);
    bytes.extend_from_slice(&ETHERTYPE.to_be_bytes());
    bytes.extend_from_slice(&MAGIC);
    bytes.push(VERSION);
    bytes.push(frame.kind.to_byte());
    bytes.extend_from_slice(&frame.seq.to_be_bytes());
    bytes.extend_from_slice(&frame.sender.to_bytes());
    // A size beyond u32 is no Ethernet frame; saturate rather than wrap.
    let wire_size = u32::try_from(size).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&wire_size.to_be_bytes());
    bytes.resize(size, 0);
    bytes
}

/// Parses a received frame. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    if bytes.len() < ETHERNET_HEADER_BYTES + BODY_BYTES {
        return Err(FrameError::TooShort(bytes.len()));
    }
    let (header, body) = bytes.split_at(ETHERNET_HEADER_BYTES);
    if header[12..14] != ETHERTYPE.to_be_bytes() || body[0..4] != MAGIC {
        return Err(FrameError::NotHeartbeat);
    }
    if body[4] != VERSION {
        return Err(FrameError::Version(body[4]));
    }
    let kind = Kind::from_byte(body[5]).ok_or(FrameError::Kind(body[5]))?;
    let mac = |slice: &[u8]| {
        let mut mac = [0; 6];
        mac.copy_from_slice(slice);
        MacAddr(mac)
    };
    let mut seq = [0; 8];
    seq.copy_from_slice(&body[6..14]);
    let mut sender = [0; 6];
    sender.copy_from_slice(&body[14..20]);
    let mut size = [0; 4];
    size.copy_from_slice(&body[20..24]);
    let sent = u32::from_be_bytes(size) as usize;
    if bytes.len() < sent {
        return Err(FrameError::Truncated {
            got: bytes.len(),
            sent,
        });
    }
    Ok(Frame {
        dst: mac(&header[0..6]),
        src: mac(&header[6..12]),
        kind,
        seq: u64::from_be_bytes(seq),
        sender: PeerName::from_bytes(sender),
        size: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frame(kind: Kind, size: usize) -> Frame {
        Frame {
            dst: MacAddr([0x7e, 1, 2, 3, 4, 5]),
            src: MacAddr([0x7e, 9, 8, 7, 6, 5]),
            kind,
            seq: 41,
            sender: PeerName::from_bytes([0x7e, 9, 8, 7, 6, 5]),
            size,
        }
    }

    #[test]
    fn a_full_mtu_frame_is_mtu_plus_the_ethernet_header() {
        let bytes = encode(&frame(Kind::Heartbeat, frame_len_for_mtu(1450)));
        assert_eq!(bytes.len(), 1464);
        assert_eq!(&bytes[12..14], &[0x88, 0xB5]);
        assert_eq!(frame_len_for_mtu(10), MIN_FRAME_BYTES);
    }

    #[test]
    fn a_cut_frame_is_refused() {
        let bytes = encode(&frame(Kind::Ack, 1464));
        assert_eq!(
            decode(&bytes[..1000]),
            Err(FrameError::Truncated {
                got: 1000,
                sent: 1464
            })
        );
    }

    #[test]
    fn other_ethertypes_and_versions_are_refused() {
        let mut bytes = encode(&frame(Kind::Ack, 100));
        bytes[4 + ETHERNET_HEADER_BYTES] = 9;
        assert_eq!(decode(&bytes), Err(FrameError::Version(9)));
        bytes[12] = 0x08;
        assert_eq!(decode(&bytes), Err(FrameError::NotHeartbeat));
    }

    proptest! {
        #[test]
        fn round_trips(seq: u64, ack: bool, name in 0u64..(1 << 48), size in 0usize..9100) {
            let mut sent = frame(if ack { Kind::Ack } else { Kind::Heartbeat }, size);
            sent.seq = seq;
            sent.sender = PeerName::from_bytes(name.to_be_bytes()[2..].try_into().unwrap());
            let bytes = encode(&sent);
            sent.size = size.max(MIN_FRAME_BYTES);
            prop_assert_eq!(decode(&bytes), Ok(sent));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_heartbeats(at in 0usize..60, byte: u8) {
            let mut bytes = encode(&frame(Kind::Heartbeat, 60));
            bytes[at] = byte;
            let _ = decode(&bytes);
        }
    }
}
