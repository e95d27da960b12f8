//! `port` — where frames enter and leave switchyard.
//!
//! A port is anything that can receive a batch of frames, send a frame, and expose
//! file descriptors to poll: a TAP device inside an endpoint's namespace
//! ([`tap::TapPort`]), or a host interface attached through packet sockets
//! ([`packet::PacketPort`]), or an overlay network's VXLAN tunnel ([`vxlan::VxlanQueue`]).
//! The trait is small on purpose (after smoltcp's `Device`), so that other ports — a pcap
//! replay — and *middleware* ports wrapping another one (a capture tap, a fault injector, a
//! trunk's VLAN: [`vlan::VlanPort`]) fit the same dataplane unchanged.
//!
//! A TAP queue's reads and writes can also go through a worker's io_uring
//! ([`uring::Ring`]): a batch of them in one system call instead of one each. The
//! trait says which ports can ([`Port::recv_batch_on`], [`Port::ring_write`]); the
//! others do their own I/O as before.
//!
//! The TAP code ([`tap`]: ioctls, reads and writes on raw fds) and the ring
//! ([`uring`]) are where switchyard's `unsafe` lives, besides the socket calls of the
//! test kit's traffic helpers; each block says why it is sound. Namespaces and
//! netlink go through safe wrappers.

pub mod packet;
pub mod steer;
pub mod tap;
pub mod uring;
pub mod vlan;
pub mod vxlan;

use std::fmt;
use std::io;
use std::ops::BitOr;
use std::os::fd::RawFd;
use switchyard_core::pipeline::Frame;
use switchyard_core::wire::{virtio_net, VirtioNetHdr};
use uring::Ring;

/// What a port can do, shown by `show ports`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// IP MTU of the device (the namespace side uses the same).
    pub mtu: u16,
    /// Frames carry a virtio-net header (offload metadata).
    pub vnet_hdr: bool,
    /// Offloads in use on the device, both ways.
    pub offloads: Offloads,
    /// Queues (one file descriptor each) the device was opened with.
    pub queues: u16,
    /// How the kernel spreads the device's frames over its queues ([`steer`]).
    pub steering: steer::Steering,
}

/// A set of TAP offloads (what `TUNSETOFFLOAD` switches on), in both directions: with
/// [`Offloads::CSUM`] frames may carry partial checksums, with [`Offloads::TSO4`] TCP
/// super-frames, with [`Offloads::USO4`] UDP super-frames. A super-frame headed for a
/// port without the matching offload is segmented in software on the way out.
///
/// The kernel's `TUN_F_*` bits stay inside this crate; everything above speaks of
/// offloads by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offloads(u8);

impl Offloads {
    pub const NONE: Offloads = Offloads(0);
    /// Checksum offload: partial checksums are completed by whoever needs them whole.
    pub const CSUM: Offloads = Offloads(1 << 0);
    /// TCP segmentation offload over IPv4.
    pub const TSO4: Offloads = Offloads(1 << 1);
    /// TCP segmentation offload over IPv6.
    pub const TSO6: Offloads = Offloads(1 << 2);
    /// TSO for segments with ECN (CWR) set.
    pub const TSO_ECN: Offloads = Offloads(1 << 3);
    /// UDP fragmentation offload (old; never asked for, shown if the kernel reports it).
    pub const UFO: Offloads = Offloads(1 << 4);
    /// UDP segmentation offload over IPv4 (Linux 6.2).
    pub const USO4: Offloads = Offloads(1 << 5);
    /// UDP segmentation offload over IPv6 (Linux 6.2).
    pub const USO6: Offloads = Offloads(1 << 6);
    /// What switchyard asks a TAP for: checksum, TCP segmentation over IPv4 and IPv6
    /// (with ECN), and UDP segmentation where the kernel has it.
    pub const ALL: Offloads = Self::CSUM
        .union(Self::TSO4)
        .union(Self::TSO6)
        .union(Self::TSO_ECN)
        .union(Self::USO4)
        .union(Self::USO6);

    /// Each offload with its name, in the order `show ports` prints them.
    const NAMES: [(Offloads, &'static str); 7] = [
        (Self::CSUM, "csum"),
        (Self::TSO4, "tso4"),
        (Self::TSO6, "tso6"),
        (Self::TSO_ECN, "tso-ecn"),
        (Self::UFO, "ufo"),
        (Self::USO4, "uso4"),
        (Self::USO6, "uso6"),
    ];

    /// Both sets together (`|`, usable in constants).
    #[inline]
    pub const fn union(self, other: Offloads) -> Offloads {
        Offloads(self.0 | other.0)
    }

    /// True if every offload of `other` is in `self`.
    #[inline]
    pub fn contains(self, other: Offloads) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any offload of `other` is in `self`.
    #[inline]
    pub fn intersects(self, other: Offloads) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` without the offloads of `other`.
    #[inline]
    pub fn without(self, other: Offloads) -> Offloads {
        Offloads(self.0 & !other.0)
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Does a device with these offloads take a super-frame described by `vnet`
    /// whole? (Otherwise the port cuts it into segments first.)
    pub fn takes_gso(self, vnet: &VirtioNetHdr) -> bool {
        let need = match vnet.gso_type & !virtio_net::GSO_ECN {
            virtio_net::GSO_TCPV4 => Offloads::TSO4,
            virtio_net::GSO_TCPV6 => Offloads::TSO6,
            virtio_net::GSO_UDP_L4 => Offloads::USO4 | Offloads::USO6,
            _ => return false,
        };
        self.intersects(need)
    }

    /// The `TUN_F_*` bits for `TUNSETOFFLOAD`.
    fn tun_flags(self) -> libc::c_uint {
        const BITS: [(Offloads, libc::c_uint); 7] = [
            (Offloads::CSUM, libc::TUN_F_CSUM),
            (Offloads::TSO4, libc::TUN_F_TSO4),
            (Offloads::TSO6, libc::TUN_F_TSO6),
            (Offloads::TSO_ECN, libc::TUN_F_TSO_ECN),
            (Offloads::UFO, libc::TUN_F_UFO),
            (Offloads::USO4, libc::TUN_F_USO4),
            (Offloads::USO6, libc::TUN_F_USO6),
        ];
        BITS.iter()
            .filter(|(o, _)| self.contains(*o))
            .fold(0, |acc, (_, bit)| acc | bit)
    }
}

impl BitOr for Offloads {
    type Output = Offloads;

    #[inline]
    fn bitor(self, rhs: Offloads) -> Offloads {
        self.union(rhs)
    }
}

/// The offloads as words, for people: "csum tso4 tso6 tso-ecn uso4 uso6", or "none".
impl fmt::Display for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        for (o, name) in Self::NAMES {
            if self.contains(o) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offloads({self})")
    }
}

impl serde::Serialize for Offloads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A source and sink of frames: one queue of one device, owned by one worker.
pub trait Port: Send {
    /// Receives up to `frames.len()` frames into the given buffers and returns how many;
    /// `Ok(0)` when none is waiting (the fd would block). Each received frame has its
    /// bounds and `vnet` set; other metadata is left alone.
    fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize>;

    /// Sends one frame (its `vnet` header goes with it when the port uses one). A
    /// super-frame goes whole when the port takes it, else cut into segments: the
    /// result is how many frames went out (1 unless segmented).
    fn send(&mut self, frame: &mut Frame) -> io::Result<usize>;

    /// Receives as [`Port::recv_batch`] does, with the reads handed to the kernel on
    /// `ring`, many per system call, where the port can (a TAP queue); other ports
    /// read as `recv_batch` does.
    fn recv_batch_on(&mut self, frames: &mut [Frame], ring: &mut Ring) -> io::Result<usize> {
        let _ = ring;
        self.recv_batch(frames)
    }

    /// Can `frame` leave this port as one write on a [`Ring`], and where to? `None`:
    /// the port sends it itself ([`Port::send`]) — a port of another kind, a
    /// super-frame the device would have cut into segments. Changes nothing; a
    /// caller that takes the write calls [`Port::ready_ring_write`] next.
    fn ring_write(&self, frame: &Frame) -> Option<RingWrite> {
        let _ = frame;
        None
    }

    /// Readies `frame` for the write [`Port::ring_write`] offered: puts in its
    /// headroom what goes in front of it (a TAP's virtio-net header) and completes
    /// what the device cannot (a partial checksum, for a device without checksum
    /// offload — complete, it suits every other port too). The caller then writes
    /// [`RingWrite::bytes`] of the frame to [`RingWrite::fd`] before it changes the
    /// frame again.
    fn ready_ring_write(&mut self, frame: &mut Frame) {
        let _ = frame;
    }

    /// True if this port's reads and writes can go through a [`Ring`] (what
    /// `show ports` reports as its I/O).
    fn uses_ring(&self) -> bool {
        false
    }

    /// The file descriptor to poll for readability.
    fn fd(&self) -> RawFd;

    fn capabilities(&self) -> Capabilities;

    /// Frames this queue received but refused before the pipeline saw them, and
    /// those the kernel dropped before it could read them; cumulative. A TAP
    /// refuses none; a host interface ([`packet`]) refuses tagged frames.
    fn rx_refused(&mut self) -> RxRefused {
        RxRefused::default()
    }

    /// What the port itself refused before the pipeline saw it, or could not send,
    /// by reason, counted since it was opened (a tunnel port's datagrams from
    /// strangers, ...). Read only when someone asks (`show counters`); a port that
    /// refuses nothing has nothing to say.
    fn drops(&self) -> Vec<PortDrop> {
        Vec::new()
    }
}

/// Where a frame readied by [`Port::ready_ring_write`] is written: `prefix` bytes in
/// front of its data, then the data, in one write to `fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingWrite {
    pub fd: RawFd,
    pub prefix: u8,
}

impl RingWrite {
    /// The bytes of `frame` this write carries.
    pub fn bytes<'f>(&self, frame: &'f Frame) -> &'f [u8] {
        frame.with_prefix(usize::from(self.prefix))
    }
}

/// What a port refused on receive, before the pipeline (see [`Port::rx_refused`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RxRefused {
    /// 802.1Q-tagged frames on a host interface whose network has no VLAN there.
    pub tagged: u64,
    /// Frames longer than a buffer.
    pub truncated: u64,
    /// On an ipvlan-l2 parent: unicast frames to another MAC than the parent's, or
    /// to an address no endpoint has (the parent's own host's, say).
    pub unclaimed: u64,
    /// Frames the kernel dropped for the port's sockets (full buffers, super-frames
    /// it could not describe in a virtio-net header).
    pub kernel_drops: u64,
}

/// A count of frames a port refused, with the reason's stable id and its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PortDrop {
    pub id: &'static str,
    pub text: &'static str,
    pub count: u64,
}
