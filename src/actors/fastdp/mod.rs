//! The `Fastdp` actor: keeps the kernel's VXLAN forwarding database in step with the mesh, so the
//! kernel carries pod traffic to every directly connected peer without the router on the path.
//!
//! For now every established link's peer is a flood target (the all-zero MAC entry): broadcast
//! and unknown-unicast frames reach every direct peer and the bridges learn where MACs live. A
//! peer whose link goes keeps its entry for a grace period (see [`plan`]).
//! Per-MAC entries (from MAC learning), fastdp heartbeats and the fall-back to sleeve come with
//! the rest of the data-plane issue. The entries live in the kernel: traffic keeps flowing while
//! the router is down, and a restarted router adopts what it finds.

pub mod fdb_plan;
pub mod plan;
pub mod switch;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{info, warn};

use crate::actors::gossip::Gossip;
use crate::actors::gossip::messages::GetGossipStatus;
use crate::actors::supervisor::Supervised;
use crate::dataplane::{LinkOps, NetlinkLinkOps};

pub use plan::{FloodPlan, FloodTracker};

/// How often the FDB is reconciled with the links (a link change shows within this).
const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

pub struct Fastdp {
    ops: NetlinkLinkOps,
    vxlan: String,
    /// The overlay MTU the node was set up with (shown per link in the status).
    mtu: u32,
    /// The flood targets the kernel had at the last reconciliation, after our changes.
    programmed: BTreeSet<Ipv4Addr>,
    gossip: Supervised<Gossip>,
    /// A reconciliation is under way: the next tick waits for it.
    busy: bool,
    tracker: FloodTracker,
}

impl Fastdp {
    pub fn new(ops: NetlinkLinkOps, vxlan: String, mtu: u32, gossip: Supervised<Gossip>) -> Self {
        Self {
            ops,
            vxlan,
            mtu,
            programmed: BTreeSet::new(),
            gossip,
            busy: false,
            tracker: FloodTracker::default(),
        }
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let status = self.gossip.addr().send(GetGossipStatus);
        let ops = self.ops.clone();
        let vxlan = self.vxlan.clone();
        let observe = async move {
            let status = status.await.ok()?;
            let wanted: BTreeSet<Ipv4Addr> = status
                .links
                .iter()
                .filter(|link| link.established)
                .filter_map(|link| match link.remote_addr.ip() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                })
                .collect();
            match ops.fdb_entries(&vxlan).await {
                Ok(entries) => {
                    let present: BTreeSet<Ipv4Addr> = entries
                        .into_iter()
                        .filter(|entry| entry.mac.0 == [0; 6])
                        .filter_map(|entry| entry.remote)
                        .collect();
                    Some((present, wanted))
                }
                Err(err) => {
                    warn!("cannot read the FDB of {vxlan}: {err}");
                    None
                }
            }
        };
        ctx.spawn(observe.into_actor(self).then(|observed, act, _| {
            let plan = observed.map(|(present, wanted)| {
                let plan = act.tracker.plan(&present, &wanted, Instant::now());
                act.programmed = present
                    .iter()
                    .chain(&plan.add)
                    .filter(|remote| !plan.remove.contains(remote))
                    .copied()
                    .collect();
                plan
            });
            let ops = act.ops.clone();
            let vxlan = act.vxlan.clone();
            async move {
                if let Some(plan) = plan {
                    apply(&ops, &vxlan, plan).await;
                }
            }
            .into_actor(act)
            .map(|(), act, _| act.busy = false)
        }));
    }
}

async fn apply(ops: &NetlinkLinkOps, vxlan: &str, plan: FloodPlan) {
    for remote in plan.add {
        match ops.fdb_append_flood(vxlan, remote).await {
            Ok(()) => info!("fastdp: {vxlan} floods to {remote}"),
            Err(err) => warn!("fastdp: cannot add {remote} to {vxlan}: {err}"),
        }
    }
    for remote in plan.remove {
        match ops.fdb_del_flood(vxlan, remote).await {
            Ok(_) => info!("fastdp: {vxlan} no longer floods to {remote}"),
            Err(err) => warn!("fastdp: cannot remove {remote} from {vxlan}: {err}"),
        }
    }
}

/// Which peers' underlay addresses the kernel carries traffic to, and at what MTU.
#[derive(Clone, Debug, Default)]
pub struct FastdpStatus {
    pub programmed: BTreeSet<Ipv4Addr>,
    pub mtu: u32,
}

#[derive(Message)]
#[rtype(result = "FastdpStatus")]
pub struct GetFastdpStatus;

impl Handler<GetFastdpStatus> for Fastdp {
    type Result = MessageResult<GetFastdpStatus>;

    fn handle(&mut self, _: GetFastdpStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(FastdpStatus {
            programmed: self.programmed.clone(),
            mtu: self.mtu,
        })
    }
}

impl Actor for Fastdp {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RECONCILE_INTERVAL, |act, ctx| act.reconcile(ctx));
    }
}
