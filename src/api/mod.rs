//! The router's HTTP API (status texts, report, connect/forget) and metrics.

pub mod gauge_refresh;
pub mod host_check;
pub mod http;
pub mod ipam_http;
pub mod ipam_text;
pub mod metrics;
pub mod snapshot;
pub mod status_text;
