//! The data plane: how pod frames get from one node to another, and the kernel devices they
//! cross.
//!
//! - [`link`]: the narrow [`link::LinkOps`] trait (what the router needs from the kernel), the
//!   plain data types it speaks in, and the MTU arithmetic;
//! - [`netlink`]: the one real implementation, over the `rtnetlink` crate (the only module that
//!   names rtnetlink or netlink-packet types), including the VXLAN FDB fastdp programs;
//! - [`error`]: [`error::DataplaneError`], every failure with the operation and interface name;
//! - [`node`]: the node's bridge and VXLAN device, the overlay MTU choice, `weft reset`;
//! - [`attach`]: wiring a pod's namespace to the bridge over a veth pair (CLI and CNI);
//! - [`sleeve`]: the userspace path: frames batched into UDP datagrams, the TAP, the socket and
//!   the hot-path threads.
//!
//! Tests run against the real kernel in throwaway network namespaces (`testns`), never mocks.

pub mod attach;
pub mod error;
#[cfg(test)]
mod fdb_tests;
pub mod link;
pub mod netlink;
#[cfg(test)]
mod netlink_tests;
pub mod node;
#[cfg(test)]
mod node_tests;
pub mod sleeve;
#[cfg(test)]
pub(crate) mod testns;

pub use attach::{AttachRequest, Attachment, attach_pod, detach_pod, host_veth_name};
pub use error::DataplaneError;
pub use link::{FdbEntry, Link, LinkKind, LinkOps, MacAddr, PortMode, VethSpec, VxlanConfig};
pub use netlink::NetlinkLinkOps;
pub use node::{MtuSource, NodeConfig, NodeState, reset_node, setup_node};
