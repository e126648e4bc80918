//! Internet checksums (RFC 1071) and completing the partial checksums of frames read from a TAP
//! device opened with `IFF_VNET_HDR`.
//!
//! A pod's TCP/UDP stack with TX checksum offload leaves the transport checksum unfinished: the
//! field holds only the pseudo-header sum, and the `virtio_net_hdr` in front of the frame says
//! `NEEDS_CSUM` with where the sum starts and where it goes. The kernel would finish it on a real
//! NIC; frames that leave through the sleeve never meet one, so the router must finish it before
//! encapsulating, or the receiving pod drops every segment and TCP never connects.

/// Bytes of the `virtio_net_hdr` a TAP prepends with `IFF_VNET_HDR` and the default header size
/// (`struct virtio_net_hdr` in `linux/virtio_net.h`, without `num_buffers`).
pub const VIRTIO_NET_HDR_LEN: usize = 10;
/// `flags` bit: the checksum from `csum_start` to the end must be computed and stored at
/// `csum_start + csum_offset` (`VIRTIO_NET_HDR_F_NEEDS_CSUM` in `linux/virtio_net.h`).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

/// Why a partial checksum could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error(
        "checksum at {csum_start}+{csum_offset} does not fit a frame of {frame_len} bytes (needs 2 bytes)"
    )]
    OutOfFrame {
        csum_start: usize,
        csum_offset: usize,
        frame_len: usize,
    },
}

/// The 16-bit one's-complement sum of `data` read as big-endian words (an odd last byte is padded
/// with zero), folded but not inverted: the building block to add sums of separate pieces with
/// [`ones_complement_add`].
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut words = data.chunks_exact(2);
    // 64 bits cannot overflow: even 2^47 bytes of 0xff would only reach 2^63.
    let mut sum: u64 = words
        .by_ref()
        .map(|word| u64::from(u16::from_be_bytes([word[0], word[1]])))
        .sum();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    fold(sum)
}

/// One's-complement addition of two folded sums.
pub fn ones_complement_add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// The Internet checksum of `data`: the inverted one's-complement sum, as stored in IPv4, ICMP,
/// TCP and UDP headers.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Finishes a checksum the sender's stack left partial: sums `frame[csum_start..]` (which includes
/// the pseudo-header sum the stack put in the checksum field), inverts it and stores it big-endian
/// at `csum_start + csum_offset`. As Linux's `skb_checksum_help` does, a result of zero is stored
/// as 0xffff: equal in one's complement, and for UDP zero would mean "no checksum".
pub fn complete_partial_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), ChecksumError> {
    let out_of_frame = ChecksumError::OutOfFrame {
        csum_start,
        csum_offset,
        frame_len: frame.len(),
    };
    let field = csum_start
        .checked_add(csum_offset)
        .ok_or(out_of_frame.clone())?;
    let field_end = field.checked_add(2).ok_or(out_of_frame.clone())?;
    if field_end > frame.len() {
        return Err(out_of_frame);
    }
    // csum_start <= field < frame.len() here, so both slices are in bounds.
    let checksum = match internet_checksum(&frame[csum_start..]) {
        0 => 0xffff,
        checksum => checksum,
    };
    frame[field..field_end].copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

/// The `virtio_net_hdr` in front of each frame read from (or written to) a TAP opened with
/// `IFF_VNET_HDR`. Fields are little-endian: the native order on x86-64 and arm64, and what
/// `TUNSETVNETLE` requests elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`; anything but NONE (0) is a super-packet to segment first.
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    /// Where the checksummed region starts, from the start of the Ethernet frame.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// Reads the header from the first [`VIRTIO_NET_HDR_LEN`] bytes; `None` when fewer.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let header: &[u8; VIRTIO_NET_HDR_LEN] = bytes.get(..VIRTIO_NET_HDR_LEN)?.try_into().ok()?;
        let le = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        Some(Self {
            flags: header[0],
            gso_type: header[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    pub fn needs_checksum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// Completes `frame`'s checksum when this header asks for it; otherwise leaves it alone.
    pub fn complete_checksum(&self, frame: &mut [u8]) -> Result<(), ChecksumError> {
        if !self.needs_checksum() {
            return Ok(());
        }
        complete_partial_checksum(
            frame,
            usize::from(self.csum_start),
            usize::from(self.csum_offset),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::{TCP_CHECKSUM_OFFSET, TRANSPORT_START, tcp_ipv4_frame};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_1071_example_and_a_real_ipv4_header() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&rfc), 0xddf2);
        assert_eq!(internet_checksum(&rfc), 0x220d);
        // An IPv4 header whose checksum field (0xb861) is correct sums to 0xffff.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ones_complement_sum(&header), 0xffff);
        let mut zeroed = header;
        zeroed[10..12].fill(0);
        assert_eq!(internet_checksum(&zeroed), 0xb861);
        // An odd length pads with a zero byte.
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56]), 0x6834);
    }

    #[test]
    fn completes_a_tcp_segment_with_a_partial_checksum_from_a_tap() {
        let payload = b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n";
        let (mut frame, full_checksum) = tcp_ipv4_frame(payload, true);
        // As a TAP hands it over: header says NEEDS_CSUM, start 34 (TCP header), offset 16.
        let mut vnet = [0u8; VIRTIO_NET_HDR_LEN];
        vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        vnet[6..8].copy_from_slice(&(TRANSPORT_START as u16).to_le_bytes());
        vnet[8..10].copy_from_slice(&(TCP_CHECKSUM_OFFSET as u16).to_le_bytes());
        let header = VirtioNetHdr::parse(&vnet).unwrap();
        assert!(header.needs_checksum());
        assert_eq!(header.csum_start, 34);
        assert_eq!(header.csum_offset, 16);
        header.complete_checksum(&mut frame).unwrap();
        let field = TRANSPORT_START + TCP_CHECKSUM_OFFSET;
        assert_eq!(
            u16::from_be_bytes([frame[field], frame[field + 1]]),
            full_checksum
        );
    }

    #[test]
    fn leaves_frames_alone_without_needs_csum_and_rejects_bad_offsets() {
        let (mut frame, _) = tcp_ipv4_frame(b"x", true);
        let before = frame.clone();
        let header = VirtioNetHdr::parse(&[0; VIRTIO_NET_HDR_LEN]).unwrap();
        header.complete_checksum(&mut frame).unwrap();
        assert_eq!(frame, before);
        assert_eq!(VirtioNetHdr::parse(&[0; 9]), None);
        let len = frame.len();
        assert_eq!(
            complete_partial_checksum(&mut frame, len - 1, 0),
            Err(ChecksumError::OutOfFrame {
                csum_start: len - 1,
                csum_offset: 0,
                frame_len: len
            })
        );
        assert!(complete_partial_checksum(&mut frame, usize::MAX, 1).is_err());
        assert!(complete_partial_checksum(&mut frame, 1, usize::MAX - 1).is_err());
        assert_eq!(frame, before);
    }

    #[test]
    fn a_zero_result_is_stored_as_ffff() {
        // The region sums to 0xffff, so the inverted checksum would be zero.
        let mut region = [0xff, 0xff, 0x00, 0x00];
        complete_partial_checksum(&mut region, 0, 2).unwrap();
        assert_eq!(region, [0xff, 0xff, 0xff, 0xff]);
    }

    proptest! {
        #[test]
        fn completion_equals_a_from_scratch_checksum(
            payload in prop::collection::vec(any::<u8>(), 0..1500),
        ) {
            let (mut frame, full_checksum) = tcp_ipv4_frame(&payload, true);
            complete_partial_checksum(&mut frame, TRANSPORT_START, TCP_CHECKSUM_OFFSET).unwrap();
            let field = TRANSPORT_START + TCP_CHECKSUM_OFFSET;
            let stored = u16::from_be_bytes([frame[field], frame[field + 1]]);
            // Equal as one's-complement numbers (0 and 0xffff are both zero).
            prop_assert!(stored == full_checksum || (stored == 0xffff && full_checksum == 0));
            let (finished, _) = tcp_ipv4_frame(&payload, false);
            prop_assert_eq!(&frame[..field], &finished[..field]);
            prop_assert_eq!(&frame[field + 2..], &finished[field + 2..]);
        }

        #[test]
        fn completion_never_panics(
            mut frame in prop::collection::vec(any::<u8>(), 0..100),
            start in any::<u16>(),
            offset in any::<u16>(),
        ) {
            let _ = complete_partial_checksum(&mut frame, usize::from(start), usize::from(offset));
        }
    }
}
