//! Turns an ARP request for a HaVip into the reply, in place, for `XDP_TX`.

use crate::{
    arp::{ArpHdr, OP_REPLY},
    eth::Frame,
    packet::write_mac,
};

/// `arp` must be the bounds-checked header of `frame`.
#[inline(always)]
pub fn reply(frame: &Frame, arp: *mut ArpHdr, virtual_mac: &[u8; 6]) {
    // SAFETY: both headers were bounds-checked by their parsers.
    unsafe {
        let requester_mac = (*arp).sha;
        let requester_ip = (*arp).spa;
        let havip = (*arp).tpa;
        write_mac(&raw mut (*frame.eth).dst, &requester_mac);
        write_mac(&raw mut (*frame.eth).src, virtual_mac);
        (*arp).oper = OP_REPLY;
        (*arp).tha = requester_mac;
        (*arp).tpa = requester_ip;
        (*arp).sha = *virtual_mac;
        (*arp).spa = havip;
    }
}
