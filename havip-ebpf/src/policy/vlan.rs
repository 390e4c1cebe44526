//! VLAN-tagged frames: never redirected, never a claim, never answered.
//! They pass untouched to the bridge, whose VLAN filtering decides, except
//! a tagged frame naming a HaVip as sender/source on an instance port: a
//! tag must not be a way around the anti-spoofing checks.

use havip_common::{port_flags, HavipKey, PortInfo};

use crate::maps;

pub enum TaggedDecision {
    Pass,
    /// Names a HaVip of the port's vSwitch: dropped and reported
    /// (`DropReason::TaggedHavipSender`).
    Refuse {
        key: HavipKey,
        havip_id: u32,
    },
}

/// `sender` is the IPv4 source or the ARP sender address.
#[inline(always)]
pub fn decide(port: &PortInfo, sender: [u8; 4]) -> TaggedDecision {
    if port.flags & port_flags::INSTANCE == 0 {
        return TaggedDecision::Pass;
    }
    let key = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: sender,
    };
    match maps::havip(&key) {
        Some(havip) => TaggedDecision::Refuse {
            key,
            havip_id: havip.id,
        },
        None => TaggedDecision::Pass,
    }
}
