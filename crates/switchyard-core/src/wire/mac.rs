//! Ethernet (IEEE 802 MAC-48) addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
///
/// The two low bits of the first octet carry meaning a switch cares about:
/// bit 0 (I/G) marks a group address (multicast, and broadcast as its all-ones case),
/// which may be a destination but never a source; bit 1 (U/L) marks a locally
/// administered address, like the `02:42:…` addresses Docker and switchyard hand out.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Group address (multicast or broadcast): the I/G bit is set.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// A valid unicast source, as the kernel's `is_valid_ether_addr()`: not a group
    /// address and not all zeros.
    #[inline]
    pub fn is_valid_source(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// The address Docker derives for a container: `02:42` followed by the IPv4
    /// address, locally administered and unicast.
    pub fn from_ipv4(ip: std::net::Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// The address packed into the low 48 bits of a `u64`, for compact table keys.
    #[inline]
    pub fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    #[inline]
    pub fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAC address {input:?}: {reason} (expected six hex octets like 02:42:ac:11:00:02)")]
pub struct ParseMacError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, one or two hex digits an octet.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseMacError {
            input: s.to_string(),
            reason,
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 {
                return Err(err("more than six octets"));
            }
            if part.is_empty() || part.len() > 2 {
                return Err(err("each octet is one or two hex digits"));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err("not a hex digit"))?;
            n += 1;
        }
        if n != 6 {
            return Err(err("fewer than six octets"));
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let m: MacAddr = "02:42:AC:11:0:2".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!("02-42-ac-11-00-02".parse::<MacAddr>().unwrap(), m);
        assert!("02:42:ac:11:00".parse::<MacAddr>().is_err());
        assert!("02:42:ac:11:00:02:03".parse::<MacAddr>().is_err());
        assert!("02:42:ac:11:00:zz".parse::<MacAddr>().is_err());
        assert!("".parse::<MacAddr>().is_err());
    }

    #[test]
    fn group_bits() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x02, 0x42, 0, 0, 0, 1]).is_multicast());
        assert!(!MacAddr::ZERO.is_valid_source());
        assert!(MacAddr([0x02, 0x42, 0, 0, 0, 1]).is_valid_source());
    }

    #[test]
    fn docker_style_and_u64_roundtrip() {
        let m = MacAddr::from_ipv4("172.17.0.2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
    }
}
