//! The data plane's kernel-facing foundation: bridge, VXLAN and veth devices, addresses, routes
//! and MTU detection, set up over rtnetlink.
//!
//! - [`link`]: the narrow [`link::LinkOps`] trait (what the router needs from the kernel), the
//!   plain data types it speaks in, and the MTU arithmetic;
//! - [`netlink`]: the one real implementation, over the `rtnetlink` crate (the only module that
//!   names rtnetlink or netlink-packet types);
//! - [`error`]: [`error::DataplaneError`], every failure with the operation and interface name.
//!
//! Tests run against the real kernel in throwaway network namespaces (`testns`), never mocks.

pub mod error;
pub mod link;
pub mod netlink;
#[cfg(test)]
mod netlink_tests;
#[cfg(test)]
pub(crate) mod testns;

pub use error::DataplaneError;
pub use link::{Link, LinkKind, LinkOps, MacAddr, PortMode, VethSpec, VxlanConfig};
pub use netlink::NetlinkLinkOps;
