//! Persisted router state in one redb file (`<db-prefix>data.db`, as Weave Net named its file):
//! the peer name, the direct peers and the IPAM state. The file is opened exclusively, so a
//! second router pointed at it fails at once with a clear message instead of waiting.
//!
//! After an I/O error (a full disk, say) redb fails every later operation on that handle with
//! `PreviousIo` until it is closed. The store then closes it and opens the file again on the
//! next operation (redb repairs an unclean file on open), so a write fails only while the
//! disk does, and the router needs no restart once the space is back.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::topology::PeerName;

const ROUTER_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("router");
const PEER_NAME_KEY: &str = "peer-name";
const DIRECT_PEERS_KEY: &str = "direct-peers";
/// The IPAM state (ring and owned addresses), encoded by the IPAM actor.
const IPAM_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("ipam");
const IPAM_STATE_KEY: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is already open in another process (is another router running with the same --db-prefix?)"
    )]
    AlreadyOpen { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("{op} in {path} failed: {source}")]
    Access {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A failed step of one operation on the database: what it was, and redb's error.
struct Failure {
    op: &'static str,
    source: redb::Error,
}

/// Names the step of a redb call: `txn.commit().map_err(step("commit"))?`.
fn step<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> Failure {
    move |source| Failure {
        op,
        source: source.into(),
    }
}

pub struct Store {
    /// `None` once an I/O error made the handle useless; the next operation opens it again.
    db: Mutex<Option<Database>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `<prefix>data.db`.
    pub fn open(prefix: &str) -> Result<Self, StoreError> {
        let path = PathBuf::from(format!("{prefix}data.db"));
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }
        let db = Self::open_file(&path)?;
        Ok(Self {
            db: Mutex::new(Some(db)),
            path,
        })
    }

    fn open_file(path: &Path) -> Result<Database, StoreError> {
        Database::create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                path: path.to_path_buf(),
            },
            source => StoreError::Open {
                path: path.to_path_buf(),
                source,
            },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn peer_name(&self) -> Result<Option<PeerName>, StoreError> {
        let Some(bytes) = self.get(PEER_NAME_KEY)? else {
            return Ok(None);
        };
        let raw: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| self.corrupt("peer name"))?;
        PeerName::from_u64(u64::from_be_bytes(raw))
            .map(Some)
            .ok_or_else(|| self.corrupt("peer name"))
    }

    pub fn set_peer_name(&self, name: PeerName) -> Result<(), StoreError> {
        self.put(PEER_NAME_KEY, &name.as_u64().to_be_bytes())
    }

    pub fn direct_peers(&self) -> Result<Vec<String>, StoreError> {
        match self.get(DIRECT_PEERS_KEY)? {
            None => Ok(Vec::new()),
            Some(bytes) => rmp_serde::from_slice(&bytes).map_err(|_| self.corrupt("direct peers")),
        }
    }

    pub fn set_direct_peers(&self, peers: &[String]) -> Result<(), StoreError> {
        let bytes = rmp_serde::to_vec(peers).map_err(|source| self.access("encode", source))?;
        self.put(DIRECT_PEERS_KEY, &bytes)
    }

    pub fn ipam_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_in(IPAM_TABLE, IPAM_STATE_KEY)
    }

    /// Writes and commits (fsync) the IPAM state: when this returns, a crash loses nothing.
    pub fn set_ipam_state(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_in(IPAM_TABLE, IPAM_STATE_KEY, bytes)
    }

    /// Forgets the IPAM state (the ring of another cluster was adopted, or `reset`).
    pub fn clear_ipam_state(&self) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(step("begin write"))?;
            {
                let mut table = txn.open_table(IPAM_TABLE).map_err(step("open table"))?;
                table.remove(IPAM_STATE_KEY).map_err(step("delete"))?;
            }
            txn.commit().map_err(step("commit"))
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_in(ROUTER_TABLE, key)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_in(ROUTER_TABLE, key, value)
    }

    fn get_in(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(step("begin read"))?;
            let table = match txn.open_table(table) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(step("open table")(e)),
            };
            let value = table.get(key).map_err(step("read"))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn put_in(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(step("begin write"))?;
            {
                let mut table = txn.open_table(table).map_err(step("open table"))?;
                table.insert(key, value).map_err(step("write"))?;
            }
            txn.commit().map_err(step("commit"))
        })
    }

    /// Runs `op` on the database, opening the file again first when an earlier I/O error
    /// closed it, and closing it when `op` hits one (see the module documentation).
    fn with_db<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        // A panic elsewhere while holding the lock leaves nothing half-done in here: redb's
        // transactions are all-or-nothing.
        let mut slot = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let db = match slot.take() {
            Some(db) => db,
            None => Self::open_file(&self.path)?,
        };
        let result = op(&db);
        match &result {
            Err(Failure {
                source: redb::Error::PreviousIo | redb::Error::Io(_),
                ..
            }) => {
                // Closing may fail as well (it is the same disk); the handle is dropped anyway.
                let _ = db.close();
            }
            _ => *slot = Some(db),
        }
        result.map_err(|Failure { op, source }| self.access(op, source))
    }

    fn access(
        &self,
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Access {
            op,
            path: self.path.clone(),
            source: Box::new(source),
        }
    }

    fn corrupt(&self, what: &'static str) -> StoreError {
        StoreError::Access {
            op: "decode",
            path: self.path.clone(),
            source: format!("stored {what} is corrupt").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("{}/weave-net", dir.path().display());
        let name: PeerName = "ce:31:00:00:00:02".parse().unwrap();
        {
            let store = Store::open(&prefix).unwrap();
            assert_eq!(store.peer_name().unwrap(), None);
            store.set_peer_name(name).unwrap();
            store.set_direct_peers(&["10.0.0.1:6783".into()]).unwrap();
        }
        let store = Store::open(&prefix).unwrap();
        assert_eq!(store.peer_name().unwrap(), Some(name));
        assert_eq!(
            store.direct_peers().unwrap(),
            vec!["10.0.0.1:6783".to_string()]
        );
    }

    #[test]
    fn a_second_opener_fails_at_once_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("{}/weave-net", dir.path().display());
        let _first = Store::open(&prefix).unwrap();
        let err = Store::open(&prefix).err().expect("second open must fail");
        assert!(matches!(err, StoreError::AlreadyOpen { .. }), "{err}");
        assert!(err.to_string().contains("--db-prefix"));
    }

    /// A small tmpfs on a temporary directory, unmounted on drop (also when the test fails).
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(size_kib: u32) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let output = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
                .arg(dir.path())
                .output()
                .expect("run mount");
            assert!(output.status.success(), "mount tmpfs: {output:?}");
            Self(dir)
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .output();
        }
    }

    #[test]
    fn writes_fail_while_the_disk_is_full_and_succeed_again_once_there_is_space() {
        let disk = Tmpfs::mount(1024);
        let store = Store::open(&format!("{}/weave-net", disk.0.path().display())).unwrap();
        store.set_ipam_state(b"small").unwrap();
        let filler = disk.0.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        while std::io::Write::write_all(&mut file, &[0u8; 4096]).is_ok() {}
        drop(file);
        // Each state is bigger than the last, so the database needs pages it cannot get.
        let failed = (1..200usize).find_map(|i| store.set_ipam_state(&vec![7u8; i * 4096]).err());
        assert!(failed.is_some(), "a write must fail on a full disk");
        std::fs::remove_file(&filler).unwrap();
        store
            .set_ipam_state(b"after")
            .expect("the store works again once there is space");
        assert_eq!(store.ipam_state().unwrap().as_deref(), Some(&b"after"[..]));
    }
}
