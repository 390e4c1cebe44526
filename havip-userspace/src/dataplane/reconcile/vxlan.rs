//! The multi-host part of the reconciler: `VTEP_CONFIG`, `VTEPS`, the VNI
//! maps and their inlined copies (`havip_common::vxlan`), and remote owners in the HaVip table (installed only over an older
//! epoch, by compare-and-swap of the owner word, so a newer local claim is
//! never undone).

use std::collections::BTreeMap;

use aya::{
    maps::{Array, MapData, MapError},
    Pod,
};
use havip_common::{
    names, owner_flags,
    vxlan::{self, state, Slot, VniSlot, VtepSlot},
    HavipKey, OwnerEntry, VtepConfig, VtepEntry, MAX_VSWITCHES,
};

use super::{err, put_if_changed, table_err, ReconcileError, ReconcileReport};
use crate::dataplane::{
    desired::{DesiredVxlan, RemoteOwner},
    maps::Maps,
};

/// What [`install_remote_owner`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// The HaVip's owner word now names the remote owner.
    Installed,
    /// The kernel's owner has the same or a higher epoch (a local claim, or
    /// the same remote owner), or the HaVip is not in the table: left as it
    /// is.
    Stale {
        /// The kernel's epoch.
        kernel_epoch: u64,
    },
}

/// The decoded owner of a remote owner; `vtep_ifindex` is the local VTEP
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

/// Installs `owner` (on another host) as the owner of `key` if its epoch is
/// higher than the kernel's; a newer (or equal) owner, local claim or
/// remote, is kept. The remote member is written into the HaVip's spare
/// remote slot, then the owner word is switched by compare-and-swap from
/// the word the epoch was compared with: a claim stored meanwhile makes it
/// fail (reported as stale with the claim's epoch).
///
/// # Errors
/// No local VTEP in `VTEP_CONFIG`, or the table refused the write.
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
    let table = &maps.table;
    let Some(view) = table.find(&key) else {
        return Ok(Installed::Stale { kernel_epoch: 0 });
    };
    let kernel_epoch = u64::from(havip_common::owner_word::epoch(view.word));
    if kernel_epoch >= owner.epoch {
        return Ok(Installed::Stale { kernel_epoch });
    }
    let word = table
        .word_for(&view, &remote_entry(&owner, ifindex), false)
        .map_err(table_err)?;
    if table.cas_owner(view.pos, view.word, word) {
        Ok(Installed::Installed)
    } else {
        Ok(Installed::Stale {
            kernel_epoch: u64::from(havip_common::owner_word::epoch(table.owner_word(view.pos))),
        })
    }
}

/// The kernel's owner of `key` if it is on this host (a local port):
/// `None` when the HaVip is not in the table, has no owner, or the owner
/// is remote.
///
/// # Errors
/// None today (the table is read from memory); kept for callers.
pub fn local_owner(maps: &Maps, key: &HavipKey) -> Result<Option<OwnerEntry>, ReconcileError> {
    Ok(maps
        .table
        .owner(key)
        .map(|(_, o)| o)
        .filter(|o| o.has_owner() && !o.is_remote()))
}

/// Makes `VTEP_CONFIG`, `VTEPS`, `VSWITCH_VNIS` and `VNI_VSWITCHES` equal
/// to `want`, and their inlined copies (`VTEP_TABLE`, `VSWITCH_VNI_ARRAY`,
/// `VNI_TABLE`) agree with them. An entry is added to its hash map before
/// its table and removed from its table before its hash map, so a table
/// never holds a key its hash map lacks for longer than one reconcile.
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
    let vtep_slot = |addr: [u8; 4], mac: [u8; 6]| {
        move |state| VtepSlot {
            addr,
            mac,
            _pad: [0; 2],
            state,
        }
    };
    let table_err = err(names::VTEP_TABLE);
    let have: Vec<[u8; 4]> = maps.vteps.keys().filter_map(Result::ok).collect();
    for addr in have.iter().filter(|a| !want_vteps.contains_key(*a)) {
        slot_remove(&mut maps.vtep_table, vxlan::vtep_key(*addr)).map_err(&table_err)?;
        maps.vteps.remove(addr).map_err(err(names::VTEPS))?;
        report.vxlan_removed += 1;
    }
    for (addr, entry) in &want_vteps {
        report.vxlan_set += put_if_changed(&mut maps.vteps, names::VTEPS, addr, entry)?;
        slot_set(
            &mut maps.vtep_table,
            vxlan::vtep_key(*addr),
            vtep_slot(*addr, entry.mac),
        )
        .map_err(&table_err)?;
    }

    let by_vswitch: BTreeMap<u32, u32> = want.vnis.iter().copied().collect();
    let by_vni: BTreeMap<u32, u32> = want.vnis.iter().map(|(s, v)| (*v, *s)).collect();
    for (map, want_map, name) in [
        (&mut maps.vswitch_vnis, &by_vswitch, names::VSWITCH_VNIS),
        (&mut maps.vni_vswitches, &by_vni, names::VNI_VSWITCHES),
    ] {
        let have: Vec<u32> = map.keys().filter_map(Result::ok).collect();
        for k in have.iter().filter(|k| !want_map.contains_key(*k)) {
            if name == names::VSWITCH_VNIS {
                vni_array_set(&mut maps.vswitch_vni_array, *k, 0)?;
            } else {
                slot_remove(&mut maps.vni_table, *k).map_err(err(names::VNI_TABLE))?;
            }
            map.remove(k).map_err(err(name))?;
            report.vxlan_removed += 1;
        }
        for (k, v) in want_map {
            report.vxlan_set += put_if_changed(map, name, k, v)?;
            if name == names::VSWITCH_VNIS {
                vni_array_set(&mut maps.vswitch_vni_array, *k, *v | vxlan::VNI_PRESENT)?;
            } else {
                let (vni, vswitch_id) = (*k, *v);
                slot_set(&mut maps.vni_table, vni, move |state| VniSlot {
                    vni,
                    vswitch_id,
                    state,
                })
                .map_err(err(names::VNI_TABLE))?;
            }
        }
    }
    Ok(())
}

/// Sets `VSWITCH_VNI_ARRAY[vswitch_id]` to `word` if the id fits the array
/// (larger ids live in `VSWITCH_VNIS` only).
fn vni_array_set(
    array: &mut Array<MapData, u32>,
    vswitch_id: u32,
    word: u32,
) -> Result<(), ReconcileError> {
    if vswitch_id >= MAX_VSWITCHES || array.get(&vswitch_id, 0).ok() == Some(word) {
        return Ok(());
    }
    array
        .set(vswitch_id, word, 0)
        .map_err(err(names::VSWITCH_VNI_ARRAY))
}

/// Where a key is in an open-addressed table, or where it would go.
enum Probed<T> {
    Found(u32, T),
    /// Not there; the first reusable slot of its probe sequence.
    Free(u32),
    /// Not there, and no slot within `vxlan::PROBES` of its home.
    Full,
}

/// Probes `table` for `key` as the program does (see `havip_common::vxlan`).
fn slot_probe<T: Slot + Pod>(table: &Array<MapData, T>, key: u32) -> Result<Probed<T>, MapError> {
    let home = vxlan::home(key);
    let mut free = None;
    for i in 0..vxlan::PROBES {
        let index = home.wrapping_add(i) & (vxlan::SLOTS - 1);
        let slot = table.get(&index, 0)?;
        match slot.state() {
            state::EMPTY => return Ok(Probed::Free(free.unwrap_or(index))),
            state::USED if slot.key() == key => return Ok(Probed::Found(index, slot)),
            state::USED => {}
            _ => {
                free.get_or_insert(index);
            }
        }
    }
    Ok(free.map_or(Probed::Full, Probed::Free))
}

/// Makes `key`'s slot `make(USED)`. A new entry is written first as a
/// tombstone (key and value, never matched), then as used, so a frame never
/// matches half an entry. A key with no free slot near its home is left to
/// the hash map the program falls back to.
fn slot_set<T: Slot + Pod + PartialEq>(
    table: &mut Array<MapData, T>,
    key: u32,
    make: impl Fn(u32) -> T,
) -> Result<(), MapError> {
    match slot_probe(table, key)? {
        Probed::Found(index, old) => {
            let new = make(state::USED);
            if old != new {
                table.set(index, new, 0)?;
            }
        }
        Probed::Free(index) => {
            table.set(index, make(state::TOMBSTONE), 0)?;
            table.set(index, make(state::USED), 0)?;
        }
        Probed::Full => {}
    }
    Ok(())
}

/// Marks `key`'s slot a tombstone, if it has one.
fn slot_remove<T: Slot + Pod>(table: &mut Array<MapData, T>, key: u32) -> Result<(), MapError> {
    if let Probed::Found(index, slot) = slot_probe(table, key)? {
        table.set(index, slot.with_state(state::TOMBSTONE), 0)?;
    }
    Ok(())
}
