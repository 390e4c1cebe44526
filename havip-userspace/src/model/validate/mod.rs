//! The validation core: every operation, from the API, `havipctl` or the TOML
//! seed, is checked here against the product's limits and quotas, as a pure
//! function over a [`State`] snapshot (no I/O).
//!
//! [`apply`] returns the [`Change`] (records to write or delete) an accepted
//! operation makes; a refused operation returns an [`OpError`] and changes
//! nothing. The store commits a `Change` in one write transaction.
//!
//! # Reserved addresses
//! In a vSwitch CIDR `N/len` (len ≤ 29) a HaVip can never take
//! - the network address `N`,
//! - the first host address `N+1` (the vSwitch gateway),
//! - the last address (broadcast).
//!
//! Allocation picks the lowest address that is neither reserved nor used by
//! another HaVip of the vSwitch nor by an EIP.

//!
//! The checks are split by resource: [`network`] (VPC, vSwitch),
//! [`compute`] (instance, ENI, uplink), [`havip`] (HaVip and its bindings),
//! [`eip`], [`route`], [`quota`] (quotas and observed owners).

mod compute;
mod eip;
mod havip;
mod network;
mod quota;
mod route;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, net::Ipv4Addr};

use havip_common::MAX_HAVIPS;

use super::{
    error::{OpError, ResourceKind},
    net::{Ipv4Cidr, MacAddr},
    op::Op,
    resource::{Eip, Eni, HaVip, Instance, Meta, ObservedOwner, VSwitch, Vpc},
    state::{Change, Record, RecordKey, RecordKind, State},
};

/// Longest vSwitch/VPC prefix: leaves at least 5 addresses for HaVips.
pub const MAX_PREFIX_LEN: u8 = 29;
/// Upper bound for the route quota.
pub const MAX_ROUTES_PER_VPC: usize = 1000;
/// Longest resource id.
pub const MAX_ID_LEN: usize = 64;
/// Longest HaVip name (characters).
pub const MAX_NAME_LEN: usize = 128;
/// Longest HaVip description (characters).
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// An accepted operation: what to write, and the resource it created or
/// changed (for the API's reply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub change: Change,
    pub subject: Option<RecordKey>,
}

/// Validates `op` against `state` and returns the change it makes.
///
/// # Errors
/// The [`OpError`] naming the refused limit or conflict; nothing changes.
pub fn apply(state: &State, op: &Op) -> Result<Applied, OpError> {
    let mut cx = Cx {
        state,
        change: Change::default(),
        meta: state.meta,
    };
    let subject = cx.run(op)?;
    if cx.meta != state.meta {
        cx.change.put(Record::Meta(cx.meta));
    }
    Ok(Applied {
        change: cx.change,
        subject: Some(subject),
    })
}

/// Applies `op` to a copy of `state` and returns it (convenience for tests
/// and for chains of operations; the store uses [`apply`]).
///
/// # Errors
/// As [`apply`].
pub fn apply_to(state: &State, op: &Op) -> Result<State, OpError> {
    let applied = apply(state, op)?;
    let mut next = state.clone();
    next.apply_change(&applied.change);
    Ok(next)
}

struct Cx<'a> {
    state: &'a State,
    change: Change,
    meta: Meta,
}

/// `kind` has no `id`.
pub(crate) fn not_found(kind: ResourceKind, id: &str) -> OpError {
    OpError::NotFound {
        kind,
        id: shown_id(id),
    }
}

/// A caller's id as an error repeats it: at most [`MAX_ID_LEN`] characters
/// (no resource has a longer id; a 64 KiB one would fill logs and replies).
fn shown_id(id: &str) -> String {
    if id.chars().count() > MAX_ID_LEN {
        let head: String = id.chars().take(MAX_ID_LEN).collect();
        format!("{head}…")
    } else {
        id.to_owned()
    }
}

/// The `kind` resource `id` of `map`, or `NotFound`.
/// `Cx` methods that look a resource up by id: `name: map -> Type` reads
/// `state.map` and refuses an unknown id as `NotFound` of kind `Type`.
macro_rules! lookups {
    ($($name:ident: $map:ident -> $ty:ident,)*) => {$(
        fn $name(&self, id: &str) -> Result<&'a $ty, OpError> {
            find(&self.state.$map, ResourceKind::$ty, id)
        }
    )*};
}

/// The id of the first resource in `map` that `uses` holds, with its kind:
/// what a delete is refused for.
fn first_in<T>(
    kind: ResourceKind,
    map: &BTreeMap<String, T>,
    uses: impl Fn(&T) -> bool,
) -> Option<(ResourceKind, String)> {
    map.iter()
        .find(|(_, v)| uses(v))
        .map(|(id, _)| (kind, id.clone()))
}

/// Checks a caller-given id: well formed and not taken by another
/// resource of `kind`.
fn fresh_id<T>(
    id: &str,
    kind: ResourceKind,
    taken: &BTreeMap<String, T>,
) -> Result<String, OpError> {
    check_id(id)?;
    if taken.contains_key(id) {
        return Err(OpError::AlreadyExists {
            kind,
            id: id.to_owned(),
        });
    }
    Ok(id.to_owned())
}

fn find<'m, T>(
    map: &'m BTreeMap<String, T>,
    kind: ResourceKind,
    id: &str,
) -> Result<&'m T, OpError> {
    map.get(id).ok_or_else(|| not_found(kind, id))
}

/// Checks a resource id.
///
/// # Errors
/// [`OpError::InvalidId`].
pub fn check_id(id: &str) -> Result<(), OpError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(OpError::InvalidId { id: shown_id(id) })
    }
}

/// Checks a Linux interface name.
///
/// # Errors
/// [`OpError::InvalidInterface`].
pub fn check_interface(name: &str) -> Result<(), OpError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        Err(OpError::InvalidInterface {
            name: name.to_owned(),
        })
    }
}

fn check_mac(what: &str, mac: MacAddr) -> Result<(), OpError> {
    if mac.is_zero() || mac.is_group() {
        Err(OpError::InvalidMac {
            what: what.to_owned(),
            mac,
        })
    } else {
        Ok(())
    }
}

fn check_prefix(what: &str, cidr: Ipv4Cidr) -> Result<(), OpError> {
    if cidr.prefix_len() > MAX_PREFIX_LEN {
        return Err(OpError::InvalidCidr {
            what: what.to_owned(),
            cidr,
            reason: format!("the prefix must be /{MAX_PREFIX_LEN} or shorter"),
        });
    }
    Ok(())
}

/// Whether `addr` is reserved in a vSwitch CIDR (see the module docs).
pub fn is_reserved(cidr: Ipv4Cidr, addr: Ipv4Addr) -> bool {
    let net = u32::from(cidr.network());
    let a = u32::from(addr);
    a == net || a == net.wrapping_add(1) || addr == cidr.broadcast()
}

/// Checks a free-text attribute (HaVip name, description): at most `max`
/// characters, no control characters.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), OpError> {
    let reason = if value.chars().count() > max {
        format!("at most {max} characters")
    } else if value.chars().any(char::is_control) {
        "no control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(OpError::InvalidText {
        field,
        value: value.to_owned(),
        reason,
    })
}

/// Whether two ENIs' interfaces are on the same host: yes unless both
/// hosts are known and differ (`None` = the single host).
fn same_host(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// `owner` with no owner (the epoch kept).
fn cleared(owner: &ObservedOwner) -> ObservedOwner {
    ObservedOwner {
        ifindex: 0,
        mac: MacAddr::default(),
        ..*owner
    }
}

impl<'a> Cx<'a> {
    fn run(&mut self, op: &Op) -> Result<RecordKey, OpError> {
        match op {
            Op::CreateVpc(o) => self.create_vpc(o),
            Op::DeleteVpc(o) => self.delete_vpc(o),
            Op::CreateVSwitch(o) => self.create_vswitch(o),
            Op::DeleteVSwitch(o) => self.delete_vswitch(o),
            Op::CreateInstance(o) => self.create_instance(o),
            Op::DeleteInstance(o) => self.delete_instance(o),
            Op::CreateEni(o) => self.create_eni(o),
            Op::DeleteEni(o) => self.delete_eni(o),
            Op::ModifyEni(o) => self.modify_eni(o),
            Op::CreateUplink(o) => self.create_uplink(o),
            Op::DeleteUplink(o) => self.delete_uplink(o),
            Op::CreateHaVip(o) => self.create_havip(o),
            Op::DeleteHaVip(o) => self.delete_havip(o),
            Op::ModifyHaVipAttribute(o) => self.modify_havip_attribute(o),
            Op::AssociateHaVip(o) => self.associate(o),
            Op::UnassociateHaVip(o) => self.unassociate(o),
            Op::SetInitialOwner(o) => self.set_initial_owner(o),
            Op::CreateEip(o) => self.create_eip(o),
            Op::DeleteEip(o) => self.delete_eip(o),
            Op::AssociateEip(o) => self.associate_eip(o),
            Op::UnassociateEip(o) => self.unassociate_eip(o),
            Op::CreateRoute(o) => self.create_route(o),
            Op::DeleteRoute(o) => self.delete_route(o),
            Op::SetQuota(o) => self.set_quota(o),
            Op::RecordOwner(o) => self.record_owner(o),
        }
    }

    lookups! {
        vpc: vpcs -> Vpc,
        vswitch: vswitches -> VSwitch,
        havip: havips -> HaVip,
        eip: eips -> Eip,
        instance: instances -> Instance,
        eni: enis -> Eni,
    }

    /// Puts `record` in the change; returns its key (the subject).
    fn put(&mut self, record: Record) -> RecordKey {
        let key = record.key();
        self.change.put(record);
        key
    }

    /// Deletes record `kind` `id` in the change; returns its key (the
    /// subject).
    fn delete(&mut self, kind: RecordKind, id: &str) -> RecordKey {
        self.change.delete(kind, id);
        RecordKey::new(kind, id)
    }

    /// The caller's id ([`fresh_id`]) or, without one, the next
    /// free `<prefix>-NNNNNN`.
    fn new_id<T>(
        &mut self,
        id: Option<&str>,
        prefix: &str,
        kind: ResourceKind,
        taken: &BTreeMap<String, T>,
    ) -> Result<String, OpError> {
        if let Some(id) = id {
            return fresh_id(id, kind, taken);
        }
        loop {
            self.meta.next_id += 1;
            let id = format!("{prefix}-{:06}", self.meta.next_id);
            if !taken.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    /// Who already uses interface `name` on `host`: an uplink (uplinks
    /// are on every host), or an ENI on the same host. Interface names are
    /// per host (two hypervisors both have a `tap0`): ENIs on two different
    /// known hosts never conflict; an ENI without a host (single host,
    /// redb) conflicts with every ENI of that name, so one host's names
    /// stay unique as before.
    fn interface_user(&self, name: &str, host: Option<&str>) -> Option<(ResourceKind, String)> {
        if let Some(u) = self.state.uplinks.get(name) {
            return Some((ResourceKind::Uplink, u.interface.clone()));
        }
        self.state
            .enis
            .values()
            .find(|e| e.interface == name && same_host(e.host.as_deref(), host))
            .map(|e| (ResourceKind::Eni, e.id.clone()))
    }

    /// Clears the observed owner of `h` (epoch kept) when `is_gone` says
    /// the ENI holding it goes away with this change.
    fn clear_owner_if(&mut self, h: &HaVip, is_gone: impl Fn(&Eni) -> bool) {
        let state = self.state;
        if let Some(owner) = state.owners.get(&h.id) {
            if owner.has_owner() && state.eni_by_mac(owner.mac).is_some_and(is_gone) {
                self.change.put(Record::Owner {
                    havip: h.id.clone(),
                    owner: cleared(owner),
                });
            }
        }
    }
}

/// Lowest address of `vsw` that is neither reserved nor used by a HaVip of
/// the vSwitch nor by an EIP. Walks the (ascending) used addresses once.
fn allocate_address(state: &State, vsw: &VSwitch) -> Option<Ipv4Addr> {
    let net = u32::from(vsw.cidr.network());
    let last = u32::from(vsw.cidr.broadcast()).checked_sub(1)?;
    let first = net.checked_add(2)?;
    // Fast path: HaVip addresses dense from the first usable one, no EIP in
    // the vSwitch (the usual case when addresses are allocated).
    let (count, max) = state.havip_address_span(&vsw.id);
    let eip_inside = state.eips.values().any(|e| vsw.cidr.contains(e.address));
    if !eip_inside {
        match max.map(u32::from) {
            None => return (first <= last).then(|| Ipv4Addr::from(first)),
            Some(m) if m >= first && (m - first) as usize + 1 == count => {
                let next = m.checked_add(1)?;
                return (next <= last).then(|| Ipv4Addr::from(next));
            }
            Some(_) => {}
        }
    }
    let mut used: Vec<u32> = state
        .havip_addresses(&vsw.id)
        .chain(
            state
                .eips
                .values()
                .map(|e| e.address)
                .filter(|a| vsw.cidr.contains(*a)),
        )
        .map(u32::from)
        .collect();
    // HaVip addresses come sorted; EIPs inside a vSwitch are rare.
    if !used.is_sorted() {
        used.sort_unstable();
    }
    let mut next = first;
    for a in used {
        if a > next {
            break;
        }
        next = next.max(a.checked_add(1)?);
    }
    (next <= last).then(|| Ipv4Addr::from(next))
}

/// Lowest slot below `MAX_HAVIPS` missing from the ascending `used`.
fn first_free_slot(
    mut used: impl DoubleEndedIterator<Item = u32> + ExactSizeIterator,
) -> Option<u32> {
    // Fast path: slots 0..n all in use.
    let n = used.len();
    match used.next_back() {
        None => return Some(0),
        Some(last) if last as usize + 1 == n => {
            let next = last.checked_add(1)?;
            return (next < MAX_HAVIPS).then_some(next);
        }
        Some(_) => {}
    }
    let mut next = 0u32;
    for s in used {
        if s > next {
            break;
        }
        next = s.saturating_add(1);
    }
    (next < MAX_HAVIPS).then_some(next)
}
