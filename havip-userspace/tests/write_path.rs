//! The group-commit write path under injected failures: a store whose
//! commit fails or panics on demand. A failed batch fails its callers with
//! `Internal.CommitFailed`, leaves nothing in memory or on disk, and the
//! next batch proceeds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{
    atomic::{AtomicU8, Ordering},
    Arc,
};

use common::*;
use havip::{
    control::ControlPlane,
    model::*,
    store::{RedbStore, Store, StoreError},
};

const OK: u8 = 0;
const FAIL: u8 = 1;
const PANIC: u8 = 2;

/// A redb store whose next commits fail or panic while `mode` says so.
struct Faulty {
    inner: RedbStore,
    mode: Arc<AtomicU8>,
}

impl Store for Faulty {
    fn load(&self) -> Result<State, StoreError> {
        self.inner.load()
    }

    fn commit_all(&self, changes: &[Change]) -> Result<(), StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(StoreError::Backend("injected commit failure".into())),
            PANIC => panic!("injected panic in commit"),
            _ => self.inner.commit_all(changes),
        }
    }
}

fn open(dir: &tempfile::TempDir) -> (Arc<ControlPlane>, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(OK));
    let store = Faulty {
        inner: RedbStore::open(dir.path().join("s.redb")).unwrap(),
        mode: mode.clone(),
    };
    (Arc::new(ControlPlane::with_store(store).unwrap()), mode)
}

fn check_failure(mode_value: u8) {
    let dir = tempfile::tempdir().unwrap();
    let (cp, mode) = open(&dir);
    cp.apply_all(&seed_ops(0, 100)).unwrap();
    let before = cp.snapshot();
    let generation = cp.generation();

    mode.store(mode_value, Ordering::SeqCst);
    // Several concurrent callers, so batches hold more than one job.
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let cp = cp.clone();
            std::thread::spawn(move || cp.apply(havip_op(&format!("h{n}"))))
        })
        .collect();
    for t in threads {
        let e = t.join().expect("caller must not panic").unwrap_err();
        assert_eq!(e.code(), "Internal.CommitFailed", "{e}");
    }
    assert_eq!(cp.snapshot(), before, "nothing uncommitted in memory");
    assert_eq!(
        cp.generation(),
        generation,
        "no reconcile for a failed batch"
    );

    // The next batch proceeds (the leader flag was reset).
    mode.store(OK, Ordering::SeqCst);
    cp.apply(havip_op("after")).unwrap();
    let s = cp.snapshot();
    assert!(s.havips.contains_key("after"));
    assert_eq!(s.havips.len(), 1, "none of the failed creates survived");
    assert!(cp.generation() > generation);
    drop(cp);
    // On disk: exactly what was acknowledged.
    let reopened = ControlPlane::open(dir.path().join("s.redb")).unwrap();
    assert_eq!(reopened.snapshot(), s);
}

#[test]
fn injected_commit_failure_fails_the_batch_only() {
    check_failure(FAIL);
}

#[test]
fn injected_panic_in_batch_fails_the_batch_only() {
    check_failure(PANIC);
}

#[test]
fn failed_batch_undoes_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, mode) = open(&dir);
    cp.apply_all(&seed_ops(0, 100)).unwrap();
    cp.apply(havip_op("h1")).unwrap();
    cp.apply(Op::SetQuota(SetQuota {
        havips_per_account: Some(7),
        ..Default::default()
    }))
    .unwrap();
    let before = cp.snapshot();
    mode.store(FAIL, Ordering::SeqCst);
    for op in [
        Op::DeleteHaVip(DeleteHaVip { id: "h1".into() }),
        Op::SetQuota(SetQuota {
            havips_per_account: Some(3),
            ..Default::default()
        }),
    ] {
        assert_eq!(cp.apply(op).unwrap_err().code(), "Internal.CommitFailed");
        assert_eq!(cp.snapshot(), before);
    }
    mode.store(OK, Ordering::SeqCst);
    cp.apply(Op::DeleteHaVip(DeleteHaVip { id: "h1".into() }))
        .unwrap();
    assert!(cp.snapshot().havips.is_empty());
}
