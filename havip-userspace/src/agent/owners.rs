//! Tasks: the event consumer (owner changes and refused claims from the
//! kernel's ring buffer) and the owner recorder (durable writes, batched);
//! plus the adoption of kernel owners the store does not have.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use havip_common::{DropReason, HavipKey, OwnerEntry};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::{
    cluster::Cluster,
    control::ControlPlane,
    dataplane::{
        events::{self, DataplaneEvent},
        Dataplane,
    },
    mac::mac_string,
    model::{MacAddr, ObservedOwner},
};

/// Owner changes seen in the ring buffer and not yet written to the store.
pub type Pending = Arc<Mutex<HashMap<HavipKey, ObservedOwner>>>;

/// Starts the event consumer (if the ring buffer is still there) and the
/// owner recorder. Owner changes are recorded in batches: a flapping pair
/// cannot turn into one durable write per claim.
///
/// Multi-host (`cluster`): each local claim is also queued for publishing
/// at once (see `crate::cluster::owners`).
pub fn spawn(dp: &mut Dataplane, cp: &Arc<ControlPlane>, cluster: Option<Arc<Cluster>>) {
    let pending: Pending = Arc::default();
    let flush = Arc::new(Notify::new());
    if let Some(ring) = dp.maps.events.take() {
        let pending = pending.clone();
        let flush = flush.clone();
        tokio::spawn(async move {
            let result = events::consume(ring, |event| {
                if let (Some(c), DataplaneEvent::OwnerChanged(e)) = (&cluster, &event) {
                    let claim = c.cp.with_state(|s| {
                        crate::cluster::owners::local_claim(s, &c.local.id, e.key, e.mac, e.epoch)
                    });
                    if let Some((havip, owner)) = claim {
                        c.queue_publish(havip, owner);
                    }
                }
                on_event(event, &pending);
                flush.notify_one();
            })
            .await;
            if let Err(e) = result {
                error!(error = %e, "event consumer stopped");
            }
        });
    }
    tokio::spawn(record(cp.clone(), pending, flush));
}

/// The owner recorder: waits for a flush, lets a burst settle, writes it.
async fn record(cp: Arc<ControlPlane>, pending: Pending, flush: Arc<Notify>) {
    loop {
        flush.notified().await;
        // Coalesce a burst of claims into one durable write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let batch: Vec<_> = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        let cp = cp.clone();
        let written = tokio::task::spawn_blocking(move || cp.record_owners(&batch)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "recording owners failed; the resync retries"),
            Err(e) => error!(error = %e, "owner recorder panicked"),
        }
    }
}

fn observed(owner: &OwnerEntry) -> ObservedOwner {
    ObservedOwner {
        ifindex: owner.ifindex,
        mac: MacAddr(owner.mac),
        epoch: owner.epoch,
        changed_ns: owner.changed_ns,
    }
}

fn on_event(event: DataplaneEvent, pending: &Mutex<HashMap<HavipKey, ObservedOwner>>) {
    match event {
        DataplaneEvent::OwnerChanged(e) => {
            info!(
                havip = %std::net::Ipv4Addr::from(e.key.addr),
                vswitch = e.key.vswitch_id,
                epoch = e.epoch,
                owner_ifindex = e.ifindex,
                owner_mac = %mac_string(e.mac),
                previous_ifindex = e.prev_ifindex,
                previous_mac = %mac_string(e.prev_mac),
                "owner changed by ARP claim"
            );
            let owner = ObservedOwner {
                ifindex: e.ifindex,
                mac: MacAddr(e.mac),
                epoch: e.epoch,
                changed_ns: e.ts_ns,
            };
            let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = p.get(&e.key).is_none_or(|o| o.epoch <= owner.epoch);
            if newer {
                p.insert(e.key, owner);
            }
        }
        DataplaneEvent::ClaimRefused { event: e, reason } => {
            let reason = reason.map_or("unknown", DropReason::name);
            warn!(
                security = true,
                havip = %std::net::Ipv4Addr::from(e.key.addr),
                vswitch = e.key.vswitch_id,
                ifindex = e.ifindex,
                mac = %mac_string(e.mac),
                reason,
                suppressed_before = e.suppressed,
                "refused ARP claim"
            );
        }
        DataplaneEvent::Unknown(e) => debug!(kind = e.kind, "unknown event"),
    }
}

/// Records every owner the kernel holds whose epoch the store does not have
/// (at start and on each resync, which also covers events lost to a full
/// ring buffer). Owners switched while no agent ran are recorded, never
/// overwritten.
pub fn adopt(dp: &Dataplane, cp: &ControlPlane) {
    let owners: Vec<(HavipKey, OwnerEntry)> =
        dp.maps.owners.iter().filter_map(Result::ok).collect();
    let stale: Vec<(HavipKey, ObservedOwner)> = cp.with_state(|s| {
        owners
            .iter()
            .filter(|(key, owner)| {
                s.havip_by_key(key.vswitch_id, std::net::Ipv4Addr::from(key.addr))
                    .is_some_and(|h| s.owners.get(&h.id).map(|o| o.epoch) != Some(owner.epoch))
            })
            .map(|(key, owner)| (*key, observed(owner)))
            .collect()
    });
    if stale.is_empty() {
        return;
    }
    match cp.record_owners(&stale) {
        Ok(n) => info!(recorded = n, "owners adopted from the kernel"),
        Err(e) => warn!(error = %e, "recording kernel owners failed; will retry"),
    }
}
