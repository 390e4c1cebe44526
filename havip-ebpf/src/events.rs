//! Events to the agent: owner changes always, refusals rate-limited per CPU
//! so a flood of spoofed claims cannot fill the ring buffer.
//!
//! No wake-up per event: records are committed with `BPF_RB_NO_WAKEUP`
//! (a wake-up costs the writing CPU ~12 us of program time: an IPI to the
//! agent's CPU from inside the claim), and the agent drains the ring on a
//! 1 ms timer. Only when the ring is past [`WAKEUP_FILL`] (the agent has
//! fallen behind) is the record committed with `BPF_RB_FORCE_WAKEUP`.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use aya_log_ebpf::warn;
use havip_common::{
    event_kind, DropReason, Event, HavipKey, OwnerEntry, DEFAULT_SECURITY_EVENTS_PER_SEC,
    EVENTS_BYTES,
};

use crate::maps::{CONFIG, EVENTS, EVENT_BUDGET};

const WINDOW_NS: u64 = 1_000_000_000;
/// `BPF_RB_NO_WAKEUP` / `BPF_RB_FORCE_WAKEUP` / `BPF_RB_AVAIL_DATA`.
const RB_NO_WAKEUP: u64 = 1;
const RB_FORCE_WAKEUP: u64 = 2;
const RB_AVAIL_DATA: u64 = 0;
/// Bytes waiting in `EVENTS` past which a record wakes the agent: a
/// quarter of the ring (~1,000 events).
pub const WAKEUP_FILL: u64 = EVENTS_BYTES as u64 / 4;

/// Commit flags for the next record: no wake-up unless the ring fills.
#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(RB_AVAIL_DATA) >= WAKEUP_FILL {
        RB_FORCE_WAKEUP
    } else {
        RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn owner_changed(ctx: &XdpContext, key: &HavipKey, previous: &OwnerEntry, next: &OwnerEntry) {
    let event = Event {
        epoch: next.epoch,
        ts_ns: next.changed_ns,
        kind: event_kind::OWNER_CHANGED,
        reason: 0,
        havip_id: next.havip_id,
        key: *key,
        ifindex: next.ifindex,
        prev_ifindex: previous.ifindex,
        mac: next.mac,
        prev_mac: previous.mac,
        suppressed: 0,
        _pad: 0,
    };
    if EVENTS.output::<Event>(&event, wakeup_flags()).is_err() {
        note_lost(ctx);
    }
}

#[inline(always)]
pub fn refused(
    ctx: &XdpContext,
    key: &HavipKey,
    havip_id: u32,
    ifindex: u32,
    mac: &[u8; 6],
    reason: DropReason,
) {
    let Some(budget) = EVENT_BUDGET.get_ptr_mut(0) else {
        return;
    };
    let limit = match CONFIG.get(0) {
        Some(c) if c.security_events_per_sec != 0 => c.security_events_per_sec,
        _ => DEFAULT_SECURITY_EVENTS_PER_SEC,
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: `budget` is this CPU's slot of a per-CPU array; XDP runs with
    // preemption off, so no one else writes it while we run.
    let suppressed = unsafe {
        if now.wrapping_sub((*budget).window_start_ns) >= WINDOW_NS {
            (*budget).window_start_ns = now;
            (*budget).emitted = 0;
        }
        if (*budget).emitted >= limit {
            (*budget).suppressed += 1;
            return;
        }
        (*budget).emitted += 1;
        let suppressed = (*budget).suppressed;
        (*budget).suppressed = 0;
        suppressed
    };
    let event = Event {
        epoch: 0,
        ts_ns: now,
        kind: event_kind::CLAIM_REFUSED,
        reason: reason as u32,
        havip_id,
        key: *key,
        ifindex,
        prev_ifindex: 0,
        mac: *mac,
        prev_mac: [0; 6],
        suppressed,
        _pad: 0,
    };
    if EVENTS.output::<Event>(&event, wakeup_flags()).is_err() {
        note_lost(ctx);
    }
}

/// The ring buffer is full (the agent is not draining it): count the loss
/// and say so through aya-log's own buffer, the one channel left.
#[inline(never)]
fn note_lost(ctx: &XdpContext) {
    if let Some(budget) = EVENT_BUDGET.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array (see `refused`).
        unsafe { (*budget).lost += 1 };
    }
    warn!(ctx, "havip: EVENTS ring buffer full, event lost");
}
