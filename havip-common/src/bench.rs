//! Types shared by the bench-only eBPF programs (`havip-ebpf/src/bench`)
//! and `havip-bench`. Never used by the product.

/// Header bytes the generator restores on every frame (Ethernet + IPv4 + UDP).
pub const HDR_LEN: usize = 42;
/// [`HDR_LEN`] in 16-bit words.
pub const HDR_WORDS: usize = HDR_LEN / 2;

/// `GEN_CFG[0]` of the generator `bench_gen`, written by havip-bench before
/// each run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    /// The 42 header bytes as 16-bit words in memory (wire) order.
    pub hdr: [u16; HDR_WORDS],
    pub _pad: u16,
    /// One's-complement sum of the IPv4 header words without the checksum
    /// and the destination address (not folded).
    pub ip_sum_base: u32,
    /// First destination address, host order.
    pub dst_base: u32,
    /// Number of destinations to rotate over (≥ 1).
    pub dst_count: u32,
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<GenConfig>() == 60);

#[cfg(feature = "user")]
pod!(GenConfig);
