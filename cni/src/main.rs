//! The `weave-net` CNI plugin (kubelet's side of Weft): reads `CNI_*` from the environment and
//! the network config from stdin, carries out ADD, DEL, CHECK, STATUS, GC or VERSION, and prints
//! the result or the spec's error JSON on stdout. Started as `weave-ipam` it is an IPAM-only
//! plugin. This file owns only the process edge: reading input, choosing the mode, printing.
//!
//! Modules: [`env`] (the variables), [`config`] (the network config), [`version`] and
//! [`result`] (spec versions and result shapes; these two, `config` and [`error`] are in the
//! library, src/lib.rs), [`router`] (the router's IPAM API),
//! [`ipam`] and [`delegate`] (where addresses come from), [`kernel`] (rtnetlink), [`netns`]
//! (what `CNI_NETNS` names), [`commands`]
//! (what each command does), [`error`] (codes and error JSON).

mod commands;
mod delegate;
mod env;
mod ipam;
mod kernel;
mod netns;
mod router;

// The parsing modules live in the library (src/lib.rs), which the fuzz targets link as well.
use weave_net_cni::{config, error, result, version};

use std::io::{Read, Write};
use std::process::ExitCode;

use commands::{Invocation, Mode};
use env::{CniEnv, Command};
use error::CniError;

fn main() -> ExitCode {
    let program = std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mode = Mode::from_program_name(&program);
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let (answer, ok) = match read {
        Ok(_) => answer(mode, stdin),
        Err(source) => {
            let error = CniError::Io {
                what: "reading the network configuration from stdin",
                source,
            };
            (Some(error.to_json(version::LATEST)), false)
        }
    };
    if let Some(answer) = answer {
        // Nothing else can be done if stdout is gone: the exit code still tells.
        let _ = writeln!(std::io::stdout(), "{answer}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The JSON to print (if any) and whether the command succeeded.
fn answer(mode: Mode, stdin: Vec<u8>) -> (Option<serde_json::Value>, bool) {
    let fallback_version =
        config::version_hint(&stdin).unwrap_or_else(|| version::LATEST.to_string());
    let env = match CniEnv::read(|key| std::env::var(key).ok()) {
        Ok(env) => env,
        Err(e) => return (Some(e.to_json(&fallback_version)), false),
    };
    // VERSION answers whatever the config says (or without one).
    if env.command == Command::Version {
        let requested = config::version_hint(&stdin);
        return (Some(version::version_info(requested.as_deref())), true);
    }
    let conf = match config::NetConf::parse(&stdin) {
        Ok(conf) => conf,
        Err(e) => return (Some(e.to_json(&fallback_version)), false),
    };
    let version = conf.version.as_str();
    let inv = Invocation { conf, env, stdin };
    match commands::run(mode, &inv) {
        Ok(result) => (result, true),
        Err(e) => (Some(e.to_json(version)), false),
    }
}
