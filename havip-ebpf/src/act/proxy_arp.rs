//! Turns an ARP request for a HaVip into the reply, in place, and sends it
//! back out of the ingress port with a devmap redirect.

use havip_common::{DropReason, Handled};

use crate::{
    maps::TX_PORTS,
    packet::write_mac,
    parse::{
        arp::{Arp, OP_REPLY},
        eth::Frame,
    },
};

/// `arp` must be the parsed ARP header of `frame`.
#[inline(always)]
pub fn reply(
    frame: &Frame,
    arp: &Arp,
    virtual_mac: &[u8; 6],
    ifindex: u32,
) -> Result<Handled, DropReason> {
    let hdr = arp.hdr;
    // SAFETY: both headers were bounds-checked by their parsers and stay in
    // the frame (nothing was pushed or pulled since).
    unsafe {
        write_mac(&raw mut (*frame.eth).dst, &arp.sha);
        write_mac(&raw mut (*frame.eth).src, virtual_mac);
        (*hdr).oper = OP_REPLY;
        (*hdr).tha = arp.sha;
        (*hdr).tpa = arp.spa;
        (*hdr).sha = *virtual_mac;
        (*hdr).spa = arp.tpa;
    }
    // Back out of the ingress port through the devmap rather than XDP_TX:
    // veth only kicks its peer's NAPI for XDP_TX when the peer runs XDP
    // itself, so a guest with plain GRO would see the reply up to a second
    // late (drivers/net/veth.c veth_xdp_flush). A devmap redirect flushes
    // through ndo_xdp_xmit(XDP_XMIT_FLUSH) on every driver.
    match TX_PORTS.redirect(ifindex, 0) {
        Ok(_) => Ok(Handled::ProxyArpReplied),
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
