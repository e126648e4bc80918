//! `weft npc`, the network-policy controller: Kubernetes NetworkPolicy v1 enforced on the
//! node's pods with one nftables table of our own.
//!
//! - `model`: namespaces, pods and policies in our own types; `ranges`: address ranges;
//! - `verdict`: the semantics as a plain per-packet evaluator (the tests' oracle);
//! - `compile` → `ruleset`: the world compiled to one node's sets of allowed tuples;
//! - `render`: the ruleset as nftables JSON, whole or as a change (pure);
//! - `nft`: that JSON written in one transaction, behind the [`nft::PolicyKernel`] trait;
//! - `mirror` + `controller`: the watched objects and what to write, without I/O;
//! - `convert` and `run` (with the `kube` feature): Kubernetes objects in, the running command.

pub mod args;
pub mod blocked;
pub mod compile;
pub mod controller;
#[cfg(feature = "kube")]
pub mod convert;
pub mod mirror;
pub mod model;
pub mod nflog;
pub mod nft;
pub mod ranges;
pub mod render;
pub mod ruleset;
#[cfg(feature = "kube")]
pub mod run;
pub mod verdict;
