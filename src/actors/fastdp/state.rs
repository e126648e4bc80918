//! The `Fastdp` actor's logic, synchronous and time-injected: from the established links, the
//! kernel's current tables and the MAC table, it decides each peer's overlay (the switch), the
//! flood list, the per-MAC entries, and which kernel-learned MACs to report. The actor reads the
//! kernel, calls [`FastdpState::step`], and applies what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fdb_plan::{self, Carriers, FdbPlan, Port, Present};
use super::plan::{FloodPlan, FloodTracker};
use super::switch::{LinkedPeer, OverlaySwitch, Switched};
use crate::actors::mac_learner::state::{Location, MacSnapshot};
use crate::actors::overlay::Overlay;
use crate::dataplane::{LearnedFdb, MacAddr};
use crate::topology::PeerName;

/// A kernel-learned VXLAN entry updated within this long is reported to the `MacLearner` as a
/// sighting: the kernel refreshes an entry when frames from its MAC arrive, so a fresh entry is
/// a live MAC, while an old one only says the MAC was there once.
pub const LEARNED_FRESH: Duration = Duration::from_secs(5);

/// What the kernel holds, as read before a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    /// The VXLAN flood list (all-zero MAC entries).
    pub flood: BTreeSet<Ipv4Addr>,
    /// VXLAN unicast entries (ours and learned) and static bridge entries on the overlay ports.
    pub entries: Present,
    /// The VXLAN entries the kernel learned, with their age.
    pub learned: Vec<LearnedFdb>,
    /// The sleeve TAP is present.
    pub tap_present: bool,
}

/// What a step decided.
#[derive(Debug, Default)]
pub struct Step {
    /// Overlay changes to log (and count, for fallbacks).
    pub switched: Vec<Switched>,
    pub flood: FloodPlan,
    /// `None` until the first MAC table arrived: with no table every entry would look stale.
    pub fdb: Option<FdbPlan>,
    /// Kernel-learned MACs to report to the `MacLearner`.
    pub seen: Vec<(MacAddr, Location)>,
    /// The underlay addresses the kernel floods to once `flood` is applied.
    pub flooded: BTreeSet<Ipv4Addr>,
    /// The peers the kernel carries our frames to once the step is applied.
    pub carried: BTreeSet<PeerName>,
}

#[derive(Debug)]
pub struct FastdpState {
    switch: OverlaySwitch,
    tracker: FloodTracker,
    macs: Option<Arc<MacSnapshot>>,
    /// Underlay address of every peer we had a link with, kept while its flood entry lives so
    /// its MACs stay on the kernel path through the grace period.
    last_ip: BTreeMap<PeerName, Ipv4Addr>,
}

impl FastdpState {
    pub fn new(enabled: bool) -> Self {
        Self {
            switch: OverlaySwitch::new(enabled),
            tracker: FloodTracker::default(),
            macs: None,
            last_ip: BTreeMap::new(),
        }
    }

    /// The same state with the switch's [`FastdpPolicy`](super::switch_policy::FastdpPolicy).
    pub fn with_policy(mut self, policy: super::switch_policy::FastdpPolicy) -> Self {
        self.switch = self.switch.with_policy(policy);
        self
    }

    pub fn switch(&self) -> &OverlaySwitch {
        &self.switch
    }

    pub fn set_macs(&mut self, macs: Arc<MacSnapshot>) {
        self.macs = Some(macs);
    }

    pub fn on_ack(&mut self, peer: PeerName, now: Instant) -> Vec<Switched> {
        self.switch.on_ack(peer, now)
    }

    /// One reconciliation: `links` are the established direct links now, `kernel` what the
    /// kernel holds.
    pub fn step(&mut self, links: &[LinkedPeer], kernel: &KernelView, now: Instant) -> Step {
        let mut switched = self.switch.set_links(links, &kernel.flood, now);
        switched.extend(self.switch.tick(now));
        for link in links {
            self.last_ip.insert(link.name, link.ip);
        }
        let peers = self.switch.peers();
        let on = |overlay: Overlay| {
            peers
                .values()
                .filter(move |peer| peer.overlay == overlay)
                .map(|peer| peer.ip)
                .collect::<BTreeSet<_>>()
        };
        let fastdp_ips = on(Overlay::Fastdp);
        // A linked peer on sleeve whose address another (fastdp) peer shares keeps the entry.
        let fallen_back: BTreeSet<Ipv4Addr> = on(Overlay::Sleeve)
            .difference(&fastdp_ips)
            .copied()
            .collect();
        let flood = self
            .tracker
            .plan_with_fallbacks(&kernel.flood, &fastdp_ips, &fallen_back, now);
        let flooded: BTreeSet<Ipv4Addr> = kernel
            .flood
            .iter()
            .chain(&flood.add)
            .filter(|ip| !flood.remove.contains(ip))
            .copied()
            .collect();
        // Forget the addresses of departed peers once nothing of theirs is left in the kernel.
        self.last_ip
            .retain(|name, ip| peers.contains_key(name) || flooded.contains(ip));

        let mut carriers = Carriers {
            kernel: BTreeMap::new(),
            tap_present: kernel.tap_present,
        };
        for (name, ip) in &self.last_ip {
            let carried = match peers.get(name) {
                Some(peer) => peer.overlay == Overlay::Fastdp,
                // Link gone, flood entry kept for the grace: the kernel still carries it.
                None => flooded.contains(ip),
            };
            if carried {
                carriers.kernel.insert(*name, *ip);
            }
        }
        let fdb = self.macs.as_ref().map(|macs| {
            let mut want = fdb_plan::desired(macs, &carriers);
            // Heartbeats to every linked peer, whatever its overlay: they test the path to come
            // back to. The bridge entries for its MAC follow its overlay like any other MAC.
            if self.switch.enabled() {
                for (name, peer) in &peers {
                    want.vxlan.insert(MacAddr(name.to_bytes()), peer.ip);
                }
            }
            let mut known: BTreeSet<MacAddr> = macs.iter().map(|(mac, _)| mac).collect();
            // Heartbeat entries of peers no longer linked are ours to remove.
            known.extend(self.last_ip.keys().map(|name| MacAddr(name.to_bytes())));
            let mut kept_ips: BTreeSet<Ipv4Addr> = carriers.kernel.values().copied().collect();
            if self.switch.enabled() {
                kept_ips.extend(peers.values().map(|peer| peer.ip));
            }
            fdb_plan::plan(&kernel.entries, &want, &known, &kept_ips)
        });

        let seen = self.sightings(&kernel.learned);
        Step {
            switched,
            flood,
            fdb,
            seen,
            flooded,
            carried: self.switch.fastdp_peers(),
        }
    }
}

impl FastdpState {
    /// The fresh kernel-learned entries as sightings at the linked peer whose underlay address
    /// they came from; entries from addresses of no linked peer are dropped.
    pub fn sightings(&self, learned: &[LearnedFdb]) -> Vec<(MacAddr, Location)> {
        let by_ip: BTreeMap<Ipv4Addr, PeerName> = self
            .switch
            .peers()
            .into_iter()
            .map(|(name, peer)| (peer.ip, name))
            .collect();
        learned
            .iter()
            .filter(|learned| learned.updated_ago <= LEARNED_FRESH)
            .filter_map(|learned| {
                let peer = by_ip.get(&learned.remote)?;
                Some((learned.mac, Location::Remote(*peer)))
            })
            .collect()
    }
}

/// The bridge entries present on the overlay ports, from the two ports' lists.
pub fn bridge_entries(vxlan: Vec<MacAddr>, tap: Vec<MacAddr>) -> BTreeMap<MacAddr, Port> {
    let mut entries: BTreeMap<MacAddr, Port> =
        vxlan.into_iter().map(|mac| (mac, Port::Vxlan)).collect();
    entries.extend(tap.into_iter().map(|mac| (mac, Port::Tap)));
    entries
}

#[cfg(test)]
mod tests;
