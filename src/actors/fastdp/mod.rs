//! The `Fastdp` actor: the overlay switch and the kernel's forwarding tables. It follows the
//! established links as the gossip publishes them (reconciling at once when they change), and
//! every `RECONCILE_INTERVAL` (500 ms) it reads the kernel's tables, runs
//! the pure [`state::FastdpState::step`], and applies the result: the VXLAN flood list (peers on
//! fastdp, plus departed peers during the grace of [`plan`]), the per-MAC bridge and VXLAN
//! entries of [`fdb_plan`], the kernel-learned MACs reported to the `MacLearner`. Fastdp
//! heartbeats ([`crate::dataplane::fastdp_heartbeat`], on their own thread) decide each peer's
//! overlay ([`switch`]); every switch is logged as Weave Net did and published as
//! [`FastdpPeers`].
//!
//! The entries live in the kernel: traffic keeps flowing while the router is down, and a
//! restarted router adopts what it finds (a peer the kernel already floods to starts on fastdp).

pub mod fdb_plan;
pub mod handover;
pub mod kernel;
pub mod plan;
pub mod state;
pub mod switch;
pub mod switch_policy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::actors::gossip::messages::GossipStatus;
use crate::actors::gossip::view::{GossipView, follow};
use crate::actors::overlay::{FastdpPeers, MacTablePublished, MacsSeen, Subscriber, Subscribers};
use crate::dataplane::fastdp_heartbeat::{HeartbeatConfig, HeartbeatSocket, Heartbeater};
use crate::dataplane::{LearnedFdb, LearnedFdbWatch, LinkOps, LinkStats, NetlinkLinkOps};
use crate::metrics;
use crate::topology::PeerName;

pub use kernel::Devices;
pub use plan::{FloodPlan, FloodTracker};
pub use switch::PeerOverlay;

use handover::SleeveHandover;
use state::FastdpState;
use switch::{HEARTBEAT_INTERVAL, LinkedPeer, Switched};

/// How often the kernel is reconciled with the links, the switch and the MAC table (a MAC
/// change or drift in the kernel shows within this; a link change is reconciled at once).
const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);
/// [`FastdpPeers`] is published again this often without changes, so a subscriber that
/// restarted catches up.
const REPUBLISH_INTERVAL: Duration = Duration::from_secs(3);
/// How long to wait before retrying to open the heartbeat socket (the VXLAN device missing,
/// say, after a `weft reset` under a running router).
const HEARTBEAT_RETRY: Duration = Duration::from_secs(5);

/// What the actor is configured with.
#[derive(Clone, Debug)]
pub struct FastdpConfig {
    /// Our peer name: our bridge MAC, the heartbeats' source.
    pub local: PeerName,
    pub devices: Devices,
    /// The overlay MTU: heartbeats are this + 14 bytes.
    pub mtu: u32,
    /// False with `--no-fastdp`: every peer on sleeve, no heartbeats, no flood list.
    pub enabled: bool,
    /// Which peers fastdp may carry at all (with a password: `--trusted-subnets`).
    pub policy: switch_policy::FastdpPolicy,
}

/// Where the actor sends what it decides.
#[derive(Clone)]
pub struct FastdpOutputs {
    /// The `MacLearner`, for kernel-learned MACs.
    pub macs_seen: Option<Subscriber<MacsSeen>>,
    /// The overlay switch's subscribers (the `Sleeve` actor).
    pub peers: Subscribers<FastdpPeers>,
}

/// An entry the VXLAN device just learned, from the neighbour notification task.
#[derive(Message)]
#[rtype(result = "()")]
struct KernelLearned(LearnedFdb);

/// Acks to our heartbeats, from the heartbeat thread: the senders of those that arrived
/// together.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HeartbeatAcks(pub Vec<PeerName>);

pub struct Fastdp {
    ops: NetlinkLinkOps,
    config: FastdpConfig,
    /// The mesh as the gossip publishes it.
    view: GossipView,
    /// The established links of the latest view.
    links: Vec<LinkedPeer>,
    outputs: FastdpOutputs,
    state: FastdpState,
    programmed: BTreeSet<Ipv4Addr>,
    /// What the sleeve has been told, in step with what the kernel carries.
    handover: SleeveHandover,
    /// When the sleeve was last told.
    published: Option<Instant>,
    /// The timer that ends the next drain.
    drain_timer: Option<SpawnHandle>,
    targets: watch::Sender<Vec<PeerName>>,
    heartbeater: Option<Heartbeater>,
    stats: LinkStats,
    /// A reconciliation is under way: the next tick waits for it.
    busy: bool,
    /// The links or the switch changed during a reconciliation: another follows at once (a tick
    /// that finds one under way is skipped, as the next tick comes soon enough).
    again: bool,
}

impl Fastdp {
    pub fn new(
        ops: NetlinkLinkOps,
        config: FastdpConfig,
        view: GossipView,
        outputs: FastdpOutputs,
    ) -> Self {
        Self {
            ops,
            state: FastdpState::new(config.enabled).with_policy(config.policy.clone()),
            config,
            view,
            links: Vec::new(),
            outputs,
            programmed: BTreeSet::new(),
            handover: SleeveHandover::default(),
            published: None,
            drain_timer: None,
            targets: watch::channel(Vec::new()).0,
            heartbeater: None,
            stats: LinkStats::default(),
            busy: false,
            again: false,
        }
    }

    /// A new view of the mesh: when the established links changed, the kernel follows at once.
    fn on_view(&mut self, ctx: &mut Context<Self>, status: Arc<GossipStatus>) {
        let links = linked_peers(&status);
        if links != self.links {
            self.links = links;
            self.reconcile_soon(ctx);
        }
    }

    /// Reconciles now, or right after the reconciliation under way: its step may have been
    /// taken before what changed.
    fn reconcile_soon(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
        } else {
            self.reconcile(ctx);
        }
    }

    fn start_heartbeats(&mut self, ctx: &mut Context<Self>) {
        if !self.config.enabled || self.heartbeater.is_some() {
            return;
        }
        let ops = self.ops.clone();
        let vxlan = self.config.devices.vxlan.clone();
        let lookup = async move { ops.require("open heartbeat socket on", &vxlan).await };
        ctx.spawn(lookup.into_actor(self).map(|link, act, ctx| {
            let vxlan = act.config.devices.vxlan.clone();
            let opened = link.and_then(|link| HeartbeatSocket::open(&vxlan, link.index));
            let me = ctx.address();
            let config = HeartbeatConfig {
                local: act.config.local,
                mtu: act.config.mtu,
                interval: HEARTBEAT_INTERVAL,
            };
            let started = opened.and_then(|socket| {
                Heartbeater::spawn(socket, config, act.targets.subscribe(), move |peers| {
                    // A full mailbox hands the acks back: the thread retries them.
                    me.try_send(HeartbeatAcks(peers))
                        .map_err(|refused| refused.into_inner().0)
                })
            });
            match started {
                Ok(heartbeater) => act.heartbeater = Some(heartbeater),
                Err(err) => {
                    warn!("fastdp heartbeats cannot start (peers stay on sleeve): {err}");
                    ctx.run_later(HEARTBEAT_RETRY, |act, ctx| act.start_heartbeats(ctx));
                }
            }
        }));
    }

    /// Forwards the VXLAN device's learning notifications to the actor as they come: a new
    /// remote MAC reaches the `MacLearner` at once instead of at the next dump.
    fn watch_learning(&mut self, ctx: &mut Context<Self>) {
        let ops = self.ops.clone();
        let vxlan = self.config.devices.vxlan.clone();
        let me = ctx.address();
        let watch = async move {
            let link = match ops.link(&vxlan).await {
                Ok(Some(link)) => link,
                Ok(None) => return warn!("fastdp: no {vxlan} to watch for learned MACs"),
                Err(err) => return warn!("fastdp: cannot watch {vxlan} for learned MACs: {err}"),
            };
            let mut watch = match LearnedFdbWatch::new(link.index) {
                Ok(watch) => watch,
                Err(err) => return warn!("fastdp: learned MACs come only by polling: {err}"),
            };
            while let Some(learned) = watch.next().await {
                // Full mailbox: the periodic dump reports it while it is fresh.
                let _ = me.try_send(KernelLearned(learned));
            }
        };
        ctx.spawn(watch.into_actor(self));
    }

    fn switched(&mut self, switched: Vec<Switched>) {
        for switch in switched {
            info!("{}", switch.log_line());
            if switch.fallback {
                metrics::overlay_fallback();
            }
        }
    }

    /// Tells the sleeve `peers` now, or what it was told last when that was long enough ago.
    fn tell_sleeve(&mut self, peers: Option<FastdpPeers>, now: Instant) {
        let due = self
            .published
            .is_none_or(|at| now.saturating_duration_since(at) >= REPUBLISH_INTERVAL);
        if let Some(peers) = peers.or_else(|| due.then(|| self.handover.told().clone())) {
            self.outputs.peers.publish(&peers);
            self.published = Some(now);
        }
    }

    /// Ends the drains due by now, and sets the timer for the next one.
    fn end_drains(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let message = self.handover.drained(now);
        self.tell_sleeve(message, now);
        if let Some(timer) = self.drain_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(end) = self.handover.next_drain_end() {
            let wait = end.saturating_duration_since(now);
            self.drain_timer = Some(ctx.run_later(wait, |act, ctx| act.end_drains(ctx)));
        }
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let links = self.links.clone();
        let ops = self.ops.clone();
        let devices = self.config.devices.clone();
        let observe = async move {
            match kernel::observe(&ops, &devices).await {
                Ok((view, stats)) => Some((links, view, stats)),
                Err(err) => {
                    warn!("fastdp: cannot read the kernel's tables: {err}");
                    None
                }
            }
        };
        ctx.spawn(observe.into_actor(self).then(|observed, act, _| {
            let plans = observed.map(|(links, view, stats)| {
                let now = Instant::now();
                let step = act.state.step(&links, &view, now);
                act.switched(step.switched);
                // The peers the kernel stops carrying go back to the sleeve before the kernel
                // moves their MACs.
                let first = act.handover.before_kernel(&step.carried);
                act.tell_sleeve(first, now);
                act.stats = stats;
                metrics::record_overlay_traffic(metrics::OverlayPath::Fastdp, &stats);
                act.programmed = step.flooded;
                if !step.seen.is_empty()
                    && let Some(macs_seen) = &act.outputs.macs_seen
                    && macs_seen.recipient().try_send(MacsSeen(step.seen)).is_err()
                {
                    // The next reconciliation reports them again while they stay fresh.
                    tracing::debug!("fastdp: the MAC learner's mailbox is full");
                }
                (step.flood, step.fdb, step.carried)
            });
            let ops = act.ops.clone();
            let devices = act.config.devices.clone();
            async move {
                let (flood, fdb, carried) = plans?;
                kernel::apply(&ops, &devices, flood, fdb).await;
                Some(carried)
            }
            .into_actor(act)
            .map(|applied, act, ctx| {
                act.busy = false;
                let now = Instant::now();
                // The peers the kernel took over reach the sleeve only now, when the bridge
                // already sends their MACs to the VXLAN port (see `handover`).
                let told = applied.and_then(|carried| act.handover.after_kernel(&carried, now));
                let drains = told.as_ref().is_some_and(|told| !told.draining.is_empty());
                act.tell_sleeve(told, now);
                if drains {
                    act.end_drains(ctx);
                }
                // Send failures are harmless: the watch keeps the latest value for the thread.
                act.targets
                    .send_replace(act.state.switch().heartbeat_targets());
                if std::mem::take(&mut act.again) {
                    act.reconcile(ctx);
                }
            })
        }));
    }
}

/// The established links of a view of the mesh, with the IPv4 address each peer's VXLAN traffic
/// goes to (the VXLAN device has no IPv6 underlay).
pub fn linked_peers(status: &GossipStatus) -> Vec<LinkedPeer> {
    status
        .links
        .iter()
        .filter(|link| link.established)
        .filter_map(|link| match link.remote_addr.ip() {
            IpAddr::V4(ip) => Some(LinkedPeer {
                name: link.remote,
                nickname: link.remote_nickname.clone(),
                ip,
            }),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// The overlay state as status, report and metrics show it.
#[derive(Clone, Debug, Default)]
pub struct FastdpStatus {
    /// The underlay addresses the kernel floods to.
    pub programmed: BTreeSet<Ipv4Addr>,
    pub mtu: u32,
    pub enabled: bool,
    /// Every linked peer's overlay and heartbeat health.
    pub peers: BTreeMap<PeerName, PeerOverlay>,
    /// The VXLAN device's counters.
    pub stats: LinkStats,
}

#[derive(Message)]
#[rtype(result = "FastdpStatus")]
pub struct GetFastdpStatus;

impl Handler<GetFastdpStatus> for Fastdp {
    type Result = MessageResult<GetFastdpStatus>;

    fn handle(&mut self, _: GetFastdpStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(FastdpStatus {
            programmed: self.programmed.clone(),
            mtu: self.config.mtu,
            enabled: self.config.enabled,
            peers: self.state.switch().peers(),
            stats: self.stats,
        })
    }
}

impl Handler<HeartbeatAcks> for Fastdp {
    type Result = ();

    fn handle(&mut self, HeartbeatAcks(peers): HeartbeatAcks, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let switched: Vec<_> = peers
            .into_iter()
            .flat_map(|peer| self.state.on_ack(peer, now))
            .collect();
        if !switched.is_empty() {
            self.switched(switched);
            // The kernel follows now rather than at the next tick.
            self.reconcile_soon(ctx);
        }
    }
}

impl Handler<KernelLearned> for Fastdp {
    type Result = ();

    fn handle(&mut self, KernelLearned(learned): KernelLearned, _: &mut Context<Self>) {
        let seen = self.state.sightings(&[learned]);
        if let (false, Some(macs_seen)) = (seen.is_empty(), &self.outputs.macs_seen) {
            let _ = macs_seen.recipient().try_send(MacsSeen(seen));
        }
    }
}

impl Handler<MacTablePublished> for Fastdp {
    type Result = ();

    fn handle(&mut self, table: MacTablePublished, _: &mut Context<Self>) {
        self.state.set_macs(Arc::clone(&table.snapshot));
    }
}

impl Actor for Fastdp {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_heartbeats(ctx);
        self.watch_learning(ctx);
        follow(self, ctx, self.view.clone(), Self::on_view);
        ctx.run_interval(RECONCILE_INTERVAL, |act, ctx| act.reconcile(ctx));
    }
}
