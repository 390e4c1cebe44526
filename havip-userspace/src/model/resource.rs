//! The resources of the control plane: VPCs, vSwitches, instances, ENIs,
//! uplinks, HaVips, EIPs, route entries, quotas and the kernel-reported owners.

use std::{fmt, net::Ipv4Addr};

use havip_common::limits;
use serde::{Deserialize, Serialize};

use super::net::{Ipv4Cidr, MacAddr};

/// A VPC: the private network HaVips live in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    pub id: String,
    pub cidr: Ipv4Cidr,
}

/// A vSwitch (subnet) of a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSwitch {
    pub id: String,
    pub vpc: String,
    pub cidr: Ipv4Cidr,
    /// Source MAC of frames the data plane forwards into this vSwitch.
    pub gateway_mac: MacAddr,
    /// Dense data-plane id (`PortInfo::vswitch_id`, `HavipKey::vswitch_id`),
    /// allocated by the control plane, never 0.
    pub dp_id: u32,
    /// VXLAN network identifier across hosts (multi-host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// An instance (VM). Its primary vSwitch decides which HaVips it may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub id: String,
    pub vswitch: String,
}

/// An elastic network interface, attached to an instance or detached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eni {
    pub id: String,
    pub vswitch: String,
    pub mac: MacAddr,
    /// Host-side interface (tap/veth) the ENI's frames enter the host on.
    /// Stored records written before the rename say `host_interface`.
    #[serde(alias = "host_interface")]
    pub interface: String,
    #[serde(default)]
    pub instance: Option<String>,
    /// The instance's primary ENI.
    #[serde(default)]
    pub primary: bool,
    /// Host (agent `host_id`) the ENI's interface is on; `None`: every
    /// agent treats it as local (single host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The host's uplink towards the rest of a vSwitch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    pub interface: String,
    pub vswitch: String,
}

/// What a HaVip is bound to. One kind per HaVip, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    Instance,
    Eni,
}

impl fmt::Display for BindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindingKind::Instance => "instance",
            BindingKind::Eni => "eni",
        })
    }
}

/// A High-Availability Virtual IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaVip {
    pub id: String,
    pub vswitch: String,
    pub address: Ipv4Addr,
    /// Kind of the bound members; `None` while nothing is bound.
    #[serde(default)]
    pub binding_kind: Option<BindingKind>,
    /// Bound instance or ENI ids, in association order.
    #[serde(default)]
    pub bindings: Vec<String>,
    /// Dense data-plane id (< `havip_common::MAX_HAVIPS`): stable for the
    /// life of the HaVip, reused after it is deleted.
    pub slot: u32,
    /// Binding installed as owner while the kernel reports none (the
    /// product's "initial master"; stored records may say `initial_master`).
    #[serde(default, alias = "initial_master")]
    pub initial_owner: Option<String>,
    /// Free-form name (ModifyHaVipAttribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form description (ModifyHaVipAttribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An elastic (public) IP that can front a HaVip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eip {
    /// The EIP's id (`eip-...`).
    pub id: String,
    /// The public address, translated to and from the HaVip's.
    pub address: Ipv4Addr,
    /// The associated HaVip's id (None: not associated).
    #[serde(default)]
    pub havip: Option<String>,
}

/// A VPC route entry whose next hop is a HaVip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// The route entry's id (`rte-...`).
    pub id: String,
    /// VPC whose route table holds it.
    pub vpc: String,
    /// Destination prefix: outside every vSwitch of the VPC, unique in it.
    pub destination: Ipv4Cidr,
    /// HaVip (of the same VPC) whose owner gets the traffic.
    pub next_hop_havip: String,
}

/// Adjustable quotas (the fixed limits are in `havip_common::limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// HaVips in all (default 5).
    pub havips_per_account: usize,
    /// HaVips in one VPC (default 5).
    pub havips_per_vpc: usize,
    /// Route entries with a HaVip next hop in one VPC (default 5).
    pub havip_routes_per_vpc: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            havips_per_account: limits::DEFAULT_HAVIPS_PER_ACCOUNT,
            havips_per_vpc: limits::DEFAULT_HAVIPS_PER_VPC,
            havip_routes_per_vpc: limits::DEFAULT_HAVIP_ROUTES_PER_VPC,
        }
    }
}

/// The current owner of a HaVip as reported by the kernel (`OWNERS`).
/// Kernel-owned truth: the control plane records it, never acts on bindings
/// because of it. `ifindex == 0` means no owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedOwner {
    /// Host port the owner sits behind (0: no owner; for an owner on
    /// another host, the local VTEP port).
    pub ifindex: u32,
    /// The owner ENI's MAC.
    pub mac: MacAddr,
    /// Owner changes so far (the kernel increments it on each).
    pub epoch: u64,
    /// `CLOCK_MONOTONIC` ns of the last change, as the kernel wrote it.
    pub changed_ns: u64,
}

impl ObservedOwner {
    /// Whether an owner is set.
    pub const fn has_owner(&self) -> bool {
        self.ifindex != 0
    }
}

/// Bookkeeping that is not a resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Counter used to name resources created without an explicit id.
    pub next_id: u64,
}
