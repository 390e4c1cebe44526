//! havip's XDP program: entry point only. Parsing is in `eth`, `ipv4` and
//! `arp`; the actions in `forward`, `claim` and `proxy_arp`; maps in `maps`.
#![no_std]
#![no_main]

mod arp;
mod claim;
mod eth;
mod events;
mod forward;
mod ipv4;
mod maps;
mod packet;
mod proxy_arp;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use havip_common::{DropReason, Handled};

/// Runs on every host port (instance taps and the uplink) before the bridge.
#[xdp]
pub fn havip_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    match try_havip_xdp(&ctx) {
        Ok(handled) => {
            maps::count(&maps::HANDLED, handled as u32, len);
            action(handled)
        }
        Err(reason) => {
            maps::count(&maps::DROPS, reason as u32, len);
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn try_havip_xdp(ctx: &XdpContext) -> Result<Handled, DropReason> {
    let Some(frame) = eth::parse(ctx) else {
        return Ok(Handled::PassedMalformed);
    };
    match frame.ether_type {
        eth::ETH_P_IP => forward::ipv4(ctx, &frame),
        eth::ETH_P_ARP => arp::handle(ctx, &frame),
        _ => Ok(Handled::Passed),
    }
}

#[inline(always)]
const fn action(handled: Handled) -> u32 {
    match handled {
        Handled::Passed | Handled::PassedMalformed | Handled::PassedMemberArp => {
            xdp_action::XDP_PASS
        }
        Handled::Forwarded | Handled::ProxyArpReplied => xdp_action::XDP_REDIRECT,
        Handled::ClaimAccepted | Handled::ClaimRefreshed | Handled::MemberArpAbsorbed => {
            xdp_action::XDP_DROP
        }
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
