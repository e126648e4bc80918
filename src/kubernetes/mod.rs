//! The router's Kubernetes side, switched on by `--kube-peers`: peers come from the cluster's
//! Nodes, each router records its peer name next to its node's, a deleted node's address ranges
//! are reclaimed by exactly one survivor, and the node's `NetworkUnavailable` condition is cleared
//! once the router is ready. The rest of the router only sees typed messages: the connection
//! maker gets the target list, IPAM gets `rmpeer` requests, the API asks for a [`KubeStatus`].
//!
//! Layout: `nodes` (the Node set as the watch reports it, and the targets it implies) and
//! `peer_list` (the name record and the reclaim decision) are pure; `client` holds every API call
//! and the only `kube`/`k8s-openapi` types; `actor` is the thin shell that runs them.
//!
//! # RBAC the router needs
//!
//! Cluster-wide (ClusterRole):
//! - `nodes`: `get`, `list`, `watch` — the peer list is the Node list;
//! - `nodes/status`: `patch` — the `NetworkUnavailable` condition.
//!
//! In the router's namespace (Role, `--kube-namespace`, default `kube-system`):
//! - `configmaps` named `weave-net`: `get`, `update` — the peer-name record and its claims;
//! - `configmaps`: `create` — the record is made by the first router (RBAC cannot limit `create`
//!   by name).
//!
//! [`KubeStatus`]: crate::snapshot::KubeStatus

pub mod actor;
pub mod client;
pub mod nodes;
pub mod peer_list;
pub mod reclaim;
pub mod state;

pub use actor::{KubePeers, KubePeersConfig};
pub use client::{KubeClient, KubeError};
