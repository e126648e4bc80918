//! Persisted router state in one redb file (`<db-prefix>data.db`, as Weave Net named its file):
//! the peer name and the direct peers. The file is opened exclusively, so a second router pointed
//! at it fails at once with a clear message instead of waiting.

use std::path::{Path, PathBuf};

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

pub struct Store {
    db: Database,
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
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::AlreadyOpen { path: path.clone() }
            }
            source => StoreError::Open {
                path: path.clone(),
                source,
            },
        })?;
        Ok(Self { db, path })
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
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.access("begin write", e))?;
        {
            let mut table = txn
                .open_table(IPAM_TABLE)
                .map_err(|e| self.access("open table", e))?;
            table
                .remove(IPAM_STATE_KEY)
                .map_err(|e| self.access("delete", e))?;
        }
        txn.commit().map_err(|e| self.access("commit", e))
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
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.access("begin read", e))?;
        let table = match txn.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.access("open table", e)),
        };
        let value = table.get(key).map_err(|e| self.access("read", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn put_in(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.access("begin write", e))?;
        {
            let mut table = txn
                .open_table(table)
                .map_err(|e| self.access("open table", e))?;
            table
                .insert(key, value)
                .map_err(|e| self.access("write", e))?;
        }
        txn.commit().map_err(|e| self.access("commit", e))
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
}
