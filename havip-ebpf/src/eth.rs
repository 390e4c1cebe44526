//! Ethernet header, with at most one 802.1Q / 802.1ad tag.

use aya_ebpf::programs::XdpContext;

use crate::packet::ptr_at;

pub const ETH_P_IP: [u8; 2] = [0x08, 0x00];
pub const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];
const ETH_P_8021AD: [u8; 2] = [0x88, 0xa8];

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

#[repr(C)]
struct VlanHdr {
    tci: [u8; 2],
    ether_type: [u8; 2],
}

/// A parsed Ethernet frame: where its L3 header starts and what it is.
pub struct Frame {
    pub eth: *mut EthHdr,
    pub ether_type: [u8; 2],
    pub l3_offset: usize,
}

impl Frame {
    /// Broadcast or multicast destination (I/G bit set).
    #[inline(always)]
    pub fn dst_is_group(&self) -> bool {
        // SAFETY: `eth` was bounds-checked by `parse`.
        unsafe { (*self.eth).dst[0] & 1 != 0 }
    }
}

/// `None` if the frame is shorter than its Ethernet (and VLAN) header.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Option<Frame> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3_offset = core::mem::size_of::<EthHdr>();
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan: *const VlanHdr = ptr_at(ctx, l3_offset)?;
        // SAFETY: bounds-checked by `ptr_at`.
        ether_type = unsafe { (*vlan).ether_type };
        l3_offset += core::mem::size_of::<VlanHdr>();
    }
    Some(Frame {
        eth,
        ether_type,
        l3_offset,
    })
}
