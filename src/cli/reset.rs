//! `weave reset`: what a node needs to leave the network. It hands this peer's IP ranges to a
//! live peer (when the router still runs), removes the node's devices (bridge, VXLAN device,
//! pod veths) and both nftables tables (the router's masquerading and weave-npc's policies,
//! which would otherwise go on filtering with the last policies it knew). With `--purge` it also
//! removes what the DaemonSet left in the node's files: the CNI plugin, our conflist and the
//! router's database, under `--host-root` when it runs in a container with the host mounted.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::client::Client;
use super::error::CliError;
use super::setup_cni::{self, CONFLIST_NAME, IPAM_PLUGIN_NAME, PLUGIN_NAME};
use crate::npc::nft::{Nft, PolicyKernel};

/// Where the DaemonSet keeps the router's database on the node (hostPath of `/weavedb`), and
/// the file's name there (`<DB_PREFIX>data.db` with the manifest's prefix `weave-net`).
const DB_DIR: &str = "/var/lib/weave";
const DB_FILE: &str = "weave-netdata.db";

/// What `weave reset` was asked for.
#[derive(Clone, Debug)]
pub struct ResetArgs {
    pub ipam_only: bool,
    pub port: u16,
    pub purge: bool,
    pub host_root: PathBuf,
}

pub fn reset(client: &Client, args: &ResetArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.purge && args.ipam_only {
        return Err(CliError::Usage(
            "--purge removes the node's files, --ipam-only leaves even the devices: pick one",
        ));
    }
    super::ipam::reset(client, args.ipam_only, out)?;
    if args.ipam_only {
        return Ok(());
    }
    super::attach::remove_devices(args.port, out)?;
    match Nft::default().remove() {
        Ok(true) => writeln!(
            out,
            "removed nftables table inet {}",
            crate::npc::nft::TABLE
        )
        .map_err(CliError::Output)?,
        Ok(false) => {}
        Err(e) => return Err(e.into()),
    }
    if args.purge {
        purge_files(&args.host_root, out)?;
    }
    Ok(())
}

/// Removes the plugin (both names), our conflist (an operator's own file of that name stays)
/// and the database; a file that is already gone is not an error.
fn purge_files(root: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let under_root = |path: &str| root.join(path.trim_start_matches('/'));
    let bin_dir = under_root(setup_cni::DEFAULT_BIN_DIR);
    let conflist = under_root(setup_cni::DEFAULT_CONF_DIR).join(CONFLIST_NAME);
    let mut doomed = vec![bin_dir.join(PLUGIN_NAME), bin_dir.join(IPAM_PLUGIN_NAME)];
    match std::fs::read(&conflist) {
        Ok(bytes) if setup_cni::is_ours(&bytes) => doomed.push(conflist),
        Ok(_) => writeln!(out, "left {} alone: it is not ours", conflist.display())
            .map_err(CliError::Output)?,
        Err(_) => {}
    }
    doomed.push(under_root(DB_DIR).join(DB_FILE));
    for path in doomed {
        match std::fs::remove_file(&path) {
            Ok(()) => writeln!(out, "removed {}", path.display()).map_err(CliError::Output)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(setup_cni::file_error("remove", &path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_removes_our_files_and_keeps_an_operators_conflist() {
        let root = tempfile::tempdir().expect("temp dir");
        let bin_dir = root.path().join("opt/cni/bin");
        let conf_dir = root.path().join("etc/cni/net.d");
        let db_dir = root.path().join("var/lib/weave");
        for dir in [&bin_dir, &conf_dir, &db_dir] {
            std::fs::create_dir_all(dir).expect("dir");
        }
        for name in [PLUGIN_NAME, IPAM_PLUGIN_NAME, "portmap"] {
            std::fs::write(bin_dir.join(name), b"plugin").expect("plugin");
        }
        std::fs::write(
            conf_dir.join(CONFLIST_NAME),
            setup_cni::conflist().to_string(),
        )
        .expect("conflist");
        std::fs::write(db_dir.join(DB_FILE), b"db").expect("db");
        let mut out = Vec::new();
        purge_files(root.path(), &mut out).expect("purge");
        assert!(!bin_dir.join(PLUGIN_NAME).exists());
        assert!(!bin_dir.join(IPAM_PLUGIN_NAME).exists());
        // The reference plugins may serve other networks: they stay.
        assert!(bin_dir.join("portmap").exists());
        assert!(!conf_dir.join(CONFLIST_NAME).exists());
        assert!(!db_dir.join(DB_FILE).exists());
        assert_eq!(String::from_utf8_lossy(&out).matches("removed ").count(), 4);
        // Twice is fine; an operator's file of our name stays.
        let theirs = br#"{"name":"weave","plugins":[{"type":"bridge"}]}"#;
        std::fs::write(conf_dir.join(CONFLIST_NAME), theirs).expect("their conflist");
        let mut out = Vec::new();
        purge_files(root.path(), &mut out).expect("purge again");
        assert_eq!(
            std::fs::read(conf_dir.join(CONFLIST_NAME)).expect("kept"),
            theirs
        );
        assert!(String::from_utf8_lossy(&out).contains("left"), "{out:?}");
    }
}
