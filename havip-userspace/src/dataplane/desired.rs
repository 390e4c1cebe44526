//! What the maps should hold, derived from the store by the control plane.
//! The reconciler turns a `Desired` into map updates.

use havip_common::{DataplaneConfig, HavipKey, VXLAN_PORT};

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
    /// Multi-host (VXLAN) part; empty on a single host.
    pub vxlan: DesiredVxlan,
    /// Route entries with a HaVip next hop (`ROUTES`).
    pub routes: Vec<DesiredRoute>,
    /// EIPs associated with a HaVip (unassociated EIPs are left out).
    pub eips: Vec<DesiredEip>,
}

/// A VPC route entry whose next hop is a HaVip: frames from the VPC's
/// instances to the gateway for an address in `destination` go to the
/// HaVip's current owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredRoute {
    /// VPC, as in [`DesiredPort::vpc_id`].
    pub vpc_id: u32,
    /// Destination network address (network order, host bits zero).
    pub addr: [u8; 4],
    /// Destination prefix length, 0..=32.
    pub len: u8,
    /// The next-hop HaVip (its `HAVIPS`/`OWNERS` key) and its dense id.
    pub next_hop: HavipKey,
    pub havip_id: u32,
}

/// An EIP in front of a HaVip: DNAT of `address` to the HaVip on the
/// uplinks, SNAT of the HaVip's owner's outbound frames to `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredEip {
    /// The EIP (network order).
    pub address: [u8; 4],
    /// The associated HaVip (its vSwitch and address).
    pub havip: HavipKey,
    /// The HaVip's dense id, as in [`DesiredHavip::id`].
    pub havip_id: u32,
}

/// This host's VXLAN tunnel endpoint: the underlay port (also listed in
/// [`Desired::ports`] with `port_flags::VTEP`), its address and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalVtep {
    pub ifindex: u32,
    /// IPv4 address of the VTEP (network order).
    pub addr: [u8; 4],
    /// MAC of the underlay port (outer source MAC).
    pub mac: [u8; 6],
    /// VXLAN UDP port (host order).
    pub udp_port: u16,
}

impl LocalVtep {
    /// A VTEP on the IANA port 4789.
    pub const fn new(ifindex: u32, addr: [u8; 4], mac: [u8; 6]) -> Self {
        Self {
            ifindex,
            addr,
            mac,
            udp_port: VXLAN_PORT,
        }
    }
}

/// Another host's VTEP, as its registration gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteVtep {
    /// IPv4 address (network order).
    pub addr: [u8; 4],
    /// Underlay MAC (outer destination MAC).
    pub mac: [u8; 6],
}

/// The owner of a HaVip when it lives on another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteOwner {
    /// The owner host's VTEP address (network order).
    pub vtep: [u8; 4],
    /// The owner ENI's MAC (inner destination MAC).
    pub mac: [u8; 6],
    /// Ownership epoch as published in the shared state.
    pub epoch: u64,
    /// The HaVip's dense id on this host (as in [`DesiredHavip::id`]).
    pub havip_id: u32,
}

/// VXLAN part of [`Desired`]. Default: none (single host, no VTEP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredVxlan {
    /// `None`: no VTEP; frames for remote owners are dropped (`no_vtep`).
    pub local: Option<LocalVtep>,
    pub remote_vteps: Vec<RemoteVtep>,
    /// (vSwitch id, VNI) of every vSwitch with a VNI.
    pub vnis: Vec<(u32, u32)>,
    /// Owners on other hosts; installed only over an older epoch.
    pub remote_owners: Vec<(HavipKey, RemoteOwner)>,
}
