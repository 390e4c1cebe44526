//! The control plane as a service object: the in-memory [`State`], the
//! durable [`Store`] behind it, group commit, change notification for the
//! reconciler, kernel-observed owners and the counters hook for Describe.
//!
//! Every entry point (API handlers, `havipctl` through the API, the TOML
//! seed, the event consumer) goes through [`ControlPlane::apply`], which
//! validates with [`crate::model::apply`] and commits the change in one
//! store transaction ([`Store`]) before acknowledging it.
//!
//! # Group commit
//! Concurrent callers are batched: while one caller (the leader) commits a
//! batch, new operations queue up; when it is done, one waiting caller takes
//! the whole queue as the next batch, validates every operation in order
//! (each against the state left by the ones before it), writes all accepted
//! changes in one durable transaction, then hands each caller its own
//! result. With one fsync costing ~0.3 ms, this is what lets many callers
//! exceed a few thousand operations per second. A refused operation still changes
//! nothing, and no caller is acknowledged before its change is on disk.

use std::{
    net::Ipv4Addr,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak},
};

use havip_common::HavipKey;
use tokio::sync::{broadcast, watch};

mod commit;
pub mod desired;
pub mod history;
mod view;

pub use view::{havip_view, CountersSource, EipRef, HaVipUsage, HaVipView, HavipCounters};

use self::{
    commit::{Commits, ReadBack},
    history::{Event, EVENT_BUFFER},
};
use crate::{
    cluster::{Cluster, SyncStatus},
    model::{
        apply,
        validate::{check_id, not_found},
        Applied, Change, Mutation, ObservedOwner, Op, OpError, OwnerChange, OwnerTrigger, Record,
        RecordKind, RecordOwner, ResourceKind, State,
    },
    store::{RedbStore, Store, StoreError},
};

struct Inner {
    state: State,
    store: Box<dyn Store>,
    /// A batch panicked and the state could not be reloaded from the
    /// store: every batch reloads first and refuses until it succeeds.
    stale: bool,
}

/// The control plane: state, store, notifications. Share it as
/// `Arc<ControlPlane>`; every method takes `&self` and is blocking (call it
/// from `spawn_blocking` in async code; the API server does).
pub struct ControlPlane {
    inner: Mutex<Inner>,
    commits: Arc<Commits>,
    generation: watch::Sender<u64>,
    counters: RwLock<Option<Arc<dyn CountersSource>>>,
    local_host: RwLock<Option<String>>,
    /// The cluster view when running multi-host (weak: it holds the
    /// control plane).
    cluster: RwLock<Option<Weak<Cluster>>>,
    events: broadcast::Sender<Event>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.commits.close();
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave the state half-applied (the
    // in-memory state is only changed after a successful commit), so a
    // poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The applied change and the value its [`ReadBack`] read.
fn read_back<R: 'static>(outcome: commit::Outcome) -> Result<(Applied, R), OpError> {
    let (applied, r) = outcome?;
    let r = r
        .and_then(|r| r.downcast::<R>().ok())
        .ok_or_else(|| OpError::Internal("reply not read back".into()))?;
    Ok((applied, *r))
}

/// [`OpError::CommitFailed`] naming the store error and its sources.
fn commit_failed(e: &StoreError) -> OpError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    OpError::CommitFailed(msg)
}

impl ControlPlane {
    /// Opens the store at `path` (created if missing) and loads the state.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be opened or read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_store(RedbStore::open(path)?)
    }

    /// Wraps an open store, loading its state.
    ///
    /// # Errors
    /// [`StoreError`] when the state cannot be read.
    pub fn with_store(store: impl Store + 'static) -> Result<Self, StoreError> {
        let state = store.load()?;
        let store: Box<dyn Store> = Box::new(store);
        let (generation, _) = watch::channel(0);
        Ok(ControlPlane {
            inner: Mutex::new(Inner {
                state,
                store,
                stale: false,
            }),
            commits: Arc::default(),
            generation,
            counters: RwLock::new(None),
            local_host: RwLock::new(None),
            cluster: RwLock::new(None),
            events: broadcast::channel(EVENT_BUFFER).0,
        })
    }

    /// Whether the store answers a read (readiness).
    ///
    /// # Errors
    /// The store's error.
    pub fn ping_store(&self) -> Result<(), StoreError> {
        lock(&self.inner).store.ping()
    }

    /// Validates and durably applies one operation (group-committed with
    /// concurrent callers). Returns what changed.
    ///
    /// # Errors
    /// The refusal ([`OpError`]); [`OpError::CommitFailed`] if the store
    /// failed (nothing changed then).
    pub fn apply(&self, op: Op) -> Result<Applied, OpError> {
        self.submit(op, None).map(|(a, _)| a)
    }

    /// [`ControlPlane::apply`], then `read` on the state as committed, in
    /// the same critical section (the API builds its reply this way: no
    /// second wait for the lock behind the next batch's commit).
    ///
    /// # Errors
    /// As [`ControlPlane::apply`].
    pub fn apply_and_read<R: Send + 'static>(
        &self,
        op: Op,
        read: impl FnOnce(&State, &Applied) -> R + Send + 'static,
    ) -> Result<(Applied, R), OpError> {
        let read: ReadBack = Box::new(move |s, a| Box::new(read(s, a)));
        read_back(self.submit(op, Some(read)))
    }

    /// [`ControlPlane::apply_and_read`] for async callers: the operation
    /// joins the next group commit through the commit worker and this
    /// awaits its outcome, with no thread parked on it.
    ///
    /// # Errors
    /// As [`ControlPlane::apply`].
    pub async fn apply_and_read_async<R: Send + 'static>(
        self: &Arc<Self>,
        op: Op,
        read: impl FnOnce(&State, &Applied) -> R + Send + 'static,
    ) -> Result<(Applied, R), OpError> {
        let read: ReadBack = Box::new(move |s, a| Box::new(read(s, a)));
        let outcome = match self.submit_async(op, Some(read)) {
            Ok(rx) => rx
                .await
                .map_err(|_| OpError::Internal("the commit worker dropped the operation".into()))?,
            Err(back) => {
                let (op, read) = *back;
                let cp = Arc::clone(self);
                tokio::task::spawn_blocking(move || cp.submit(op, read))
                    .await
                    .map_err(|e| OpError::Internal(format!("worker failed: {e}")))?
            }
        };
        read_back(outcome)
    }

    /// Applies `ops` in order, all or nothing, in one transaction.
    ///
    /// # Errors
    /// The index of the first refused op and its error; nothing changed.
    pub fn apply_all(&self, ops: &[Op]) -> Result<Vec<Applied>, (usize, OpError)> {
        self.apply_planned(|state| {
            let mut s = state.clone();
            let mut out = Vec::with_capacity(ops.len());
            for (i, op) in ops.iter().enumerate() {
                let a = apply(&s, op).map_err(|e| (i, e))?;
                s.apply_change(&a.change);
                out.push(a);
            }
            Ok(out)
        })
        .map_err(|e| match e {
            PlanError::Plan(e) => e,
            PlanError::Store(e) => (ops.len(), e),
        })
    }

    /// Runs `plan` over the current state; the changes it returns are
    /// committed in one transaction (used by the TOML seed).
    ///
    /// # Errors
    /// The plan's own error, or [`PlanError::Store`]; nothing changed.
    pub fn apply_planned<E>(
        &self,
        plan: impl FnMut(&State) -> Result<Vec<Applied>, E>,
    ) -> Result<Vec<Applied>, PlanError<E>> {
        self.apply_planned_as(OwnerTrigger::Api, plan)
    }

    /// [`ControlPlane::apply_planned`], the owner changes recorded in the
    /// history with `trigger`.
    ///
    /// # Errors
    /// As [`ControlPlane::apply_planned`].
    pub fn apply_planned_as<E>(
        &self,
        trigger: OwnerTrigger,
        mut plan: impl FnMut(&State) -> Result<Vec<Applied>, E>,
    ) -> Result<Vec<Applied>, PlanError<E>> {
        let host = self.local_host();
        let now = history::now_rfc3339();
        let mut inner = lock(&self.inner);
        if inner.stale {
            let s = inner
                .store
                .load()
                .map_err(|e| PlanError::Store(commit_failed(&e)))?;
            inner.state = s;
            inner.stale = false;
        }
        let mut attempt = 0;
        let (applied, changes, owners) = loop {
            let applied = plan(&inner.state).map_err(PlanError::Plan)?;
            let mut changes: Vec<Change> = applied.iter().map(|a| a.change.clone()).collect();
            let owners =
                history::extend(&inner.state, &mut changes, trigger, host.as_deref(), &now);
            match inner.store.commit_all(&changes) {
                Ok(()) => break (applied, changes, owners),
                // A shared store moved on: read it again, plan again.
                Err(StoreError::Conflict) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    inner.state = inner
                        .store
                        .load()
                        .map_err(|e| PlanError::Store(commit_failed(&e)))?;
                }
                Err(e) => return Err(PlanError::Store(commit_failed(&e))),
            }
        };
        for c in &changes {
            inner.state.apply_change(c);
        }
        if changes.iter().any(affects_dataplane) {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
        drop(inner);
        for c in owners {
            self.publish(Event::OwnerChanged(c));
        }
        Ok(applied)
    }

    /// Changes the state from outside the validation core: another host's
    /// commit seen by the etcd watcher. `f` runs under the state lock (so
    /// never at the same time as a commit) and returns whether it changed
    /// anything; the reconciler is then woken.
    pub fn apply_external(&self, f: impl FnOnce(&mut State) -> bool) {
        let mut inner = lock(&self.inner);
        if f(&mut inner.state) {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Wakes the reconciler without a state change (the shared owners or
    /// hosts changed).
    pub fn poke(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// The host id that ENIs created without one get (multi-host).
    pub fn set_local_host(&self, host: String) {
        *self
            .local_host
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(host);
    }

    /// See [`ControlPlane::set_local_host`].
    pub fn local_host(&self) -> Option<String> {
        self.local_host
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A copy of the current state (for the reconciler and for reads).
    pub fn snapshot(&self) -> State {
        lock(&self.inner).state.clone()
    }

    /// Runs `f` on the current state without copying it.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.inner).state)
    }

    /// Generation counter, bumped after every committed change that affects
    /// the data plane (not for owner reports). The reconciler waits on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Current generation (see [`ControlPlane::subscribe`]).
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Records the kernel-reported owner of the HaVip with data-plane id
    /// `slot` (durably). Never changes bindings.
    ///
    /// # Errors
    /// [`OpError::NotFound`] if no HaVip holds the slot.
    pub fn record_owner_by_slot(&self, slot: u32, owner: ObservedOwner) -> Result<(), OpError> {
        let id = self
            .with_state(|s| s.havip_by_slot(slot).map(|h| h.id.clone()))
            .ok_or_else(|| OpError::NotFound {
                kind: ResourceKind::HaVip,
                id: format!("slot {slot}"),
            })?;
        self.apply(Op::RecordOwner(RecordOwner { havip: id, owner }))
            .map(drop)
    }

    /// Records the kernel-reported owner of the HaVip at `key`.
    ///
    /// # Errors
    /// [`OpError::NotFound`] if no HaVip has that key.
    pub fn record_owner(&self, key: HavipKey, owner: ObservedOwner) -> Result<(), OpError> {
        let addr = Ipv4Addr::from(key.addr);
        let id = self
            .with_state(|s| s.havip_by_key(key.vswitch_id, addr).map(|h| h.id.clone()))
            .ok_or_else(|| OpError::NotFound {
                kind: ResourceKind::HaVip,
                id: format!("vswitch {} address {addr}", key.vswitch_id),
            })?;
        self.apply(Op::RecordOwner(RecordOwner { havip: id, owner }))
            .map(drop)
    }

    /// Records many kernel-reported owners in one transaction (adoption at
    /// start, resyncs, event bursts). Keys of unknown HaVips are skipped;
    /// returns how many owners changed.
    ///
    /// # Errors
    /// [`OpError::CommitFailed`] if the store failed (nothing recorded).
    pub fn record_owners(
        &self,
        owners: &[(HavipKey, ObservedOwner)],
        trigger: OwnerTrigger,
    ) -> Result<usize, OpError> {
        let applied = self
            .apply_planned_as(trigger, |state| {
                let mut out = Vec::new();
                for (key, owner) in owners {
                    let addr = Ipv4Addr::from(key.addr);
                    if let Some(h) = state.havip_by_key(key.vswitch_id, addr) {
                        let op = Op::RecordOwner(RecordOwner {
                            havip: h.id.clone(),
                            owner: *owner,
                        });
                        out.push(apply(state, &op)?);
                    }
                }
                Ok::<_, OpError>(out)
            })
            .map_err(|e| match e {
                PlanError::Plan(e) | PlanError::Store(e) => e,
            })?;
        Ok(applied.iter().filter(|a| !a.change.is_empty()).count())
    }

    /// Publishes `event` to the subscribers of [`ControlPlane::events`]
    /// (none: dropped). Never blocks.
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// A subscription to the event stream, buffering [`EVENT_BUFFER`]
    /// events (beyond, the oldest are dropped and the receiver is told it
    /// lagged).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The owner history of HaVip `id`, oldest first.
    ///
    /// # Errors
    /// [`OpError::InvalidId`] when `id` is no id a HaVip can have,
    /// [`OpError::NotFound`] when no HaVip is named `id`.
    pub fn owner_history(&self, id: &str) -> Result<Vec<OwnerChange>, OpError> {
        check_id(id)?;
        self.with_state(|s| {
            if !s.havips.contains_key(id) {
                return Err(not_found(ResourceKind::HaVip, id));
            }
            Ok(s.history.get(id).cloned().unwrap_or_default())
        })
    }

    /// Sets the source of live counters shown by Describe.
    pub fn set_counters(&self, source: Arc<dyn CountersSource>) {
        *self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// Live counters of the HaVip in `slot`, from the agent's source.
    pub fn counters_for(&self, slot: u32) -> Option<HavipCounters> {
        let src = self
            .counters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        src.and_then(|c| c.havip_counters(slot))
    }

    /// Sets the cluster view (multi-host): Describe shows the shared owner
    /// and `GET /v1/cluster` the sync status.
    pub fn set_cluster(&self, cluster: &Arc<Cluster>) {
        *self.cluster.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::downgrade(cluster));
    }

    fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade)
    }

    /// This host's sync with etcd; `None` on a single-host agent.
    pub fn cluster_status(&self) -> Option<SyncStatus> {
        self.cluster().map(|c| c.status())
    }

    /// Adds what only the agent knows to a Describe view: live counters and
    /// (multi-host) the shared owner with its host.
    pub fn enrich(&self, v: &mut HaVipView) {
        v.counters = self.counters_for(v.slot);
        if let Some(c) = self.cluster() {
            v.shared_owner = c.owner(&v.id).map(|(o, _)| o);
            v.owner_host = v.shared_owner.as_ref().map(|o| o.host.clone());
        }
    }

    /// DescribeHaVips: every HaVip (or the one named `id`), with status,
    /// bindings, owner, epoch and counters.
    ///
    /// # Errors
    /// [`OpError::InvalidId`] when `id` is no id a HaVip can have,
    /// [`OpError::NotFound`] when it names no HaVip.
    pub fn describe_havips(&self, id: Option<&str>) -> Result<Vec<HaVipView>, OpError> {
        if let Some(id) = id {
            check_id(id)?;
        }
        let views: Vec<HaVipView> = self.with_state(|s| match id {
            Some(id) => s
                .havips
                .get(id)
                .map(|h| vec![havip_view(s, h, None)])
                .unwrap_or_default(),
            None => s.havips.values().map(|h| havip_view(s, h, None)).collect(),
        });
        if let Some(id) = id {
            if views.is_empty() {
                return Err(not_found(ResourceKind::HaVip, id));
            }
        }
        Ok(views
            .into_iter()
            .map(|mut v| {
                self.enrich(&mut v);
                v
            })
            .collect())
    }
}

/// Error of [`ControlPlane::apply_planned`].
#[derive(Debug)]
pub enum PlanError<E> {
    /// The plan refused.
    Plan(E),
    /// The store failed; nothing changed.
    Store(OpError),
}

/// How often one operation is validated again after another host's commit
/// came first (etcd); beyond, the caller gets an internal error.
const MAX_CONFLICT_RETRIES: usize = 64;

fn affects_dataplane(c: &Change) -> bool {
    c.mutations.iter().any(|m| match m {
        Mutation::Put(Record::Owner { .. } | Record::Meta(_) | Record::History { .. }) => false,
        Mutation::Delete(k) => !matches!(
            k.kind,
            RecordKind::Owner | RecordKind::Meta | RecordKind::History
        ),
        Mutation::Put(_) => true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::*;

    /// VPC `vpc`, vSwitch `vsw` (10.0.0.0/16), quota `n_havips`, instances
    /// `i-0..`, HaVips `h0..` with allocated addresses.
    fn setup_ops(n_havips: usize, n_instances: usize) -> Vec<Op> {
        let mut ops: Vec<serde_json::Value> = vec![
            serde_json::json!({"op": "create_vpc", "id": "vpc", "cidr": "10.0.0.0/8"}),
            serde_json::json!({"op": "create_vswitch", "id": "vsw", "vpc": "vpc",
                "cidr": "10.0.0.0/16", "gateway_mac": "02:00:00:00:00:01"}),
            serde_json::json!({"op": "set_quota", "havips_per_account": n_havips,
                "havips_per_vpc": n_havips}),
        ];
        ops.extend((0..n_instances).map(|n| {
            serde_json::json!({"op": "create_instance", "id": format!("i-{n}"), "vswitch": "vsw"})
        }));
        ops.extend((0..n_havips).map(
            |n| serde_json::json!({"op": "create_havip", "id": format!("h{n}"), "vswitch": "vsw"}),
        ));
        serde_json::from_value(serde_json::Value::Array(ops)).unwrap()
    }

    #[test]
    fn group_commit_keeps_per_op_results() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Arc::new(ControlPlane::open(dir.path().join("s.redb")).unwrap());
        cp.apply_all(&setup_ops(8, 8)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let cp = Arc::clone(&cp);
                std::thread::spawn(move || {
                    let havip = format!("h{k}");
                    let member = Member::instance(format!("i-{k}"));
                    let associate = Op::AssociateHaVip(AssociateHaVip {
                        havip: havip.clone(),
                        member: member.clone(),
                    });
                    for _ in 0..25 {
                        cp.apply(associate.clone()).unwrap();
                        // A refusal in the same batch changes nothing.
                        let e = cp.apply(associate.clone()).unwrap_err();
                        assert_eq!(e.code(), "Conflict.AlreadyBound");
                        cp.apply(Op::UnassociateHaVip(UnassociateHaVip {
                            havip: havip.clone(),
                            member: member.clone(),
                            force: false,
                        }))
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = cp.snapshot();
        assert!(s.havips.values().all(|h| h.bindings.is_empty()));
        assert_eq!(cp.inner.lock().unwrap().store.load().unwrap(), s);
    }

    #[test]
    fn record_owners_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::open(dir.path().join("s.redb")).unwrap();
        cp.apply_all(&setup_ops(3, 1)).unwrap();
        let (dp, addrs) = cp.with_state(|s| {
            (
                s.vswitches["vsw"].dp_id,
                s.havips
                    .values()
                    .map(|h| h.address.octets())
                    .collect::<Vec<_>>(),
            )
        });
        let g = cp.generation();
        let owner = ObservedOwner {
            ifindex: 3,
            epoch: 2,
            ..Default::default()
        };
        let mut batch: Vec<(HavipKey, ObservedOwner)> = addrs
            .iter()
            .map(|a| {
                (
                    HavipKey {
                        vswitch_id: dp,
                        addr: *a,
                    },
                    owner,
                )
            })
            .collect();
        batch.push((
            HavipKey {
                vswitch_id: 99,
                addr: [1, 2, 3, 4],
            },
            owner,
        ));
        let mut events = cp.events();
        assert_eq!(cp.record_owners(&batch, OwnerTrigger::Claim).unwrap(), 3);
        assert_eq!(
            cp.record_owners(&batch, OwnerTrigger::Claim).unwrap(),
            0,
            "unchanged owners"
        );
        for _ in 0..3 {
            let e = events.try_recv().unwrap();
            assert!(
                matches!(e, Event::OwnerChanged(ref c) if c.epoch == 2),
                "{e:?}"
            );
        }
        assert!(
            events.try_recv().is_err(),
            "unchanged owners publish nothing"
        );
        let s = cp.snapshot();
        assert_eq!(s.history.len(), 3);
        assert!(s.history.values().all(|h| h.len() == 1
            && h[0].trigger == OwnerTrigger::Claim
            && h[0].time.ends_with('Z')));
        // Bounded: older entries are dropped in the same transaction.
        let key = batch[0].0;
        for epoch in 3..(3 + crate::model::HISTORY_LIMIT as u64 + 5) {
            let o = ObservedOwner { epoch, ..owner };
            cp.record_owners(&[(key, o)], OwnerTrigger::Claim).unwrap();
        }
        let id = cp.with_state(|s| {
            s.havips
                .values()
                .find(|h| h.address.octets() == key.addr)
                .map(|h| h.id.clone())
                .unwrap()
        });
        let h = cp.owner_history(&id).unwrap();
        assert_eq!(h.len(), crate::model::HISTORY_LIMIT);
        assert!(h.windows(2).all(|w| w[0].epoch + 1 == w[1].epoch));
        assert_eq!(
            h.last().unwrap().epoch,
            2 + crate::model::HISTORY_LIMIT as u64 + 5
        );
        assert_eq!(
            cp.inner.lock().unwrap().store.load().unwrap().history[&id],
            h
        );
        assert_eq!(cp.generation(), g, "owners do not trigger reconciles");
        assert!(cp
            .snapshot()
            .owners
            .values()
            .all(|o| o.ifindex == owner.ifindex));
    }
}
