//! Bounds-checked access to the frame: every header read goes through here.
//! Shared with the bench-only programs (`src/bench/main.rs`).

use aya_ebpf::programs::XdpContext;

/// Pointer to a `T` at `offset`, or `None` if the frame is too short.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// A MAC as one value: its bytes in memory order in the low 48 bits (byte
/// 0 lowest; the program is built for little-endian BPF only). A `[u8; 6]`
/// carried through branches is six values the compiler recombines for each
/// 16-bit store (~1-2 ns per forwarded frame, docs/benchmark.md).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacWord(u64);

impl MacWord {
    #[inline(always)]
    pub const fn new(mac: &[u8; 6]) -> Self {
        Self(u64::from_le_bytes([
            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0,
        ]))
    }

    /// The MAC at `mac` read with three 16-bit loads (kept as one value
    /// from there on: six byte loads become six values to carry).
    ///
    /// # Safety
    /// `mac` is valid for reads and 2-byte aligned: packet data (2-byte
    /// aligned in every XDP buffer) or a `PortInfo::gateway_mac` (offset 12
    /// of a 4-byte aligned struct).
    #[inline(always)]
    pub unsafe fn load(mac: *const [u8; 6]) -> Self {
        let w = mac.cast::<u16>();
        // SAFETY: per the function's contract.
        let (a, b, c) = unsafe {
            (
                w.read_volatile(),
                w.add(1).read_volatile(),
                w.add(2).read_volatile(),
            )
        };
        Self(u64::from(a) | u64::from(b) << 16 | u64::from(c) << 32)
    }

    /// The MAC in the low 48 bits of `word` (the bits above are ignored).
    #[inline(always)]
    pub const fn from_low48(word: u64) -> Self {
        Self(word & 0xffff_ffff_ffff)
    }

    #[inline(always)]
    pub const fn bytes(self) -> [u8; 6] {
        let b = self.0.to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }
}

/// Writes a MAC with three 16-bit stores: `[u8; 6]` assignment compiles to
/// a byte-by-byte memmove in BPF (~40 ns per frame measured). Ethernet
/// headers in XDP buffers are at least 2-byte aligned.
#[inline(always)]
pub fn write_mac(dst: *mut [u8; 6], mac: &[u8; 6]) {
    write_mac_word(dst, MacWord::new(mac));
}

/// [`write_mac`] from a [`MacWord`].
#[inline(always)]
pub fn write_mac_word(dst: *mut [u8; 6], mac: MacWord) {
    let w = dst as *mut u16;
    // SAFETY: the caller bounds-checked the 6 bytes at `dst` (packet data,
    // which starts 2-byte aligned in every XDP buffer). Little-endian: the
    // low half of each 16-bit value is the lower-addressed byte.
    unsafe {
        w.write_volatile(mac.0 as u16);
        w.add(1).write_volatile((mac.0 >> 16) as u16);
        w.add(2).write_volatile((mac.0 >> 32) as u16);
    }
}

/// Byte-wise MAC comparison (no `bcmp` in BPF).
#[inline(always)]
pub fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5]
}

#[inline(always)]
pub fn ip_eq(a: &[u8; 4], b: &[u8; 4]) -> bool {
    u32::from_ne_bytes(*a) == u32::from_ne_bytes(*b)
}
