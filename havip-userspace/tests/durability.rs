//! Durability: restart, group commit of concurrent clients, SIGKILL during
//! a burst of writes; a performance smoke (the real numbers come from
//! `cargo xtask bench`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{associate, havip_op, havip_ops, seed_ops, set_master, unassociate};
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use havip::{
    control::ControlPlane,
    model::*,
    store::{RedbStore, Store},
};

// Crash safety

/// Deterministic op sequence for the crash test: setup, then cycles of
/// create HaVip / associate / unassociate / (every 4th) delete.
fn crash_op(i: usize) -> Op {
    let setup = seed_ops(10, 100_000);
    if let Some(op) = setup.get(i) {
        return op.clone();
    }
    let k = i - setup.len();
    let (h, phase) = (k / 4, k % 4);
    let havip = format!("h{h}");
    let member = Member::instance(format!("i-{}", h % 10));
    match phase {
        0 => havip_op(&havip),
        1 => associate(&havip, member),
        2 => unassociate(&havip, member),
        _ if h % 4 == 0 => Op::DeleteHaVip(DeleteHaVip { id: havip }),
        _ => set_master(&havip, None),
    }
}

/// State after ops `0..n` of [`crash_op`].
fn crash_state(n: usize) -> State {
    let mut s = State::default();
    for i in 0..n {
        let a = apply(&s, &crash_op(i)).expect("crash op applies");
        s.apply_change(&a.change);
    }
    s
}

/// Child side of `sigkill_during_write_burst_keeps_every_acknowledged_write`:
/// runs only when `HAVIP_CRASH_DB` is set.
#[test]
#[ignore = "child process of the crash test"]
fn crash_child() {
    let Ok(db) = std::env::var("HAVIP_CRASH_DB") else {
        return;
    };
    let start: usize = std::env::var("HAVIP_CRASH_START").unwrap().parse().unwrap();
    let cp = ControlPlane::open(&db).expect("open");
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in start.. {
        cp.apply(crash_op(i)).expect("op");
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

fn run_crash_child(db: &Path, start: usize, kill_after: usize) -> Option<usize> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HAVIP_CRASH_DB", db)
        .env("HAVIP_CRASH_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = None;
    let mut seen = 0;
    while seen < kill_after {
        let Some(Ok(l)) = lines.next() else { break };
        if let Some(n) = l.strip_prefix("ack ") {
            last = Some(n.trim().parse::<usize>().unwrap());
            seen += 1;
        }
    }
    // SIGKILL in the middle of the burst.
    child.kill().unwrap();
    // Acks already in the pipe were acknowledged before the kill.
    for l in lines.map_while(Result::ok) {
        if let Some(n) = l.strip_prefix("ack ") {
            last = Some(n.trim().parse::<usize>().unwrap());
        }
    }
    child.wait().unwrap();
    last
}

#[test]
fn sigkill_during_write_burst_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.redb");
    let mut start = 0;
    for (round, kill_after) in [40usize, 301, 157, 523].into_iter().enumerate() {
        let acked = run_crash_child(&db, start, kill_after)
            .unwrap_or_else(|| panic!("round {round}: child acknowledged nothing"));
        assert!(acked + 1 >= start + kill_after.min(10), "round {round}");
        // Reopen (redb repairs after the crash): the state must be exactly
        // the acknowledged prefix, or that plus the one op in flight.
        let loaded = RedbStore::open(&db).unwrap().load().unwrap();
        let acked_state = crash_state(acked + 1);
        let n = if loaded == acked_state {
            acked + 1
        } else {
            let in_flight = crash_state(acked + 2);
            assert_eq!(
                loaded, in_flight,
                "round {round}: store is neither the acknowledged state (through op {acked}) nor one op later"
            );
            acked + 2
        };
        // The reloaded state is usable: indexes agree with a fresh rebuild.
        let mut rebuilt = loaded.clone();
        rebuilt.reindex();
        assert_eq!(rebuilt, loaded);
        start = n;
    }
}

// Performance smoke (the real numbers come from `cargo xtask bench`)

/// Binds instance `i-<k>` to `havip` and unbinds it again: two operations.
fn associate_and_back(cp: &ControlPlane, havip: &str, k: usize) {
    let member = Member::instance(format!("i-{k}"));
    cp.apply(associate(havip, member.clone())).unwrap();
    cp.apply(unassociate(havip, member)).unwrap();
}

/// Opens `db` and seeds instances `i-0..n_instances` and `n` HaVips in one
/// transaction; returns the control plane and the time of that transaction.
fn seeded(db: &Path, n_instances: usize, n: usize) -> (ControlPlane, Duration) {
    let cp = ControlPlane::open(db).unwrap();
    let mut ops = seed_ops(n_instances, n);
    ops.extend(havip_ops(n));
    let t = Instant::now();
    cp.apply_all(&ops).unwrap();
    (cp, t.elapsed())
}

/// [`associate_and_back`] `rounds` times from one caller over the `n`
/// HaVips in turn: operations per second.
fn one_caller(cp: &ControlPlane, rounds: u32, n: usize) -> f64 {
    let t = Instant::now();
    for r in 0..rounds {
        associate_and_back(cp, &format!("h{}", r as usize % n), 0);
    }
    f64::from(2 * rounds) / t.elapsed().as_secs_f64()
}

/// Reopens `db`, checks its `n` HaVips are all there: the cold start time.
fn cold_start(db: &Path, n: usize) -> Duration {
    let t = Instant::now();
    let cp = ControlPlane::open(db).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(cp.with_state(|s| s.havips.len()), n);
    elapsed
}

#[test]
fn associate_throughput_and_cold_start_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perf.redb");
    let n_havips = 2_000;
    {
        let (cp, _) = seeded(&db, 1, n_havips);
        let ops_s = one_caller(&cp, 200, n_havips);
        eprintln!("associate/unassociate (debug build, one caller): {ops_s:.0} ops/s");
        assert!(ops_s > 100.0, "{ops_s} ops/s");
    }
    let elapsed = cold_start(&db, n_havips);
    eprintln!("cold start with {n_havips} HaVips (debug build): {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// `cargo test --release -p havip-userspace --test durability -- --ignored --nocapture perf_numbers`
#[test]
#[ignore = "performance numbers; run in release"]
fn perf_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perf.redb");
    let n_havips = 10_000;
    {
        // One instance per caller: an instance holds at most 5 HaVips.
        let (cp, seed) = seeded(&db, 16, n_havips);
        eprintln!("seed {n_havips} HaVips in one txn: {seed:?}");
        let cp = Arc::new(cp);
        let rounds = 5_000;
        for callers in [1usize, 2, 4, 16] {
            let per = rounds / callers;
            let g0 = cp.generation();
            let t = Instant::now();
            let threads: Vec<_> = (0..callers)
                .map(|k| {
                    let cp = Arc::clone(&cp);
                    thread::spawn(move || {
                        for r in 0..per {
                            let havip = format!("h{}", (r * callers + k) % n_havips);
                            associate_and_back(&cp, &havip, k);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let ops = (2 * per * callers) as f64;
            let commits = (cp.generation() - g0) as f64;
            eprintln!(
                "associate/unassociate, {callers} callers: {:.0} ops/s ({:.1} ops per commit)",
                ops / t.elapsed().as_secs_f64(),
                ops / commits
            );
        }
    }
    let elapsed = cold_start(&db, n_havips);
    eprintln!("cold start with {n_havips} HaVips: {elapsed:?}");
}
