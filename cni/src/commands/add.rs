//! ADD: address first, then the gateway (the bridge's address, allocated if the bridge has none
//! yet), then the wiring; on any failure after the address was obtained, the address is given
//! back (the data plane already removed its half-made veth), so nothing is left behind.

use std::net::Ipv4Addr;

use serde_json::Value;
use weft_netdev::attach::{AttachRequest, Attachment, container_veth_name};

use super::Invocation;
use crate::error::CniError;
use crate::ipam::{self, Lease};
use crate::kernel::Kernel;
use crate::netns;
use crate::result::{CniResult, Interface, IpConfig, Route};
use crate::router::{EXPOSE_IDENT, Router};

/// The default route's destination.
const DEFAULT_DST: &str = "0.0.0.0/0";

/// Wires the pod and returns the result JSON (after `prevResult`'s entries when chained).
pub fn add(inv: &Invocation, router: &Router) -> Result<Value, CniError> {
    let kernel = Kernel::new()?;
    // Before any allocation: without the bridge the router is not (yet) running here.
    if kernel.bridge(&inv.conf.bridge)?.is_none() {
        return Err(CniError::TryAgainLater(format!(
            "bridge {} does not exist yet: is the weave router running on this node?",
            inv.conf.bridge
        )));
    }
    // Before any allocation: the node's own namespace is refused, so the node never gets a
    // pod's eth0 and default route.
    if let Some(netns) = inv.env.netns.as_deref() {
        netns::require_pod(netns)?;
    }
    let lease = ipam::acquire(inv, router, None)?;
    match wire(inv, router, &kernel, &lease) {
        Ok(result) => Ok(result),
        Err(e) => {
            if lease.fresh
                && let Err(cleanup) = ipam::release(inv, router)
            {
                return Err(CniError::Cleanup {
                    error: Box::new(e),
                    cleanup: Box::new(cleanup),
                });
            }
            Err(e)
        }
    }
}

fn wire(
    inv: &Invocation,
    router: &Router,
    kernel: &Kernel,
    lease: &Lease,
) -> Result<Value, CniError> {
    let gateway = match lease.gateway {
        Some(gateway) => gateway,
        None => bridge_gateway(kernel, router, &inv.conf.bridge)?,
    };
    let netns = inv.env.netns.clone().ok_or_else(|| CniError::InvalidEnv {
        var: "CNI_NETNS",
        reason: "not set".into(),
    })?;
    let request = AttachRequest {
        ifname: inv.env.ifname.clone(),
        address: Some(lease.address),
        mtu: inv.conf.mtu,
        bridge: inv.conf.bridge.clone(),
        gateway: Some(gateway),
        hairpin: inv.conf.hairpin,
        host_name: Some(container_veth_name(&inv.env.container_id, &inv.env.ifname)),
        ..AttachRequest::new(netns)
    };
    let attachment = kernel.attach(&request)?;
    if let Some(mac) = attachment.pod.mac {
        // Best effort: without it, neighbours that cached the address's previous owner learn
        // the new MAC only when their entry goes stale. Said on stderr, the runtime's log.
        if let Err(e) = router.announce(lease.address.0, &mac.to_string()) {
            eprintln!("weave-net: the pod's gratuitous ARP was not sent: {e}");
        }
    }
    let ours = result_of(&request, &attachment, lease.address, gateway, inv);
    let result = match &inv.conf.prev_result {
        Some(previous) => previous.clone().chain(ours),
        None => ours,
    };
    Ok(result.to_json(inv.conf.version))
}

/// The bridge's address (the pods' gateway). When the bridge has none yet, allocates it under
/// `weave:expose` as the router does (the same ident gives the same address, so racing the
/// router is harmless) and adds it.
fn bridge_gateway(kernel: &Kernel, router: &Router, bridge: &str) -> Result<Ipv4Addr, CniError> {
    if let Some((address, _)) = kernel.addresses(bridge)?.first() {
        return Ok(*address);
    }
    let exposed = router.allocate(EXPOSE_IDENT, None)?;
    kernel.add_address(bridge, exposed)?;
    Ok(exposed.0)
}

fn result_of(
    request: &AttachRequest,
    attachment: &Attachment,
    (address, prefix_len): (Ipv4Addr, u8),
    gateway: Ipv4Addr,
    inv: &Invocation,
) -> CniResult {
    let interface = |link: &weft_netdev::link::Link, sandbox: Option<String>| Interface {
        name: link.name.clone(),
        mac: link.mac.map(|mac| mac.to_string()),
        mtu: Some(link.mtu),
        sandbox,
    };
    CniResult {
        interfaces: vec![
            interface(&attachment.host, None),
            interface(
                &attachment.pod,
                Some(request.netns_path.display().to_string()),
            ),
        ],
        ips: vec![IpConfig {
            address: format!("{address}/{prefix_len}"),
            gateway: Some(gateway.to_string()),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: DEFAULT_DST.to_string(),
            gw: Some(gateway.to_string()),
        }],
        dns: inv.conf.dns.clone(),
    }
}
