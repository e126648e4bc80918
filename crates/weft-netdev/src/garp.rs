//! Gratuitous ARP: once a pod's interface has its address, announce (address, MAC) on the pod's
//! link so neighbours that cached an older owner of the address (a pod deleted a moment ago,
//! whose address IPAM handed out again) update their entry at once instead of sending to a
//! dead MAC until it goes stale. This module owns building that frame and sending it from
//! inside the pod's namespace over a raw packet socket.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::{DataplaneError, Result};
use crate::link::MacAddr;
use crate::{netns, packet_socket};

/// EtherType of ARP (IEEE 802 numbers, RFC 826).
const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv4, the protocol type the ARP packet resolves.
const ETH_P_IP: u16 = 0x0800;
/// ARP hardware type of Ethernet (RFC 826 / IANA "Hardware Types").
const ARPHRD_ETHER: u16 = 1;
/// ARP operation "request": a gratuitous ARP is a request for our own address (RFC 5227 §3).
const ARPOP_REQUEST: u16 = 1;
/// The shortest Ethernet frame without its FCS, in bytes (IEEE 802.3): shorter ARP frames are
/// padded to this.
const MIN_FRAME_BYTES: usize = 60;
/// Ethernet header (14) + ARP for IPv4 over Ethernet (28), in bytes.
const ARP_FRAME_BYTES: usize = 14 + 28;

/// The gratuitous ARP request announcing that `address` is at `mac`: broadcast, sender and
/// target protocol address both `address`, target hardware address zero (RFC 5227 §3).
pub fn gratuitous_arp_frame(mac: MacAddr, address: Ipv4Addr) -> [u8; MIN_FRAME_BYTES] {
    let mut frame = [0u8; MIN_FRAME_BYTES];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        frame[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&[0xff; 6]);
    put(&mac.0);
    put(&ETH_P_ARP.to_be_bytes());
    put(&ARPHRD_ETHER.to_be_bytes());
    put(&ETH_P_IP.to_be_bytes());
    put(&[6, 4]);
    put(&ARPOP_REQUEST.to_be_bytes());
    put(&mac.0);
    put(&address.octets());
    put(&[0; 6]);
    put(&address.octets());
    debug_assert_eq!(at, ARP_FRAME_BYTES);
    frame
}

/// Sends one gratuitous ARP for `address` out of interface `ifindex` (MAC `mac`) of the
/// namespace at `netns`. Runs on a short-lived thread that enters the namespace, so the caller's
/// thread (and runtime) never moves.
pub fn announce(netns: &Path, ifindex: u32, mac: MacAddr, address: Ipv4Addr) -> Result<()> {
    let frame = gratuitous_arp_frame(mac, address);
    netns::run_in(netns, "weft-garp", move || send_frame(ifindex, &frame)).map_err(|source| {
        DataplaneError::Io {
            op: "send gratuitous ARP in",
            name: netns.display().to_string(),
            source,
        }
    })
}

/// Sends `frame` (a whole Ethernet frame) out of interface `ifindex` of the calling thread's
/// namespace, to the broadcast address.
fn send_frame(ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
    // Protocol 0: this socket only sends, it never receives a frame.
    let socket = packet_socket::raw_socket()?;
    let broadcast = packet_socket::device_address(ifindex, ETH_P_ARP, Some([0xff; 6]))?;
    socket.send_to(frame, &broadcast)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_a_broadcast_arp_request_for_our_own_address() {
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x05]);
        let address = Ipv4Addr::new(10, 32, 0, 5);
        let frame = gratuitous_arp_frame(mac, address);
        assert_eq!(&frame[..6], &[0xff; 6], "broadcast");
        assert_eq!(&frame[6..12], &mac.0, "from the pod");
        assert_eq!(&frame[12..14], &[0x08, 0x06], "ARP");
        assert_eq!(&frame[14..22], &[0, 1, 0x08, 0, 6, 4, 0, 1], "IPv4 request");
        assert_eq!(&frame[22..28], &mac.0, "sender MAC");
        assert_eq!(&frame[28..32], &address.octets(), "sender IP");
        assert_eq!(&frame[32..38], &[0; 6], "target MAC unknown");
        assert_eq!(&frame[38..42], &address.octets(), "target IP = sender IP");
        assert!(frame[42..].iter().all(|b| *b == 0), "padding");
    }
}
