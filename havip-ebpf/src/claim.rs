//! An authorised claim: switch the owner in the kernel, then tell the agent.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use aya_log_ebpf::error;
use havip_common::{owner_flags, DropReason, Handled, HavipKey, OwnerEntry};

use crate::{
    events,
    maps::{CONFIG, OWNERS},
    packet::mac_eq,
};

/// `havip_id`/`ifindex`/`mac` were checked against `BINDINGS` by the caller.
#[inline(always)]
pub fn take_over(
    ctx: &XdpContext,
    key: &HavipKey,
    havip_id: u32,
    ifindex: u32,
    mac: &[u8; 6],
) -> Result<Handled, DropReason> {
    // SAFETY: plain-data map value, copied before use.
    let current = match unsafe { OWNERS.get(key) } {
        Some(owner) => *owner,
        None => OwnerEntry::default(),
    };
    if current.ifindex == ifindex && mac_eq(&current.mac, mac) {
        return Ok(Handled::ClaimRefreshed);
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let hold_ns = CONFIG.get(0).map_or(0, |c| c.hold_ns);
    // Only a claim starts a hold: an owner set by the control plane (no
    // timestamp in the kernel's clock) can be taken at once.
    let held = current.flags & owner_flags::BY_CLAIM != 0
        && now.wrapping_sub(current.changed_ns) < hold_ns;
    if hold_ns != 0 && current.has_owner() && held {
        events::refused(ctx, key, havip_id, ifindex, mac, DropReason::ClaimHeldDown);
        return Err(DropReason::ClaimHeldDown);
    }
    let next = OwnerEntry {
        epoch: current.epoch + 1,
        changed_ns: now,
        havip_id,
        ifindex,
        mac: *mac,
        flags: owner_flags::BY_CLAIM,
    };
    // Replaces the element whole: the forward path sees old or new, never a mix.
    if OWNERS.insert(key, &next, 0).is_err() {
        error!(
            ctx,
            "havip: OWNERS update refused for HaVip id {}", havip_id
        );
        return Err(DropReason::OwnerUpdateFailed);
    }
    events::owner_changed(ctx, key, &current, &next);
    Ok(Handled::ClaimAccepted)
}
