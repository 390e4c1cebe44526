//! Ownership across hosts: publishing local claims with the epoch fence
//! (task [`run`]), the VXLAN part of the desired maps ([`desired_vxlan`]),
//! and what the plain reconcile cannot decide ([`settle_kernel`]): a tie lost
//! to another host's published claim, and local claims not yet published.

use std::{collections::BTreeMap, net::Ipv4Addr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use havip_common::{owner_flags, HavipKey, OwnerEntry};
use tracing::{debug, info, warn};

use super::{monotonic_ns, Cluster, HostRecord, SharedOwner};
use crate::{
    dataplane::{
        desired::{DesiredVxlan, LocalVtep, RemoteOwner, RemoteVtep},
        Maps,
    },
    model::{MacAddr, State},
};

/// Retry period of unpublished claims while etcd is away.
const RETRY: Duration = Duration::from_millis(500);

/// Outcome of one publish.
#[derive(Debug)]
enum Published {
    /// Stored (or already stored) at this mod revision.
    Stored(i64),
    /// A claim with the same or a higher epoch is stored: it wins.
    Lost(SharedOwner, i64),
}

/// The HaVip id and the claiming ENI of a kernel claim on this host.
pub fn local_claim(
    state: &State,
    host: &str,
    key: HavipKey,
    mac: [u8; 6],
    epoch: u64,
) -> Option<(String, SharedOwner)> {
    let h = state.havip_by_key(key.vswitch_id, Ipv4Addr::from(key.addr))?;
    let eni = state.eni_by_mac(MacAddr(mac))?;
    Some((
        h.id.clone(),
        SharedOwner {
            host: host.to_owned(),
            eni: eni.id.clone(),
            mac: MacAddr(mac),
            epoch,
        },
    ))
}

/// Task: publishes queued claims; retried every [`RETRY`] while etcd is away.
pub async fn run(c: Arc<Cluster>) {
    loop {
        let _ = tokio::time::timeout(RETRY, c.publish.notified()).await;
        for (havip, owner) in c.take_pending() {
            match publish(&c, &havip, &owner).await {
                Ok(Published::Stored(rev)) => {
                    // The failover bench reads `published_ns`.
                    info!(
                        havip,
                        epoch = owner.epoch,
                        published_ns = monotonic_ns(),
                        "claim published"
                    );
                    c.update_owner(&havip, Some((owner, rev)));
                }
                Ok(Published::Lost(winner, rev)) => {
                    info!(
                        havip,
                        epoch = owner.epoch,
                        winner_host = winner.host,
                        winner_eni = winner.eni,
                        winner_epoch = winner.epoch,
                        "local claim lost to a published one; installing the winner"
                    );
                    c.update_owner(&havip, Some((winner, rev)));
                    c.cp.poke();
                }
                Err(e) => {
                    debug!(
                        havip,
                        error = format!("{e:#}"),
                        "publish failed; will retry"
                    );
                    c.requeue(havip, owner);
                }
            }
        }
    }
}

/// Compare-and-set loop: store `owner` only over a lower stored epoch.
/// One round trip when the cached owner (from the watch) is current: the
/// txn compares its mod revision, and on a mismatch reads the key in the
/// same txn; the decision is taken again on what it read.
async fn publish(c: &Cluster, havip: &str, owner: &SharedOwner) -> Result<Published> {
    let key = format!("{}{havip}", c.etcd.owners_prefix());
    let value = serde_json::to_vec(owner)?;
    let mut client = c.etcd.client.clone();
    let t = c.etcd.timeout;
    // (stored owner, or None if it does not decode; its mod revision).
    let mut stored: Option<(Option<SharedOwner>, i64)> =
        c.owner(havip).map(|(s, rev)| (Some(s), rev));
    loop {
        let cmp = match &stored {
            Some((s, rev)) => {
                if let Some(s) = s {
                    if s == owner {
                        return Ok(Published::Stored(*rev));
                    }
                    if s.epoch >= owner.epoch {
                        return Ok(Published::Lost(s.clone(), *rev));
                    }
                }
                Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)
            }
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::put(key.clone(), value.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut r = tokio::time::timeout(t, client.txn(txn))
            .await
            .context("publish timed out")??;
        let rev = r.take_header().map_or(0, |h| h.revision());
        c.etcd.shared.seen(rev);
        if r.succeeded() {
            return Ok(Published::Stored(rev));
        }
        // Someone published in between (or the cache was behind).
        stored = r.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                (
                    serde_json::from_slice::<SharedOwner>(kv.value()).ok(),
                    kv.mod_revision(),
                )
            }),
            _ => None,
        });
    }
}

/// The multi-host part of the desired maps: the local VTEP (if its port is
/// up), the other hosts' VTEPs, VNIs, and the owners on other hosts.
pub fn desired_vxlan(c: &Cluster, state: &State, vtep_ifindex: Option<u32>) -> DesiredVxlan {
    let hosts = c.hosts();
    let mut remote_vteps: Vec<RemoteVtep> = hosts
        .values()
        .filter(|h| h.host != c.local.id)
        .map(|h| RemoteVtep {
            addr: h.vtep.octets(),
            mac: h.mac.octets(),
        })
        .collect();
    remote_vteps.sort();
    remote_vteps.dedup_by_key(|v| v.addr);
    let vnis = state
        .vswitches
        .values()
        .filter_map(|v| v.vni.map(|n| (v.dp_id, n)))
        .collect();
    let remote_owners = c
        .owners()
        .into_iter()
        .filter(|(_, o)| o.host != c.local.id)
        .filter_map(|(id, o)| remote_owner_of(state, &hosts, &id, &o))
        .collect();
    DesiredVxlan {
        local: vtep_ifindex.map(|i| LocalVtep::new(i, c.local.vtep.octets(), c.local.mac.octets())),
        remote_vteps,
        vnis,
        remote_owners,
    }
}

/// The kernel's key and remote owner entry of `havip`'s owner `o` on
/// another host (`None`: unknown HaVip, vSwitch or host).
pub fn remote_owner_of(
    state: &State,
    hosts: &BTreeMap<String, HostRecord>,
    havip: &str,
    o: &SharedOwner,
) -> Option<(HavipKey, RemoteOwner)> {
    let h = state.havips.get(havip)?;
    let vsw = state.vswitches.get(&h.vswitch)?;
    let vtep = hosts.get(&o.host)?.vtep;
    Some((
        HavipKey {
            vswitch_id: vsw.dp_id,
            addr: h.address.octets(),
        },
        RemoteOwner {
            vtep: vtep.octets(),
            mac: o.mac.octets(),
            epoch: o.epoch,
            havip_id: h.slot,
        },
    ))
}

/// After a reconcile: (1) a local claim (or a noticed remote owner) at the
/// same epoch as another host's published claim lost the race: the
/// published owner replaces it;
/// (2) a local claim newer than the published owner (or with none) is
/// queued for publishing (covers lost events, etcd outages, restarts).
/// Returns how many kernel entries were replaced.
pub fn settle_kernel(c: &Cluster, maps: &mut Maps, state: &State, vxlan: &DesiredVxlan) -> usize {
    let Some(local) = vxlan.local else { return 0 };
    let shared = c.owners();
    let mut replaced = 0;
    for (key, remote) in &vxlan.remote_owners {
        let Ok(k) = maps.owners.get(key, 0) else {
            continue;
        };
        // At an equal epoch etcd's owner wins over a local claim and over a
        // remote owner learnt from a notice that lost the race in etcd.
        let same_remote = k.is_remote() && k.vtep == remote.vtep && k.mac == remote.mac;
        let tie_lost = k.has_owner() && !same_remote && k.epoch == remote.epoch;
        if tie_lost {
            let entry = OwnerEntry {
                epoch: remote.epoch,
                changed_ns: 0,
                havip_id: remote.havip_id,
                ifindex: local.ifindex,
                mac: remote.mac,
                flags: owner_flags::REMOTE,
                vtep: remote.vtep,
                _pad: [0; 4],
            };
            // Compare-and-swap from the local owner read above: a claim
            // stored since then (a higher epoch) stays.
            match maps.owners.replace(*key, &k, entry) {
                Ok(true) => {
                    replaced += 1;
                    info!(havip = %Ipv4Addr::from(key.addr), epoch = remote.epoch, "tie lost to etcd's owner; remote owner installed");
                }
                Ok(false) => {
                    info!(havip = %Ipv4Addr::from(key.addr), "a newer claim landed; the tie is settled on the next pass");
                }
                Err(e) => warn!(error = %e, "installing the winning owner failed; will retry"),
            }
        }
    }
    for (key, k) in maps.owners.iter().filter_map(Result::ok) {
        if !k.has_owner() || k.is_remote() {
            continue;
        }
        let Some((id, claim)) = local_claim(state, &c.local.id, key, k.mac, k.epoch) else {
            continue;
        };
        let published = shared.get(&id);
        if published.is_none_or(|p| p.epoch < k.epoch) {
            c.queue_publish(id, claim);
        }
    }
    replaced
}
