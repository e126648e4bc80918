//! The CNI commands: [`run`] dispatches one checked [`Invocation`] to ADD ([`add`]), CHECK
//! ([`check`]), DEL, STATUS and GC (here: each a few calls), for the full plugin (`weave-net`)
//! or the IPAM-only one (`weave-ipam`, [`ipam_only`]).

mod add;
mod check;
mod ipam_only;

use std::collections::HashSet;

use serde_json::Value;
use weft_client::IPAM_PLUGIN_NAME;

use crate::config::NetConf;
use crate::delegate;
use crate::env::{CniEnv, Command};
use crate::error::CniError;
use crate::ipam;
use crate::kernel::Kernel;
use crate::netns::{self, Netns};
use crate::router::Router;
use crate::version::version_info;

/// Which plugin we were started as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `weave-net`: wire the pod and give it an address.
    Plugin,
    /// `weave-ipam`: addresses only, for another plugin that does the wiring.
    IpamOnly,
}

impl Mode {
    /// `weave-ipam` when started under that name, else the full plugin.
    pub fn from_program_name(name: &str) -> Self {
        if name == IPAM_PLUGIN_NAME {
            Mode::IpamOnly
        } else {
            Mode::Plugin
        }
    }
}

/// One invocation: the checked config and environment, and the config bytes as given (passed
/// on unchanged to a delegated IPAM plugin).
pub struct Invocation {
    pub conf: NetConf,
    pub env: CniEnv,
    pub stdin: Vec<u8>,
}

impl Invocation {
    /// The previous result, which CHECK requires.
    pub fn prev_result(&self) -> Result<&crate::result::CniResult, CniError> {
        self.conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::InvalidConfig("CHECK needs prevResult".into()))
    }
}

/// Carries out the command; the JSON to print on success (`None` for commands that print
/// nothing).
pub fn run(mode: Mode, inv: &Invocation) -> Result<Option<Value>, CniError> {
    let router = Router::new(&inv.env.http_addr);
    match (inv.env.command, mode) {
        (Command::Version, _) => Ok(Some(version_info(Some(inv.conf.version.as_str())))),
        (Command::Add, Mode::Plugin) => add::add(inv, &router).map(Some),
        (Command::Add, Mode::IpamOnly) => ipam_only::add(inv, &router).map(Some),
        (Command::Check, _) if !inv.conf.version.has_check() => {
            Err(CniError::IncompatibleVersion {
                version: format!("{} (CHECK needs 0.4.0 or later)", inv.conf.version.as_str()),
            })
        }
        (Command::Check, Mode::Plugin) => check::check(inv, &router).map(|()| None),
        (Command::Check, Mode::IpamOnly) => ipam_only::check(inv, &router).map(|()| None),
        (Command::Del, _) => del(mode, inv, &router).map(|()| None),
        (Command::Status | Command::Gc, _) if !inv.conf.version.has_status_and_gc() => {
            Err(CniError::IncompatibleVersion {
                version: format!(
                    "{} (STATUS and GC need 1.1.0 or later)",
                    inv.conf.version.as_str()
                ),
            })
        }
        (Command::Status, _) => status(inv, &router).map(|()| None),
        (Command::Gc, _) => gc(inv, &router).map(|()| None),
    }
}

/// DEL: removes the pod's interface if its namespace is still there, then frees its address.
/// Anything already gone is fine (runtimes retry DEL, and send a second one with no namespace):
/// a namespace that was unmounted, leaving an empty file or nothing at its path, took the veth
/// pair with it, so only the address is left to free. The node's own namespace is never
/// touched (ADD refuses it, so nothing of ours is there).
fn del(mode: Mode, inv: &Invocation, router: &Router) -> Result<(), CniError> {
    if mode == Mode::Plugin
        && let Some(path) = inv.env.netns.as_deref()
        && netns::classify(path)? == Netns::Pod
    {
        Kernel::new()?.detach(path, &inv.env.ifname)?;
    }
    ipam::release(inv, router)
}

/// STATUS: ready when the router answers and (unless another plugin gives addresses) its IPAM
/// serves allocations now.
fn status(inv: &Invocation, router: &Router) -> Result<(), CniError> {
    match inv.conf.delegate() {
        Some(plugin) => {
            router.reachable()?;
            delegate::run(plugin, "STATUS", &inv.env, &inv.stdin).map(drop)
        }
        None => router.ready(),
    }
}

/// GC: frees every router allocation of ours whose attachment is not in
/// `cni.dev/valid-attachments` (addresses leaked by a runtime that crashed between ADD and DEL).
fn gc(inv: &Invocation, router: &Router) -> Result<(), CniError> {
    if let Some(plugin) = inv.conf.delegate() {
        return delegate::run(plugin, "GC", &inv.env, &inv.stdin).map(drop);
    }
    let valid: HashSet<String> = inv
        .conf
        .valid_attachments
        .iter()
        .map(|a| ipam::key(&a.container_id, &a.ifname))
        .collect();
    for ident in router.owned()? {
        if ipam::is_plugin_key(&ident) && !valid.contains(&ident) {
            router.free(&ident)?;
        }
    }
    Ok(())
}
