//! State → maps. Makes `PORTS`, `TX_PORTS`, `HAVIPS`, `BINDINGS` and
//! `CONFIG` equal to the desired state, and creates/clears `OWNERS` entries
//! without ever overwriting a newer owner the kernel switched by a claim.
//! The multi-host maps (VTEPs, VNIs, remote owners) are in [`vxlan`].

mod eip;
mod vxlan;

pub use vxlan::{install_remote_owner, local_owner, Installed};

use std::collections::{BTreeMap, BTreeSet};

use havip_common::{
    names, owner_flags, BindingEntry, BindingKey, HavipEntry, HavipKey, OwnerEntry, PortInfo,
    TrafficCounter, VpcAddrKey, MAX_PORTS,
};

use super::{
    desired::{Desired, RemoteOwner},
    maps::Maps,
};

/// What one reconcile pass changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub ports_set: usize,
    pub ports_removed: usize,
    pub havips_set: usize,
    pub havips_removed: usize,
    pub bindings_set: usize,
    pub bindings_removed: usize,
    pub owners_created: usize,
    /// Owners cleared because the master is no longer bound.
    pub owners_cleared: usize,
    /// Owners whose ENI came back under a new ifindex (same MAC), rewritten
    /// onto it with the same epoch.
    pub owners_moved: usize,
    /// Owners whose HaVip id was put right (same owner, same epoch).
    pub owners_fixed: usize,
    /// Owner rewrites given up: the entry changed between the decision and
    /// the write (a claim landed), so the kernel's newer owner stays. Not a
    /// change.
    pub owners_kept: usize,
    pub owners_removed: usize,
    /// Remote owners (owner on another host) written over an older epoch.
    pub remote_owners_installed: usize,
    /// `VTEP_CONFIG`, `VTEPS`, VNI entries written / removed.
    pub vxlan_set: usize,
    pub vxlan_removed: usize,
    /// `EIPS` and `EIP_SNAT` entries written / removed.
    pub eips_set: usize,
    pub eips_removed: usize,
}

impl ReconcileReport {
    pub fn changed(&self) -> bool {
        Self {
            owners_kept: 0,
            ..self.clone()
        } != Self::default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reconciling map {map}: {source}")]
pub struct ReconcileError {
    pub map: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn err<E: std::error::Error + Send + Sync + 'static>(
    map: &'static str,
) -> impl Fn(E) -> ReconcileError {
    move |source| ReconcileError {
        map,
        source: Box::new(source),
    }
}

/// BPF_NOEXIST: create only.
const NOEXIST: u64 = 1;
/// BPF_EXIST: update only (never re-creates an entry deleted meanwhile).
const EXIST: u64 = 2;

/// The owner-write rule: the reconciler never undoes a claim. An `OWNERS`
/// entry is created only with `BPF_NOEXIST`, and an existing one is
/// rewritten only if, read again just before the write, it still equals
/// (every field) the entry the decision was made on; the write itself is
/// `BPF_EXIST`. What is left is the one syscall between that read and the
/// write: BPF hash maps offer no compare-and-swap from user space, so a
/// claim landing exactly there is overwritten; its `OWNER_CHANGED` event
/// still reaches the agent, and the member's next GARP re-takes the HaVip.
/// Returns whether the entry was written.
fn rewrite_owner(
    maps: &mut Maps,
    key: HavipKey,
    read: &OwnerEntry,
    new: OwnerEntry,
) -> Result<bool, ReconcileError> {
    match maps.owners.get(&key, 0) {
        Ok(now) if now == *read => {}
        Ok(_) | Err(aya::maps::MapError::KeyNotFound) => return Ok(false),
        Err(e) => return Err(err(names::OWNERS)(e)),
    }
    match maps.owners.insert(key, new, EXIST) {
        Ok(()) => Ok(true),
        // Deleted since the read: nothing to rewrite.
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(false)
        }
        Err(e) => Err(err(names::OWNERS)(e)),
    }
}

/// Brings the maps to `desired`. Idempotent; cost is one read of each map
/// plus one write per difference.
///
/// # Errors
/// A map operation failed (e.g. a map is full); maps already written stay.
pub fn reconcile(maps: &mut Maps, desired: &Desired) -> Result<ReconcileReport, ReconcileError> {
    reconcile_with(maps, desired, &BTreeSet::new())
}

/// As [`reconcile`], with the ports in `no_redirect` kept in `PORTS` (frames
/// from them are still handled) but out of `TX_PORTS`: their interface is
/// down, or cannot receive redirected frames (a veth whose peer has neither
/// GRO nor XDP). A frame for an owner behind such a port is then dropped and
/// counted as `port_not_redirectable` instead of vanishing in the driver.
///
/// # Errors
/// As [`reconcile`].
pub fn reconcile_with(
    maps: &mut Maps,
    desired: &Desired,
    no_redirect: &BTreeSet<u32>,
) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport::default();

    // Ports and redirect targets.
    let want_ports: BTreeMap<u32, PortInfo> = desired
        .ports
        .iter()
        .map(|p| {
            (
                p.ifindex,
                PortInfo {
                    vswitch_id: p.vswitch_id,
                    vpc_id: p.vpc_id,
                    flags: p.flags,
                    gateway_mac: p.gateway_mac,
                    _pad: [0; 2],
                },
            )
        })
        .collect();
    // Ports below MAX_PORTS live in the PORTS array (an all-zero entry is
    // no port), the rest in PORTS_HIGH.
    let have_low: Vec<(u32, PortInfo)> = maps
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.ok().map(|v| (i as u32, v)))
        .filter(|(_, v)| v.flags != 0)
        .collect();
    for (ifindex, _) in &have_low {
        if !want_ports.contains_key(ifindex) {
            maps.ports
                .set(*ifindex, PortInfo::default(), 0)
                .map_err(err(names::PORTS))?;
            report.ports_removed += 1;
        }
    }
    let have_high: Vec<u32> = maps.ports_high.keys().filter_map(Result::ok).collect();
    for ifindex in &have_high {
        if !want_ports.contains_key(ifindex) {
            maps.ports_high
                .remove(ifindex)
                .map_err(err(names::PORTS_HIGH))?;
            report.ports_removed += 1;
        }
    }
    for (ifindex, info) in &want_ports {
        if *ifindex < MAX_PORTS {
            if maps.ports.get(ifindex, 0).ok().as_ref() != Some(info) {
                maps.ports
                    .set(*ifindex, info, 0)
                    .map_err(err(names::PORTS))?;
                report.ports_set += 1;
            }
        } else if maps.ports_high.get(ifindex, 0).ok().as_ref() != Some(info) {
            maps.ports_high
                .insert(ifindex, info, 0)
                .map_err(err(names::PORTS_HIGH))?;
            report.ports_set += 1;
        }
    }
    let want_tx: BTreeSet<u32> = want_ports
        .keys()
        .filter(|i| !no_redirect.contains(i))
        .copied()
        .collect();
    let have_tx: BTreeSet<u32> = maps.tx_ports.keys().filter_map(Result::ok).collect();
    for ifindex in &have_tx {
        if !want_tx.contains(ifindex) {
            maps.tx_ports
                .remove(*ifindex)
                .map_err(err(names::TX_PORTS))?;
        }
    }
    for ifindex in &want_tx {
        let current = maps.tx_ports.get(*ifindex, 0).ok().map(|v| v.if_index);
        if current != Some(*ifindex) {
            maps.tx_ports
                .insert(*ifindex, *ifindex, None, 0)
                .map_err(err(names::TX_PORTS))?;
        }
    }

    // HaVips and bindings.
    let want_havips: BTreeMap<HavipKey, HavipEntry> = desired
        .havips
        .iter()
        .map(|h| {
            (
                h.key,
                HavipEntry {
                    id: h.id,
                    flags: 0,
                    virtual_mac: h.virtual_mac,
                    _pad: [0; 2],
                },
            )
        })
        .collect();
    let want_bindings: BTreeMap<BindingKey, BindingEntry> = desired
        .havips
        .iter()
        .flat_map(|h| {
            h.bindings.iter().map(move |b| {
                (
                    BindingKey {
                        havip_id: h.id,
                        ifindex: b.ifindex,
                    },
                    BindingEntry {
                        mac: b.mac,
                        _pad: [0; 2],
                    },
                )
            })
        })
        .collect();

    // Bindings first when removing, so a claim can never pass a binding check
    // for a HaVip that is going away.
    let have_bindings: Vec<BindingKey> = maps.bindings.keys().filter_map(Result::ok).collect();
    for key in &have_bindings {
        if !want_bindings.contains_key(key) {
            maps.bindings.remove(key).map_err(err(names::BINDINGS))?;
            report.bindings_removed += 1;
        }
    }
    let have_havips: Vec<HavipKey> = maps.havips.keys().filter_map(Result::ok).collect();
    for key in &have_havips {
        if !want_havips.contains_key(key) {
            maps.havips.remove(key).map_err(err(names::HAVIPS))?;
            report.havips_removed += 1;
        }
    }
    let have_owners: Vec<HavipKey> = maps.owners.keys().filter_map(Result::ok).collect();
    for key in &have_owners {
        if !want_havips.contains_key(key) {
            maps.owners.remove(key).map_err(err(names::OWNERS))?;
            report.owners_removed += 1;
        }
    }
    for (key, entry) in &want_havips {
        if maps.havips.get(key, 0).ok().as_ref() != Some(entry) {
            maps.havips
                .insert(key, entry, 0)
                .map_err(err(names::HAVIPS))?;
            report.havips_set += 1;
        }
    }
    for (key, entry) in &want_bindings {
        if maps.bindings.get(key, 0).ok().as_ref() != Some(entry) {
            maps.bindings
                .insert(key, entry, 0)
                .map_err(err(names::BINDINGS))?;
            report.bindings_set += 1;
        }
    }

    // HaVip addresses per VPC (wrong-vSwitch claim check).
    let want_vpc: BTreeMap<VpcAddrKey, u32> = desired
        .havips
        .iter()
        .map(|h| {
            (
                VpcAddrKey {
                    vpc_id: h.vpc_id,
                    addr: h.key.addr,
                },
                h.key.vswitch_id,
            )
        })
        .collect();
    let have_vpc: Vec<VpcAddrKey> = maps.vpc_havips.keys().filter_map(Result::ok).collect();
    for key in &have_vpc {
        if !want_vpc.contains_key(key) {
            maps.vpc_havips
                .remove(key)
                .map_err(err(names::VPC_HAVIPS))?;
        }
    }
    for (key, vswitch) in &want_vpc {
        if maps.vpc_havips.get(key, 0).ok() != Some(*vswitch) {
            maps.vpc_havips
                .insert(key, vswitch, 0)
                .map_err(err(names::VPC_HAVIPS))?;
        }
    }

    vxlan::reconcile_tables(maps, &desired.vxlan, &mut report)?;
    let remote_owners: BTreeMap<HavipKey, RemoteOwner> =
        desired.vxlan.remote_owners.iter().copied().collect();
    let vtep_ifindex = desired.vxlan.local.map_or(0, |l| l.ifindex);

    // Owners: the kernel's truth, created here and cleared only when the
    // master lost its binding. Remote owners replace only older entries.
    for h in &desired.havips {
        let remote = remote_owners.get(&h.key).filter(|_| vtep_ifindex != 0);
        match maps.owners.get(&h.key, 0) {
            Ok(owner) if remote.is_some_and(|r| r.epoch > owner.epoch) => {
                if let Some(r) = remote {
                    let r = RemoteOwner {
                        havip_id: h.id,
                        ..*r
                    };
                    if install_remote_owner(maps, h.key, r)? == Installed::Installed {
                        report.remote_owners_installed += 1;
                    }
                }
            }
            Ok(read) if read.is_remote() => {
                // Managed from the shared state; no local binding to check.
                if read.havip_id != h.id {
                    let owner = OwnerEntry {
                        havip_id: h.id,
                        ..read
                    };
                    if rewrite_owner(maps, h.key, &read, owner)? {
                        report.owners_fixed += 1;
                    } else {
                        report.owners_kept += 1;
                    }
                }
            }
            Ok(read) => {
                let mut owner = read;
                let bound = owner.has_owner()
                    && want_bindings
                        .get(&BindingKey {
                            havip_id: h.id,
                            ifindex: owner.ifindex,
                        })
                        .is_some_and(|b| b.mac == owner.mac);
                let mut changed = false;
                // The owner's ENI came back under a new ifindex (tap deleted
                // and re-created by a VM restart): same MAC, bound on the new
                // ifindex. It stays the owner, on the new port, same epoch.
                let moved = (owner.has_owner() && !bound)
                    .then(|| {
                        want_bindings
                            .range(
                                BindingKey {
                                    havip_id: h.id,
                                    ifindex: 0,
                                }..=BindingKey {
                                    havip_id: h.id,
                                    ifindex: u32::MAX,
                                },
                            )
                            .find(|(_, b)| b.mac == owner.mac)
                            .map(|(k, _)| k.ifindex)
                    })
                    .flatten();
                if let Some(ifindex) = moved {
                    // A claim that landed since the read wins
                    // ([`rewrite_owner`]).
                    owner.ifindex = ifindex;
                    if rewrite_owner(maps, h.key, &read, owner)? {
                        report.owners_moved += 1;
                    } else {
                        report.owners_kept += 1;
                    }
                    continue;
                }
                let mut cleared = false;
                if owner.has_owner() && !bound {
                    owner.ifindex = 0;
                    owner.mac = [0; 6];
                    owner.epoch += 1;
                    owner.flags = owner_flags::BY_CONTROL;
                    cleared = true;
                    changed = true;
                }
                if !owner.has_owner() {
                    if let Some(initial) = &h.initial_owner {
                        if h.bindings.contains(initial) {
                            owner.ifindex = initial.ifindex;
                            owner.mac = initial.mac;
                            owner.epoch += 1;
                            owner.flags = owner_flags::BY_CONTROL;
                            changed = true;
                        }
                    }
                }
                let fixed = owner.havip_id != h.id;
                if fixed {
                    owner.havip_id = h.id;
                    changed = true;
                }
                if changed {
                    if rewrite_owner(maps, h.key, &read, owner)? {
                        report.owners_cleared += usize::from(cleared);
                        report.owners_fixed += usize::from(fixed);
                    } else {
                        report.owners_kept += 1;
                    }
                }
            }
            Err(_) => {
                // A new HaVip: its stats slot may have served a deleted one.
                let cpus = aya::util::nr_cpus().map_or(1, |n| n);
                let zero = aya::maps::PerCpuValues::try_from(vec![TrafficCounter::default(); cpus])
                    .map_err(err(names::HAVIP_STATS))?;
                maps.havip_stats
                    .set(h.id, zero, 0)
                    .map_err(err(names::HAVIP_STATS))?;
                let initial = h.initial_owner.filter(|o| h.bindings.contains(o));
                let owner = match remote {
                    Some(r) => vxlan::remote_entry(
                        &RemoteOwner {
                            havip_id: h.id,
                            ..*r
                        },
                        vtep_ifindex,
                    ),
                    None => OwnerEntry {
                        epoch: u64::from(initial.is_some()),
                        changed_ns: 0,
                        havip_id: h.id,
                        ifindex: initial.map_or(0, |o| o.ifindex),
                        mac: initial.map_or([0; 6], |o| o.mac),
                        flags: owner_flags::BY_CONTROL,
                        ..OwnerEntry::default()
                    },
                };
                // NOEXIST: a claim that raced us since the read wins.
                if maps.owners.insert(h.key, owner, NOEXIST).is_ok() {
                    report.owners_created += 1;
                    report.remote_owners_installed += usize::from(remote.is_some());
                }
            }
        }
    }

    eip::reconcile_eips(maps, desired, &mut report)?;
    maps.config
        .set(0, desired.config, 0)
        .map_err(err(names::CONFIG))?;
    Ok(report)
}
