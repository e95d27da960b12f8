//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0               1               2               3
//! +-------+-------+---------------+-------------------------------+
//! |version|  IHL  |   DSCP/ECN    |          total length         |
//! +-------+-------+---------------+-----+-------------------------+
//! |        identification         |flags|     fragment offset     |
//! +---------------+---------------+-----+-------------------------+
//! |      TTL      |   protocol    |        header checksum        |
//! +---------------+---------------+-------------------------------+
//! |                        source address                         |
//! |                      destination address                      |
//! |                  options (IHL > 5) ...                        |
//! ```
//! The header checksum covers the header only. The fields a router changes on every
//! packet it forwards — the TTL, and the addresses under NAT — have setters that patch
//! the checksum incrementally (RFC 1624) instead of summing the header again. The
//! fields written when a header is built or cut into fragments (lengths,
//! identification, fragment fields) have plain setters; [`Ipv4Packet::fill_checksum`]
//! follows them.
//!
//! Fragmentation (RFC 791 section 3.2) repeats the header in every fragment, but not
//! all of its options: an option whose *copied* flag (the top bit of its type) is clear
//! goes only into the first fragment. [`Ipv4Packet::copy_for_fragment`] makes the
//! header the later fragments carry.

use super::checksum;
use super::{check_len, get_ipv4, get_u16, set_ipv4, set_u16, WireError};
use std::fmt;
use std::net::Ipv4Addr;

/// Bytes of the longest IPv4 header: IHL 15, forty of them options.
pub const MAX_HEADER_LEN: usize = 60;

/// The IP protocol number (the next header).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("icmp"),
            IpProtocol::TCP => f.write_str("tcp"),
            IpProtocol::UDP => f.write_str("udp"),
            IpProtocol(p) => write!(f, "proto {p}"),
        }
    }
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// A view over an IPv4 packet (the Ethernet payload). The slice may be longer than
/// the packet (Ethernet pads short frames to 60 bytes); `total_len` says where the
/// packet ends.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps `buf` after checking what must hold before any field is trusted:
    /// version 4, IHL ≥ 5 and within the slice, total length ≥ the header and within
    /// the slice. The checksum is *not* checked here (see [`Self::checksum_ok`]).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        let hdr = etherparse::Ipv4HeaderSlice::from_slice(b).map_err(|e| match e {
            etherparse::err::ipv4::HeaderSliceError::Len(l) => WireError::Truncated {
                needed: l.required_len,
                have: l.len,
            },
            etherparse::err::ipv4::HeaderSliceError::Content(c) => match c {
                etherparse::err::ipv4::HeaderError::UnexpectedVersion { .. } => {
                    WireError::Malformed("IP version is not 4")
                }
                etherparse::err::ipv4::HeaderError::HeaderLengthSmallerThanHeader { .. } => {
                    WireError::Malformed("IPv4 header length (IHL) below 5")
                }
            },
        })?;
        let total = usize::from(hdr.total_len());
        if total < hdr.slice().len() {
            return Err(WireError::Malformed(
                "IPv4 total length shorter than its header",
            ));
        }
        check_len(b, total)?;
        Ok(Ipv4Packet { buf })
    }

    /// Wraps `buf` without any check, for a packet already validated by
    /// [`Self::new_checked`] — one whose offsets the pipeline carries with the frame —
    /// or for a header-only view such as an ICMP error's quote. An accessor that
    /// reaches past the slice panics; nothing is ever read out of bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }

    /// The bytes the view was made over.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// The version field (4 for every packet [`Self::new_checked`] accepts).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buf.as_ref()[field::VER_IHL] >> 4
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP and ECN bits (the old type-of-service byte).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buf.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), field::TOTAL_LEN))
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::IDENT)
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.buf.as_ref()[field::FLAGS_FRAG] & 0x40 != 0
    }

    /// The More Fragments flag.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.buf.as_ref()[field::FLAGS_FRAG] & 0x20 != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & 0x1fff) * 8
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn header_checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        get_ipv4(self.buf.as_ref(), field::SRC)
    }

    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        get_ipv4(self.buf.as_ref(), field::DST)
    }

    /// True if the header checksum is correct.
    #[inline]
    pub fn checksum_ok(&self) -> bool {
        checksum::verify(&self.buf.as_ref()[..self.header_len()])
    }

    /// True if the packet is a fragment other than the first: what follows the header
    /// is the middle of a datagram, not a transport header.
    #[inline]
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset() != 0
    }

    /// The bytes after the header up to the total length, or to the end of the view
    /// if that comes first (a header-only view has none).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let hl = self.header_len();
        &b[hl..self.total_len().clamp(hl, b.len())]
    }

    /// Writes into `out` the header every fragment after the first carries: this
    /// header with only the options whose copied flag is set (RFC 791 3.2), padded
    /// with End-of-Options to a multiple of 4 bytes. Returns its length; the total
    /// length, fragment fields and checksum are left for the caller to set.
    pub fn copy_for_fragment(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        const END_OF_OPTIONS: u8 = 0;
        const NO_OPERATION: u8 = 1;
        const COPIED: u8 = 0x80;
        let b = self.buf.as_ref();
        let fixed = Self::MIN_HEADER_LEN;
        out[..fixed].copy_from_slice(&b[..fixed]);
        let mut n = fixed;
        let opts = &b[fixed..self.header_len()];
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                END_OF_OPTIONS => break,
                NO_OPERATION => i += 1,
                t => {
                    // Type, length (of the whole option), data.
                    let len = usize::from(*opts.get(i + 1).unwrap_or(&0));
                    if len < 2 || i + len > opts.len() {
                        break;
                    }
                    if t & COPIED != 0 {
                        out[n..n + len].copy_from_slice(&opts[i..i + len]);
                        n += len;
                    }
                    i += len;
                }
            }
        }
        while n % 4 != 0 {
            out[n] = END_OF_OPTIONS;
            n += 1;
        }
        Ipv4Packet::new_unchecked(&mut out[..]).set_header_len(n);
        n
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL, patching the header checksum incrementally. The TTL shares a
    /// 16-bit word with the protocol field, which is what the checksum sees.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buf.as_mut();
        let old = get_u16(b, field::TTL);
        b[field::TTL] = ttl;
        let new = get_u16(b, field::TTL);
        let c = checksum::update_u16(get_u16(b, field::CHECKSUM), old, new);
        set_u16(b, field::CHECKSUM, c);
    }

    /// Sets the source address, patching the header checksum incrementally.
    #[inline]
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.set_addr(field::SRC, addr)
    }

    /// Sets the destination address, patching the header checksum incrementally.
    #[inline]
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.set_addr(field::DST, addr)
    }

    fn set_addr(&mut self, at: usize, addr: Ipv4Addr) {
        let b = self.buf.as_mut();
        let old = u32::from(get_ipv4(b, at));
        set_ipv4(b, at, addr);
        let c = checksum::update_u32(get_u16(b, field::CHECKSUM), old, u32::from(addr));
        set_u16(b, field::CHECKSUM, c);
    }

    /// Sets the header length in bytes (a multiple of 4); the checksum is left as is.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buf.as_mut();
        b[field::VER_IHL] = (b[field::VER_IHL] & 0xf0) | (len / 4) as u8;
    }

    /// Sets the total length; the checksum is left as is.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buf.as_mut(), field::TOTAL_LEN, len);
    }

    /// Sets the identification; the checksum is left as is.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        set_u16(self.buf.as_mut(), field::IDENT, ident);
    }

    /// Sets the flags and fragment offset word: `offset` in bytes from the start of
    /// the datagram (a multiple of 8), More Fragments and Don't Fragment. The checksum
    /// is left as is.
    #[inline]
    pub fn set_fragment(&mut self, offset: usize, more_fragments: bool, dont_fragment: bool) {
        let mut word = (offset / 8) as u16;
        if more_fragments {
            word |= 0x2000;
        }
        if dont_fragment {
            word |= 0x4000;
        }
        set_u16(self.buf.as_mut(), field::FLAGS_FRAG, word);
    }

    /// Recomputes the header checksum from scratch (for headers switchyard builds).
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        set_u16(b, field::CHECKSUM, 0);
        let c = checksum::checksum(&b[..hl]);
        set_u16(b, field::CHECKSUM, c);
    }

    /// The bytes after the header up to the total length, or to the end of the view
    /// if that comes first.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), self.total_len());
        let b = self.buf.as_mut();
        let end = total.clamp(hl, b.len());
        &mut b[hl..end]
    }
}

/// What [`write_header`] needs to build a 20-byte IPv4 header.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    /// Bytes after the header.
    pub payload_len: usize,
}

/// Writes a 20-byte header without options into `buf[..20]`, checksum filled in.
pub fn write_header(buf: &mut [u8], r: &Ipv4Repr) {
    buf[field::VER_IHL] = 0x45;
    buf[1] = 0;
    set_u16(buf, field::TOTAL_LEN, (20 + r.payload_len) as u16);
    set_u16(buf, field::IDENT, r.ident);
    set_u16(
        buf,
        field::FLAGS_FRAG,
        if r.dont_fragment { 0x4000 } else { 0 },
    );
    buf[field::TTL] = r.ttl;
    buf[field::PROTOCOL] = r.protocol.0;
    set_u16(buf, field::CHECKSUM, 0);
    set_ipv4(buf, field::SRC, r.src);
    set_ipv4(buf, field::DST, r.dst);
    let c = checksum::checksum(&buf[..20]);
    set_u16(buf, field::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 28];
        write_header(
            &mut b,
            &Ipv4Repr {
                src: Ipv4Addr::new(172, 17, 0, 2),
                dst: Ipv4Addr::new(172, 17, 0, 3),
                protocol: IpProtocol::UDP,
                ttl: 64,
                ident: 7,
                dont_fragment: true,
                payload_len: 8,
            },
        );
        b
    }

    #[test]
    fn parse_and_agree_with_etherparse() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.checksum_ok());
        assert!(p.dont_fragment());
        assert_eq!(p.total_len(), 28);
        let theirs = etherparse::Ipv4HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(theirs.header_checksum(), p.header_checksum());
        assert_eq!(
            theirs.to_header().calc_header_checksum(),
            p.header_checksum()
        );
    }

    #[test]
    fn ttl_and_address_rewrites_keep_checksum_valid() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_ttl(63);
        assert!(p.checksum_ok());
        p.set_src(Ipv4Addr::new(198, 51, 100, 1));
        p.set_dst(Ipv4Addr::new(198, 51, 100, 77));
        assert!(p.checksum_ok());
        assert_eq!(p.ttl(), 63);
    }

    #[test]
    fn fragment_fields_round_trip() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_fragment(1480, true, false);
        p.set_total_len(24);
        p.set_ident(99);
        p.fill_checksum();
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.more_fragments() && !p.dont_fragment() && p.is_later_fragment());
        assert_eq!((p.total_len(), p.ident(), p.version()), (24, 99, 4));
        assert!(p.checksum_ok());
        assert_eq!(p.payload().len(), 4);
        let theirs = etherparse::Ipv4HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(u16::from(theirs.fragments_offset()) * 8, 1480);
        assert!(theirs.more_fragments());
    }

    #[test]
    fn only_copied_options_repeat_in_later_fragments() {
        // Options: NOP, Record Route (type 7, not copied, length 7), a copied option
        // type 0x83 (loose source route) of length 7, End-of-Options padding.
        let mut h = [0u8; 40];
        h[0] = 0x4a; // IHL 10
        h[2..4].copy_from_slice(&40u16.to_be_bytes());
        let opts = [
            1, 7, 7, 4, 0, 0, 0, 0, 0x83, 7, 4, 10, 0, 0, 1, 0, 0, 0, 0, 0,
        ];
        h[20..40].copy_from_slice(&opts);
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = Ipv4Packet::new_checked(&h[..])
            .unwrap()
            .copy_for_fragment(&mut out);
        assert_eq!(n, 28);
        assert_eq!(Ipv4Packet::new_unchecked(&out[..]).header_len(), 28);
        assert_eq!(&out[20..27], &[0x83, 7, 4, 10, 0, 0, 1]);
        assert_eq!(out[27], 0);
    }

    #[test]
    fn bad_lengths_are_refused() {
        let b = sample();
        assert!(
            Ipv4Packet::new_checked(&b[..27]).is_err(),
            "total length beyond slice"
        );
        let mut v = b.clone();
        v[0] = 0x44; // IHL 4
        assert!(Ipv4Packet::new_checked(&v[..]).is_err());
        let mut v = b.clone();
        v[0] = 0x65; // version 6
        assert!(Ipv4Packet::new_checked(&v[..]).is_err());
        let mut v = b;
        v[2..4].copy_from_slice(&10u16.to_be_bytes()); // total < header
        assert!(Ipv4Packet::new_checked(&v[..]).is_err());
    }
}

/// An IPv4 prefix such as `10.1.0.0/24`: an address and how many leading bits of it
/// name the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// Fails if `prefix_len` is over 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        (prefix_len <= 32).then_some(Ipv4Cidr { addr, prefix_len })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask as a number (`/24` → `0xffffff00`).
    pub fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The first address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The last address (host bits one), the subnet's directed broadcast.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// True if `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// True if the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The prefix with host bits cleared.
    pub fn trunc(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: self.network(),
            prefix_len: self.prefix_len,
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;

    /// Parses `a.b.c.d/n`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a prefix like 10.1.0.0/24 (no '/')"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let len: u8 = n
            .parse()
            .ok()
            .filter(|&l| l <= 32)
            .ok_or_else(|| format!("{n:?} is not a prefix length from 0 to 32"))?;
        Ok(Ipv4Cidr {
            addr,
            prefix_len: len,
        })
    }
}

#[cfg(test)]
mod cidr_tests {
    use super::*;

    #[test]
    fn parse_contains_overlap() {
        let a: Ipv4Cidr = "10.1.0.0/24".parse().unwrap();
        assert_eq!(a.broadcast(), Ipv4Addr::new(10, 1, 0, 255));
        assert!(a.contains(Ipv4Addr::new(10, 1, 0, 77)));
        assert!(!a.contains(Ipv4Addr::new(10, 1, 1, 1)));
        let b: Ipv4Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        let c: Ipv4Cidr = "10.2.0.0/24".parse().unwrap();
        assert!(!a.overlaps(&c));
        let d: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(d.mask(), 0);
        assert!(d.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!("10.1.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.1.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.1.0/24".parse::<Ipv4Cidr>().is_err());
    }
}
