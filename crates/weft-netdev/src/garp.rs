//! Gratuitous ARP: once a pod's interface has its address, announce (address, MAC) so
//! neighbours that cached an older owner of the address (a pod deleted a moment ago, whose
//! address IPAM handed out again) update their entry at once instead of sending to a dead MAC
//! until it goes stale. This module owns building that frame and announcing it from the bridge.
//!
//! The announcement leaves the node's bridge, not the pod: the bridge floods it to every port
//! (the other pods, the VXLAN device, the sleeve's TAP), and the node's own ARP entry, which a
//! frame the bridge transmits does not reach, is set directly. So the sender needs no socket in
//! the pod's namespace and can keep one socket open: closing an AF_PACKET socket waits for an
//! RCU grace period (`packet_release` calls `synchronize_net`), which cost a CNI ADD 5-15 ms
//! when the plugin sent the frame from the pod itself.

use std::net::Ipv4Addr;

use socket2::Socket;

use crate::error::{DataplaneError, Result};
use crate::link::{LinkOps, MacAddr};
use crate::packet_socket;

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

/// Announces pods from one bridge, over one packet socket kept open.
#[derive(Debug)]
pub struct BridgeAnnouncer<L> {
    ops: L,
    bridge: String,
    /// Protocol 0: it only sends, it never receives a frame.
    socket: Socket,
}

impl<L: LinkOps> BridgeAnnouncer<L> {
    /// Opens the socket, in the calling thread's namespace (the node's, where `bridge` is).
    pub fn open(ops: L, bridge: impl Into<String>) -> Result<Self> {
        let bridge = bridge.into();
        let socket = packet_socket::raw_socket().map_err(|source| DataplaneError::Io {
            op: "open a packet socket to announce pods on",
            name: bridge.clone(),
            source,
        })?;
        Ok(Self {
            ops,
            bridge,
            socket,
        })
    }

    /// Announces that `address` is at `mac` (a pod's interface): the frame out of the bridge
    /// to every port, and the node's own ARP entry set to `mac`.
    pub async fn announce(&self, mac: MacAddr, address: Ipv4Addr) -> Result<()> {
        let bridge = self.bridge.as_str();
        let link = self.ops.require("announce a pod on", bridge).await?;
        let frame = gratuitous_arp_frame(mac, address);
        packet_socket::device_address(link.index, ETH_P_ARP, Some([0xff; 6]))
            .and_then(|to| self.socket.send_to(&frame, &to))
            .map_err(|source| DataplaneError::Io {
                op: "send gratuitous ARP on",
                name: bridge.to_string(),
                source,
            })?;
        self.ops.set_neighbour(bridge, address, mac).await
    }
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
