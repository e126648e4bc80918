//! The data plane: how pod frames get from one node to another, and the kernel devices they
//! cross.
//!
//! - [`link`]: the narrow [`link::LinkOps`] trait (what the router needs from the kernel), the
//!   plain data types it speaks in, and the MTU arithmetic;
//! - [`netlink`]: the one real implementation, over the `rtnetlink` crate (the only module that
//!   names rtnetlink or netlink-packet types), including the VXLAN and bridge FDB entries fastdp
//!   programs and the notifications of what the VXLAN device learns;
//! - [`fastdp_frame`], [`fastdp_heartbeat`]: the full-MTU fastdp heartbeat (sans-IO format, and
//!   the AF_PACKET socket and thread that send, answer and report heartbeats);
//! - [`error`]: [`error::DataplaneError`], every failure with the operation and interface name;
//! - [`node`]: the node's bridge and VXLAN device, the overlay MTU choice, `weft reset`;
//! - [`attach`]: wiring a pod's namespace to the bridge over a veth pair (CLI and CNI), and
//!   [`garp`] announcing the pod's address with a gratuitous ARP;
//! - [`masquerade`]: the nftables table (`ip weft`) that masquerades pod traffic leaving the
//!   pod range, never traffic between pods;
//! - [`mac_table`]: which peer each MAC lives behind, the table both overlays forward by (kept
//!   by the `MacLearner` actor, read by the hot paths as a [`mac_table::MacSnapshot`]);
//! - [`sleeve`]: the userspace path: frames batched into UDP datagrams, the TAP, the socket and
//!   the hot-path threads.
//!
//! Tests run against the real kernel in throwaway network namespaces (`testns`), never mocks.

// Devices, pod wiring and namespaces live in the `weft-netdev` crate, which the CNI plugin
// shares; they are re-exported here, where the rest of the data plane builds on them.
#[cfg(test)]
pub(crate) use weft_netdev::testns;
pub use weft_netdev::{attach, error, garp, link, netlink, netns, packet_socket};

pub mod fastdp_frame;
pub mod fastdp_heartbeat;
pub mod mac_table;
pub mod masquerade;
pub mod node;
pub mod sleeve;
#[cfg(test)]
mod tests;

pub use attach::{
    AttachRequest, Attachment, attach_pod, container_veth_name, detach_pod, detach_pod_interface,
    host_veth_name,
};
pub use error::DataplaneError;
pub use link::{
    FdbEntry, Ipv4Route, LearnedFdb, Link, LinkKind, LinkOps, LinkStats, MacAddr, PortMode,
    VethSpec, VxlanConfig,
};
pub use netlink::NetlinkLinkOps;
pub use netlink::neigh_watch::LearnedFdbWatch;
pub use node::{MtuSource, NodeConfig, NodeState, reset_node, reset_node_for_port, setup_node};
pub use sleeve::sleeve_tap_name;
