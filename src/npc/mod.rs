//! `weft npc`, the network-policy controller: Kubernetes NetworkPolicy v1 enforced on the
//! node's pods with one nftables table of our own.
//!
//! - `model`: namespaces, pods and policies in our own types; `ranges`: address ranges;
//! - `verdict`: the semantics as a plain per-packet evaluator (the tests' oracle);
//! - `compile` → `ruleset`: the world compiled to one node's sets of allowed tuples;
//! - `nft`: the ruleset as one nftables JSON transaction, behind the [`nft::PolicyKernel`] trait.

pub mod compile;
#[cfg(test)]
mod compile_tests;
pub mod model;
pub mod nft;
pub mod ranges;
pub mod ruleset;
pub mod verdict;
