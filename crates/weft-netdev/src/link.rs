//! [`LinkOps`]: exactly what the router needs from the kernel's link, address and route tables,
//! the plain types it speaks in (no rtnetlink types here), and the VXLAN MTU arithmetic.

use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::error::{DataplaneError, Result};

/// Bytes VXLAN adds around an overlay frame, on an IPv4 underlay: outer IPv4 header (20, no
/// options) + UDP header (8) + VXLAN header (8, RFC 7348) + the inner Ethernet header (14), which
/// the overlay MTU does not count but the underlay packet carries.
pub const VXLAN_OVERHEAD_BYTES: u32 = 20 + 8 + 8 + 14;

/// The smallest overlay MTU we accept, in bytes: IPv4's minimum datagram size every host must
/// accept (RFC 791). Anything smaller means the underlay can't carry the overlay usefully.
pub const MIN_OVERLAY_MTU_BYTES: u32 = 576;

/// The overlay (bridge) MTU for an underlay interface MTU: 1450 on a 1500-byte Ethernet, 8950 on
/// 9000-byte jumbo frames. (Weave Net's fixed 1376 halved throughput on jumbo-frame networks.)
pub const fn vxlan_mtu_for(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD_BYTES)
}

/// An Ethernet MAC address (the bridge's MAC is the peer name).
pub use crate::mac::MacAddr;

/// The kind of a network device, as the kernel's link info names it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge,
    /// A VXLAN device (fastdp).
    Vxlan,
    /// One end of a veth pair (pods).
    Veth,
    /// A TUN or TAP device (sleeve); the kernel reports both as "tun".
    Tun,
    /// Any other kind, by its kernel name.
    Other(String),
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Bridge => "bridge",
            LinkKind::Vxlan => "vxlan",
            LinkKind::Veth => "veth",
            LinkKind::Tun => "tun",
            LinkKind::Other(other) => other,
        })
    }
}

/// What we read back about a network device.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Link {
    /// Interface index (stable for the device's life: adopting must keep it).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when the device has an Ethernet one.
    pub mac: Option<MacAddr>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Device kind; `None` for devices without link info (loopback, physical NICs).
    pub kind: Option<LinkKind>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Index of the bridge (or other master) it is a port of.
    pub master: Option<u32>,
    /// For a veth, the index of its other end (IFLA_LINK), counted in that end's namespace.
    pub peer_index: Option<u32>,
}

impl Link {
    /// `Ok` when the device is of the `expected` kind, else [`DataplaneError::WrongKind`]: we
    /// never delete a device we did not make, so the operator decides.
    pub fn expect_kind(&self, expected: LinkKind) -> Result<()> {
        if self.kind.as_ref() == Some(&expected) {
            return Ok(());
        }
        Err(DataplaneError::WrongKind {
            name: self.name.clone(),
            expected: expected.to_string(),
            found: self
                .kind
                .as_ref()
                .map_or_else(|| "none".to_string(), LinkKind::to_string),
        })
    }
}

/// The fastdp VXLAN device's settings.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VxlanConfig {
    /// Interface name.
    pub name: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// UDP destination port (Weave's fastdp port is 6784).
    pub port: u16,
    /// Whether the kernel learns remote MACs from received packets (IFLA_VXLAN_LEARNING). On for
    /// fastdp: the learned entries are how the router hears of remote MACs; the bridge FDB it
    /// programs still decides which overlay port a frame takes. Changed in place on adoption.
    pub learning: bool,
    /// Whether encapsulated packets carry the IPv4 "don't fragment" bit (IFLA_VXLAN_DF=set,
    /// kernel ≥ 5.7): an underlay too small for a full frame then drops it rather than
    /// fragmenting, which is what lets the full-size fastdp heartbeat prove the path's MTU.
    /// Changed in place on adoption.
    pub df: bool,
    /// MTU in bytes.
    pub mtu: u32,
    /// Underlay source address for encapsulated packets (IFLA_VXLAN_LOCAL); `None` lets the
    /// kernel pick by route. Needed when several underlay addresses could reach a peer, and
    /// fixed once the device exists.
    pub local: Option<Ipv4Addr>,
}

/// One entry of a VXLAN device's forwarding database (`bridge fdb show dev <vxlan>`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FdbEntry {
    /// The overlay MAC; all-zero for the flood entry (broadcast and unknown unicast).
    pub mac: MacAddr,
    /// The underlay address frames to `mac` are sent to; `None` for entries without one (such
    /// as the kernel's entry for the device's own MAC).
    pub remote: Option<Ipv4Addr>,
}

/// An entry the VXLAN device learned from a received packet (state neither permanent nor
/// static).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LearnedFdb {
    pub mac: MacAddr,
    /// The underlay source address the MAC's frames came from.
    pub remote: Ipv4Addr,
    /// How long ago the kernel last updated the entry.
    pub updated_ago: Duration,
}

/// A device's counters since it was created.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// How a port behaves on the bridge.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortMode {
    /// IFLA_BRPORT_ISOLATED: frames from an isolated port never leave through another isolated
    /// port, so traffic from one overlay (vxlan, tap) can't transit to the other.
    pub isolated: bool,
    /// Hairpin mode: a frame may leave through the port it came in on.
    pub hairpin: bool,
}

/// One IPv4 route of the main table, as `ip route show` lists it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ipv4Route {
    /// Destination network (0.0.0.0 with prefix 0 for the default route).
    pub destination: Ipv4Addr,
    /// Destination prefix length in bits.
    pub prefix_len: u8,
    /// Next hop, for routes through a gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Index of the output device.
    pub oif: Option<u32>,
}

/// A veth pair whose second end goes into another network namespace.
#[derive(Clone, Copy, Debug)]
pub struct VethSpec<'a> {
    /// Name of the end that stays here (e.g. `vethwepl<id>`).
    pub host_name: &'a str,
    /// Name of the end in the other namespace (e.g. `eth0`).
    pub peer_name: &'a str,
    /// The other namespace, by file path (e.g. `/var/run/netns/NAME`, `/proc/PID/ns/net`).
    pub netns: &'a Path,
    /// MTU in bytes for both ends (the bridge MTU).
    pub mtu: u32,
}

/// The kernel operations the router needs. Every operation acts in the network namespace the
/// implementation is bound to; [`LinkOps::in_netns`] gives one bound to another namespace.
pub trait LinkOps: Sync {
    /// The device called `name`, or `None` when there is none.
    fn link(&self, name: &str) -> impl Future<Output = Result<Option<Link>>> + Send;

    /// The device called `name`, which `op` needs: its absence is
    /// [`DataplaneError::NotFound`].
    fn require(&self, op: &'static str, name: &str) -> impl Future<Output = Result<Link>> + Send {
        async move {
            self.link(name)
                .await?
                .ok_or_else(|| DataplaneError::NotFound {
                    op,
                    name: name.to_string(),
                })
        }
    }

    /// Every device whose name starts with `prefix` (for `weft reset`).
    fn links_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<Link>>> + Send;

    /// Creates the bridge `name` with this MAC and MTU, up; or adopts an existing bridge (same
    /// interface index, so traffic isn't interrupted) and sets its MAC and MTU. Another kind of
    /// device with that name is [`DataplaneError::WrongKind`].
    fn ensure_bridge(
        &self,
        name: &str,
        mac: MacAddr,
        mtu: u32,
    ) -> impl Future<Output = Result<Link>> + Send;

    /// Creates (or adopts) the VXLAN device and attaches it to `bridge` as an isolated port
    /// without hairpin, up. An existing device with another VNI or port is
    /// [`DataplaneError::Mismatch`]; another kind is [`DataplaneError::WrongKind`].
    fn ensure_vxlan(
        &self,
        config: &VxlanConfig,
        bridge: &str,
    ) -> impl Future<Output = Result<Link>> + Send;

    /// Makes `link` a port of `bridge` with these port flags.
    fn attach_to_bridge(
        &self,
        link: &str,
        bridge: &str,
        mode: PortMode,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Creates a veth pair and puts its peer end, already named, into the other namespace.
    /// Both ends get the MTU and stay down. Returns the end that stays here.
    fn create_veth_into_netns(
        &self,
        spec: &VethSpec<'_>,
    ) -> impl Future<Output = Result<Link>> + Send;

    /// Sets a device's MTU in bytes.
    fn set_mtu(&self, name: &str, mtu: u32) -> impl Future<Output = Result<()>> + Send;

    /// Sets a device administratively up or down.
    fn set_up(&self, name: &str, up: bool) -> impl Future<Output = Result<()>> + Send;

    /// Adds an IPv4 address with its prefix length to a device.
    fn add_ipv4_address(
        &self,
        name: &str,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The IPv4 addresses of a device, with their prefix lengths (for the CNI's CHECK and the
    /// bridge's gateway address). A missing device is [`DataplaneError::NotFound`].
    fn ipv4_addresses(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<(Ipv4Addr, u8)>>> + Send;

    /// The IPv4 routes of the main table.
    fn ipv4_routes(&self) -> impl Future<Output = Result<Vec<Ipv4Route>>> + Send;

    /// Adds a default route (0.0.0.0/0) via `gateway` in the main table.
    fn add_default_route(&self, gateway: Ipv4Addr) -> impl Future<Output = Result<()>> + Send;

    /// Sets this namespace's own ARP entry for `address` on device `name` to `mac`, in state
    /// STALE: used until the kernel next confirms it, replacing whatever was cached.
    fn set_neighbour(
        &self,
        name: &str,
        address: Ipv4Addr,
        mac: MacAddr,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes a device; `Ok(false)` when there was none (so `weft reset` can be rerun).
    fn delete_link(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The device the kernel would send a packet to `dest` through (RTM_GETROUTE).
    fn route_link(&self, dest: Ipv4Addr) -> impl Future<Output = Result<Link>> + Send;

    /// The same operations, bound to the network namespace at `netns`.
    fn in_netns(&self, netns: &Path) -> impl Future<Output = Result<Self>> + Send
    where
        Self: Sized;

    /// Points unicast `mac` at the node whose underlay address is `remote`, replacing wherever
    /// it pointed before (a pod MAC moves when its peer reconnects elsewhere). Permanent entry.
    /// Not for the all-zero MAC: use [`LinkOps::fdb_append_flood`].
    fn fdb_add(
        &self,
        vxlan: &str,
        mac: MacAddr,
        remote: Ipv4Addr,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Adds `remote` to the flood list (the all-zero MAC entry), keeping the others: broadcast
    /// and unknown unicast go to every directly connected peer. Already present is a no-op.
    fn fdb_append_flood(
        &self,
        vxlan: &str,
        remote: Ipv4Addr,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes the entry for `mac` at `remote`; `Ok(false)` when there was none.
    fn fdb_del(
        &self,
        vxlan: &str,
        mac: MacAddr,
        remote: Ipv4Addr,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Removes `remote` from the flood list, keeping the others; `Ok(false)` when absent.
    fn fdb_del_flood(
        &self,
        vxlan: &str,
        remote: Ipv4Addr,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The vxlan device's own FDB, one entry per (MAC, remote).
    fn fdb_entries(&self, vxlan: &str) -> impl Future<Output = Result<Vec<FdbEntry>>> + Send;

    /// Points unicast `mac` at `remote` like [`LinkOps::fdb_add`], as a dynamic (reachable)
    /// entry: the kernel's learning may refresh or migrate it, and ages it out when unused.
    fn fdb_set_dynamic(
        &self,
        vxlan: &str,
        mac: MacAddr,
        remote: Ipv4Addr,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The entries the vxlan device learned itself, with their age.
    fn fdb_learned(&self, vxlan: &str) -> impl Future<Output = Result<Vec<LearnedFdb>>> + Send;

    /// Sends the bridge's frames for `mac` out of `port` (a static `master` entry on the port),
    /// moving the entry from another port if it had one.
    fn bridge_fdb_set(&self, port: &str, mac: MacAddr) -> impl Future<Output = Result<()>> + Send;

    /// Removes the static bridge entry `mac → port`; `Ok(false)` when there was none.
    fn bridge_fdb_del(&self, port: &str, mac: MacAddr)
    -> impl Future<Output = Result<bool>> + Send;

    /// The MACs with a static bridge entry pointing at `port`.
    fn bridge_fdb_static(&self, port: &str) -> impl Future<Output = Result<Vec<MacAddr>>> + Send;

    /// Turns the bridge's learning of source MACs on `port` on or off.
    fn set_port_learning(
        &self,
        port: &str,
        learning: bool,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The device's packet and byte counters.
    fn link_stats(&self, name: &str) -> impl Future<Output = Result<LinkStats>> + Send;
}

/// The loopback interface: routes through it are to our own addresses.
const LOOPBACK: &str = "lo";

/// The bridge MTU computed from the underlay: the MTU of the interface that carries the route to
/// `peer`, minus [`VXLAN_OVERHEAD_BYTES`], and that interface's name. Used when neither --mtu nor
/// WEAVE_MTU is given.
pub async fn auto_vxlan_mtu<L: LinkOps>(ops: &L, peer: Ipv4Addr) -> Result<(u32, String)> {
    let underlay = ops.route_link(peer).await?;
    // A route through loopback means `peer` is one of our own addresses: it says nothing about
    // the underlay (and loopback's 64 KiB MTU would make an overlay no NIC can carry).
    if underlay.name == LOOPBACK {
        return Err(DataplaneError::NoRoute {
            dest: peer,
            reason: format!("{peer} is a local address"),
        });
    }
    let mtu = vxlan_mtu_for(underlay.mtu);
    if mtu < MIN_OVERLAY_MTU_BYTES {
        return Err(DataplaneError::MtuTooSmall {
            name: underlay.name,
            underlay_mtu: underlay.mtu,
            overhead: VXLAN_OVERHEAD_BYTES,
            minimum: MIN_OVERLAY_MTU_BYTES,
        });
    }
    Ok((mtu, underlay.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_mtu_is_underlay_minus_fifty_bytes() {
        assert_eq!(VXLAN_OVERHEAD_BYTES, 50);
        assert_eq!(vxlan_mtu_for(1500), 1450);
        assert_eq!(vxlan_mtu_for(9000), 8950);
        assert_eq!(vxlan_mtu_for(10), 0);
    }

    #[test]
    fn mac_displays_like_ip_link() {
        let mac = MacAddr([0x0a, 0xbc, 0, 1, 0xfe, 0x10]);
        assert_eq!(mac.to_string(), "0a:bc:00:01:fe:10");
    }
}
