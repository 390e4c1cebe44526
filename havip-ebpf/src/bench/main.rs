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
//! - `lad_*`: the product's forward path rebuilt one piece at a time (same
//!   map types, key and value layouts), to price each piece; `lad_sketch`
//!   is a proposed cheaper forward path. Not the product: the product is
//!   always measured as it is.
//!
//! The ladder reuses the product's own parsers, MAC writer and counter
//! (`src/parse`, `src/packet.rs`, `src/counter.rs`, included below), so each
//! step prices the product's code, not a copy of it.
//!
//! [`GenConfig`] is `havip_common::bench::GenConfig`, shared with havip-bench.
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
// The ladder writes MACs, it does not compare them.
#[allow(dead_code)]
#[path = "../packet.rs"]
mod packet;
// The ladder uses the Ethernet and IPv4 parsers, not the ARP one.
#[allow(dead_code)]
#[path = "../parse/mod.rs"]
mod parse;
#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT},
    helpers::bpf_redirect,
    macros::{classifier, map, xdp},
    maps::{Array, DevMap, DevMapHash, HashMap, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use havip_common::{
    bench::{GenConfig, HDR_LEN, HDR_WORDS},
    HavipKey, OwnerEntry, PortInfo, TrafficCounter,
};
use packet::write_mac;
use parse::eth::Frame;

/// Offsets (in 16-bit words) of the IPv4 checksum and destination address.
const IP_CSUM_WORD: usize = 12;
const IP_DADDR_WORD: usize = 15;

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

/// Writes the constant MACs over the Ethernet header at `start`, if the
/// 14 bytes of an Ethernet header fit before `end`; false if not.
#[inline(always)]
fn rewrite_macs(start: usize, end: usize) -> bool {
    if start + 14 > end {
        return false;
    }
    let words = start as *mut u16;
    // SAFETY: bounds-checked above.
    unsafe {
        for i in 0..3 {
            words
                .add(i)
                .write_volatile(core::ptr::read_volatile(&REWRITE_DST[i]));
            words
                .add(3 + i)
                .write_volatile(core::ptr::read_volatile(&REWRITE_SRC[i]));
        }
    }
    true
}

/// The load-time egress ifindex (`TC_IFINDEX`).
#[inline(always)]
fn tc_ifindex() -> u32 {
    // SAFETY: load-time constant.
    unsafe { core::ptr::read_volatile(&TC_IFINDEX) }
}

#[xdp]
pub fn bench_bare_redirect(ctx: XdpContext) -> u32 {
    if !rewrite_macs(ctx.data(), ctx.data_end()) {
        return xdp_action::XDP_DROP;
    }
    BARE_TX.redirect(0, 0).unwrap_or(xdp_action::XDP_DROP)
}

#[classifier]
pub fn bench_tc_redirect(ctx: TcContext) -> i32 {
    // tc makes the head writable for us.
    if !rewrite_macs(ctx.data(), ctx.data_end()) {
        return TC_ACT_SHOT as i32;
    }
    // SAFETY: a plain helper call on a load-time ifindex.
    unsafe { bpf_redirect(tc_ifindex(), 0) as i32 }
}

// ---- forward-path cost ladder -------------------------------------------

/// Like the product's `PORTS` (hash, preallocated).
#[map]
static LAD_PORTS: HashMap<u32, PortInfo> = HashMap::with_max_entries(4096, 0);
/// `PORTS` as an array indexed by ifindex (the sketch).
#[map]
static LAD_PORTS_ARRAY: Array<PortInfo> = Array::with_max_entries(4096, 0);
/// Like the product's `OWNERS` (hash, preallocated, same size).
#[map]
static LAD_OWNERS: HashMap<HavipKey, OwnerEntry> = HashMap::with_max_entries(1 << 17, 0);
/// Like the product's `TX_PORTS`.
#[map]
static LAD_TX: DevMapHash = DevMapHash::with_max_entries(4096, 0);
/// Like `HAVIP_STATS` and `HANDLED`.
#[map]
static LAD_STATS: PerCpuArray<TrafficCounter> = PerCpuArray::with_max_entries(1 << 17, 0);
#[map]
static LAD_HANDLED: PerCpuArray<TrafficCounter> = PerCpuArray::with_max_entries(8, 0);

const FORWARDED: u32 = 2;

/// An early verdict of a ladder step (the frame is not forwarded).
type Verdict = u32;

/// The product's parse of an IPv4 frame: the Ethernet header (one optional
/// tag) and the addresses; `XDP_PASS` for anything else.
#[inline(always)]
fn ipv4(ctx: &XdpContext) -> Result<(Frame, parse::ipv4::Addrs), Verdict> {
    let frame = parse::eth::parse(ctx).ok_or(xdp_action::XDP_PASS)?;
    if frame.ether_type != parse::eth::ETH_P_IP {
        return Err(xdp_action::XDP_PASS);
    }
    let ip = parse::ipv4::addresses(ctx, frame.l3_offset).ok_or(xdp_action::XDP_PASS)?;
    Ok((frame, ip))
}

/// [`ipv4`], destination address only.
#[inline(always)]
fn ipv4_daddr(ctx: &XdpContext) -> Result<(Frame, [u8; 4]), Verdict> {
    ipv4(ctx).map(|(frame, ip)| (frame, ip.daddr))
}

/// The ingress port from the `PORTS`-like hash (the product's lookup);
/// `XDP_PASS` for an unknown port.
#[inline(always)]
fn hash_port(ctx: &XdpContext) -> Result<&'static PortInfo, Verdict> {
    // SAFETY: havip-bench fills the LAD_* maps before a run and never
    // writes them during it: the value read is stable.
    unsafe { LAD_PORTS.get(&ingress(ctx)) }.ok_or(xdp_action::XDP_PASS)
}

/// The ingress port from the array (the sketches); `XDP_PASS` for an
/// unknown port.
#[inline(always)]
fn array_port(ctx: &XdpContext) -> Result<&'static PortInfo, Verdict> {
    match LAD_PORTS_ARRAY.get(ingress(ctx)) {
        Some(port) if port.flags != 0 => Ok(port),
        _ => Err(xdp_action::XDP_PASS),
    }
}

/// The `OWNERS` lookup of the product: `XDP_PASS` for no HaVip, `XDP_DROP`
/// for a HaVip with no owner.
#[inline(always)]
fn owner_of(key: &HavipKey) -> Result<&'static OwnerEntry, Verdict> {
    // SAFETY: havip-bench fills the LAD_* maps before a run and never
    // writes them during it: the value read is stable.
    let owner = unsafe { LAD_OWNERS.get(key) }.ok_or(xdp_action::XDP_PASS)?;
    if owner.ifindex == 0 {
        return Err(xdp_action::XDP_DROP);
    }
    Ok(owner)
}

/// The product's path up to the MAC rewrite: parse, `PORTS`, `OWNERS`.
#[inline(always)]
fn hash_path(ctx: &XdpContext) -> Result<(Frame, &'static PortInfo, &'static OwnerEntry), Verdict> {
    let (frame, daddr) = ipv4_daddr(ctx)?;
    let port = hash_port(ctx)?;
    Ok((frame, port, owner_of(&havip_key(port, daddr))?))
}

/// The sketches' path up to the HaVip lookup: parse, the `PORTS` array,
/// the HaVip's key.
#[inline(always)]
fn array_path(ctx: &XdpContext) -> Result<(Frame, &'static PortInfo, HavipKey), Verdict> {
    let (frame, daddr) = ipv4_daddr(ctx)?;
    let port = array_port(ctx)?;
    Ok((frame, port, havip_key(port, daddr)))
}

/// The `OWNERS` key of `daddr` on `port`'s vSwitch.
#[inline(always)]
fn havip_key(port: &PortInfo, daddr: [u8; 4]) -> HavipKey {
    HavipKey {
        vswitch_id: port.vswitch_id,
        addr: daddr,
    }
}

/// Redirects to `ifindex` through `LAD_TX` and, if that worked, counts
/// `len` bytes for `havip_id` (and in `HANDLED[Forwarded]` if `handled`).
#[inline(always)]
fn redirect_counted(ifindex: u32, havip_id: u32, len: u64, handled: bool) -> u32 {
    match LAD_TX.redirect(ifindex, 0) {
        Ok(action) => {
            counter::count(&LAD_STATS, havip_id, len);
            if handled {
                counter::count(&LAD_HANDLED, FORWARDED, len);
            }
            action
        }
        Err(_) => xdp_action::XDP_DROP,
    }
}

/// Runs a ladder step's body, which returns early with `Err(verdict)`.
#[inline(always)]
fn run(step: impl FnOnce() -> Result<u32, Verdict>) -> u32 {
    match step() {
        Ok(action) | Err(action) => action,
    }
}

/// The product's MAC rewrite (word stores) on a parsed frame.
#[inline(always)]
fn rewrite(frame: &Frame, dst: &[u8; 6], src: &[u8; 6]) {
    // SAFETY: `frame.eth` was bounds-checked by `parse::eth::parse`.
    unsafe {
        write_mac(&raw mut (*frame.eth).dst, dst);
        write_mac(&raw mut (*frame.eth).src, src);
    }
}

fn ingress(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}

fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

/// Step 1: bare rewrite, redirect through a DEVMAP_HASH (the product's
/// `TX_PORTS` type) instead of a DEVMAP.
#[xdp]
pub fn lad1_devmap_hash(ctx: XdpContext) -> u32 {
    if !rewrite_macs(ctx.data(), ctx.data_end()) {
        return xdp_action::XDP_DROP;
    }
    LAD_TX
        .redirect(tc_ifindex(), 0)
        .unwrap_or(xdp_action::XDP_DROP)
}

/// Step 2: + the `PORTS` hash lookup by ingress ifindex (source MAC from it).
#[xdp]
pub fn lad2_ports(ctx: XdpContext) -> u32 {
    run(|| {
        let start = ctx.data();
        if start + 14 > ctx.data_end() {
            return Err(xdp_action::XDP_DROP);
        }
        let port = hash_port(&ctx)?;
        // SAFETY: bounds-checked above.
        unsafe {
            for i in 0..3 {
                (start as *mut u16)
                    .add(i)
                    .write_volatile(core::ptr::read_volatile(&REWRITE_DST[i]));
            }
            write_mac((start + 6) as *mut [u8; 6], &port.gateway_mac);
        }
        Ok(LAD_TX
            .redirect(tc_ifindex(), 0)
            .unwrap_or(xdp_action::XDP_DROP))
    })
}

/// Step 3: + IPv4 parse and the `OWNERS` hash lookup (destination MAC and
/// port from it): the product's forward logic without its counters, with
/// word stores for the MACs.
#[xdp]
pub fn lad3_owners(ctx: XdpContext) -> u32 {
    run(|| {
        let (frame, port, owner) = hash_path(&ctx)?;
        rewrite(&frame, &owner.mac, &port.gateway_mac);
        Ok(LAD_TX
            .redirect(owner.ifindex, 0)
            .unwrap_or(xdp_action::XDP_DROP))
    })
}

/// Step 4: + the two per-CPU counters the product keeps per forwarded
/// frame (`HAVIP_STATS[id]`, `HANDLED[Forwarded]`).
#[xdp]
pub fn lad4_counters(ctx: XdpContext) -> u32 {
    let len = frame_len(&ctx);
    run(|| {
        let (frame, port, owner) = hash_path(&ctx)?;
        rewrite(&frame, &owner.mac, &port.gateway_mac);
        Ok(redirect_counted(owner.ifindex, owner.havip_id, len, true))
    })
}

/// Step 5: step 4 with the MACs assigned as `[u8; 6]` from the map values,
/// exactly as the product writes them (`(*eth).dst = owner.mac`): LLVM
/// cannot rule out that packet and map value overlap and emits a call to
/// a byte-by-byte `memmove` subprogram for each.
#[xdp]
pub fn lad5_bytecopy(ctx: XdpContext) -> u32 {
    let len = frame_len(&ctx);
    run(|| {
        let (frame, port, owner) = hash_path(&ctx)?;
        let owner = *owner;
        let eth = frame.eth;
        // SAFETY: `frame.eth` was bounds-checked by `parse::eth::parse`.
        unsafe {
            (*eth).dst = owner.mac;
            (*eth).src = port.gateway_mac;
        }
        Ok(redirect_counted(owner.ifindex, owner.havip_id, len, true))
    })
}

/// A cheaper forward path (a proposal, not the product): `PORTS` as an
/// array indexed by ifindex (the verifier inlines array lookups: no call),
/// one `OWNERS` hash lookup, word stores for the MACs, one per-CPU counter
/// (`HANDLED[Forwarded]` is the sum of the per-HaVip counters).
#[xdp]
pub fn lad_sketch(ctx: XdpContext) -> u32 {
    let len = frame_len(&ctx);
    run(|| {
        let (frame, port, key) = array_path(&ctx)?;
        let owner = owner_of(&key)?;
        rewrite(&frame, &owner.mac, &port.gateway_mac);
        Ok(redirect_counted(owner.ifindex, owner.havip_id, len, false))
    })
}

/// A HaVip's slot in the open-addressing table of [`lad_sketch_array`].
#[repr(C)]
pub struct Slot {
    /// `vswitch_id` 0 = empty slot (ends a probe sequence).
    pub key: HavipKey,
    /// Index of the current owner in `LAD_MEMBERS`; 0 = no owner. A claim
    /// switches the owner with this one aligned 4-byte store.
    pub member: u32,
    pub havip_id: u32,
}

/// A bound member: where it sits and the MAC frames get.
#[repr(C)]
pub struct Member {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

pub const SLOT_BITS: u32 = 18;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
const PROBES: u32 = 4;

#[map]
static LAD_SLOTS: Array<Slot> = Array::with_max_entries(1 << SLOT_BITS, 0);
#[map]
static LAD_MEMBERS: Array<Member> = Array::with_max_entries(1 << 20, 0);

/// Mirrored in havip-userspace/src/bench/progs.rs (`slot_hash`).
#[inline(always)]
fn slot_hash(key: &HavipKey) -> u32 {
    let h = (u32::from_ne_bytes(key.addr) ^ key.vswitch_id.wrapping_mul(0x9e37_79b1))
        .wrapping_mul(0x85eb_ca6b);
    h ^ (h >> 15)
}

/// The slot of `key` in `LAD_SLOTS` (at most `PROBES` probes, stopping at
/// an empty slot).
#[inline(always)]
fn find_slot(key: &HavipKey) -> Option<&'static Slot> {
    let h = slot_hash(key);
    for i in 0..PROBES {
        let slot = LAD_SLOTS.get(h.wrapping_add(i) & SLOT_MASK)?;
        if slot.key.vswitch_id == key.vswitch_id
            && u32::from_ne_bytes(slot.key.addr) == u32::from_ne_bytes(key.addr)
        {
            return Some(slot);
        }
        if slot.key.vswitch_id == 0 {
            return None;
        }
    }
    None
}

/// The array sketch's forward path; `SOURCE_PROBE`: also probe the table
/// for the source address first, as the product's source check does for
/// every frame from an instance port (the client is no HaVip: the probe
/// ends at an empty slot); `HANDLED`: also count `HANDLED[Forwarded]`.
/// Const parameters, so each program gets its own inlined copy (runtime
/// flags made LLVM share the body as one BPF-to-BPF subprogram).
#[inline(always)]
fn array_forward<const SOURCE_PROBE: bool, const HANDLED: bool>(ctx: &XdpContext) -> u32 {
    let len = frame_len(ctx);
    run(|| {
        let (frame, ip) = ipv4(ctx)?;
        let port = array_port(ctx)?;
        if SOURCE_PROBE && find_slot(&havip_key(port, ip.saddr)).is_some() {
            return Err(xdp_action::XDP_DROP);
        }
        let slot = find_slot(&havip_key(port, ip.daddr)).ok_or(xdp_action::XDP_PASS)?;
        // SAFETY: one aligned 4-byte load: a concurrent claim is seen whole.
        let member_index = unsafe { core::ptr::read_volatile(&slot.member) };
        let havip_id = slot.havip_id;
        let member = LAD_MEMBERS.get(member_index).ok_or(xdp_action::XDP_DROP)?;
        if member_index == 0 || member.ifindex == 0 {
            return Err(xdp_action::XDP_DROP);
        }
        rewrite(&frame, &member.mac, &port.gateway_mac);
        Ok(redirect_counted(member.ifindex, havip_id, len, HANDLED))
    })
}

/// A forward path with no hash-map helper call at all (a proposal, not the
/// product): `PORTS` and a HaVip table both in arrays, whose lookups the
/// verifier inlines; the HaVip table is open addressing on a multiplicative
/// hash computed in the program (at most 4 probes, table twice the HaVip
/// capacity); the owner is an index into a members array.
#[xdp]
pub fn lad_sketch_array(ctx: XdpContext) -> u32 {
    array_forward::<false, false>(&ctx)
}

/// The array sketch + the source check's table probe on the source address.
#[xdp]
pub fn lad6_source_probe(ctx: XdpContext) -> u32 {
    array_forward::<true, false>(&ctx)
}

/// The array sketch + source probe + `HANDLED[Forwarded]` (the product
/// counts every frame by its outcome).
#[xdp]
pub fn lad7_handled(ctx: XdpContext) -> u32 {
    array_forward::<true, true>(&ctx)
}
