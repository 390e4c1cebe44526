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
pub fn spawn(dp: &mut Dataplane, cp: &Arc<ControlPlane>) {
    let pending: Pending = Arc::default();
    let flush = Arc::new(Notify::new());
    if let Some(ring) = dp.maps.events.take() {
        let pending = pending.clone();
        let flush = flush.clone();
        tokio::spawn(async move {
            let result = events::consume(ring, |event| {
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
            super::metrics::owner_changed();
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
            // Same epoch: the later event wins here; if two CPUs raced, the
            // map may hold the other one, and the resync's whole-owner
            // comparison ([`adopt`]) puts the store right.
            let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = p.get(&e.key).is_none_or(|o| o.epoch <= owner.epoch);
            if newer {
                p.insert(e.key, owner);
            }
        }
        DataplaneEvent::ClaimRefused { event: e, reason } => {
            let reason = reason.map_or("unknown", DropReason::name);
            super::metrics::claim_refused(reason);
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

/// Same owner: epoch, port and MAC (the timestamp is not compared).
fn same_owner(a: &ObservedOwner, b: &ObservedOwner) -> bool {
    a.epoch == b.epoch && a.ifindex == b.ifindex && a.mac == b.mac
}

/// Records every owner the kernel holds that the store does not have, the
/// whole owner compared (epoch, port, MAC), at start and on each resync.
/// This is what makes the store converge to the kernel's truth: events
/// can be lost to a full ring buffer, and two claims for one HaVip on two
/// CPUs at once both write epoch e + 1, so the last event read need not
/// name the member the map holds. Owners switched while no agent ran are
/// recorded, never overwritten. The durable write runs off the async
/// threads.
pub async fn adopt(dp: &Dataplane, cp: &Arc<ControlPlane>) {
    let owners: Vec<(HavipKey, OwnerEntry)> =
        dp.maps.owners.iter().filter_map(Result::ok).collect();
    let stale: Vec<(HavipKey, ObservedOwner)> = cp.with_state(|s| {
        owners
            .iter()
            .map(|(key, owner)| (*key, observed(owner)))
            .filter(|(key, owner)| {
                s.havip_by_key(key.vswitch_id, std::net::Ipv4Addr::from(key.addr))
                    .is_some_and(|h| !s.owners.get(&h.id).is_some_and(|o| same_owner(o, owner)))
            })
            .collect()
    });
    if stale.is_empty() {
        return;
    }
    let cp = cp.clone();
    match tokio::task::spawn_blocking(move || cp.record_owners(&stale)).await {
        Ok(Ok(n)) => info!(recorded = n, "owners adopted from the kernel"),
        Ok(Err(e)) => warn!(error = %e, "recording kernel owners failed; will retry"),
        Err(e) => error!(error = %e, "recording kernel owners panicked; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_epoch_other_member_is_a_different_owner() {
        let a = ObservedOwner {
            ifindex: 3,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            epoch: 7,
            changed_ns: 1,
        };
        let b = ObservedOwner {
            ifindex: 4,
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            ..a
        };
        assert!(!same_owner(&a, &b));
        assert!(!same_owner(&a, &ObservedOwner { ifindex: 4, ..a }));
        assert!(!same_owner(&a, &ObservedOwner { mac: b.mac, ..a }));
        assert!(same_owner(&a, &ObservedOwner { changed_ns: 9, ..a }));
    }
}
