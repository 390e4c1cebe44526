//! The redb backend of [`Store`]: one table, `resources`, mapping `kind/id`
//! (see [`RecordKey::encode`]) to the record's JSON.
//!
//! Every [`Change`] is written in one redb write transaction with
//! `Durability::Immediate`: when [`Store::commit`] returns, the change is on
//! disk; a crash (SIGKILL, power loss) at any point leaves either the state
//! before or the state after it. Only the records an operation touches are
//! written, so an associate costs one small B-tree update plus the fsync.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError};
use crate::model::{Change, Mutation, Record, RecordKey, RecordKind, State};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");

/// The redb database holding the control-plane state.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, creating its directory.
    /// After a crash redb repairs the file on open.
    ///
    /// # Errors
    /// [`StoreError::CreateDir`], [`StoreError::Open`] (also when another
    /// process holds the store open).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            source: Box::new(e),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(RESOURCES)?;
        txn.commit()?;
        Ok(RedbStore { db, path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for RedbStore {
    /// Reads the whole state (one read transaction).
    ///
    /// # Errors
    /// Storage errors, [`StoreError::Corrupt`] for a record that does not
    /// decode.
    fn load(&self) -> Result<State, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESOURCES)?;
        let mut records = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let key = k.value();
            let rk =
                RecordKey::decode(key).ok_or_else(|| StoreError::UnknownKey(key.to_owned()))?;
            records.push(
                decode(&rk, v.value()).map_err(|source| StoreError::Corrupt {
                    key: key.to_owned(),
                    source,
                })?,
            );
        }
        Ok(State::from_records(records))
    }

    /// Writes several changes, in order, in one durable transaction.
    ///
    /// # Errors
    /// Storage errors; the store is then unchanged.
    fn commit_all(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.iter().all(Change::is_empty) {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RESOURCES)?;
            for m in changes.iter().flat_map(|c| &c.mutations) {
                match m {
                    Mutation::Put(r) => {
                        let key = r.key().encode();
                        let bytes = encode(r).map_err(|source| StoreError::Encode {
                            key: key.clone(),
                            source,
                        })?;
                        table.insert(key.as_str(), bytes.as_slice())?;
                    }
                    Mutation::Delete(k) => {
                        table.remove(k.encode().as_str())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// A record's JSON (the value stored under its key).
pub fn encode(r: &Record) -> Result<Vec<u8>, serde_json::Error> {
    match r {
        Record::Vpc(v) => serde_json::to_vec(v),
        Record::VSwitch(v) => serde_json::to_vec(v),
        Record::Instance(v) => serde_json::to_vec(v),
        Record::Eni(v) => serde_json::to_vec(v),
        Record::Uplink(v) => serde_json::to_vec(v),
        Record::HaVip(v) => serde_json::to_vec(v),
        Record::Eip(v) => serde_json::to_vec(v),
        Record::Route(v) => serde_json::to_vec(v),
        Record::Quotas(v) => serde_json::to_vec(v),
        Record::Owner { owner, .. } => serde_json::to_vec(owner),
        Record::Meta(v) => serde_json::to_vec(v),
    }
}

/// Inverse of [`encode`] for the record at `k`.
pub fn decode(k: &RecordKey, bytes: &[u8]) -> Result<Record, serde_json::Error> {
    Ok(match k.kind {
        RecordKind::Vpc => Record::Vpc(serde_json::from_slice(bytes)?),
        RecordKind::VSwitch => Record::VSwitch(serde_json::from_slice(bytes)?),
        RecordKind::Instance => Record::Instance(serde_json::from_slice(bytes)?),
        RecordKind::Eni => Record::Eni(serde_json::from_slice(bytes)?),
        RecordKind::Uplink => Record::Uplink(serde_json::from_slice(bytes)?),
        RecordKind::HaVip => Record::HaVip(serde_json::from_slice(bytes)?),
        RecordKind::Eip => Record::Eip(serde_json::from_slice(bytes)?),
        RecordKind::Route => Record::Route(serde_json::from_slice(bytes)?),
        RecordKind::Quotas => Record::Quotas(serde_json::from_slice(bytes)?),
        RecordKind::Owner => Record::Owner {
            havip: k.id.clone(),
            owner: serde_json::from_slice(bytes)?,
        },
        RecordKind::Meta => Record::Meta(serde_json::from_slice(bytes)?),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{
        apply, AssociateHaVip, CreateHaVip, CreateInstance, CreateVSwitch, CreateVpc, Member, Op,
        UnassociateHaVip,
    };

    fn ops() -> Vec<Op> {
        vec![
            Op::CreateVpc(CreateVpc {
                id: "vpc-1".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
            }),
            Op::CreateVSwitch(CreateVSwitch {
                vni: None,
                id: "vsw-1".into(),
                vpc: "vpc-1".into(),
                cidr: "10.0.1.0/24".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            }),
            Op::CreateInstance(CreateInstance {
                id: "i-a".into(),
                vswitch: "vsw-1".into(),
            }),
            Op::CreateHaVip(CreateHaVip {
                id: Some("havip-1".into()),
                vswitch: "vsw-1".into(),
                address: None,
                ..Default::default()
            }),
            Op::AssociateHaVip(AssociateHaVip {
                havip: "havip-1".into(),
                member: Member::instance("i-a"),
            }),
        ]
    }

    #[test]
    fn commit_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.redb");
        let mut state = State::default();
        {
            let store = RedbStore::open(&path).unwrap();
            for op in ops() {
                let a = apply(&state, &op).unwrap();
                store.commit(&a.change).unwrap();
                state.apply_change(&a.change);
            }
            assert_eq!(store.load().unwrap(), state);
            let del = apply(
                &state,
                &Op::UnassociateHaVip(UnassociateHaVip {
                    havip: "havip-1".into(),
                    member: Member::instance("i-a"),
                    force: false,
                }),
            )
            .unwrap();
            store.commit(&del.change).unwrap();
            state.apply_change(&del.change);
        }
        let store = RedbStore::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(loaded.havips["havip-1"].address.to_string(), "10.0.1.2");
        assert!(loaded.havips["havip-1"].bindings.is_empty());
    }

    #[test]
    fn second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _a = RedbStore::open(&path).unwrap();
        assert!(matches!(
            RedbStore::open(&path),
            Err(StoreError::Open { .. })
        ));
    }
}

#[cfg(test)]
mod perf {
    #![allow(clippy::unwrap_used)]
    use std::time::Instant;

    use super::*;

    #[test]
    #[ignore = "timing"]
    fn commit_latency() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("x.redb")).unwrap();
        for (label, prefill) in [("empty", 0usize), ("10k", 10_000)] {
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(RESOURCES).unwrap();
                for i in 0..prefill {
                    let k = format!("havip/h{i}");
                    t.insert(k.as_str(), vec![b'x'; 200].as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
            for dur in [redb::Durability::Immediate, redb::Durability::None] {
                let n = 2000;
                let t0 = Instant::now();
                for i in 0..n {
                    let mut txn = db.begin_write().unwrap();
                    txn.set_durability(dur).unwrap();
                    {
                        let mut t = txn.open_table(RESOURCES).unwrap();
                        let k = format!("havip/h{}", i % 100);
                        t.insert(k.as_str(), vec![b'y'; 200].as_slice()).unwrap();
                    }
                    txn.commit().unwrap();
                }
                eprintln!("{label} {dur:?}: {:?}/commit", t0.elapsed() / n);
            }
        }
    }
}
