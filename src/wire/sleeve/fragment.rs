//! Fragment datagrams: how a frame too big for one datagram (a TSO/GSO super-frame of up to 64 KiB
//! from the TAP's offloads, or a frame above the path MTU) crosses the underlay as several
//! datagrams, each within the path's payload limit, so the underlay never fragments IP.
//!
//! ```text
//! fragment datagram = sender:6 version_flags:1 (FLAG_FRAGMENT)
//!                     source:6 destination:6 frame_id:4 total_len:4 offset:4 vnet_hdr:10 chunk
//! ```
//!
//! Every fragment repeats the 10-byte `virtio_net_hdr` of the whole frame, so the destination can
//! hand the reassembled super-frame to its TAP with the GSO and checksum information and let its
//! kernel segment it. Relays forward fragment datagrams as they are; only the destination
//! reassembles (`crate::dataplane::sleeve::Reassembler`). Sans-IO, borrowed views, checked first.

use super::{
    DATAGRAM_HEADER_LEN, FLAG_FRAGMENT, MAX_DATAGRAM_LEN, MIN_FRAME_LEN, RecordDestination,
    SLEEVE_VERSION, SleeveDatagram, SleeveError,
};
use crate::topology::PeerName;

/// Bytes of the `virtio_net_hdr` carried in each fragment (`struct virtio_net_hdr`, 10 bytes).
pub const FRAGMENT_VNET_HDR_LEN: usize = 10;
/// Bytes in front of a fragment's chunk: datagram header (7) + source (6) + destination (6) +
/// frame id (4) + total length (4) + offset (4) + vnet header (10) = 41.
pub const FRAGMENT_HEADER_LEN: usize =
    DATAGRAM_HEADER_LEN + 6 + 6 + 4 + 4 + 4 + FRAGMENT_VNET_HDR_LEN;
/// Largest frame fragments may describe, in bytes: an IP packet of the IPv4/IPv6 16-bit length
/// limit (65535) behind an Ethernet header (14) and one VLAN tag (4), what a TAP's GSO hands over.
pub const MAX_REASSEMBLED_LEN: usize = 65_535 + 14 + 4;

/// What every fragment of one frame repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentMeta {
    /// The peer that captured the frame.
    pub source: PeerName,
    pub destination: RecordDestination,
    /// Chosen by the source, distinct among its frames in flight.
    pub frame_id: u32,
    /// The whole frame's length in bytes.
    pub total_len: u32,
    /// The whole frame's `virtio_net_hdr`, raw.
    pub vnet_hdr: [u8; FRAGMENT_VNET_HDR_LEN],
}

/// One checked fragment, borrowing its chunk from the received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The previous hop (not necessarily the source).
    pub sender: PeerName,
    pub meta: FragmentMeta,
    /// Where `chunk` starts in the frame, in bytes.
    pub offset: u32,
    pub chunk: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Checks a fragment datagram whole before taking any slice. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SleeveError> {
        if bytes.len() > MAX_DATAGRAM_LEN {
            return Err(SleeveError::TooLong { len: bytes.len() });
        }
        let Some((header, chunk)) = bytes.split_at_checked(FRAGMENT_HEADER_LEN) else {
            return Err(SleeveError::FragmentTooShort {
                len: bytes.len(),
                min: FRAGMENT_HEADER_LEN + 1,
            });
        };
        let version_flags = header[6];
        if version_flags >> 4 != SLEEVE_VERSION {
            return Err(SleeveError::UnsupportedVersion {
                version: version_flags >> 4,
            });
        }
        if version_flags & 0x0f != FLAG_FRAGMENT {
            return Err(SleeveError::ReservedFlags {
                flags: version_flags & 0x0f,
            });
        }
        if chunk.is_empty() {
            return Err(SleeveError::FragmentTooShort {
                len: bytes.len(),
                min: FRAGMENT_HEADER_LEN + 1,
            });
        }
        let six = |at: usize| -> [u8; 6] {
            let mut out = [0u8; 6];
            out.copy_from_slice(&header[at..at + 6]);
            out
        };
        let be32 = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let frame_id = be32(19);
        let total_len = be32(23);
        let offset = be32(27);
        let mut vnet_hdr = [0u8; FRAGMENT_VNET_HDR_LEN];
        vnet_hdr.copy_from_slice(&header[31..41]);
        check_bounds(offset as usize, chunk.len(), total_len as usize)?;
        Ok(Self {
            sender: PeerName::from_bytes(six(0)),
            meta: FragmentMeta {
                source: PeerName::from_bytes(six(7)),
                destination: RecordDestination::from_bytes(six(13)),
                frame_id,
                total_len,
                vnet_hdr,
            },
            offset,
            chunk,
        })
    }
}

fn check_bounds(offset: usize, chunk_len: usize, total_len: usize) -> Result<(), SleeveError> {
    let fits = (MIN_FRAME_LEN..=MAX_REASSEMBLED_LEN).contains(&total_len)
        && chunk_len > 0
        && offset
            .checked_add(chunk_len)
            .is_some_and(|end| end <= total_len);
    if fits {
        Ok(())
    } else {
        Err(SleeveError::FragmentOutOfBounds {
            offset,
            chunk_len,
            total_len,
            min: MIN_FRAME_LEN,
            max: MAX_REASSEMBLED_LEN,
        })
    }
}

/// Appends one fragment datagram to `out`; nothing is written when the bounds do not hold or the
/// destination is the control destination.
pub fn encode_fragment(
    sender: PeerName,
    meta: &FragmentMeta,
    offset: u32,
    chunk: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SleeveError> {
    check_bounds(offset as usize, chunk.len(), meta.total_len as usize)?;
    if meta.destination == RecordDestination::Control {
        return Err(SleeveError::ReservedDestination);
    }
    if FRAGMENT_HEADER_LEN + chunk.len() > MAX_DATAGRAM_LEN {
        return Err(SleeveError::TooLong {
            len: FRAGMENT_HEADER_LEN + chunk.len(),
        });
    }
    out.extend_from_slice(&sender.to_bytes());
    out.push((SLEEVE_VERSION << 4) | FLAG_FRAGMENT);
    out.extend_from_slice(&meta.source.to_bytes());
    out.extend_from_slice(&meta.destination.to_bytes());
    out.extend_from_slice(&meta.frame_id.to_be_bytes());
    out.extend_from_slice(&meta.total_len.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&meta.vnet_hdr);
    out.extend_from_slice(chunk);
    Ok(())
}

/// Appends the fragment datagrams carrying all of `frame` to `out`, back to back, every one
/// exactly `payload_limit` bytes but the last (the layout UDP GSO sends in one syscall). Returns
/// the number of datagrams. Fails, writing nothing, when `payload_limit` leaves no room for a
/// chunk, the frame is out of bounds or `meta.total_len` is not its length.
pub fn encode_fragments(
    sender: PeerName,
    meta: &FragmentMeta,
    frame: &[u8],
    payload_limit: usize,
    out: &mut Vec<u8>,
) -> Result<usize, SleeveError> {
    let chunk_len = fragment_chunk_len(payload_limit).ok_or(SleeveError::FragmentTooShort {
        len: payload_limit,
        min: FRAGMENT_HEADER_LEN + 1,
    })?;
    check_bounds(0, frame.len(), meta.total_len as usize)?;
    if frame.len() != meta.total_len as usize {
        return Err(SleeveError::FragmentOutOfBounds {
            offset: 0,
            chunk_len: frame.len(),
            total_len: meta.total_len as usize,
            min: MIN_FRAME_LEN,
            max: MAX_REASSEMBLED_LEN,
        });
    }
    let start = out.len();
    let mut count = 0;
    for (index, chunk) in frame.chunks(chunk_len).enumerate() {
        // index * chunk_len < frame.len() <= MAX_REASSEMBLED_LEN: fits 32 bits.
        let offset = (index * chunk_len) as u32;
        if let Err(e) = encode_fragment(sender, meta, offset, chunk, out) {
            out.truncate(start);
            return Err(e);
        }
        count += 1;
    }
    Ok(count)
}

/// Bytes of frame each fragment carries on a path of `payload_limit` bytes; `None` when the
/// header alone fills it.
pub fn fragment_chunk_len(payload_limit: usize) -> Option<usize> {
    payload_limit
        .min(MAX_DATAGRAM_LEN)
        .checked_sub(FRAGMENT_HEADER_LEN)
        .filter(|&len| len > 0)
}

/// Overwrites the sender (previous hop) of an encoded datagram of either kind: what a relay does
/// before passing a fragment on unchanged otherwise. No-op on a buffer shorter than a header.
pub fn set_datagram_sender(datagram: &mut [u8], sender: PeerName) {
    if let Some(field) = datagram.get_mut(..6) {
        field.copy_from_slice(&sender.to_bytes());
    }
}

/// A received datagram of either kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    Records(SleeveDatagram<'a>),
    Fragment(Fragment<'a>),
}

impl<'a> Datagram<'a> {
    /// Parses records or a fragment, as the flags say. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SleeveError> {
        let fragment = bytes
            .get(DATAGRAM_HEADER_LEN - 1)
            .is_some_and(|&version_flags| version_flags & 0x0f == FLAG_FRAGMENT);
        if fragment {
            Fragment::parse(bytes).map(Datagram::Fragment)
        } else {
            SleeveDatagram::parse(bytes).map(Datagram::Records)
        }
    }
}

#[cfg(test)]
mod tests;
