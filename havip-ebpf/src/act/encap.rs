//! IPv4 to a HaVip whose owner is on another host: rewrite the inner MACs,
//! push outer Ethernet/IPv4/UDP/VXLAN headers and redirect out of the local
//! VTEP port.

use aya_ebpf::{
    helpers::{bpf_check_mtu, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use havip_common::{DropReason, Handled, PortInfo, MIN_UNDERLAY_MTU, VXLAN_OVERHEAD, VXLAN_PORT};

use crate::{
    csum,
    maps::{self, count, HAVIP_STATS, TX_PORTS},
    packet::{ptr_at, write_mac, write_mac_word, MacWord},
    parse::{
        eth::{EthHdr, Frame, ETH_P_IP},
        ipv4::{self, Ipv4Hdr},
        vxlan::{UdpHdr, VxlanHdr, FLAG_VNI, IPPROTO_UDP},
    },
};

/// The headers pushed in front of the inner frame (50 bytes, no padding:
/// every field is a byte array).
#[repr(C)]
struct Outer {
    eth: EthHdr,
    ip: Ipv4Hdr,
    udp: UdpHdr,
    vxlan: VxlanHdr,
}

const _: () = assert!(core::mem::size_of::<Outer>() == VXLAN_OVERHEAD);

/// Outer IPv4 header length: no options.
const OUTER_IP_LEN: u16 = 20;
const UDP_VXLAN_LEN: u16 = 16;
const TTL: u8 = 64;
/// Don't Fragment: an underlay that cannot carry the frame must say so.
const FRAG_DF: u16 = 0x4000;
/// Source ports come from the dynamic range (RFC 7348 section 5).
const SPORT_BASE: u16 = 49152;
/// `BPF_MTU_CHK_RET_FRAG_NEEDED`: the frame exceeds the device MTU.
const MTU_FRAG_NEEDED: i64 = 1;
/// An encapsulated frame whose outer IPv4 packet fits the smallest MTU the
/// agent accepts on the VTEP port (docs/design.md, MTU; the underlay needs
/// 1550 for 1500-byte guests) fits every supported underlay, so only
/// longer ones pay the `bpf_check_mtu` helper (a device lookup by ifindex
/// per frame). As an Ethernet frame length: MTU + 14.
const FITS_ANY_UNDERLAY: u32 = MIN_UNDERLAY_MTU + 14;

/// The owner on another host, as read from `OWNERS` (copied once).
pub struct RemoteOwner {
    pub vtep: [u8; 4],
    pub mac: [u8; 6],
    pub havip_id: u32,
}

/// UDP source port of a flow: a hash of the inner addresses, protocol and
/// ports folded into 49152..=65535, so the underlay's ECMP spreads flows
/// and keeps each one on one path.
#[inline(always)]
pub fn source_port(saddr: [u8; 4], daddr: [u8; 4], protocol: u8, ports: [u8; 4]) -> u16 {
    let mut h = u32::from_be_bytes(saddr)
        ^ u32::from_be_bytes(daddr).rotate_left(16)
        ^ u32::from_be_bytes(ports).rotate_left(8)
        ^ u32::from(protocol);
    // murmur3's 32-bit finaliser: every input bit reaches the low 14 bits.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    SPORT_BASE | (h as u16 & 0x3fff)
}

/// Would the encapsulated frame (current length + 50) fit the VTEP port
/// `ifindex`? The kernel compares it with the device MTU + its L2 header
/// (14), i.e. the outer IPv4 packet with the MTU (bpf_xdp_check_mtu, Linux
/// 5.12, commit 34b2021cc616).
#[inline(always)]
fn check_mtu(ctx: &XdpContext, ifindex: u32) -> Result<(), DropReason> {
    let mut mtu_len: u32 = 0;
    // SAFETY: `ctx.ctx` is the program's context; `mtu_len` is on the stack.
    let mtu = unsafe {
        bpf_check_mtu(
            ctx.ctx.cast(),
            ifindex,
            &raw mut mtu_len,
            VXLAN_OVERHEAD as i32,
            0,
        )
    };
    match mtu {
        0 => Ok(()),
        MTU_FRAG_NEEDED => Err(DropReason::EncapTooBig),
        // No such device: the VTEP port is gone.
        _ => Err(DropReason::PortNotRedirectable),
    }
}

/// `frame` is untagged IPv4 (`saddr` → `daddr`) from `port`, to a HaVip of
/// its vSwitch whose owner is `owner`.
#[inline(always)]
pub fn to_remote(
    ctx: &XdpContext,
    frame: &Frame,
    port: &PortInfo,
    saddr: [u8; 4],
    daddr: [u8; 4],
    owner: &RemoteOwner,
) -> Result<Handled, DropReason> {
    let Some(local) = maps::local_vtep() else {
        return Err(DropReason::NoVtep);
    };
    let Some(vtep_mac) = maps::remote_vtep_mac(&owner.vtep) else {
        return Err(DropReason::NoVtep);
    };
    let Some(vni) = maps::vni_of(port.vswitch_id) else {
        return Err(DropReason::NoVtep);
    };
    let (protocol, ports) = ipv4::flow_ports(ctx, frame.l3_offset).unwrap_or((0, [0; 4]));
    let sport = source_port(saddr, daddr, protocol, ports);

    let inner_len = (ctx.data_end() - ctx.data()) as u16;
    if u32::from(inner_len) + VXLAN_OVERHEAD as u32 > FITS_ANY_UNDERLAY {
        check_mtu(ctx, local.ifindex)?;
    }

    // The inner frame as the owner must see it (before the head moves:
    // `frame.eth` is only valid until then).
    // SAFETY: `frame.eth` was bounds-checked by `parse::eth::parse`;
    // `gateway_mac` is at offset 12 of the 4-byte aligned `PortInfo`.
    unsafe {
        write_mac(&raw mut (*frame.eth).dst, &owner.mac);
        write_mac_word(
            &raw mut (*frame.eth).src,
            MacWord::load(&raw const port.gateway_mac),
        );
    }
    // SAFETY: `ctx.ctx` is the program's context. A negative delta grows
    // the frame at the front (needs headroom; every XDP driver gives 256
    // bytes, generic XDP too).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(VXLAN_OVERHEAD as i32)) } != 0 {
        return Err(DropReason::EncapTooBig);
    }
    // Every pointer derived before the move is invalid: check again.
    let Some(outer) = ptr_at::<Outer>(ctx, 0) else {
        return Err(DropReason::EncapTooBig);
    };
    let ip_len = inner_len + OUTER_IP_LEN + UDP_VXLAN_LEN;
    let (s0, s1) = csum::addr_words(local.addr);
    let (d0, d1) = csum::addr_words(owner.vtep);
    let check = csum::ipv4_header(&[
        0x4500,
        ip_len,
        0,
        FRAG_DF,
        u16::from_be_bytes([TTL, IPPROTO_UDP]),
        0,
        s0,
        s1,
        d0,
        d1,
    ]);
    let dport = if local.port == [0; 2] {
        VXLAN_PORT.to_be_bytes()
    } else {
        local.port
    };
    let (m, l, v) = (vtep_mac, local.mac, vni.to_be_bytes());
    let (sa, da) = (local.addr, owner.vtep);
    // The 50 bytes as 25 16-bit words (each as on the wire): one store
    // each. Field-by-field byte assignments cost twice the stores and a
    // `memset` call for the VXLAN reserved bytes.
    let words: [[u8; 2]; 25] = [
        // Ethernet: remote VTEP's MAC, ours, IPv4.
        [m[0], m[1]],
        [m[2], m[3]],
        [m[4], m[5]],
        [l[0], l[1]],
        [l[2], l[3]],
        [l[4], l[5]],
        ETH_P_IP,
        // IPv4: version/IHL, TOS; length; id; DF; TTL, UDP; checksum;
        // source and destination VTEP.
        [0x45, 0],
        ip_len.to_be_bytes(),
        [0, 0],
        FRAG_DF.to_be_bytes(),
        [TTL, IPPROTO_UDP],
        check.to_be_bytes(),
        [sa[0], sa[1]],
        [sa[2], sa[3]],
        [da[0], da[1]],
        [da[2], da[3]],
        // UDP: ports, length, no checksum over IPv4 (RFC 7348 section 5).
        sport.to_be_bytes(),
        dport,
        (inner_len + UDP_VXLAN_LEN).to_be_bytes(),
        [0, 0],
        // VXLAN: flags (I), reserved, 24-bit VNI, reserved.
        [FLAG_VNI, 0],
        [0, 0],
        [v[1], v[2]],
        [v[3], 0],
    ];
    let dst = outer.cast::<u16>();
    let mut i = 0;
    while i < words.len() {
        // SAFETY: `outer` (50 bytes, 25 words) was bounds-checked after the
        // move; packet data is 2-byte aligned (see `packet::write_mac`) and
        // the header is 50 bytes, so every word stays 2-byte aligned.
        unsafe { dst.add(i).write_volatile(u16::from_ne_bytes(words[i])) };
        i += 1;
    }
    match TX_PORTS.redirect(local.ifindex, 0) {
        Ok(_) => {
            count(&HAVIP_STATS, owner.havip_id, u64::from(inner_len));
            Ok(Handled::ForwardedRemote)
        }
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
