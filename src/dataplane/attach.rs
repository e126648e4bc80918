//! Wiring a pod's network namespace to the bridge: a veth pair whose host end (`vethwepl<id>`)
//! is a bridge port and whose other end is the pod's `eth0`, with its address and default route.
//! Free of CLI concerns: `weft attach` and the CNI plugin both call [`attach_pod`] /
//! [`detach_pod`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::libc;

use super::error::{DataplaneError, Result};
use super::garp::announce;
use super::link::{Link, LinkKind, LinkOps, PortMode, VethSpec};
use super::node::DEFAULT_BRIDGE;

/// Prefix of every pod's host-side veth (Weave Net's, so `weave reset`-era tooling and
/// `weft reset` find them).
pub const HOST_VETH_PREFIX: &str = "vethwepl";

/// Linux interface names hold at most IFNAMSIZ − 1 = 15 bytes (include/uapi/linux/if.h).
pub const MAX_IFNAME_BYTES: usize = 15;

/// Hex digits of the per-namespace id: what is left of 15 bytes after `vethwepl` (8).
const ID_HEX_DIGITS: usize = MAX_IFNAME_BYTES - HOST_VETH_PREFIX.len();

/// The pod-side interface name when none is given.
pub const DEFAULT_POD_IFNAME: &str = "eth0";

/// What to wire up.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttachRequest {
    /// The pod's network namespace file (`/var/run/netns/NAME`, `/proc/PID/ns/net`). Attach and
    /// detach must name it the same way: the host veth name is derived from this path.
    pub netns_path: PathBuf,
    /// Interface name inside the pod ([`DEFAULT_POD_IFNAME`]).
    pub ifname: String,
    /// The pod's address and prefix length, if it gets one now.
    pub address: Option<(Ipv4Addr, u8)>,
    /// MTU in bytes for both veth ends; `None` for the bridge's MTU.
    pub mtu: Option<u32>,
    /// The bridge to attach to ([`DEFAULT_BRIDGE`]).
    pub bridge: String,
    /// Default route inside the pod via this address, if given.
    pub gateway: Option<Ipv4Addr>,
    /// Hairpin mode on the host port, so a pod can reach itself through a service address.
    pub hairpin: bool,
    /// The host veth's name; `None` for [`host_veth_name`] of the namespace path. The CNI
    /// plugin names it after the container id instead ([`container_veth_name`]), as Weave Net
    /// did, so an operator can tell which pod a port belongs to.
    pub host_name: Option<String>,
}

impl AttachRequest {
    /// A request with the defaults: `eth0`, the `weave` bridge and its MTU, no address, no
    /// gateway, no hairpin.
    pub fn new(netns_path: impl Into<PathBuf>) -> Self {
        Self {
            netns_path: netns_path.into(),
            ifname: DEFAULT_POD_IFNAME.to_string(),
            address: None,
            mtu: None,
            bridge: DEFAULT_BRIDGE.to_string(),
            gateway: None,
            hairpin: false,
            host_name: None,
        }
    }

    /// The host veth's name: the override, else the one derived from the namespace path.
    pub fn host_veth(&self) -> String {
        self.host_name
            .clone()
            .unwrap_or_else(|| host_veth_name(&self.netns_path))
    }
}

/// The wiring of one pod.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Attachment {
    /// The host-side veth, a port of the bridge.
    pub host: Link,
    /// The pod-side end, as seen inside the pod's namespace.
    pub pod: Link,
    /// True when the pod was already attached and this call only re-applied the settings.
    pub existing: bool,
}

/// The host-side veth name for a namespace: `vethwepl` + the first 7 lowercase hex digits of the
/// 64-bit FNV-1a hash of the namespace path's bytes, exactly 15 bytes. Hashing the whole path
/// (not truncating it) keeps `/proc/12/ns/net` and `/proc/13/ns/net` apart; two namespaces share
/// a name only on a 28-bit hash collision, which [`attach_pod`] reports instead of adopting.
pub fn host_veth_name(netns_path: &Path) -> String {
    hashed_veth_name(netns_path.as_os_str().as_encoded_bytes())
}

/// The host-side veth name for a container, as Weave Net's CNI plugin named it: `vethwepl` +
/// the container id's first 7 characters (runtimes' ids are hex, so this is what `docker ps` and
/// `crictl pods` show). An id whose first 7 characters are not all ASCII alphanumerics (or that
/// is shorter) is hashed like a namespace path instead, so the name is always a valid one.
pub fn container_veth_name(container_id: &str) -> String {
    match container_id.get(..ID_HEX_DIGITS) {
        Some(prefix) if prefix.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            format!("{HOST_VETH_PREFIX}{prefix}")
        }
        _ => hashed_veth_name(container_id.as_bytes()),
    }
}

/// `vethwepl` + the first 7 hex digits of the 64-bit FNV-1a hash of `bytes`.
fn hashed_veth_name(bytes: &[u8]) -> String {
    // FNV-1a 64-bit parameters (http://www.isthe.com/chongo/tech/comp/fnv/).
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    });
    let hex = format!("{hash:016x}");
    format!("{HOST_VETH_PREFIX}{}", &hex[..ID_HEX_DIGITS])
}

/// Wires the pod's namespace to the bridge: creates the veth pair (pod end renamed to `ifname`
/// inside the namespace, both ends at the bridge MTU), gives the pod end its address, brings it
/// up, adds the default route via the gateway, then makes the host end a (non-isolated) bridge
/// port and brings it up.
///
/// Attaching an already attached namespace re-applies the settings and returns the existing
/// wiring (`existing: true`); a host veth of our name without the pod end is a
/// [`DataplaneError::Mismatch`]. A failure after the pair was created deletes it again, so no
/// half-wired pod is left behind.
pub async fn attach_pod<L: LinkOps>(ops: &L, req: &AttachRequest) -> Result<Attachment> {
    const OP: &str = "attach pod";
    check_ifname(OP, &req.ifname)?;
    let host_name = req.host_veth();
    check_ifname(OP, &host_name)?;
    let pod_ops = ops.in_netns(&req.netns_path).await?;
    let bridge = ops
        .link(&req.bridge)
        .await?
        .ok_or_else(|| DataplaneError::NotFound {
            op: OP,
            name: req.bridge.clone(),
        })?;
    bridge.expect_kind(LinkKind::Bridge)?;
    let mtu = req.mtu.unwrap_or(bridge.mtu);

    let existing = match ops.link(&host_name).await? {
        Some(host) => {
            host.expect_kind(LinkKind::Veth)?;
            match pod_ops.link(&req.ifname).await? {
                Some(pod) if pod.kind == Some(LinkKind::Veth) => true,
                found => {
                    return Err(DataplaneError::Mismatch {
                        name: host_name,
                        setting: "pod end",
                        expected: format!("veth {} in {}", req.ifname, req.netns_path.display()),
                        found: found.map_or_else(|| "none".to_string(), describe),
                    });
                }
            }
        }
        None => {
            let spec = VethSpec {
                host_name: &host_name,
                peer_name: &req.ifname,
                netns: &req.netns_path,
                mtu,
            };
            ops.create_veth_into_netns(&spec).await?;
            false
        }
    };

    let wired = configure(ops, &pod_ops, req, &host_name).await;
    match wired {
        Ok((host, pod)) => {
            if let (Some((address, _)), Some(mac)) = (req.address, pod.mac) {
                // Best effort: a lost announcement only means neighbours learn the MAC by asking.
                if let Err(e) = announce(&req.netns_path, pod.index, mac, address) {
                    tracing::warn!(%e, "gratuitous ARP for the pod failed");
                }
            }
            Ok(Attachment {
                host,
                pod,
                existing,
            })
        }
        Err(e) => {
            if !existing {
                // Best effort: the configure error is the one worth reporting.
                if let Err(cleanup) = ops.delete_link(&host_name).await {
                    tracing::warn!(%cleanup, "removing the half-wired pod veth failed");
                }
            }
            Err(e)
        }
    }
}

/// The steps after the pair exists; each is harmless to repeat.
async fn configure<L: LinkOps>(
    ops: &L,
    pod_ops: &L,
    req: &AttachRequest,
    host_name: &str,
) -> Result<(Link, Link)> {
    // Pod side first: the host port comes up last, when the pod can already answer.
    if let Some((address, prefix_len)) = req.address {
        pod_ops
            .add_ipv4_address(&req.ifname, address, prefix_len)
            .await?;
    }
    pod_ops.set_up(&req.ifname, true).await?;
    if let Some(gateway) = req.gateway {
        match pod_ops.add_default_route(gateway).await {
            // Already there from an earlier attach.
            Err(DataplaneError::Kernel {
                errno: Some(libc::EEXIST),
                ..
            }) => {}
            result => result?,
        }
    }
    let mode = PortMode {
        isolated: false,
        hairpin: req.hairpin,
    };
    ops.attach_to_bridge(host_name, &req.bridge, mode).await?;
    ops.set_up(host_name, true).await?;
    let host = require(ops, "read host veth", host_name).await?;
    let pod = require(pod_ops, "read pod interface", &req.ifname).await?;
    Ok((host, pod))
}

/// Deletes the pod's host veth, which takes the pod end with it. `Ok(false)` when there was
/// nothing to delete (already detached, or the namespace is gone and took the pair along).
pub async fn detach_pod<L: LinkOps>(ops: &L, netns_path: &Path) -> Result<bool> {
    ops.delete_link(&host_veth_name(netns_path)).await
}

/// Deletes the pod end `ifname` inside the namespace at `netns_path` (which takes the host end
/// with it), if it is a veth. Acting inside the pod's own namespace means a host veth name
/// shared by two containers can never make us remove the other one's. `Ok(false)` when there
/// was no such veth.
pub async fn detach_pod_interface<L: LinkOps>(
    ops: &L,
    netns_path: &Path,
    ifname: &str,
) -> Result<bool> {
    let pod_ops = ops.in_netns(netns_path).await?;
    match pod_ops.link(ifname).await? {
        Some(link) if link.kind == Some(LinkKind::Veth) => pod_ops.delete_link(ifname).await,
        _ => Ok(false),
    }
}

async fn require<L: LinkOps>(ops: &L, op: &'static str, name: &str) -> Result<Link> {
    ops.link(name)
        .await?
        .ok_or_else(|| DataplaneError::NotFound {
            op,
            name: name.to_string(),
        })
}

/// Why `name` is not a name the kernel will take for an interface, or `None` when it is one:
/// 1–15 bytes, no '/', whitespace or ':' (dev_valid_name in net/core/dev.c), not "." or "..".
pub fn ifname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > MAX_IFNAME_BYTES {
        Some("an interface name must be 1 to 15 bytes long")
    } else if name == "." || name == ".." {
        Some("not a valid interface name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("an interface name can't contain '/', ':' or whitespace")
    } else {
        None
    }
}

fn check_ifname(op: &'static str, name: &str) -> Result<()> {
    match ifname_problem(name) {
        None => Ok(()),
        Some(reason) => Err(DataplaneError::Invalid {
            op,
            name: name.to_string(),
            reason: reason.to_string(),
        }),
    }
}

/// "veth eth0", "device eth0" (no link kind): for error messages.
fn describe(link: Link) -> String {
    let kind = link
        .kind
        .as_ref()
        .map_or_else(|| "device".to_string(), LinkKind::to_string);
    format!("{kind} {}", link.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_and_differ_per_namespace() {
        let a = host_veth_name(Path::new("/proc/12/ns/net"));
        let b = host_veth_name(Path::new("/proc/13/ns/net"));
        assert_eq!(a.len(), MAX_IFNAME_BYTES);
        assert!(a.starts_with(HOST_VETH_PREFIX));
        assert_ne!(a, b);
        assert_eq!(a, host_veth_name(Path::new("/proc/12/ns/net")), "stable");
    }

    #[test]
    fn container_veth_names_take_the_id_prefix_or_a_hash() {
        assert_eq!(container_veth_name("0123456789abcdef"), "vethwepl0123456");
        let odd = container_veth_name("a:b/c");
        assert_eq!(odd.len(), MAX_IFNAME_BYTES);
        assert!(odd.starts_with(HOST_VETH_PREFIX));
        assert_ne!(odd, container_veth_name("a:b/d"));
        assert!(check_ifname("t", &container_veth_name("short")).is_ok());
    }

    #[test]
    fn pod_interface_names_are_checked() {
        assert!(check_ifname("t", "eth0").is_ok());
        assert!(check_ifname("t", "").is_err());
        assert!(check_ifname("t", "a-very-long-ifname").is_err());
        assert!(check_ifname("t", "eth/0").is_err());
        assert!(check_ifname("t", "..").is_err());
    }
}
