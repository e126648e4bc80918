//! Every call the router makes to the Kubernetes API, and the only place that knows `kube` and
//! `k8s-openapi` types: callers get [`NodeInfo`]s, [`NodeEvent`]s and [`PeerList`]s.
//!
//! Only core/v1 is used (Nodes, their status, one ConfigMap), so any API server from 1.20 on
//! serves it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::utils::{Backoff, StreamBackoff};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};

use super::nodes::{NodeEvent, NodeInfo};
use super::peer_list::{CONFIGMAP_NAME, PEERS_ANNOTATION, PeerList};
use crate::metrics::KubeApiOp as ApiOp;

/// The condition we clear, and the reason Weave Net gave (operators and tools look for it).
const NETWORK_CONDITION: &str = "NetworkUnavailable";
const NETWORK_UP_REASON: &str = "WeaveIsUp";
const NETWORK_UP_MESSAGE: &str = "Weft pod has set this";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "not running in a pod (no service account or KUBERNETES_SERVICE_HOST) and no --kubeconfig given: {0}"
    )]
    InCluster(#[source] kube::config::InClusterError),
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("{op}: {source}", op = .op.as_str())]
    Api {
        op: ApiOp,
        #[source]
        source: kube::Error,
    },
    #[error("{op}: {source}", op = .op.as_str())]
    Watch {
        op: ApiOp,
        #[source]
        source: watcher::Error,
    },
    #[error(
        "the peer record {namespace}/{CONFIGMAP_NAME} has an unreadable {PEERS_ANNOTATION} annotation: {source}"
    )]
    PeerListFormat {
        namespace: String,
        #[source]
        source: serde_json::Error,
    },
}

impl KubeError {
    pub fn op(&self) -> Option<ApiOp> {
        match self {
            KubeError::Api { op, .. } | KubeError::Watch { op, .. } => Some(*op),
            KubeError::PeerListFormat { .. } => Some(ApiOp::ReadPeerList),
            _ => None,
        }
    }
}

/// The record as read, with the object (and so the version) a write must name.
#[derive(Clone, Debug)]
pub struct VersionedPeerList {
    pub list: PeerList,
    config_map: ConfigMap,
}

/// Whether an optimistic write landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Someone wrote in between: read again and decide again.
    Conflict,
}

#[derive(Clone)]
pub struct KubeClient {
    client: Client,
    namespace: String,
    url: String,
}

impl KubeClient {
    /// From `kubeconfig` if given, else the pod's service account.
    pub async fn new(kubeconfig: Option<&Path>, namespace: &str) -> Result<Self, KubeError> {
        let (client, url) = connect(kubeconfig).await?;
        Ok(Self {
            client,
            namespace: namespace.to_string(),
            url,
        })
    }

    /// The API server's address, for the log and the status.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Asks the API server itself, not the watch: before a node's ranges are reclaimed, its
    /// deletion is confirmed here, in case our watch is behind.
    pub async fn node_exists(&self, name: &str) -> Result<bool, KubeError> {
        self.nodes()
            .get_opt(name)
            .await
            .map(|node| node.is_some())
            .map_err(|source| KubeError::Api {
                op: ApiOp::GetNode,
                source,
            })
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>, KubeError> {
        let list = self
            .nodes()
            .list(&ListParams::default())
            .await
            .map_err(|source| KubeError::Api {
                op: ApiOp::ListNodes,
                source,
            })?;
        Ok(list.items.iter().filter_map(node_info).collect())
    }

    /// Lists, then watches, the Nodes, forever: a failed watch re-lists after a back-off of
    /// [`WatchBackoff`]; each failure is yielded, so that it is seen. An expired resource version
    /// (after every API server restart) is no failure: the re-list follows at once, and it is
    /// yielded as [`NodeEvent::Expired`].
    pub fn watch_nodes(&self) -> impl Stream<Item = Result<NodeEvent, KubeError>> + Send + 'static {
        let events =
            watcher::watcher(self.nodes(), watcher::Config::default()).map(|item| match item {
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    Ok(Some(NodeEvent::Expired))
                }
                Err(source) => Err(KubeError::Watch {
                    op: ApiOp::WatchNodes,
                    source,
                }),
                Ok(Event::Init) => Ok(Some(NodeEvent::Relisting)),
                Ok(Event::InitApply(node)) => Ok(node_info(&node).map(NodeEvent::Listed)),
                Ok(Event::InitDone) => Ok(Some(NodeEvent::Synced)),
                Ok(Event::Apply(node)) => Ok(node_info(&node).map(NodeEvent::Applied)),
                Ok(Event::Delete(node)) => Ok(node.metadata.name.map(NodeEvent::Deleted)),
            });
        StreamBackoff::new(events, WatchBackoff::default())
            .filter_map(|item| async move { item.transpose() })
    }

    /// Reads the peer record, making an empty one if there is none yet.
    pub async fn read_peer_list(&self) -> Result<VersionedPeerList, KubeError> {
        let read_failed = |source| KubeError::Api {
            op: ApiOp::ReadPeerList,
            source,
        };
        let api = self.config_maps();
        let config_map = match api.get_opt(CONFIGMAP_NAME).await.map_err(read_failed)? {
            Some(config_map) => config_map,
            None => {
                let empty = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(CONFIGMAP_NAME.to_string()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    ..ConfigMap::default()
                };
                match api.create(&PostParams::default(), &empty).await {
                    Ok(created) => created,
                    // Another router made it first.
                    Err(kube::Error::Api(status)) if status.is_already_exists() => {
                        api.get(CONFIGMAP_NAME).await.map_err(read_failed)?
                    }
                    Err(source) => return Err(read_failed(source)),
                }
            }
        };
        let annotation = config_map
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(PEERS_ANNOTATION));
        let list = PeerList::parse(annotation.map(String::as_str)).map_err(|source| {
            KubeError::PeerListFormat {
                namespace: self.namespace.clone(),
                source,
            }
        })?;
        Ok(VersionedPeerList { list, config_map })
    }

    /// Writes the record if nobody wrote since `read` was read.
    pub async fn write_peer_list(
        &self,
        list: &PeerList,
        read: &VersionedPeerList,
    ) -> Result<Written, KubeError> {
        let mut config_map = read.config_map.clone();
        config_map
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(PEERS_ANNOTATION.to_string(), list.to_annotation());
        // The object keeps the resourceVersion it was read with: the API server refuses the write
        // with 409 Conflict if the object changed in between, which is what makes it a lock.
        match self
            .config_maps()
            .replace(CONFIGMAP_NAME, &PostParams::default(), &config_map)
            .await
        {
            Ok(_) => Ok(Written::Yes),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Written::Conflict),
            Err(source) => Err(KubeError::Api {
                op: ApiOp::WritePeerList,
                source,
            }),
        }
    }

    /// Sets `NetworkUnavailable=False` on `node`, as Weave Net did.
    pub async fn mark_network_up(&self, node: &str) -> Result<(), KubeError> {
        let now = crate::snapshot::rfc3339_utc(std::time::SystemTime::now());
        let patch = serde_json::json!({
            "status": {
                "conditions": [{
                    "type": NETWORK_CONDITION,
                    "status": "False",
                    "reason": NETWORK_UP_REASON,
                    "message": NETWORK_UP_MESSAGE,
                    "lastTransitionTime": &now,
                    "lastHeartbeatTime": &now,
                }]
            }
        });
        // A strategic merge patch merges by condition type, leaving the kubelet's own alone.
        self.nodes()
            .patch_status(node, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|source| KubeError::Api {
                op: ApiOp::PatchNodeStatus,
                source,
            })?;
        Ok(())
    }
}

/// A client from `kubeconfig` if given, else the pod's service account, and the API server's
/// address (for the log).
pub async fn connect(kubeconfig: Option<&Path>) -> Result<(Client, String), KubeError> {
    let config = match kubeconfig {
        Some(path) => {
            let fail = |source| KubeError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(fail)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(fail)?
        }
        None => Config::incluster().map_err(KubeError::InCluster)?,
    };
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(KubeError::Client)?;
    Ok((client, url))
}

/// The watch's back-off between failed attempts: 0.8 s doubling (client-go's reflector starts
/// there) up to 30 s, each delay shortened by up to a fifth at random so that a cluster's routers
/// do not return in step, and never longer than the ceiling: a returning API server is seen
/// within 30 s. Any event resets it.
#[derive(Debug, Default)]
pub struct WatchBackoff {
    failures: u32,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(800);
    pub const CEILING: Duration = Duration::from_secs(30);
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let doubled = Self::FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let jitter = 1.0 - rand::random::<f64>() / 5.0;
        Some(doubled.min(Self::CEILING).mul_f64(jitter))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What the router needs of a Node; `None` for an object without a name.
fn node_info(node: &Node) -> Option<NodeInfo> {
    let name = node.metadata.name.clone()?;
    let status = node.status.as_ref();
    let addresses = status
        .and_then(|status| status.addresses.as_deref())
        .unwrap_or_default();
    let address_of = |kind: &str| {
        addresses
            .iter()
            .filter(|address| address.type_ == kind)
            .find_map(|address| address.address.parse::<IpAddr>().ok())
    };
    let address = address_of("InternalIP").or_else(|| address_of("ExternalIP"));
    let network_marked_up = status
        .and_then(|status| status.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|condition| {
            condition.type_ == NETWORK_CONDITION
                && condition.status == "False"
                && condition.reason.as_deref() == Some(NETWORK_UP_REASON)
        });
    Some(NodeInfo {
        name,
        address,
        network_marked_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_back_off_doubles_to_a_ceiling_it_never_passes_and_resets() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = (&mut backoff).take(12).collect();
        assert!(delays[0] <= Duration::from_millis(800) && delays[0] >= Duration::from_millis(640));
        assert!(delays[1] >= Duration::from_millis(1280));
        assert!(delays.iter().all(|delay| *delay <= WatchBackoff::CEILING));
        assert!(delays[11] >= WatchBackoff::CEILING.mul_f64(0.8));
        backoff.reset();
        assert!(backoff.next().unwrap() <= Duration::from_millis(800));
    }
}
