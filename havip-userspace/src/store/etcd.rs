//! The etcd backend of [`Store`]: the state shared by every host's agent.
//!
//! # Keys (under the configured prefix, e.g. `/havip`)
//! - `<prefix>/r/<kind>/<id>`: one record, its JSON as in the redb store
//!   ([`RecordKey::encode`]);
//! - `<prefix>/seq`: the commit fence, written by every commit;
//! - `<prefix>/owners/<havip>`: the fenced owner of a HaVip (see
//!   `crate::cluster`), never written by [`Store::commit_all`] except to
//!   delete it with its HaVip;
//! - `<prefix>/hosts/<host>`: host registrations (lease-bound: liveness);
//! - `<prefix>/vteps/<host>`: the host's VTEP address and underlay MAC
//!   (permanent: other hosts keep tunnelling to a host whose agent is down,
//!   its pinned data plane still forwards).
//!
//! # Serialised commits
//! The control plane validates an operation against its in-memory state,
//! which reflects the store at the revision where `seq` was last written
//! ([`EtcdShared::seq_rev`]). A commit is one etcd txn: `if
//! mod_revision(seq) == seq_rev then put/delete the records and put seq`.
//! Another host's commit in between changed `seq`, the txn fails, and the
//! control plane catches up (from what the failed txn read: the records
//! changed since, [`Store::catch_up`]; the whole state when records were
//! deleted), re-validates and retries ([`StoreError::Conflict`]). So every commit was validated against the
//! state it replaces: no lost update, quotas hold across hosts.
//!
//! # Fair turns after a conflict
//! A host committing back to back could win every race and starve
//! another. So a host that lost twice in a row puts `<prefix>/turn` = its id (if absent, under a lease of
//! [`TURN_TTL_S`] seconds): while it is there, every other host's commit
//! also requires `turn` to be absent and fails, and the turn's holder
//! commits next (requiring `turn` = its id, and deleting it in the same
//! txn). A holder that dies frees the turn when its lease expires. While
//! another host holds it (a lost txn reads `turn`), this host only retries
//! after a short pause.
//!
//! Observed owners (`Record::Owner`: the kernel's owner with a host-local
//! ifindex) are host-local: they are not written to etcd.
//!
//! # Blocking
//! The [`Store`] trait is blocking; etcd-client is async. The store owns a
//! small runtime of its own: each call is spawned there and waited for on a
//! std channel, so it works from any thread (the control plane's callers
//! run in `spawn_blocking`) and never needs the caller's runtime.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::{decode, encode_keyed, EtcdConfig, Store, StoreError};
use crate::model::{Change, Mutation, Record, RecordKey, RecordKind, State};

/// Revisions the in-memory state is at, shared by the store (commits) and
/// the watcher (other hosts' commits). Both change them only under the
/// control plane's state lock.
#[derive(Debug, Default)]
pub struct EtcdShared {
    /// etcd revision the in-memory records reflect.
    pub state_rev: AtomicI64,
    /// `mod_revision` of `seq` in that state (0: never written).
    pub seq_rev: AtomicI64,
    /// Highest revision seen from etcd (any key).
    pub last_rev: AtomicI64,
    /// The last etcd call or the watch stream succeeded.
    pub connected: AtomicBool,
    /// Records (`<prefix>/r/` keys) in etcd at `state_rev`: a lost commit
    /// catches up from what changed only when no record was deleted
    /// meanwhile, which this count proves ([`EtcdStore`]'s `catch_up`).
    pub records: AtomicI64,
    /// Whole-state loads, and lost commits caught up without one.
    pub loads: AtomicU64,
    pub catch_ups: AtomicU64,
}

impl EtcdShared {
    /// Notes a revision seen from etcd.
    pub fn seen(&self, rev: i64) {
        self.last_rev.fetch_max(rev, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
    }
}

/// What the cluster side needs of the store: a client, the key layout,
/// the shared revisions and the runtime etcd calls run on.
#[derive(Clone)]
pub struct EtcdHandle {
    pub client: Client,
    pub prefix: String,
    pub shared: Arc<EtcdShared>,
    pub runtime: tokio::runtime::Handle,
    pub timeout: Duration,
}

impl std::fmt::Debug for EtcdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHandle")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The deployment's key layout under its prefix: one `EtcdHandle` method
/// per key or key prefix, `<prefix>/<rest>`.
macro_rules! keys {
    ($($(#[$doc:meta])* $name:ident => $rest:literal,)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> String {
            format!(concat!("{}/", $rest), self.prefix)
        }
    )*};
}

impl EtcdHandle {
    keys! {
        /// `<prefix>/r/`: every record.
        records_prefix => "r/",
        seq_key => "seq",
        owners_prefix => "owners/",
        hosts_prefix => "hosts/",
        /// `<prefix>/vteps/`: permanent VTEP records (a host's VTEP stays
        /// known while its agent is down).
        vteps_prefix => "vteps/",
        /// `<prefix>/`: everything of this deployment.
        all_prefix => "",
    }

    /// Runs `f` on the store's runtime with the request timeout and waits
    /// for it from any thread (blocking).
    ///
    /// # Errors
    /// etcd's error, a timeout, or the runtime gone.
    pub fn block_on<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        self.runtime.spawn(async move {
            let r = tokio::time::timeout(timeout, f).await;
            let _ = tx.send(r);
        });
        let r = match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(backend(e)),
            Ok(Err(_)) => Err(backend(format!("etcd request timed out after {timeout:?}"))),
            Err(_) => Err(backend("etcd runtime stopped")),
        };
        self.shared
            .connected
            .store(r.is_ok(), std::sync::atomic::Ordering::Relaxed);
        r
    }

    /// Decodes the record at etcd key `key` (under [`Self::records_prefix`]).
    ///
    /// # Errors
    /// Unknown key or undecodable JSON.
    pub fn decode_record(&self, key: &[u8], value: &[u8]) -> Result<Record, StoreError> {
        let key = String::from_utf8_lossy(key);
        let rest = key
            .strip_prefix(&self.records_prefix())
            .ok_or_else(|| StoreError::UnknownKey(key.to_string()))?;
        let rk = RecordKey::decode(rest).ok_or_else(|| StoreError::UnknownKey(key.to_string()))?;
        decode(&rk, value).map_err(|source| StoreError::Corrupt {
            key: key.to_string(),
            source,
        })
    }

    /// The record key of etcd key `key`, if it is a record.
    pub fn record_key(&self, key: &[u8]) -> Option<RecordKey> {
        let key = std::str::from_utf8(key).ok()?;
        RecordKey::decode(key.strip_prefix(&self.records_prefix())?)
    }

    /// How many of `kvs` are records.
    pub fn count_records(&self, kvs: &[KeyValue]) -> i64 {
        let p = self.records_prefix();
        kvs.iter()
            .filter(|kv| kv.key().starts_with(p.as_bytes()))
            .count() as i64
    }

    /// Builds the state from a snapshot of `<prefix>/` (records only).
    ///
    /// # Errors
    /// As [`Self::decode_record`].
    pub fn state_from(&self, kvs: &[KeyValue]) -> Result<(State, i64), StoreError> {
        let records_prefix = self.records_prefix();
        let seq = self.seq_key();
        let mut records = Vec::new();
        let mut seq_rev = 0;
        for kv in kvs {
            if kv.key() == seq.as_bytes() {
                seq_rev = kv.mod_revision();
            } else if kv.key().starts_with(records_prefix.as_bytes()) {
                records.push(self.decode_record(kv.key(), kv.value())?);
            }
        }
        Ok((State::from_records(records), seq_rev))
    }
}

pub(super) fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Backend(e.into())
}

/// Lease of a commit turn (etcd's minimum is about 2 s by default).
pub const TURN_TTL_S: i64 = 2;
/// Lost commits in a row before a store asks for the turn (the first loss
/// only catches up and retries: the turn costs two more raft writes).
const LOSSES_BEFORE_TURN: u32 = 2;
/// A turn lease is reused this long after its grant (half its TTL), so
/// taking the turn is one raft write, not two.
const TURN_LEASE_REUSE: Duration = Duration::from_secs(1);
/// Pause before a retry while another host holds the turn.
const TURN_HELD_PAUSE: Duration = Duration::from_micros(500);

/// What a lost commit read in the same txn: every record changed since
/// the state's revision, and the record count, at `rev`.
struct Delta {
    /// The state's revision the commit compared with.
    base: i64,
    rev: i64,
    seq_rev: i64,
    count: i64,
    changed: Vec<KeyValue>,
}

/// The etcd store. See the module docs.
pub struct EtcdStore {
    handle: EtcdHandle,
    /// This store's id in `turn` (unique per process and connection).
    id: String,
    /// Whether this store holds the commit turn.
    holds_turn: Mutex<bool>,
    /// Commits lost in a row.
    losses: Mutex<u32>,
    /// The last turn lease granted, with when (see [`TURN_LEASE_REUSE`]).
    turn_lease: Mutex<Option<(i64, Instant)>>,
    /// etcd's `--max-txn-ops` (config).
    max_txn_ops: usize,
    /// What the last lost commit read (see [`Store::catch_up`]).
    delta: Mutex<Option<Delta>>,
    /// Owned runtime; shut down in the background on drop (dropping a
    /// runtime inside another one's async context would panic).
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.handle.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl EtcdStore {
    /// Connects to etcd (lazily: an etcd that is down now is retried on
    /// each call). The first [`Store::load`] needs etcd up.
    ///
    /// # Errors
    /// No endpoint, a bad prefix, or the runtime cannot start.
    pub fn connect(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        if cfg.endpoints.is_empty() {
            return Err(backend("[agent.etcd] endpoints is empty"));
        }
        if !cfg.prefix.starts_with('/') || cfg.prefix.ends_with('/') {
            return Err(backend(format!(
                "[agent.etcd] prefix {:?} must start with '/' and not end with '/'",
                cfg.prefix
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("havip-etcd")
            .enable_all()
            .build()
            .map_err(backend)?;
        let timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
        let endpoints = cfg.endpoints.clone();
        let opts = cfg.connect_options()?;
        let client = runtime
            .block_on(Client::connect(endpoints, Some(opts)))
            .map_err(backend)?;
        let handle = EtcdHandle {
            client,
            prefix: cfg.prefix.clone(),
            shared: Arc::default(),
            runtime: runtime.handle().clone(),
            timeout,
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            handle,
            id: format!("{}-{nanos:x}", std::process::id()),
            max_txn_ops: cfg.max_txn_ops.max(3),
            holds_turn: Mutex::new(false),
            turn_lease: Mutex::new(None),
            losses: Mutex::new(0),
            delta: Mutex::new(None),
            runtime: Some(runtime),
        })
    }

    /// What the cluster side (watcher, registry, owners) uses.
    pub fn handle(&self) -> EtcdHandle {
        self.handle.clone()
    }

    fn turn_key(&self) -> String {
        format!("{}/turn", self.handle.prefix)
    }

    /// After a lost commit: takes the turn if nobody holds it; true also
    /// when this store holds it already. Errors count as not taken (the
    /// turn is an aid to fairness, not to safety: the `seq` fence is).
    fn take_turn(&self) -> bool {
        let h = &self.handle;
        let (key, id) = (self.turn_key(), self.id.clone());
        let mut client = h.client.clone();
        let mut cached = self.turn_lease.lock().unwrap_or_else(|p| p.into_inner());
        let reuse = cached
            .filter(|(_, at)| at.elapsed() < TURN_LEASE_REUSE)
            .map(|(lease, _)| lease);
        let granted = h.block_on(async move {
            let lease = match reuse {
                Some(l) => l,
                None => client.lease_grant(TURN_TTL_S, None).await?.id(),
            };
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    id.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key, None)]);
            let resp = client.txn(txn).await?;
            if resp.succeeded() {
                return Ok((lease, true));
            }
            let mine = resp.op_responses().into_iter().any(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().iter().any(|kv| kv.value() == id.as_bytes()),
                _ => false,
            });
            Ok::<_, etcd_client::Error>((lease, mine))
        });
        match granted {
            Ok((lease, taken)) => {
                if reuse != Some(lease) {
                    *cached = Some((lease, Instant::now()));
                }
                taken
            }
            // An expired lease (or any error): grant a new one next time.
            Err(_) => {
                *cached = None;
                false
            }
        }
    }

    /// Gives the turn back (a batch that ended with nothing to write, or
    /// a failed commit); best effort, its lease frees it anyway.
    fn release_turn(&self) {
        let h = &self.handle;
        let (key, id) = (self.turn_key(), self.id.clone());
        let mut client = h.client.clone();
        let _ = h.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(key.clone(), CompareOp::Equal, id)])
                .and_then([TxnOp::delete(key, None)]);
            client.txn(txn).await
        });
    }
}

impl Store for EtcdStore {
    fn shared(&self) -> bool {
        true
    }

    /// Reads every record at one revision; the state is then at that
    /// revision ([`EtcdShared`]).
    fn load(&self) -> Result<State, StoreError> {
        let mut client = self.handle.client.clone();
        let prefix = self.handle.all_prefix();
        let mut resp = self.handle.block_on(async move {
            client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
        })?;
        let rev = resp.take_header().map_or(0, |h| h.revision());
        let (state, seq_rev) = self.handle.state_from(resp.kvs())?;
        let sh = &self.handle.shared;
        sh.state_rev.store(rev, Ordering::SeqCst);
        sh.seq_rev.store(seq_rev, Ordering::SeqCst);
        sh.records
            .store(self.handle.count_records(resp.kvs()), Ordering::SeqCst);
        sh.loads.fetch_add(1, Ordering::Relaxed);
        sh.seen(rev);
        Ok(state)
    }

    /// After a lost commit: applies what the failed txn read (the records
    /// changed since the state's revision) instead of a full reload. Not
    /// possible (false) when records were deleted meanwhile (a delete
    /// leaves no key to read: the count tells), when the state moved since
    /// the commit, or a record does not decode.
    fn catch_up(&self, state: &mut State) -> bool {
        let Some(d) = self.delta.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return false;
        };
        let sh = &self.handle.shared;
        if d.base != sh.state_rev.load(Ordering::SeqCst) {
            return false;
        }
        let created = d
            .changed
            .iter()
            .filter(|kv| kv.create_revision() > d.base)
            .count() as i64;
        if sh.records.load(Ordering::SeqCst) + created != d.count {
            return false;
        }
        let mut mutations = Vec::with_capacity(d.changed.len());
        for kv in &d.changed {
            match self.handle.decode_record(kv.key(), kv.value()) {
                Ok(r) => mutations.push(Mutation::Put(r)),
                Err(_) => return false,
            }
        }
        state.apply_change(&Change { mutations });
        sh.state_rev.store(d.rev, Ordering::SeqCst);
        sh.seq_rev.store(d.seq_rev, Ordering::SeqCst);
        sh.records.store(d.count, Ordering::SeqCst);
        sh.catch_ups.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One txn guarded by `seq` (see the module docs).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another commit came first; etcd errors
    /// (then nothing was written, or, on a timeout, the outcome is unknown
    /// until the watch shows it).
    fn commit_all(&self, changes: &[Change]) -> Result<(), StoreError> {
        let h = &self.handle;
        // etcd refuses a txn naming one key twice: the last write wins.
        let mut writes: std::collections::BTreeMap<String, Option<Vec<u8>>> =
            std::collections::BTreeMap::new();
        for m in changes.iter().flat_map(|c| &c.mutations) {
            match m {
                Mutation::Put(Record::Owner { .. }) => {}
                Mutation::Put(r) => {
                    let (key, bytes) = encode_keyed(r)?;
                    writes.insert(format!("{}{key}", h.records_prefix()), Some(bytes));
                }
                Mutation::Delete(k) if k.kind == RecordKind::Owner => {
                    writes.insert(format!("{}{}", h.owners_prefix(), k.id), None);
                }
                Mutation::Delete(k) => {
                    writes.insert(format!("{}{}", h.records_prefix(), k.encode()), None);
                }
            }
        }
        // Which writes are records (an owner key is not): for the count.
        let records_prefix = h.records_prefix();
        let is_record: Vec<bool> = writes
            .keys()
            .map(|k| k.starts_with(&records_prefix))
            .collect();
        let mut ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|(k, v)| match v {
                // The previous key tells a create from an update (count).
                Some(v) => TxnOp::put(k, v, Some(PutOptions::new().with_prev_key())),
                None => TxnOp::delete(k, None),
            })
            .collect();
        let mut holds_turn = self.holds_turn.lock().unwrap_or_else(|p| p.into_inner());
        if ops.is_empty() {
            if std::mem::take(&mut *holds_turn) {
                self.release_turn();
            }
            return Ok(());
        }
        // The writes, `seq`, and the turn's delete: refused whole rather
        // than split (several txns would not be one atomic, fenced commit).
        if ops.len() + 2 > self.max_txn_ops {
            if std::mem::take(&mut *holds_turn) {
                self.release_turn();
            }
            return Err(StoreError::TooLarge {
                writes: ops.len(),
                limit: self.max_txn_ops,
            });
        }
        let seq = h.seq_key();
        let seq_rev = h.shared.seq_rev.load(Ordering::SeqCst);
        ops.push(TxnOp::put(seq.clone(), Vec::new(), None));
        let turn = self.turn_key();
        let turn_compare = if *holds_turn {
            ops.push(TxnOp::delete(turn.clone(), None));
            Compare::value(turn, CompareOp::Equal, self.id.clone())
        } else {
            Compare::create_revision(turn, CompareOp::Equal, 0)
        };
        // A lost commit reads, at the same revision, what it needs to
        // catch up: the records changed since the state's revision, their
        // count, and `seq`.
        let base = h.shared.state_rev.load(Ordering::SeqCst);
        let records = records_prefix;
        let txn = Txn::new()
            .when([
                Compare::mod_revision(seq.clone(), CompareOp::Equal, seq_rev),
                turn_compare,
            ])
            .and_then(ops)
            .or_else([
                TxnOp::get(
                    records.clone(),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_min_mod_revision(base + 1),
                    ),
                ),
                TxnOp::get(
                    records,
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
                TxnOp::get(seq, None),
                TxnOp::get(self.turn_key(), None),
            ]);
        let mut client = h.client.clone();
        let mut resp = match h.block_on(async move { client.txn(txn).await }) {
            Ok(resp) => resp,
            Err(e) => {
                if std::mem::take(&mut *holds_turn) {
                    self.release_turn();
                }
                return Err(e);
            }
        };
        let rev = resp.take_header().map_or(0, |x| x.revision());
        h.shared.seen(rev);
        let mut losses = self.losses.lock().unwrap_or_else(|p| p.into_inner());
        if !resp.succeeded() {
            let (d, turn) = delta(base, rev, &resp).unzip();
            *self.delta.lock().unwrap_or_else(|p| p.into_inner()) = d;
            // Lost to another host (or to the turn's holder): after a
            // second loss in a row ask for the turn, so the retry is not
            // overtaken again. A holder whose turn expired (lease) takes it
            // again here. While another host holds it, nothing is asked
            // (that would cost a raft write for nothing): its commit comes
            // first, this one retries shortly after.
            *losses = losses.saturating_add(1);
            match turn.flatten() {
                Some(holder) if holder != self.id.as_bytes() => {
                    *holds_turn = false;
                    std::thread::sleep(TURN_HELD_PAUSE);
                }
                _ if *holds_turn || *losses >= LOSSES_BEFORE_TURN => {
                    *holds_turn = self.take_turn();
                }
                _ => {}
            }
            return Err(StoreError::Conflict);
        }
        *losses = 0;
        *holds_turn = false;
        let (created, deleted) = resp
            .op_responses()
            .into_iter()
            .zip(is_record)
            .filter(|(_, record)| *record)
            .fold((0, 0), |(c, d), (r, _)| match r {
                TxnOpResponse::Put(p) if p.prev_key().is_none() => (c + 1, d),
                TxnOpResponse::Delete(x) => (c, d + x.deleted()),
                _ => (c, d),
            });
        h.shared
            .records
            .fetch_add(created - deleted, Ordering::SeqCst);
        // The state was at seq_rev and nothing else was committed since:
        // with this change it is at `rev`.
        h.shared.seq_rev.store(rev, Ordering::SeqCst);
        h.shared.state_rev.store(rev, Ordering::SeqCst);
        Ok(())
    }
}

/// The [`Delta`] a failed commit's txn read, and who held the commit turn
/// (its id, if anyone); `None` if a read is missing.
fn delta(base: i64, rev: i64, resp: &etcd_client::TxnResponse) -> Option<(Delta, Option<Vec<u8>>)> {
    let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g),
        _ => None,
    });
    let (changed, count, seq, turn) = (gets.next()?, gets.next()?, gets.next()?, gets.next()?);
    let delta = Delta {
        base,
        rev,
        seq_rev: seq.kvs().first().map_or(0, KeyValue::mod_revision),
        count: count.count(),
        changed: changed.kvs().to_vec(),
    };
    Some((delta, turn.kvs().first().map(|kv| kv.value().to_vec())))
}
