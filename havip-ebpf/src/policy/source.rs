//! Source anti-spoofing for IPv4 from instance ports: only a bound member
//! (its port, its bound MAC) may send from a HaVip of its vSwitch.

use havip_common::{havip_filter_bits, port_flags, DropReason, HavipKey, PortInfo};

use crate::{maps, packet::mac_eq};

/// `Err(SrcHavipUnbound)` if `saddr` is a HaVip of the port's vSwitch and
/// (port, `eth_src`) is not one of its bindings. The port's HaVip filter
/// (`PortInfo::havip_filter`, a superset of the vSwitch's HaVip addresses)
/// clears most sources with no table probe; an address it may hold is
/// looked up in the HaVip table. The uplink is not checked (remote owners
/// answer from the HaVip through it).
#[inline(always)]
pub fn check_ipv4(
    port: &PortInfo,
    ifindex: u32,
    eth_src: impl FnOnce() -> [u8; 6],
    saddr: [u8; 4],
) -> Result<(), DropReason> {
    if port.flags & port_flags::INSTANCE == 0 {
        return Ok(());
    }
    let bits = havip_filter_bits(saddr);
    if port.havip_filter & bits != bits {
        return Ok(());
    }
    let key = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: saddr,
    };
    let Some(havip) = maps::havip(&key) else {
        return Ok(());
    };
    match maps::binding(havip.id, ifindex) {
        Some(bound_mac) if mac_eq(&bound_mac, &eth_src()) => Ok(()),
        _ => Err(DropReason::SrcHavipUnbound),
    }
}
