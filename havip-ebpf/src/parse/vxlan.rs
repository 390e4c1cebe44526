//! VXLAN (RFC 7348) over IPv4/UDP: the outer IPv4, UDP and VXLAN headers
//! that follow an outer Ethernet header. No maps, no policy.

use aya_ebpf::programs::XdpContext;

use crate::{packet::ptr_at, parse::ipv4::Ipv4Hdr};

pub const IPPROTO_UDP: u8 = 17;
/// VXLAN flags: the I bit (the VNI is valid).
pub const FLAG_VNI: u8 = 0x08;

#[repr(C)]
pub struct UdpHdr {
    pub source: [u8; 2],
    pub dest: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

#[repr(C)]
pub struct VxlanHdr {
    pub flags: u8,
    pub reserved: [u8; 3],
    /// 24-bit VNI, network order.
    pub vni: [u8; 3],
    pub reserved2: u8,
}

/// An outer IPv4/UDP/VXLAN header stack.
pub struct Vxlan {
    /// Outer destination (the VTEP it was sent to), network order.
    pub daddr: [u8; 4],
    /// UDP destination port, network order.
    pub dport: [u8; 2],
    pub vni: u32,
    /// Offset of the inner Ethernet header (the bytes after the VXLAN
    /// header; not bounds-checked here).
    pub inner_offset: usize,
}

/// The VXLAN headers at `l3_offset`, or `None` when the frame is not
/// (whole) unfragmented IPv4/UDP with a VXLAN header carrying a VNI. IPv4
/// options are allowed and skipped; the UDP port is the caller's to check.
#[inline(always)]
pub fn parse(ctx: &XdpContext, l3_offset: usize) -> Option<Vxlan> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_offset)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, frag_off, protocol, daddr) = unsafe {
        (
            (*ip).version_ihl,
            (*ip).frag_off,
            (*ip).protocol,
            (*ip).daddr,
        )
    };
    let ihl = (version_ihl & 0x0f) as usize * 4;
    if version_ihl >> 4 != 4 || ihl < 20 || protocol != IPPROTO_UDP {
        return None;
    }
    // Fragments (MF set or an offset) are left to the stack's reassembly.
    if u16::from_be_bytes(frag_off) & 0x3fff != 0 {
        return None;
    }
    let udp_offset = l3_offset + ihl;
    let udp: *const UdpHdr = ptr_at(ctx, udp_offset)?;
    let vxlan_offset = udp_offset + core::mem::size_of::<UdpHdr>();
    let vxlan: *const VxlanHdr = ptr_at(ctx, vxlan_offset)?;
    // SAFETY: both bounds-checked by `ptr_at`.
    let (dport, flags, vni) = unsafe { ((*udp).dest, (*vxlan).flags, (*vxlan).vni) };
    if flags & FLAG_VNI == 0 {
        return None;
    }
    Some(Vxlan {
        daddr,
        dport,
        vni: u32::from_be_bytes([0, vni[0], vni[1], vni[2]]),
        inner_offset: vxlan_offset + core::mem::size_of::<VxlanHdr>(),
    })
}
