//! Claims raced against reconciles (the owner-write rule): one thread feeds
//! GARPs from two bound members through `BPF_PROG_TEST_RUN`, another runs
//! the agent's reconciler in a loop with `Desired` variants that used to
//! rewrite the owner (move the owner to its ENI's new port, put its HaVip
//! id right). No accepted claim may ever be undone: the epoch always equals
//! the initial one plus the accepted claims, and the owner is a claimer.
//! The reconciler now never writes the owner word for these (members are
//! moved in place, ids re-pointed), and moves an owner only by
//! compare-and-swap (docs/design.md, owner-write rule).

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Instant,
};

use havip::dataplane::{reconcile_with, Desired, DesiredHavip, Maps, ReconcileReport};
use havip_common::{virtual_mac, Handled, HavipKey, OwnerEntry};
use havip_tests::{bed::*, fixtures::*, pin_current_thread, CpuPin, Port, TestBed};

/// The raced HaVip: vSwitch 1, not in the standard bed.
const HAVIP_RACE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 102);
/// Its id, and the id of the "fix" variant (both unused by the bed).
const RACE_ID: u32 = 4;
const RACE_ID_FIXED: u32 = 5;
/// Reconcile passes (each one a full pass over every map).
const ROUNDS: usize = 3_000;

/// Pins the calling thread to `cpu` (both threads must really run at once).
fn pin_to(cpu: usize) {
    pin_current_thread(cpu).unwrap_or_else(|e| panic!("sched_setaffinity({cpu}): {e}"));
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `bed.desired` plus the raced HaVip: bound to Owner, Standby and Client,
/// initial owner Client (which never claims).
fn race_desired(bed: &TestBed) -> Desired {
    let mut d = bed.desired.clone();
    let client = bed.binding(Port::Client, CLIENT_MAC);
    d.havips.push(DesiredHavip {
        key: key(VSWITCH, HAVIP_RACE),
        vpc_id: 1,
        id: RACE_ID,
        virtual_mac: virtual_mac(HAVIP_RACE.octets()),
        bindings: vec![
            bed.binding(Port::Owner, OWNER_MAC),
            bed.binding(Port::Standby, STANDBY_MAC),
            client,
        ],
        initial_owner: Some(client),
    });
    d
}

fn race_havip(d: &mut Desired) -> &mut DesiredHavip {
    d.havips
        .iter_mut()
        .find(|h| h.key.addr == HAVIP_RACE.octets())
        .expect("the raced HaVip is in the desired state")
}

/// What one side saw, for the report and the final checks.
#[derive(Debug, Default)]
struct Tally {
    passes: usize,
    /// Passes during which at least one claim was accepted.
    overlapped: usize,
    /// Passes that wrote the raced owner (moved it or fixed its id) while a
    /// claim was accepted during the pass.
    overlapped_writes: usize,
    /// Rewrites given up because a claim landed after the decision.
    kept: usize,
    moved: usize,
    fixed: usize,
}

/// Checks an `OWNERS` read against the claims accepted so far; `settled`:
/// no claim is in flight (the claim thread reads), so the epoch is exact.
fn check_owner(owner: &OwnerEntry, initial: u64, accepted: u64, settled: bool, at: &str) {
    let want = initial + accepted;
    if settled {
        assert_eq!(
            owner.epoch, want,
            "{at}: epoch {} but {accepted} claims were accepted since epoch {initial}: \
             a claim was undone ({owner:?})",
            owner.epoch
        );
    } else {
        // Another thread may accept one claim between our counter read and
        // the map read, never lose one.
        assert!(
            owner.epoch >= want,
            "{at}: epoch {} went below {want} ({accepted} accepted claims): a claim was \
             undone ({owner:?})",
            owner.epoch
        );
    }
    if accepted > 0 {
        assert!(
            owner.mac == OWNER_MAC || owner.mac == STANDBY_MAC,
            "{at}: after {accepted} claims the owner is not a claimer: {owner:?}"
        );
        assert_ne!(owner.ifindex, 0, "{at}: owner cleared: {owner:?}");
    }
}

#[test]
fn reconciles_never_undo_a_claim() {
    let mut bed = TestBed::new();
    let base = race_desired(&bed);
    bed.desired = base.clone();
    bed.reconcile();
    let race_key: HavipKey = key(VSWITCH, HAVIP_RACE);
    let start = bed.owner(HAVIP_RACE);
    assert_eq!(
        (start.ifindex, start.mac),
        (bed.ifindex(Port::Client), CLIENT_MAC),
        "the initial owner is installed: {start:?}"
    );
    let initial = start.epoch;
    let _ = bed.events();
    let claims_before = bed.counters().get(Handled::ClaimAccepted).packets;

    // Variants the reconciler cycles through. "moved": the standby's ENI
    // came back under another port's ifindex (a VM restart): an owner
    // standby is moved there, same epoch; back in `base` it is moved home.
    // "fixed": the HaVip's id changed: the owner entry's id is rewritten.
    // Both keep the owner; only a raced write could lose a claim.
    let mut moved = base.clone();
    let other = bed.ifindex(Port::Other);
    for b in &mut race_havip(&mut moved).bindings {
        if b.mac == STANDBY_MAC {
            b.ifindex = other;
        }
    }
    let mut fixed = base.clone();
    race_havip(&mut fixed).id = RACE_ID_FIXED;
    let variants = [base.clone(), moved, base.clone(), fixed];

    let mut maps = Maps::open_pinned(bed.dp.pin_dir())
        .unwrap_or_else(|e| panic!("opening the bed's pinned maps: {e:#?}"));
    let no_redirect = BTreeSet::new();
    let accepted = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    // Read before pinning this thread (the count follows the affinity).
    let ncpus = cpus();
    let two_cpus = ncpus >= 2;
    let began = Instant::now();

    // This thread claims on one CPU, the reconciler runs on another.
    let pin = CpuPin::current();
    let reconciler_cpu = (pin.cpu + 1) % ncpus;
    let (tally, sent) = std::thread::scope(|s| {
        // The reconciler: the agent's entry point, as its loop calls it.
        let reconciler = s.spawn(|| {
            if two_cpus {
                pin_to(reconciler_cpu);
            }
            let mut t = Tally::default();
            let mut last_epoch = initial;
            for round in 0..ROUNDS {
                let want = &variants[round % variants.len()];
                let a0 = accepted.load(Ordering::SeqCst);
                let report: ReconcileReport = reconcile_with(&mut maps, want, &no_redirect)
                    .unwrap_or_else(|e| panic!("reconcile round {round}: {e:#?}"));
                let a1 = accepted.load(Ordering::SeqCst);
                let owner = maps
                    .owners
                    .get(&race_key, 0)
                    .unwrap_or_else(|e| panic!("OWNERS after round {round}: {e}"));
                // Sample point: the counter is read before the map, so the
                // epoch is at least initial + a1.
                check_owner(&owner, initial, a1, false, &format!("round {round}"));
                assert!(
                    owner.epoch >= last_epoch,
                    "round {round}: epoch went back from {last_epoch}: {owner:?}"
                );
                last_epoch = owner.epoch;
                t.passes += 1;
                t.kept += report.owners_kept;
                t.moved += report.owners_moved;
                t.fixed += report.owners_fixed;
                if a1 > a0 {
                    t.overlapped += 1;
                    if report.owners_moved + report.owners_fixed + report.owners_kept > 0 {
                        t.overlapped_writes += 1;
                    }
                }
            }
            done.store(true, Ordering::SeqCst);
            t
        });

        // The claimers, on this thread: it is inside the bed's namespace
        // (`BPF_PROG_TEST_RUN` resolves the ingress port there).
        let sent = {
            let garps = [
                (Port::Owner, garp(OWNER_MAC, HAVIP_RACE)),
                (Port::Standby, garp(STANDBY_MAC, HAVIP_RACE)),
            ];
            let mut sent = 0u64;
            let mut n = 0u64;
            while !done.load(Ordering::SeqCst) {
                let (port, frame) = &garps[(sent % 2) as usize];
                bed.run(*port, frame);
                sent += 1;
                let won = owner_changes(&bed.events())
                    .iter()
                    .filter(|e| e.key == race_key)
                    .count() as u64;
                n += won;
                accepted.store(n, Ordering::SeqCst);
                if sent.is_multiple_of(64) {
                    // No claim in flight: the epoch must be exact.
                    let owner = bed.owner(HAVIP_RACE);
                    check_owner(&owner, initial, n, true, &format!("claim {sent}"));
                }
            }
            sent
        };
        let tally = reconciler
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (tally, sent)
    });
    let accepted = accepted.load(Ordering::SeqCst);

    // Afterwards: both threads stopped, the entry is exact.
    let owner = bed.owner(HAVIP_RACE);
    check_owner(&owner, initial, accepted, true, "the end");
    let counted = bed.counters().get(Handled::ClaimAccepted).packets - claims_before;
    assert_eq!(
        counted, accepted,
        "HANDLED[claim_accepted] and OWNER_CHANGED events disagree"
    );
    println!(
        "owner race: {} reconcile passes and {sent} GARPs in {:?} on {} CPUs: {accepted} claims \
         accepted; {} passes overlapped an accepted claim, {} of them writing the raced owner \
         ({} moves, {} id fixes, {} rewrites given up for a newer claim); final owner {:?} \
         epoch {}",
        tally.passes,
        began.elapsed(),
        ncpus,
        tally.overlapped,
        tally.overlapped_writes,
        tally.moved,
        tally.fixed,
        tally.kept,
        owner.mac,
        owner.epoch,
    );
    assert!(
        accepted > 100,
        "only {accepted} claims accepted: the race did not run"
    );
    assert!(
        tally.overlapped_writes > 100,
        "only {} reconcile passes wrote the owner while a claim landed: not a race",
        tally.overlapped_writes
    );
}
