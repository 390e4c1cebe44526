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
