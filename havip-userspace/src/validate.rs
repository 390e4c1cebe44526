//! The validation core: every operation, from the API, `havipctl` or the TOML
//! seed, is checked here against the product's limits and quotas, as a pure
//! function over a [`State`] snapshot (no I/O).
//!
//! [`apply`] returns the [`Change`] (records to write or delete) an accepted
//! operation makes; a refused operation returns an [`ApiError`] and changes
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

use std::{fmt, net::Ipv4Addr};

use havip_common::{limits, MAX_HAVIPS};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{
    BindingKind, Change, Eip, Eni, HaVip, Instance, Ipv4Cidr, MacAddr, Meta, ObservedOwner, Quotas,
    Record, RecordKey, RecordKind, RouteEntry, State, Uplink, VSwitch, Vpc,
};

/// Longest vSwitch/VPC prefix: leaves at least 5 addresses for HaVips.
pub const MAX_PREFIX_LEN: u8 = 29;
/// Upper bound for the route quota.
pub const MAX_ROUTES_PER_VPC: usize = 1000;
/// Longest resource id.
pub const MAX_ID_LEN: usize = 64;

/// Kind of resource named in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResourceKind {
    Vpc,
    VSwitch,
    Instance,
    Eni,
    Uplink,
    HaVip,
    Eip,
    Route,
    /// A binding of a HaVip to an instance or ENI.
    Binding,
}

impl ResourceKind {
    /// Name used in error codes (`NotFound.<name>`).
    pub const fn name(self) -> &'static str {
        match self {
            ResourceKind::Vpc => "Vpc",
            ResourceKind::VSwitch => "VSwitch",
            ResourceKind::Instance => "Instance",
            ResourceKind::Eni => "Eni",
            ResourceKind::Uplink => "Uplink",
            ResourceKind::HaVip => "HaVip",
            ResourceKind::Eip => "Eip",
            ResourceKind::Route => "Route",
            ResourceKind::Binding => "Binding",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Vpc => "VPC",
            ResourceKind::VSwitch => "vSwitch",
            ResourceKind::Instance => "instance",
            ResourceKind::Eni => "ENI",
            ResourceKind::Uplink => "uplink",
            ResourceKind::HaVip => "HaVip",
            ResourceKind::Eip => "EIP",
            ResourceKind::Route => "route entry",
            ResourceKind::Binding => "binding",
        })
    }
}

impl From<BindingKind> for ResourceKind {
    fn from(k: BindingKind) -> Self {
        match k {
            BindingKind::Instance => ResourceKind::Instance,
            BindingKind::Eni => ResourceKind::Eni,
        }
    }
}

/// Every refusal of the control plane. [`ApiError::code`] is the stable,
/// machine-readable code; `Display` is the message naming the limit or
/// conflict.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApiError {
    #[error("{kind} {id:?} does not exist")]
    NotFound { kind: ResourceKind, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: ResourceKind, id: String },
    #[error("invalid id {id:?}: ids are 1-{MAX_ID_LEN} characters of [A-Za-z0-9._-]")]
    InvalidId { id: String },
    #[error("invalid interface name {name:?}: 1-15 characters, no '/', ':' or whitespace")]
    InvalidInterface { name: String },
    #[error("invalid MAC {mac} for {what}: must be a non-zero unicast address")]
    InvalidMac { what: String, mac: MacAddr },
    #[error("invalid CIDR {cidr} for {what}: {reason}")]
    InvalidCidr {
        what: String,
        cidr: Ipv4Cidr,
        reason: String,
    },
    #[error("address {address} is outside vSwitch {vswitch:?} ({cidr})")]
    AddressOutsideVSwitch {
        address: Ipv4Addr,
        vswitch: String,
        cidr: Ipv4Cidr,
    },
    #[error("address {address} is reserved in vSwitch {vswitch:?} ({cidr}): the network address, the first address (gateway) and the broadcast address are never given to a HaVip")]
    AddressReserved {
        address: Ipv4Addr,
        vswitch: String,
        cidr: Ipv4Cidr,
    },
    #[error("invalid address {address}: {reason}")]
    InvalidAddress { address: Ipv4Addr, reason: String },
    #[error("address {address} is already used by {kind} {id:?}")]
    AddressInUse {
        address: Ipv4Addr,
        kind: ResourceKind,
        id: String,
    },
    #[error("invalid quota {name} = {value}: must be at most {max}")]
    InvalidQuota {
        name: &'static str,
        value: usize,
        max: usize,
    },
    #[error("invalid route destination {destination}: it lies inside vSwitch {vswitch:?} ({cidr}) of the VPC")]
    InvalidRouteDestination {
        destination: Ipv4Cidr,
        vswitch: String,
        cidr: Ipv4Cidr,
    },
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("HaVip {havip:?} is bound to {bindings:?}: unassociate it first")]
    HaVipBound {
        havip: String,
        bindings: Vec<String>,
    },
    #[error("HaVip {havip:?} is fronted by EIP {eip:?}: unassociate the EIP first")]
    HaVipHasEip { havip: String, eip: String },
    #[error("HaVip {havip:?} is the next hop of route entry {route:?}: delete the route first")]
    HaVipIsRouteNextHop { havip: String, route: String },
    #[error("HaVip {havip:?} is bound to {existing} members; it cannot also be bound to {requested} {id:?} (instances and ENIs are never mixed on one HaVip)")]
    MixedBindingKinds {
        havip: String,
        existing: BindingKind,
        requested: BindingKind,
        id: String,
    },
    #[error("{kind} {id:?} is in vSwitch {member_vswitch:?} but HaVip {havip:?} is in vSwitch {havip_vswitch:?}: a HaVip is bound only within its vSwitch")]
    DifferentVSwitch {
        havip: String,
        havip_vswitch: String,
        kind: ResourceKind,
        id: String,
        member_vswitch: String,
    },
    #[error("{kind} {id:?} is in VPC {actual:?}, not VPC {expected:?}")]
    DifferentVpc {
        kind: ResourceKind,
        id: String,
        expected: String,
        actual: String,
    },
    #[error("HaVip {havip:?} is already bound to {kind} {id:?}")]
    AlreadyBound {
        havip: String,
        kind: ResourceKind,
        id: String,
    },
    #[error("HaVip {havip:?} is not bound to {kind} {id:?}")]
    NotBound {
        havip: String,
        kind: ResourceKind,
        id: String,
    },
    #[error("CIDR {cidr} of vSwitch {id:?} overlaps vSwitch {other:?} ({other_cidr})")]
    CidrOverlap {
        id: String,
        cidr: Ipv4Cidr,
        other: String,
        other_cidr: Ipv4Cidr,
    },
    #[error("MAC {mac} is already used by ENI {eni:?}")]
    MacInUse { mac: MacAddr, eni: String },
    #[error("interface {interface:?} is already used by {kind} {id:?}")]
    InterfaceInUse {
        interface: String,
        kind: ResourceKind,
        id: String,
    },
    #[error("instance {instance:?} already has primary ENI {eni:?}")]
    PrimaryEniExists { instance: String, eni: String },
    #[error("a primary ENI must be attached to an instance (ENI {eni:?})")]
    PrimaryEniDetached { eni: String },
    #[error("EIP {eip:?} is associated with HaVip {havip:?}")]
    EipAssociated { eip: String, havip: String },
    #[error("EIP {eip:?} is not associated with any HaVip")]
    EipNotAssociated { eip: String },
    #[error("route entry {existing:?} in VPC {vpc:?} already has destination {destination}")]
    RouteDestinationExists {
        vpc: String,
        destination: Ipv4Cidr,
        existing: String,
    },
    #[error("master {member:?} is not bound to HaVip {havip:?}")]
    MasterNotBound { havip: String, member: String },
    #[error("limit exceeded: HaVip {havip:?} already has {limit} bindings (at most {limit} instances or ENIs per HaVip)")]
    BindingsPerHaVip { havip: String, limit: usize },
    #[error("limit exceeded: instance {instance:?} already holds {limit} HaVips {havips:?} (at most {limit} HaVips per instance)")]
    HaVipsPerInstance {
        instance: String,
        limit: usize,
        havips: Vec<String>,
    },
    #[error("quota exceeded: the account already has {quota} HaVips (quota havips_per_account = {quota})")]
    HaVipsPerAccount { quota: usize },
    #[error(
        "quota exceeded: VPC {vpc:?} already has {used} HaVips (quota havips_per_vpc = {quota})"
    )]
    HaVipsPerVpc {
        vpc: String,
        used: usize,
        quota: usize,
    },
    #[error("quota exceeded: VPC {vpc:?} already has {used} route entries with a HaVip next hop (quota havip_routes_per_vpc = {quota})")]
    HaVipRoutesPerVpc {
        vpc: String,
        used: usize,
        quota: usize,
    },
    #[error("no free address left in vSwitch {vswitch:?} ({cidr})")]
    NoFreeAddress { vswitch: String, cidr: Ipv4Cidr },
    #[error("no free data-plane slot: {max} HaVips exist on this host")]
    NoFreeSlot { max: u32 },
    #[error("no free data-plane vSwitch id")]
    NoFreeVSwitchId,
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable error code, e.g. `QuotaExceeded.HaVipsPerVpc`.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            NotFound { kind, .. } => match kind {
                ResourceKind::Vpc => "NotFound.Vpc",
                ResourceKind::VSwitch => "NotFound.VSwitch",
                ResourceKind::Instance => "NotFound.Instance",
                ResourceKind::Eni => "NotFound.Eni",
                ResourceKind::Uplink => "NotFound.Uplink",
                ResourceKind::HaVip => "NotFound.HaVip",
                ResourceKind::Eip => "NotFound.Eip",
                ResourceKind::Route => "NotFound.Route",
                ResourceKind::Binding => "NotFound.Binding",
            },
            AlreadyExists { .. } => "Conflict.AlreadyExists",
            InvalidId { .. } => "InvalidParameter.Id",
            InvalidInterface { .. } => "InvalidParameter.Interface",
            InvalidMac { .. } => "InvalidParameter.Mac",
            InvalidCidr { .. } => "InvalidParameter.Cidr",
            AddressOutsideVSwitch { .. } => "InvalidParameter.AddressOutsideVSwitch",
            AddressReserved { .. } => "InvalidParameter.AddressReserved",
            InvalidAddress { .. } => "InvalidParameter.Address",
            AddressInUse { .. } => "Conflict.AddressInUse",
            InvalidQuota { .. } => "InvalidParameter.Quota",
            InvalidRouteDestination { .. } => "InvalidParameter.RouteDestination",
            InvalidBody(_) => "InvalidParameter.Body",
            HaVipBound { .. } => "Conflict.HaVipBound",
            HaVipHasEip { .. } => "Conflict.HaVipHasEip",
            HaVipIsRouteNextHop { .. } => "Conflict.HaVipIsRouteNextHop",
            MixedBindingKinds { .. } => "Conflict.MixedBindingKinds",
            DifferentVSwitch { .. } => "Conflict.DifferentVSwitch",
            DifferentVpc { .. } => "Conflict.DifferentVpc",
            AlreadyBound { .. } => "Conflict.AlreadyBound",
            NotBound { .. } => "NotFound.Binding",
            CidrOverlap { .. } => "Conflict.CidrOverlap",
            MacInUse { .. } => "Conflict.MacInUse",
            InterfaceInUse { .. } => "Conflict.InterfaceInUse",
            PrimaryEniExists { .. } => "Conflict.PrimaryEniExists",
            PrimaryEniDetached { .. } => "InvalidParameter.PrimaryEniDetached",
            EipAssociated { .. } => "Conflict.EipAssociated",
            EipNotAssociated { .. } => "Conflict.EipNotAssociated",
            RouteDestinationExists { .. } => "Conflict.RouteDestinationExists",
            MasterNotBound { .. } => "InvalidParameter.MasterNotBound",
            BindingsPerHaVip { .. } => "LimitExceeded.BindingsPerHaVip",
            HaVipsPerInstance { .. } => "LimitExceeded.HaVipsPerInstance",
            HaVipsPerAccount { .. } => "QuotaExceeded.HaVipsPerAccount",
            HaVipsPerVpc { .. } => "QuotaExceeded.HaVipsPerVpc",
            HaVipRoutesPerVpc { .. } => "QuotaExceeded.HaVipRoutesPerVpc",
            NoFreeAddress { .. } => "InsufficientCapacity.NoFreeAddress",
            NoFreeSlot { .. } => "InsufficientCapacity.NoFreeSlot",
            NoFreeVSwitchId => "InsufficientCapacity.NoFreeVSwitchId",
            NoRoute { .. } => "NotFound.Path",
            Internal(_) => "Internal",
        }
    }

    /// HTTP status for the API: 400 invalid, 404 not found, 409 conflict and
    /// capacity, 403 limit/quota, 500 internal.
    pub fn http_status(&self) -> u16 {
        let code = self.code();
        if code.starts_with("InvalidParameter") {
            400
        } else if code.starts_with("NotFound") {
            404
        } else if code.starts_with("Conflict") || code.starts_with("InsufficientCapacity") {
            409
        } else if code.starts_with("LimitExceeded") || code.starts_with("QuotaExceeded") {
            403
        } else {
            500
        }
    }
}

/// What an operation binds or unbinds: an instance or an ENI.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub kind: BindingKind,
    pub id: String,
}

impl Member {
    /// An instance member.
    pub fn instance(id: impl Into<String>) -> Self {
        Member {
            kind: BindingKind::Instance,
            id: id.into(),
        }
    }

    /// An ENI member.
    pub fn eni(id: impl Into<String>) -> Self {
        Member {
            kind: BindingKind::Eni,
            id: id.into(),
        }
    }
}

/// Every state-changing operation of the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    CreateVpc {
        id: String,
        cidr: Ipv4Cidr,
    },
    CreateVSwitch {
        id: String,
        vpc: String,
        cidr: Ipv4Cidr,
        gateway_mac: MacAddr,
    },
    CreateInstance {
        id: String,
        vswitch: String,
    },
    CreateEni {
        id: String,
        vswitch: String,
        mac: MacAddr,
        host_interface: String,
        instance: Option<String>,
        primary: bool,
    },
    CreateUplink {
        interface: String,
        vswitch: String,
    },
    /// `id`/`address` `None` = allocated.
    CreateHaVip {
        id: Option<String>,
        vswitch: String,
        address: Option<Ipv4Addr>,
    },
    DeleteHaVip {
        id: String,
    },
    AssociateHaVip {
        havip: String,
        member: Member,
    },
    UnassociateHaVip {
        havip: String,
        member: Member,
    },
    /// Sets (or clears) the binding installed as owner while the kernel
    /// reports none. The member must be bound.
    SetInitialMaster {
        havip: String,
        member: Option<String>,
    },
    CreateEip {
        id: Option<String>,
        address: Ipv4Addr,
    },
    DeleteEip {
        id: String,
    },
    AssociateEip {
        eip: String,
        havip: String,
    },
    UnassociateEip {
        eip: String,
    },
    CreateRoute {
        id: Option<String>,
        vpc: String,
        destination: Ipv4Cidr,
        next_hop_havip: String,
    },
    DeleteRoute {
        id: String,
    },
    /// Fields left `None` keep their value.
    SetQuota {
        havips_per_account: Option<usize>,
        havips_per_vpc: Option<usize>,
        havip_routes_per_vpc: Option<usize>,
    },
    /// Records the kernel-reported owner of a HaVip (event consumer).
    RecordOwner {
        havip: String,
        owner: ObservedOwner,
    },
}

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
/// The [`ApiError`] naming the refused limit or conflict; nothing changes.
pub fn apply(state: &State, op: &Op) -> Result<Applied, ApiError> {
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
        subject,
    })
}

/// Applies `op` to a copy of `state` and returns it (convenience for tests
/// and for chains of operations; the store uses [`apply`]).
///
/// # Errors
/// As [`apply`].
pub fn apply_to(state: &State, op: &Op) -> Result<State, ApiError> {
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

fn not_found(kind: ResourceKind, id: &str) -> ApiError {
    ApiError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// Checks a resource id.
///
/// # Errors
/// [`ApiError::InvalidId`].
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidId { id: id.to_owned() })
    }
}

/// Checks a Linux interface name.
///
/// # Errors
/// [`ApiError::InvalidInterface`].
pub fn check_interface(name: &str) -> Result<(), ApiError> {
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
        Err(ApiError::InvalidInterface {
            name: name.to_owned(),
        })
    }
}

fn check_mac(what: &str, mac: MacAddr) -> Result<(), ApiError> {
    if mac.is_zero() || mac.is_group() {
        Err(ApiError::InvalidMac {
            what: what.to_owned(),
            mac,
        })
    } else {
        Ok(())
    }
}

fn check_prefix(what: &str, cidr: Ipv4Cidr) -> Result<(), ApiError> {
    if cidr.prefix_len() > MAX_PREFIX_LEN {
        return Err(ApiError::InvalidCidr {
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

impl<'a> Cx<'a> {
    fn run(&mut self, op: &Op) -> Result<Option<RecordKey>, ApiError> {
        match op {
            Op::CreateVpc { id, cidr } => self.create_vpc(id, *cidr),
            Op::CreateVSwitch {
                id,
                vpc,
                cidr,
                gateway_mac,
            } => self.create_vswitch(id, vpc, *cidr, *gateway_mac),
            Op::CreateInstance { id, vswitch } => self.create_instance(id, vswitch),
            Op::CreateEni {
                id,
                vswitch,
                mac,
                host_interface,
                instance,
                primary,
            } => self.create_eni(Eni {
                id: id.clone(),
                vswitch: vswitch.clone(),
                mac: *mac,
                host_interface: host_interface.clone(),
                instance: instance.clone(),
                primary: *primary,
            }),
            Op::CreateUplink { interface, vswitch } => self.create_uplink(interface, vswitch),
            Op::CreateHaVip {
                id,
                vswitch,
                address,
            } => self.create_havip(id.as_deref(), vswitch, *address),
            Op::DeleteHaVip { id } => self.delete_havip(id),
            Op::AssociateHaVip { havip, member } => self.associate(havip, member),
            Op::UnassociateHaVip { havip, member } => self.unassociate(havip, member),
            Op::SetInitialMaster { havip, member } => {
                self.set_initial_master(havip, member.as_deref())
            }
            Op::CreateEip { id, address } => self.create_eip(id.as_deref(), *address),
            Op::DeleteEip { id } => self.delete_eip(id),
            Op::AssociateEip { eip, havip } => self.associate_eip(eip, havip),
            Op::UnassociateEip { eip } => self.unassociate_eip(eip),
            Op::CreateRoute {
                id,
                vpc,
                destination,
                next_hop_havip,
            } => self.create_route(id.as_deref(), vpc, *destination, next_hop_havip),
            Op::DeleteRoute { id } => self.delete_route(id),
            Op::SetQuota {
                havips_per_account,
                havips_per_vpc,
                havip_routes_per_vpc,
            } => self.set_quota(*havips_per_account, *havips_per_vpc, *havip_routes_per_vpc),
            Op::RecordOwner { havip, owner } => self.record_owner(havip, *owner),
        }
    }

    fn vpc(&self, id: &str) -> Result<&'a Vpc, ApiError> {
        self.state
            .vpcs
            .get(id)
            .ok_or_else(|| not_found(ResourceKind::Vpc, id))
    }

    fn vswitch(&self, id: &str) -> Result<&'a VSwitch, ApiError> {
        self.state
            .vswitches
            .get(id)
            .ok_or_else(|| not_found(ResourceKind::VSwitch, id))
    }

    fn havip(&self, id: &str) -> Result<&'a HaVip, ApiError> {
        self.state
            .havips
            .get(id)
            .ok_or_else(|| not_found(ResourceKind::HaVip, id))
    }

    fn eip(&self, id: &str) -> Result<&'a Eip, ApiError> {
        self.state
            .eips
            .get(id)
            .ok_or_else(|| not_found(ResourceKind::Eip, id))
    }

    fn instance(&self, id: &str) -> Result<&'a Instance, ApiError> {
        self.state
            .instances
            .get(id)
            .ok_or_else(|| not_found(ResourceKind::Instance, id))
    }

    fn eni(&self, id: &str) -> Result<&'a Eni, ApiError> {
        self.state
            .enis
            .get(id)
            .ok_or_else(|| not_found(ResourceKind::Eni, id))
    }

    /// Checks an explicit id is valid and free, or names a new resource
    /// `<prefix>-<n>`.
    fn new_id(
        &mut self,
        id: Option<&str>,
        prefix: &str,
        kind: ResourceKind,
        exists: impl Fn(&str) -> bool,
    ) -> Result<String, ApiError> {
        if let Some(id) = id {
            check_id(id)?;
            if exists(id) {
                return Err(ApiError::AlreadyExists {
                    kind,
                    id: id.to_owned(),
                });
            }
            return Ok(id.to_owned());
        }
        loop {
            self.meta.next_id += 1;
            let id = format!("{prefix}-{:06}", self.meta.next_id);
            if !exists(&id) {
                return Ok(id);
            }
        }
    }

    fn interface_user(&self, name: &str) -> Option<(ResourceKind, String)> {
        if let Some(u) = self.state.uplinks.get(name) {
            return Some((ResourceKind::Uplink, u.interface.clone()));
        }
        self.state
            .enis
            .values()
            .find(|e| e.host_interface == name)
            .map(|e| (ResourceKind::Eni, e.id.clone()))
    }

    fn create_vpc(&mut self, id: &str, cidr: Ipv4Cidr) -> Result<Option<RecordKey>, ApiError> {
        let id = self.new_id(Some(id), "vpc", ResourceKind::Vpc, |i| {
            self.state.vpcs.contains_key(i)
        })?;
        check_prefix("VPC", cidr)?;
        let vpc = Vpc { id, cidr };
        let key = Record::Vpc(vpc.clone()).key();
        self.change.put(Record::Vpc(vpc));
        Ok(Some(key))
    }

    fn create_vswitch(
        &mut self,
        id: &str,
        vpc_id: &str,
        cidr: Ipv4Cidr,
        gateway_mac: MacAddr,
    ) -> Result<Option<RecordKey>, ApiError> {
        let id = self.new_id(Some(id), "vsw", ResourceKind::VSwitch, |i| {
            self.state.vswitches.contains_key(i)
        })?;
        let vpc = self.vpc(vpc_id)?;
        check_prefix("vSwitch", cidr)?;
        if !vpc.cidr.contains_cidr(cidr) {
            return Err(ApiError::InvalidCidr {
                what: format!("vSwitch {id:?}"),
                cidr,
                reason: format!("it is not inside VPC {:?} ({})", vpc.id, vpc.cidr),
            });
        }
        if let Some(other) = self
            .state
            .vswitches
            .values()
            .find(|v| v.vpc == vpc.id && v.cidr.overlaps(cidr))
        {
            return Err(ApiError::CidrOverlap {
                id,
                cidr,
                other: other.id.clone(),
                other_cidr: other.cidr,
            });
        }
        check_mac("the vSwitch gateway", gateway_mac)?;
        let dp_id = (1..=u32::MAX)
            .find(|n| self.state.vswitch_by_dp_id(*n).is_none())
            .ok_or(ApiError::NoFreeVSwitchId)?;
        let vsw = VSwitch {
            id,
            vpc: vpc.id.clone(),
            cidr,
            gateway_mac,
            dp_id,
        };
        let key = Record::VSwitch(vsw.clone()).key();
        self.change.put(Record::VSwitch(vsw));
        Ok(Some(key))
    }

    fn create_instance(&mut self, id: &str, vswitch: &str) -> Result<Option<RecordKey>, ApiError> {
        let id = self.new_id(Some(id), "i", ResourceKind::Instance, |i| {
            self.state.instances.contains_key(i)
        })?;
        self.vswitch(vswitch)?;
        let inst = Instance {
            id,
            vswitch: vswitch.to_owned(),
        };
        let key = Record::Instance(inst.clone()).key();
        self.change.put(Record::Instance(inst));
        Ok(Some(key))
    }

    fn create_eni(&mut self, eni: Eni) -> Result<Option<RecordKey>, ApiError> {
        self.new_id(Some(&eni.id), "eni", ResourceKind::Eni, |i| {
            self.state.enis.contains_key(i)
        })?;
        let vsw = self.vswitch(&eni.vswitch)?;
        check_mac(&format!("ENI {:?}", eni.id), eni.mac)?;
        check_interface(&eni.host_interface)?;
        if let Some(inst_id) = &eni.instance {
            let inst = self.instance(inst_id)?;
            let inst_vpc = self.vswitch(&inst.vswitch)?.vpc.clone();
            if inst_vpc != vsw.vpc {
                return Err(ApiError::DifferentVpc {
                    kind: ResourceKind::Eni,
                    id: eni.id.clone(),
                    expected: inst_vpc,
                    actual: vsw.vpc.clone(),
                });
            }
            if eni.primary {
                if let Some(p) = self
                    .state
                    .enis
                    .values()
                    .find(|e| e.primary && e.instance.as_deref() == Some(inst_id))
                {
                    return Err(ApiError::PrimaryEniExists {
                        instance: inst_id.clone(),
                        eni: p.id.clone(),
                    });
                }
            }
        } else if eni.primary {
            return Err(ApiError::PrimaryEniDetached {
                eni: eni.id.clone(),
            });
        }
        if let Some(other) = self.state.eni_by_mac(eni.mac) {
            return Err(ApiError::MacInUse {
                mac: eni.mac,
                eni: other.id.clone(),
            });
        }
        if let Some((kind, id)) = self.interface_user(&eni.host_interface) {
            return Err(ApiError::InterfaceInUse {
                interface: eni.host_interface.clone(),
                kind,
                id,
            });
        }
        let key = Record::Eni(eni.clone()).key();
        self.change.put(Record::Eni(eni));
        Ok(Some(key))
    }

    fn create_uplink(
        &mut self,
        interface: &str,
        vswitch: &str,
    ) -> Result<Option<RecordKey>, ApiError> {
        check_interface(interface)?;
        if self.state.uplinks.contains_key(interface) {
            return Err(ApiError::AlreadyExists {
                kind: ResourceKind::Uplink,
                id: interface.to_owned(),
            });
        }
        if let Some((kind, id)) = self.interface_user(interface) {
            return Err(ApiError::InterfaceInUse {
                interface: interface.to_owned(),
                kind,
                id,
            });
        }
        self.vswitch(vswitch)?;
        let up = Uplink {
            interface: interface.to_owned(),
            vswitch: vswitch.to_owned(),
        };
        let key = Record::Uplink(up.clone()).key();
        self.change.put(Record::Uplink(up));
        Ok(Some(key))
    }

    fn address_user(&self, vswitch: &str, addr: Ipv4Addr) -> Option<(ResourceKind, String)> {
        if let Some(h) = self.state.havip_by_address(vswitch, addr) {
            return Some((ResourceKind::HaVip, h.id.clone()));
        }
        self.state
            .eips
            .values()
            .find(|e| e.address == addr)
            .map(|e| (ResourceKind::Eip, e.id.clone()))
    }

    fn create_havip(
        &mut self,
        id: Option<&str>,
        vswitch: &str,
        address: Option<Ipv4Addr>,
    ) -> Result<Option<RecordKey>, ApiError> {
        let state = self.state;
        let id = self.new_id(id, "havip", ResourceKind::HaVip, |i| {
            state.havips.contains_key(i)
        })?;
        let vsw = self.vswitch(vswitch)?;
        let quotas = state.quotas;
        let in_vpc = state.havip_count_in_vpc(&vsw.vpc);
        if in_vpc >= quotas.havips_per_vpc {
            return Err(ApiError::HaVipsPerVpc {
                vpc: vsw.vpc.clone(),
                used: in_vpc,
                quota: quotas.havips_per_vpc,
            });
        }
        if state.havips.len() >= quotas.havips_per_account {
            return Err(ApiError::HaVipsPerAccount {
                quota: quotas.havips_per_account,
            });
        }
        let address = match address {
            Some(a) => {
                if !vsw.cidr.contains(a) {
                    return Err(ApiError::AddressOutsideVSwitch {
                        address: a,
                        vswitch: vsw.id.clone(),
                        cidr: vsw.cidr,
                    });
                }
                if is_reserved(vsw.cidr, a) {
                    return Err(ApiError::AddressReserved {
                        address: a,
                        vswitch: vsw.id.clone(),
                        cidr: vsw.cidr,
                    });
                }
                if let Some((kind, id)) = self.address_user(&vsw.id, a) {
                    return Err(ApiError::AddressInUse {
                        address: a,
                        kind,
                        id,
                    });
                }
                a
            }
            None => allocate_address(state, vsw).ok_or_else(|| ApiError::NoFreeAddress {
                vswitch: vsw.id.clone(),
                cidr: vsw.cidr,
            })?,
        };
        let slot =
            first_free_slot(state.used_slots()).ok_or(ApiError::NoFreeSlot { max: MAX_HAVIPS })?;
        let h = HaVip {
            id,
            vswitch: vsw.id.clone(),
            address,
            binding_kind: None,
            bindings: Vec::new(),
            slot,
            initial_master: None,
        };
        let key = Record::HaVip(h.clone()).key();
        self.change.put(Record::HaVip(h));
        Ok(Some(key))
    }

    fn delete_havip(&mut self, id: &str) -> Result<Option<RecordKey>, ApiError> {
        let h = self.havip(id)?;
        if !h.bindings.is_empty() {
            return Err(ApiError::HaVipBound {
                havip: h.id.clone(),
                bindings: h.bindings.clone(),
            });
        }
        if let Some(e) = self
            .state
            .eips
            .values()
            .find(|e| e.havip.as_deref() == Some(id))
        {
            return Err(ApiError::HaVipHasEip {
                havip: h.id.clone(),
                eip: e.id.clone(),
            });
        }
        if let Some(r) = self.state.routes.values().find(|r| r.next_hop_havip == id) {
            return Err(ApiError::HaVipIsRouteNextHop {
                havip: h.id.clone(),
                route: r.id.clone(),
            });
        }
        self.change.delete(RecordKind::HaVip, id);
        if self.state.owners.contains_key(id) {
            self.change.delete(RecordKind::Owner, id);
        }
        Ok(Some(RecordKey::new(RecordKind::HaVip, id)))
    }

    /// vSwitch and instance (if any) of a member.
    fn member_place(&self, m: &Member) -> Result<(String, Option<String>), ApiError> {
        match m.kind {
            BindingKind::Instance => {
                let i = self.instance(&m.id)?;
                Ok((i.vswitch.clone(), Some(i.id.clone())))
            }
            BindingKind::Eni => {
                let e = self.eni(&m.id)?;
                Ok((e.vswitch.clone(), e.instance.clone()))
            }
        }
    }

    fn associate(&mut self, havip: &str, m: &Member) -> Result<Option<RecordKey>, ApiError> {
        let h = self.havip(havip)?;
        let (member_vswitch, instance) = self.member_place(m)?;
        if h.bindings.contains(&m.id) && h.binding_kind == Some(m.kind) {
            return Err(ApiError::AlreadyBound {
                havip: h.id.clone(),
                kind: m.kind.into(),
                id: m.id.clone(),
            });
        }
        if let Some(existing) = h.binding_kind {
            if existing != m.kind && !h.bindings.is_empty() {
                return Err(ApiError::MixedBindingKinds {
                    havip: h.id.clone(),
                    existing,
                    requested: m.kind,
                    id: m.id.clone(),
                });
            }
        }
        if member_vswitch != h.vswitch {
            return Err(ApiError::DifferentVSwitch {
                havip: h.id.clone(),
                havip_vswitch: h.vswitch.clone(),
                kind: m.kind.into(),
                id: m.id.clone(),
                member_vswitch,
            });
        }
        if h.bindings.len() >= limits::BINDINGS_PER_HAVIP {
            return Err(ApiError::BindingsPerHaVip {
                havip: h.id.clone(),
                limit: limits::BINDINGS_PER_HAVIP,
            });
        }
        if let Some(inst) = instance {
            let held = self.state.havips_of_instance(&inst);
            if !held.contains(&h.id.as_str()) && held.len() >= limits::HAVIPS_PER_INSTANCE {
                return Err(ApiError::HaVipsPerInstance {
                    instance: inst,
                    limit: limits::HAVIPS_PER_INSTANCE,
                    havips: held.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
        }
        let mut next = h.clone();
        next.binding_kind = Some(m.kind);
        next.bindings.push(m.id.clone());
        self.change.put(Record::HaVip(next));
        Ok(Some(RecordKey::new(RecordKind::HaVip, havip)))
    }

    fn unassociate(&mut self, havip: &str, m: &Member) -> Result<Option<RecordKey>, ApiError> {
        let h = self.havip(havip)?;
        let pos = h
            .bindings
            .iter()
            .position(|b| *b == m.id)
            .filter(|_| h.binding_kind == Some(m.kind))
            .ok_or_else(|| ApiError::NotBound {
                havip: h.id.clone(),
                kind: m.kind.into(),
                id: m.id.clone(),
            })?;
        let state = self.state;
        // The observed owner is cleared (epoch kept) if it is this member.
        if let Some(owner) = state.owners.get(havip) {
            if owner.has_owner() && state.member_with_mac(h, owner.mac) == Some(m.id.as_str()) {
                let cleared = ObservedOwner {
                    ifindex: 0,
                    mac: MacAddr::default(),
                    ..*owner
                };
                self.change.put(Record::Owner {
                    havip: havip.to_owned(),
                    owner: cleared,
                });
            }
        }
        let mut next = h.clone();
        next.bindings.remove(pos);
        if next.bindings.is_empty() {
            next.binding_kind = None;
        }
        if next.initial_master.as_deref() == Some(m.id.as_str()) {
            next.initial_master = None;
        }
        self.change.put(Record::HaVip(next));
        Ok(Some(RecordKey::new(RecordKind::HaVip, havip)))
    }

    fn set_initial_master(
        &mut self,
        havip: &str,
        member: Option<&str>,
    ) -> Result<Option<RecordKey>, ApiError> {
        let h = self.havip(havip)?;
        if let Some(m) = member {
            if !h.bindings.iter().any(|b| b == m) {
                return Err(ApiError::MasterNotBound {
                    havip: h.id.clone(),
                    member: m.to_owned(),
                });
            }
        }
        if h.initial_master.as_deref() != member {
            let mut next = h.clone();
            next.initial_master = member.map(str::to_owned);
            self.change.put(Record::HaVip(next));
        }
        Ok(Some(RecordKey::new(RecordKind::HaVip, havip)))
    }

    fn create_eip(
        &mut self,
        id: Option<&str>,
        address: Ipv4Addr,
    ) -> Result<Option<RecordKey>, ApiError> {
        let state = self.state;
        let id = self.new_id(id, "eip", ResourceKind::Eip, |i| state.eips.contains_key(i))?;
        if address.is_unspecified()
            || address.is_broadcast()
            || address.is_multicast()
            || address.is_loopback()
        {
            return Err(ApiError::InvalidAddress {
                address,
                reason: "an EIP must be a unicast address".to_owned(),
            });
        }
        if let Some(e) = state.eips.values().find(|e| e.address == address) {
            return Err(ApiError::AddressInUse {
                address,
                kind: ResourceKind::Eip,
                id: e.id.clone(),
            });
        }
        if let Some(h) = state.havips.values().find(|h| h.address == address) {
            return Err(ApiError::AddressInUse {
                address,
                kind: ResourceKind::HaVip,
                id: h.id.clone(),
            });
        }
        let eip = Eip {
            id,
            address,
            havip: None,
        };
        let key = Record::Eip(eip.clone()).key();
        self.change.put(Record::Eip(eip));
        Ok(Some(key))
    }

    fn delete_eip(&mut self, id: &str) -> Result<Option<RecordKey>, ApiError> {
        let e = self.eip(id)?;
        if let Some(h) = &e.havip {
            return Err(ApiError::EipAssociated {
                eip: e.id.clone(),
                havip: h.clone(),
            });
        }
        self.change.delete(RecordKind::Eip, id);
        Ok(Some(RecordKey::new(RecordKind::Eip, id)))
    }

    fn associate_eip(&mut self, eip: &str, havip: &str) -> Result<Option<RecordKey>, ApiError> {
        let e = self.eip(eip)?;
        let h = self.havip(havip)?;
        if let Some(cur) = &e.havip {
            return Err(ApiError::EipAssociated {
                eip: e.id.clone(),
                havip: cur.clone(),
            });
        }
        if let Some(other) = self
            .state
            .eips
            .values()
            .find(|o| o.havip.as_deref() == Some(h.id.as_str()))
        {
            return Err(ApiError::HaVipHasEip {
                havip: h.id.clone(),
                eip: other.id.clone(),
            });
        }
        let mut next = e.clone();
        next.havip = Some(h.id.clone());
        self.change.put(Record::Eip(next));
        Ok(Some(RecordKey::new(RecordKind::Eip, eip)))
    }

    fn unassociate_eip(&mut self, eip: &str) -> Result<Option<RecordKey>, ApiError> {
        let e = self.eip(eip)?;
        if e.havip.is_none() {
            return Err(ApiError::EipNotAssociated { eip: e.id.clone() });
        }
        let mut next = e.clone();
        next.havip = None;
        self.change.put(Record::Eip(next));
        Ok(Some(RecordKey::new(RecordKind::Eip, eip)))
    }

    fn create_route(
        &mut self,
        id: Option<&str>,
        vpc: &str,
        destination: Ipv4Cidr,
        next_hop: &str,
    ) -> Result<Option<RecordKey>, ApiError> {
        let state = self.state;
        let id = self.new_id(id, "rte", ResourceKind::Route, |i| {
            state.routes.contains_key(i)
        })?;
        let v = self.vpc(vpc)?;
        let h = self.havip(next_hop)?;
        let hvpc = state.havip_vpc(h).unwrap_or_default();
        if hvpc != v.id {
            return Err(ApiError::DifferentVpc {
                kind: ResourceKind::HaVip,
                id: h.id.clone(),
                expected: v.id.clone(),
                actual: hvpc.to_owned(),
            });
        }
        if let Some(vsw) = state
            .vswitches
            .values()
            .find(|s| s.vpc == v.id && s.cidr.contains_cidr(destination))
        {
            return Err(ApiError::InvalidRouteDestination {
                destination,
                vswitch: vsw.id.clone(),
                cidr: vsw.cidr,
            });
        }
        let in_vpc: Vec<&RouteEntry> = state.routes.values().filter(|r| r.vpc == v.id).collect();
        if let Some(r) = in_vpc.iter().find(|r| r.destination == destination) {
            return Err(ApiError::RouteDestinationExists {
                vpc: v.id.clone(),
                destination,
                existing: r.id.clone(),
            });
        }
        if in_vpc.len() >= state.quotas.havip_routes_per_vpc {
            return Err(ApiError::HaVipRoutesPerVpc {
                vpc: v.id.clone(),
                used: in_vpc.len(),
                quota: state.quotas.havip_routes_per_vpc,
            });
        }
        let r = RouteEntry {
            id,
            vpc: v.id.clone(),
            destination,
            next_hop_havip: h.id.clone(),
        };
        let key = Record::Route(r.clone()).key();
        self.change.put(Record::Route(r));
        Ok(Some(key))
    }

    fn delete_route(&mut self, id: &str) -> Result<Option<RecordKey>, ApiError> {
        if !self.state.routes.contains_key(id) {
            return Err(not_found(ResourceKind::Route, id));
        }
        self.change.delete(RecordKind::Route, id);
        Ok(Some(RecordKey::new(RecordKind::Route, id)))
    }

    fn set_quota(
        &mut self,
        per_account: Option<usize>,
        per_vpc: Option<usize>,
        routes: Option<usize>,
    ) -> Result<Option<RecordKey>, ApiError> {
        let max = MAX_HAVIPS as usize;
        let checks = [
            ("havips_per_account", per_account, max),
            ("havips_per_vpc", per_vpc, max),
            ("havip_routes_per_vpc", routes, MAX_ROUTES_PER_VPC),
        ];
        for (name, value, max) in checks {
            if let Some(v) = value {
                if v > max {
                    return Err(ApiError::InvalidQuota {
                        name,
                        value: v,
                        max,
                    });
                }
            }
        }
        let cur = self.state.quotas;
        let next = Quotas {
            havips_per_account: per_account.unwrap_or(cur.havips_per_account),
            havips_per_vpc: per_vpc.unwrap_or(cur.havips_per_vpc),
            havip_routes_per_vpc: routes.unwrap_or(cur.havip_routes_per_vpc),
        };
        if next != cur {
            self.change.put(Record::Quotas(next));
        }
        Ok(Some(RecordKey::new(RecordKind::Quotas, "")))
    }

    fn record_owner(
        &mut self,
        havip: &str,
        owner: ObservedOwner,
    ) -> Result<Option<RecordKey>, ApiError> {
        self.havip(havip)?;
        if self.state.owners.get(havip) != Some(&owner) {
            self.change.put(Record::Owner {
                havip: havip.to_owned(),
                owner,
            });
        }
        Ok(Some(RecordKey::new(RecordKind::Owner, havip)))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// VPC `vpc-1` (10.0.0.0/16) with vSwitches `vsw-1` (10.0.1.0/24) and
    /// `vsw-2` (10.0.2.0/24); instances `i-0..i-11` in vsw-1 each with a
    /// primary ENI `eni-N`, plus `i-x` in vsw-2 with `eni-x`.
    fn base() -> State {
        let mut s = State::default();
        let mut run = |op: Op| s = apply_to(&s, &op).expect("setup op");
        run(Op::CreateVpc {
            id: "vpc-1".into(),
            cidr: "10.0.0.0/16".parse().unwrap(),
        });
        for (n, id) in ["vsw-1", "vsw-2"].iter().enumerate() {
            run(Op::CreateVSwitch {
                id: (*id).into(),
                vpc: "vpc-1".into(),
                cidr: format!("10.0.{}.0/24", n + 1).parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            });
        }
        for i in 0..12 {
            run(Op::CreateInstance {
                id: format!("i-{i}"),
                vswitch: "vsw-1".into(),
            });
            run(Op::CreateEni {
                id: format!("eni-{i}"),
                vswitch: "vsw-1".into(),
                mac: format!("02:00:00:00:01:{i:02x}").parse().unwrap(),
                host_interface: format!("hv-{i}"),
                instance: Some(format!("i-{i}")),
                primary: true,
            });
        }
        run(Op::CreateInstance {
            id: "i-x".into(),
            vswitch: "vsw-2".into(),
        });
        run(Op::CreateEni {
            id: "eni-x".into(),
            vswitch: "vsw-2".into(),
            mac: "02:00:00:00:02:01".parse().unwrap(),
            host_interface: "hv-x".into(),
            instance: Some("i-x".into()),
            primary: true,
        });
        s
    }

    fn havip(s: &mut State, id: &str, addr: Option<&str>) {
        *s = apply_to(
            s,
            &Op::CreateHaVip {
                id: Some(id.into()),
                vswitch: "vsw-1".into(),
                address: addr.map(|a| a.parse().unwrap()),
            },
        )
        .expect("create havip");
    }

    fn refused(s: &State, op: Op, code: &str) -> ApiError {
        let e = apply(s, &op).expect_err(code);
        assert_eq!(e.code(), code, "{e}");
        e
    }

    fn assoc(h: &str, m: Member) -> Op {
        Op::AssociateHaVip {
            havip: h.into(),
            member: m,
        }
    }

    #[test]
    fn allocation_skips_reserved_and_used() {
        let mut s = base();
        havip(&mut s, "h1", None);
        assert_eq!(s.havips["h1"].address.to_string(), "10.0.1.2");
        havip(&mut s, "h2", Some("10.0.1.3"));
        havip(&mut s, "h3", None);
        assert_eq!(s.havips["h3"].address.to_string(), "10.0.1.4");
        let slots: Vec<u32> = s.havips.values().map(|h| h.slot).collect();
        assert_eq!(slots, vec![0, 1, 2]);
        for a in ["10.0.1.0", "10.0.1.1", "10.0.1.255"] {
            refused(
                &s,
                Op::CreateHaVip {
                    id: None,
                    vswitch: "vsw-1".into(),
                    address: Some(a.parse().unwrap()),
                },
                "InvalidParameter.AddressReserved",
            );
        }
        refused(
            &s,
            Op::CreateHaVip {
                id: None,
                vswitch: "vsw-1".into(),
                address: Some("10.0.2.9".parse().unwrap()),
            },
            "InvalidParameter.AddressOutsideVSwitch",
        );
        refused(
            &s,
            Op::CreateHaVip {
                id: None,
                vswitch: "vsw-1".into(),
                address: Some("10.0.1.3".parse().unwrap()),
            },
            "Conflict.AddressInUse",
        );
        refused(
            &s,
            Op::CreateHaVip {
                id: Some("h1".into()),
                vswitch: "vsw-1".into(),
                address: None,
            },
            "Conflict.AlreadyExists",
        );
    }

    #[test]
    fn slots_are_stable_and_reused() {
        let mut s = base();
        havip(&mut s, "a", None);
        havip(&mut s, "b", None);
        havip(&mut s, "c", None);
        s = apply_to(&s, &Op::DeleteHaVip { id: "b".into() }).unwrap();
        havip(&mut s, "d", None);
        assert_eq!(s.havips["a"].slot, 0);
        assert_eq!(s.havips["c"].slot, 2);
        assert_eq!(s.havips["d"].slot, 1);
    }

    #[test]
    fn quotas_per_vpc_and_account() {
        let mut s = base();
        for i in 0..5 {
            havip(&mut s, &format!("h{i}"), None);
        }
        let create = Op::CreateHaVip {
            id: None,
            vswitch: "vsw-2".into(),
            address: None,
        };
        refused(&s, create.clone(), "QuotaExceeded.HaVipsPerVpc");
        s = apply_to(
            &s,
            &Op::SetQuota {
                havips_per_account: None,
                havips_per_vpc: Some(10),
                havip_routes_per_vpc: None,
            },
        )
        .unwrap();
        let e = refused(&s, create.clone(), "QuotaExceeded.HaVipsPerAccount");
        assert!(e.to_string().contains("havips_per_account = 5"), "{e}");
        s = apply_to(
            &s,
            &Op::SetQuota {
                havips_per_account: Some(6),
                havips_per_vpc: None,
                havip_routes_per_vpc: None,
            },
        )
        .unwrap();
        apply(&s, &create).expect("quota raised");
        refused(
            &s,
            Op::SetQuota {
                havips_per_account: Some(usize::MAX),
                havips_per_vpc: None,
                havip_routes_per_vpc: None,
            },
            "InvalidParameter.Quota",
        );
    }

    #[test]
    fn binding_limits_and_conflicts() {
        let mut s = base();
        s = apply_to(
            &s,
            &Op::SetQuota {
                havips_per_account: Some(20),
                havips_per_vpc: Some(20),
                havip_routes_per_vpc: None,
            },
        )
        .unwrap();
        havip(&mut s, "h", None);
        for i in 0..10 {
            s = apply_to(&s, &assoc("h", Member::instance(format!("i-{i}")))).unwrap();
        }
        assert_eq!(s.havips["h"].bindings.len(), 10);
        refused(
            &s,
            assoc("h", Member::instance("i-10")),
            "LimitExceeded.BindingsPerHaVip",
        );
        refused(
            &s,
            assoc("h", Member::instance("i-0")),
            "Conflict.AlreadyBound",
        );
        refused(
            &s,
            assoc("h", Member::eni("eni-11")),
            "Conflict.MixedBindingKinds",
        );
        refused(
            &s,
            assoc("h", Member::instance("i-x")),
            "Conflict.DifferentVSwitch",
        );
        refused(&s, assoc("nope", Member::instance("i-0")), "NotFound.HaVip");
        refused(
            &s,
            assoc("h", Member::instance("i-nope")),
            "NotFound.Instance",
        );
        refused(&s, assoc("h", Member::eni("eni-nope")), "NotFound.Eni");
        refused(
            &s,
            Op::DeleteHaVip { id: "h".into() },
            "Conflict.HaVipBound",
        );

        // HaVips per instance: i-11 gets 5 HaVips, the 6th is refused, also
        // through its ENI.
        for n in 0..5 {
            let id = format!("p{n}");
            havip(&mut s, &id, None);
            s = apply_to(&s, &assoc(&id, Member::instance("i-11"))).unwrap();
        }
        havip(&mut s, "p5", None);
        refused(
            &s,
            assoc("p5", Member::instance("i-11")),
            "LimitExceeded.HaVipsPerInstance",
        );
        refused(
            &s,
            assoc("p5", Member::eni("eni-11")),
            "LimitExceeded.HaVipsPerInstance",
        );
        // ENI bindings count against the instance: i-10 holds 5 via eni-10.
        for n in 0..5 {
            let id = format!("q{n}");
            havip(&mut s, &id, None);
            s = apply_to(&s, &assoc(&id, Member::eni("eni-10"))).unwrap();
        }
        havip(&mut s, "q5", None);
        refused(
            &s,
            assoc("q5", Member::instance("i-10")),
            "LimitExceeded.HaVipsPerInstance",
        );
    }

    #[test]
    fn unassociate_clears_owner_and_master() {
        let mut s = base();
        havip(&mut s, "h", None);
        s = apply_to(&s, &assoc("h", Member::instance("i-0"))).unwrap();
        s = apply_to(&s, &assoc("h", Member::instance("i-1"))).unwrap();
        s = apply_to(
            &s,
            &Op::SetInitialMaster {
                havip: "h".into(),
                member: Some("i-0".into()),
            },
        )
        .unwrap();
        refused(
            &s,
            Op::SetInitialMaster {
                havip: "h".into(),
                member: Some("i-5".into()),
            },
            "InvalidParameter.MasterNotBound",
        );
        let owner = ObservedOwner {
            ifindex: 7,
            mac: s.enis["eni-0"].mac,
            epoch: 3,
            changed_ns: 1,
        };
        s = apply_to(
            &s,
            &Op::RecordOwner {
                havip: "h".into(),
                owner,
            },
        )
        .unwrap();
        assert_eq!(s.member_with_mac(&s.havips["h"], owner.mac), Some("i-0"));
        // Unbinding the standby keeps the owner.
        let s1 = apply_to(
            &s,
            &Op::UnassociateHaVip {
                havip: "h".into(),
                member: Member::instance("i-1"),
            },
        )
        .unwrap();
        assert_eq!(s1.owners["h"], owner);
        // Unbinding the master clears it (epoch kept) and the initial master.
        let s2 = apply_to(
            &s,
            &Op::UnassociateHaVip {
                havip: "h".into(),
                member: Member::instance("i-0"),
            },
        )
        .unwrap();
        assert!(!s2.owners["h"].has_owner());
        assert_eq!(s2.owners["h"].epoch, 3);
        assert_eq!(s2.havips["h"].initial_master, None);
        refused(
            &s2,
            Op::UnassociateHaVip {
                havip: "h".into(),
                member: Member::instance("i-0"),
            },
            "NotFound.Binding",
        );
        let s3 = apply_to(
            &s2,
            &Op::UnassociateHaVip {
                havip: "h".into(),
                member: Member::instance("i-1"),
            },
        )
        .unwrap();
        assert_eq!(s3.havips["h"].binding_kind, None);
        // Now ENIs may be bound.
        apply(&s3, &assoc("h", Member::eni("eni-3"))).unwrap();
    }

    #[test]
    fn eips_and_routes() {
        let mut s = base();
        havip(&mut s, "h", None);
        havip(&mut s, "g", None);
        s = apply_to(
            &s,
            &Op::CreateEip {
                id: Some("e".into()),
                address: "203.0.113.1".parse().unwrap(),
            },
        )
        .unwrap();
        refused(
            &s,
            Op::CreateEip {
                id: None,
                address: "203.0.113.1".parse().unwrap(),
            },
            "Conflict.AddressInUse",
        );
        refused(
            &s,
            Op::CreateEip {
                id: None,
                address: "255.255.255.255".parse().unwrap(),
            },
            "InvalidParameter.Address",
        );
        s = apply_to(
            &s,
            &Op::AssociateEip {
                eip: "e".into(),
                havip: "h".into(),
            },
        )
        .unwrap();
        refused(
            &s,
            Op::DeleteHaVip { id: "h".into() },
            "Conflict.HaVipHasEip",
        );
        refused(
            &s,
            Op::DeleteEip { id: "e".into() },
            "Conflict.EipAssociated",
        );
        refused(
            &s,
            Op::AssociateEip {
                eip: "e".into(),
                havip: "g".into(),
            },
            "Conflict.EipAssociated",
        );
        s = apply_to(&s, &Op::UnassociateEip { eip: "e".into() }).unwrap();
        refused(
            &s,
            Op::UnassociateEip { eip: "e".into() },
            "Conflict.EipNotAssociated",
        );

        let route = |n: u32| Op::CreateRoute {
            id: Some(format!("r{n}")),
            vpc: "vpc-1".into(),
            destination: format!("192.168.{n}.0/24").parse().unwrap(),
            next_hop_havip: "h".into(),
        };
        for n in 0..5 {
            s = apply_to(&s, &route(n)).unwrap();
        }
        refused(&s, route(5), "QuotaExceeded.HaVipRoutesPerVpc");
        refused(
            &s,
            Op::DeleteHaVip { id: "h".into() },
            "Conflict.HaVipIsRouteNextHop",
        );
        let mut dup = route(0);
        if let Op::CreateRoute { id, .. } = &mut dup {
            *id = Some("r-dup".into());
        }
        s = apply_to(
            &s,
            &Op::SetQuota {
                havips_per_account: None,
                havips_per_vpc: None,
                havip_routes_per_vpc: Some(10),
            },
        )
        .unwrap();
        refused(&s, dup, "Conflict.RouteDestinationExists");
        refused(
            &s,
            Op::CreateRoute {
                id: None,
                vpc: "vpc-1".into(),
                destination: "10.0.1.128/25".parse().unwrap(),
                next_hop_havip: "h".into(),
            },
            "InvalidParameter.RouteDestination",
        );
        for n in 0..5 {
            s = apply_to(
                &s,
                &Op::DeleteRoute {
                    id: format!("r{n}"),
                },
            )
            .unwrap();
        }
        refused(&s, Op::DeleteRoute { id: "r0".into() }, "NotFound.Route");
        apply(&s, &Op::DeleteHaVip { id: "h".into() }).unwrap();
    }

    #[test]
    fn setup_conflicts() {
        let s = base();
        refused(
            &s,
            Op::CreateVSwitch {
                id: "vsw-3".into(),
                vpc: "vpc-1".into(),
                cidr: "10.0.1.128/25".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            },
            "Conflict.CidrOverlap",
        );
        refused(
            &s,
            Op::CreateVSwitch {
                id: "vsw-3".into(),
                vpc: "vpc-1".into(),
                cidr: "10.1.0.0/24".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            },
            "InvalidParameter.Cidr",
        );
        refused(
            &s,
            Op::CreateVSwitch {
                id: "vsw-3".into(),
                vpc: "vpc-1".into(),
                cidr: "10.0.3.0/24".parse().unwrap(),
                gateway_mac: "ff:ff:ff:ff:ff:ff".parse().unwrap(),
            },
            "InvalidParameter.Mac",
        );
        let eni = |id: &str, mac: &str, ifname: &str, primary: bool| Op::CreateEni {
            id: id.into(),
            vswitch: "vsw-1".into(),
            mac: mac.parse().unwrap(),
            host_interface: ifname.into(),
            instance: Some("i-0".into()),
            primary,
        };
        refused(
            &s,
            eni("e2", "02:00:00:00:01:00", "hv-new", false),
            "Conflict.MacInUse",
        );
        refused(
            &s,
            eni("e2", "02:00:00:00:09:00", "hv-0", false),
            "Conflict.InterfaceInUse",
        );
        refused(
            &s,
            eni("e2", "02:00:00:00:09:00", "hv-new", true),
            "Conflict.PrimaryEniExists",
        );
        refused(
            &s,
            eni("e 2", "02:00:00:00:09:00", "hv-new", false),
            "InvalidParameter.Id",
        );
        refused(
            &s,
            eni("e2", "02:00:00:00:09:00", "this-name-is-too-long", false),
            "InvalidParameter.Interface",
        );
        apply(&s, &eni("e2", "02:00:00:00:09:00", "hv-new", false)).unwrap();
    }

    #[test]
    fn first_free_slot_finds_gaps() {
        assert_eq!(first_free_slot([].into_iter()), Some(0));
        assert_eq!(first_free_slot([0, 1, 2].into_iter()), Some(3));
        assert_eq!(first_free_slot([0, 1, 3].into_iter()), Some(2));
        assert_eq!(first_free_slot([1, 2].into_iter()), Some(0));
    }
}
