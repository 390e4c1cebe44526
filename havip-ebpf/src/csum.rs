//! Internet checksums (RFC 1071) for headers the program builds itself.

/// Folds a 32-bit ones-complement sum into 16 bits (two carries at most
/// for sums of up to 65,536 words).
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Checksum of a 20-byte IPv4 header (no options), computed in full from
/// its ten 16-bit words in host order, with the checksum word as 0. The
/// result is in host order: store it with `to_be_bytes`.
#[inline(always)]
pub const fn ipv4_header(words: &[u16; 10]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < words.len() {
        sum += words[i] as u32;
        i += 1;
    }
    !fold(sum)
}

/// The 16-bit words (host order) of an IPv4 address in network order.
#[inline(always)]
pub const fn addr_words(addr: [u8; 4]) -> (u16, u16) {
    (
        u16::from_be_bytes([addr[0], addr[1]]),
        u16::from_be_bytes([addr[2], addr[3]]),
    )
}
