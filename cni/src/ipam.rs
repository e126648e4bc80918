//! Where a pod's address comes from and goes back to: the router's IPAM (keyed by container id,
//! as Weave Net's plugin did), or a delegated IPAM plugin when `ipam.type` names one. Also which
//! router allocations GC may free.

use std::net::Ipv4Addr;

use crate::commands::Invocation;
use crate::delegate;
use crate::error::CniError;
use crate::result::CniResult;
use crate::router::Router;

/// The default pod interface: its allocation is keyed by the container id alone, which is what
/// Weave Net's plugin used (so `weave ps`-era tooling and existing allocations line up).
const DEFAULT_IFNAME: &str = "eth0";

/// Separates the container id from a non-default interface name in an allocation key; never part
/// of a container id (the spec's syntax is letters, digits, `_`, `.`, `-`).
const KEY_SEPARATOR: char = '+';

/// An address obtained for the pod.
#[derive(Debug)]
pub struct Lease {
    /// The pod's address and prefix length.
    pub address: (Ipv4Addr, u8),
    /// The gateway the IPAM source named, if any (the router names none: the bridge is it).
    pub gateway: Option<Ipv4Addr>,
    /// True when this ADD made the allocation, so a failed ADD must give it back.
    pub fresh: bool,
}

/// The router's allocation key of one attachment: the container id for `eth0`, else
/// `ID+IFNAME`.
pub fn key(container_id: &str, ifname: &str) -> String {
    if ifname == DEFAULT_IFNAME {
        container_id.to_string()
    } else {
        format!("{container_id}{KEY_SEPARATOR}{ifname}")
    }
}

/// Whether GC may free the router allocation `ident`: only keys this plugin makes. Internal
/// names (`weave:expose`, anything with ':') are never ours.
pub fn is_plugin_key(ident: &str) -> bool {
    let id = ident.split(KEY_SEPARATOR).next().unwrap_or_default();
    crate::env::is_container_id(id)
}

/// Gets the pod's address: from the delegated plugin, or from the router (in `subnet` when
/// given, else its default subnet).
pub fn acquire(inv: &Invocation, router: &Router, subnet: Option<&str>) -> Result<Lease, CniError> {
    if let Some(plugin) = inv.conf.delegate() {
        let answer = delegate::run(plugin, "ADD", &inv.env, &inv.stdin)?;
        let result = answer
            .as_ref()
            .map(|value| CniResult::from_json("the IPAM plugin's result", value))
            .transpose()?
            .unwrap_or_default();
        let ip = result.ips.iter().find_map(|ip| {
            let gateway = ip.gateway.as_deref().and_then(|g| g.parse().ok());
            ip.ipv4().map(|address| (address, gateway))
        });
        let Some((address, gateway)) = ip else {
            // Give back whatever it did allocate before failing.
            let _ = delegate::run(plugin, "DEL", &inv.env, &inv.stdin);
            return Err(CniError::Delegate {
                plugin: plugin.to_string(),
                code: None,
                msg: "returned no IPv4 address (this plugin wires IPv4 only)".into(),
            });
        };
        return Ok(Lease {
            address,
            gateway,
            // Delegated plugins keep their own state: a failed ADD always calls its DEL.
            fresh: true,
        });
    }
    let ident = key(&inv.env.container_id, &inv.env.ifname);
    let existing = router.lookup(&ident)?;
    let address = router.allocate(&ident, subnet)?;
    Ok(Lease {
        address,
        gateway: None,
        fresh: !existing.contains(&address),
    })
}

/// Gives the pod's addresses back (to the delegated plugin, or the router).
pub fn release(inv: &Invocation, router: &Router) -> Result<(), CniError> {
    if let Some(plugin) = inv.conf.delegate() {
        return delegate::run(plugin, "DEL", &inv.env, &inv.stdin).map(drop);
    }
    router.free(&key(&inv.env.container_id, &inv.env.ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_id_for_eth0_and_gc_spares_internal_names() {
        assert_eq!(key("abc", "eth0"), "abc");
        assert_eq!(key("abc", "net1"), "abc+net1");
        assert!(is_plugin_key("abc"));
        assert!(is_plugin_key("abc+net1"));
        assert!(!is_plugin_key("weave:expose"));
        assert!(!is_plugin_key(""));
    }
}
