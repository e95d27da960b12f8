//! TAP devices: the endpoint's `eth0` on one side, a file descriptor in switchyard on
//! the other. What the namespace sends on `eth0` switchyard reads from the fd; what
//! switchyard writes to the fd arrives on `eth0` as if from a wire.
//!
//! Three facts shape this code:
//! * A TAP is created in the network namespace that is current *for the thread* that
//!   opens `/dev/net/tun` and issues `TUNSETIFF`; [`TapPort::create`] must therefore
//!   run on a thread that has `setns`'d into the endpoint's namespace (see
//!   `crate::netns::run_in`). The fd keeps working from any thread afterwards.
//! * The device is opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`:
//!   Ethernet frames, no packet-info prefix, a 12-byte virtio-net header before every
//!   frame (`TUNSETVNETHDRSZ`) so that offloads can be switched on without changing
//!   the frame format, and one fd per queue. Each further queue is another open of
//!   `/dev/net/tun` with the same name, from inside the same namespace. With several
//!   queues the kernel spreads flows over them, so every queue must be read — an ARP
//!   reply can arrive on any.
//! * The device is not persistent: when the last fd closes the kernel deletes it.
//!
//! A queue is read and written either with one system call per frame (`read(2)`,
//! `writev(2)`) or, given a worker's [`Ring`], a batch of frames per system call
//! (see [`super::uring`]); the frames are the same either way, virtio-net header in
//! front.

use super::steer::{self, Steering};
use super::uring::{Op, Ring};
use super::{Capabilities, Offloads, Port, RingWrite};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use switchyard_core::pipeline::{Frame, HEADROOM, MAX_FRAME_LEN};
use switchyard_core::wire::{checksum, gso, virtio_net, VirtioNetHdr};

/// A failure to create or configure a TAP device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("open /dev/net/tun: {0} (is the tun module loaded, and are we root?)")]
    OpenTun(#[source] io::Error),
    #[error("TAP device name {0:?} is invalid (1 to 15 bytes, no '/', no whitespace)")]
    BadName(String),
    #[error("TUNSETIFF {name} (queue {queue}): {source}")]
    SetIff {
        name: String,
        queue: usize,
        #[source]
        source: io::Error,
    },
    #[error("the kernel's TAP driver lacks {0}")]
    MissingFeature(&'static str),
    #[error("{op} on TAP {name}: {source}")]
    Ioctl {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// `struct ifreq` as TUNSETIFF reads it: a name and, in the union, the flags.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TAP device and its queue fds.
pub struct TapPort {
    ifname: String,
    queues: Vec<OwnedFd>,
    caps: Capabilities,
}

impl TapPort {
    /// Creates TAP device `ifname` with `queues` queues in the calling thread's
    /// network namespace, with the virtio-net header on and the given offloads
    /// (as many as the kernel has), fds non-blocking. The device starts down with a random MAC; the
    /// caller configures it (address, MTU, up) over netlink in the same namespace.
    /// The device must be new: a name already taken in the namespace is refused
    /// (`TUNSETIFF` with `IFF_TUN_EXCL`: `EBUSY`).
    pub fn create(
        ifname: &str,
        queues: usize,
        offloads: Offloads,
        mtu: u16,
    ) -> Result<TapPort, TapError> {
        if ifname.is_empty()
            || ifname.len() >= libc::IFNAMSIZ
            || ifname.contains('/')
            || ifname.chars().any(char::is_whitespace)
        {
            return Err(TapError::BadName(ifname.to_string()));
        }
        let queues = queues.max(1);
        let mut fds = Vec::with_capacity(queues);
        for q in 0..queues {
            let fd = open_tun()?;
            if q == 0 {
                check_features(&fd)?;
            }
            set_iff(&fd, ifname, q)?;
            set_vnet_hdr_size(&fd, ifname)?;
            fds.push(fd);
        }
        // Offloads are a property of the device: set them once. A kernel without UDP
        // segmentation offload (before 6.2) refuses the USO bits; ask again without.
        let offloads = match set_offload(&fds[0], ifname, offloads) {
            Ok(()) => offloads,
            Err(_) if offloads.intersects(Offloads::USO4 | Offloads::USO6) => {
                let without = offloads.without(Offloads::USO4 | Offloads::USO6);
                set_offload(&fds[0], ifname, without)?;
                without
            }
            Err(e) => return Err(e),
        };
        Ok(TapPort {
            ifname: ifname.to_string(),
            queues: fds,
            caps: Capabilities {
                mtu,
                vnet_hdr: true,
                offloads,
                queues: queues as u16,
                steering: Steering::Hash,
            },
        })
    }

    /// Makes the sending CPU choose the queue a frame lands on ([`super::steer`]), when
    /// the process's steering program could be loaded; returns the steering the
    /// device has now. A device with one queue has nothing to steer.
    pub fn steer_by_cpu(&mut self) -> Result<Steering, TapError> {
        if self.queues.len() < 2 {
            return Ok(self.caps.steering);
        }
        let Some(program) = steer::cpu_program() else {
            return Ok(self.caps.steering);
        };
        steer::attach(self.queues[0].as_fd(), program).map_err(|source| TapError::Ioctl {
            op: "TUNSETSTEERINGEBPF",
            name: self.ifname.clone(),
            source,
        })?;
        self.caps.steering = Steering::Cpu;
        Ok(Steering::Cpu)
    }

    /// The device name inside its namespace.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// One handle per queue, each a [`Port`] for the worker that owns that queue.
    pub fn into_queues(self) -> Vec<TapQueue> {
        let caps = self.caps;
        self.queues
            .into_iter()
            .map(|fd| TapQueue {
                fd,
                caps,
                scratch: Vec::new(),
                rx_ask: RX_ASK_MIN,
            })
            .collect()
    }
}

/// One queue of a TAP device: what one worker reads from and writes to.
pub struct TapQueue {
    fd: OwnedFd,
    caps: Capabilities,
    /// Where segments of a super-frame are built when the device cannot take it
    /// whole; allocated the first time that happens.
    scratch: Vec<u8>,
    /// Reads to put on a ring at the next wake-up (see [`TapQueue::recv_batch_on`]).
    rx_ask: usize,
}

/// Fewest reads a queue puts on a ring at a time: one for the frame that woke the
/// worker, one to learn whether another came behind it.
const RX_ASK_MIN: usize = 2;

impl TapQueue {
    /// A second handle on the same queue (a duplicated fd): for a trunk, whose
    /// VLANs' ports all write to the one device ([`super::vlan::VlanPort`]).
    pub fn try_clone(&self) -> io::Result<TapQueue> {
        Ok(TapQueue {
            fd: self.fd.try_clone()?,
            caps: self.caps,
            scratch: Vec::new(),
            rx_ask: RX_ASK_MIN,
        })
    }

    /// Does the device take a super-frame of this `gso_type` whole?
    fn takes_gso(&self, vnet: &VirtioNetHdr) -> bool {
        self.caps.offloads.takes_gso(vnet)
    }

    /// Makes `frame` ready to be written whole: completes a partial checksum the
    /// device cannot, and puts the virtio-net header in front of it.
    fn ready(&self, frame: &mut Frame) {
        if frame.vnet.needs_csum() && !self.caps.offloads.contains(Offloads::CSUM) {
            // Finish the checksum the sender left to the hardware; this frame may be
            // flooded to other ports too, and a complete checksum suits them all.
            let (start, off) = (
                usize::from(frame.vnet.csum_start),
                usize::from(frame.vnet.csum_offset),
            );
            checksum::complete_partial(frame.data_mut(), start, off);
            frame.vnet.flags &= !virtio_net::F_NEEDS_CSUM;
        }
        let vnet = frame.vnet;
        vnet.write(&mut frame.with_prefix_mut(VirtioNetHdr::LEN)[..VirtioNetHdr::LEN]);
    }

    /// Does `frame` go out in one write (not cut into segments here)?
    fn whole(&self, frame: &Frame) -> bool {
        !frame.vnet.is_gso() || self.takes_gso(&frame.vnet)
    }

    fn write_all(&self, bufs: &[&[u8]]) -> io::Result<()> {
        let iov: [libc::iovec; 2] = std::array::from_fn(|i| libc::iovec {
            iov_base: bufs
                .get(i)
                .map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut libc::c_void),
            iov_len: bufs.get(i).map_or(0, |b| b.len()),
        });
        loop {
            // SAFETY: the iovecs point into live slices of the lengths given (or are
            // empty); writev(2) only reads them.
            let rc = unsafe {
                libc::writev(
                    self.fd.as_raw_fd(),
                    iov.as_ptr(),
                    bufs.len().min(2) as libc::c_int,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

fn open_tun() -> Result<OwnedFd, TapError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(TapError::OpenTun)?;
    Ok(OwnedFd::from(f))
}

fn check_features(fd: &OwnedFd) -> Result<(), TapError> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int through the pointer, which
    // points to a live local of that type.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &mut features) };
    if rc < 0 {
        return Err(TapError::Ioctl {
            op: "TUNGETFEATURES",
            name: String::new(),
            source: io::Error::last_os_error(),
        });
    }
    let has = |bit: libc::c_int| features & (bit as libc::c_uint) != 0;
    if !has(libc::IFF_VNET_HDR) {
        return Err(TapError::MissingFeature("IFF_VNET_HDR"));
    }
    if !has(libc::IFF_MULTI_QUEUE) {
        return Err(TapError::MissingFeature("IFF_MULTI_QUEUE"));
    }
    Ok(())
}

fn set_iff(fd: &OwnedFd, ifname: &str, queue: usize) -> Result<(), TapError> {
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
    if queue == 0 {
        // The first queue makes the device: with IFF_TUN_EXCL the kernel refuses
        // (EBUSY) a name a device already has, so a persistent TAP of someone else
        // is never joined as if it were ours. The further queues join ours.
        flags |= libc::IFF_TUN_EXCL;
    }
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: flags as libc::c_short,
        _pad: [0; 22],
    };
    let cname = CString::new(ifname).map_err(|_| TapError::BadName(ifname.to_string()))?;
    for (dst, &src) in req.name.iter_mut().zip(cname.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads a `struct ifreq` (40 bytes on Linux) and may write the
    // chosen name back into it; `req` is a live, writable struct of that size and
    // layout (name, then the flags at the start of the union).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(TapError::SetIff {
            name: ifname.to_string(),
            queue,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn set_vnet_hdr_size(fd: &OwnedFd, ifname: &str) -> Result<(), TapError> {
    let size: libc::c_int = VirtioNetHdr::LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) };
    if rc < 0 {
        return Err(TapError::Ioctl {
            op: "TUNSETVNETHDRSZ",
            name: ifname.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn set_offload(fd: &OwnedFd, ifname: &str, offloads: Offloads) -> Result<(), TapError> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long of TUN_F_*
    // bits), not through a pointer; no memory is passed.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(offloads.tun_flags()),
        )
    };
    if rc < 0 {
        return Err(TapError::Ioctl {
            op: "TUNSETOFFLOAD",
            name: ifname.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Port for TapQueue {
    fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let at = HEADROOM - VirtioNetHdr::LEN;
        let mut n = 0;
        while n < frames.len() {
            let f = &mut frames[n];
            let buf = &mut f.buffer_mut()[at..];
            // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes; read(2)
            // writes at most that many.
            let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if n > 0 {
                    // Deliver what was read; the error will show again next time.
                    break;
                }
                return Err(e);
            }
            received(f, got as usize);
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<usize> {
        if !self.whole(frame) {
            // The device takes no super-frames of this kind: cut it here, each
            // segment with complete checksums and a plain virtio-net header.
            let mut hdr = [0u8; VirtioNetHdr::LEN];
            VirtioNetHdr::default().write(&mut hdr);
            if self.scratch.is_empty() {
                self.scratch = vec![0u8; MAX_FRAME_LEN];
            }
            let mut err = None;
            let mut scratch = std::mem::take(&mut self.scratch);
            let vnet = frame.vnet;
            let result = gso::segment(frame.data(), &vnet, &mut scratch, |seg| {
                if err.is_none() {
                    err = self.write_all(&[&hdr, seg]).err();
                }
            });
            self.scratch = scratch;
            let n = result.map_err(io::Error::other)?;
            return match err {
                Some(e) => Err(e),
                None => Ok(n),
            };
        }
        self.ready(frame);
        self.write_all(&[frame.with_prefix(VirtioNetHdr::LEN)])?;
        Ok(1)
    }

    /// Reads as [`Port::recv_batch`] does, a run of reads per `io_uring_enter`. How
    /// many reads a run asks for adapts to the traffic: one more than the frames the
    /// queue had last time (a queue that had one frame per wake-up costs one system
    /// call where `read(2)` took two: the frame, then "would block"), doubling while
    /// every read finds a frame. A read that finds none (`EAGAIN`) says the queue is
    /// empty, as `read(2)` would; reads that find frames after it (one came in while
    /// the run went on) are kept, moved up so that the batch has no gap.
    fn recv_batch_on(&mut self, frames: &mut [Frame], ring: &mut Ring) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let at = HEADROOM - VirtioNetHdr::LEN;
        let mut n = 0;
        let mut ask = self.rx_ask;
        let mut failed = None;
        while n < frames.len() {
            let want = ask.min(frames.len() - n).min(ring.capacity());
            let reads = frames[n..n + want]
                .iter_mut()
                .map(|f| Op::Read(fd, &mut f.buffer_mut()[at..]));
            let done = ring.submit(reads);
            let mut empty = false;
            let mut got = n;
            for (i, r) in done.iter().enumerate() {
                match r {
                    Ok(len) => {
                        frames.swap(got, n + i);
                        received(&mut frames[got], len);
                        got += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => empty = true,
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            n = got;
            if empty || failed.is_some() {
                break;
            }
            ask = want * 2;
        }
        self.rx_ask = (n + 1).clamp(RX_ASK_MIN, frames.len().max(RX_ASK_MIN));
        match failed {
            // Deliver what was read; the error will show again next time.
            Some(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    fn ring_write(&self, frame: &Frame) -> Option<RingWrite> {
        self.whole(frame).then(|| RingWrite {
            fd: self.fd.as_raw_fd(),
            prefix: VirtioNetHdr::LEN as u8,
        })
    }

    fn ready_ring_write(&mut self, frame: &mut Frame) {
        self.ready(frame);
    }

    fn uses_ring(&self) -> bool {
        true
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }
}

/// Sets the bounds and offload metadata of a frame of `got` bytes (virtio-net header
/// included) just read into `f` at `HEADROOM - VirtioNetHdr::LEN`.
fn received(f: &mut Frame, got: usize) {
    let at = HEADROOM - VirtioNetHdr::LEN;
    // A read shorter than the virtio-net header cannot happen with a sane kernel; if
    // it does, hand an empty frame on so it is counted as a runt.
    f.vnet = VirtioNetHdr::parse(&f.buffer_mut()[at..at + got]).unwrap_or_default();
    f.set_bounds(HEADROOM, got.saturating_sub(VirtioNetHdr::LEN));
}
