//! The validation core's error: one variant per refusal, each with a stable
//! code and a message.

use std::{fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    net::{Ipv4Cidr, MacAddr},
    resource::BindingKind,
    validate::MAX_ID_LEN,
};

/// Declares [`ResourceKind`] from one table: variant (its name in error
/// codes, `NotFound.<name>`) and the word used in messages.
macro_rules! resource_kinds {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)*) => {
        /// Kind of resource named in an error.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ResourceKind {
            $($(#[$doc])* $variant,)*
        }

        impl ResourceKind {
            /// Name used in error codes (`NotFound.<name>`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(ResourceKind::$variant => stringify!($variant),)*
                }
            }

            /// The code of a `NotFound` error for this kind.
            pub const fn not_found_code(self) -> &'static str {
                match self {
                    $(ResourceKind::$variant => concat!("NotFound.", stringify!($variant)),)*
                }
            }
        }

        impl fmt::Display for ResourceKind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(ResourceKind::$variant => $label,)*
                })
            }
        }
    };
}

resource_kinds! {
    Vpc => "VPC",
    VSwitch => "vSwitch",
    Instance => "instance",
    Eni => "ENI",
    Uplink => "uplink",
    HaVip => "HaVip",
    Eip => "EIP",
    Route => "route entry",
    /// A binding of a HaVip to an instance or ENI.
    Binding => "binding",
}

impl From<BindingKind> for ResourceKind {
    fn from(k: BindingKind) -> Self {
        match k {
            BindingKind::Instance => ResourceKind::Instance,
            BindingKind::Eni => ResourceKind::Eni,
        }
    }
}

/// Every refusal of the control plane. [`OpError::code`] is the stable,
/// machine-readable code (`<Category>.<Detail>`); `Display` is the message
/// naming the limit or conflict. The core knows nothing about HTTP: the API
/// server maps the category to a status (`crate::api::error`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OpError {
    #[error("{kind} {id:?} does not exist")]
    NotFound { kind: ResourceKind, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: ResourceKind, id: String },
    #[error("invalid id {id:?}: ids are 1-{MAX_ID_LEN} characters of [A-Za-z0-9._-]")]
    InvalidId { id: String },
    #[error("invalid interface name {name:?}: 1-15 characters, no '/', ':' or whitespace")]
    InvalidInterface { name: String },
    #[error("invalid VNI {vni}: a VXLAN network identifier is 1..16777215")]
    InvalidVni { vni: u32 },
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
    #[error("initial owner {member:?} is not bound to HaVip {havip:?}")]
    OwnerNotBound { havip: String, member: String },
    #[error("{member:?} holds HaVip {havip:?} now (it is the owner): unassociate it with force, or move the address first")]
    MemberIsOwner { havip: String, member: String },
    #[error("{kind} {id:?} still has {dependent_kind} {dependent:?}: delete it first")]
    DependencyViolation {
        kind: ResourceKind,
        id: String,
        dependent_kind: ResourceKind,
        dependent: String,
    },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidText {
        field: &'static str,
        value: String,
        reason: String,
    },
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
    #[error("internal error: {0}")]
    Internal(String),
    /// The durable commit of the caller's batch failed (store error, or a
    /// panic while the batch ran); nothing of the batch was kept.
    #[error("commit failed, nothing changed: {0}")]
    CommitFailed(String),
}

impl OpError {
    /// The stable error code, e.g. `QuotaExceeded.HaVipsPerVpc`.
    pub fn code(&self) -> &'static str {
        use OpError::*;
        match self {
            NotFound { kind, .. } => kind.not_found_code(),
            AlreadyExists { .. } => "Conflict.AlreadyExists",
            InvalidId { .. } => "InvalidParameter.Id",
            InvalidInterface { .. } => "InvalidParameter.Interface",
            InvalidVni { .. } => "InvalidParameter.Vni",
            InvalidMac { .. } => "InvalidParameter.Mac",
            InvalidCidr { .. } => "InvalidParameter.Cidr",
            AddressOutsideVSwitch { .. } => "InvalidParameter.AddressOutsideVSwitch",
            AddressReserved { .. } => "InvalidParameter.AddressReserved",
            InvalidAddress { .. } => "InvalidParameter.Address",
            AddressInUse { .. } => "Conflict.AddressInUse",
            InvalidQuota { .. } => "InvalidParameter.Quota",
            InvalidRouteDestination { .. } => "InvalidParameter.RouteDestination",
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
            OwnerNotBound { .. } => "InvalidParameter.OwnerNotBound",
            MemberIsOwner { .. } => "Conflict.MemberIsOwner",
            DependencyViolation { kind, .. } => match kind {
                ResourceKind::Vpc => "DependencyViolation.Vpc",
                ResourceKind::VSwitch => "DependencyViolation.VSwitch",
                ResourceKind::Instance => "DependencyViolation.Instance",
                ResourceKind::Eni => "DependencyViolation.Eni",
                ResourceKind::Uplink => "DependencyViolation.Uplink",
                ResourceKind::HaVip => "DependencyViolation.HaVip",
                ResourceKind::Eip => "DependencyViolation.Eip",
                ResourceKind::Route => "DependencyViolation.Route",
                ResourceKind::Binding => "DependencyViolation.Binding",
            },
            InvalidText { field, .. } => match *field {
                "name" => "InvalidParameter.Name",
                "description" => "InvalidParameter.Description",
                _ => "InvalidParameter.Text",
            },
            BindingsPerHaVip { .. } => "LimitExceeded.BindingsPerHaVip",
            HaVipsPerInstance { .. } => "LimitExceeded.HaVipsPerInstance",
            HaVipsPerAccount { .. } => "QuotaExceeded.HaVipsPerAccount",
            HaVipsPerVpc { .. } => "QuotaExceeded.HaVipsPerVpc",
            HaVipRoutesPerVpc { .. } => "QuotaExceeded.HaVipRoutesPerVpc",
            NoFreeAddress { .. } => "InsufficientCapacity.NoFreeAddress",
            NoFreeSlot { .. } => "InsufficientCapacity.NoFreeSlot",
            NoFreeVSwitchId => "InsufficientCapacity.NoFreeVSwitchId",
            Internal(_) => "Internal",
            CommitFailed(_) => "Internal.CommitFailed",
        }
    }
}
