//! Start-up of the Kubernetes side: the client, the first Node list (which sizes a fresh IPAM
//! consensus and gives the first targets), and the `KubePeers` actor once the rest is wired.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use tracing::{info, warn};

use super::config::KubeArgs;
use crate::actors::connection_maker::ConnectionMaker;
use crate::actors::ipam::Ipam;
use crate::actors::supervisor::{RecipientSource, SupervisedAddr};
use crate::kubernetes::client::WatchBackoff;
use crate::kubernetes::nodes::{NodeEvent, NodeSet};
use crate::kubernetes::peer_list::Me;
use crate::kubernetes::{KubeClient, KubeError, KubePeers, KubePeersConfig};
use crate::metrics::{self, ActorKind};
use crate::snapshot::GetKubeStatus;
use crate::topology::PeerName;

/// One list attempt; an unreachable address otherwise waits for the TCP connect timeout.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KubeStartError {
    #[error("--kube-peers needs this node's name: give --node-name or set HOSTNAME")]
    NoNodeName,
    #[error(transparent)]
    Client(#[from] KubeError),
}

/// The client and what the first list said.
pub struct KubeStart {
    pub client: KubeClient,
    pub node_name: String,
    /// `None` when the API did not answer and the router could go on without it.
    pub nodes: Option<NodeSet>,
}

impl KubeStart {
    /// Every other node's address: the initial targets.
    pub fn targets(&self) -> Vec<String> {
        self.nodes
            .as_ref()
            .map(|nodes| nodes.targets(&self.node_name))
            .unwrap_or_default()
    }

    /// How many peers besides us a fresh consensus waits for.
    pub fn consensus_peers(&self) -> Option<usize> {
        self.nodes
            .as_ref()
            .map(|nodes| nodes.other_nodes(&self.node_name))
    }
}

/// Connects and lists the Nodes. With `must_list` (a fresh IPAM needs the node count) it waits,
/// with back-off, until the API answers; otherwise one failed attempt is enough to go on with
/// what the router persisted, and the watch catches up later.
pub async fn connect(
    args: &KubeArgs,
    must_list: bool,
    waiting_for: &tokio::sync::watch::Sender<String>,
) -> Result<KubeStart, KubeStartError> {
    let node_name = args
        .node_name
        .clone()
        .filter(|name| !name.trim().is_empty())
        .ok_or(KubeStartError::NoNodeName)?;
    let client = KubeClient::new(args.kubeconfig.as_deref(), &args.kube_namespace).await?;
    // The same back-off as the watch's: a returning API server is seen within 30 s.
    let mut backoff = WatchBackoff::default();
    let mut waiting = false;
    loop {
        let listed = match tokio::time::timeout(LIST_TIMEOUT, client.list_nodes()).await {
            Ok(result) => result.map_err(|err| {
                if let Some(op) = err.op() {
                    metrics::kube_api_error(op);
                }
                err.to_string()
            }),
            Err(_) => Err(format!("no answer within {LIST_TIMEOUT:?}")),
        };
        match listed {
            Ok(listed) => {
                let mut nodes = NodeSet::default();
                nodes.apply(NodeEvent::Relisting);
                for node in listed {
                    nodes.apply(NodeEvent::Listed(node));
                }
                nodes.apply(NodeEvent::Synced);
                metrics::kube_nodes(nodes.len());
                info!(
                    "connected to the Kubernetes API at {} ({} nodes)",
                    client.url(),
                    nodes.len()
                );
                return Ok(KubeStart {
                    client,
                    node_name,
                    nodes: Some(nodes),
                });
            }
            Err(error) => {
                let message = format!(
                    "waiting for the Kubernetes API at {}: {error}",
                    client.url()
                );
                if !waiting {
                    warn!("{message}");
                    waiting = true;
                }
                waiting_for.send_replace(format!("PeerDiscovery: kubernetes ({message})"));
                if !must_list {
                    return Ok(KubeStart {
                        client,
                        node_name,
                        nodes: None,
                    });
                }
                let delay = backoff.next().unwrap_or(WatchBackoff::CEILING);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Starts the `KubePeers` actor under supervision; answers the status source for the API.
pub fn start(
    start: KubeStart,
    args: &KubeArgs,
    name: PeerName,
    maker: SupervisedAddr<ConnectionMaker>,
    ipam: Option<SupervisedAddr<Ipam>>,
) -> Arc<dyn RecipientSource<GetKubeStatus>> {
    metrics::register_kube_series(&metrics::KubeApiOp::ROUTER);
    let config = Arc::new(KubePeersConfig {
        client: start.client,
        me: Me {
            peer_name: name.to_string(),
            node_name: start.node_name,
        },
        maker: Arc::new(maker),
        ipam: ipam
            .clone()
            .map(|ipam| Arc::new(ipam) as Arc<dyn RecipientSource<_>>),
        ipam_status: ipam.map(|ipam| Arc::new(ipam) as Arc<dyn RecipientSource<_>>),
        reclaim_interval: args.kube_reclaim_interval,
    });
    let actor = SupervisedAddr::start(ActorKind::Kube, move || {
        KubePeers::new(config.clone()).start()
    });
    Arc::new(actor)
}
