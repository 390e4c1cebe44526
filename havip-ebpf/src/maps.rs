//! The map catalogue: every map the program uses, pinned by name under the
//! agent's pin path so a restarted agent adopts them (names in
//! `havip_common::names`).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, DevMapHash, HashMap, PerCpuArray, RingBuf},
};
use havip_common::{
    BindingEntry, BindingKey, DataplaneConfig, DropReason, EventBudget, Handled, HavipEntry,
    HavipKey, OwnerEntry, PortInfo, TrafficCounter, VpcAddrKey, EVENTS_BYTES, MAX_BINDINGS,
    MAX_HAVIPS, MAX_PORTS,
};

/// ingress ifindex (< `MAX_PORTS`) → vSwitch, role and gateway MAC; an
/// array so the per-frame lookup is inlined. Written by the agent.
#[map]
pub static PORTS: Array<PortInfo> = Array::pinned(MAX_PORTS, 0);

/// The same for ifindexes ≥ `MAX_PORTS`. Written by the agent.
#[map]
pub static PORTS_HIGH: HashMap<u32, PortInfo> = HashMap::pinned(MAX_PORTS, BPF_F_NO_PREALLOC);

/// The ingress port's entry, if it is one of ours.
#[inline(always)]
pub fn port(ifindex: u32) -> Option<&'static PortInfo> {
    let port = if ifindex < MAX_PORTS {
        PORTS.get(ifindex)
    } else {
        // SAFETY: plain-data map value.
        unsafe { PORTS_HIGH.get(&ifindex) }
    }?;
    (port.flags != 0).then_some(port)
}

/// ifindex → ifindex: the ports frames may be redirected to. Written by the agent.
#[map]
pub static TX_PORTS: DevMapHash = DevMapHash::pinned(MAX_PORTS, 0);

/// (vSwitch, address) → HaVip id and virtual MAC. Written by the agent.
#[map]
pub static HAVIPS: HashMap<HavipKey, HavipEntry> = HashMap::pinned(MAX_HAVIPS, BPF_F_NO_PREALLOC);

/// (VPC, address) → vSwitch id of the HaVip: ARP naming a HaVip of a
/// sibling vSwitch as sender is refused. Written by the agent.
#[map]
pub static VPC_HAVIPS: HashMap<VpcAddrKey, u32> = HashMap::pinned(MAX_HAVIPS, BPF_F_NO_PREALLOC);

/// (vSwitch, address) → current master. Created by the agent, switched by
/// claims in XDP (preallocated: updated from the program).
#[map]
pub static OWNERS: HashMap<HavipKey, OwnerEntry> = HashMap::pinned(MAX_HAVIPS, 0);

/// (HaVip id, port) → bound ENI's MAC. Written by the agent.
#[map]
pub static BINDINGS: HashMap<BindingKey, BindingEntry> =
    HashMap::pinned(MAX_BINDINGS, BPF_F_NO_PREALLOC);

/// Per CPU, by HaVip id: frames and bytes forwarded. Written by the program.
#[map]
pub static HAVIP_STATS: PerCpuArray<TrafficCounter> = PerCpuArray::pinned(MAX_HAVIPS, 0);

/// Per CPU, by `Handled`: frames and bytes. Written by the program.
#[map]
pub static HANDLED: PerCpuArray<TrafficCounter> = PerCpuArray::pinned(Handled::COUNT as u32, 0);

/// Per CPU, by `DropReason`: frames and bytes. Written by the program.
#[map]
pub static DROPS: PerCpuArray<TrafficCounter> = PerCpuArray::pinned(DropReason::COUNT as u32, 0);

/// Owner changes and refused claims, read by the agent.
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

/// `[0]`: run-time settings (hold time, event rate). Written by the agent.
#[map]
pub static CONFIG: Array<DataplaneConfig> = Array::pinned(1, 0);

/// `[0]` per CPU: the security-event rate limiter. Written by the program.
#[map]
pub static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::pinned(1, 0);

/// Adds one frame of `len` bytes to a per-CPU counter.
#[inline(always)]
pub fn count(map: &PerCpuArray<TrafficCounter>, index: u32, len: u64) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}
