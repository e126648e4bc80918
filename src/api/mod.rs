//! The router's HTTP API (status texts, report, connect/forget) and the metrics listener; the
//! metrics themselves are declared in [`crate::metrics`], the snapshot they and the texts are
//! rendered from in [`crate::snapshot`].

pub mod announce_http;
pub mod gauge_refresh;
pub mod host_check;
pub mod http;
pub mod ipam_http;
pub mod ipam_text;
pub mod status_text;
