//! ARP naming a HaVip as *sender*: a claim, a member resolving a peer, or a
//! spoof.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use havip_common::{
    owner_flags, owner_word, port_flags, DropReason, HavipKey, OwnerEntry, PortInfo, VpcAddrKey,
    REMOTE_MEMBER_FIRST,
};

use crate::{
    maps::{self, FoundHavip, CONFIG, VPC_HAVIPS},
    packet::mac_eq,
    parse::arp::Arp,
};

pub enum ClaimDecision {
    /// The sender is no HaVip of this VPC: nothing for the claim path.
    NotAHavipSender,
    /// From the uplink and not a claim (an owner on another host resolving a
    /// local guest): passed.
    PassRemote,
    /// From a bound member with its bound MAC, not a claim (the owner
    /// resolving a client from the HaVip): passed.
    PassMember,
    /// Refused: dropped, counted and reported. `havip_id` 0 when the HaVip
    /// belongs to another vSwitch.
    Refuse {
        reason: DropReason,
        key: HavipKey,
        havip_id: u32,
    },
    /// An authorised claim from the current owner: nothing to change.
    Refresh,
    /// An authorised claim that moves the HaVip: store `word` (decoded:
    /// `next`) over `current` in the HaVip's row.
    Take {
        key: HavipKey,
        havip: FoundHavip,
        word: u64,
        current: OwnerEntry,
        next: OwnerEntry,
    },
}

/// `eth_src` is the frame's Ethernet source; `port` the ingress port's entry.
#[inline(always)]
pub fn decide(port: &PortInfo, ifindex: u32, eth_src: &[u8; 6], arp: &Arp) -> ClaimDecision {
    let vswitch_id = port.vswitch_id;
    let key = HavipKey {
        vswitch_id,
        addr: arp.spa,
    };
    let Some(havip) = maps::find_havip(&key) else {
        return sibling_vswitch(port, key);
    };
    let havip_id = havip.id;
    let refuse = |reason| ClaimDecision::Refuse {
        reason,
        key,
        havip_id,
    };
    if !mac_eq(eth_src, &arp.sha) {
        return refuse(DropReason::ArpSenderMismatch);
    }
    let claim = arp.is_gratuitous() || arp.is_reply();
    if port.flags & port_flags::INSTANCE == 0 {
        // The uplink never makes an owner; an owner elsewhere resolving a
        // local guest (its ARP names the HaVip as sender) passes.
        return if claim {
            refuse(DropReason::ClaimNotFromInstance)
        } else {
            ClaimDecision::PassRemote
        };
    }
    let Some(bound_mac) = maps::binding(havip_id, ifindex) else {
        return refuse(DropReason::ClaimUnbound);
    };
    if !mac_eq(&bound_mac, &arp.sha) {
        return refuse(DropReason::ClaimMacMismatch);
    }
    if !claim {
        return ClaimDecision::PassMember;
    }
    take_or_hold(key, havip, ifindex, &arp.sha)
}

/// The sender is a HaVip of a sibling vSwitch of the same VPC: its address
/// is outside this vSwitch's CIDR, so nobody here may announce it.
#[inline(always)]
fn sibling_vswitch(port: &PortInfo, key: HavipKey) -> ClaimDecision {
    let vpc_key = VpcAddrKey {
        vpc_id: port.vpc_id,
        addr: key.addr,
    };
    // SAFETY: the pointer stays valid while the program runs; the u32 is
    // read once. Agent-written: a racing update can at worst judge this one
    // frame against the entry being replaced.
    match unsafe { VPC_HAVIPS.get(&vpc_key) }.copied() {
        Some(vswitch) if vswitch != key.vswitch_id => ClaimDecision::Refuse {
            reason: DropReason::ClaimWrongVSwitch,
            key,
            havip_id: 0,
        },
        _ => ClaimDecision::NotAHavipSender,
    }
}

/// An authorised claim (port and MAC checked against `BINDINGS`): refresh,
/// take, or refuse inside the hold time. The claimer is found among the
/// HaVip's local members (the agent writes a member before its binding).
#[inline(always)]
fn take_or_hold(key: HavipKey, havip: FoundHavip, ifindex: u32, mac: &[u8; 6]) -> ClaimDecision {
    let havip_id = havip.id;
    let refuse = |reason| ClaimDecision::Refuse {
        reason,
        key,
        havip_id,
    };
    // One load: the owner this decision is made on.
    let word = havip.owner_word();
    let mut index = 0;
    let mut found = 0u16;
    while index < REMOTE_MEMBER_FIRST {
        if let Some(m) = havip.member(index) {
            if m.ifindex == ifindex && mac_eq(&m.mac, mac) {
                found = index as u16 + 1;
                break;
            }
        }
        index += 1;
    }
    if found == 0 {
        // Bound but its member not written yet (a reconcile in progress).
        return refuse(DropReason::OwnerUpdateFailed);
    }
    if owner_word::member(word) == found {
        return ClaimDecision::Refresh;
    }
    let current = havip.owner_from(word);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let hold_ns = CONFIG.get(0).map_or(0, |c| c.hold_ns);
    // Only a claim starts a hold: an owner set by the control plane (no
    // timestamp in the kernel's clock) can be taken at once.
    let held = owner_word::flags(word) & owner_flags::BY_CLAIM != 0
        && now.wrapping_sub(havip.changed_ns()) < hold_ns;
    if hold_ns != 0 && current.has_owner() && held {
        return refuse(DropReason::ClaimHeldDown);
    }
    let epoch = owner_word::epoch(word).wrapping_add(1);
    let next_word = owner_word::pack(epoch, owner_flags::BY_CLAIM, found);
    ClaimDecision::Take {
        key,
        havip,
        word: next_word,
        current,
        next: OwnerEntry {
            epoch: u64::from(epoch),
            changed_ns: now,
            havip_id,
            ifindex,
            mac: *mac,
            flags: owner_flags::BY_CLAIM,
            vtep: [0; 4],
            _pad: [0; 4],
        },
    }
}
