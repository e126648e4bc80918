//! The bridge's forwarding database for the overlay ports (`bridge fdb ... master static`), the
//! ports' learning flag, and link counters. With learning off on the overlay ports the bridge
//! sends a remote MAC's frames where the router's entry says: the VXLAN port for a peer on
//! fastdp, the sleeve TAP otherwise.

use rtnetlink::LinkBridgePort;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{NetlinkLinkOps, kernel_error};
use crate::error::Result;
use crate::link::{LinkStats, MacAddr};

impl NetlinkLinkOps {
    /// Adds (or moves here) the static bridge entry `mac → port`, or deletes it. `Ok(false)`
    /// when deleting an entry that isn't there.
    pub(super) async fn bridge_fdb_change(
        &self,
        delete: bool,
        port: &str,
        mac: MacAddr,
    ) -> Result<bool> {
        let op = if delete {
            "delete bridge fdb entry on"
        } else {
            "set bridge fdb entry on"
        };
        let link = self.require(op, port).await?;
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = link.index;
        // NTF_MASTER: the bridge's table, where the port is the destination.
        message.header.flags = NeighbourFlags::Controller;
        // NUD_NOARP is `static`: never aged, and not the bridge's own (permanent) address.
        message.header.state = NeighbourState::Noarp;
        message.header.kind = RouteType::Unspec;
        message.attributes = vec![NeighbourAttribute::LinkLayerAddress(mac.0.to_vec())];
        let (payload, flags) = if delete {
            (RouteNetlinkMessage::DelNeighbour(message), 0)
        } else {
            // Replace: a MAC moving from one overlay port to the other is re-pointed in place,
            // so its frames never flood in between.
            (
                RouteNetlinkMessage::NewNeighbour(message),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
        };
        let name = format!("{port} {mac}");
        self.neighbour_request(payload, flags, op, &name, delete)
            .await
    }

    /// The static bridge entries whose destination is `port`.
    pub(super) async fn bridge_fdb_dump(&self, port: &str) -> Result<Vec<MacAddr>> {
        const OP: &str = "list bridge fdb entries of";
        let link = self.require(OP, port).await?;
        let mut macs = Vec::new();
        for message in self.bridge_family_dump(OP, port).await? {
            // The bridge's entries name it in NDA_MASTER (the port's own table would carry
            // NTF_SELF instead); static ones are NUD_NOARP, its own addresses NUD_PERMANENT.
            let header = &message.header;
            let on_bridge = message
                .attributes
                .iter()
                .any(|attribute| matches!(attribute, NeighbourAttribute::Controller(_)));
            if header.ifindex != link.index || !on_bridge || header.state != NeighbourState::Noarp {
                continue;
            }
            let mac = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    NeighbourAttribute::LinkLayerAddress(bytes) => {
                        <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
                    }
                    _ => None,
                });
            macs.extend(mac);
        }
        Ok(macs)
    }

    /// Turns the bridge's MAC learning on or off for one of its ports.
    pub(super) async fn port_learning(&self, port: &str, learning: bool) -> Result<()> {
        const OP: &str = "set bridge port learning on";
        let link = self.require(OP, port).await?;
        let flags = LinkBridgePort::new(link.index).learning(learning).build();
        self.handle
            .link()
            .set_port(flags)
            .execute()
            .await
            .map_err(|e| kernel_error(OP, port, e))
    }

    /// The device's packet and byte counters (IFLA_STATS64).
    pub(super) async fn stats(&self, name: &str) -> Result<LinkStats> {
        const OP: &str = "read counters of";
        let message = self.message_by_name(OP, name).await?.ok_or_else(|| {
            crate::DataplaneError::NotFound {
                op: OP,
                name: name.to_string(),
            }
        })?;
        let stats = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::Stats64(stats) => Some(LinkStats {
                    rx_packets: stats.rx_packets,
                    rx_bytes: stats.rx_bytes,
                    tx_packets: stats.tx_packets,
                    tx_bytes: stats.tx_bytes,
                }),
                _ => None,
            });
        Ok(stats.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests;
