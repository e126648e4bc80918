//! Which per-MAC forwarding entries the kernel should hold, and the changes that get it there:
//! the pure part of the FDB reconciliation (the flood list is [`super::plan`]'s).
//!
//! For a remote MAC M at peer P:
//! - P carried by the kernel (fastdp, or its link just went and it is within the flood grace):
//!   bridge FDB `M → vxlan port` and VXLAN FDB `M → P's underlay address`;
//! - otherwise (P on sleeve, or not a direct neighbour): bridge FDB `M → sleeve TAP port`, when
//!   the TAP exists.
//!
//! A MAC without an entry floods to both overlay ports (the kernel's flood list covers fastdp
//! peers, the sleeve the rest). VXLAN entries the kernel learned for MACs we do not know yet are
//! left alone: they are how we learn (see the actor), and the kernel ages them out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::actors::mac_learner::state::{Location, MacSnapshot};
use crate::topology::PeerName;
use crate::wire::MacAddr;

/// The two overlay ports of the bridge.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Port {
    Vxlan,
    Tap,
}

/// What the kernel holds now (the entries we manage).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Present {
    /// Static bridge FDB entries on the overlay ports.
    pub bridge: BTreeMap<MacAddr, Port>,
    /// VXLAN FDB unicast entries (flood entries excluded), one remote per MAC.
    pub vxlan: BTreeMap<MacAddr, Ipv4Addr>,
}

/// Where frames go, per peer, for this reconciliation.
#[derive(Clone, Debug, Default)]
pub struct Carriers {
    /// Peers the kernel carries frames to (fastdp and grace peers), with their underlay address.
    pub kernel: BTreeMap<PeerName, Ipv4Addr>,
    /// The sleeve TAP is attached to the bridge (entries pointing at it can be programmed).
    pub tap_present: bool,
}

/// The changes to make, in this order: bridge entries (replace moves a MAC between ports),
/// VXLAN entries, then deletions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdbPlan {
    pub bridge_set: Vec<(MacAddr, Port)>,
    pub vxlan_set: Vec<(MacAddr, Ipv4Addr)>,
    pub bridge_del: Vec<(MacAddr, Port)>,
    pub vxlan_del: Vec<(MacAddr, Ipv4Addr)>,
}

impl FdbPlan {
    pub fn is_empty(&self) -> bool {
        self.bridge_set.is_empty()
            && self.vxlan_set.is_empty()
            && self.bridge_del.is_empty()
            && self.vxlan_del.is_empty()
    }
}

/// The entries the MAC table calls for, given who carries each peer.
pub fn desired(macs: &MacSnapshot, carriers: &Carriers) -> Present {
    let mut want = Present::default();
    for (mac, location) in macs.iter() {
        let Location::Remote(peer) = location else {
            continue;
        };
        match carriers.kernel.get(&peer) {
            Some(&ip) => {
                want.bridge.insert(mac, Port::Vxlan);
                want.vxlan.insert(mac, ip);
            }
            None if carriers.tap_present => {
                want.bridge.insert(mac, Port::Tap);
            }
            None => {}
        }
    }
    want
}

/// The changes from `present` to `want`. `known` is every MAC in the table: a VXLAN entry for
/// a MAC we do not know, to an address the kernel still carries, is the kernel's own learning
/// and stays.
pub fn plan(
    present: &Present,
    want: &Present,
    known: &BTreeSet<MacAddr>,
    kernel_ips: &BTreeSet<Ipv4Addr>,
) -> FdbPlan {
    let mut plan = FdbPlan::default();
    for (&mac, &port) in &want.bridge {
        if present.bridge.get(&mac) != Some(&port) {
            plan.bridge_set.push((mac, port));
        }
    }
    for (&mac, &port) in &present.bridge {
        if !want.bridge.contains_key(&mac) {
            plan.bridge_del.push((mac, port));
        }
    }
    for (&mac, &ip) in &want.vxlan {
        if present.vxlan.get(&mac) != Some(&ip) {
            plan.vxlan_set.push((mac, ip));
        }
    }
    for (&mac, &ip) in &present.vxlan {
        if want.vxlan.contains_key(&mac) {
            continue;
        }
        if known.contains(&mac) || !kernel_ips.contains(&ip) {
            plan.vxlan_del.push((mac, ip));
        }
    }
    plan
}

#[cfg(test)]
mod tests;
