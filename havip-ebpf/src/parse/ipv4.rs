//! IPv4 header: only the addresses.

use aya_ebpf::programs::XdpContext;

use crate::packet::ptr_at;

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

/// Source and destination, network order.
pub struct Addrs {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

/// The addresses, or `None` if the header is truncated or not IPv4 with a
/// valid header length (options are allowed and skipped).
#[inline(always)]
pub fn addresses(ctx: &XdpContext, offset: usize) -> Option<Addrs> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, saddr, daddr) = unsafe { ((*ip).version_ihl, (*ip).saddr, (*ip).daddr) };
    if version_ihl >> 4 != 4 || version_ihl & 0x0f < 5 {
        return None;
    }
    Some(Addrs { saddr, daddr })
}

/// Protocols whose header starts with 16-bit source and destination ports.
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;

/// What identifies a flow beyond the addresses: the protocol, and the
/// source and destination ports (as on the wire) of an unfragmented
/// TCP/UDP/SCTP packet, else zero (every fragment of a packet hashes alike).
/// `None` if the IPv4 header is truncated or invalid.
#[inline(always)]
pub fn flow_ports(ctx: &XdpContext, offset: usize) -> Option<(u8, [u8; 4])> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, frag_off, protocol) =
        unsafe { ((*ip).version_ihl, (*ip).frag_off, (*ip).protocol) };
    let ihl = (version_ihl & 0x0f) as usize * 4;
    if ihl < 20 {
        return None;
    }
    let has_ports = matches!(protocol, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
        && u16::from_be_bytes(frag_off) & 0x3fff == 0;
    if !has_ports {
        return Some((protocol, [0; 4]));
    }
    let ports = ptr_at::<[u8; 4]>(ctx, offset + ihl)
        // SAFETY: bounds-checked by `ptr_at`.
        .map_or([0; 4], |p| unsafe { *p });
    Some((protocol, ports))
}
