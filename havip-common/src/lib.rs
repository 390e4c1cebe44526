//! Types shared by the havip XDP program (`havip-ebpf`) and the agent.
//!
//! Every map key, map value and event is `#[repr(C)]` with explicit padding
//! so both sides agree on the bytes; sizes are checked at compile time.
//! Addresses are kept as `[u8; 4]` in network order, exactly as on the wire.
#![no_std]

/// Capacity of the HaVip tables (`HAVIPS`, `OWNERS`, `HAVIP_STATS`).
pub const MAX_HAVIPS: u32 = 1 << 17;
/// Capacity of the port tables (`PORTS`, `PORTS_HIGH`, `TX_PORTS`); also the
/// first ifindex that goes to `PORTS_HIGH` instead of the `PORTS` array.
pub const MAX_PORTS: u32 = 4096;
/// Capacity of `BINDINGS`: up to 10 bindings for every HaVip a host could hold.
pub const MAX_BINDINGS: u32 = 1 << 18;
/// Ring buffer size for `EVENTS`, in bytes (a power of two, page aligned).
pub const EVENTS_BYTES: u32 = 1 << 18;
/// Default cap on security events per CPU per second.
pub const DEFAULT_SECURITY_EVENTS_PER_SEC: u32 = 64;
/// Capacity of `VTEPS`: remote hypervisors one host can send to.
pub const MAX_VTEPS: u32 = 4096;
/// Capacity of the VNI tables (`VSWITCH_VNIS`, `VNI_VSWITCHES`).
pub const MAX_VSWITCHES: u32 = 4096;
/// IANA VXLAN UDP port (RFC 7348), the default of `VtepConfig::port`.
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN encapsulation adds in front of the inner Ethernet frame:
/// outer Ethernet (14), IPv4 without options (20), UDP (8), VXLAN (8).
pub const VXLAN_OVERHEAD: usize = 50;

/// Product limits (see PRODUCT.md). The control plane enforces them.
pub mod limits {
    /// Instances or ENIs bound to one HaVip.
    pub const BINDINGS_PER_HAVIP: usize = 10;
    /// HaVips bound to one instance at once.
    pub const HAVIPS_PER_INSTANCE: usize = 5;
    /// Default quota: HaVips per account.
    pub const DEFAULT_HAVIPS_PER_ACCOUNT: usize = 5;
    /// Default quota: HaVips per VPC.
    pub const DEFAULT_HAVIPS_PER_VPC: usize = 5;
    /// Default quota: route entries per VPC whose next hop is a HaVip.
    pub const DEFAULT_HAVIP_ROUTES_PER_VPC: usize = 5;
}

pub mod catalogue;
mod outcome;

pub use catalogue::{names, DevMapValue, MapKind, MapSpec};
pub use outcome::{DropReason, Handled};

/// What a host port leads to.
pub mod port_flags {
    /// The host side of an instance's ENI (tap/veth): claims are accepted here.
    pub const INSTANCE: u32 = 1 << 0;
    /// The uplink towards the rest of the vSwitch: never a source of claims.
    pub const UPLINK: u32 = 1 << 1;
    /// The underlay NIC carrying VXLAN between hypervisors (in no vSwitch):
    /// VXLAN to the local VTEP for a HaVip with a local owner is
    /// decapsulated; everything else passes to the stack untouched.
    pub const VTEP: u32 = 1 << 2;
}

/// `PORTS`/`PORTS_HIGH` value: the ingress port's place in the VPC, by
/// ingress ifindex. An all-zero entry (`flags == 0`) is no port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// vSwitch (subnet) whose HaVips this port can reach.
    pub vswitch_id: u32,
    /// VPC of that vSwitch: scopes the wrong-vSwitch claim check.
    pub vpc_id: u32,
    /// [`port_flags`].
    pub flags: u32,
    /// Source MAC written on frames forwarded to a HaVip owner.
    pub gateway_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `HAVIPS` and `OWNERS` key: a HaVip address inside one vSwitch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HavipKey {
    pub vswitch_id: u32,
    /// IPv4 address, network order.
    pub addr: [u8; 4],
}

/// `VPC_HAVIPS` key: a HaVip address inside one VPC (any of its vSwitches).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VpcAddrKey {
    pub vpc_id: u32,
    /// IPv4 address, network order.
    pub addr: [u8; 4],
}

/// `HAVIPS` value: what the control plane configured for a HaVip.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HavipEntry {
    /// Dense id: index into `HAVIP_STATS`, part of the `BINDINGS` key.
    pub id: u32,
    pub flags: u32,
    /// Stable virtual MAC given in proxy ARP replies.
    pub virtual_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `OWNERS` value: the current master of a HaVip. Written by claims in XDP;
/// the agent creates the entry, only clears it when the master is unbound,
/// and installs remote owners (owner on another host, flag
/// [`owner_flags::REMOTE`]) with their epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerEntry {
    /// Incremented on every change of owner.
    pub epoch: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last change.
    pub changed_ns: u64,
    pub havip_id: u32,
    /// Owner's host port; 0 = no owner (traffic is dropped and counted).
    /// For a remote owner: the local VTEP port when it was installed
    /// (informational; the program sends out of `VTEP_CONFIG`'s port).
    pub ifindex: u32,
    /// Owner ENI's MAC: destination MAC of forwarded (inner) frames.
    pub mac: [u8; 6],
    /// [`owner_flags`].
    pub flags: u16,
    /// Remote owner only: its host's VTEP IPv4 address (network order).
    pub vtep: [u8; 4],
    pub _pad: [u8; 4],
}

pub mod owner_flags {
    /// The owner was set by an ARP claim in the kernel.
    pub const BY_CLAIM: u16 = 1 << 0;
    /// The owner was set by the control plane (config, initial owner).
    pub const BY_CONTROL: u16 = 1 << 1;
    /// The owner is on another host (`vtep`): frames for it are
    /// VXLAN-encapsulated and sent out of the local VTEP port.
    pub const REMOTE: u16 = 1 << 2;
}

impl OwnerEntry {
    pub const fn has_owner(&self) -> bool {
        self.ifindex != 0
    }

    /// The owner is on another host.
    pub const fn is_remote(&self) -> bool {
        self.flags & owner_flags::REMOTE != 0
    }
}

/// `VTEP_CONFIG[0]`: this host's VXLAN tunnel endpoint. `addr` all zero =
/// no VTEP (frames for remote owners are dropped as `no_vtep`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtepConfig {
    /// Local VTEP IPv4 address (network order): outer source of encapsulated
    /// frames, and the only outer destination decapsulated.
    pub addr: [u8; 4],
    /// The underlay port (flag `VTEP`) encapsulated frames leave through.
    pub ifindex: u32,
    /// That port's MAC: outer Ethernet source.
    pub mac: [u8; 6],
    /// VXLAN UDP port, network order (4789 unless configured).
    pub port: [u8; 2],
}

/// `VTEPS` value: how to reach a remote VTEP on the underlay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtepEntry {
    /// Underlay MAC of the remote VTEP (outer Ethernet destination).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `BINDINGS` key: HaVip id and the host port of a bound instance/ENI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    pub havip_id: u32,
    pub ifindex: u32,
}

/// `BINDINGS` value: the MAC the bound ENI must claim with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Packet and byte counter (per CPU in the maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// `CONFIG[0]`: run-time settings written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Minimum time between owner changes to a *different* member; 0 = none.
    pub hold_ns: u64,
    /// Security events emitted per CPU per second at most; 0 = default.
    pub security_events_per_sec: u32,
    pub flags: u32,
}

/// `EVENT_BUDGET[0]` (per CPU): the security-event rate limiter's window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBudget {
    pub window_start_ns: u64,
    /// Events that found the ring buffer full (the agent is not keeping up).
    pub lost: u64,
    pub emitted: u32,
    pub suppressed: u32,
}

/// Kind of an [`Event`].
pub mod event_kind {
    /// A bound member took over a HaVip.
    pub const OWNER_CHANGED: u32 = 1;
    /// A claim or spoofed ARP was refused; `reason` is a [`crate::DropReason`].
    pub const CLAIM_REFUSED: u32 = 2;
}

/// Ring-buffer record sent to the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub epoch: u64,
    pub ts_ns: u64,
    /// [`event_kind`].
    pub kind: u32,
    /// [`DropReason`] as u32 for refusals, 0 otherwise.
    pub reason: u32,
    pub havip_id: u32,
    pub key: HavipKey,
    pub ifindex: u32,
    pub prev_ifindex: u32,
    pub mac: [u8; 6],
    pub prev_mac: [u8; 6],
    /// Security events suppressed by the rate limiter before this one.
    pub suppressed: u32,
    pub _pad: u32,
}

/// Stable locally administered virtual MAC of a HaVip: `02:48` + the address.
/// Unique inside a vSwitch (addresses are), identical on every host.
pub const fn virtual_mac(addr: [u8; 4]) -> [u8; 6] {
    [0x02, 0x48, addr[0], addr[1], addr[2], addr[3]]
}

// No hidden padding: every size is the sum of its fields.
const _: () = {
    assert!(core::mem::size_of::<PortInfo>() == 20);
    assert!(core::mem::size_of::<HavipKey>() == 8);
    assert!(core::mem::size_of::<HavipEntry>() == 16);
    assert!(core::mem::size_of::<OwnerEntry>() == 40);
    assert!(core::mem::size_of::<VtepConfig>() == 16);
    assert!(core::mem::size_of::<VtepEntry>() == 8);
    assert!(core::mem::size_of::<BindingKey>() == 8);
    assert!(core::mem::size_of::<BindingEntry>() == 8);
    assert!(core::mem::size_of::<TrafficCounter>() == 16);
    assert!(core::mem::size_of::<DataplaneConfig>() == 16);
    assert!(core::mem::size_of::<EventBudget>() == 24);
    assert!(core::mem::size_of::<Event>() == 64);
    assert!(core::mem::size_of::<VpcAddrKey>() == 8);
    assert!(core::mem::size_of::<DevMapValue>() == 8);
};

#[cfg(feature = "user")]
mod user {
    use super::*;

    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: repr(C), only integer fields and byte arrays, no padding
            // (checked by the size asserts above).
            unsafe impl aya::Pod for $t {}
            unsafe impl bytemuck::Zeroable for $t {}
            unsafe impl bytemuck::Pod for $t {}
        )*};
    }
    pod!(
        PortInfo,
        HavipKey,
        VpcAddrKey,
        HavipEntry,
        OwnerEntry,
        BindingKey,
        BindingEntry,
        TrafficCounter,
        DataplaneConfig,
        EventBudget,
        Event,
        VtepConfig,
        VtepEntry
    );
}

/// Capacity of the EIP tables (`EIPS`, `EIP_SNAT`).
pub const MAX_EIPS: u32 = 1 << 16;

/// `EIPS` value, keyed by the EIP (IPv4, network order): the HaVip the EIP
/// is associated with. Frames from an uplink to the EIP get the HaVip as
/// destination (DNAT) and go to its owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EipEntry {
    /// vSwitch of the HaVip.
    pub vswitch_id: u32,
    /// HaVip address, network order.
    pub havip: [u8; 4],
    /// The HaVip's dense id (as in `HAVIPS`).
    pub havip_id: u32,
}

/// `EIP_SNAT` value, keyed by the HaVip ([`HavipKey`]): its EIP. Frames
/// from the HaVip's current owner to the outside get it as source (SNAT).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EipSnatEntry {
    /// EIP address, network order.
    pub eip: [u8; 4],
    pub havip_id: u32,
}

const _: () = {
    assert!(core::mem::size_of::<EipEntry>() == 12);
    assert!(core::mem::size_of::<EipSnatEntry>() == 8);
};

#[cfg(feature = "user")]
mod user_eip {
    use super::{EipEntry, EipSnatEntry};

    // SAFETY: repr(C), only integer fields and byte arrays, no padding
    // (checked by the size asserts above).
    unsafe impl aya::Pod for EipEntry {}
    unsafe impl bytemuck::Zeroable for EipEntry {}
    unsafe impl bytemuck::Pod for EipEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for EipSnatEntry {}
    unsafe impl bytemuck::Zeroable for EipSnatEntry {}
    unsafe impl bytemuck::Pod for EipSnatEntry {}
}
