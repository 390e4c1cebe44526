//! An authorised claim: switch the owner in the kernel, then tell the agent.

use aya_ebpf::programs::XdpContext;
use havip_common::{owner_copy, owner_word, DropReason, Handled, HavipKey, OwnerEntry};

use crate::{events, maps::FoundHavip};

/// Stores the owner word `word` (decided by `policy::claim`, decoded as
/// `next`) in the HaVip's row, after the copy of the claimer's port and
/// MAC (`owner_copy`): one aligned 8-byte store each, so a forward-path
/// reader on another CPU sees the old owner or the new one, whole. No
/// compare-and-swap here: two claims for one HaVip on two CPUs in the same
/// instant both write epoch + 1 and the last store wins (both reported);
/// an agent move racing a claim loses to the claim's store.
#[inline(always)]
pub fn take_over(
    ctx: &XdpContext,
    key: &HavipKey,
    havip: &FoundHavip,
    word: u64,
    current: &OwnerEntry,
    next: &OwnerEntry,
) -> Result<Handled, DropReason> {
    havip.set_owner(
        word,
        next.changed_ns,
        owner_copy::pack(owner_word::member(word), next.ifindex, next.mac),
    );
    events::owner_changed(ctx, key, current, next);
    Ok(Handled::ClaimAccepted)
}
