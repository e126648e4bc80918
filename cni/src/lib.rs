//! The plugin's parsing half as a library: the network config with its `prevResult`
//! ([`config`]), result shapes ([`result`]), spec versions ([`version`]) and errors ([`error`]).
//! The `weave-net` binary uses these modules from here, so the fuzz targets (`fuzz/`) run the very
//! code that reads what the runtime passes on stdin.

pub mod config;
pub mod error;
pub mod result;
pub mod version;
