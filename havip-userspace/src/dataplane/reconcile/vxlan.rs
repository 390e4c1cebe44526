//! The multi-host part of the reconciler: `VTEP_CONFIG`, `VTEPS`, the VNI
//! maps, and remote owners in `OWNERS` (installed only over an older epoch,
//! so a newer local claim is never undone).

use std::collections::BTreeMap;

use aya::maps::MapError;
use havip_common::{names, owner_flags, HavipKey, OwnerEntry, VtepConfig, VtepEntry};

use super::{err, ReconcileError, ReconcileReport};
use crate::dataplane::{
    desired::{DesiredVxlan, RemoteOwner},
    maps::Maps,
};

/// What [`install_remote_owner`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// `OWNERS` now names the remote owner.
    Installed,
    /// The kernel's entry has the same or a higher epoch (a local claim, or
    /// the same remote owner): left as it is.
    Stale {
        /// The kernel's epoch.
        kernel_epoch: u64,
    },
}

/// The `OWNERS` value of a remote owner; `vtep_ifindex` is the local VTEP
/// port (so `has_owner` holds; the program sends out of `VTEP_CONFIG`'s).
pub(super) fn remote_entry(owner: &RemoteOwner, vtep_ifindex: u32) -> OwnerEntry {
    OwnerEntry {
        epoch: owner.epoch,
        changed_ns: 0,
        havip_id: owner.havip_id,
        ifindex: vtep_ifindex,
        mac: owner.mac,
        flags: owner_flags::REMOTE,
        vtep: owner.vtep,
        _pad: [0; 4],
    }
}

/// The local VTEP port's ifindex from `VTEP_CONFIG`.
fn vtep_ifindex(maps: &Maps) -> Result<u32, ReconcileError> {
    let cfg = maps
        .vtep_config
        .get(&0, 0)
        .map_err(err(names::VTEP_CONFIG))?;
    if cfg.addr == [0; 4] || cfg.ifindex == 0 {
        return Err(ReconcileError {
            map: names::VTEP_CONFIG,
            source: "no local VTEP configured: remote owners cannot be reached".into(),
        });
    }
    Ok(cfg.ifindex)
}

/// `OWNERS[key]`, `None` if absent.
fn read_owner(maps: &Maps, key: &HavipKey) -> Result<Option<OwnerEntry>, ReconcileError> {
    match maps.owners.get(key, 0) {
        Ok(o) => Ok(Some(o)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(err(names::OWNERS)(e)),
    }
}

/// Installs `owner` (on another host) as the owner of `key` if its epoch is
/// higher than the kernel's; a newer (or equal) entry, local claim or
/// remote, is kept. The entry is read again just before the write; the
/// window left is the one syscall between that read and the write (BPF
/// hash maps have no compare-and-swap from user space): a claim landing
/// exactly there is overwritten, and the agent, seeing its event, publishes
/// it with a higher epoch and installs it again.
///
/// # Errors
/// No local VTEP in `VTEP_CONFIG`, or a map operation failed.
///
/// # Examples
/// ```no_run
/// # use havip::dataplane::{reconcile, Maps, RemoteOwner};
/// # fn f(maps: &mut Maps, key: havip_common::HavipKey) -> Result<(), reconcile::ReconcileError> {
/// let owner = RemoteOwner { vtep: [10, 99, 0, 12], mac: [2, 0, 0, 0, 0xa, 1], epoch: 7, havip_id: 1 };
/// let _ = reconcile::install_remote_owner(maps, key, owner)?;
/// # Ok(()) }
/// ```
pub fn install_remote_owner(
    maps: &mut Maps,
    key: HavipKey,
    owner: RemoteOwner,
) -> Result<Installed, ReconcileError> {
    let ifindex = vtep_ifindex(maps)?;
    let first = read_owner(maps, &key)?;
    if let Some(current) = first {
        if current.epoch >= owner.epoch {
            return Ok(Installed::Stale {
                kernel_epoch: current.epoch,
            });
        }
    }
    // Re-read: anything written since the first read (a claim) wins; the
    // entry must still equal, every field, what the decision was made on.
    let again = read_owner(maps, &key)?;
    if again != first {
        return Ok(Installed::Stale {
            kernel_epoch: again.map_or(0, |o| o.epoch),
        });
    }
    // No entry yet: create only, so a claim creating it meanwhile wins.
    // BPF_EXIST / BPF_NOEXIST.
    let flags = if first.is_some() { 2 } else { 1 };
    match maps
        .owners
        .insert(key, remote_entry(&owner, ifindex), flags)
    {
        Ok(()) => Ok(Installed::Installed),
        // Created or deleted meanwhile (a claim, a reconcile): keep it.
        Err(MapError::SyscallError(e))
            if matches!(e.io_error.raw_os_error(), Some(libc::EEXIST | libc::ENOENT)) =>
        {
            Ok(Installed::Stale {
                kernel_epoch: read_owner(maps, &key)?.map_or(0, |o| o.epoch),
            })
        }
        Err(e) => Err(err(names::OWNERS)(e)),
    }
}

/// The kernel's owner of `key` if it is on this host (a local port):
/// `None` when there is no entry, no owner, or the owner is remote.
///
/// # Errors
/// Reading `OWNERS` failed (other than a missing key).
pub fn local_owner(maps: &Maps, key: &HavipKey) -> Result<Option<OwnerEntry>, ReconcileError> {
    Ok(read_owner(maps, key)?.filter(|o| o.has_owner() && !o.is_remote()))
}

/// Makes `VTEP_CONFIG`, `VTEPS`, `VSWITCH_VNIS` and `VNI_VSWITCHES` equal
/// to `want`.
pub(super) fn reconcile_tables(
    maps: &mut Maps,
    want: &DesiredVxlan,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let config = want.local.map_or_else(VtepConfig::default, |l| VtepConfig {
        addr: l.addr,
        ifindex: l.ifindex,
        mac: l.mac,
        port: l.udp_port.to_be_bytes(),
    });
    if maps.vtep_config.get(&0, 0).ok() != Some(config) {
        maps.vtep_config
            .set(0, config, 0)
            .map_err(err(names::VTEP_CONFIG))?;
        report.vxlan_set += 1;
    }

    let want_vteps: BTreeMap<[u8; 4], VtepEntry> = want
        .remote_vteps
        .iter()
        .map(|v| {
            (
                v.addr,
                VtepEntry {
                    mac: v.mac,
                    _pad: [0; 2],
                },
            )
        })
        .collect();
    let have: Vec<[u8; 4]> = maps.vteps.keys().filter_map(Result::ok).collect();
    for addr in have.iter().filter(|a| !want_vteps.contains_key(*a)) {
        maps.vteps.remove(addr).map_err(err(names::VTEPS))?;
        report.vxlan_removed += 1;
    }
    for (addr, entry) in &want_vteps {
        if maps.vteps.get(addr, 0).ok().as_ref() != Some(entry) {
            maps.vteps
                .insert(addr, entry, 0)
                .map_err(err(names::VTEPS))?;
            report.vxlan_set += 1;
        }
    }

    let by_vswitch: BTreeMap<u32, u32> = want.vnis.iter().copied().collect();
    let by_vni: BTreeMap<u32, u32> = want.vnis.iter().map(|(s, v)| (*v, *s)).collect();
    for (map, want_map, name) in [
        (&mut maps.vswitch_vnis, &by_vswitch, names::VSWITCH_VNIS),
        (&mut maps.vni_vswitches, &by_vni, names::VNI_VSWITCHES),
    ] {
        let have: Vec<u32> = map.keys().filter_map(Result::ok).collect();
        for k in have.iter().filter(|k| !want_map.contains_key(*k)) {
            map.remove(k).map_err(err(name))?;
            report.vxlan_removed += 1;
        }
        for (k, v) in want_map {
            if map.get(k, 0).ok() != Some(*v) {
                map.insert(k, v, 0).map_err(err(name))?;
                report.vxlan_set += 1;
            }
        }
    }
    Ok(())
}
