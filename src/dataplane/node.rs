//! The node's own devices: the `weave` bridge and the fastdp VXLAN device on it. This module owns
//! choosing the overlay MTU, creating (or adopting) both devices, and removing them again
//! (`weft reset`). Pod veths are `attach`'s business; only their removal on reset is here.

use std::net::Ipv4Addr;

use super::attach::HOST_VETH_PREFIX;
use super::error::{DataplaneError, Result};
use super::link::{
    Link, LinkKind, LinkOps, MIN_OVERLAY_MTU_BYTES, MacAddr, VXLAN_OVERHEAD_BYTES, VxlanConfig,
    auto_vxlan_mtu, vxlan_mtu_for,
};
use super::sleeve::SLEEVE_TAP_PREFIX;

pub use super::attach::DEFAULT_BRIDGE;

/// The fastdp VXLAN device's name for the default mesh port 6783 (Weave Net's `vxlan-6784`).
pub const DEFAULT_VXLAN_NAME: &str = "vxlan-6784";

/// An address in TEST-NET-1 (RFC 5737), never routed specifically: looking up the route to it
/// (RTM_GETROUTE, no packet sent) finds the interface holding the default route.
const DEFAULT_ROUTE_PROBE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The underlay MTU assumed when the node has no route at all yet, in bytes: standard Ethernet
/// (IEEE 802.3), which gives the usual 1450-byte overlay.
const FALLBACK_UNDERLAY_MTU_BYTES: u32 = 1500;

/// What the node's devices should look like.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeConfig {
    /// Bridge name ([`DEFAULT_BRIDGE`]).
    pub bridge: String,
    /// The bridge's MAC: the peer name's 6 bytes, so the bridge answers as this peer.
    pub bridge_mac: MacAddr,
    /// Overlay MTU in bytes from --mtu / WEAVE_MTU; `None` to derive it from the underlay.
    pub mtu: Option<u32>,
    /// VXLAN device name (`vxlan-<port>`).
    pub vxlan_name: String,
    /// VXLAN UDP port: the mesh port + 1 (6784 by default).
    pub vxlan_port: u16,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// A peer's address: the route towards it names the underlay interface for the auto MTU.
    pub underlay_probe: Option<Ipv4Addr>,
}

impl NodeConfig {
    /// The defaults for a mesh on `mesh_port`: bridge `weave`, VXLAN `vxlan-<mesh_port + 1>`
    /// on UDP port mesh_port + 1, auto MTU without a probe address.
    pub fn new(bridge_mac: MacAddr, mesh_port: u16, vni: u32) -> Self {
        let vxlan_port = mesh_port.wrapping_add(1);
        Self {
            bridge: DEFAULT_BRIDGE.to_string(),
            bridge_mac,
            mtu: None,
            vxlan_name: format!("vxlan-{vxlan_port}"),
            vxlan_port,
            vni,
            underlay_probe: None,
        }
    }
}

/// Where the overlay MTU came from, for the log line and the status report.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MtuSource {
    /// Given explicitly (--mtu or WEAVE_MTU).
    Configured,
    /// The underlay interface towards the probe peer address, minus the VXLAN overhead.
    PeerRoute { peer: Ipv4Addr, underlay: String },
    /// The interface holding the default route, minus the VXLAN overhead.
    DefaultRoute { underlay: String },
    /// No route at all: a 1500-byte Ethernet underlay was assumed.
    Assumed,
}

/// The node's devices after [`setup_node`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeState {
    /// The bridge.
    pub bridge: Link,
    /// The VXLAN device, an isolated port of the bridge.
    pub vxlan: Link,
    /// The overlay MTU in bytes (bridge and VXLAN device).
    pub mtu: u32,
    /// Why that MTU.
    pub mtu_source: MtuSource,
    /// The underlay's MTU in bytes (the overlay MTU plus the VXLAN overhead when derived).
    pub underlay_mtu: u32,
}

/// Creates or adopts the bridge and the VXLAN device. Existing devices are adopted in place (same
/// ifindex), so rerunning it after a router restart leaves pods connected.
///
/// The overlay MTU, in order of preference:
/// 1. `cfg.mtu` when given (checked against [`MIN_OVERLAY_MTU_BYTES`]);
/// 2. the MTU of the interface routing to `cfg.underlay_probe`, minus the VXLAN overhead;
/// 3. the MTU of the interface holding the default route, minus the VXLAN overhead;
/// 4. when there is no route at all (a node still coming up), 1500 − overhead = 1450.
///
/// An underlay too small for VXLAN is an error at steps 2 and 3, not a silent fallback.
pub async fn setup_node<L: LinkOps>(ops: &L, cfg: &NodeConfig) -> Result<NodeState> {
    let (mtu, mtu_source, underlay_mtu) = choose_mtu(ops, cfg).await?;
    tracing::info!(
        bridge = %cfg.bridge,
        mtu,
        source = ?mtu_source,
        "overlay MTU chosen"
    );
    let bridge = ops.ensure_bridge(&cfg.bridge, cfg.bridge_mac, mtu).await?;
    let vxlan = VxlanConfig {
        name: cfg.vxlan_name.clone(),
        vni: cfg.vni,
        port: cfg.vxlan_port,
        // The kernel's learned entries tell the router where remote MACs live (the bridge FDB
        // the router programs, not these entries, decides which overlay carries a frame).
        learning: true,
        // The fastdp heartbeat proves full-size frames cross the underlay only if they can't be
        // fragmented on the way.
        df: true,
        mtu,
        // Any local address: the kernel picks the source by route, which is what a node with
        // one underlay interface wants; a fixed source comes with multi-homed nodes.
        local: None,
    };
    let vxlan = ops.ensure_vxlan(&vxlan, &cfg.bridge).await?;
    // The router programs the bridge's entries for remote MACs (fastdp or sleeve port, by the
    // overlay switch); bridge learning on this port would point them back at the VXLAN port
    // after a fallback.
    ops.set_port_learning(&cfg.vxlan_name, false).await?;
    Ok(NodeState {
        bridge,
        vxlan,
        mtu,
        mtu_source,
        underlay_mtu,
    })
}

/// The overlay MTU, why, and the underlay MTU it sits on (what the sleeve's path-MTU search
/// starts from).
async fn choose_mtu<L: LinkOps>(ops: &L, cfg: &NodeConfig) -> Result<(u32, MtuSource, u32)> {
    if let Some(mtu) = cfg.mtu {
        if mtu < MIN_OVERLAY_MTU_BYTES {
            return Err(DataplaneError::Invalid {
                op: "set overlay MTU on",
                name: cfg.bridge.clone(),
                reason: format!("MTU {mtu} is below the minimum {MIN_OVERLAY_MTU_BYTES}"),
            });
        }
        // The underlay still bounds the sleeve's datagrams; a node without routes yet is assumed
        // to carry what the operator configured.
        let underlay = match derive_mtu(ops, cfg).await {
            Ok((derived, _)) => derived + VXLAN_OVERHEAD_BYTES,
            Err(_) => (mtu + VXLAN_OVERHEAD_BYTES).max(FALLBACK_UNDERLAY_MTU_BYTES),
        };
        return Ok((mtu, MtuSource::Configured, underlay));
    }
    let (mtu, source) = derive_mtu(ops, cfg).await?;
    Ok((mtu, source, mtu + VXLAN_OVERHEAD_BYTES))
}

/// The overlay MTU the underlay allows: from the route to the probe peer, else the default
/// route, else an assumed Ethernet.
async fn derive_mtu<L: LinkOps>(ops: &L, cfg: &NodeConfig) -> Result<(u32, MtuSource)> {
    if let Some(peer) = cfg.underlay_probe {
        match auto_vxlan_mtu(ops, peer).await {
            Ok((mtu, underlay)) => return Ok((mtu, MtuSource::PeerRoute { peer, underlay })),
            // No route to that peer (yet): the default route is the next best guess.
            Err(DataplaneError::NoRoute { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    match auto_vxlan_mtu(ops, DEFAULT_ROUTE_PROBE).await {
        Ok((mtu, underlay)) => Ok((mtu, MtuSource::DefaultRoute { underlay })),
        Err(DataplaneError::NoRoute { reason, .. }) => {
            tracing::warn!(%reason, "no default route: assuming a 1500-byte Ethernet underlay");
            let mtu = vxlan_mtu_for(FALLBACK_UNDERLAY_MTU_BYTES);
            Ok((mtu, MtuSource::Assumed))
        }
        Err(e) => Err(e),
    }
}

/// Removes every pod's host veth (`vethwepl*`, which takes the pod end with it), the sleeve TAP
/// (`sleeve-*` TUN/TAP devices, persistent so they outlive the router), the VXLAN device `vxlan`
/// and the bridge `bridge`: what `weft reset` removes. Devices already gone are skipped,
/// so it can be rerun. Returns the names of the devices it deleted.
pub async fn reset_node<L: LinkOps>(ops: &L, bridge: &str, vxlan: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    // Pods first, then the tunnel, then the bridge they hang off.
    let veths = ops.links_with_prefix(HOST_VETH_PREFIX).await?;
    // Only TUN/TAP devices: a device of another kind named sleeve-* is not ours to delete.
    let taps = ops
        .links_with_prefix(SLEEVE_TAP_PREFIX)
        .await?
        .into_iter()
        .filter(|link| link.kind == Some(LinkKind::Tun));
    let names = veths.into_iter().chain(taps).map(|link| link.name);
    for name in names.chain([vxlan.to_string(), bridge.to_string()]) {
        if ops.delete_link(&name).await? {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// [`reset_node`] for the router that used `mesh_port`: its bridge and its VXLAN device
/// (`vxlan-<port + 1>`), with the pods' veths and the sleeve TAPs.
pub async fn reset_node_for_port<L: LinkOps>(ops: &L, mesh_port: u16) -> Result<Vec<String>> {
    let cfg = NodeConfig::new(MacAddr([0; 6]), mesh_port, 0);
    reset_node(ops, &cfg.bridge, &cfg.vxlan_name).await
}

#[cfg(test)]
mod tests;
