//! State → maps. Makes `PORTS`, `TX_PORTS`, the HaVip table (slots and
//! members), `BINDINGS` and `CONFIG` equal to the desired state, and moves
//! owner words only by compare-and-swap, so a claim the kernel stored is
//! never undone. The multi-host maps (VTEPs, VNIs, remote owners) are in
//! [`vxlan`], the VPC routes (`ROUTES`) in [`routes`].

mod eip;
mod routes;
mod vxlan;

pub use routes::entries as route_entries;
pub use vxlan::{install_remote_owner, local_owner, Installed};

use std::collections::{BTreeMap, BTreeSet};

use havip_common::{
    havip_filter_bits, names, owner_flags, owner_word, BindingEntry, BindingKey, HavipKey, Member,
    PortInfo, TrafficCounter, VpcAddrKey, MAX_PORTS, MEMBERS_PER_HAVIP, REMOTE_MEMBER_FIRST,
};

use super::{
    desired::{Desired, DesiredHavip, RemoteOwner},
    maps::Maps,
    table::{HavipTable, RowView, TableError},
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
    /// Owners cleared because the owner is no longer bound.
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
    /// `ROUTES` entries written / removed.
    pub routes_set: usize,
    pub routes_removed: usize,
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

/// Writes `entry` at `key` of the hash map `name` unless it holds it
/// already. Returns how many entries it wrote (0 or 1), for the report.
fn put_if_changed<K: aya::Pod, V: aya::Pod + PartialEq>(
    map: &mut aya::maps::HashMap<aya::maps::MapData, K, V>,
    name: &'static str,
    key: &K,
    entry: &V,
) -> Result<usize, ReconcileError> {
    if map.get(key, 0).ok().as_ref() == Some(entry) {
        return Ok(0);
    }
    map.insert(key, entry, 0).map_err(err(name))?;
    Ok(1)
}

/// Removes every key of the hash map `name` that is not `wanted`. Returns
/// how many it removed, for the report.
fn remove_unwanted<K: aya::Pod, V: aya::Pod>(
    map: &mut aya::maps::HashMap<aya::maps::MapData, K, V>,
    name: &'static str,
    wanted: impl Fn(&K) -> bool,
) -> Result<usize, ReconcileError> {
    let have: Vec<K> = map.keys().filter_map(Result::ok).collect();
    let mut removed = 0;
    for key in have.iter().filter(|k| !wanted(k)) {
        map.remove(key).map_err(err(name))?;
        removed += 1;
    }
    Ok(removed)
}

fn table_err(e: TableError) -> ReconcileError {
    err(names::HAVIP_ROWS)(e)
}

/// The owner-write rule: the reconciler never undoes a claim. It changes an
/// owner word only with a compare-and-swap from the word its decision was
/// made on ([`HavipTable::cas_owner`]); a claim stored since that read
/// makes the swap fail and the kernel's owner stays. Returns whether the
/// word was written.
fn move_owner(table: &HavipTable, view: &RowView, new: u64) -> bool {
    table.cas_owner(view.pos, view.word, new)
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

    // The HaVip table as it is now: until the table pass below is done, the
    // ports' HaVip filters cover these and the wanted HaVips (a superset of
    // what the program can find at any moment of the pass).
    let table = std::sync::Arc::clone(&maps.table);
    let used = table.used();
    let want_keys: BTreeSet<HavipKey> = desired.havips.iter().map(|h| h.key).collect();
    let filters = havip_filters(want_keys.iter().chain(used.iter().map(|v| &v.key)));

    // Ports and redirect targets.
    let want_ports = port_infos(desired, &filters);
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
    report.ports_removed += remove_unwanted(&mut maps.ports_high, names::PORTS_HIGH, |i| {
        want_ports.contains_key(i)
    })?;
    set_ports(maps, &want_ports, &mut report)?;
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
    report.bindings_removed += remove_unwanted(&mut maps.bindings, names::BINDINGS, |k| {
        want_bindings.contains_key(k)
    })?;
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
    remove_unwanted(&mut maps.vpc_havips, names::VPC_HAVIPS, |k| {
        want_vpc.contains_key(k)
    })?;
    for (key, vswitch) in &want_vpc {
        put_if_changed(&mut maps.vpc_havips, names::VPC_HAVIPS, key, vswitch)?;
    }

    vxlan::reconcile_tables(maps, &desired.vxlan, &mut report)?;
    routes::reconcile_routes(maps, &desired.routes, &mut report)?;
    let remote_owners: BTreeMap<HavipKey, RemoteOwner> =
        desired.vxlan.remote_owners.iter().copied().collect();
    let vtep_ifindex = desired.vxlan.local.map_or(0, |l| l.ifindex);

    // The HaVip table: slots, members, owner words.
    for view in &used {
        if !want_keys.contains(&view.key) {
            table.remove(view.pos);
            for i in 0..MEMBERS_PER_HAVIP {
                table
                    .set_member(view.id, i, Member::default())
                    .map_err(table_err)?;
            }
            report.havips_removed += 1;
            report.owners_removed += 1;
        }
    }
    for h in &desired.havips {
        let remote = remote_owners.get(&h.key).filter(|_| vtep_ifindex != 0);
        let remote = remote.map(|r| RemoteOwner {
            havip_id: h.id,
            ..*r
        });
        match table.find(&h.key) {
            None => {
                create_havip(maps, &table, h, remote.as_ref(), vtep_ifindex, &mut report)?;
            }
            Some(mut view) => {
                if view.id != h.id {
                    // Same key, new id (the HaVip was re-created): members
                    // move to the new id's row below; the owner word stays.
                    for i in 0..MEMBERS_PER_HAVIP {
                        let m = table.member(view.id, i);
                        table.set_member(h.id, i, m).map_err(table_err)?;
                    }
                    table.set_id(view.pos, h.id);
                    view.id = h.id;
                    report.havips_set += 1;
                    report.owners_fixed += 1;
                }
                sync_members(&table, &view, h, &mut report)?;
                // Members may have moved or been freed in place.
                table.refresh_copy(view.pos);
                settle_owner(maps, &table, h, remote, &mut report)?;
            }
        }
    }

    // The table holds the wanted HaVips only now: the filters narrow.
    let narrowed = havip_filters(want_keys.iter());
    if narrowed != filters {
        set_ports(maps, &port_infos(desired, &narrowed), &mut report)?;
    }

    // Bindings last: a port is a member before a claim from it can pass
    // the binding check.
    for (key, entry) in &want_bindings {
        report.bindings_set += put_if_changed(&mut maps.bindings, names::BINDINGS, key, entry)?;
    }

    eip::reconcile_eips(maps, desired, &mut report)?;
    maps.config
        .set(0, desired.config, 0)
        .map_err(err(names::CONFIG))?;
    Ok(report)
}

/// Each vSwitch's HaVip filter (`PortInfo::havip_filter`) over `keys`.
fn havip_filters<'a>(keys: impl Iterator<Item = &'a HavipKey>) -> BTreeMap<u32, u64> {
    let mut filters = BTreeMap::new();
    for key in keys {
        *filters.entry(key.vswitch_id).or_insert(0) |= havip_filter_bits(key.addr);
    }
    filters
}

/// The `PORTS` values of the desired ports, with their vSwitch's filter.
fn port_infos(desired: &Desired, filters: &BTreeMap<u32, u64>) -> BTreeMap<u32, PortInfo> {
    desired
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
                    havip_filter: filters.get(&p.vswitch_id).copied().unwrap_or(0),
                    ..PortInfo::default()
                },
            )
        })
        .collect()
}

/// Writes the entries of `want` that differ from `PORTS`/`PORTS_HIGH`
/// (below `MAX_PORTS` in the array, the rest in the hash).
fn set_ports(
    maps: &mut Maps,
    want: &BTreeMap<u32, PortInfo>,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    for (ifindex, info) in want {
        if *ifindex < MAX_PORTS {
            if maps.ports.get(ifindex, 0).ok().as_ref() != Some(info) {
                maps.ports
                    .set(*ifindex, info, 0)
                    .map_err(err(names::PORTS))?;
                report.ports_set += 1;
            }
        } else {
            report.ports_set +=
                put_if_changed(&mut maps.ports_high, names::PORTS_HIGH, ifindex, info)?;
        }
    }
    Ok(())
}

/// A HaVip new to the table: its stats slot zeroed (it may have served a
/// deleted one), members written, then the slot with its first owner word
/// (initial owner, or the remote owner from the shared state).
fn create_havip(
    maps: &mut Maps,
    table: &HavipTable,
    h: &DesiredHavip,
    remote: Option<&RemoteOwner>,
    vtep_ifindex: u32,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let cpus = aya::util::nr_cpus().map_or(1, |n| n);
    let zero = aya::maps::PerCpuValues::try_from(vec![TrafficCounter::default(); cpus])
        .map_err(err(names::HAVIP_STATS))?;
    maps.havip_stats
        .set(h.id, zero, 0)
        .map_err(err(names::HAVIP_STATS))?;
    if h.bindings.len() > REMOTE_MEMBER_FIRST as usize {
        return Err(table_err(TableError::TooManyMembers {
            key: h.key,
            count: h.bindings.len(),
        }));
    }
    for i in 0..MEMBERS_PER_HAVIP {
        let m = h
            .bindings
            .get(i as usize)
            .map_or_else(Member::default, |b| Member {
                ifindex: b.ifindex,
                mac: b.mac,
                flags: 0,
                vtep: [0; 4],
            });
        table.set_member(h.id, i, m).map_err(table_err)?;
    }
    let word = if let Some(r) = remote {
        let epoch = u32::try_from(r.epoch)
            .map_err(|_| table_err(TableError::EpochRange { epoch: r.epoch }))?;
        table
            .set_member(
                h.id,
                REMOTE_MEMBER_FIRST,
                Member {
                    ifindex: vtep_ifindex,
                    mac: r.mac,
                    flags: owner_flags::REMOTE,
                    vtep: r.vtep,
                },
            )
            .map_err(table_err)?;
        owner_word::pack(epoch, 0, REMOTE_MEMBER_FIRST as u16 + 1)
    } else {
        let initial = h
            .initial_owner
            .and_then(|o| h.bindings.iter().position(|b| *b == o));
        match initial {
            Some(i) => owner_word::pack(1, owner_flags::BY_CONTROL, i as u16 + 1),
            None => owner_word::pack(0, owner_flags::BY_CONTROL, 0),
        }
    };
    table.insert(h.key, h.id, word).map_err(table_err)?;
    report.havips_set += 1;
    report.owners_created += 1;
    report.remote_owners_installed += usize::from(remote.is_some());
    Ok(())
}

/// Makes the local members (slots 0..`REMOTE_MEMBER_FIRST`) of an existing
/// HaVip equal its bindings without moving any member that stays: the
/// owner word names a member by index. A member whose port came back under
/// a new ifindex (same MAC) is rewritten in place, so an owner behind it
/// stays the owner (same epoch). An unbound member that is the owner is
/// first cleared from the owner word (compare-and-swap, epoch + 1), then
/// freed; if a claim wins that swap, the member is freed on a later pass.
fn sync_members(
    table: &HavipTable,
    view: &RowView,
    h: &DesiredHavip,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    if h.bindings.len() > REMOTE_MEMBER_FIRST as usize {
        return Err(table_err(TableError::TooManyMembers {
            key: h.key,
            count: h.bindings.len(),
        }));
    }
    let id = view.id;
    let mut have: Vec<Member> = (0..REMOTE_MEMBER_FIRST)
        .map(|i| table.member(id, i))
        .collect();
    let mut keep = vec![false; have.len()];
    let mut todo = Vec::new();
    for b in &h.bindings {
        match have
            .iter()
            .position(|m| m.ifindex == b.ifindex && m.mac == b.mac)
        {
            Some(i) => keep[i] = true,
            None => todo.push(*b),
        }
    }
    // Same MAC on a new ifindex: the member moves in place.
    let owner_index = u32::from(owner_word::member(table.owner_word(view.pos)));
    let mut fresh = Vec::new();
    for b in todo {
        let moved = (0..have.len()).find(|i| {
            !keep[*i]
                && have[*i].ifindex != 0
                && have[*i].mac == b.mac
                && !h.bindings.iter().any(|o| o.ifindex == have[*i].ifindex)
        });
        match moved {
            Some(i) => {
                have[i].ifindex = b.ifindex;
                table.set_member(id, i as u32, have[i]).map_err(table_err)?;
                keep[i] = true;
                report.owners_moved += usize::from(owner_index == i as u32 + 1);
            }
            None => fresh.push(b),
        }
    }
    // Members no longer bound.
    for i in 0..have.len() {
        if keep[i] || have[i].ifindex == 0 {
            continue;
        }
        let now = table.owner_word(view.pos);
        if u32::from(owner_word::member(now)) == i as u32 + 1 {
            let cleared = owner_word::pack(
                owner_word::epoch(now).wrapping_add(1),
                owner_flags::BY_CONTROL,
                0,
            );
            if !table.cas_owner(view.pos, now, cleared) {
                // A claim landed: decide again on the next pass.
                report.owners_kept += 1;
                continue;
            }
            report.owners_cleared += 1;
        }
        have[i] = Member::default();
        table.set_member(id, i as u32, have[i]).map_err(table_err)?;
    }
    // New bindings into free slots, never the one the owner word names.
    for b in fresh {
        let now = u32::from(owner_word::member(table.owner_word(view.pos)));
        let Some(i) = (0..have.len()).find(|i| have[*i].ifindex == 0 && *i as u32 + 1 != now)
        else {
            return Err(table_err(TableError::NoMemberSlot { key: h.key }));
        };
        have[i] = Member {
            ifindex: b.ifindex,
            mac: b.mac,
            flags: 0,
            vtep: [0; 4],
        };
        table.set_member(id, i as u32, have[i]).map_err(table_err)?;
    }
    Ok(())
}

/// The owner of an existing HaVip: a newer remote owner is installed; an
/// owner word naming a freed member is cleared; a HaVip without owner gets
/// its initial owner. Every write is a compare-and-swap from the word read
/// here ([`move_owner`]).
fn settle_owner(
    maps: &mut Maps,
    table: &HavipTable,
    h: &DesiredHavip,
    remote: Option<RemoteOwner>,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let Some(view) = table.find(&h.key) else {
        return Ok(());
    };
    let epoch = u64::from(owner_word::epoch(view.word));
    if let Some(r) = remote.filter(|r| r.epoch > epoch) {
        if install_remote_owner(maps, h.key, r)? == Installed::Installed {
            report.remote_owners_installed += 1;
        }
        return Ok(());
    }
    let index = u32::from(owner_word::member(view.word));
    let member = (index != 0).then(|| table.member(view.id, index - 1));
    if member.is_some_and(|m| m.flags & owner_flags::REMOTE != 0 && m.ifindex != 0) {
        // Managed from the shared state; no local binding to check.
        return Ok(());
    }
    let has_owner = member.is_some_and(|m| m.ifindex != 0);
    if has_owner {
        return Ok(());
    }
    let mut next_epoch = owner_word::epoch(view.word);
    let mut cleared = false;
    if index != 0 {
        // Names a freed member: no owner, said explicitly.
        next_epoch = next_epoch.wrapping_add(1);
        cleared = true;
    }
    let initial = h
        .initial_owner
        .filter(|o| h.bindings.contains(o))
        .and_then(|o| table.local_member(view.id, o.ifindex, o.mac));
    let new = match initial {
        Some(i) => owner_word::pack(
            next_epoch.wrapping_add(1),
            owner_flags::BY_CONTROL,
            i as u16 + 1,
        ),
        None if cleared => owner_word::pack(next_epoch, owner_flags::BY_CONTROL, 0),
        None => return Ok(()),
    };
    if move_owner(table, &view, new) {
        report.owners_cleared += usize::from(cleared);
        report.owners_created += usize::from(initial.is_some());
    } else {
        report.owners_kept += 1;
    }
    Ok(())
}
