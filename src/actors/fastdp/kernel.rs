//! Reading the kernel's tables into a [`KernelView`] and applying the plans a step returns,
//! through [`LinkOps`]. Failures are logged per entry and retried by the next reconciliation.

use tracing::{debug, info, warn};

use super::fdb_plan::{FdbPlan, Port, Present};
use super::plan::FloodPlan;
use super::state::{KernelView, bridge_entries};
use crate::dataplane::{DataplaneError, LinkOps, LinkStats};

/// The device names the reconciliation works on.
#[derive(Clone, Debug)]
pub struct Devices {
    pub vxlan: String,
    /// The sleeve TAP (`sleeve-<mesh port>`); may not exist (yet).
    pub tap: String,
}

impl Devices {
    fn port(&self, port: Port) -> &str {
        match port {
            Port::Vxlan => &self.vxlan,
            Port::Tap => &self.tap,
        }
    }
}

/// Reads the flood list, the VXLAN and bridge entries, the learned entries and the VXLAN
/// device's counters.
pub async fn observe<L: LinkOps>(
    ops: &L,
    devices: &Devices,
) -> Result<(KernelView, LinkStats), DataplaneError> {
    let entries = ops.fdb_entries(&devices.vxlan).await?;
    let learned = ops.fdb_learned(&devices.vxlan).await?;
    let flood = entries
        .iter()
        .filter(|entry| entry.mac.0 == [0; 6])
        .filter_map(|entry| entry.remote)
        .collect();
    let vxlan = entries
        .iter()
        .filter(|entry| entry.mac.0 != [0; 6])
        .filter_map(|entry| Some((entry.mac, entry.remote?)))
        .collect();
    let tap_present = ops.link(&devices.tap).await?.is_some();
    let on_vxlan = ops.bridge_fdb_static(&devices.vxlan).await?;
    let on_tap = if tap_present {
        ops.bridge_fdb_static(&devices.tap).await?
    } else {
        Vec::new()
    };
    let stats = ops.link_stats(&devices.vxlan).await?;
    let view = KernelView {
        flood,
        entries: Present {
            bridge: bridge_entries(on_vxlan, on_tap),
            vxlan,
        },
        learned,
        tap_present,
    };
    Ok((view, stats))
}

/// Applies the flood list changes, then the per-MAC ones.
pub async fn apply<L: LinkOps>(ops: &L, devices: &Devices, flood: FloodPlan, fdb: Option<FdbPlan>) {
    let vxlan = devices.vxlan.as_str();
    for remote in flood.add {
        match ops.fdb_append_flood(vxlan, remote).await {
            Ok(()) => info!("fastdp: {vxlan} floods to {remote}"),
            Err(err) => warn!("fastdp: cannot add {remote} to {vxlan}: {err}"),
        }
    }
    for remote in flood.remove {
        match ops.fdb_del_flood(vxlan, remote).await {
            Ok(_) => info!("fastdp: {vxlan} no longer floods to {remote}"),
            Err(err) => warn!("fastdp: cannot remove {remote} from {vxlan}: {err}"),
        }
    }
    let Some(fdb) = fdb else { return };
    for (mac, port) in fdb.bridge_set {
        let dev = devices.port(port);
        match ops.bridge_fdb_set(dev, mac).await {
            Ok(()) => debug!("fastdp: bridge sends {mac} to {dev}"),
            Err(err) => warn!("fastdp: cannot point {mac} at {dev}: {err}"),
        }
    }
    for (mac, remote) in fdb.vxlan_set {
        // Dynamic: the kernel's learning may refresh it, or move it when the MAC shows up
        // behind another node before we hear of it.
        if let Err(err) = ops.fdb_set_dynamic(vxlan, mac, remote).await {
            warn!("fastdp: cannot point {mac} at {remote} on {vxlan}: {err}");
        }
    }
    for (mac, port) in fdb.bridge_del {
        let dev = devices.port(port);
        if let Err(err) = ops.bridge_fdb_del(dev, mac).await {
            warn!("fastdp: cannot remove the bridge entry {mac} on {dev}: {err}");
        }
    }
    for (mac, remote) in fdb.vxlan_del {
        if let Err(err) = ops.fdb_del(vxlan, mac, remote).await {
            warn!("fastdp: cannot remove {mac} at {remote} from {vxlan}: {err}");
        }
    }
}

#[cfg(test)]
mod tests;
