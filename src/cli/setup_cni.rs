//! `weft setup-cni`: what the DaemonSet's init container runs on each node. Installs the CNI
//! plugin into the CNI bin directory (as `weave-net`, and as `weave-ipam` for the IPAM-only
//! mode) and writes the network config list `10-weave.conflist`, unless an operator's own file
//! of that name is there. With `--reference-plugins DIR` it also installs the reference plugins
//! the node needs beside ours (`portmap`, which the conflist chains, and `loopback`, which the
//! runtime runs for every pod), but only where the node has none: a node's own, maybe newer,
//! plugins are kept. Every file is written to a temporary name and renamed into place, so
//! kubelet never sees a half-written plugin or config.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::CliError;

pub use weft_client::{IPAM_PLUGIN_NAME, PLUGIN_NAME};
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

/// The reference plugins a node needs beside ours: `portmap` for the conflist's `hostPort`s,
/// `loopback` for the `lo` of every pod (containerd runs it from the same directory).
pub const REFERENCE_PLUGINS: [&str; 2] = ["portmap", "loopback"];

/// Executable by everyone, writable by root (what kubelet expects of a plugin binary).
const PLUGIN_MODE: u32 = 0o755;

/// What `weft setup-cni` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupArgs {
    /// The plugin binary to install; `None` for `weave-net` next to this binary.
    pub plugin: Option<PathBuf>,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    /// Where to take [`REFERENCE_PLUGINS`] from for a node that lacks them.
    pub reference_plugins: Option<PathBuf>,
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
    if let Some(source_dir) = &args.reference_plugins {
        install_missing_reference_plugins(source_dir, &args.bin_dir, out)?;
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

fn install_missing_reference_plugins(
    source_dir: &Path,
    bin_dir: &Path,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    for name in REFERENCE_PLUGINS {
        let target = bin_dir.join(name);
        if target.exists() {
            writeln!(out, "kept the node's {}", target.display()).map_err(CliError::Output)?;
            continue;
        }
        let source = source_dir.join(name);
        let binary = fs::read(&source).map_err(|e| file_error("read", &source, e))?;
        write_atomically(&target, &binary, PLUGIN_MODE)?;
        writeln!(out, "installed {}", target.display()).map_err(CliError::Output)?;
    }
    Ok(())
}

/// A config list is ours when it names our network and starts with our plugin; anything else
/// (another network's file that happens to have our name) is the operator's.
pub fn is_ours(bytes: &[u8]) -> bool {
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

pub(super) fn file_error(op: &str, path: &Path, error: std::io::Error) -> CliError {
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
            reference_plugins: None,
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

    #[test]
    fn reference_plugins_are_installed_only_where_the_node_has_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin = dir.path().join("built-plugin");
        fs::write(&plugin, b"weave").expect("fake plugin");
        let bundled = dir.path().join("bundled");
        fs::create_dir_all(&bundled).expect("bundled dir");
        for name in REFERENCE_PLUGINS {
            fs::write(bundled.join(name), format!("bundled {name}")).expect("bundled plugin");
        }
        let bin_dir = dir.path().join("bin");
        fs::create_dir_all(&bin_dir).expect("bin dir");
        fs::write(bin_dir.join("portmap"), b"the node's portmap").expect("node's plugin");
        let with_bundle = SetupArgs {
            reference_plugins: Some(bundled.clone()),
            ..args(dir.path(), &plugin)
        };
        let mut out = Vec::new();
        setup(&with_bundle, &mut out).expect("setup");
        assert_eq!(
            fs::read(bin_dir.join("portmap")).expect("portmap"),
            b"the node's portmap"
        );
        assert_eq!(
            fs::read(bin_dir.join("loopback")).expect("loopback"),
            b"bundled loopback"
        );
        let mode = fs::metadata(bin_dir.join("loopback"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, PLUGIN_MODE);
        let printed = String::from_utf8_lossy(&out);
        assert!(printed.contains("kept the node's"), "{printed}");
        // A bundle that lacks a plugin the node needs is an error, not a silent gap.
        fs::remove_file(bin_dir.join("loopback")).expect("remove");
        fs::remove_file(bundled.join("loopback")).expect("remove");
        let err = setup(&with_bundle, &mut out).expect_err("missing bundled loopback");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
