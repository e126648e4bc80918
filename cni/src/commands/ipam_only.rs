//! `weave-ipam`: the router's IPAM for another plugin (e.g. `bridge`) that does its own wiring.
//! ADD returns just the address (in `ipam.subnet` when set) with the configured gateway and
//! routes; CHECK verifies the router still holds it. DEL, STATUS and GC are the full plugin's.

use serde_json::Value;

use super::Invocation;
use crate::error::CniError;
use crate::ipam;
use crate::result::{CniResult, IpConfig, Route};
use crate::router::Router;

pub fn add(inv: &Invocation, router: &Router) -> Result<Value, CniError> {
    let ipam_conf = &inv.conf.ipam;
    if let Some(gateway) = &ipam_conf.gateway
        && gateway.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(CniError::InvalidConfig(format!(
            "ipam.gateway {gateway:?} is not an IPv4 address"
        )));
    }
    let lease = ipam::acquire(inv, router, ipam_conf.subnet.as_deref())?;
    let (address, prefix_len) = lease.address;
    let result = CniResult {
        interfaces: Vec::new(),
        ips: vec![IpConfig {
            address: format!("{address}/{prefix_len}"),
            gateway: ipam_conf.gateway.clone(),
            interface: None,
        }],
        routes: ipam_conf
            .routes
            .iter()
            .map(|route| Route {
                dst: route.dst.clone(),
                gw: route.gw.clone(),
            })
            .collect(),
        dns: inv.conf.dns.clone(),
    };
    Ok(result.to_json(inv.conf.version))
}

pub fn check(inv: &Invocation, router: &Router) -> Result<(), CniError> {
    let previous = inv.prev_result()?;
    let ident = ipam::key(&inv.env.container_id, &inv.env.ifname);
    let held = router.lookup(&ident)?;
    for ip in &previous.ips {
        if let Some(address) = ip.ipv4()
            && !held.contains(&address)
        {
            return Err(CniError::Check(format!(
                "the router no longer holds {} for {ident}",
                ip.address
            )));
        }
    }
    Ok(())
}
