//! Task: keep the local copy of the shared state equal to etcd.
//!
//! A snapshot of `<prefix>/` at revision H (records, hosts, owners), then a
//! watch from H + 1. Record events newer than the revision the in-memory
//! state is at are applied to it (this host's own commits are already
//! there: their events are skipped by revision); `seq` events move the
//! commit fence; host and owner events update [`Cluster`]. Any error (etcd
//! stopped, watch cancelled or compacted) starts over with a new snapshot
//! after a short pause; meanwhile the data plane keeps what it has.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use tracing::{info, warn};

use super::{
    monotonic_ns,
    notice::{FastOwner, Source},
    Cluster, HostRecord, SharedOwner,
};
use crate::model::{Change, Mutation, State};

/// Pause before a new snapshot after an error.
pub const RETRY: Duration = Duration::from_millis(300);

/// Runs forever (spawn it).
pub async fn run(c: Arc<Cluster>) {
    let mut failures = 0u32;
    loop {
        match once(&c).await {
            Ok(()) => failures = 0,
            Err(e) => {
                c.etcd.shared.connected.store(false, Ordering::Relaxed);
                if failures == 0 {
                    warn!(
                        error = format!("{e:#}"),
                        "etcd sync lost; forwarding continues with the last known state, retrying"
                    );
                }
                failures = failures.saturating_add(1);
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn host_id(c: &Cluster, key: &[u8]) -> Option<String> {
    let k = std::str::from_utf8(key).ok()?;
    k.strip_prefix(&c.etcd.hosts_prefix()).map(str::to_owned)
}

fn vtep_id(c: &Cluster, key: &[u8]) -> Option<String> {
    let k = std::str::from_utf8(key).ok()?;
    k.strip_prefix(&c.etcd.vteps_prefix()).map(str::to_owned)
}

fn owner_id(c: &Cluster, key: &[u8]) -> Option<String> {
    let k = std::str::from_utf8(key).ok()?;
    k.strip_prefix(&c.etcd.owners_prefix()).map(str::to_owned)
}

/// Snapshot then watch, until an error.
async fn once(c: &Arc<Cluster>) -> Result<()> {
    let mut client = c.etcd.client.clone();
    let prefix = c.etcd.all_prefix();
    let mut snap = tokio::time::timeout(
        c.etcd.timeout,
        client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await
    .context("snapshot timed out")??;
    let rev = snap
        .take_header()
        .map(|h| h.revision())
        .ok_or_else(|| anyhow!("no header"))?;
    c.etcd.shared.seen(rev);
    let (state, seq_rev) = c.etcd.state_from(snap.kvs())?;
    let count = c.etcd.count_records(snap.kvs());
    replace_state(c, state, rev, (seq_rev, count));
    let mut hosts = BTreeMap::new();
    let mut alive = BTreeSet::new();
    let mut owners = BTreeMap::new();
    for kv in snap.kvs() {
        if let Some(id) = vtep_id(c, kv.key()) {
            if let Ok(h) = serde_json::from_slice::<HostRecord>(kv.value()) {
                hosts.insert(id, h);
            }
        } else if let Some(id) = host_id(c, kv.key()) {
            alive.insert(id);
        } else if let Some(id) = owner_id(c, kv.key()) {
            if let Ok(o) = serde_json::from_slice::<SharedOwner>(kv.value()) {
                owners.insert(id, (o, kv.mod_revision()));
            }
        }
    }
    c.set_hosts(hosts);
    c.set_alive(alive);
    c.set_owners(owners);
    c.cp.poke();
    // Local claims made while etcd was away get published (the publisher
    // compares them with what is stored).
    c.publish.notify_one();
    info!(revision = rev, "in sync with etcd");

    let mut stream = client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1)
                    .with_progress_notify(),
            ),
        )
        .await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Err(anyhow!("watch cancelled: {}", resp.cancel_reason()));
        }
        if let Some(h) = resp.header() {
            c.etcd.shared.seen(h.revision());
        }
        apply_events(c, resp.events())?;
    }
    Err(anyhow!("watch stream ended"))
}

/// Replaces the records of the in-memory state (observed owners kept),
/// unless the state is already newer than the snapshot: a local commit that
/// landed between the snapshot's read and now (its events come again on the
/// watch from `rev + 1` and are skipped by revision); replacing would undo
/// it in memory while etcd has it.
fn replace_state(c: &Cluster, mut state: State, rev: i64, (seq_rev, count): (i64, i64)) {
    let sh = &c.etcd.shared;
    c.cp.apply_external(|s| {
        if sh.state_rev.load(Ordering::SeqCst) > rev {
            return false;
        }
        state.owners = std::mem::take(&mut s.owners)
            .into_iter()
            .filter(|(id, _)| state.havips.contains_key(id))
            .collect();
        state.reindex();
        sh.state_rev.store(rev, Ordering::SeqCst);
        sh.seq_rev.store(seq_rev, Ordering::SeqCst);
        sh.records.store(count, Ordering::SeqCst);
        let changed = *s != state;
        *s = state;
        changed
    });
}

fn apply_events(c: &Cluster, events: &[etcd_client::Event]) -> Result<()> {
    let seq_key = c.etcd.seq_key();
    // (revision, mutation, change of the record count).
    let mut records: Vec<(i64, Mutation, i64)> = Vec::new();
    let mut seq: Option<i64> = None;
    let mut owners_changed = false;
    for ev in events {
        let Some(kv) = ev.kv() else { continue };
        let put = ev.event_type() == EventType::Put;
        let rev = kv.mod_revision();
        if kv.key() == seq_key.as_bytes() {
            seq = Some(rev);
        } else if let Some(rk) = c.etcd.record_key(kv.key()) {
            let (m, count) = if put {
                let created = kv.create_revision() == kv.mod_revision();
                (
                    Mutation::Put(c.etcd.decode_record(kv.key(), kv.value())?),
                    i64::from(created),
                )
            } else {
                (Mutation::Delete(rk), -1)
            };
            records.push((rev, m, count));
        } else if let Some(id) = host_id(c, kv.key()) {
            c.update_alive(&id, put);
        } else if let Some(id) = vtep_id(c, kv.key()) {
            let rec = if put {
                serde_json::from_slice::<HostRecord>(kv.value()).ok()
            } else {
                None
            };
            c.update_host(&id, rec);
            owners_changed = true;
        } else if let Some(id) = owner_id(c, kv.key()) {
            let rec = owner_of(kv, put);
            if let Some((o, _)) = &rec {
                fast_path(c, &id, o);
            }
            c.update_owner(&id, rec);
            owners_changed = true;
        }
    }
    if !records.is_empty() || seq.is_some() {
        let sh = &c.etcd.shared;
        c.cp.apply_external(|s| {
            let at = sh.state_rev.load(Ordering::SeqCst);
            let newer: Vec<(Mutation, i64)> = records
                .into_iter()
                .filter(|(rev, _, _)| *rev > at)
                .map(|(_, m, n)| (m, n))
                .collect();
            match seq.filter(|r| *r > at) {
                Some(r) => {
                    sh.seq_rev.store(r, Ordering::SeqCst);
                    sh.state_rev.store(r, Ordering::SeqCst);
                }
                None => return false,
            }
            if newer.is_empty() {
                return false;
            }
            sh.records
                .fetch_add(newer.iter().map(|(_, n)| n).sum(), Ordering::SeqCst);
            s.apply_change(&Change {
                mutations: newer.into_iter().map(|(m, _)| m).collect(),
            });
            true
        });
    }
    if owners_changed {
        c.cp.poke();
    }
    Ok(())
}

/// A stored owner on another host goes to the reconciler at once (written
/// over a lower kernel epoch without waiting for a full pass; the pass
/// that follows settles ties). The failover bench reads `seen_ns`.
fn fast_path(c: &Cluster, havip: &str, o: &SharedOwner) {
    let seen_ns = monotonic_ns();
    info!(
        havip,
        host = o.host,
        epoch = o.epoch,
        seen_ns,
        "shared owner changed"
    );
    if o.host == c.local.id {
        return;
    }
    let hosts = c.hosts();
    let found =
        c.cp.with_state(|s| super::owners::remote_owner_of(s, &hosts, havip, o));
    if let Some((key, owner)) = found {
        c.install_fast(FastOwner {
            key,
            owner,
            source: Source::Etcd,
            seen_ns,
        });
    }
}

fn owner_of(kv: &KeyValue, put: bool) -> Option<(SharedOwner, i64)> {
    if !put {
        return None;
    }
    serde_json::from_slice::<SharedOwner>(kv.value())
        .ok()
        .map(|o| (o, kv.mod_revision()))
}
