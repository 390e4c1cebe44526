//! What DescribeHaVips shows: [`HaVipView`], built from the state plus the
//! agent's live counters.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{
    cluster::SharedOwner,
    model::{BindingKind, HaVip, ObservedOwner, State},
};

/// Packets and bytes forwarded to a HaVip (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HavipCounters {
    /// Frames redirected to the owner (on this host, or through VXLAN to
    /// another) since the HaVip was put in the kernel (its counter is
    /// zeroed then).
    pub packets: u64,
    /// Their bytes: the Ethernet frames without any VXLAN encapsulation.
    pub bytes: u64,
}

/// Live counters for Describe, provided by the agent (read from the maps).
pub trait CountersSource: Send + Sync {
    /// Counters of the HaVip with data-plane id `slot`, if known.
    fn havip_counters(&self, slot: u32) -> Option<HavipCounters>;
}

/// Describe status of a HaVip (named for what it says: whether anything is
/// bound; the data plane's per-HaVip status is `crate::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaVipUsage {
    /// Nothing bound.
    Available,
    /// Bound to at least one instance or ENI.
    InUse,
}

/// The EIP fronting a HaVip, as shown by Describe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipRef {
    /// The EIP's id (`eip-...`).
    pub id: String,
    /// Its public address, translated to and from the HaVip's.
    pub address: Ipv4Addr,
}

/// One HaVip as DescribeHaVips shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaVipView {
    /// The HaVip's id (`havip-...`).
    pub id: String,
    /// VPC of its vSwitch.
    pub vpc: String,
    /// vSwitch the address belongs to.
    pub vswitch: String,
    /// The virtual IPv4 address.
    pub address: Ipv4Addr,
    /// `Available` (nothing bound) or `InUse`.
    pub status: HaVipUsage,
    /// `instance` or `eni`: the kind of the bound members (never both);
    /// `None` while nothing is bound.
    pub binding_kind: Option<BindingKind>,
    /// Bound instance or ENI ids, in association order.
    pub bindings: Vec<String>,
    /// Bound member that holds the address now (from the kernel-observed
    /// owner; the product calls it the master).
    pub owner_member: Option<String>,
    /// The observed owner as the kernel reported it.
    pub owner: Option<ObservedOwner>,
    /// Owner epoch (0 before the first report).
    pub epoch: u64,
    /// Multi-host: the host of the shared owner (as etcd has it).
    #[serde(default)]
    pub owner_host: Option<String>,
    /// Multi-host: the shared owner (host, ENI, MAC, epoch) as this host
    /// last saw it in etcd.
    #[serde(default)]
    pub shared_owner: Option<SharedOwner>,
    /// Bound member installed as owner while the kernel reports none (the
    /// product's initial master).
    pub initial_owner: Option<String>,
    /// Free-form name (ModifyHaVipAttribute).
    pub name: Option<String>,
    /// Free-form description (ModifyHaVipAttribute).
    pub description: Option<String>,
    /// The EIP associated with the HaVip, if any.
    pub eip: Option<EipRef>,
    /// Data-plane slot: the index of the HaVip's kernel rows and counters
    /// (< `havip_common::MAX_HAVIPS`; reused after the HaVip is deleted).
    pub slot: u32,
    /// From the agent's [`CountersSource`], when it set one.
    pub counters: Option<HavipCounters>,
}

/// Builds the Describe view of `h` (pure).
pub fn havip_view(state: &State, h: &HaVip, counters: Option<HavipCounters>) -> HaVipView {
    let owner = state.owners.get(&h.id).copied();
    let owner_member = owner
        .filter(ObservedOwner::has_owner)
        .and_then(|o| state.member_with_mac(h, o.mac))
        .map(str::to_owned);
    let eip = state
        .eips
        .values()
        .find(|e| e.havip.as_deref() == Some(h.id.as_str()))
        .map(|e| EipRef {
            id: e.id.clone(),
            address: e.address,
        });
    HaVipView {
        id: h.id.clone(),
        vpc: state.havip_vpc(h).unwrap_or_default().to_owned(),
        vswitch: h.vswitch.clone(),
        address: h.address,
        status: if h.bindings.is_empty() {
            HaVipUsage::Available
        } else {
            HaVipUsage::InUse
        },
        binding_kind: h.binding_kind,
        bindings: h.bindings.clone(),
        owner_member,
        owner,
        epoch: owner.map(|o| o.epoch).unwrap_or(0),
        owner_host: None,
        shared_owner: None,
        initial_owner: h.initial_owner.clone(),
        name: h.name.clone(),
        description: h.description.clone(),
        eip,
        slot: h.slot,
        counters,
    }
}
