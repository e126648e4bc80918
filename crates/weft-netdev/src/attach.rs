//! Wiring a pod's network namespace to the bridge: a veth pair whose host end (`vethwepl<id>`)
//! is a bridge port and whose other end is the pod's `eth0`, with its address and default route.
//! Free of CLI concerns: `weft attach` and the CNI plugin both call [`attach_pod`] /
//! [`detach_pod`], and then have the pod announced from the bridge ([`crate::garp`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::error::{DataplaneError, Result};
use crate::link::{Link, LinkKind, LinkOps, PortMode, VethSpec};

/// The bridge every pod and the VXLAN device hang off (Weave Net's name, kept so existing
/// tooling and firewall rules recognise it).
pub const DEFAULT_BRIDGE: &str = "weave";

/// Prefix of every pod's host-side veth (Weave Net's, so `weave reset`-era tooling and
/// `weft reset` find them).
pub const HOST_VETH_PREFIX: &str = "vethwepl";

/// Linux interface names hold at most IFNAMSIZ − 1 = 15 bytes (include/uapi/linux/if.h).
pub const MAX_IFNAME_BYTES: usize = 15;

/// Digits of the per-pod id (hex for a namespace path, base 32 for a container): what is left
/// of 15 bytes after `vethwepl` (8).
const ID_DIGITS: usize = MAX_IFNAME_BYTES - HOST_VETH_PREFIX.len();

/// The digits of a container's veth id: base 32, 5 bits each, so 7 of them carry 35 bits of
/// the hash (hex would carry 28).
const BASE32_DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

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
    /// plugin names it after the container id and interface instead ([`container_veth_name`]).
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

/// The host-side veth name of a container's interface `ifname`: `vethwepl` + 7 base-32 digits
/// of the 64-bit FNV-1a hash of both. Weave Net took the id's first 7 characters, so two ids
/// sharing them, or a second interface of one container (`CNI_IFNAME=net1`), got the same name
/// and the second ADD failed every time. A hash can still collide (about once in 7 million
/// nodes of 100 pods: 100² / 2 / 2³⁵); [`attach_pod`] then finds the name taken by something
/// that is not this pod's veth and says so, it never adopts it.
pub fn container_veth_name(container_id: &str, ifname: &str) -> String {
    // Neither may contain NUL (they come from environment variables), so ("ab", "c") and
    // ("a", "bc") stay apart.
    let key = [container_id.as_bytes(), b"\0", ifname.as_bytes()].concat();
    let hash = fnv1a(&key);
    let id: String = (0..ID_DIGITS)
        .map(|digit| char::from(BASE32_DIGITS[((hash >> (5 * digit)) & 0x1f) as usize]))
        .collect();
    format!("{HOST_VETH_PREFIX}{id}")
}

/// The 64-bit FNV-1a hash (http://www.isthe.com/chongo/tech/comp/fnv/).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// `vethwepl` + the first 7 hex digits of the 64-bit FNV-1a hash of `bytes`.
fn hashed_veth_name(bytes: &[u8]) -> String {
    let hex = format!("{:016x}", fnv1a(bytes));
    format!("{HOST_VETH_PREFIX}{}", &hex[..ID_DIGITS])
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
    let bridge = ops.require(OP, &req.bridge).await?;
    bridge.expect_kind(LinkKind::Bridge)?;
    let mtu = req.mtu.unwrap_or(bridge.mtu);

    let existing = match ops.link(&host_name).await? {
        Some(host) => {
            host.expect_kind(LinkKind::Veth)?;
            match pod_ops.link(&req.ifname).await? {
                // Ours only when the two are each other's ends: a name alone proves nothing.
                Some(pod) if pod.kind == Some(LinkKind::Veth) && paired(&host, &pod) => true,
                found => {
                    return Err(DataplaneError::HostVethTaken {
                        name: host_name,
                        pod: format!("{} in {}", req.ifname, req.netns_path.display()),
                        found: found.map_or_else(|| "no interface".to_string(), describe),
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
        Ok((host, pod)) => Ok(Attachment {
            host,
            pod,
            existing,
        }),
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

/// Whether `host` and `pod` are the two ends of one veth pair. Each end names the other's index
/// in the other's namespace; both matching by chance would take two coincidences at once.
fn paired(host: &Link, pod: &Link) -> bool {
    host.peer_index == Some(pod.index) && pod.peer_index == Some(host.index)
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
    let host = ops.require("read host veth", host_name).await?;
    let pod = pod_ops.require("read pod interface", &req.ifname).await?;
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
    fn container_veth_names_hash_the_id_and_the_interface() {
        let name = container_veth_name("0123456789abcdef", "eth0");
        assert_eq!(name.len(), MAX_IFNAME_BYTES);
        assert!(name.starts_with(HOST_VETH_PREFIX));
        assert!(check_ifname("t", &name).is_ok());
        assert_eq!(
            name,
            container_veth_name("0123456789abcdef", "eth0"),
            "stable"
        );
        // Ids alike in their first characters, a second interface, and a shifted boundary.
        assert_ne!(name, container_veth_name("0123456789abcdee", "eth0"));
        assert_ne!(name, container_veth_name("0123456789abcdef", "net1"));
        assert_ne!(
            container_veth_name("ab", "c0"),
            container_veth_name("abc", "0")
        );
        assert!(check_ifname("t", &container_veth_name("a:b/c", "eth0")).is_ok());
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
