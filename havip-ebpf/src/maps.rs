//! The program's maps, declared from the catalogue in
//! `havip_common::catalogue` (name, capacity, flags; key and value types
//! checked against its sizes at compile time). All are pinned by name under
//! the agent's pin dir so a restarted agent adopts them.
//!
//! Reading hash values: `HashMap::get` hands out a pointer into the map.
//! The memory stays mapped while the program runs, but the kernel does not
//! hold an element for its readers: an update of a preallocated map
//! (`OWNERS`) takes a spare element and gives the replaced one back as the
//! spare, so the *next* update on that CPU (of any key) may overwrite it
//! while we read; since Linux 6.1 non-preallocated maps reuse elements the
//! same way (`SLAB_TYPESAFE_BY_RCU`). Array slots are updated in place. So
//! the fields read from one lookup can mix two updates; every reader copies
//! the few fields it needs at once and says what a mix would cost.

use aya_ebpf::{
    bindings::bpf_devmap_val,
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray, RingBuf},
};
use havip_common::{
    catalogue, BindingEntry, BindingKey, DataplaneConfig, EipEntry, EipSnatEntry, EventBudget,
    HavipEntry, HavipKey, OwnerEntry, PortInfo, TrafficCounter, VpcAddrKey, VtepConfig, VtepEntry,
    MAX_PORTS,
};

pub use crate::counter::count;

/// Declares a pinned map from its catalogue entry: the static's name is the
/// catalogue name (and so the pin name), capacity and flags come from the
/// entry, and the key and value sizes are checked against it.
macro_rules! catalogued {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $ctor:ident, $key:ty => $value:ty) => {
        $(#[$doc])*
        #[map]
        pub static $name: $ty =
            $ctor::pinned(catalogue::$name.max_entries, catalogue::$name.flags);
        const _: () = {
            assert!(core::mem::size_of::<$key>() == catalogue::$name.key_size as usize);
            assert!(core::mem::size_of::<$value>() == catalogue::$name.value_size as usize);
        };
    };
}

catalogued!(PORTS: Array<PortInfo> = Array, u32 => PortInfo);
catalogued!(PORTS_HIGH: HashMap<u32, PortInfo> = HashMap, u32 => PortInfo);
catalogued!(TX_PORTS: DevMapHash = DevMapHash, u32 => bpf_devmap_val);
catalogued!(HAVIPS: HashMap<HavipKey, HavipEntry> = HashMap, HavipKey => HavipEntry);
catalogued!(VPC_HAVIPS: HashMap<VpcAddrKey, u32> = HashMap, VpcAddrKey => u32);
catalogued!(OWNERS: HashMap<HavipKey, OwnerEntry> = HashMap, HavipKey => OwnerEntry);
catalogued!(BINDINGS: HashMap<BindingKey, BindingEntry> = HashMap, BindingKey => BindingEntry);
catalogued!(HAVIP_STATS: PerCpuArray<TrafficCounter> = PerCpuArray, u32 => TrafficCounter);
catalogued!(HANDLED: PerCpuArray<TrafficCounter> = PerCpuArray, u32 => TrafficCounter);
catalogued!(DROPS: PerCpuArray<TrafficCounter> = PerCpuArray, u32 => TrafficCounter);
catalogued!(EVENTS: RingBuf = RingBuf, () => ());
catalogued!(CONFIG: Array<DataplaneConfig> = Array, u32 => DataplaneConfig);
catalogued!(EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray, u32 => EventBudget);
catalogued!(VTEP_CONFIG: Array<VtepConfig> = Array, u32 => VtepConfig);
catalogued!(VTEPS: HashMap<[u8; 4], VtepEntry> = HashMap, [u8; 4] => VtepEntry);
catalogued!(VSWITCH_VNIS: HashMap<u32, u32> = HashMap, u32 => u32);
catalogued!(VNI_VSWITCHES: HashMap<u32, u32> = HashMap, u32 => u32);
catalogued!(EIPS: HashMap<[u8; 4], EipEntry> = HashMap, [u8; 4] => EipEntry);
catalogued!(EIP_SNAT: HashMap<HavipKey, EipSnatEntry> = HashMap, HavipKey => EipSnatEntry);

/// The ingress port's entry, if it is one of ours. A reference, not a copy
/// (the forward path reads two fields): `PORTS` slots are rewritten in
/// place by the agent, so a frame racing a port reconfiguration can see the
/// old vSwitch with the new gateway MAC, or the reverse: that one frame is
/// judged or rewritten with mixed port settings.
#[inline(always)]
pub fn port(ifindex: u32) -> Option<&'static PortInfo> {
    let port = if ifindex < MAX_PORTS {
        PORTS.get(ifindex)
    } else {
        // SAFETY: the pointer stays valid while the program runs; its
        // fields can mix two agent updates (see above and the module comment).
        unsafe { PORTS_HIGH.get(&ifindex) }
    }?;
    (port.flags != 0).then_some(port)
}

/// The HaVip `key`, if configured (id and virtual MAC, copied).
#[inline(always)]
pub fn havip(key: &HavipKey) -> Option<HavipEntry> {
    // SAFETY: the pointer is valid while the program runs; the value is
    // copied at once. Agent-written: a racing reconcile can at worst give
    // this frame the id of the HaVip being replaced.
    unsafe { HAVIPS.get(key) }.copied()
}

/// The MAC bound to (HaVip id, port), if the port is bound.
#[inline(always)]
pub fn binding(havip_id: u32, ifindex: u32) -> Option<[u8; 6]> {
    let key = BindingKey { havip_id, ifindex };
    // SAFETY: as `havip`: agent-written, copied at once; a racing update can
    // at worst judge this one frame against the binding being replaced.
    unsafe { BINDINGS.get(&key) }.map(|b| b.mac)
}

/// This host's VTEP, if configured (copied: an agent update racing this
/// frame can at worst give it the old address or MAC).
#[inline(always)]
pub fn local_vtep() -> Option<VtepConfig> {
    let cfg = *VTEP_CONFIG.get(0)?;
    (u32::from_ne_bytes(cfg.addr) != 0).then_some(cfg)
}

/// Underlay MAC of the remote VTEP `addr`, if known.
#[inline(always)]
pub fn remote_vtep_mac(addr: &[u8; 4]) -> Option<[u8; 6]> {
    // SAFETY: agent-written, copied at once (see `havip`).
    unsafe { VTEPS.get(addr) }.map(|v| v.mac)
}

/// VNI of the vSwitch `vswitch_id`, if it has one.
#[inline(always)]
pub fn vni_of(vswitch_id: u32) -> Option<u32> {
    // SAFETY: agent-written, copied at once (see `havip`).
    unsafe { VSWITCH_VNIS.get(&vswitch_id) }.copied()
}

/// vSwitch of the VNI `vni`, if it is one of this host's.
#[inline(always)]
pub fn vswitch_of(vni: u32) -> Option<u32> {
    // SAFETY: agent-written, copied at once (see `havip`).
    unsafe { VNI_VSWITCHES.get(&vni) }.copied()
}

/// The HaVip the EIP `addr` is associated with, if any (copied).
#[inline(always)]
pub fn eip(addr: &[u8; 4]) -> Option<EipEntry> {
    // SAFETY: agent-written, copied at once (see `havip`): a racing
    // (un)association can at worst translate this one frame the old way.
    unsafe { EIPS.get(addr) }.copied()
}

/// The EIP of the HaVip `key`, if it has one (copied).
#[inline(always)]
pub fn eip_of(key: &HavipKey) -> Option<EipSnatEntry> {
    // SAFETY: agent-written, copied at once (see `eip`).
    unsafe { EIP_SNAT.get(key) }.copied()
}
