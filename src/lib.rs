//! Weft: an overlay network for Kubernetes, the successor to Weave Net.
//!
//! Component map:
//! - [`topology`]: peers, merge rules and routes (pure logic);
//! - [`ipam`]: IP address management: the ring CRDT, space, consensus, allocator (pure logic);
//! - [`wire`]: every byte format on the mesh's TCP links and sleeve's UDP datagrams;
//! - [`dataplane`]: the data plane built so far: bridge, vxlan and veth devices, addresses,
//!   routes and MTU over rtnetlink, node setup and pod wiring (`weft attach`/`reset`), and
//!   sleeve's sans-IO parts (batching, checksums, ICMP);
//! - [`actors`]: the control plane, one actor per subsystem and per peer link;
//! - [`api`]: the HTTP API, status texts, the report and the metrics;
//! - [`cli`]: the `weave`/`weft` command-line client;
//! - `kubernetes` (feature `kube`): the router's Kubernetes side, peers from Nodes and reclaim;
//! - [`npc`]: the network-policy controller, `weft npc`;
//! - [`store`] and [`identity`]: the persisted state (redb) and our peer name.

pub mod actors;
pub mod api;
pub mod cli;
pub mod dataplane;
pub mod identity;
pub mod ipam;
#[cfg(feature = "kube")]
pub mod kubernetes;
pub mod npc;
#[cfg(test)]
pub(crate) mod sim_cases;
pub mod store;
pub mod topology;
pub mod wire;
