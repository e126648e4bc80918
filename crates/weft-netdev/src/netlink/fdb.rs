//! The VXLAN forwarding database (FDB): which remote underlay address each overlay MAC lives
//! behind. With learning off, this table is all the kernel knows about where to send a frame, so
//! the router programs it from what it learns about peers (fastdp).

use std::net::Ipv4Addr;
use std::pin::pin;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use nix::libc;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{NetlinkLinkOps, errno, kernel_error};
use crate::error::Result;
use crate::link::{FdbEntry, LearnedFdb, LinkKind, MacAddr};

/// The all-zero MAC: the vxlan driver's default entry, used for broadcast, multicast and any
/// unicast MAC without its own entry (`bridge fdb append 00:00:00:00:00:00 dst ...`).
pub(super) const FLOOD_MAC: MacAddr = MacAddr([0; 6]);

/// How an FDB request changes the table.
#[derive(Clone, Copy, Debug)]
pub(super) enum Change {
    /// RTM_NEWNEIGH with NLM_F_CREATE|NLM_F_REPLACE: one remote per unicast MAC, so a MAC that
    /// moved to another node is re-pointed in place rather than refused with EEXIST.
    Replace,
    /// As [`Change::Replace`], but a reachable (dynamic) entry rather than a permanent one: the
    /// kernel's own learning may refresh it, and migrate it when the MAC shows up behind another
    /// node (it drops such frames for a permanent entry), and ages it out when unused.
    ReplaceDynamic,
    /// RTM_NEWNEIGH with NLM_F_CREATE|NLM_F_APPEND: adds a remote to the MAC's list (the kernel
    /// allows several only for the all-zero and multicast MACs); already present is a no-op.
    Append,
    /// RTM_DELNEIGH for exactly this MAC and remote.
    Delete,
}

impl NetlinkLinkOps {
    /// Applies `change` to the vxlan device's own FDB. `Ok(false)` when deleting an entry that
    /// isn't there, so removing a peer twice is harmless.
    pub(super) async fn fdb_change(
        &self,
        change: Change,
        vxlan: &str,
        mac: MacAddr,
        remote: Ipv4Addr,
    ) -> Result<bool> {
        let op = match change {
            Change::Replace | Change::ReplaceDynamic => "add fdb entry on",
            Change::Append => "append fdb flood entry on",
            Change::Delete => "delete fdb entry on",
        };
        let link = self.require(op, vxlan).await?;
        link.expect_kind(LinkKind::Vxlan)?;
        if let Change::Delete = change {
            // The kernel answers ENOENT only when the MAC has no entry at all: a remote missing
            // from a MAC that has others (the flood list) is "deleted" with success. Looking
            // first keeps `Ok(false)` truthful.
            let wanted = FdbEntry {
                mac,
                remote: Some(remote),
            };
            if !self.fdb_dump(vxlan).await?.contains(&wanted) {
                return Ok(false);
            }
        }
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = link.index;
        // NTF_SELF: the vxlan driver's own table, not the bridge's (NTF_MASTER) view of the port.
        message.header.flags = NeighbourFlags::Own;
        message.header.state = match change {
            Change::ReplaceDynamic => NeighbourState::Reachable,
            // Permanent: never aged out; the router alone adds and removes entries.
            _ => NeighbourState::Permanent,
        };
        message.header.kind = RouteType::Unspec;
        message.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(remote)),
        ];
        let (payload, flags) = match change {
            Change::Replace | Change::ReplaceDynamic => (
                RouteNetlinkMessage::NewNeighbour(message),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            Change::Append => (
                RouteNetlinkMessage::NewNeighbour(message),
                NLM_F_CREATE | NLM_F_APPEND,
            ),
            Change::Delete => (RouteNetlinkMessage::DelNeighbour(message), 0),
        };
        let name = format!("{vxlan} {mac} dst {remote}");
        let delete = matches!(change, Change::Delete);
        self.neighbour_request(payload, flags, op, &name, delete)
            .await
    }

    /// Sends one neighbour (FDB) request by hand and reads its ACK: rtnetlink's
    /// NeighbourAddRequest offers only NLM_F_REPLACE or NLM_F_EXCL, never NLM_F_APPEND, and no
    /// bridge-master entries. `Ok(false)` when `delete` finds nothing to delete (ENOENT); `op`
    /// and `name` name the operation in errors.
    pub(super) async fn neighbour_request(
        &self,
        payload: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        name: &str,
        delete: bool,
    ) -> Result<bool> {
        let mut request = NetlinkMessage::from(payload);
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut responses = handle
            .request(request)
            .map_err(|e| kernel_error(op, name, e))?;
        while let Some(response) = responses.next().await {
            let NetlinkPayload::Error(error) = response.payload else {
                continue;
            };
            // An ErrorMessage without a code is the ACK itself.
            if error.code.is_none() {
                continue;
            }
            let error = rtnetlink::Error::NetlinkError(error);
            return match errno(&error) {
                Some(libc::ENOENT) if delete => Ok(false),
                _ => Err(kernel_error(op, name, error)),
            };
        }
        Ok(true)
    }

    /// The vxlan device's own FDB, one entry per (MAC, remote): a flood entry with several
    /// remotes comes back as several entries.
    pub(super) async fn fdb_dump(&self, vxlan: &str) -> Result<Vec<FdbEntry>> {
        Ok(self
            .fdb_dump_detailed(vxlan)
            .await?
            .into_iter()
            .map(|(entry, _)| entry)
            .collect())
    }

    /// The entries the vxlan device learned itself (neither permanent nor static), with how
    /// long ago each was last updated.
    pub(super) async fn fdb_dump_learned(&self, vxlan: &str) -> Result<Vec<LearnedFdb>> {
        Ok(self
            .fdb_dump_detailed(vxlan)
            .await?
            .into_iter()
            .filter_map(|(entry, learned)| {
                let updated_ago = learned?;
                Some(LearnedFdb {
                    mac: entry.mac,
                    remote: entry.remote?,
                    updated_ago,
                })
            })
            .collect())
    }

    /// Every AF_BRIDGE neighbour entry of the namespace: rtnetlink's dump request is a bare
    /// ndmsg with no device filter, so every FDB comes back (the bridge's, flagged NTF_MASTER,
    /// and each port's own, NTF_SELF); callers keep what is theirs. `op` and `name` name the
    /// operation in errors.
    pub(super) async fn bridge_family_dump(
        &self,
        op: &'static str,
        name: &str,
    ) -> Result<Vec<NeighbourMessage>> {
        let mut stream = pin!(
            self.handle
                .neighbours()
                .get()
                .set_address_family(AddressFamily::Bridge)
                .execute()
        );
        let mut messages = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| kernel_error(op, name, e))?
        {
            messages.push(message);
        }
        Ok(messages)
    }

    /// Every entry of the vxlan device's own FDB, with, for a learned entry, how long ago the
    /// kernel last updated it.
    async fn fdb_dump_detailed(&self, vxlan: &str) -> Result<Vec<(FdbEntry, Option<Duration>)>> {
        const OP: &str = "list fdb entries of";
        let link = self.require(OP, vxlan).await?;
        link.expect_kind(LinkKind::Vxlan)?;
        let mut entries = Vec::new();
        for message in self.bridge_family_dump(OP, vxlan).await? {
            let header = &message.header;
            if header.ifindex != link.index || !header.flags.contains(NeighbourFlags::Own) {
                continue;
            }
            if let Some(entry) = parse_fdb_entry(&message) {
                entries.push((entry, learned_age(&message)));
            }
        }
        Ok(entries)
    }
}

/// How long ago a learned entry was updated; `None` for entries someone programmed.
fn learned_age(message: &NeighbourMessage) -> Option<Duration> {
    let state = message.header.state;
    if matches!(state, NeighbourState::Permanent | NeighbourState::Noarp) {
        return None;
    }
    let updated = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::CacheInfo(info) => Some(info.updated),
            _ => None,
        })?;
    // NDA_CACHEINFO counts in clock_t ticks: USER_HZ, 100 per second on Linux (times(2)).
    Some(Duration::from_millis(u64::from(updated) * 10))
}

/// An FDB entry with an Ethernet MAC; `None` for anything else the dump may carry.
pub(super) fn parse_fdb_entry(message: &NeighbourMessage) -> Option<FdbEntry> {
    let mut mac = None;
    let mut remote = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(address)) => {
                remote = Some(*address);
            }
            // netlink-packet-route picks NDA_DST's type from the message family, and AF_BRIDGE
            // is neither inet family, so the vxlan driver's IPv4 remote arrives as raw bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                remote = <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(Ipv4Addr::from);
            }
            _ => {}
        }
    }
    Some(FdbEntry { mac: mac?, remote })
}

#[cfg(test)]
mod tests;
