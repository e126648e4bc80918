//! `weft setup-cni`: what the DaemonSet's init container runs on each node. Installs the CNI
//! plugin into the CNI bin directory (as `weave-net`, and as `weave-ipam` for the IPAM-only
//! mode) and writes the network config list `10-weave.conflist`, unless an operator's own file
//! of that name is there. Every file is written to a temporary name and renamed into place, so
//! kubelet never sees a half-written plugin or config.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::CliError;

/// The plugin's binary name (the CNI `type`).
pub const PLUGIN_NAME: &str = "weave-net";
/// The IPAM-only plugin's name: the same binary, which looks at the name it was started under.
pub const IPAM_PLUGIN_NAME: &str = "weave-ipam";
/// The config list's file name; `10-` sorts it before most others (Weave Net's name).
pub const CONFLIST_NAME: &str = "10-weave.conflist";
/// The network's name in the config list (Weave Net's).
pub const NETWORK_NAME: &str = "weave";
/// Kubelet's defaults for the CNI directories.
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

/// The config list's spec version: 1.0.0 is the newest that the runtimes in use today
/// (containerd 1.6/1.7's libcni) and the reference portmap plugin accept.
const CONFLIST_CNI_VERSION: &str = "1.0.0";

/// Executable by everyone, writable by root (what kubelet expects of a plugin binary).
const PLUGIN_MODE: u32 = 0o755;

/// What `weft setup-cni` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupArgs {
    /// The plugin binary to install; `None` for `weave-net` next to this binary.
    pub plugin: Option<PathBuf>,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
}

/// The config list we write: our plugin with hairpin mode, then the reference `portmap` for
/// `hostPort`s (with SNAT, so a node reaching its own host port works).
pub fn conflist() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": CONFLIST_CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            { "name": NETWORK_NAME, "type": PLUGIN_NAME, "hairpinMode": true },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
        ],
    })
}

/// Installs the plugin and the config list, printing one line per file.
pub fn setup(args: &SetupArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let plugin = match &args.plugin {
        Some(plugin) => plugin.clone(),
        None => std::env::current_exe()
            .map_err(|e| file_error("find this binary's directory", Path::new("weft"), e))?
            .with_file_name(PLUGIN_NAME),
    };
    for dir in [&args.bin_dir, &args.conf_dir] {
        fs::create_dir_all(dir).map_err(|e| file_error("create directory", dir, e))?;
    }
    let binary = fs::read(&plugin).map_err(|e| file_error("read the plugin", &plugin, e))?;
    for name in [PLUGIN_NAME, IPAM_PLUGIN_NAME] {
        let target = args.bin_dir.join(name);
        write_atomically(&target, &binary, PLUGIN_MODE)?;
        writeln!(out, "installed {}", target.display()).map_err(CliError::Output)?;
    }
    let target = args.conf_dir.join(CONFLIST_NAME);
    match fs::read(&target) {
        Ok(existing) if !is_ours(&existing) => {
            writeln!(
                out,
                "left {} alone: it is not ours (network \"{NETWORK_NAME}\" with {PLUGIN_NAME} first)",
                target.display()
            )
            .map_err(CliError::Output)?;
            return Ok(());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error("read", &target, e)),
    }
    // `{:#}` is serde_json's pretty printing, for the operator who reads the file.
    let text = format!("{:#}\n", conflist());
    write_atomically(&target, text.as_bytes(), 0o644)?;
    writeln!(out, "wrote {}", target.display()).map_err(CliError::Output)
}

/// A config list is ours when it names our network and starts with our plugin; anything else
/// (another network's file that happens to have our name) is the operator's.
fn is_ours(bytes: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    value["name"] == NETWORK_NAME && value["plugins"][0]["type"] == PLUGIN_NAME
}

/// Writes `bytes` to a temporary file beside `target`, then renames it over `target`.
fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = target.with_file_name(format!(".{name}.weft-tmp"));
    let written = fs::write(&temporary, bytes)
        .and_then(|()| fs::set_permissions(&temporary, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&temporary, target));
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        file_error("write", target, e)
    })
}

fn file_error(op: &str, path: &Path, error: std::io::Error) -> CliError {
    CliError::Argument(format!("cannot {op} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, plugin: &Path) -> SetupArgs {
        SetupArgs {
            plugin: Some(plugin.to_path_buf()),
            bin_dir: dir.join("bin"),
            conf_dir: dir.join("net.d"),
        }
    }

    #[test]
    fn installs_both_names_and_writes_the_conflist() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin = dir.path().join("built-plugin");
        fs::write(&plugin, b"#!/bin/true\n").expect("fake plugin");
        let mut out = Vec::new();
        setup(&args(dir.path(), &plugin), &mut out).expect("setup");
        for name in [PLUGIN_NAME, IPAM_PLUGIN_NAME] {
            let installed = dir.path().join("bin").join(name);
            assert_eq!(fs::read(&installed).expect("installed"), b"#!/bin/true\n");
            let mode = fs::metadata(&installed).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, PLUGIN_MODE);
        }
        let conf = fs::read(dir.path().join("net.d").join(CONFLIST_NAME)).expect("conflist");
        let conf: serde_json::Value = serde_json::from_slice(&conf).expect("json");
        assert_eq!(conf["name"], "weave");
        assert_eq!(conf["plugins"][0]["hairpinMode"], true);
        assert_eq!(conf["plugins"][1]["type"], "portmap");
        assert_eq!(conf["plugins"][1]["capabilities"]["portMappings"], true);
        assert_eq!(conf["plugins"][1]["snat"], true);
        // Rerunning rewrites our own file.
        setup(&args(dir.path(), &plugin), &mut out).expect("rerun");
        assert_eq!(String::from_utf8_lossy(&out).matches("wrote ").count(), 2);
    }

    #[test]
    fn an_operators_file_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin = dir.path().join("built-plugin");
        fs::write(&plugin, b"plugin").expect("fake plugin");
        let conf_dir = dir.path().join("net.d");
        fs::create_dir_all(&conf_dir).expect("conf dir");
        let theirs = br#"{"name":"weave","plugins":[{"type":"bridge"}]}"#;
        fs::write(conf_dir.join(CONFLIST_NAME), theirs).expect("their file");
        let mut out = Vec::new();
        setup(&args(dir.path(), &plugin), &mut out).expect("setup");
        assert_eq!(
            fs::read(conf_dir.join(CONFLIST_NAME)).expect("kept"),
            theirs
        );
        assert!(String::from_utf8_lossy(&out).contains("left"), "{out:?}");
        let missing = SetupArgs {
            plugin: Some(dir.path().join("nope")),
            ..args(dir.path(), &plugin)
        };
        assert!(setup(&missing, &mut out).is_err());
    }
}
