//! ARP naming a HaVip as *sender*: a claim, a member resolving a peer, or a
//! spoof.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use havip_common::{
    owner_flags, port_flags, DropReason, HavipKey, OwnerEntry, PortInfo, VpcAddrKey,
};

use crate::{
    maps::{self, CONFIG, OWNERS, VPC_HAVIPS},
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
    /// An authorised claim that moves the HaVip: write `next` over `current`.
    Take {
        key: HavipKey,
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
    let Some(havip) = maps::havip(&key) else {
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
        // The uplink never makes a master; an owner elsewhere resolving a
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
    take_or_hold(key, havip_id, ifindex, &arp.sha)
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
/// take, or refuse inside the hold time.
#[inline(always)]
fn take_or_hold(key: HavipKey, havip_id: u32, ifindex: u32, mac: &[u8; 6]) -> ClaimDecision {
    // SAFETY: the pointer stays valid while the program runs; the entry is
    // copied at once. A claim for another HaVip on another CPU can overwrite
    // this element during the copy (preallocated map, see `maps`): then
    // `current` mixes two entries, and the only effect is on this decision
    // (a refresh taken for a change or the reverse, an epoch off by one);
    // the agent reconciles OWNERS from the events either way.
    let current = unsafe { OWNERS.get(&key) }.copied().unwrap_or_default();
    if current.ifindex == ifindex && mac_eq(&current.mac, mac) {
        return ClaimDecision::Refresh;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let hold_ns = CONFIG.get(0).map_or(0, |c| c.hold_ns);
    // Only a claim starts a hold: an owner set by the control plane (no
    // timestamp in the kernel's clock) can be taken at once.
    let held = current.flags & owner_flags::BY_CLAIM != 0
        && now.wrapping_sub(current.changed_ns) < hold_ns;
    if hold_ns != 0 && current.has_owner() && held {
        return ClaimDecision::Refuse {
            reason: DropReason::ClaimHeldDown,
            key,
            havip_id,
        };
    }
    ClaimDecision::Take {
        key,
        current,
        next: OwnerEntry {
            epoch: current.epoch + 1,
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
