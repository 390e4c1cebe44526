//! What the maps should hold, derived from the store by the control plane.
//! The reconciler turns a `Desired` into map updates.

use havip_common::{DataplaneConfig, HavipKey};

/// A host port the program runs on and may redirect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPort {
    pub ifindex: u32,
    pub vswitch_id: u32,
    /// Dense VPC id (any numbering consistent within one `Desired`).
    pub vpc_id: u32,
    /// `havip_common::port_flags`.
    pub flags: u32,
    pub gateway_mac: [u8; 6],
}

/// A bound instance/ENI: the port it sits behind and the MAC it claims with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredBinding {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredHavip {
    pub key: HavipKey,
    /// VPC of the HaVip's vSwitch, as in [`DesiredPort::vpc_id`].
    pub vpc_id: u32,
    /// Dense id (< `MAX_HAVIPS`), stable for the life of the HaVip.
    pub id: u32,
    pub virtual_mac: [u8; 6],
    pub bindings: Vec<DesiredBinding>,
    /// Owner to install when the HaVip has none (never replaces a claim).
    pub initial_owner: Option<DesiredBinding>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub ports: Vec<DesiredPort>,
    pub havips: Vec<DesiredHavip>,
    pub config: DataplaneConfig,
}
