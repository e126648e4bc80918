//! [`NetlinkLinkOps`]: the real [`LinkOps`], over rtnetlink. This is the only module that names
//! rtnetlink or netlink-packet types; everything it returns is translated to `link.rs` types.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::pin;

use futures_util::TryStreamExt;
use nix::libc;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan,
    RouteMessageBuilder,
};

use crate::error::{DataplaneError, Result};
use crate::link::{
    FdbEntry, Ipv4Route, LearnedFdb, Link, LinkKind, LinkOps, LinkStats, MacAddr, PortMode,
    VethSpec, VxlanConfig,
};

mod bridge_fdb;
mod fdb;
pub mod neigh_watch;
mod vxlan;

use vxlan::{check_vxlan, vxlan_changes};

/// [`LinkOps`] over one rtnetlink connection, bound to the network namespace its socket was
/// opened in (a netlink socket stays in the namespace it was created in, whatever thread uses it).
#[derive(Clone, Debug)]
pub struct NetlinkLinkOps {
    handle: Handle,
}

impl NetlinkLinkOps {
    /// Bound to the calling thread's network namespace. Must be called inside a tokio runtime:
    /// the connection's I/O task is spawned on it.
    pub fn new() -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| DataplaneError::Io {
                op: "open netlink socket",
                name: "rtnetlink".into(),
                source,
            })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Bound to the namespace at `netns`. The socket is opened on a short-lived thread that
    /// enters the namespace (setns changes only the calling thread, and a runtime's own threads
    /// must never move), then the connection runs on the caller's runtime.
    pub async fn for_netns(netns: &Path) -> Result<Self> {
        let name = netns.display().to_string();
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = crate::netns::spawn_in(netns, "weft-netns", move || {
            // The socket's reactor registration needs the runtime in context.
            let _entered = runtime.enter();
            let opened = rtnetlink::new_connection();
            // The receiver only goes away if the caller was cancelled: nothing to report.
            let _ = tx.send(opened);
            Ok(())
        })
        .map_err(|source| DataplaneError::Io {
            op: "enter network namespace",
            name: name.clone(),
            source,
        })?;
        let opened = match rx.await {
            Ok(opened) => opened,
            // No answer: the thread could not enter the namespace, and its result says why.
            Err(_) => Err(match thread.join() {
                Ok(Err(error)) => error,
                _ => std::io::Error::other("namespace thread ended without an answer"),
            }),
        };
        let (connection, handle, _) = opened.map_err(|source| DataplaneError::Io {
            op: "open netlink socket in network namespace",
            name,
            source,
        })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    async fn message_by_name(&self, op: &'static str, name: &str) -> Result<Option<LinkMessage>> {
        let mut stream = pin!(
            self.handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute()
        );
        match stream.try_next().await {
            Ok(message) => Ok(message),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(kernel_error(op, name, e)),
        }
    }

    /// The link called `name`, or [`DataplaneError::NotFound`].
    async fn require(&self, op: &'static str, name: &str) -> Result<Link> {
        match self.message_by_name(op, name).await? {
            Some(message) => Ok(parse_link(&message)),
            None => Err(DataplaneError::NotFound {
                op,
                name: name.to_string(),
            }),
        }
    }

    async fn set(&self, op: &'static str, name: &str, message: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| kernel_error(op, name, e))
    }
}

impl LinkOps for NetlinkLinkOps {
    async fn link(&self, name: &str) -> Result<Option<Link>> {
        Ok(self
            .message_by_name("look up link", name)
            .await?
            .as_ref()
            .map(parse_link))
    }

    async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<Link>> {
        let mut stream = pin!(self.handle.link().get().execute());
        let mut links = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| kernel_error("list links", prefix, e))?
        {
            let link = parse_link(&message);
            if link.name.starts_with(prefix) {
                links.push(link);
            }
        }
        Ok(links)
    }

    async fn ensure_bridge(&self, name: &str, mac: MacAddr, mtu: u32) -> Result<Link> {
        const OP: &str = "ensure bridge";
        match self.message_by_name(OP, name).await? {
            Some(message) => {
                let existing = parse_link(&message);
                existing.expect_kind(LinkKind::Bridge)?;
                // Adopt: change only what differs, in place, so the ifindex (and every port and
                // route hanging off it) survives a router restart.
                if existing.mac != Some(mac) || existing.mtu != mtu || !existing.up {
                    let change = LinkUnspec::new_with_index(existing.index)
                        .address(mac.0.to_vec())
                        .mtu(mtu)
                        .up()
                        .build();
                    self.set(OP, name, change).await?;
                }
            }
            None => {
                let create = LinkBridge::new(name)
                    .address(mac.0.to_vec())
                    .mtu(mtu)
                    .build();
                self.handle
                    .link()
                    .add(create)
                    .execute()
                    .await
                    .map_err(|e| kernel_error(OP, name, e))?;
            }
        }
        self.require(OP, name).await
    }

    async fn ensure_vxlan(&self, config: &VxlanConfig, bridge: &str) -> Result<Link> {
        const OP: &str = "ensure vxlan";
        let name = config.name.as_str();
        // Checked first so a missing bridge leaves no half-made device behind.
        self.require(OP, bridge)
            .await?
            .expect_kind(LinkKind::Bridge)?;
        match self.message_by_name(OP, name).await? {
            Some(message) => {
                let existing = parse_link(&message);
                existing.expect_kind(LinkKind::Vxlan)?;
                check_vxlan(&message, config)?;
                if existing.mtu != config.mtu {
                    let change = LinkUnspec::new_with_index(existing.index)
                        .mtu(config.mtu)
                        .build();
                    self.set(OP, name, change).await?;
                }
                // Learning and DF change in place (vxlan changelink): a device made by an older
                // router is brought to this one's settings without interrupting traffic.
                // RTM_NEWLINK without NLM_F_CREATE: RTM_SETLINK would ignore the link info data.
                if let Some(change) = vxlan_changes(&message, config) {
                    self.handle
                        .link()
                        .change(change)
                        .execute()
                        .await
                        .map_err(|e| kernel_error(OP, name, e))?;
                }
            }
            None => {
                // Created down: it comes up only once it is an isolated bridge port, so no frame
                // crosses between overlays in between.
                let mut create = LinkVxlan::new(name, config.vni)
                    .port(config.port)
                    .learning(config.learning)
                    .df(vxlan::df_setting(config.df));
                if let Some(local) = config.local {
                    create = create.local(local);
                }
                let create = create.mtu(config.mtu).down().build();
                self.handle
                    .link()
                    .add(create)
                    .execute()
                    .await
                    .map_err(|e| kernel_error(OP, name, e))?;
            }
        }
        let mode = PortMode {
            isolated: true,
            hairpin: false,
        };
        self.attach_to_bridge(name, bridge, mode).await?;
        self.set_up(name, true).await?;
        self.require(OP, name).await
    }

    async fn attach_to_bridge(&self, link: &str, bridge: &str, mode: PortMode) -> Result<()> {
        const OP: &str = "attach to bridge";
        let bridge_link = self.require(OP, bridge).await?;
        bridge_link.expect_kind(LinkKind::Bridge)?;
        let port = self.require(OP, link).await?;
        if port.master != Some(bridge_link.index) {
            let enslave = LinkUnspec::new_with_index(port.index)
                .controller(bridge_link.index)
                .build();
            self.set(OP, link, enslave).await?;
        }
        let flags = LinkBridgePort::new(port.index)
            .isolated(mode.isolated)
            .hairpin(mode.hairpin)
            .build();
        self.handle
            .link()
            .set_port(flags)
            .execute()
            .await
            .map_err(|e| kernel_error("set bridge port flags", link, e))
    }

    async fn create_veth_into_netns(&self, spec: &VethSpec<'_>) -> Result<Link> {
        const OP: &str = "create veth";
        let netns = File::open(spec.netns).map_err(|source| DataplaneError::Io {
            op: "open network namespace",
            name: spec.netns.display().to_string(),
            source,
        })?;
        // The peer is created directly in the target namespace under its final name, so no
        // rename is needed and its name can't clash with one in this namespace.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name)
            .mtu(spec.mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let create = LinkVeth::new(spec.host_name, spec.peer_name)
            .mtu(spec.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(create)
            .execute()
            .await
            .map_err(|e| kernel_error(OP, spec.host_name, e))?;
        drop(netns);
        self.require(OP, spec.host_name).await
    }

    async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        const OP: &str = "set mtu";
        let link = self.require(OP, name).await?;
        self.set(
            OP,
            name,
            LinkUnspec::new_with_index(link.index).mtu(mtu).build(),
        )
        .await
    }

    async fn set_up(&self, name: &str, up: bool) -> Result<()> {
        let op = if up { "set link up" } else { "set link down" };
        let link = self.require(op, name).await?;
        let builder = LinkUnspec::new_with_index(link.index);
        let change = if up { builder.up() } else { builder.down() };
        self.set(op, name, change.build()).await
    }

    async fn add_ipv4_address(&self, name: &str, address: Ipv4Addr, prefix_len: u8) -> Result<()> {
        const OP: &str = "add address";
        let link = self.require(OP, name).await?;
        match self
            .handle
            .address()
            .add(link.index, IpAddr::V4(address), prefix_len)
            .execute()
            .await
        {
            // The same address and prefix already there: rerunning an attach is harmless.
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            result => result.map_err(|e| kernel_error(OP, &format!("{name} {address}"), e)),
        }
    }

    async fn ipv4_addresses(&self, name: &str) -> Result<Vec<(Ipv4Addr, u8)>> {
        const OP: &str = "list addresses";
        let link = self.require(OP, name).await?;
        let mut stream = pin!(
            self.handle
                .address()
                .get()
                .set_link_index_filter(link.index)
                .execute()
        );
        let mut found = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| kernel_error(OP, name, e))?
        {
            // The kernel may ignore the index filter on dumps: filter again here.
            if message.header.index != link.index {
                continue;
            }
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(address)) = attribute {
                    found.push((*address, message.header.prefix_len));
                }
            }
        }
        Ok(found)
    }

    async fn ipv4_routes(&self) -> Result<Vec<Ipv4Route>> {
        const OP: &str = "list routes";
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut stream = pin!(self.handle.route().get(query).execute());
        let mut routes = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| kernel_error(OP, "main table", e))?
        {
            if message.header.table != RouteHeader::RT_TABLE_MAIN {
                continue;
            }
            let mut route = Ipv4Route {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix_len: message.header.destination_prefix_length,
                gateway: None,
                oif: None,
            };
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(dest)) => {
                        route.destination = *dest;
                    }
                    RouteAttribute::Gateway(RouteAddress::Inet(gateway)) => {
                        route.gateway = Some(*gateway);
                    }
                    RouteAttribute::Oif(index) => route.oif = Some(*index),
                    _ => {}
                }
            }
            routes.push(route);
        }
        Ok(routes)
    }

    async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gateway)
            .build();
        self.handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|e| kernel_error("add default route via", &gateway.to_string(), e))
    }

    async fn set_neighbour(&self, name: &str, address: Ipv4Addr, mac: MacAddr) -> Result<()> {
        const OP: &str = "set neighbour on";
        let link = self.require(OP, name).await?;
        self.handle
            .neighbours()
            .add(link.index, IpAddr::V4(address))
            .link_layer_address(&mac.0)
            .state(NeighbourState::Stale)
            .replace()
            .execute()
            .await
            .map_err(|e| kernel_error(OP, name, e))
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        const OP: &str = "delete link";
        let Some(message) = self.message_by_name(OP, name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(message.header.index).execute().await {
            Ok(()) => Ok(true),
            // Gone in between (e.g. deleting one veth end takes the other with it).
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(kernel_error(OP, name, e)),
        }
    }

    async fn route_link(&self, dest: Ipv4Addr) -> Result<Link> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest, 32)
            .build();
        let mut stream = pin!(self.handle.route().get(query).execute());
        let no_route = |reason: String| DataplaneError::NoRoute { dest, reason };
        let route = match stream.try_next().await {
            Ok(Some(route)) => route,
            Ok(None) => return Err(no_route("the kernel returned no route".into())),
            Err(e) if errno(&e) == Some(libc::ENETUNREACH) => {
                let unreachable = std::io::Error::from_raw_os_error(libc::ENETUNREACH);
                return Err(no_route(unreachable.to_string()));
            }
            Err(e) => return Err(kernel_error("find route to", &dest.to_string(), e)),
        };
        let oif = route
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                RouteAttribute::Oif(index) => Some(*index),
                _ => None,
            });
        let oif = oif.ok_or_else(|| no_route("the route has no output interface".into()))?;
        const OP: &str = "find route interface";
        let mut links = pin!(self.handle.link().get().match_index(oif).execute());
        match links.try_next().await {
            Ok(Some(message)) => Ok(parse_link(&message)),
            Ok(None) => Err(DataplaneError::NotFound {
                op: OP,
                name: format!("index {oif}"),
            }),
            Err(e) => Err(kernel_error(OP, &format!("index {oif}"), e)),
        }
    }

    async fn in_netns(&self, netns: &Path) -> Result<Self> {
        Self::for_netns(netns).await
    }

    async fn fdb_add(&self, vxlan: &str, mac: MacAddr, remote: Ipv4Addr) -> Result<()> {
        let change = fdb::Change::Replace;
        self.fdb_change(change, vxlan, mac, remote).await.map(drop)
    }

    async fn fdb_append_flood(&self, vxlan: &str, remote: Ipv4Addr) -> Result<()> {
        let change = fdb::Change::Append;
        self.fdb_change(change, vxlan, fdb::FLOOD_MAC, remote)
            .await
            .map(drop)
    }

    async fn fdb_del(&self, vxlan: &str, mac: MacAddr, remote: Ipv4Addr) -> Result<bool> {
        self.fdb_change(fdb::Change::Delete, vxlan, mac, remote)
            .await
    }

    async fn fdb_del_flood(&self, vxlan: &str, remote: Ipv4Addr) -> Result<bool> {
        let change = fdb::Change::Delete;
        self.fdb_change(change, vxlan, fdb::FLOOD_MAC, remote).await
    }

    async fn fdb_entries(&self, vxlan: &str) -> Result<Vec<FdbEntry>> {
        self.fdb_dump(vxlan).await
    }

    async fn fdb_set_dynamic(&self, vxlan: &str, mac: MacAddr, remote: Ipv4Addr) -> Result<()> {
        let change = fdb::Change::ReplaceDynamic;
        self.fdb_change(change, vxlan, mac, remote).await.map(drop)
    }

    async fn fdb_learned(&self, vxlan: &str) -> Result<Vec<LearnedFdb>> {
        self.fdb_dump_learned(vxlan).await
    }

    async fn bridge_fdb_set(&self, port: &str, mac: MacAddr) -> Result<()> {
        self.bridge_fdb_change(false, port, mac).await.map(drop)
    }

    async fn bridge_fdb_del(&self, port: &str, mac: MacAddr) -> Result<bool> {
        self.bridge_fdb_change(true, port, mac).await
    }

    async fn bridge_fdb_static(&self, port: &str) -> Result<Vec<MacAddr>> {
        self.bridge_fdb_dump(port).await
    }

    async fn set_port_learning(&self, port: &str, learning: bool) -> Result<()> {
        self.port_learning(port, learning).await
    }

    async fn link_stats(&self, name: &str) -> Result<LinkStats> {
        self.stats(name).await
    }
}

/// The positive errno of a kernel NACK.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| code.get().abs()),
        _ => None,
    }
}

fn kernel_error(op: &'static str, name: &str, error: rtnetlink::Error) -> DataplaneError {
    let errno = errno(&error);
    let message = match errno {
        Some(errno) => std::io::Error::from_raw_os_error(errno).to_string(),
        None => error.to_string(),
    };
    DataplaneError::Kernel {
        op,
        name: name.to_string(),
        errno,
        message,
    }
}

fn parse_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        kind: None,
        up: message.header.flags.contains(LinkFlags::Up),
        master: None,
        peer_index: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => {
                link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
            }
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(index) => link.master = Some(*index),
            LinkAttribute::Link(index) => link.peer_index = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(link_kind(kind));
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn link_kind(kind: &InfoKind) -> LinkKind {
    match kind {
        InfoKind::Bridge => LinkKind::Bridge,
        InfoKind::Vxlan => LinkKind::Vxlan,
        InfoKind::Veth => LinkKind::Veth,
        InfoKind::Tun => LinkKind::Tun,
        other => LinkKind::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
