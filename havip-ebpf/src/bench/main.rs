//! Bench-only programs for `havip-bench` (never loaded by the agent).
//!
//! - `bench_gen`: the traffic generator, run with `BPF_PROG_TEST_RUN` live
//!   frames in the client namespace. Live-frame pages are recycled with
//!   whatever the path under test wrote into them, so every frame gets its
//!   Ethernet/IPv4/UDP headers back from a template, with the destination
//!   address rotating over `dst_count` HaVips (frame i → HaVip i mod N) and
//!   the IPv4 checksum fixed up. The work is the same whatever N is.
//! - `bench_count`: the receiver on the owner's interface: counts per CPU and
//!   drops; on the host ingress interface it is the XDP_DROP ceiling.
//! - `bench_pass`: empty XDP_PASS (cost of the test_run loop itself).
//! - `bench_bare_redirect`: the floor of any XDP forwarder: MAC rewrite and
//!   DEVMAP redirect, no lookups (MACs are load-time constants).
//! - `bench_tc_redirect`: the same rewrite at tc (clsact) ingress + `bpf_redirect`.
//!
//! The layout of [`GenConfig`] is mirrored in `havip-userspace/src/bench/progs.rs`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT},
    helpers::bpf_redirect,
    macros::{classifier, map, xdp},
    maps::{Array, DevMap, PerCpuArray},
    programs::{TcContext, XdpContext},
};

/// Bytes of Ethernet + IPv4 + UDP header restored on every generated frame.
const HDR_LEN: usize = 42;
const HDR_WORDS: usize = HDR_LEN / 2;
/// Offsets (in 16-bit words) of the IPv4 checksum and destination address.
const IP_CSUM_WORD: usize = 12;
const IP_DADDR_WORD: usize = 15;

/// `GEN_CFG[0]`, written by havip-bench before each run.
#[repr(C)]
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

#[map]
static GEN_CFG: Array<GenConfig> = Array::with_max_entries(1, 0);

/// Per CPU: index of the next destination.
#[map]
static GEN_NEXT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: frames seen by `bench_count`.
#[map]
static RX_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `[0]` → the owner-side port, for `bench_bare_redirect`.
#[map]
static BARE_TX: DevMap = DevMap::with_max_entries(1, 0);

// Load-time constants (set by the loader; `.rodata`).
/// Destination MAC written by the redirect programs, as 16-bit words.
#[no_mangle]
static REWRITE_DST: [u16; 3] = [0; 3];
/// Source MAC written by the redirect programs, as 16-bit words.
#[no_mangle]
static REWRITE_SRC: [u16; 3] = [0; 3];
/// Egress ifindex of `bench_tc_redirect`.
#[no_mangle]
static TC_IFINDEX: u32 = 0;

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + HDR_LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let Some(cfg) = GEN_CFG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(next) = GEN_NEXT.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: this CPU's slot; only this CPU touches it while we run.
    let index = unsafe {
        let index = *next;
        let following = index + 1;
        *next = if following >= cfg.dst_count {
            0
        } else {
            following
        };
        index
    };
    let daddr = cfg.dst_base.wrapping_add(index);
    let csum = fold(cfg.ip_sum_base + (daddr >> 16) + (daddr & 0xffff));
    let words = start as *mut u16;
    // SAFETY: `HDR_LEN` bytes were bounds-checked above; packet data is at
    // least 2-byte aligned (frames start at a fixed headroom in their page).
    unsafe {
        for i in 0..HDR_WORDS {
            words.add(i).write_volatile(cfg.hdr[i]);
        }
        let d = daddr.to_be_bytes();
        words
            .add(IP_DADDR_WORD)
            .write_volatile(u16::from_ne_bytes([d[0], d[1]]));
        words
            .add(IP_DADDR_WORD + 1)
            .write_volatile(u16::from_ne_bytes([d[2], d[3]]));
        words.add(IP_CSUM_WORD).write_volatile(csum.to_be());
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_count(_ctx: XdpContext) -> u32 {
    if let Some(count) = RX_COUNT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { *count += 1 };
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Writes the constant MACs over the Ethernet header at `start`.
///
/// # Safety
/// 12 bytes at `start` must be bounds-checked packet data.
#[inline(always)]
unsafe fn rewrite_macs(start: usize) {
    let words = start as *mut u16;
    for i in 0..3 {
        words
            .add(i)
            .write_volatile(core::ptr::read_volatile(&REWRITE_DST[i]));
        words
            .add(3 + i)
            .write_volatile(core::ptr::read_volatile(&REWRITE_SRC[i]));
    }
}

#[xdp]
pub fn bench_bare_redirect(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 14 > ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: bounds-checked above.
    unsafe { rewrite_macs(start) };
    BARE_TX.redirect(0, 0).unwrap_or(xdp_action::XDP_DROP)
}

#[classifier]
pub fn bench_tc_redirect(ctx: TcContext) -> i32 {
    let start = ctx.data();
    if start + 14 > ctx.data_end() {
        return TC_ACT_SHOT as i32;
    }
    // SAFETY: bounds-checked above; tc makes the head writable for us.
    unsafe {
        rewrite_macs(start);
        bpf_redirect(core::ptr::read_volatile(&TC_IFINDEX), 0) as i32
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
