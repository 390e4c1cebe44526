//! An authorised claim: switch the owner in the kernel, then tell the agent.

use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::error;
use havip_common::{DropReason, Handled, HavipKey, OwnerEntry};

use crate::{events, maps::OWNERS};

/// Writes `next` (decided by `policy::claim`) for `key`.
#[inline(always)]
pub fn take_over(
    ctx: &XdpContext,
    key: &HavipKey,
    current: &OwnerEntry,
    next: &OwnerEntry,
) -> Result<Handled, DropReason> {
    // An update of an existing element: the kernel copies `next` into its
    // spare element and links it in place of the old one. A forward-path
    // reader on another CPU keeps reading the old element (whole) unless a
    // second update on this CPU reuses it meanwhile (see `maps`).
    if OWNERS.insert(key, next, 0).is_err() {
        error!(
            ctx,
            "havip: OWNERS update refused for HaVip id {}", next.havip_id
        );
        return Err(DropReason::OwnerUpdateFailed);
    }
    events::owner_changed(ctx, key, current, next);
    Ok(Handled::ClaimAccepted)
}
