//! The sleeve UDP datagram: a batch of Ethernet frames, each tagged with the peer that captured it
//! and the peer it is for, plus the control records (heartbeats, PMTU probes) exchanged between
//! the two ends of one sleeve connection. Sans-IO: this module only turns bytes into records and
//! back; sockets and the batching policy live in `crate::dataplane::sleeve`.
//!
//! Layout (all integers big-endian, as in Weave Net's `router/sleeve.go`):
//!
//! ```text
//! datagram  = header record*
//! header    = sender:6 version_flags:1          version in the high nibble, flags in the low one
//! record    = source:6 destination:6 length:2 body[length]
//!   data    : destination is a real peer, BROADCAST_DESTINATION (ff:ff:ff:ff:ff:ff: deliver and
//!             relay along the source's broadcast tree) or RELAY_ONLY_DESTINATION
//!             (ff:ff:ff:ff:ff:fe: relay only, the kernel already delivered it here); body is one
//!             Ethernet frame (>= 14 bytes)
//!   control : destination is CONTROL_DESTINATION (00:00:00:00:00:00), body = kind:1 fields
//!     heartbeat      kind=1 connection_id:8
//!     heartbeat ack  kind=2 connection_id:8
//!     PMTU probe     kind=3 probe_id:4 mtu:2 zero padding, body length = mtu + 14 exactly
//!     PMTU ack       kind=4 probe_id:4 mtu:2
//! ```
//!
//! Control records are told apart by a reserved destination rather than a per-record type byte, so
//! data records cost exactly Weave's 14 bytes. No peer can be named `00:00:00:00:00:00`: random
//! names set the locally-administered bit and MAC-derived names come from real, non-zero MACs.
//!
//! A PMTU probe's body is as long as a data record carrying a frame whose IP packet is `mtu` bytes,
//! so a probe that arrives proves the path carries full-size frames at that MTU.
//!
//! A datagram with [`FLAG_FRAGMENT`] set carries no records but exactly one fragment of a frame
//! too big for one datagram (see [`fragment`]).
//!
//! With a mesh password a datagram is sealed ([`seal`]: flag 0x2, a counter, ChaCha20-Poly1305),
//! and opening it yields one of the plain datagrams above; this parser refuses a sealed one as a
//! reserved flag.
//!
//! Peer names never have the multicast bit (the lowest bit of the first byte) set, so the
//! destinations with it set are free to mean "broadcast" and "relay only".
//!
//! An unknown version, a reserved flag or an unknown control kind rejects the whole datagram: new
//! kinds come with a new version, negotiated on the TCP connection, so they are never guessed at.
//!
//! Decoding checks the whole datagram first ([`SleeveDatagram::parse`]), so iterating its records
//! afterwards cannot fail, and frames are borrowed slices of the received buffer (zero copy).

use crate::topology::PeerName;

pub mod fragment;
pub mod seal;

/// Bytes of the underlay's IPv4 (20, no options) and UDP (8) headers around every datagram.
pub const UNDERLAY_IPV4_UDP_OVERHEAD: usize = 28;
/// Bytes of the datagram header: sender peer name (6) and the version/flags byte (1).
pub const DATAGRAM_HEADER_LEN: usize = 7;
/// Bytes in front of every record body: source (6), destination (6), length (2). Weave Net's 14.
pub const RECORD_HEADER_LEN: usize = 14;
/// Bytes of an Ethernet header without VLAN tag (dst MAC, src MAC, ethertype): the smallest frame
/// a data record may carry, and what an IP packet grows by when carried as a frame.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Everything the sleeve adds between an IP packet in a pod and the underlay link, for a datagram
/// carrying one frame: 28 + 7 + 14 + 14 = 63 bytes. One more than Weave Net's 62 (the version
/// byte), so a 1500-byte underlay gives an effective MTU of 1437 (Weave: 1438).
pub const SLEEVE_OVERHEAD: usize =
    UNDERLAY_IPV4_UDP_OVERHEAD + DATAGRAM_HEADER_LEN + RECORD_HEADER_LEN + ETHERNET_HEADER_LEN;
/// Largest datagram accepted or built, in bytes: the UDP length field's range.
pub const MAX_DATAGRAM_LEN: usize = 65_535;
/// Largest frame a record can describe, in bytes: the range of its 16-bit length field.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// Smallest frame a data record may carry, in bytes: a bare Ethernet header.
pub const MIN_FRAME_LEN: usize = ETHERNET_HEADER_LEN;
/// Protocol version, carried in the high nibble of the header's seventh byte.
pub const SLEEVE_VERSION: u8 = 1;
/// The destination that marks a record as a control record rather than a frame.
pub const CONTROL_DESTINATION: [u8; 6] = [0; 6];
/// The destination of a broadcast, multicast or unknown-unicast frame: deliver it, and relay it to
/// our children in its source's broadcast tree.
pub const BROADCAST_DESTINATION: [u8; 6] = [0xff; 6];
/// The destination of a broadcast the kernel (fastdp) already delivered at the receiver, which
/// must only relay it to its children in the source's tree.
pub const RELAY_ONLY_DESTINATION: [u8; 6] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];
/// Flag (low nibble of the version byte): the datagram carries one fragment, not records.
pub const FLAG_FRAGMENT: u8 = 0x1;

const CONTROL_HEARTBEAT: u8 = 1;
const CONTROL_HEARTBEAT_ACK: u8 = 2;
const CONTROL_PMTU_PROBE: u8 = 3;
const CONTROL_PMTU_ACK: u8 = 4;
/// kind (1) + connection id (8).
const HEARTBEAT_BODY_LEN: usize = 9;
/// kind (1) + probe id (4) + mtu (2).
const PMTU_FIELDS_LEN: usize = 7;

/// The largest IP packet (the MTU pods should use) that fits a sleeve datagram on an underlay link
/// of `underlay_mtu` bytes: `underlay_mtu - SLEEVE_OVERHEAD`, so 1500 gives 1437. Zero when the
/// underlay cannot carry even a header; an underlay above [`MAX_DATAGRAM_LEN`] (loopback's 65536)
/// counts as that limit.
pub const fn effective_mtu(underlay_mtu: u32) -> usize {
    datagram_payload_limit(underlay_mtu)
        .saturating_sub(DATAGRAM_HEADER_LEN + RECORD_HEADER_LEN + ETHERNET_HEADER_LEN)
}

/// The largest datagram (UDP payload) an underlay link of `underlay_mtu` bytes carries unfragmented.
pub const fn datagram_payload_limit(underlay_mtu: u32) -> usize {
    let underlay = if underlay_mtu as usize > MAX_DATAGRAM_LEN {
        MAX_DATAGRAM_LEN
    } else {
        underlay_mtu as usize
    };
    underlay.saturating_sub(UNDERLAY_IPV4_UDP_OVERHEAD)
}

/// What a data record's (or fragment's) destination field means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordDestination {
    /// A frame for one peer (possibly via relays).
    Peer(PeerName),
    /// Deliver, and relay along the source's broadcast tree.
    Broadcast,
    /// Relay along the source's broadcast tree only: the kernel delivered it here already.
    RelayOnly,
    /// The all-zero destination of control records.
    Control,
}

impl RecordDestination {
    /// Classifies the six bytes of a destination field.
    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        match bytes {
            CONTROL_DESTINATION => Self::Control,
            BROADCAST_DESTINATION => Self::Broadcast,
            RELAY_ONLY_DESTINATION => Self::RelayOnly,
            _ => Self::Peer(PeerName::from_bytes(bytes)),
        }
    }

    /// The six bytes written in a destination field.
    pub fn to_bytes(self) -> [u8; 6] {
        match self {
            Self::Peer(peer) => peer.to_bytes(),
            Self::Broadcast => BROADCAST_DESTINATION,
            Self::RelayOnly => RELAY_ONLY_DESTINATION,
            Self::Control => CONTROL_DESTINATION,
        }
    }

    /// The name to put in a record's destination field (the reserved names included).
    pub fn as_peer_name(self) -> PeerName {
        PeerName::from_bytes(self.to_bytes())
    }
}

/// Why a datagram was rejected, or why a record cannot be encoded. Offsets count from the start of
/// the datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SleeveError {
    #[error("datagram of {len} bytes is shorter than its {DATAGRAM_HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("datagram of {len} bytes exceeds the limit of {MAX_DATAGRAM_LEN} bytes")]
    TooLong { len: usize },
    #[error("unsupported sleeve version {version} (we speak {SLEEVE_VERSION})")]
    UnsupportedVersion { version: u8 },
    #[error("reserved sleeve flags {flags:#x} are set")]
    ReservedFlags { flags: u8 },
    #[error("record header at offset {offset} is truncated")]
    TruncatedRecordHeader { offset: usize },
    #[error("record at offset {offset} declares {declared} bytes but only {available} remain")]
    TruncatedRecord {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("frame of {len} bytes is shorter than an Ethernet header ({MIN_FRAME_LEN} bytes)")]
    FrameTooShort { len: usize },
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    FrameTooLong { len: usize },
    #[error("unknown control record kind {kind} at offset {offset}")]
    UnknownControl { offset: usize, kind: u8 },
    #[error("control record kind {kind} at offset {offset} has a malformed {len}-byte body")]
    MalformedControl { offset: usize, kind: u8, len: usize },
    #[error("a data record cannot be addressed to the reserved control destination")]
    ReservedDestination,
    #[error("fragment datagram of {len} bytes is shorter than its {min}-byte header and one byte")]
    FragmentTooShort { len: usize, min: usize },
    #[error(
        "fragment at offset {offset} of {chunk_len} bytes does not fit a frame of {total_len} bytes \
         (frames of {min}..={max} bytes)"
    )]
    FragmentOutOfBounds {
        offset: usize,
        chunk_len: usize,
        total_len: usize,
        min: usize,
        max: usize,
    },
    #[error("datagram carries a fragment, not records")]
    IsFragment,
}

/// A control record: hop-by-hop signalling between the two ends of one sleeve connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// "I can reach you on this address": proves the UDP path works and teaches an inbound peer
    /// our address. The id ties it to one mesh connection, so a stale one is ignored.
    Heartbeat {
        connection_id: u64,
    },
    HeartbeatAck {
        connection_id: u64,
    },
    /// Tests whether frames carrying IP packets of `mtu` bytes cross the path (sent with DF).
    PmtuProbe {
        probe_id: u32,
        mtu: u16,
    },
    PmtuAck {
        probe_id: u32,
        mtu: u16,
    },
}

impl Control {
    /// Length of this control record's body in bytes.
    pub fn body_len(&self) -> usize {
        match self {
            Control::Heartbeat { .. } | Control::HeartbeatAck { .. } => HEARTBEAT_BODY_LEN,
            Control::PmtuProbe { mtu, .. } => usize::from(*mtu) + ETHERNET_HEADER_LEN,
            Control::PmtuAck { .. } => PMTU_FIELDS_LEN,
        }
    }

    fn decode(offset: usize, body: &[u8]) -> Result<Control, SleeveError> {
        let kind = *body.first().ok_or(SleeveError::MalformedControl {
            offset,
            kind: 0,
            len: 0,
        })?;
        let malformed = SleeveError::MalformedControl {
            offset,
            kind,
            len: body.len(),
        };
        match kind {
            CONTROL_HEARTBEAT | CONTROL_HEARTBEAT_ACK => {
                let id: [u8; 8] = body
                    .get(1..)
                    .and_then(|rest| rest.try_into().ok())
                    .ok_or(malformed)?;
                let connection_id = u64::from_be_bytes(id);
                Ok(if kind == CONTROL_HEARTBEAT {
                    Control::Heartbeat { connection_id }
                } else {
                    Control::HeartbeatAck { connection_id }
                })
            }
            CONTROL_PMTU_PROBE | CONTROL_PMTU_ACK => {
                let (Some(id), Some(mtu)) = (body.get(1..5), body.get(5..7)) else {
                    return Err(malformed);
                };
                let probe_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
                let mtu = u16::from_be_bytes([mtu[0], mtu[1]]);
                let control = if kind == CONTROL_PMTU_PROBE {
                    Control::PmtuProbe { probe_id, mtu }
                } else {
                    Control::PmtuAck { probe_id, mtu }
                };
                // Exact lengths: a probe cut short by a middlebox must not count as delivered.
                if body.len() != control.body_len() {
                    return Err(malformed);
                }
                Ok(control)
            }
            _ => Err(SleeveError::UnknownControl { offset, kind }),
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match *self {
            Control::Heartbeat { connection_id } | Control::HeartbeatAck { connection_id } => {
                let kind = if matches!(self, Control::Heartbeat { .. }) {
                    CONTROL_HEARTBEAT
                } else {
                    CONTROL_HEARTBEAT_ACK
                };
                out.push(kind);
                out.extend_from_slice(&connection_id.to_be_bytes());
            }
            Control::PmtuProbe { probe_id, mtu } | Control::PmtuAck { probe_id, mtu } => {
                let kind = if matches!(self, Control::PmtuProbe { .. }) {
                    CONTROL_PMTU_PROBE
                } else {
                    CONTROL_PMTU_ACK
                };
                out.push(kind);
                out.extend_from_slice(&probe_id.to_be_bytes());
                out.extend_from_slice(&mtu.to_be_bytes());
                out.resize(out.len() + self.body_len() - PMTU_FIELDS_LEN, 0);
            }
        }
    }
}

/// One record of a datagram, borrowing its frame from the received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// An Ethernet frame captured at `source` and bound for `destination` (possibly via relays).
    Frame {
        source: PeerName,
        destination: PeerName,
        frame: &'a [u8],
    },
    Control {
        source: PeerName,
        control: Control,
    },
}

impl Record<'_> {
    /// What the destination field means: a peer, a broadcast, relay-only, or control.
    pub fn destination(&self) -> RecordDestination {
        match self {
            Record::Frame { destination, .. } => {
                RecordDestination::from_bytes(destination.to_bytes())
            }
            Record::Control { .. } => RecordDestination::Control,
        }
    }

    /// Bytes this record takes in a datagram, header included.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN
            + match self {
                Record::Frame { frame, .. } => frame.len(),
                Record::Control { control, .. } => control.body_len(),
            }
    }

    /// Appends this record to `out`, checking the frame's size and destination first so that
    /// nothing is written when it fails.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), SleeveError> {
        match *self {
            Record::Frame {
                source,
                destination,
                frame,
            } => encode_frame_record(source, destination, frame, out),
            Record::Control { source, control } => encode_control_record(source, control, out),
        }
    }
}

/// Appends the datagram header for `sender` to `out`.
pub fn encode_datagram_header(sender: PeerName, out: &mut Vec<u8>) {
    out.extend_from_slice(&sender.to_bytes());
    out.push(SLEEVE_VERSION << 4);
}

/// Appends one data record to `out`; nothing is written when the frame is out of bounds or the
/// destination is the reserved control destination.
pub fn encode_frame_record(
    source: PeerName,
    destination: PeerName,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SleeveError> {
    check_frame_record(destination, frame)?;
    out.extend_from_slice(&source.to_bytes());
    out.extend_from_slice(&destination.to_bytes());
    // Bounded by check_frame_record, so the length fits 16 bits.
    out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    out.extend_from_slice(frame);
    Ok(())
}

/// The checks [`encode_frame_record`] makes, for callers that size a batch before writing.
pub fn check_frame_record(destination: PeerName, frame: &[u8]) -> Result<(), SleeveError> {
    if frame.len() < MIN_FRAME_LEN {
        return Err(SleeveError::FrameTooShort { len: frame.len() });
    }
    if frame.len() > MAX_FRAME_LEN {
        return Err(SleeveError::FrameTooLong { len: frame.len() });
    }
    if destination.to_bytes() == CONTROL_DESTINATION {
        return Err(SleeveError::ReservedDestination);
    }
    Ok(())
}

/// Appends one control record to `out`. Only a PMTU probe can fail: its body is `mtu + 14`
/// bytes, which the 16-bit length cannot express above an mtu of 65521.
pub fn encode_control_record(
    source: PeerName,
    control: Control,
    out: &mut Vec<u8>,
) -> Result<(), SleeveError> {
    let body_len = control.body_len();
    if body_len > MAX_FRAME_LEN {
        return Err(SleeveError::FrameTooLong { len: body_len });
    }
    out.extend_from_slice(&source.to_bytes());
    out.extend_from_slice(&CONTROL_DESTINATION);
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
    control.encode_body(out);
    Ok(())
}

/// Replaces `out` with a datagram holding the single control record `control`: how heartbeats and
/// PMTU probes are sent, alone, so a probe's size is exactly the size under test.
pub fn encode_control_datagram(
    sender: PeerName,
    control: Control,
    out: &mut Vec<u8>,
) -> Result<(), SleeveError> {
    out.clear();
    encode_datagram_header(sender, out);
    encode_control_record(sender, control, out).inspect_err(|_| out.clear())
}

/// A received datagram whose every record has been checked; iterate them with [`Self::records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleeveDatagram<'a> {
    sender: PeerName,
    records: &'a [u8],
    record_count: usize,
}

impl<'a> SleeveDatagram<'a> {
    /// Checks the header and walks every record header, validating each length against what is
    /// left before any slice is taken. Never panics; rejects the whole datagram on the first flaw,
    /// since a datagram is one UDP payload and a flaw means corruption or a hostile sender.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SleeveError> {
        if bytes.len() > MAX_DATAGRAM_LEN {
            return Err(SleeveError::TooLong { len: bytes.len() });
        }
        let (Some(header), Some(records)) = (
            bytes.get(..DATAGRAM_HEADER_LEN),
            bytes.get(DATAGRAM_HEADER_LEN..),
        ) else {
            return Err(SleeveError::TooShort { len: bytes.len() });
        };
        let version_flags = header[6];
        if version_flags >> 4 != SLEEVE_VERSION {
            return Err(SleeveError::UnsupportedVersion {
                version: version_flags >> 4,
            });
        }
        if version_flags & 0x0f == FLAG_FRAGMENT {
            return Err(SleeveError::IsFragment);
        }
        if version_flags & 0x0f != 0 {
            return Err(SleeveError::ReservedFlags {
                flags: version_flags & 0x0f,
            });
        }
        let mut sender = [0u8; 6];
        sender.copy_from_slice(&header[..6]);

        let mut walker = RecordWalker {
            rest: records,
            offset: DATAGRAM_HEADER_LEN,
        };
        let mut record_count = 0;
        while let Some(record) = walker.next_record() {
            record?;
            record_count += 1;
        }
        Ok(Self {
            sender: PeerName::from_bytes(sender),
            records,
            record_count,
        })
    }

    /// The peer that sent this datagram (the previous hop, not necessarily the frames' source).
    pub fn sender(&self) -> PeerName {
        self.sender
    }

    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The records in order. Infallible: [`Self::parse`] already checked them all.
    pub fn records(&self) -> Records<'a> {
        Records {
            walker: RecordWalker {
                rest: self.records,
                offset: DATAGRAM_HEADER_LEN,
            },
        }
    }
}

/// Iterator over the records of a checked [`SleeveDatagram`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    walker: RecordWalker<'a>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        // Errors cannot happen after parse; stopping on one keeps this panic-free regardless.
        self.walker.next_record()?.ok()
    }
}

/// Splits records off the front of a byte slice, checking each before slicing it.
#[derive(Debug, Clone)]
struct RecordWalker<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> RecordWalker<'a> {
    fn next_record(&mut self) -> Option<Result<Record<'a>, SleeveError>> {
        if self.rest.is_empty() {
            return None;
        }
        let result = self.split_record();
        if result.is_err() {
            // Stop after the first error: nothing after a bad length can be trusted.
            self.rest = &[];
        }
        Some(result)
    }

    fn split_record(&mut self) -> Result<Record<'a>, SleeveError> {
        let offset = self.offset;
        let Some((header, rest)) = self.rest.split_at_checked(RECORD_HEADER_LEN) else {
            return Err(SleeveError::TruncatedRecordHeader { offset });
        };
        let declared = usize::from(u16::from_be_bytes([header[12], header[13]]));
        let Some((body, rest)) = rest.split_at_checked(declared) else {
            return Err(SleeveError::TruncatedRecord {
                offset,
                declared,
                available: rest.len(),
            });
        };
        let mut source = [0u8; 6];
        source.copy_from_slice(&header[..6]);
        let source = PeerName::from_bytes(source);
        let mut destination = [0u8; 6];
        destination.copy_from_slice(&header[6..12]);

        let record = if destination == CONTROL_DESTINATION {
            Record::Control {
                source,
                control: Control::decode(offset, body)?,
            }
        } else {
            if body.len() < MIN_FRAME_LEN {
                return Err(SleeveError::FrameTooShort { len: body.len() });
            }
            Record::Frame {
                source,
                destination: PeerName::from_bytes(destination),
                frame: body,
            }
        };
        self.rest = rest;
        self.offset += RECORD_HEADER_LEN + declared;
        Ok(record)
    }
}

#[cfg(test)]
mod tests;
