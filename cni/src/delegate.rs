//! Delegated IPAM: when the config's `ipam.type` names another plugin (e.g. `host-local`), it is
//! found in `CNI_PATH` and run with our environment and config, as the spec's delegation says;
//! its result or error JSON is read back here.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::env::CniEnv;
use crate::error::CniError;

/// Runs IPAM plugin `plugin` for `command` (`ADD`, `DEL`, `CHECK`, `GC`, `STATUS`) with the
/// config bytes `stdin`; the parsed stdout on success (`None` when it printed nothing).
pub fn run(
    plugin: &str,
    command: &str,
    env: &CniEnv,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let binary = find(plugin, env)?;
    let failed = |msg: String| CniError::Delegate {
        plugin: plugin.to_string(),
        code: None,
        msg,
    };
    let mut child = Command::new(&binary)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", binary.display())))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin)
            .map_err(|e| failed(format!("cannot pass the config: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot wait for it: {e}")))?;
    let parsed: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    if output.status.success() {
        return Ok(parsed);
    }
    // The spec's error JSON when it gave one, else whatever it said on stderr.
    let code = parsed
        .as_ref()
        .and_then(|v| v["code"].as_u64())
        .and_then(|c| u32::try_from(c).ok());
    let msg = parsed
        .as_ref()
        .and_then(|v| v["msg"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_string());
    Err(CniError::Delegate {
        plugin: plugin.to_string(),
        code,
        msg,
    })
}

/// The plugin's binary in the first `CNI_PATH` directory that has it.
fn find(plugin: &str, env: &CniEnv) -> Result<PathBuf, CniError> {
    if env.path.is_empty() {
        return Err(CniError::InvalidEnv {
            var: "CNI_PATH",
            reason: format!("not set, so ipam.type {plugin:?} can't be found"),
        });
    }
    env.path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            CniError::InvalidConfig(format!(
                "ipam.type {plugin:?}: no such plugin in CNI_PATH ({})",
                env.path
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ))
        })
}
