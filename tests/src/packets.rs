//! Frame builders the `havip::frames` module does not have, and a hex diff for messages.

use std::net::Ipv4Addr;

use crate::frames;

/// Ones-complement sum over the IPv4 pseudo-header and `segment`.
fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, protocol]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(segment);
    frames::checksum(&pseudo)
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// TCP segment (20-byte header, no options) with a valid checksum.
pub fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0001u32.to_be_bytes()); // seq
    let ack = if flags & tcp_flags::ACK != 0 {
        0x2000_0001u32
    } else {
        0
    };
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&64240u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(data);
    let c = l4_checksum(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// ICMP echo request with a valid checksum.
pub fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = frames::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// `frame` with its 802.1Q tag turned into an 802.1ad (QinQ outer) tag.
pub fn as_8021ad(frame: &frames::Frame) -> Vec<u8> {
    assert!(frame.vlan.is_some(), "as_8021ad needs a tagged frame");
    let mut b = frame.bytes();
    b[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    b
}

/// `frame` with a second (inner) 802.1Q tag `inner_vid`.
pub fn double_tagged(frame: &frames::Frame, inner_vid: u16) -> Vec<u8> {
    assert!(frame.vlan.is_some(), "double_tagged needs a tagged frame");
    let mut b = frame.bytes();
    let mut tag = frames::ETH_P_8021Q.to_be_bytes().to_vec();
    tag.extend_from_slice(&(inner_vid & 0x0fff).to_be_bytes());
    // After the outer tag (dst, src, 0x8100, tci) comes the inner tag.
    b.splice(16..16, tag);
    b
}

/// Hex dump with the first difference from `other` marked, for messages.
pub(crate) fn hex_diff(label: &str, got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let hex = |b: &[u8]| {
        b.chunks(16)
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "      {:04x}: {}",
                    i * 16,
                    c.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{label}: first difference at byte {first} (got {} bytes, want {})\n    got:\n{}\n    want:\n{}",
        got.len(),
        want.len(),
        hex(got),
        hex(want)
    )
}

/// VXLAN header (RFC 7348): flags with the I bit, 24-bit `vni`.
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// `inner` (a whole Ethernet frame) VXLAN-encapsulated as havip does it:
/// outer Ethernet and IPv4 (no options, DF, TTL 64, id 0, checksum computed
/// from scratch) as `outer` says, UDP `sport` → `dport` with checksum 0,
/// VXLAN with `vni`.
pub fn vxlan_frame(
    outer: frames::Ipv4Path,
    sport: u16,
    dport: u16,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut payload = vxlan_header(vni).to_vec();
    payload.extend_from_slice(inner);
    outer.udp_no_checksum(sport, dport, &payload).bytes()
}
