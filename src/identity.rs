//! Our peer name: `--name` if given, else the one persisted from an earlier start, else derived
//! from the machine id (so that it is stable across reinstalls of the router), and persisted.

use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};
use crate::topology::PeerName;

/// Where the machine id is looked for, in order (under the host root in a container).
const MACHINE_ID_PATHS: [&str; 2] = ["etc/machine-id", "var/lib/dbus/machine-id"];
/// Salt of the name hash, so that our names differ from other tools' hashes of the same id.
const NAME_SALT: &[u8] = b"weft-peer-name:";

/// Derives a name from a machine id: the first six bytes of SHA-256(salt ‖ id), made a unicast,
/// locally administered MAC address (it becomes the bridge's MAC).
pub fn name_from_machine_id(machine_id: &str) -> PeerName {
    let digest = Sha256::new()
        .chain_update(NAME_SALT)
        .chain_update(machine_id.trim().as_bytes())
        .finalize();
    let mut bytes = [0u8; 6];
    bytes.copy_from_slice(&digest[..6]);
    PeerName::from_bytes(as_local_unicast(bytes))
}

fn as_local_unicast(mut bytes: [u8; 6]) -> [u8; 6] {
    bytes[0] = (bytes[0] & !0x01) | 0x02;
    bytes
}

fn read_machine_id(host_root: &str) -> Option<String> {
    MACHINE_ID_PATHS.iter().find_map(|path| {
        let full = std::path::Path::new(host_root).join(path);
        std::fs::read_to_string(full)
            .ok()
            .filter(|id| !id.trim().is_empty())
    })
}

/// Decides our name and persists it.
pub fn resolve_peer_name(
    given: Option<PeerName>,
    store: &Store,
    host_root: &str,
) -> Result<PeerName, StoreError> {
    let name = match (given, store.peer_name()?) {
        (Some(name), _) => name,
        (None, Some(stored)) => stored,
        (None, None) => match read_machine_id(host_root) {
            Some(id) => name_from_machine_id(&id),
            None => PeerName::from_bytes(as_local_unicast(rand::random())),
        },
    };
    store.set_peer_name(name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_stable_local_unicast_macs() {
        let a = name_from_machine_id("0123456789abcdef0123456789abcdef\n");
        assert_eq!(a, name_from_machine_id("0123456789abcdef0123456789abcdef"));
        assert_ne!(a, name_from_machine_id("another machine"));
        let first = a.to_bytes()[0];
        assert_eq!(first & 0x01, 0, "unicast");
        assert_eq!(first & 0x02, 0x02, "locally administered");
    }

    #[test]
    fn the_name_persists_and_an_explicit_name_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), "abc\n").unwrap();
        let root = dir.path().to_str().unwrap();
        let store = Store::open(&format!("{root}/db/weave-net")).unwrap();
        let derived = resolve_peer_name(None, &store, root).unwrap();
        assert_eq!(derived, name_from_machine_id("abc"));
        std::fs::write(dir.path().join("etc/machine-id"), "changed\n").unwrap();
        assert_eq!(resolve_peer_name(None, &store, root).unwrap(), derived);
        let explicit: PeerName = "::9".parse().unwrap();
        assert_eq!(
            resolve_peer_name(Some(explicit), &store, root).unwrap(),
            explicit
        );
        assert_eq!(resolve_peer_name(None, &store, root).unwrap(), explicit);
    }
}
