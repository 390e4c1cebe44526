//! Per-CPU packet/byte counters (shared with the bench-only programs).

use aya_ebpf::maps::PerCpuArray;
use havip_common::TrafficCounter;

/// Adds one frame of `len` bytes to slot `index` of a per-CPU counter array.
#[inline(always)]
pub fn count(map: &PerCpuArray<TrafficCounter>, index: u32, len: u64) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array; XDP runs with
        // preemption off, so nothing else writes it while we run (the agent
        // only reads these maps).
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}
