//! The `Router`: reads the configuration, opens the store, wires the actors together under
//! supervision, binds the listeners and serves the API until asked to stop.

mod config;
pub mod dataplane;
mod ipam_config;
#[cfg(feature = "kube")]
mod kube;
mod late;
mod run;
mod sleeve;

pub use config::{DEFAULT_PORT, KubeArgs, RouterArgs};
pub use dataplane::EXPOSE_IDENT;
pub use run::{RouterError, run};
