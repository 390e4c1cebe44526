//! Frame generator and mutators: valid Ethernet / 802.1Q / 802.1ad / IPv4
//! (UDP, TCP, ICMP, fragments, options, VXLAN-in-UDP) / ARP (requests,
//! GARPs, replies, probes) frames built from the bed's addresses with high
//! probability, then mutated (bit flips, truncation, length lies, ethertype
//! swaps, byte overwrites, junk), plus pure random bytes.

use std::net::Ipv4Addr;

use super::rng::Rng;
use crate::frames::{arp, checksum, ipv4_with, udp_no_checksum};
use crate::Port;

/// What a frame was built as, before mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Udp,
    Tcp,
    Icmp,
    Fragment,
    Ipv4Options,
    Vxlan,
    ArpRequest,
    Garp,
    GarpReply,
    ArpReply,
    ArpProbe,
    OtherEtherType,
    RandomBytes,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Udp => "ipv4/udp",
            Kind::Tcp => "ipv4/tcp",
            Kind::Icmp => "ipv4/icmp",
            Kind::Fragment => "ipv4/fragment",
            Kind::Ipv4Options => "ipv4/options",
            Kind::Vxlan => "ipv4/udp/vxlan",
            Kind::ArpRequest => "arp/request",
            Kind::Garp => "arp/garp",
            Kind::GarpReply => "arp/garp-reply",
            Kind::ArpReply => "arp/reply",
            Kind::ArpProbe => "arp/probe",
            Kind::OtherEtherType => "other-ethertype",
            Kind::RandomBytes => "random-bytes",
        }
    }
}

/// How a built frame was damaged (the first mutation applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mutation {
    None,
    BitFlips,
    Truncate,
    LengthLie,
    EtherTypeSwap,
    ByteOverwrite,
    AppendJunk,
}

impl Mutation {
    pub fn name(self) -> &'static str {
        match self {
            Mutation::None => "none",
            Mutation::BitFlips => "bit-flips",
            Mutation::Truncate => "truncate",
            Mutation::LengthLie => "length-lie",
            Mutation::EtherTypeSwap => "ethertype-swap",
            Mutation::ByteOverwrite => "byte-overwrite",
            Mutation::AppendJunk => "append-junk",
        }
    }
}

/// Addresses the generator draws from: mostly the bed's, so the
/// interesting paths (HaVips, bindings, owners) are hit often.
#[derive(Clone, Debug)]
pub struct Pools {
    /// Each port with the MAC of what sits behind it (used as the source
    /// MAC half of the time, so bound-member claims happen).
    pub port_macs: Vec<(Port, [u8; 6])>,
    /// Every configured MAC (ENIs, gateways, virtual MACs, group MACs).
    pub macs: Vec<[u8; 6]>,
    /// HaVip addresses (all vSwitches).
    pub havips: Vec<Ipv4Addr>,
    /// Other configured addresses (instances, remote hosts, 0.0.0.0, ...).
    pub ips: Vec<Ipv4Addr>,
}

/// One generated frame and where it enters.
#[derive(Clone, Debug)]
pub struct Generated {
    pub ingress: Port,
    pub frame: Vec<u8>,
    pub kind: Kind,
    pub mutation: Mutation,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_TYPES: [u16; 7] = [
    ETH_P_IP,
    ETH_P_ARP,
    ETH_P_8021Q,
    ETH_P_8021AD,
    0x86dd, // IPv6
    0x8035, // RARP
    0x88cc, // LLDP
];
const VXLAN_PORT: u16 = 4789;

impl Pools {
    fn mac(&self, rng: &mut Rng) -> [u8; 6] {
        if rng.percent(10) {
            let mut m: [u8; 6] = [0; 6];
            m.iter_mut().for_each(|b| *b = rng.byte());
            m
        } else {
            rng.pick(&self.macs)
        }
    }

    fn ip(&self, rng: &mut Rng) -> Ipv4Addr {
        match rng.below(10) {
            0 => Ipv4Addr::from(rng.next_u64() as u32),
            1..=5 => rng.pick(&self.havips),
            _ => rng.pick(&self.ips),
        }
    }

    fn natural_mac(&self, port: Port, rng: &mut Rng) -> [u8; 6] {
        self.port_macs
            .iter()
            .find(|(p, _)| *p == port)
            .map_or_else(|| self.mac(rng), |(_, m)| *m)
    }

    /// Draws one frame (seeded by `rng`).
    pub fn generate(&self, rng: &mut Rng) -> Generated {
        let ingress = Port::ALL[rng.weighted(&[20, 20, 15, 15, 15, 5])];
        let kind = [
            Kind::Udp,
            Kind::Tcp,
            Kind::Icmp,
            Kind::Fragment,
            Kind::Ipv4Options,
            Kind::Vxlan,
            Kind::ArpRequest,
            Kind::Garp,
            Kind::GarpReply,
            Kind::ArpReply,
            Kind::ArpProbe,
            Kind::OtherEtherType,
            Kind::RandomBytes,
        ][rng.weighted(&[14, 6, 5, 4, 4, 4, 14, 14, 6, 8, 6, 5, 10])];
        if kind == Kind::RandomBytes {
            let len = rng.below(160);
            return Generated {
                ingress,
                frame: rng.bytes(len),
                kind,
                mutation: Mutation::None,
            };
        }
        let src_mac = if rng.percent(50) {
            self.natural_mac(ingress, rng)
        } else {
            self.mac(rng)
        };
        let dst_mac = match rng.below(4) {
            0 => [0xff; 6],
            _ => self.mac(rng),
        };
        let (ether_type, payload) = self.payload(kind, src_mac, rng);
        let mut frame = Vec::with_capacity(22 + payload.len());
        frame.extend_from_slice(&dst_mac);
        frame.extend_from_slice(&src_mac);
        match rng.below(100) {
            0..=11 => push_tag(&mut frame, ETH_P_8021Q, rng),
            12..=15 => push_tag(&mut frame, ETH_P_8021AD, rng),
            16..=18 => {
                push_tag(&mut frame, ETH_P_8021AD, rng);
                push_tag(&mut frame, ETH_P_8021Q, rng);
            }
            _ => {}
        }
        frame.extend_from_slice(&ether_type.to_be_bytes());
        frame.extend_from_slice(&payload);
        if rng.percent(10) {
            // Ethernet minimum-size padding, as a NIC would deliver it.
            frame.resize(frame.len().max(60), 0);
        }
        let mutation = if rng.percent(45) {
            Mutation::None
        } else {
            let first = mutate(&mut frame, rng);
            if rng.percent(25) {
                mutate(&mut frame, rng);
            }
            first
        };
        Generated {
            ingress,
            frame,
            kind,
            mutation,
        }
    }

    /// The L3 payload of `kind` and its ethertype.
    fn payload(&self, kind: Kind, src_mac: [u8; 6], rng: &mut Rng) -> (u16, Vec<u8>) {
        let (src, dst) = (self.ip(rng), self.ip(rng));
        let data = {
            let n = rng.below(48);
            rng.bytes(n)
        };
        let ip = |proto: u8, options: &[u8], l4: &[u8], rng: &mut Rng| {
            let frag = match kind {
                Kind::Fragment => {
                    let offset = if rng.percent(50) {
                        rng.u16() & 0x1fff
                    } else {
                        0
                    };
                    0x2000 | offset
                }
                _ => 0x4000,
            };
            ipv4_with(src, dst, proto, 0x1234, frag, options, l4)
        };
        match kind {
            Kind::Udp | Kind::Fragment => {
                let port = if rng.percent(20) { 53 } else { rng.u16() };
                (
                    ETH_P_IP,
                    ip(17, &[], &udp_no_checksum(rng.u16(), port, &data), rng),
                )
            }
            Kind::Tcp => (ETH_P_IP, ip(6, &[], &tcp(rng, &data), rng)),
            Kind::Icmp => {
                let mut m = vec![8, 0, 0, 0];
                m.extend_from_slice(&rng.bytes(4));
                m.extend_from_slice(&data);
                let c = checksum(&m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                (ETH_P_IP, ip(1, &[], &m, rng))
            }
            Kind::Ipv4Options => {
                let words = 1 + rng.below(10);
                let mut options = rng.bytes(words * 4);
                if rng.percent(50) {
                    // Router alert, then end of list.
                    options[..4].copy_from_slice(&[0x94, 0x04, 0, 0]);
                }
                (
                    ETH_P_IP,
                    ip(17, &options, &udp_no_checksum(rng.u16(), 53, &data), rng),
                )
            }
            Kind::Vxlan => {
                // VXLAN header (flags I, VNI) + an inner frame drawn like an outer one.
                let mut inner = vec![0x08, 0, 0, 0];
                inner.extend_from_slice(&(rng.next_u64() as u32 & 0xffff_ff00).to_be_bytes());
                inner.extend_from_slice(&self.mac(rng));
                inner.extend_from_slice(&self.mac(rng));
                let inner_kind = rng.pick(&[Kind::Udp, Kind::Garp, Kind::ArpRequest]);
                let (et, p) = self.payload(inner_kind, self.mac(rng), rng);
                inner.extend_from_slice(&et.to_be_bytes());
                inner.extend_from_slice(&p);
                (
                    ETH_P_IP,
                    ip(
                        17,
                        &[],
                        &udp_no_checksum(rng.u16(), VXLAN_PORT, &inner),
                        rng,
                    ),
                )
            }
            Kind::ArpRequest | Kind::Garp | Kind::GarpReply | Kind::ArpReply | Kind::ArpProbe => {
                let sha = if rng.percent(80) {
                    src_mac
                } else {
                    self.mac(rng)
                };
                let havip = rng.pick(&self.havips);
                let (oper, spa, tha, tpa) = match kind {
                    Kind::ArpRequest => (1, src, [0; 6], havip_or(rng, havip, dst)),
                    Kind::Garp => {
                        let a = havip_or(rng, havip, src);
                        (1, a, [0; 6], a)
                    }
                    Kind::GarpReply => {
                        let a = havip_or(rng, havip, src);
                        (2, a, [0xff; 6], a)
                    }
                    Kind::ArpReply => (2, havip_or(rng, havip, src), self.mac(rng), dst),
                    _ => (1, Ipv4Addr::UNSPECIFIED, [0; 6], havip_or(rng, havip, dst)),
                };
                (ETH_P_ARP, arp(oper, sha, spa, tha, tpa))
            }
            Kind::OtherEtherType | Kind::RandomBytes => {
                let et = if rng.percent(50) {
                    rng.pick(&ETH_TYPES[4..])
                } else {
                    rng.u16()
                };
                let n = rng.below(80);
                (et, rng.bytes(n))
            }
        }
    }
}

/// `havip` with probability 70 %, else `other`.
fn havip_or(rng: &mut Rng, havip: Ipv4Addr, other: Ipv4Addr) -> Ipv4Addr {
    if rng.percent(70) {
        havip
    } else {
        other
    }
}

fn push_tag(frame: &mut Vec<u8>, tpid: u16, rng: &mut Rng) {
    frame.extend_from_slice(&tpid.to_be_bytes());
    let tci = if rng.percent(30) { 0 } else { rng.u16() };
    frame.extend_from_slice(&tci.to_be_bytes());
}

/// Applies one random mutation in place; returns which.
pub fn mutate(frame: &mut Vec<u8>, rng: &mut Rng) -> Mutation {
    let m = [
        Mutation::BitFlips,
        Mutation::Truncate,
        Mutation::LengthLie,
        Mutation::EtherTypeSwap,
        Mutation::ByteOverwrite,
        Mutation::AppendJunk,
    ][rng.weighted(&[25, 20, 15, 15, 15, 10])];
    match m {
        Mutation::BitFlips if !frame.is_empty() => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(frame.len());
                frame[i] ^= 1 << rng.below(8);
            }
        }
        Mutation::Truncate => {
            // Mostly cut inside the headers, where the parsers must bound-check.
            let limit = if rng.percent(70) { 60 } else { frame.len() + 1 };
            let to = rng.below(limit.min(frame.len() + 1));
            frame.truncate(to);
        }
        Mutation::LengthLie => {
            let field = l3_offset(frame).and_then(|l3| {
                let at = match rng.below(4) {
                    0 => l3 + 2,  // IPv4 total length
                    1 => l3 + 24, // UDP length (no options)
                    2 => l3 + 4,  // ARP hlen / plen
                    _ => l3,      // IPv4 version / IHL
                };
                (at + 2 <= frame.len()).then_some(at)
            });
            if let Some(at) = field {
                let any = rng.u16();
                let v = rng.pick(&[0u16, 1, 4, 5, 0x45, 0x4f, 0x0604, 0xffff, any]);
                frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
        Mutation::EtherTypeSwap => {
            let at = match l3_offset(frame) {
                Some(l3) if rng.percent(80) => l3 - 2,
                _ => 12,
            };
            if at + 2 <= frame.len() {
                let et = rng.pick(&ETH_TYPES);
                frame[at..at + 2].copy_from_slice(&et.to_be_bytes());
            }
        }
        Mutation::ByteOverwrite if !frame.is_empty() => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(frame.len());
                let any = rng.byte();
                frame[i] = rng.pick(&[0x00, 0x01, 0x02, 0x06, 0x08, 0x45, 0x81, 0xff, any]);
            }
        }
        Mutation::AppendJunk => {
            let n = 1 + rng.below(64);
            frame.extend_from_slice(&rng.bytes(n));
        }
        _ => {}
    }
    m
}

/// Where the L3 header starts after at most two VLAN tags, if the frame has one.
fn l3_offset(frame: &[u8]) -> Option<usize> {
    let mut at = 12;
    for _ in 0..2 {
        let et = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        if et != ETH_P_8021Q && et != ETH_P_8021AD {
            break;
        }
        at += 4;
    }
    Some(at + 2)
}

fn tcp(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut t = rng.bytes(12);
    t.push(5 << 4);
    t.push(rng.pick(&[0x02, 0x10, 0x12, 0x18, 0x11, 0x04]));
    t.extend_from_slice(&rng.bytes(6));
    t.extend_from_slice(data);
    t
}
