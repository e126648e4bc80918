//! Weft's network devices, and wiring a pod to the node's bridge: what the router and the CNI
//! plugin share, so the plugin builds and loads this and not the router.
//!
//! - [`link`]: the narrow [`link::LinkOps`] trait (what Weft needs from the kernel), the plain
//!   data types it speaks in, and the MTU arithmetic;
//! - [`netlink`]: the one real implementation, over the `rtnetlink` crate (the only module that
//!   names rtnetlink or netlink-packet types), including the VXLAN and bridge FDB entries fastdp
//!   programs and the notifications of what the VXLAN device learns;
//! - [`error`]: [`DataplaneError`], every failure with the operation and interface name;
//! - [`attach`]: a pod's namespace wired to the bridge over a veth pair, and [`garp`] announcing
//!   its address with a gratuitous ARP from the bridge;
//! - [`netns`]: running work inside another network namespace; [`packet_socket`]: AF_PACKET
//!   addresses; [`mac`]: MAC addresses.
//!
//! Tests run against the real kernel in throwaway network namespaces (`testns`), never mocks.

pub mod attach;
pub mod error;
pub mod garp;
pub mod link;
pub mod mac;
pub mod netlink;
pub mod netns;
pub mod packet_socket;
#[cfg(any(test, feature = "test-support"))]
pub mod testns;

pub use error::DataplaneError;
pub use mac::{MacAddr, MacAddrError};
