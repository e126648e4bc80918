//! The router's HTTP API as its clients see it: a blocking [`Client`], its [`ApiError`]s, and
//! the names the router and the CNI plugin agree on. The `weave` CLI and the CNI plugin both
//! build on it; the plugin needs nothing else of the router.

pub mod client;
pub mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod test_server;

pub use client::{Client, form_body};
pub use error::ApiError;

/// The plugin's binary name (the CNI `type`).
pub const PLUGIN_NAME: &str = "weave-net";
/// The IPAM-only plugin's name: the same binary, which looks at the name it was started under.
pub const IPAM_PLUGIN_NAME: &str = "weave-ipam";
/// The IPAM identity of the bridge's own address (Weave Net's name for it).
pub const EXPOSE_IDENT: &str = "weave:expose";
