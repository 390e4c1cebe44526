//! The redb store's file rules: schema version (newer refused, older
//! migrated), mode 0600, read-only opening, a corrupted file refused and
//! left untouched, and a full disk (a small tmpfs) failing commits with a
//! clear error while nothing acknowledged is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use havip::{
    control::ControlPlane,
    model::*,
    store::{RedbStore, Store, StoreError, SCHEMA_VERSION},
};
use redb::{Database, ReadableDatabase, TableDefinition};

const SCHEMA: TableDefinition<&str, u32> = TableDefinition::new("schema");
const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");

/// The seed with room for the full-disk test's HaVips.
fn base_ops() -> Vec<Op> {
    seed_ops(0, 4000)
}

/// A scratch directory (removed on drop) and `state.redb` in it.
fn state_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    (dir, path)
}

/// Records schema version `version` in the file at `path` (created if
/// absent), as an older or newer havip would have.
fn write_version(path: &Path, version: u32) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(SCHEMA)
        .unwrap()
        .insert("version", version)
        .unwrap();
    txn.commit().unwrap();
}

/// The schema version the file at `path` records.
fn stored_version(path: &Path) -> Option<u32> {
    let db = Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let v = txn.open_table(SCHEMA).unwrap().get("version").unwrap();
    v.map(|v| v.value())
}

/// A HaVip with a long description (fills the disk faster).
fn create_havip(id: &str) -> Op {
    Op::CreateHaVip(CreateHaVip {
        id: Some(id.into()),
        description: Some("x".repeat(200)),
        ..havip_in("vsw")
    })
}

#[test]
fn file_is_created_0600_with_the_schema_version() {
    let (_dir, path) = state_file();
    drop(RedbStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(stored_version(&path), Some(SCHEMA_VERSION));
}

#[test]
fn newer_schema_is_refused_and_kept() {
    let (_dir, path) = state_file();
    write_version(&path, SCHEMA_VERSION + 1);
    let before = std::fs::read(&path).unwrap();
    let e = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaTooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{e:?}"
    );
    assert!(e.to_string().contains("newer havip"), "{e}");
    assert!(matches!(
        RedbStore::open_read_only(&path),
        Err(StoreError::SchemaTooNew { .. })
    ));
    assert!(std::fs::read(&path).unwrap() == before, "file untouched");
}

#[test]
fn store_without_version_is_migrated() {
    let (_dir, path) = state_file();
    // A version-0 store: resources only, no schema table.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(RESOURCES)
            .unwrap()
            .insert(
                "vpc/vpc-old",
                br#"{"id":"vpc-old","cidr":"10.9.0.0/16"}"#.as_slice(),
            )
            .unwrap();
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert!(store.load().unwrap().vpcs.contains_key("vpc-old"));
    drop(store);
    assert_eq!(stored_version(&path), Some(SCHEMA_VERSION));
}

#[test]
fn read_only_open_reads_and_refuses_writes() {
    let (dir, path) = state_file();
    {
        let cp = ControlPlane::open(&path).unwrap();
        cp.apply_all(&base_ops()).unwrap();
    }
    let ro = RedbStore::open_read_only(&path).unwrap();
    let s = ro.load().unwrap();
    assert!(s.vswitches.contains_key("vsw"));
    let a = apply(&s, &create_havip("h")).unwrap();
    assert!(matches!(ro.commit(&a.change), Err(StoreError::ReadOnly)));
    assert!(matches!(
        RedbStore::open_read_only(dir.path().join("missing.redb")),
        Err(StoreError::Open { .. })
    ));
    assert!(!dir.path().join("missing.redb").exists(), "never created");
}

#[test]
fn corrupted_file_is_refused_and_not_overwritten() {
    let (dir, path) = state_file();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let e = ControlPlane::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("state.redb"), "names the file: {e}");
    assert!(RedbStore::open_read_only(&path).is_err());
    assert!(std::fs::read(&path).unwrap() == garbage, "file untouched");

    // A truncated real store is refused too, and kept.
    let good = dir.path().join("good.redb");
    {
        let cp = ControlPlane::open(&good).unwrap();
        cp.apply_all(&base_ops()).unwrap();
    }
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(100);
    std::fs::write(&good, &bytes).unwrap();
    assert!(ControlPlane::open(&good).is_err());
    assert!(std::fs::read(&good).unwrap() == bytes, "file untouched");
}

/// A tmpfs mounted on a scratch directory, unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg("-l")
            .arg(self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("cannot unmount {}", self.0.display());
        }
    }
}

#[test]
fn disk_full_fails_commits_and_loses_nothing_acknowledged() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping test - mounting a tmpfs needs root");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(scratch.path(), "2m") else {
        eprintln!("skipping test - cannot mount a tmpfs");
        return;
    };
    let path = fs.0.join("state.redb");
    let filler = fs.0.join("filler");
    let cp = ControlPlane::open(&path).unwrap();
    cp.apply_all(&base_ops()).unwrap();
    // Leave little room: the store's next growth hits ENOSPC.
    let _ = std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]);

    let mut acked = Vec::new();
    let mut failure = None;
    for n in 0..3000 {
        let id = format!("h{n}");
        match cp.apply(create_havip(&id)) {
            Ok(_) => acked.push(id),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("a 2 MiB filesystem fills up");
    assert_eq!(e.code(), "Internal.CommitFailed", "{e}");
    // The state in memory is what was acknowledged, nothing more.
    let s = cp.snapshot();
    assert_eq!(s.havips.len(), acked.len());
    // Still refused while the disk is full, and the control plane answers.
    assert!(cp.apply(create_havip("still-full")).is_err());
    assert_eq!(cp.snapshot().havips.len(), acked.len());

    // Space comes back: the next write succeeds (the file is reopened).
    std::fs::remove_file(&filler).unwrap();
    cp.apply(create_havip("after")).unwrap();
    drop(cp);
    let reopened = ControlPlane::open(&path).unwrap();
    let s = reopened.snapshot();
    for id in &acked {
        assert!(s.havips.contains_key(id), "acknowledged {id} lost");
    }
    assert!(s.havips.contains_key("after"));
    assert_eq!(s.havips.len(), acked.len() + 1);
    drop(reopened);
    drop(fs);
}

/// A version-1 store (written before the bump, possibly with history
/// records) is migrated to the current version at open, its history kept.
#[test]
fn version_1_store_with_history_is_migrated() {
    let (_dir, path) = state_file();
    let entry = OwnerChange {
        havip: "h0".into(),
        epoch: 2,
        previous_member: None,
        member: Some("i-0".into()),
        host: None,
        time: "2026-12-01T00:00:00Z".into(),
        trigger: OwnerTrigger::Claim,
    };
    {
        let store = RedbStore::open(&path).unwrap();
        let mut change = Change::default();
        change.put(Record::History {
            havip: "h0".into(),
            entries: vec![entry.clone()],
        });
        store.commit_all(&[change]).unwrap();
    }
    write_version(&path, 1);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.load().unwrap().history["h0"], vec![entry]);
    drop(store);
    assert_eq!(stored_version(&path), Some(SCHEMA_VERSION));
    assert_eq!(SCHEMA_VERSION, 2);
}
