//! Weft: an overlay network for Kubernetes, the successor to Weave Net.
//!
//! Component map (see ARCHITECTURE.md in the shared folder for the picture):
//! - [`topology`]: peers, merge rules and routes (pure logic);
//! - [`wire`]: every byte format on the mesh's TCP links;
//! - [`actors`]: the control plane, one actor per subsystem and per peer link;
//! - [`api`]: the HTTP API, status texts, the report and the metrics;
//! - [`cli`]: the `weave`/`weft` command-line client;
//! - [`dataplane`]: bridge, vxlan and veth devices, addresses, routes and MTU over rtnetlink.

pub mod actors;
pub mod api;
pub mod cli;
pub mod dataplane;
pub mod identity;
pub mod ipam;
pub mod store;
pub mod topology;
pub mod wire;
