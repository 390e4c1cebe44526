//! Tasks: the event consumer (owner changes and refused claims from the
//! kernel's ring buffer) and the owner recorder (durable writes, batched,
//! each owner re-read from its owner word at flush time); plus the adoption of
//! kernel owners the store does not have.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use aya::maps::MapError;
use havip_common::{DropReason, HavipKey, OwnerEntry};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::{
    cluster::Cluster,
    control::{
        history::{self, Event},
        ControlPlane,
    },
    dataplane::{
        events::{self, DataplaneEvent},
        Dataplane,
    },
    mac::mac_string,
    model::{MacAddr, ObservedOwner, OwnerTrigger},
};

/// Owner changes not yet written to the store.
type Pending = Arc<Mutex<Queue>>;

/// The recorder's queue: the latest owner per HaVip with what found it,
/// and adoptions a later claim replaced (written first, so the history
/// keeps the owner the claim took over from).
#[derive(Default)]
struct Queue {
    latest: HashMap<HavipKey, Queued>,
    earlier: Vec<(HavipKey, ObservedOwner)>,
}

impl Queue {
    /// Queues a claim read from the ring buffer, unless a newer owner is
    /// queued.
    fn claim(&mut self, key: HavipKey, owner: ObservedOwner) {
        match self.latest.get(&key) {
            Some(q) if q.owner.epoch > owner.epoch => return,
            Some(q) if q.trigger == OwnerTrigger::Adoption && q.owner.epoch < owner.epoch => {
                self.earlier.push((key, q.owner));
            }
            _ => {}
        }
        self.latest.insert(
            key,
            Queued {
                owner,
                trigger: OwnerTrigger::Claim,
            },
        );
    }
}

/// An owner waiting for the recorder.
#[derive(Clone, Copy, Debug)]
struct Queued {
    owner: ObservedOwner,
    trigger: OwnerTrigger,
}

/// The owner recorder's queue: once it runs, every owner write goes
/// through it, so an adoption pass cannot record a claim whose event is
/// still in the ring buffer or in the recorder's batch under `adoption`
/// (the event, read within a millisecond, replaces the queued adoption).
#[derive(Clone)]
pub struct Recorder {
    pending: Pending,
    flush: Arc<Notify>,
}

impl Recorder {
    /// Queues kernel owners the store lacks as adoptions, unless an event
    /// already queued them.
    fn queue_adoptions(&self, owners: Vec<(HavipKey, ObservedOwner)>) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, owner) in owners {
            p.latest.entry(key).or_insert(Queued {
                owner,
                trigger: OwnerTrigger::Adoption,
            });
        }
        drop(p);
        self.flush.notify_one();
    }
}

/// The recorder's own handle on the owner words (the same mapped table
/// as the reconciler's; reads only).
type Owners = crate::dataplane::table::OwnerMap;

fn open_owners(dp: &Dataplane) -> Result<Owners, MapError> {
    Ok(dp.maps.owners.clone())
}

/// Starts the event consumer (if the ring buffer is still there) and the
/// owner recorder. Owner changes are recorded in batches: a flapping pair
/// cannot turn into one durable write per claim.
///
/// Multi-host (`cluster`): each local claim is sent to the other hosts as
/// a direct notice and queued for publishing at once (see
/// `crate::cluster::notice` and `crate::cluster::owners`).
pub fn spawn(
    dp: &mut Dataplane,
    cp: &Arc<ControlPlane>,
    cluster: Option<Arc<Cluster>>,
) -> Recorder {
    let pending: Pending = Arc::default();
    let flush = Arc::new(Notify::new());
    let recorder = Recorder {
        pending: pending.clone(),
        flush: flush.clone(),
    };
    if let Some(ring) = dp.maps.events.take() {
        let pending = pending.clone();
        let flush = flush.clone();
        let cp = cp.clone();
        tokio::spawn(async move {
            let result = events::consume(ring, |event| {
                if let DataplaneEvent::ClaimRefused { event: e, reason } = &event {
                    cp.publish(Event::ClaimRefused {
                        time: history::now_rfc3339(),
                        address: std::net::Ipv4Addr::from(e.key.addr).to_string(),
                        vswitch: e.key.vswitch_id,
                        ifindex: e.ifindex,
                        mac: mac_string(e.mac).to_string(),
                        reason: reason.map_or("unknown", DropReason::name).to_owned(),
                    });
                }
                if let (Some(c), DataplaneEvent::OwnerChanged(e)) = (&cluster, &event) {
                    let claim = c.cp.with_state(|s| {
                        crate::cluster::owners::local_claim(s, &c.local.id, e.key, e.mac, e.epoch)
                    });
                    if let Some((havip, owner)) = claim {
                        c.notify_peers(&havip, &owner);
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
    let owners = open_owners(dp)
        .inspect_err(|e| {
            warn!(error = %e, "opening the owner table for the recorder failed; recording events as read")
        })
        .ok();
    tokio::spawn(record(cp.clone(), pending, flush, owners));
    recorder
}

/// The owner recorder: waits for a flush, lets a burst settle, re-reads
/// each owner from the kernel, writes them.
async fn record(
    cp: Arc<ControlPlane>,
    pending: Pending,
    flush: Arc<Notify>,
    owners: Option<Owners>,
) {
    loop {
        flush.notified().await;
        // Coalesce a burst of claims into one durable write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Queue { latest, earlier } =
            std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
        let of = |trigger| {
            latest
                .iter()
                .filter(move |(_, q)| q.trigger == trigger)
                .map(|(key, q)| (*key, q.owner))
        };
        // Adoptions first, as seen (their epochs are below any claim's of
        // the same HaVip); then claims, each re-read from the kernel.
        let adoptions: Vec<_> = earlier
            .into_iter()
            .chain(of(OwnerTrigger::Adoption))
            .collect();
        if !adoptions.is_empty() {
            write(&cp, adoptions, OwnerTrigger::Adoption).await;
        }
        let claims: Vec<_> = of(OwnerTrigger::Claim).collect();
        if !claims.is_empty() {
            let batch = match &owners {
                Some(map) => kernel_truth(claims, |key| match map.get(key, 0) {
                    Ok(o) => Some(o),
                    Err(MapError::KeyNotFound) => None,
                    Err(e) => {
                        warn!(error = %e, "re-reading the owner word failed; recording the event");
                        None
                    }
                }),
                None => claims,
            };
            write(&cp, batch, OwnerTrigger::Claim).await;
        }
    }
}

/// Records `batch` off the async threads.
async fn write(
    cp: &Arc<ControlPlane>,
    batch: Vec<(HavipKey, ObservedOwner)>,
    trigger: OwnerTrigger,
) {
    let cp = cp.clone();
    match tokio::task::spawn_blocking(move || cp.record_owners(&batch, trigger)).await {
        Ok(Ok(n)) if trigger == OwnerTrigger::Adoption && n > 0 => {
            info!(recorded = n, "owners adopted from the kernel");
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(error = %e, "recording owners failed; the resync retries"),
        Err(e) => error!(error = %e, "owner recorder panicked; the resync retries"),
    }
}

/// The batch as the kernel holds it now: each owner replaced by its
/// owner word (epoch, port, MAC), read at flush time. Two claims
/// for one HaVip on two CPUs both write epoch e + 1 and the event read
/// last need not name the member the map holds; a claim can also have been
/// overwritten since its event. The store records the map, never an event
/// the map contradicts. Keys whose entry is gone (HaVip deleted) keep the
/// event; the store ignores HaVips it no longer has.
fn kernel_truth(
    batch: Vec<(HavipKey, ObservedOwner)>,
    read: impl Fn(&HavipKey) -> Option<OwnerEntry>,
) -> Vec<(HavipKey, ObservedOwner)> {
    batch
        .into_iter()
        .map(|(key, event)| (key, read(&key).map_or(event, |o| observed(&o))))
        .collect()
}

fn observed(owner: &OwnerEntry) -> ObservedOwner {
    ObservedOwner {
        ifindex: owner.ifindex,
        mac: MacAddr(owner.mac),
        epoch: owner.epoch,
        changed_ns: owner.changed_ns,
    }
}

fn on_event(event: DataplaneEvent, pending: &Mutex<Queue>) {
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
                claim_ns = e.ts_ns,
                read_ns = crate::cluster::monotonic_ns(),
                "owner changed by ARP claim"
            );
            let owner = ObservedOwner {
                ifindex: e.ifindex,
                mac: MacAddr(e.mac),
                epoch: e.epoch,
                changed_ns: e.ts_ns,
            };
            // Same epoch: the later event wins here; if two CPUs raced, the
            // map may hold the other one: the flush records the map's entry
            // ([`kernel_truth`]), not this event.
            pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .claim(e.key, owner);
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
/// recorded, never overwritten. Before the recorder runs (agent start) the
/// owners are written here, off the async threads; after, they are queued
/// to it ([`Recorder`]).
pub async fn adopt(dp: &Dataplane, cp: &Arc<ControlPlane>, recorder: Option<&Recorder>) {
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
    match recorder {
        Some(r) => r.queue_adoptions(stale),
        None => write(cp, stale, OwnerTrigger::Adoption).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HaVip `10.0.1.<last>` in vSwitch 1.
    fn key(last: u8) -> HavipKey {
        HavipKey {
            vswitch_id: 1,
            addr: [10, 0, 1, last],
        }
    }

    /// Member `ifindex` with MAC `02:00:00:00:00:<mac>` at `epoch`.
    fn owner(ifindex: u32, mac: u8, epoch: u64, changed_ns: u64) -> ObservedOwner {
        ObservedOwner {
            ifindex,
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            epoch,
            changed_ns,
        }
    }

    #[test]
    fn same_epoch_other_member_is_a_different_owner() {
        let a = owner(3, 1, 7, 1);
        let b = owner(4, 2, 7, 1);
        assert!(!same_owner(&a, &b));
        assert!(!same_owner(&a, &ObservedOwner { ifindex: 4, ..a }));
        assert!(!same_owner(&a, &ObservedOwner { mac: b.mac, ..a }));
        assert!(same_owner(&a, &ObservedOwner { changed_ns: 9, ..a }));
    }

    #[test]
    fn a_claim_keeps_the_adoption_it_replaces_and_never_an_older_claim() {
        let key = key(100);
        let at = |epoch, ifindex| owner(ifindex, ifindex as u8, epoch, epoch);
        let mut q = Queue::default();
        // The reconciler installed an initial owner (epoch 1), then a claim
        // (epoch 2) came before the recorder flushed: both are written.
        q.latest.insert(
            key,
            Queued {
                owner: at(1, 3),
                trigger: OwnerTrigger::Adoption,
            },
        );
        q.claim(key, at(2, 4));
        assert_eq!(q.earlier, vec![(key, at(1, 3))]);
        assert_eq!(q.latest[&key].trigger, OwnerTrigger::Claim);
        // A late event of an older epoch changes nothing.
        q.claim(key, at(1, 5));
        assert_eq!(q.latest[&key].owner, at(2, 4));
        // An adoption pass that read the kernel just before the event came:
        // same epoch, the claim replaces it and nothing is kept.
        let mut q = Queue::default();
        q.latest.insert(
            key,
            Queued {
                owner: at(2, 4),
                trigger: OwnerTrigger::Adoption,
            },
        );
        q.claim(key, at(2, 4));
        assert!(q.earlier.is_empty());
        assert_eq!(q.latest[&key].trigger, OwnerTrigger::Claim);
    }

    #[test]
    fn flush_records_the_map_not_the_last_event() {
        let (key, gone) = (key(100), key(101));
        // Two same-epoch claims: the event read last names member 4, the
        // map holds member 3 (its CPU wrote last).
        let last_event = owner(4, 2, 7, 20);
        let in_map = OwnerEntry {
            epoch: 7,
            changed_ns: 10,
            havip_id: 1,
            ifindex: 3,
            mac: [2, 0, 0, 0, 0, 1],
            ..OwnerEntry::default()
        };
        let out = kernel_truth(vec![(key, last_event), (gone, last_event)], |k| {
            (*k == key).then_some(in_map)
        });
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, key);
        assert!(
            same_owner(&out[0].1, &observed(&in_map)),
            "the map's member is recorded: {:?}",
            out[0].1
        );
        assert_eq!(out[0].1.changed_ns, 10);
        assert_eq!(
            out[1],
            (gone, last_event),
            "a deleted entry keeps the event"
        );
    }
}
