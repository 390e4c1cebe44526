//! IPv4 header: only what forwarding needs (the destination).

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

/// Destination address, or `None` if the header is truncated or not IPv4
/// with a valid header length (options are allowed and skipped).
#[inline(always)]
pub fn destination(ctx: &XdpContext, offset: usize) -> Option<[u8; 4]> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, daddr) = unsafe { ((*ip).version_ihl, (*ip).daddr) };
    if version_ihl >> 4 != 4 || version_ihl & 0x0f < 5 {
        return None;
    }
    Some(daddr)
}
