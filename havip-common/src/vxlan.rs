//! The VXLAN lookup tables of the per-frame path: arrays the verifier
//! inlines (no helper call, no jhash), next to the hash maps that stay the
//! complete record (`VSWITCH_VNIS`, `VNI_VSWITCHES`, `VTEPS`).
//!
//! - `VSWITCH_VNI_ARRAY[vswitch id]`: the vSwitch's VNI | [`VNI_PRESENT`]
//!   (vSwitch ids are dense from 1; ids ≥ `MAX_VSWITCHES` only in the hash);
//! - `VNI_TABLE` and `VTEP_TABLE`: open addressing (linear probing from
//!   [`home`], at most [`PROBES`] slots, a never-used slot ends the search)
//!   over the VNI and the remote VTEP address.
//!
//! The program falls back to the hash map when a key is not in its table
//! (pins adopted from a version without the tables, a key the agent could
//! not place): a table is an accelerator, never the only copy.

use crate::MAX_VTEPS;

/// Bits of a table index: `SLOTS` = 2 × `MAX_VTEPS` (`MAX_VSWITCHES` is
/// the same), so a table is at most half full.
pub const BITS: u32 = 13;
/// Slots of `VNI_TABLE` and `VTEP_TABLE`.
pub const SLOTS: u32 = 1 << BITS;
/// Most slots a lookup probes; the agent places a key no further.
pub const PROBES: u32 = 16;
/// `VSWITCH_VNI_ARRAY` value flag: the vSwitch has a VNI (24-bit).
pub const VNI_PRESENT: u32 = 1 << 31;

/// Slot states (the last field of a slot: the agent writes the key and
/// value of a new entry first, then its state).
pub mod state {
    /// Never used: ends a probe sequence.
    pub const EMPTY: u32 = 0;
    pub const USED: u32 = 1;
    /// Removed: probing goes on past it; reused by the next insert.
    pub const TOMBSTONE: u32 = 2;
}

const _: () = assert!(SLOTS == 2 * MAX_VTEPS && SLOTS.is_power_of_two());

/// Home slot of a 32-bit key (Fibonacci hashing: the top `BITS` bits of
/// the product with 2^32 / φ).
#[inline(always)]
pub const fn home(key: u32) -> u32 {
    key.wrapping_mul(0x9E37_79B9) >> (32 - BITS)
}

/// A slot of an open-addressed table: its key and state.
pub trait Slot: Copy {
    fn key(&self) -> u32;
    fn state(&self) -> u32;
    /// The same slot in state `state`.
    fn with_state(self, state: u32) -> Self;
}

/// `VNI_TABLE` slot: VNI → vSwitch id (decapsulation).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniSlot {
    pub vni: u32,
    pub vswitch_id: u32,
    pub state: u32,
}

/// `VTEP_TABLE` slot: remote VTEP IPv4 → its underlay MAC (encapsulation).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtepSlot {
    /// Remote VTEP IPv4, network order.
    pub addr: [u8; 4],
    /// Its underlay MAC (outer Ethernet destination).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    pub state: u32,
}

/// `Slot` for a slot type with a `state` field, keyed by `$key`.
macro_rules! slot {
    ($t:ty, |$s:ident| $key:expr) => {
        impl Slot for $t {
            #[inline(always)]
            fn key(&self) -> u32 {
                let $s = self;
                $key
            }
            #[inline(always)]
            fn state(&self) -> u32 {
                self.state
            }
            #[inline(always)]
            fn with_state(self, state: u32) -> Self {
                Self { state, ..self }
            }
        }
    };
}

slot!(VniSlot, |s| s.vni);
slot!(VtepSlot, |s| vtep_key(s.addr));

/// The table key of a VTEP address (network order bytes, read big-endian so
/// both sides hash the same number).
#[inline(always)]
pub const fn vtep_key(addr: [u8; 4]) -> u32 {
    u32::from_be_bytes(addr)
}

const _: () = {
    assert!(core::mem::size_of::<VniSlot>() == 12);
    assert!(core::mem::size_of::<VtepSlot>() == 16);
};

#[cfg(feature = "user")]
pod!(VniSlot, VtepSlot);
