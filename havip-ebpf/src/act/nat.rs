//! EIP 1:1 NAT: rewrites one IPv4 address and patches the checksums
//! incrementally (RFC 1624), then delivers the frame (`inbound`: to the
//! HaVip's owner through `forward::to_havip`; `outbound`: out of the uplink
//! the host's routing picks, with `bpf_fib_lookup`).
//!
//! What is patched: the IPv4 header checksum always; the TCP and UDP
//! checksums (their pseudo-header holds the address) only in a packet that
//! carries the L4 header (fragment offset 0); a UDP checksum of 0 (none)
//! stays 0. ICMP has no pseudo-header: nothing but the IPv4 header changes.
//! Non-first fragments and other protocols get the IPv4 header only: the
//! mapping is stateless and 1:1, so every fragment of a datagram is
//! translated alike, and the first fragment's L4 checksum (which covers the
//! whole datagram) is patched for the address once.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NOT_FWDED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::bpf_fib_lookup,
    programs::XdpContext,
    EbpfContext,
};
use havip_common::{port_flags, DropReason, Handled, HavipKey, PortInfo};

use crate::{
    act::forward,
    csum::{addr_words, fold},
    maps::{self, TX_PORTS},
    packet::{ptr_at, write_mac},
    parse::{eth::Frame, ipv4::Ipv4Hdr},
    policy::eip::{Inbound, Outbound},
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Offset of the checksum in the TCP / UDP header.
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;
const AF_INET: u8 = 2;

/// Which address of the IPv4 header is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Src,
    Dst,
}

/// `check` (as on the wire) after one 32-bit word of the covered data
/// changed from `old` to `new`: HC' = ~(~HC + ~m + m') (RFC 1624, eqn. 3).
#[inline(always)]
fn replace_addr(check: [u8; 2], old: [u8; 4], new: [u8; 4]) -> [u8; 2] {
    let (o1, o2) = addr_words(old);
    let (n1, n2) = addr_words(new);
    let sum = u32::from(!u16::from_be_bytes(check))
        + u32::from(!o1)
        + u32::from(!o2)
        + u32::from(n1)
        + u32::from(n2);
    (!fold(sum)).to_be_bytes()
}

/// Rewrites the source or destination address of the IPv4 header at `l3`
/// to `new`, with the checksums. Nothing is written when the TCP/UDP
/// checksum the packet should carry is not in the frame.
#[inline(always)]
fn rewrite(ctx: &XdpContext, l3: usize, field: Field, new: [u8; 4]) -> Result<(), DropReason> {
    let ip: *mut Ipv4Hdr = ptr_at(ctx, l3).ok_or(DropReason::EipTruncated)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, frag_off, protocol, old) = unsafe {
        (
            (*ip).version_ihl,
            (*ip).frag_off,
            (*ip).protocol,
            match field {
                Field::Src => (*ip).saddr,
                Field::Dst => (*ip).daddr,
            },
        )
    };
    let ihl = (version_ihl & 0x0f) as usize * 4;
    let first = u16::from_be_bytes(frag_off) & 0x1fff == 0;
    let l4_check = match protocol {
        IPPROTO_TCP if first => Some(TCP_CHECK),
        IPPROTO_UDP if first => Some(UDP_CHECK),
        _ => None,
    };
    let l4: Option<*mut [u8; 2]> = match l4_check {
        Some(off) => Some(ptr_at(ctx, l3 + ihl + off).ok_or(DropReason::EipTruncated)?),
        None => None,
    };
    // SAFETY: `ip` and `l4` were bounds-checked by `ptr_at`.
    unsafe {
        if let Some(l4) = l4 {
            let check = *l4;
            // A UDP checksum of 0 means none: it stays 0. A computed 0 is
            // sent as 0xffff (RFC 768).
            if protocol == IPPROTO_TCP {
                *l4 = replace_addr(check, old, new);
            } else if check != [0, 0] {
                let next = replace_addr(check, old, new);
                *l4 = if next == [0, 0] { [0xff, 0xff] } else { next };
            }
        }
        (*ip).check = replace_addr((*ip).check, old, new);
        match field {
            Field::Src => (*ip).saddr = new,
            Field::Dst => (*ip).daddr = new,
        }
    }
    Ok(())
}

/// IPv4 to an EIP from an uplink: DNAT to the HaVip, then to its owner.
#[inline(always)]
pub fn inbound(
    ctx: &XdpContext,
    frame: &Frame,
    port: &PortInfo,
    ifindex: u32,
    saddr: [u8; 4],
    decision: Inbound,
) -> Result<Handled, DropReason> {
    let eip = match decision {
        Inbound::ForeignMac => return Ok(Handled::PassedUplinkForeignMac),
        Inbound::Dnat(eip) => eip,
    };
    let key = HavipKey {
        vswitch_id: eip.vswitch_id,
        addr: eip.havip,
    };
    rewrite(ctx, frame.l3_offset, Field::Dst, eip.havip)?;
    match forward::to_havip(ctx, frame, port, ifindex, &key, saddr, eip.havip)? {
        Handled::Forwarded => Ok(Handled::EipDnat),
        Handled::ForwardedRemote => Ok(Handled::EipDnatRemote),
        // Translated but not delivered: never let it through half done.
        _ => Err(DropReason::EipNoHavip),
    }
}

/// IPv4 from a HaVip's owner to the outside: SNAT to the EIP and out of the
/// uplink the host routes the destination through. A route that leaves by
/// any other port (or a local destination) leaves the frame untouched.
#[inline(always)]
pub fn outbound(
    ctx: &XdpContext,
    frame: &Frame,
    ifindex: u32,
    daddr: [u8; 4],
    snat: &Outbound,
) -> Result<Handled, DropReason> {
    let l3 = frame.l3_offset;
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3).ok_or(DropReason::EipTruncated)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (tos, protocol, tot_len) = unsafe { ((*ip).tos, (*ip).protocol, (*ip).tot_len) };
    // SAFETY: all-zero is a valid `bpf_fib_lookup` (plain integers).
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = protocol;
    fib.__bindgen_anon_1.tot_len = u16::from_be_bytes(tot_len);
    fib.ifindex = ifindex;
    fib.__bindgen_anon_2.tos = tos;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(snat.eip);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(daddr);
    // SAFETY: `fib` is a valid, writable `struct bpf_fib_lookup` of the size
    // passed; the helper reads the ingress device from the context.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    // On success and on an unresolved neighbour the kernel has set the
    // egress port: a route that does not leave by an uplink is not ours.
    let resolved = rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS);
    if !resolved && rc != i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        return match rc {
            r if r == i64::from(BPF_FIB_LKUP_RET_NOT_FWDED) => Ok(Handled::Passed),
            r if r == i64::from(BPF_FIB_LKUP_RET_FRAG_NEEDED) => Err(DropReason::EipFragNeeded),
            _ => Err(DropReason::EipNoRoute),
        };
    }
    let egress = fib.ifindex;
    let is_uplink = maps::port(egress).is_some_and(|p| p.flags & port_flags::UPLINK != 0);
    if !is_uplink {
        return Ok(Handled::Passed);
    }
    if !resolved {
        return Err(DropReason::EipNoNeighbour);
    }
    rewrite(ctx, l3, Field::Src, snat.eip)?;
    // SAFETY: `frame.eth` was bounds-checked by `parse::eth::parse`.
    unsafe {
        write_mac(&raw mut (*frame.eth).dst, &fib.dmac);
        write_mac(&raw mut (*frame.eth).src, &fib.smac);
    }
    match TX_PORTS.redirect(egress, 0) {
        Ok(_) => Ok(Handled::EipSnat),
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
