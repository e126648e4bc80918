//! CHECK: the pod's wiring still matches what ADD returned (`prevResult`): the interface in the
//! pod's namespace (a veth, up, same MAC), each address, each route, the host veth on the
//! bridge, and the router (or delegated plugin) still holding the address. The first mismatch
//! is reported, naming what was expected and what was found.

use std::net::Ipv4Addr;

use weft_netdev::attach::container_veth_name;
use weft_netdev::link::LinkKind;

use super::Invocation;
use crate::delegate;
use crate::error::CniError;
use crate::ipam;
use crate::kernel::{Kernel, PodView};
use crate::netns;
use crate::result::{CniResult, parse_ipv4_cidr};
use crate::router::Router;

pub fn check(inv: &Invocation, router: &Router) -> Result<(), CniError> {
    let previous = inv.prev_result()?;
    let netns = inv
        .env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::InvalidEnv {
            var: "CNI_NETNS",
            reason: "not set".into(),
        })?;
    netns::require_pod(netns)?;
    let host_name = container_veth_name(&inv.env.container_id, &inv.env.ifname);
    let view = Kernel::new()?.inspect(netns, &inv.env.ifname, &host_name, &inv.conf.bridge)?;
    let addresses = compare(inv, previous, &view, &host_name)?;
    match inv.conf.delegate() {
        Some(plugin) => delegate::run(plugin, "CHECK", &inv.env, &inv.stdin).map(drop),
        None => {
            let ident = ipam::key(&inv.env.container_id, &inv.env.ifname);
            let held = router.lookup(&ident)?;
            match addresses.iter().find(|a| !held.contains(a)) {
                Some((address, prefix)) => Err(CniError::Check(format!(
                    "the router no longer holds {address}/{prefix} for {ident} (it holds {})",
                    list(&held)
                ))),
                None => Ok(()),
            }
        }
    }
}

/// Compares the kernel's view with `previous`; the pod's addresses on success.
fn compare(
    inv: &Invocation,
    previous: &CniResult,
    view: &PodView,
    host_name: &str,
) -> Result<Vec<(Ipv4Addr, u8)>, CniError> {
    let ifname = &inv.env.ifname;
    let netns = inv.env.netns.as_deref().map(|p| p.display().to_string());
    let mismatch = |what: String| Err(CniError::Check(what));
    let index = previous
        .interfaces
        .iter()
        .position(|i| &i.name == ifname && i.sandbox.is_some() && i.sandbox == netns)
        .ok_or_else(|| {
            CniError::Check(format!("prevResult lists no interface {ifname} in the pod"))
        })?;
    let Some(pod) = &view.pod else {
        return mismatch(format!(
            "interface {ifname} is missing from the pod's namespace"
        ));
    };
    if pod.kind != Some(LinkKind::Veth) || !pod.up {
        return mismatch(format!("interface {ifname} is not an up veth: {pod:?}"));
    }
    let expected_mac = previous.interfaces[index].mac.as_deref();
    let found_mac = pod.mac.map(|m| m.to_string());
    if let Some(expected) = expected_mac
        && Some(expected.to_ascii_lowercase()) != found_mac
    {
        return mismatch(format!(
            "interface {ifname} has MAC {}, prevResult says {expected}",
            found_mac.unwrap_or_else(|| "none".into())
        ));
    }
    let addresses: Vec<(Ipv4Addr, u8)> = previous
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .filter_map(|ip| ip.ipv4())
        .collect();
    if let Some((address, prefix)) = addresses.iter().find(|a| !view.addresses.contains(a)) {
        return mismatch(format!(
            "interface {ifname} lacks address {address}/{prefix} (it has {})",
            list(&view.addresses)
        ));
    }
    for route in &previous.routes {
        let Some((dst, prefix)) = parse_ipv4_cidr(&route.dst) else {
            continue;
        };
        let gateway = route.gw.as_deref().and_then(|g| g.parse::<Ipv4Addr>().ok());
        let present = view.routes.iter().any(|r| {
            r.destination == dst
                && r.prefix_len == prefix
                && (gateway.is_none() || r.gateway == gateway)
        });
        if !present {
            return mismatch(format!(
                "the pod has no route to {} via {}",
                route.dst,
                route.gw.as_deref().unwrap_or("its link")
            ));
        }
    }
    let Some(host) = &view.host else {
        return mismatch(format!("host veth {host_name} is missing"));
    };
    let bridge = view
        .bridge
        .as_ref()
        .ok_or_else(|| CniError::Check(format!("bridge {} is missing", inv.conf.bridge)))?;
    if host.master != Some(bridge.index) || !host.up {
        return mismatch(format!(
            "host veth {host_name} is not an up port of bridge {}",
            inv.conf.bridge
        ));
    }
    Ok(addresses)
}

fn list(addresses: &[(Ipv4Addr, u8)]) -> String {
    if addresses.is_empty() {
        return "none".into();
    }
    addresses
        .iter()
        .map(|(a, p)| format!("{a}/{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}
