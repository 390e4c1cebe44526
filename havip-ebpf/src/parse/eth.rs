//! Ethernet header, with at most one 802.1Q / 802.1ad tag.

use aya_ebpf::programs::XdpContext;

use crate::packet::{ptr_at, MacWord};

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
    /// Bounds-checked by [`parse`]: the whole Ethernet header is in the frame.
    pub eth: *mut EthHdr,
    /// After the tag, if any (a second tag shows as 802.1Q here).
    pub ether_type: [u8; 2],
    pub l3_offset: usize,
    /// The frame carries an 802.1Q or 802.1ad tag.
    pub tagged: bool,
}

impl Frame {
    /// Broadcast or multicast destination (I/G bit set).
    #[inline(always)]
    pub fn dst_is_group(&self) -> bool {
        // SAFETY: `eth` was bounds-checked by `parse`.
        unsafe { (*self.eth).dst[0] & 1 != 0 }
    }

    #[inline(always)]
    pub fn dst(&self) -> [u8; 6] {
        // SAFETY: `eth` was bounds-checked by `parse`.
        unsafe { (*self.eth).dst }
    }

    #[inline(always)]
    pub fn src(&self) -> [u8; 6] {
        // SAFETY: `eth` was bounds-checked by `parse`.
        unsafe { (*self.eth).src }
    }

    /// [`Frame::src`] as one value.
    #[inline(always)]
    pub fn src_word(&self) -> MacWord {
        // SAFETY: `eth` was bounds-checked by `parse`; packet data is
        // 2-byte aligned, the source MAC at offset 6.
        unsafe { MacWord::load(&raw const (*self.eth).src) }
    }
}

/// `None` if the frame is shorter than its Ethernet (and VLAN) header.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Option<Frame> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked by `ptr_at`; see `type_at`.
    let mut ether_type = unsafe { type_at(&raw const (*eth).ether_type) };
    let mut l3_offset = core::mem::size_of::<EthHdr>();
    let tagged = ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD;
    if tagged {
        let vlan: *const VlanHdr = ptr_at(ctx, l3_offset)?;
        // SAFETY: bounds-checked by `ptr_at`; see `type_at`.
        ether_type = unsafe { type_at(&raw const (*vlan).ether_type) };
        l3_offset += core::mem::size_of::<VlanHdr>();
    }
    Some(Frame {
        eth,
        ether_type,
        l3_offset,
        tagged,
    })
}

/// An EtherType read with one 16-bit load (two byte loads otherwise).
///
/// # Safety
/// `at` is in bounds and 2-byte aligned: offset 12 or 16 of packet data,
/// which starts 2-byte aligned in every XDP buffer.
#[inline(always)]
unsafe fn type_at(at: *const [u8; 2]) -> [u8; 2] {
    // SAFETY: per the function's contract.
    unsafe { at.cast::<u16>().read_volatile() }.to_ne_bytes()
}
