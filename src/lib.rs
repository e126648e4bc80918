//! Weft: an overlay network for Kubernetes, the successor to Weave Net. The whole map (layers,
//! actors, the path of a frame, where each wire format and kernel call lives, the tests) is
//! `ARCHITECTURE.md` at the root of the repository.
//!
//! Component map:
//! - [`topology`]: peers, merge rules and routes (pure logic);
//! - [`ipam`]: IP address management: the ring CRDT, space, consensus, allocator (pure logic);
//! - [`wire`]: every byte format on the mesh's TCP links and sleeve's UDP datagrams;
//! - [`mesh`]: the vocabulary links, the listener, the connection maker and gossip share: link
//!   ids, why a link ended, the connection limit;
//! - [`dataplane`]: the kernel's side: bridge, VXLAN, veth and TAP devices, FDB entries,
//!   addresses, routes and MTU over rtnetlink, node setup and pod wiring (`weft attach`, the CNI
//!   plugin, `reset`), egress masquerading, the fastdp heartbeat, and the sleeve's hot path (its
//!   sans-IO batching, forwarding, reassembly, checksums and ICMP, and the threads over the TAP
//!   and the UDP socket);
//! - [`actors`]: the control plane, one actor per subsystem and per peer link;
//! - [`router`]: the composition root of `weft router`: its flags, the wiring of the actors and
//!   the start-up (not an actor);
//! - [`api`]: the HTTP API, the status texts and the report;
//! - [`metrics`]: every metric of both processes, declared once; [`snapshot`]: the router's state
//!   as the API, the texts and the gauges show it (both below every layer that fills them);
//! - [`cli`]: the `weave`/`weft` command-line client;
//! - `kubernetes` (feature `kube`): the router's Kubernetes side, peers from Nodes and reclaim;
//! - [`npc`]: the network-policy controller, `weft npc`;
//! - [`store`] and [`identity`]: the persisted state (redb) and our peer name;
//! - [`daemon`]: what both daemons share at the process edge (duration flags, the stop signal).

pub mod actors;
pub mod api;
pub mod cli;
pub mod daemon;
pub mod dataplane;
pub mod identity;
pub mod ipam;
#[cfg(feature = "kube")]
pub mod kubernetes;
pub mod mesh;
pub mod metrics;
pub mod npc;
pub mod router;
#[cfg(test)]
pub(crate) mod sim_cases;
pub mod snapshot;
pub mod store;
pub mod topology;
pub mod wire;
