//! Host interfaces as ports: an existing device (`eth1`, one end of a veth) attached
//! to a network through `AF_PACKET` sockets, so that endpoints sit on that device's
//! LAN with MACs of their own, as macvlan's bridge mode puts them — or, with an
//! ipvlan-l2 translation ([`PacketPort::translate`]), all behind the parent's MAC.
//!
//! switchyard only attaches and detaches such a *parent*: it never creates, deletes
//! or reconfigures it. The one thing it changes is promiscuity, so that frames to the
//! endpoints' MACs are received at all, and it does so with a `PACKET_MR_PROMISC`
//! membership on its own socket: the kernel counts it in the device's promiscuity
//! and drops it with the socket, so the device is back as it was the moment the
//! sockets close — even after a crash.
//!
//! What shapes the code:
//! * A packet socket binds to an interface of the namespace current *for the thread*
//!   that creates it; [`PacketPort::open`] must run on a thread that entered the
//!   parent's namespace (`crate::netns::run_in`). The fds work from any thread later.
//! * `PACKET_VNET_HDR` puts the same virtio-net header before every frame as a TAP
//!   with `IFF_VNET_HDR` does: a frame the kernel holds with a partial checksum
//!   comes with `NEEDS_CSUM` (the switch completes it where an egress port needs it
//!   whole), and a super-frame a veth or GRO hands over comes whole with its GSO
//!   type, to be passed on or cut by the same code as a TAP's (`wire::gso`). A
//!   super-frame the kernel cannot describe in that header it drops itself and
//!   counts in the socket's statistics (`kernel_drops` of [`Port::rx_refused`]). Sending, the
//!   header lets switchyard hand the kernel super-frames with partial checksums,
//!   which it segments and checksums for the device (in hardware or in software).
//! * Every frame sent out of the device is also seen by packet sockets bound to it,
//!   its own included. `PACKET_IGNORE_OUTGOING` (and for a fanout group
//!   `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`) asks the kernel not to, and the receive
//!   path checks `sll_pkttype` as well, so a switched frame never loops back in.
//!   Frames the parent's own stack sends are outgoing too: as with macvlan, the
//!   endpoints and the parent's host do not talk to each other over the parent.
//! * The kernel takes 802.1Q tags off before packet sockets see a frame and reports
//!   them in `PACKET_AUXDATA`. A network has no VLAN on its parent, so a tagged frame
//!   is not for it: it is dropped and counted (`tagged` of [`Port::rx_refused`]), never
//!   switched untagged into the network.
//! * With several workers each opens a socket of its own in one fanout group, so every
//!   worker has its queue of the port: `PACKET_FANOUT_CPU` with steering by CPU (a
//!   frame goes to the socket of the CPU it arrived on, `cpu % sockets`, read by the
//!   worker pinned to that CPU: see [`super::steer`]), else `PACKET_FANOUT_HASH` (flows
//!   spread by flow hash, as over a multi-queue TAP's queues).
//!
//! Receiving uses `recvmmsg` (up to a batch per call) and sending one `sendmsg` per
//! frame; `docs/host-interfaces.md` says why rather than a `TPACKET_V3` ring.

use super::steer::Steering;
use super::{Capabilities, Offloads, Port, RxRefused};
use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use switchyard_core::pipeline::ipvlan::{Inbound, IpvlanL2};
use switchyard_core::pipeline::{Frame, HEADROOM};
use switchyard_core::wire::VirtioNetHdr;

/// Most frames read by one `recvmmsg`.
const MAX_BATCH: usize = 64;
/// Socket buffers asked for (`SO_RCVBUFFORCE`): a worker that waits a scheduler
/// slice at a few hundred thousand frames a second must find them still queued.
const SOCKET_BUFFER: libc::c_int = 8 << 20;
/// `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` (Linux 4.20), which the libc crate lacks:
/// the group's hook, which replaces each member's own, skips outgoing frames.
const FANOUT_FLAG_IGNORE_OUTGOING: libc::c_uint = 0x4000;

/// A failure to attach a host interface.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("interface name {0:?} is invalid (1 to 15 bytes, no '/', no whitespace)")]
    BadName(String),
    #[error("there is no interface {0:?} in that namespace")]
    NoSuchInterface(String),
    #[error("{0} is a loopback interface: it has no LAN to attach")]
    Loopback(String),
    #[error("{0} is not an Ethernet interface (hardware type {1}): only Ethernet devices can be parents")]
    NotEthernet(String, u16),
    #[error("{op} on {name}: {source}")]
    Socket {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// A host interface opened as a port: one packet socket per worker.
pub struct PacketPort {
    ifname: String,
    sockets: Vec<OwnedFd>,
    caps: Capabilities,
    mac: [u8; 6],
    ipvlan: Option<Arc<IpvlanL2>>,
}

impl PacketPort {
    /// Opens `queues` packet sockets bound to `ifname` in the calling thread's
    /// namespace (one fanout group when more than one), with the virtio-net header,
    /// aux data and outgoing frames ignored, and the device promiscuous for as long
    /// as the first socket lives. Refuses a missing, loopback or non-Ethernet device
    /// before changing anything.
    pub fn open(ifname: &str, queues: usize) -> Result<PacketPort, PacketError> {
        PacketPort::open_steered(ifname, queues, Steering::Hash)
    }

    /// [`PacketPort::open`], with the fanout group spreading frames as `steering` says.
    pub fn open_steered(
        ifname: &str,
        queues: usize,
        steering: Steering,
    ) -> Result<PacketPort, PacketError> {
        if ifname.is_empty()
            || ifname.len() >= libc::IFNAMSIZ
            || ifname.contains('/')
            || ifname.chars().any(char::is_whitespace)
        {
            return Err(PacketError::BadName(ifname.to_string()));
        }
        let err = |op: &'static str| {
            let name = ifname.to_string();
            move |source| PacketError::Socket { op, name, source }
        };
        let first = packet_socket().map_err(err("socket(AF_PACKET)"))?;
        let dev = Device::query(&first, ifname)?;
        let queues = queues.max(1);
        let mut sockets = Vec::with_capacity(queues);
        let mut group = None;
        for q in 0..queues {
            let fd = match q {
                0 => first.try_clone().map_err(err("dup"))?,
                _ => packet_socket().map_err(err("socket(AF_PACKET)"))?,
            };
            setopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)
                .map_err(err("PACKET_VNET_HDR"))?;
            setopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
                .map_err(err("PACKET_AUXDATA"))?;
            // Linux 4.20; before it the receive path's `sll_pkttype` check alone
            // keeps outgoing frames out (at the cost of reading them).
            let _ = setopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
            // Best effort: the defaults work, only worse under bursts.
            let _ = setopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER);
            let _ = setopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER);
            bind(&fd, dev.index).map_err(err("bind"))?;
            if queues > 1 {
                group = Some(join_fanout(&fd, group, steering).map_err(err("PACKET_FANOUT"))?);
            }
            if q == 0 {
                promiscuous(&fd, dev.index).map_err(err("PACKET_MR_PROMISC"))?;
            }
            sockets.push(fd);
        }
        Ok(PacketPort {
            ifname: ifname.to_string(),
            sockets,
            caps: Capabilities {
                mtu: dev.mtu,
                vnet_hdr: true,
                // What the kernel takes from a packet socket with the header: it
                // finishes checksums and segments for the device as needed.
                offloads: Offloads::CSUM | Offloads::TSO4 | Offloads::TSO6 | Offloads::TSO_ECN,
                queues: queues as u16,
                steering: if queues > 1 { steering } else { Steering::Hash },
            },
            mac: dev.mac,
            ipvlan: None,
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The parent's own MAC address (as it was when attached).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// ipvlan's L2 mode: the network shows the LAN the parent's MAC only, and
    /// frames to it are handed to the endpoint they are for (see
    /// [`switchyard_core::pipeline::ipvlan`]).
    pub fn translate(&mut self, l2: IpvlanL2) {
        self.ipvlan = Some(Arc::new(l2));
    }

    /// One handle per socket, each a [`Port`] for the worker that owns it.
    pub fn into_queues(self) -> Vec<PacketQueue> {
        let caps = self.caps;
        let ipvlan = self.ipvlan;
        self.sockets
            .into_iter()
            .map(|fd| PacketQueue {
                fd,
                caps,
                refused: RxRefused::default(),
                ipvlan: ipvlan.clone(),
            })
            .collect()
    }
}

/// What the device is, read through a socket in its namespace.
struct Device {
    index: libc::c_int,
    mtu: u16,
    mac: [u8; 6],
}

/// `struct ifreq` with the union as raw bytes.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl Device {
    fn query(fd: &OwnedFd, ifname: &str) -> Result<Device, PacketError> {
        let cname = CString::new(ifname).map_err(|_| PacketError::BadName(ifname.into()))?;
        let ioctl = |req: libc::c_ulong, op: &'static str| -> Result<IfReq, PacketError> {
            let mut r = IfReq {
                name: [0; libc::IFNAMSIZ],
                data: [0; 24],
            };
            for (d, &s) in r.name.iter_mut().zip(cname.as_bytes()) {
                *d = s as libc::c_char;
            }
            // SAFETY: the SIOCGIF* requests read the name from and write at most the
            // 24-byte union of a `struct ifreq`, which `r` is (40 bytes, same layout).
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut r) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENODEV) {
                    return Err(PacketError::NoSuchInterface(ifname.into()));
                }
                return Err(PacketError::Socket {
                    op,
                    name: ifname.into(),
                    source: e,
                });
            }
            Ok(r)
        };
        let index = ioctl(libc::SIOCGIFINDEX, "SIOCGIFINDEX")?;
        let index = libc::c_int::from_ne_bytes(index.data[..4].try_into().expect("4 bytes"));
        let flags = ioctl(libc::SIOCGIFFLAGS, "SIOCGIFFLAGS")?;
        let flags = libc::c_short::from_ne_bytes(flags.data[..2].try_into().expect("2 bytes"));
        if i32::from(flags) & libc::IFF_LOOPBACK != 0 {
            return Err(PacketError::Loopback(ifname.into()));
        }
        // A sockaddr: the family (the ARPHRD_ type) and then the address.
        let hw = ioctl(libc::SIOCGIFHWADDR, "SIOCGIFHWADDR")?;
        let family = u16::from_ne_bytes([hw.data[0], hw.data[1]]);
        if family != libc::ARPHRD_ETHER {
            return Err(PacketError::NotEthernet(ifname.into(), family));
        }
        let mac: [u8; 6] = hw.data[2..8].try_into().expect("6 bytes");
        let mtu = ioctl(libc::SIOCGIFMTU, "SIOCGIFMTU")?;
        let mtu = libc::c_int::from_ne_bytes(mtu.data[..4].try_into().expect("4 bytes"));
        Ok(Device {
            index,
            mtu: mtu.clamp(68, 65535) as u16,
            mac,
        })
    }
}

/// A packet socket that receives nothing until bound with a protocol.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setopt_raw<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<T>()` bytes from `v`, a live reference.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn setopt(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    setopt_raw(fd, level, opt, &v)
}

fn bind(fd: &OwnedFd, ifindex: libc::c_int) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: the kernel reads a sockaddr_ll of the size given from a live local.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Joins the fanout group `group`, or makes a new one with an id the kernel picks
/// (unique in the namespace) when `None`; returns the group's id.
fn join_fanout(fd: &OwnedFd, group: Option<u16>, steering: Steering) -> io::Result<u16> {
    let mode = match steering {
        Steering::Hash => libc::PACKET_FANOUT_HASH,
        Steering::Cpu => libc::PACKET_FANOUT_CPU,
    };
    let arg = |kind: libc::c_uint| -> libc::c_uint {
        match group {
            Some(id) => u32::from(id) | (kind << 16),
            None => (kind | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        }
    };
    let with = mode | FANOUT_FLAG_IGNORE_OUTGOING;
    if let Err(e) = setopt_raw(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg(with)) {
        // A kernel before 4.20 does not know the flag: the group without it (the
        // receive path drops outgoing frames by `sll_pkttype` then).
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
        setopt_raw(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg(mode))?;
    }
    if let Some(id) = group {
        return Ok(id);
    }
    let mut v: libc::c_uint = 0;
    let mut len = size_of::<libc::c_uint>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, a live local.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&mut v as *mut libc::c_uint).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((v & 0xffff) as u16)
}

fn promiscuous(fd: &OwnedFd, ifindex: libc::c_int) -> io::Result<()> {
    // SAFETY: all-zero is a valid packet_mreq.
    let mut mr: libc::packet_mreq = unsafe { zeroed() };
    mr.mr_ifindex = ifindex;
    mr.mr_type = libc::PACKET_MR_PROMISC as u16;
    setopt_raw(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)
}

/// One socket of a parent port: what one worker reads from and writes to.
pub struct PacketQueue {
    fd: OwnedFd,
    caps: Capabilities,
    /// What this socket refused so far; `kernel_drops` sums `PACKET_STATISTICS`,
    /// which the kernel resets on each read.
    refused: RxRefused,
    /// The port's ipvlan-l2 translation, if its network has one.
    ipvlan: Option<Arc<IpvlanL2>>,
}

impl PacketQueue {
    /// Frames the kernel dropped before this socket read them: its buffer was full,
    /// or a super-frame could not be described in a virtio-net header.
    fn kernel_drops(&mut self) -> u64 {
        // SAFETY: all-zero is a valid tpacket_stats.
        let mut st: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `st`, a live local.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.refused.kernel_drops += u64::from(st.tp_drops);
        }
        self.refused.kernel_drops
    }
}

/// Room for one `PACKET_AUXDATA` control message, aligned as cmsghdr wants.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct AuxBuf([u8; 64]);

impl Port for PacketQueue {
    fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize> {
        let want = frames.len().min(MAX_BATCH);
        let at = HEADROOM - VirtioNetHdr::LEN;
        // The kernel's header is 10 bytes (no `num_buffers`): read it 2 bytes into
        // the 12 a TAP's takes, so the frame starts at HEADROOM as for a TAP.
        let hdr = at + 2;
        // SAFETY: all-zero is valid for these plain C structs and arrays.
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        let mut names: [libc::sockaddr_ll; MAX_BATCH] = unsafe { zeroed() };
        let mut aux = [AuxBuf([0; 64]); MAX_BATCH];
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for (k, f) in frames[..want].iter_mut().enumerate() {
            let buf = &mut f.buffer_mut()[hdr..];
            iov[k].iov_base = buf.as_mut_ptr().cast();
            iov[k].iov_len = buf.len();
            let m = &mut msgs[k].msg_hdr;
            m.msg_iov = &mut iov[k];
            m.msg_iovlen = 1;
            m.msg_name = (&mut names[k] as *mut libc::sockaddr_ll).cast();
            m.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            m.msg_control = aux[k].0.as_mut_ptr().cast();
            m.msg_controllen = aux[k].0.len();
        }
        let got = loop {
            // SAFETY: every mmsghdr points at live buffers of the lengths given (the
            // frames' buffers, names, control buffers), which outlive the call.
            let rc = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    want as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        };
        // Keep the frames to switch at the front, in order.
        let mut kept = 0;
        for k in 0..got {
            let m = &msgs[k];
            let len = m.msg_len as usize;
            if names[k].sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len < 10 {
                self.refused.truncated += 1;
                continue;
            }
            if aux_tagged(&m.msg_hdr) {
                self.refused.tagged += 1;
                continue;
            }
            let f = &mut frames[k];
            let b = f.buffer_mut();
            // Widen the 10-byte header to a TAP's 12 (num_buffers 0) and parse it.
            b.copy_within(hdr..hdr + 10, at);
            b[at + 10..at + 12].fill(0);
            f.vnet = VirtioNetHdr::parse(&b[at..]).unwrap_or_default();
            f.set_bounds(HEADROOM, len - 10);
            if let Some(l2) = &self.ipvlan {
                if l2.inbound(f.data_mut()) == Inbound::NotOurs {
                    self.refused.unclaimed += 1;
                    continue;
                }
            }
            if kept != k {
                frames.swap(kept, k);
            }
            kept += 1;
        }
        Ok(kept)
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<usize> {
        // ipvlan-l2: out in the parent's name, and back as it was for the other
        // ports a flood still goes to.
        let undo = self.ipvlan.as_ref().map(|l2| l2.outbound(frame.data_mut()));
        let sent = self.write(frame);
        if let Some(undo) = undo {
            IpvlanL2::restore(frame.data_mut(), undo);
        }
        sent
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn rx_refused(&mut self) -> RxRefused {
        self.kernel_drops();
        self.refused
    }
}

impl PacketQueue {
    /// Writes the frame behind the kernel's 10-byte virtio-net header.
    fn write(&mut self, frame: &mut Frame) -> io::Result<usize> {
        let vnet = frame.vnet;
        let bytes = frame.with_prefix_mut(VirtioNetHdr::LEN);
        vnet.write(&mut bytes[..VirtioNetHdr::LEN]);
        // The kernel's header is the first 10 bytes of the 12.
        let (hdr, data) = bytes.split_at(VirtioNetHdr::LEN);
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: 10,
            },
            libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            },
        ];
        loop {
            // SAFETY: the iovecs point into live slices of the lengths given;
            // writev(2) only reads them. The socket is bound: no address needed.
            let rc = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if rc >= 0 {
                return Ok(1);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// True if the `PACKET_AUXDATA` message says the kernel took an 802.1Q tag off.
fn aux_tagged(m: &libc::msghdr) -> bool {
    // SAFETY: `m` is a msghdr the kernel filled in; the CMSG macros walk its control
    // buffer within `msg_controllen`, which the kernel set to what it wrote.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0;
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    false
}
