//! The ICMPv4 "fragmentation needed" reply (type 3, code 4, RFC 792 and RFC 1191) the router sends
//! back to a pod whose IPv4 packet with Don't Fragment set is too big for the sleeve path.
//!
//! Pods see the overlay as one flat Ethernet segment with no router on it, so the reply is written
//! as if the original destination answered: Ethernet and IP addresses are the original ones
//! swapped. Linux accepts it from any source, matching it to the socket by the quoted header, and
//! lowers its path MTU to that destination, which is how TCP across sleeve settles on segments
//! that fit. Weave Net did the same (`router/sleeve.go`, too-big frames).

use super::checksum::internet_checksum;
use crate::wire::sleeve::ETHERNET_HEADER_LEN;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
/// IPv4 header without options.
const IPV4_MIN_HEADER_LEN: usize = 20;
/// ICMP header of a destination-unreachable message: type, code, checksum, unused, next-hop MTU.
const ICMP_HEADER_LEN: usize = 8;
/// How much of the original packet's payload the reply quotes after its IP header (RFC 792):
/// enough for the ports, so the sender finds the socket.
const QUOTED_PAYLOAD_LEN: usize = 8;
const PROTOCOL_ICMP: u8 = 1;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_CODE_FRAGMENTATION_NEEDED: u8 = 4;
/// ICMP types that are error messages, which must never cause another error (RFC 1122 3.2.2):
/// destination unreachable, source quench, redirect, time exceeded, parameter problem.
const ICMP_ERROR_TYPES: [u8; 5] = [3, 4, 5, 11, 12];
/// Type of service of the reply: precedence "internetwork control", as Linux's `icmp_send` uses.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
/// TTL of the reply, Linux's default.
const REPLY_TTL: u8 = 64;
const FLAG_DONT_FRAGMENT: u8 = 0x40;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// Why no reply is sent for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoReply {
    #[error("not an IPv4 frame")]
    NotIpv4,
    #[error("IPv4 header is truncated or inconsistent")]
    Malformed,
    #[error("not the first fragment of its packet (RFC 1122: no errors about later fragments)")]
    LaterFragment,
    #[error("broadcast or multicast traffic, or a source that is not a unicast address")]
    NotUnicast,
    #[error("the packet is itself an ICMP error (RFC 1122: no errors about errors)")]
    AboutIcmpError,
}

/// Whether `frame` is an untagged IPv4 packet with Don't Fragment set: the frames that get an
/// ICMP reply when too big, rather than being fragmented.
pub fn is_ipv4_dont_fragment(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&ETHERTYPE_IPV4[..])
        && frame.get(ETHERNET_HEADER_LEN).is_some_and(|b| b >> 4 == 4)
        && frame
            .get(ETHERNET_HEADER_LEN + 6)
            .is_some_and(|flags| flags & FLAG_DONT_FRAGMENT != 0)
}

/// Builds the Ethernet frame carrying an ICMP "fragmentation needed" reply to the sender of
/// `frame`, announcing `next_hop_mtu` (the largest IP packet the path carries). Quotes the
/// original IP header and the first 8 bytes of its payload. Refuses, as RFC 1122 requires, for
/// broadcast and multicast traffic, later fragments and ICMP errors.
pub fn fragmentation_needed_reply(frame: &[u8], next_hop_mtu: u16) -> Result<Vec<u8>, NoReply> {
    let (ethernet, ip) = frame
        .split_at_checked(ETHERNET_HEADER_LEN)
        .ok_or(NoReply::NotIpv4)?;
    if ethernet[12..14] != ETHERTYPE_IPV4 || ip.first().is_none_or(|b| b >> 4 != 4) {
        return Err(NoReply::NotIpv4);
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || ip.len() < header_len {
        return Err(NoReply::Malformed);
    }
    // header_len >= 20 and ip.len() >= header_len: fixed header fields are in bounds from here.
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total_len < header_len {
        return Err(NoReply::Malformed);
    }
    // Ethernet may pad short packets, and a capture may be cut: quote only what is really there.
    let packet = &ip[..total_len.min(ip.len())];
    if u16::from_be_bytes([ip[6], ip[7]]) & FRAGMENT_OFFSET_MASK != 0 {
        return Err(NoReply::LaterFragment);
    }
    let source: [u8; 4] = [ip[12], ip[13], ip[14], ip[15]];
    let destination: [u8; 4] = [ip[16], ip[17], ip[18], ip[19]];
    let ethernet_multicast = ethernet[0] & 1 != 0 || ethernet[6] & 1 != 0;
    if ethernet_multicast || !is_unicast(source) || !is_unicast(destination) {
        return Err(NoReply::NotUnicast);
    }
    if ip[9] == PROTOCOL_ICMP
        && packet
            .get(header_len)
            .is_some_and(|icmp_type| ICMP_ERROR_TYPES.contains(icmp_type))
    {
        return Err(NoReply::AboutIcmpError);
    }
    let quoted = &packet[..(header_len + QUOTED_PAYLOAD_LEN).min(packet.len())];

    let reply_ip_len = IPV4_MIN_HEADER_LEN + ICMP_HEADER_LEN + quoted.len();
    let mut reply = Vec::with_capacity(ETHERNET_HEADER_LEN + reply_ip_len);
    reply.extend_from_slice(&ethernet[6..12]);
    reply.extend_from_slice(&ethernet[0..6]);
    reply.extend_from_slice(&ETHERTYPE_IPV4);

    let mut ip_header = [0u8; IPV4_MIN_HEADER_LEN];
    ip_header[0] = 0x45;
    ip_header[1] = TOS_INTERNETWORK_CONTROL;
    // At most 20 + 8 + 60 + 8 bytes: fits 16 bits.
    ip_header[2..4].copy_from_slice(&(reply_ip_len as u16).to_be_bytes());
    ip_header[8] = REPLY_TTL;
    ip_header[9] = PROTOCOL_ICMP;
    ip_header[12..16].copy_from_slice(&destination);
    ip_header[16..20].copy_from_slice(&source);
    let ip_checksum = internet_checksum(&ip_header);
    ip_header[10..12].copy_from_slice(&ip_checksum.to_be_bytes());
    reply.extend_from_slice(&ip_header);

    let icmp_start = reply.len();
    reply.extend_from_slice(&[
        ICMP_DEST_UNREACHABLE,
        ICMP_CODE_FRAGMENTATION_NEEDED,
        0,
        0,
        0,
        0,
    ]);
    reply.extend_from_slice(&next_hop_mtu.to_be_bytes());
    reply.extend_from_slice(quoted);
    let icmp_checksum = internet_checksum(&reply[icmp_start..]);
    reply[icmp_start + 2..icmp_start + 4].copy_from_slice(&icmp_checksum.to_be_bytes());
    Ok(reply)
}

/// Whether an IPv4 address can be one end of a unicast exchange: not unspecified, not multicast
/// (224.0.0.0/4), not limited broadcast. (A subnet's directed broadcast is not knowable here.)
fn is_unicast(address: [u8; 4]) -> bool {
    address != [0; 4] && address != [255; 4] && address[0] & 0xf0 != 0xe0
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::{
        DONT_FRAGMENT, POD_A_IP, POD_A_MAC, POD_B_IP, POD_B_MAC, ipv4_frame, tcp_ipv4_frame,
    };
    use super::*;
    use crate::dataplane::sleeve::checksum::ones_complement_sum;
    use proptest::prelude::*;

    #[test]
    fn reply_to_a_too_big_tcp_segment_is_correct_field_by_field() {
        let (frame, _) = tcp_ipv4_frame(&[0x5a; 1500], false);
        assert!(is_ipv4_dont_fragment(&frame));
        let reply = fragmentation_needed_reply(&frame, 1437).unwrap();
        assert_eq!(reply.len(), 14 + 20 + 8 + 20 + 8);

        assert_eq!(&reply[0..6], &POD_A_MAC, "to the sender");
        assert_eq!(&reply[6..12], &POD_B_MAC, "as if from the destination");
        assert_eq!(&reply[12..14], &[0x08, 0x00]);

        let ip = &reply[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[1], 0xc0);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 28);
        assert_eq!(&ip[4..8], &[0, 0, 0, 0], "id, flags and offset");
        assert_eq!(ip[8], 64);
        assert_eq!(ip[9], 1);
        assert_eq!(&ip[12..16], &POD_B_IP);
        assert_eq!(&ip[16..20], &POD_A_IP);
        let mut unsummed = ip.to_vec();
        unsummed[10..12].fill(0);
        assert_eq!(
            u16::from_be_bytes([ip[10], ip[11]]),
            internet_checksum(&unsummed)
        );
        assert_eq!(ones_complement_sum(ip), 0xffff);

        let icmp = &reply[34..];
        assert_eq!(icmp[0], 3);
        assert_eq!(icmp[1], 4);
        assert_eq!(&icmp[4..6], &[0, 0]);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1437);
        assert_eq!(&icmp[8..], &frame[14..14 + 28], "original header + 8 bytes");
        let mut unsummed = icmp.to_vec();
        unsummed[2..4].fill(0);
        assert_eq!(
            u16::from_be_bytes([icmp[2], icmp[3]]),
            internet_checksum(&unsummed)
        );
        assert_eq!(ones_complement_sum(icmp), 0xffff);
    }

    #[test]
    fn short_packets_and_ethernet_padding_quote_only_the_packet() {
        // A 4-byte payload, padded by Ethernet to the 60-byte minimum frame.
        let mut frame = ipv4_frame(17, DONT_FRAGMENT, &[1, 2, 3, 4]);
        frame.resize(60, 0xee);
        let reply = fragmentation_needed_reply(&frame, 576).unwrap();
        assert_eq!(&reply[34 + 8..], &frame[14..14 + 24]);
        assert_eq!(u16::from_be_bytes([reply[16], reply[17]]), 20 + 8 + 24);
    }

    #[test]
    fn no_reply_where_rfc_1122_forbids_one() {
        let (frame, _) = tcp_ipv4_frame(b"data", false);
        let reply = |frame: &[u8]| fragmentation_needed_reply(frame, 1400).err();

        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(reply(&arp), Some(NoReply::NotIpv4));
        assert_eq!(reply(&frame[..14]), Some(NoReply::NotIpv4));
        assert_eq!(reply(&frame[..20]), Some(NoReply::Malformed));

        let mut broadcast = frame.clone();
        broadcast[0..6].fill(0xff);
        assert_eq!(reply(&broadcast), Some(NoReply::NotUnicast));
        let mut multicast_ip = frame.clone();
        multicast_ip[30..34].copy_from_slice(&[239, 1, 2, 3]);
        assert_eq!(reply(&multicast_ip), Some(NoReply::NotUnicast));
        let mut unspecified_source = frame.clone();
        unspecified_source[26..30].fill(0);
        assert_eq!(reply(&unspecified_source), Some(NoReply::NotUnicast));

        let later_fragment = ipv4_frame(6, 0x0010, &[0; 32]);
        assert_eq!(reply(&later_fragment), Some(NoReply::LaterFragment));

        let icmp_error = ipv4_frame(1, DONT_FRAGMENT, &[3, 4, 0, 0, 0, 0, 5, 0x9d]);
        assert_eq!(reply(&icmp_error), Some(NoReply::AboutIcmpError));
        let echo_request = ipv4_frame(1, DONT_FRAGMENT, &[8, 0, 0, 0, 0, 1, 0, 1]);
        assert!(fragmentation_needed_reply(&echo_request, 1400).is_ok());

        let mut bad_ihl = frame.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(reply(&bad_ihl), Some(NoReply::Malformed));
        let no_df = ipv4_frame(6, 0, &[0; 20]);
        assert!(!is_ipv4_dont_fragment(&no_df));
        assert!(!is_ipv4_dont_fragment(&frame[..20]));
    }

    proptest! {
        #[test]
        fn reply_never_panics_and_always_checksums(
            bytes in prop::collection::vec(any::<u8>(), 0..120),
            make_ipv4 in any::<bool>(),
            mtu in any::<u16>(),
        ) {
            let mut frame = bytes;
            if make_ipv4 && frame.len() > 14 {
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                frame[14] = 0x45;
            }
            let _ = is_ipv4_dont_fragment(&frame);
            if let Ok(reply) = fragmentation_needed_reply(&frame, mtu) {
                prop_assert_eq!(ones_complement_sum(&reply[14..34]), 0xffff);
                prop_assert_eq!(ones_complement_sum(&reply[34..]), 0xffff);
                prop_assert_eq!(usize::from(u16::from_be_bytes([reply[16], reply[17]])), reply.len() - 14);
            }
        }
    }
}
