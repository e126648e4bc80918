//! The `KubePeers` actor: a thin shell over [`KubeState`] that consumes the Node watch, tells the
//! connection maker the targets, runs reclaim rounds one at a time, and sets the node's network
//! condition once IPAM is ready.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use super::client::{KubeClient, KubeError};
use super::nodes::NodeEvent;
use super::peer_list::Me;
use super::reclaim::{ReclaimContext, reclaim_round};
use super::state::{ApiTransition, KubeState, NetworkMark};
use crate::actors::connection_maker::Connect;
use crate::actors::ipam::{GetIpamSnapshot, Submit};
use crate::actors::supervisor::RecipientSource;
use crate::metrics;
use crate::snapshot::GetKubeStatus;

/// How often the network condition is retried until it is set: IPAM usually becomes ready
/// within a few seconds of the mesh forming.
const NETWORK_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// What every incarnation of the actor is made from.
pub struct KubePeersConfig {
    pub client: KubeClient,
    pub me: Me,
    pub maker: Arc<dyn RecipientSource<Connect>>,
    pub ipam: Option<Arc<dyn RecipientSource<Submit>>>,
    pub ipam_status: Option<Arc<dyn RecipientSource<GetIpamSnapshot>>>,
    /// How often the peer record is looked at besides on node deletions (`--kube-reclaim-interval`).
    pub reclaim_interval: Duration,
}

pub struct KubePeers {
    state: KubeState,
    config: Arc<KubePeersConfig>,
    reclaim_running: bool,
    /// A reclaim was asked for while one ran: run another right after.
    reclaim_again: bool,
    marking_network: bool,
}

impl KubePeers {
    pub fn new(config: Arc<KubePeersConfig>) -> Self {
        Self {
            state: KubeState::new(&config.me.node_name, config.client.url()),
            config,
            reclaim_running: false,
            reclaim_again: false,
            marking_network: false,
        }
    }

    fn api_result<T>(&mut self, result: &Result<T, KubeError>) {
        let transition = match result {
            Ok(_) => self.state.api_answered(),
            Err(err) => {
                if let Some(op) = err.op() {
                    metrics::kube_api_error(op);
                }
                self.state.api_failed(err.to_string())
            }
        };
        self.log_transition(transition);
    }

    fn log_transition(&self, transition: Option<ApiTransition>) {
        match transition {
            Some(ApiTransition::Lost(error)) => warn!(
                "waiting for the Kubernetes API at {}: {error}",
                self.config.client.url()
            ),
            Some(ApiTransition::Regained) => info!("connected to the Kubernetes API"),
            None => {}
        }
    }

    fn reclaim(&mut self, ctx: &mut Context<Self>) {
        if !self.state.nodes().synced() {
            return;
        }
        if self.reclaim_running {
            self.reclaim_again = true;
            return;
        }
        self.reclaim_running = true;
        self.reclaim_again = false;
        let context = ReclaimContext {
            client: self.config.client.clone(),
            me: self.config.me.clone(),
            ipam: self.config.ipam.clone(),
        };
        let nodes: BTreeSet<String> = self.state.nodes().names().map(str::to_string).collect();
        ctx.spawn(
            reclaim_round(context, nodes)
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.reclaim_running = false;
                    act.api_result(&result);
                    if act.reclaim_again {
                        act.reclaim(ctx);
                    }
                }),
        );
    }

    fn mark_network(&mut self, ctx: &mut Context<Self>) {
        if self.marking_network || !self.state.network_mark_due() {
            return;
        }
        self.marking_network = true;
        let client = self.config.client.clone();
        let ipam_status = self.config.ipam_status.clone();
        let node = self.config.me.node_name.clone();
        let work = async move {
            if let Some(ipam) = ipam_status {
                let ready = match ipam.recipient().send(GetIpamSnapshot).await {
                    // Idle: no allocation asked for yet, so nothing waits on consensus.
                    Ok(snapshot) => snapshot.status == "ready" || snapshot.status == "idle",
                    Err(_) => false,
                };
                if !ready {
                    return (NetworkMark::IpamNotReady, None);
                }
            }
            match client.mark_network_up(&node).await {
                Ok(()) => (NetworkMark::Set, None),
                Err(err) => (NetworkMark::Failed(err.to_string()), err.op()),
            }
        };
        ctx.spawn(work.into_actor(self).map(|(mark, failed_op), act, _| {
            act.marking_network = false;
            if let Some(op) = failed_op {
                metrics::kube_api_error(op);
            }
            let set = mark == NetworkMark::Set;
            let transition = act.state.network_mark_ended(mark);
            act.log_transition(transition);
            if set {
                info!(
                    "set NetworkUnavailable=False on node {}",
                    act.config.me.node_name
                );
            }
        }));
    }
}

impl Actor for KubePeers {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(self.config.client.watch_nodes());
        ctx.run_interval(self.config.reclaim_interval, |act, ctx| act.reclaim(ctx));
        ctx.run_interval(NETWORK_CHECK_INTERVAL, |act, ctx| act.mark_network(ctx));
    }
}

impl StreamHandler<Result<NodeEvent, KubeError>> for KubePeers {
    fn handle(&mut self, item: Result<NodeEvent, KubeError>, ctx: &mut Context<Self>) {
        self.api_result(&item);
        if let Ok(NodeEvent::Expired) = &item {
            info!("the Node watch expired (the API server restarted?); listing the Nodes again");
        }
        let Ok(event) = item else {
            return;
        };
        let actions = self.state.on_event(event);
        metrics::kube_nodes(self.state.nodes().len());
        if let Some(targets) = actions.targets {
            info!("peers from Kubernetes Nodes: {targets:?}");
            let connect = Connect {
                peers: targets,
                replace: true,
            };
            let maker = self.config.maker.recipient();
            ctx.spawn(
                async move { maker.send(connect).await }
                    .into_actor(self)
                    .map(|result, _, _| match result {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            warn!("the connection maker refused the node addresses: {err}")
                        }
                        Err(err) => warn!("cannot reach the connection maker: {err}"),
                    }),
            );
        }
        if actions.reclaim {
            self.reclaim(ctx);
        }
        self.mark_network(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The watcher never ends on its own; if it does, stopping lets supervision restart us.
        warn!("the Kubernetes Node watch ended");
    }
}

impl Handler<GetKubeStatus> for KubePeers {
    type Result = MessageResult<GetKubeStatus>;

    fn handle(&mut self, _: GetKubeStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.status())
    }
}
