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
    // SAFETY: bounds-checked by `ptr_at`; the addresses as 16-bit halves
    // (see `addr_at`).
    let (version_ihl, saddr, daddr) = unsafe {
        (
            (*ip).version_ihl,
            addr_at(&raw const (*ip).saddr),
            addr_at(&raw const (*ip).daddr),
        )
    };
    if version_ihl >> 4 != 4 || version_ihl & 0x0f < 5 {
        return None;
    }
    Some(Addrs { saddr, daddr })
}

/// An address read as two 16-bit loads: byte loads would leave four
/// values for the compiler to shuffle.
///
/// # Safety
/// `addr` is in bounds and 2-byte aligned: the IPv4 header starts at an
/// even offset (14 or 18) of packet data, which starts 2-byte aligned.
#[inline(always)]
unsafe fn addr_at(addr: *const [u8; 4]) -> [u8; 4] {
    let half = addr.cast::<u16>();
    // SAFETY: per the function's contract.
    let (a, b) = unsafe { (half.read_volatile(), half.add(1).read_volatile()) };
    let (a, b) = (a.to_ne_bytes(), b.to_ne_bytes());
    [a[0], a[1], b[0], b[1]]
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
