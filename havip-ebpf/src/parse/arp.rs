//! ARP (Ethernet/IPv4 only): the header, typed; no decisions.

use aya_ebpf::programs::XdpContext;

use crate::packet::{ip_eq, ptr_at};

pub const OP_REQUEST: [u8; 2] = [0, 1];
pub const OP_REPLY: [u8; 2] = [0, 2];
const HTYPE_ETHERNET: [u8; 2] = [0, 1];
const PTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const UNSPECIFIED: [u8; 4] = [0; 4];

#[repr(C)]
pub struct ArpHdr {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

/// An Ethernet/IPv4 ARP packet: the fields policy looks at, copied, and
/// the header for an in-place rewrite.
pub struct Arp {
    /// Bounds-checked by [`parse`].
    pub hdr: *mut ArpHdr,
    pub oper: [u8; 2],
    /// Sender hardware and protocol address.
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    /// Target protocol address.
    pub tpa: [u8; 4],
}

impl Arp {
    #[inline(always)]
    pub fn is_request(&self) -> bool {
        self.oper == OP_REQUEST
    }

    #[inline(always)]
    pub fn is_reply(&self) -> bool {
        self.oper == OP_REPLY
    }

    /// Gratuitous request: the sender announces its own address (SPA == TPA).
    #[inline(always)]
    pub fn is_gratuitous(&self) -> bool {
        self.is_request() && ip_eq(&self.spa, &self.tpa)
    }

    /// Probe (RFC 5227): a request with sender address 0.0.0.0.
    #[inline(always)]
    pub fn is_probe(&self) -> bool {
        self.is_request() && ip_eq(&self.spa, &UNSPECIFIED)
    }
}

pub enum Parsed {
    /// Shorter than an Ethernet/IPv4 ARP packet.
    Truncated,
    /// ARP for another hardware or protocol type.
    Other,
    Arp(Arp),
}

#[inline(always)]
pub fn parse(ctx: &XdpContext, offset: usize) -> Parsed {
    let Some(hdr) = ptr_at::<ArpHdr>(ctx, offset) else {
        return Parsed::Truncated;
    };
    // SAFETY: bounds-checked by `ptr_at`; fields are byte arrays.
    let (htype, ptype, hlen, plen, oper, sha, spa, tpa) = unsafe {
        (
            (*hdr).htype,
            (*hdr).ptype,
            (*hdr).hlen,
            (*hdr).plen,
            (*hdr).oper,
            (*hdr).sha,
            (*hdr).spa,
            (*hdr).tpa,
        )
    };
    if htype != HTYPE_ETHERNET || ptype != PTYPE_IPV4 || hlen != 6 || plen != 4 {
        return Parsed::Other;
    }
    Parsed::Arp(Arp {
        hdr,
        oper,
        sha,
        spa,
        tpa,
    })
}
