//! Group commit: the queue of waiting operations, the leader that runs one
//! batch at a time, and the undo log that keeps a failed batch out of the
//! in-memory state.
//!
//! # Failure rules
//! - The leader flag is reset by a guard, so a batch that fails or panics
//!   never blocks the batches after it.
//! - A batch runs under `catch_unwind`: a panic fails that batch's callers
//!   with [`OpError::CommitFailed`] and the next batch proceeds.
//! - Operations are validated and applied to the state in place, with an
//!   undo log (the records each change overwrote). The state lock is held
//!   from the first validation to the end of the commit, so no reader (API,
//!   reconciler) ever sees a change before it is durable. If the commit
//!   fails, the undo log is applied and every accepted caller of the batch
//!   gets [`OpError::CommitFailed`]. If the batch panics (the undo log may
//!   then be incomplete), the state is reloaded from the store, which holds
//!   exactly what was committed; while that reload fails, every batch
//!   retries it first and refuses its callers.
//!
//! Why not a copy of the state per batch: with 10,000 HaVips a deep copy
//! costs more than the fsync it would protect, and a batch is one fsync.
//!
//! # Blocking and asynchronous callers
//! A blocking caller ([`ControlPlane::apply`]) queues its job and, when no
//! batch is running, leads the next one itself. An asynchronous caller (the
//! API: [`ControlPlane::apply_and_read_async`]) queues its job and awaits a
//! oneshot; one dedicated commit worker thread per control plane leads the
//! batches no blocking caller leads. So requests from every API connection
//! share one queue and one batch, with no blocking-pool thread parked per
//! request. The worker holds only a weak reference between batches: it ends
//! when the control plane is dropped. (On a host whose CPUs are
//! oversubscribed, this one thread waits in the run queue like any other:
//! give the agent CPU weight there.)

use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak},
};

use tokio::sync::oneshot;
use tracing::error;

use super::{
    affects_dataplane, commit_failed,
    history::{self, Event},
    lock, ControlPlane, Inner, MAX_CONFLICT_RETRIES,
};
use crate::model::{
    apply, Applied, Change, Mutation, Op, OpError, Record, RecordKey, RecordKind, State,
};
use crate::store::StoreError;

/// Reads the reply of an accepted operation from the committed state.
pub(super) type ReadBack = Box<dyn FnOnce(&State, &Applied) -> Box<dyn Any + Send> + Send>;

/// A job's outcome: what changed, and what its [`ReadBack`] read.
pub(super) type Outcome = Result<(Applied, Option<Box<dyn Any + Send>>), OpError>;

/// Operations waiting for the next group commit.
#[derive(Default)]
pub(super) struct Queue {
    jobs: Vec<Arc<Job>>,
    /// A caller is validating and committing a batch right now.
    leader: bool,
    /// The control plane is gone: the commit worker ends.
    closed: bool,
}

/// The queue and its wake-ups, shared by the control plane and its commit
/// worker (which must not keep the control plane alive).
#[derive(Default)]
pub(super) struct Commits {
    queue: Mutex<Queue>,
    /// Blocking callers wait here for their result or their turn to lead.
    queue_cv: Condvar,
    /// The commit worker waits here for jobs nobody leads.
    worker_cv: Condvar,
    /// Whether the commit worker thread started (set once).
    worker: OnceLock<bool>,
}

impl Commits {
    /// Ends the commit worker (the control plane is being dropped).
    pub(super) fn close(&self) {
        lock(&self.queue).closed = true;
        self.worker_cv.notify_all();
    }
}

pub(super) struct Job {
    op: Op,
    read: Mutex<Option<ReadBack>>,
    result: Mutex<Option<Outcome>>,
    /// Where an asynchronous caller awaits the result.
    reply: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Job {
    fn new(op: Op, read: Option<ReadBack>, reply: Option<oneshot::Sender<Outcome>>) -> Arc<Self> {
        Arc::new(Job {
            op,
            read: Mutex::new(read),
            result: Mutex::new(None),
            reply: Mutex::new(reply),
        })
    }
}

/// Hands the asynchronous callers of a finished batch their results (a
/// caller that went away is ignored: its operation was still applied).
fn deliver(jobs: &[Arc<Job>]) {
    // Read-backs of refused jobs may hold the control plane: let go first.
    for job in jobs {
        drop(lock(&job.read).take());
    }
    for job in jobs {
        if let Some(tx) = lock(&job.reply).take() {
            if let Some(r) = lock(&job.result).take() {
                let _ = tx.send(r);
            }
        }
    }
}

/// Resets the leader flag and wakes the waiting callers (and the worker,
/// when jobs are queued) when the leader is done with its batch, whether it
/// returned or unwound.
struct Leader<'a> {
    commits: &'a Commits,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut q = lock(&self.commits.queue);
        q.leader = false;
        self.commits.queue_cv.notify_all();
        if !q.jobs.is_empty() {
            self.commits.worker_cv.notify_one();
        }
    }
}

/// The commit worker: leads the batches of queued jobs while no blocking
/// caller does, until the control plane is dropped.
fn worker(commits: &Commits, cp: &Weak<ControlPlane>) {
    loop {
        let jobs = {
            let mut q = lock(&commits.queue);
            loop {
                if q.closed {
                    return;
                }
                if !q.leader && !q.jobs.is_empty() {
                    break;
                }
                q = commits
                    .worker_cv
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            q.leader = true;
            std::mem::take(&mut q.jobs)
        };
        {
            let _leader = Leader { commits };
            match cp.upgrade() {
                // Dropped before the replies go out, so a caller that got
                // its reply never waits for this thread to let go.
                Some(cp) => cp.lead(&jobs),
                None => {
                    for job in &jobs {
                        *lock(&job.result) =
                            Some(Err(OpError::Internal("the control plane is closed".into())));
                    }
                }
            }
        }
        deliver(&jobs);
    }
}

/// The record `key` names in `s` (what a mutation of `key` overwrites).
fn record_of(s: &State, key: &RecordKey) -> Option<Record> {
    let id = key.id.as_str();
    match key.kind {
        RecordKind::Vpc => s.vpcs.get(id).cloned().map(Record::Vpc),
        RecordKind::VSwitch => s.vswitches.get(id).cloned().map(Record::VSwitch),
        RecordKind::Instance => s.instances.get(id).cloned().map(Record::Instance),
        RecordKind::Eni => s.enis.get(id).cloned().map(Record::Eni),
        RecordKind::Uplink => s.uplinks.get(id).cloned().map(Record::Uplink),
        RecordKind::HaVip => s.havips.get(id).cloned().map(Record::HaVip),
        RecordKind::Eip => s.eips.get(id).cloned().map(Record::Eip),
        RecordKind::Route => s.routes.get(id).cloned().map(Record::Route),
        RecordKind::Quotas => Some(Record::Quotas(s.quotas)),
        RecordKind::Owner => s.owners.get(id).map(|o| Record::Owner {
            havip: key.id.clone(),
            owner: *o,
        }),
        RecordKind::Meta => Some(Record::Meta(s.meta)),
        RecordKind::History => s.history.get(id).map(|e| Record::History {
            havip: key.id.clone(),
            entries: e.clone(),
        }),
    }
}

/// The change that undoes `change` on `s` (call before applying it).
fn undo_of(s: &State, change: &Change) -> Change {
    let mut undo = Change::default();
    for m in change.mutations.iter().rev() {
        let key = match m {
            Mutation::Put(r) => r.key(),
            Mutation::Delete(k) => k.clone(),
        };
        match record_of(s, &key) {
            Some(old) => undo.put(old),
            None => undo.mutations.push(Mutation::Delete(key)),
        }
    }
    undo
}

impl ControlPlane {
    pub(super) fn submit(&self, mut op: Op, read: Option<ReadBack>) -> Outcome {
        if let Op::CreateEni(e) = &mut op {
            if e.host.is_none() {
                e.host = self.local_host();
            }
        }
        let job = Job::new(op, read, None);
        let commits = &*self.commits;
        let mut q = lock(&commits.queue);
        q.jobs.push(Arc::clone(&job));
        loop {
            if let Some(r) = lock(&job.result).take() {
                return r;
            }
            if q.leader {
                // Someone is committing: wait for the batch after it.
                q = commits
                    .queue_cv
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead: take every queued job (ours included) as one batch.
            q.leader = true;
            let jobs = std::mem::take(&mut q.jobs);
            drop(q);
            {
                let _leader = Leader { commits };
                self.lead(&jobs);
            }
            deliver(&jobs);
            q = lock(&commits.queue);
        }
    }

    /// Queues `op` for the commit worker; the receiver gets its outcome.
    /// If the worker thread cannot start, `op` and `read` come back (the
    /// caller then uses [`ControlPlane::submit`] on a blocking thread).
    pub(super) fn submit_async(
        self: &Arc<Self>,
        mut op: Op,
        read: Option<ReadBack>,
    ) -> Result<oneshot::Receiver<Outcome>, Box<(Op, Option<ReadBack>)>> {
        if !self.start_worker() {
            return Err(Box::new((op, read)));
        }
        if let Op::CreateEni(e) = &mut op {
            if e.host.is_none() {
                e.host = self.local_host();
            }
        }
        let (tx, rx) = oneshot::channel();
        let job = Job::new(op, read, Some(tx));
        let mut q = lock(&self.commits.queue);
        q.jobs.push(job);
        if !q.leader {
            self.commits.worker_cv.notify_one();
        }
        Ok(rx)
    }

    /// Starts the commit worker once; false if the thread cannot start.
    fn start_worker(self: &Arc<Self>) -> bool {
        *self.commits.worker.get_or_init(|| {
            let commits = Arc::clone(&self.commits);
            let cp = Arc::downgrade(self);
            match std::thread::Builder::new()
                .name("havip-commit".into())
                .spawn(move || worker(&commits, &cp))
            {
                Ok(_) => true,
                Err(e) => {
                    error!(error = %e, "cannot start the commit worker; API operations use the blocking pool");
                    false
                }
            }
        })
    }

    /// Runs one batch; whatever happens, every job of it gets a result.
    fn lead(&self, jobs: &[Arc<Job>]) {
        let mut inner = lock(&self.inner);
        let ran = catch_unwind(AssertUnwindSafe(|| self.run_batch(&mut inner, jobs)));
        if let Err(panic) = ran {
            let what = panic_message(&*panic);
            error!(panic = %what, jobs = jobs.len(), "a commit batch panicked; its callers get Internal.CommitFailed");
            reload(&mut inner);
            let err = OpError::CommitFailed(format!("the batch panicked: {what}"));
            for job in jobs {
                let mut r = lock(&job.result);
                if r.is_none() {
                    *r = Some(Err(err.clone()));
                }
            }
        }
    }

    fn run_batch(&self, inner: &mut MutexGuard<'_, Inner>, jobs: &[Arc<Job>]) {
        if inner.stale && !reload(inner) {
            let err = OpError::CommitFailed(
                "the state could not be reloaded from the store after a failed batch".into(),
            );
            for job in jobs {
                *lock(&job.result) = Some(Err(err.clone()));
            }
            return;
        }
        // From here until the commit returns, a panic leaves `stale` set
        // (cleared again by the reload in `lead`).
        inner.stale = true;
        let mut attempt = 0;
        let host = self.local_host();
        let now = history::now_rfc3339();
        let mut events = Vec::new();
        let (mut results, mut changes, undo, committed) = loop {
            let mut results = Vec::with_capacity(jobs.len());
            let mut changes = Vec::new();
            let mut undo = Vec::new();
            events.clear();
            for job in jobs {
                let mut r = apply(&inner.state, &job.op);
                if let Ok(a) = &mut r {
                    let owners = history::extend(
                        &inner.state,
                        std::slice::from_mut(&mut a.change),
                        history::trigger_of(&job.op),
                        host.as_deref(),
                        &now,
                    );
                    events.extend(owners.into_iter().map(Event::OwnerChanged));
                    if !matches!(job.op, Op::RecordOwner(_)) {
                        events.push(Event::ApiChange {
                            time: now.clone(),
                            op: history::op_name(&job.op),
                            subject: a.subject.as_ref().map(|k| k.id.clone()),
                        });
                    }
                    undo.push(undo_of(&inner.state, &a.change));
                    inner.state.apply_change(&a.change);
                    changes.push(a.change.clone());
                }
                results.push(r);
            }
            // A refusal decided on a state that lags a shared store (another
            // host's commit not seen yet) may be wrong: read it again once
            // and validate the batch again.
            if attempt == 0
                && inner.store.shared()
                && results.iter().any(Result::is_err)
                && reload(inner)
            {
                attempt += 1;
                inner.stale = true;
                self.generation.send_modify(|g| *g = g.wrapping_add(1));
                continue;
            }
            match inner.store.commit_all(&changes) {
                // A shared store (etcd) moved on since the state was read:
                // read it again and validate the batch again.
                Err(StoreError::Conflict)
                    if attempt < MAX_CONFLICT_RETRIES && catch_up(inner, &undo) =>
                {
                    attempt += 1;
                    inner.stale = true;
                    self.generation.send_modify(|g| *g = g.wrapping_add(1));
                }
                r => break (results, changes, undo, r),
            }
        };
        if let Err(e) = committed {
            // Nothing was written: undo, newest first.
            for u in undo.iter().rev() {
                inner.state.apply_change(u);
            }
            // Counting indexes keep zero entries after an undo: rebuild
            // them so the state equals the committed one exactly.
            inner.state.reindex();
            let err = commit_failed(&e);
            error!(error = %err, "store commit failed; the batch's callers get Internal.CommitFailed");
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(err.clone());
                }
            }
            changes.clear();
            events.clear();
        }
        inner.stale = false;
        for e in events {
            self.publish(e);
        }
        if changes.iter().any(affects_dataplane) {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
        for (job, r) in jobs.iter().zip(results) {
            let r = r.and_then(|a| {
                let read = lock(&job.read).take();
                let state = &inner.state;
                let v = match read {
                    None => None,
                    // The change is committed: a failing read-back fails
                    // only this caller's reply.
                    Some(f) => Some(catch_unwind(AssertUnwindSafe(|| f(state, &a))).map_err(
                        |p| {
                            OpError::Internal(format!(
                                "the operation was committed but its reply failed: {}",
                                panic_message(&*p)
                            ))
                        },
                    )?),
                };
                Ok((a, v))
            });
            *lock(&job.result) = Some(r);
        }
    }
}

/// Replaces the in-memory state with the store's; true on success.
/// After a lost commit race on a shared store: this batch's changes
/// undone, the others' commits applied from what the failed commit read
/// (`Store::catch_up`), else a full [`reload`].
fn catch_up(inner: &mut Inner, undo: &[Change]) -> bool {
    for u in undo.iter().rev() {
        inner.state.apply_change(u);
    }
    inner.state.reindex();
    if inner.store.catch_up(&mut inner.state) {
        inner.stale = false;
        return true;
    }
    reload(inner)
}

fn reload(inner: &mut Inner) -> bool {
    match catch_unwind(AssertUnwindSafe(|| inner.store.load())) {
        Ok(Ok(mut s)) => {
            // Observed owners are host-local: a shared store (etcd) does not
            // hold them, so ours fill the HaVips the store has none for.
            for (id, o) in &inner.state.owners {
                if s.havips.contains_key(id) {
                    s.owners.entry(id.clone()).or_insert(*o);
                }
            }
            s.reindex();
            inner.state = s;
            inner.stale = false;
            true
        }
        Ok(Err(e)) => {
            error!(error = %e, "reloading the state from the store failed; operations are refused until it succeeds");
            inner.stale = true;
            false
        }
        Err(_) => {
            error!("reloading the state from the store panicked; operations are refused until it succeeds");
            inner.stale = true;
            false
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
