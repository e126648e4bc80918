//! Real-looking frames for the sleeve tests: Ethernet + IPv4 (with a correct header checksum) +
//! a transport header, as a pod would send them.

use super::checksum::{internet_checksum, ones_complement_sum};

pub const POD_A_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
pub const POD_B_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
pub const POD_A_IP: [u8; 4] = [10, 32, 0, 2];
pub const POD_B_IP: [u8; 4] = [10, 40, 0, 3];
/// Ethernet (14) + IPv4 without options (20).
pub const TRANSPORT_START: usize = 34;
/// Where the checksum sits in a TCP header.
pub const TCP_CHECKSUM_OFFSET: usize = 16;
/// IPv4 flags/fragment-offset word with only Don't Fragment set.
pub const DONT_FRAGMENT: u16 = 0x4000;

/// An IPv4 frame from pod A to pod B carrying `transport` as protocol `protocol`.
pub fn ipv4_frame(protocol: u8, flags_fragment: u16, transport: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(TRANSPORT_START + transport.len());
    frame.extend_from_slice(&POD_B_MAC);
    frame.extend_from_slice(&POD_A_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    let total_len = (20 + transport.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
    ip[6..8].copy_from_slice(&flags_fragment.to_be_bytes());
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&POD_A_IP);
    ip[16..20].copy_from_slice(&POD_B_IP);
    let checksum = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(transport);
    frame
}

/// A TCP/IPv4 segment (DF set) carrying `payload`, and its correct TCP checksum computed from
/// scratch. With `partial`, the checksum field holds only the pseudo-header sum, as a stack with
/// TX checksum offload leaves it; otherwise it holds the full checksum.
pub fn tcp_ipv4_frame(payload: &[u8], partial: bool) -> (Vec<u8>, u16) {
    let mut segment = vec![0u8; 20];
    segment[0..2].copy_from_slice(&43_210u16.to_be_bytes());
    segment[2..4].copy_from_slice(&80u16.to_be_bytes());
    segment[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    segment[8..12].copy_from_slice(&0x0506_0708u32.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = 0x18; // PSH, ACK
    segment[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    segment.extend_from_slice(payload);

    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend_from_slice(&POD_A_IP);
    pseudo.extend_from_slice(&POD_B_IP);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    let pseudo_sum = ones_complement_sum(&pseudo);
    pseudo.extend_from_slice(&segment);
    let full_checksum = internet_checksum(&pseudo);

    let stored = if partial { pseudo_sum } else { full_checksum };
    segment[TCP_CHECKSUM_OFFSET..TCP_CHECKSUM_OFFSET + 2].copy_from_slice(&stored.to_be_bytes());
    (ipv4_frame(6, DONT_FRAGMENT, &segment), full_checksum)
}
