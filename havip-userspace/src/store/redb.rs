//! The redb backend of [`Store`]: one table, `resources`, mapping `kind/id`
//! (see [`RecordKey::encode`]) to the record's JSON, and a `schema` table
//! holding the layout version ([`SCHEMA_VERSION`]).
//!
//! Every [`Change`] is written in one redb write transaction with
//! `Durability::Immediate`: when [`Store::commit`] returns, the change is on
//! disk; a crash (SIGKILL, power loss) at any point leaves either the state
//! before or the state after it. Only the records an operation touches are
//! written, so an associate costs one small B-tree update plus the fsync.
//!
//! # Files and failures
//! - The database file is created mode 0600 (it is the whole control
//!   plane; only the agent's user reads it).
//! - A file that is not a redb database (garbage, truncated header) is
//!   refused at open with [`StoreError::Open`]; it is never overwritten.
//! - A store written by a newer havip (schema version above
//!   [`SCHEMA_VERSION`]) is refused with [`StoreError::SchemaTooNew`]; an
//!   older one is migrated in one transaction at open ([`migrate`]).
//! - After an I/O error (disk full) redb refuses every later transaction
//!   until the file is reopened: the failed commit returns its error
//!   (nothing of it is kept), and the next call reopens the file (redb
//!   repairs it on open) before trying again.

use std::{
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use super::{Store, StoreError};
use crate::model::{Change, Mutation, Record, RecordKey, RecordKind, State};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
const SCHEMA: TableDefinition<&str, u32> = TableDefinition::new("schema");
const SCHEMA_KEY: &str = "version";

/// Layout version this build reads and writes.
/// - 0: stores from before the version record (same layout as 1).
/// - 1: `resources` holds `kind/id` -> JSON.
/// - 2: `resources` may also hold `history/<havip>` records (owner
///   history). A havip built before history knows no such kind and would
///   fail on the first one with an unknown-key error; at version 2 it
///   refuses the store at open with [`StoreError::SchemaTooNew`] instead,
///   naming the versions (upgrade havip, or restore a backup).
///
/// Older stores are migrated at open by writing the version record (no
/// record changes: 0 -> 1 -> 2 are the same layout, 2 only adds a kind).
/// `havip-agent check` reads an older store as it is, without migrating.
pub const SCHEMA_VERSION: u32 = 2;

enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
    /// Closed after an I/O error; reopened by the next call.
    Closed,
}

// redb's `ReadOnlyDatabase` has no `Debug`: the mode is what a log needs.
impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Rw(_) => "read-write",
            Db::Ro(_) => "read-only",
            Db::Closed => "closed",
        })
    }
}

/// The redb database holding the control-plane state.
#[derive(Debug)]
pub struct RedbStore {
    db: Mutex<Db>,
    path: PathBuf,
}

fn open_err(path: &Path) -> impl FnOnce(::redb::DatabaseError) -> StoreError + '_ {
    move |e| StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// Brings a store of an older schema up to [`SCHEMA_VERSION`], inside the
/// open's write transaction (all or nothing). The hook for future layout
/// changes: add an arm per version.
fn migrate(txn: &WriteTransaction, from: u32) -> Result<(), StoreError> {
    /// Step `n` brings version `n` to `n + 1`.
    type Step = fn(&WriteTransaction) -> Result<(), StoreError>;
    const STEPS: [Step; SCHEMA_VERSION as usize] = [
        // 0 -> 1: same layout, only the version record is new.
        |_| Ok(()),
        // 1 -> 2: history records may now appear; nothing to rewrite.
        |_| Ok(()),
    ];
    for step in STEPS.iter().skip(from as usize) {
        step(txn)?;
    }
    txn.open_table(SCHEMA)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
    Ok(())
}

/// The stored schema version (0 when the store predates the record).
fn stored_version(txn: &ReadTransaction) -> Result<u32, StoreError> {
    match txn.open_table(SCHEMA) {
        Ok(t) => Ok(t.get(SCHEMA_KEY)?.map_or(0, |v| v.value())),
        Err(::redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn check_version(path: &Path, found: u32) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Opens (or creates, mode 0600) the database file read-write; checks and
/// migrates the schema.
fn open_rw(path: &Path) -> Result<Database, StoreError> {
    // Create the file ourselves so that it is 0600 from its first byte;
    // redb initialises an empty file. An existing file keeps its bytes.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| StoreError::File {
            path: path.to_path_buf(),
            source,
        })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        StoreError::File {
            path: path.to_path_buf(),
            source,
        }
    })?;
    // A store that needs no repair is checked read-only first: a newer
    // schema is refused before anything (even redb's open flags) is
    // written to the file.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        match ReadOnlyDatabase::open(path) {
            Ok(ro) => check_version(path, stored_version(&ro.begin_read()?)?)?,
            // Needs repair after a crash: the read-write open repairs it.
            Err(::redb::DatabaseError::RepairAborted) => {}
            Err(e) => return Err(open_err(path)(e)),
        }
    }
    let db = Database::create(path).map_err(open_err(path))?;
    let found = stored_version(&db.begin_read()?)?;
    check_version(path, found)?;
    let txn = db.begin_write()?;
    txn.open_table(RESOURCES)?;
    if found < SCHEMA_VERSION {
        migrate(&txn, found)?;
    }
    txn.commit()?;
    Ok(db)
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, creating its directory.
    /// After a crash redb repairs the file on open.
    ///
    /// # Errors
    /// [`StoreError::CreateDir`], [`StoreError::File`], [`StoreError::Open`]
    /// (also when another process holds the store open, or the file is not
    /// a redb database: it is then left untouched),
    /// [`StoreError::SchemaTooNew`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = open_rw(&path)?;
        Ok(RedbStore {
            db: Mutex::new(Db::Rw(db)),
            path,
        })
    }

    /// Opens an existing store read-only (config checks, inspection): never
    /// creates, repairs, migrates or writes; [`Store::commit_all`] fails
    /// with [`StoreError::ReadOnly`].
    ///
    /// # Errors
    /// [`StoreError::Open`] (missing file, not a redb file, held open for
    /// writing by a running agent), [`StoreError::SchemaTooNew`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = ReadOnlyDatabase::open(&path).map_err(open_err(&path))?;
        check_version(&path, stored_version(&db.begin_read()?)?)?;
        Ok(RedbStore {
            db: Mutex::new(Db::Ro(db)),
            path,
        })
    }

    /// Reads the state of the store at `path` without writing anything
    /// (`havip-agent check`): no file is created, nothing is repaired.
    /// `Ok(None)` when there is no store at `path`.
    ///
    /// # Errors
    /// As [`RedbStore::open_read_only`], and storage errors.
    pub fn load_read_only(path: impl AsRef<Path>) -> Result<Option<State>, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Ok(None);
        }
        Self::open_read_only(path)?.load().map(Some)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, reopened first if an I/O error closed it.
    fn db(&self) -> Result<MutexGuard<'_, Db>, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*db, Db::Closed) {
            *db = Db::Rw(open_rw(&self.path)?);
            tracing::info!(path = %self.path.display(), "store reopened after an I/O error");
        }
        Ok(db)
    }

    /// Closes the file after an I/O error (redb refuses every later
    /// transaction on this handle); the next call reopens it.
    fn close_after_io_error(&self, e: &StoreError) {
        if e.is_io() {
            let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(*db, Db::Rw(_)) {
                tracing::warn!(path = %self.path.display(), error = %e, "store I/O error; reopening the file on the next call");
                *db = Db::Closed;
            }
        }
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        match &*self.db()? {
            Db::Rw(db) => Ok(db.begin_read()?),
            Db::Ro(db) => Ok(db.begin_read()?),
            Db::Closed => Err(StoreError::ReadOnly),
        }
    }

    fn load_records(&self) -> Result<State, StoreError> {
        let txn = self.begin_read()?;
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

    fn write(&self, changes: &[Change]) -> Result<(), StoreError> {
        let guard = self.db()?;
        let Db::Rw(db) = &*guard else {
            return Err(StoreError::ReadOnly);
        };
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(RESOURCES)?;
            for m in changes.iter().flat_map(|c| &c.mutations) {
                match m {
                    Mutation::Put(r) => {
                        let (key, bytes) = encode_keyed(r)?;
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

impl Store for RedbStore {
    /// Opens the table in a read transaction (readiness).
    ///
    /// # Errors
    /// Storage errors.
    fn ping(&self) -> Result<(), StoreError> {
        let r = self
            .begin_read()
            .and_then(|txn| txn.open_table(RESOURCES).map(drop).map_err(Into::into));
        if let Err(e) = &r {
            self.close_after_io_error(e);
        }
        r
    }

    /// Reads the whole state (one read transaction).
    ///
    /// # Errors
    /// Storage errors, [`StoreError::Corrupt`] for a record that does not
    /// decode.
    fn load(&self) -> Result<State, StoreError> {
        let r = self.load_records();
        if let Err(e) = &r {
            self.close_after_io_error(e);
        }
        r
    }

    /// Writes several changes, in order, in one durable transaction.
    ///
    /// # Errors
    /// Storage errors (disk full: [`StoreError::is_io`]); the store is then
    /// unchanged. [`StoreError::ReadOnly`] on a read-only store.
    fn commit_all(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.iter().all(Change::is_empty) {
            return Ok(());
        }
        let r = self.write(changes);
        if let Err(e) = &r {
            self.close_after_io_error(e);
        }
        r
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
        Record::History { entries, .. } => serde_json::to_vec(entries),
    }
}

/// A record's key (encoded) and its JSON, as a store writes them.
///
/// # Errors
/// [`StoreError::Encode`] when the record does not serialise.
pub fn encode_keyed(r: &Record) -> Result<(String, Vec<u8>), StoreError> {
    let key = r.key().encode();
    let bytes = encode(r).map_err(|source| StoreError::Encode {
        key: key.clone(),
        source,
    })?;
    Ok((key, bytes))
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
        RecordKind::History => Record::History {
            havip: k.id.clone(),
            entries: serde_json::from_slice(bytes)?,
        },
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
