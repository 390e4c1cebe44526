//! Value types of the model: MAC addresses and IPv4 prefixes.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why a MAC or CIDR string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:00:0a:01")]
    Mac(String),
    #[error("invalid IPv4 CIDR {0:?}: expected a.b.c.d/len with len 0..=32")]
    Cidr(String),
    #[error("invalid IPv4 CIDR {0:?}: host bits are set (network address is {1})")]
    CidrHostBits(String, Ipv4Cidr),
}

/// An Ethernet MAC address, written `02:00:00:00:0a:01` (also accepts `-`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The octets, as on the wire.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True for broadcast and multicast addresses (group bit set).
    pub const fn is_group(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for `00:00:00:00:00:00`.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Mac(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for octet in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An IPv4 prefix such as `10.0.1.0/24`. Host bits must be zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// A prefix from its network address and length.
    ///
    /// # Errors
    /// [`ParseError::Cidr`] if `len > 32`, [`ParseError::CidrHostBits`] if
    /// `addr` has bits set beyond the prefix.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, ParseError> {
        if len > 32 {
            return Err(ParseError::Cidr(format!("{addr}/{len}")));
        }
        let cidr = Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        };
        if cidr.addr != addr {
            return Err(ParseError::CidrHostBits(format!("{addr}/{len}"), cidr));
        }
        Ok(cidr)
    }

    /// Network address.
    pub const fn network(self) -> Ipv4Addr {
        self.addr
    }

    /// Prefix length.
    pub const fn prefix_len(self) -> u8 {
        self.len
    }

    /// Last address of the prefix (the broadcast address for `len < 31`).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.len))
    }

    /// Number of addresses in the prefix.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `ip` lies in the prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_cidr(self, other: Ipv4Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
}

const fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Cidr(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let len: u8 = len.parse().map_err(|_| err())?;
        if len > 32 {
            return Err(err());
        }
        Ipv4Cidr::new(addr, len).map_err(|e| match e {
            ParseError::CidrHostBits(_, net) => ParseError::CidrHostBits(s.to_owned(), net),
            other => other,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `Debug` as `Display`, and serde as the string form (`Display` /
/// `FromStr`), for the address types.
macro_rules! string_form {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_form!(MacAddr, Ipv4Cidr);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:00:00:0A:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 10, 1]);
        assert_eq!(m.to_string(), "02:00:00:00:0a:01");
        assert_eq!("02-00-00-00-0a-01".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "02:00:00:00:0a",
            "02:00:00:00:0a:01:02",
            "2:0:0:0:a:1",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"02:00:00:00:0a:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), m);
    }

    #[test]
    fn cidr_basics() {
        let c: Ipv4Cidr = "10.0.1.0/24".parse().unwrap();
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 0, 1, 7)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 2, 7)));
        let vpc: Ipv4Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(vpc.contains_cidr(c));
        assert!(!c.contains_cidr(vpc));
        assert!(c.overlaps(vpc));
        assert!(!c.overlaps("10.0.2.0/24".parse().unwrap()));
        assert!(matches!(
            "10.0.1.1/24".parse::<Ipv4Cidr>(),
            Err(ParseError::CidrHostBits(..))
        ));
        for bad in [
            "10.0.1.0",
            "10.0.1.0/33",
            "10.0.1/24",
            "10.0.1.0/",
            "10.0.1.0/+4",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(all.size(), 1 << 32);
    }
}
