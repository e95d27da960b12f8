//! The virtio-net header a TAP prepends to every frame when opened with `IFF_VNET_HDR`.
//!
//! It is how the kernel and a user-space switch hand offload work to each other:
//! with checksum offload on, a frame may arrive with its TCP/UDP checksum *not yet
//! computed* (`NEEDS_CSUM`: the field holds only the pseudo-header sum; whoever
//! finally puts the frame on a wire completes it from `csum_start`), and with
//! segmentation offload a "frame" may be a 64 KB TCP super-frame (`gso_type` TCPV4,
//! `gso_size` the MSS) that the receiver segments. Forwarding the header unchanged
//! between two TAPs passes that work along instead of doing it.
//!
//! ```text
//!  0      1        2         4          6            8             10           12
//! +------+--------+---------+----------+------------+-------------+------------+
//! |flags |gso_type| hdr_len | gso_size | csum_start | csum_offset | num_buffers|
//! +------+--------+---------+----------+------------+-------------+------------+
//! ```
//! switchyard sets the header size to 12 bytes (`TUNSETVNETHDRSZ`, the modern layout
//! with `num_buffers`). Fields are in native byte order unless `TUNSETVNETLE`/`BE` is
//! used, which switchyard does not: the TAP and the switch run on the same host.

use super::{check_len, WireError};

/// `flags`: the checksum from `csum_start` on must be completed by the receiver.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already verified (receive side).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;

/// A parsed virtio-net header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Bytes on the wire with `TUNSETVNETHDRSZ` 12.
    pub const LEN: usize = 12;

    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_len(b, Self::LEN)?;
        let u = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: u(10),
        })
    }

    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_ne_bytes());
    }

    /// A super-frame that the receiver must segment.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let mut b = [0u8; 12];
        h.write(&mut b);
        assert_eq!(VirtioNetHdr::parse(&b).unwrap(), h);
        assert!(h.is_gso() && h.needs_csum());
        assert!(VirtioNetHdr::parse(&b[..11]).is_err());
    }
}
