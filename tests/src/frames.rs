//! Small frame builders (Ethernet, 802.1Q, ARP, IPv4, UDP, ICMP) for test
//! fixtures, the demo's claims and the benchmark generators.

use std::net::Ipv4Addr;

pub const BROADCAST: [u8; 6] = [0xff; 6];
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// Builder for one Ethernet frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub vlan: Option<u16>,
    pub ether_type: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: Vec<u8>) -> Self {
        Self {
            dst,
            src,
            vlan: None,
            ether_type,
            payload,
        }
    }

    /// Adds one 802.1Q tag with VLAN id `vid`.
    pub fn vlan(mut self, vid: u16) -> Self {
        self.vlan = Some(vid);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(18 + self.payload.len());
        b.extend_from_slice(&self.dst);
        b.extend_from_slice(&self.src);
        if let Some(vid) = self.vlan {
            b.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            b.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        b.extend_from_slice(&self.ether_type.to_be_bytes());
        b.extend_from_slice(&self.payload);
        b
    }
}

/// ARP payload (Ethernet/IPv4).
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&ETH_P_IP.to_be_bytes());
    b.push(6);
    b.push(4);
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(&sha);
    b.extend_from_slice(&spa.octets());
    b.extend_from_slice(&tha);
    b.extend_from_slice(&tpa.octets());
    b
}

/// Gratuitous ARP request announcing `ip` at `mac`, as keepalived sends it.
pub fn garp(mac: [u8; 6], ip: Ipv4Addr) -> Frame {
    Frame::new(
        BROADCAST,
        mac,
        ETH_P_ARP,
        arp(ARP_REQUEST, mac, ip, [0; 6], ip),
    )
}

/// ARP request from (`mac`, `ip`) for `target`.
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Frame {
    Frame::new(
        BROADCAST,
        mac,
        ETH_P_ARP,
        arp(ARP_REQUEST, mac, ip, [0; 6], target),
    )
}

/// RFC 1071 Internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 packet with header checksum; `options` (multiple of 4 bytes) after
/// the header; id 0, DF set, TTL 64.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, protocol, 0, 0x4000, options, payload)
}

/// IPv4 packet with header checksum, the identification `id` and the
/// flags/fragment-offset word `frag` given; TTL 64.
pub fn ipv4_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = ihl * 4 + payload.len();
    let mut h = Vec::with_capacity(total);
    h.push(0x40 | ihl as u8);
    h.push(0);
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.push(64);
    h.push(protocol);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// UDP datagram with checksum 0 (optional over IPv4).
pub fn udp_no_checksum(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// UDP datagram with checksum over the IPv4 pseudo-header.
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = udp_no_checksum(sport, dport, data);
    let len = u.len() as u16;
    let mut pseudo = Vec::with_capacity(12 + u.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&u);
    let c = match checksum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// A whole Ethernet/IPv4/UDP frame.
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    data: &[u8],
) -> Frame {
    Ipv4Path {
        dst_mac,
        src_mac,
        src,
        dst,
    }
    .udp(sport, dport, data)
}

/// The Ethernet and IPv4 addresses of a frame; the ports come with each
/// UDP datagram.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Path {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Path {
    /// The frame carrying `data` from `sport` to `dport`, UDP checksum over
    /// the pseudo-header.
    pub fn udp(&self, sport: u16, dport: u16, data: &[u8]) -> Frame {
        self.with_segment(&udp(self.src, self.dst, sport, dport, data))
    }

    /// The same with UDP checksum 0 (as VXLAN and the bench generator send it).
    pub fn udp_no_checksum(&self, sport: u16, dport: u16, data: &[u8]) -> Frame {
        self.with_segment(&udp_no_checksum(sport, dport, data))
    }

    fn with_segment(&self, segment: &[u8]) -> Frame {
        ipv4_frame(
            self.dst_mac,
            self.src_mac,
            ipv4(self.src, self.dst, 17, &[], segment),
        )
    }
}

/// An Ethernet frame carrying the IPv4 `packet`.
pub fn ipv4_frame(dst_mac: [u8; 6], src_mac: [u8; 6], packet: Vec<u8>) -> Frame {
    Frame::new(dst_mac, src_mac, ETH_P_IP, packet)
}

/// Parses a MAC written as `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The virtual MAC the data plane answers ARP with for `addr`.
pub fn virtual_mac_of(addr: Ipv4Addr) -> [u8; 6] {
    havip_common::virtual_mac(addr.octets())
}
