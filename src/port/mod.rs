//! `port` — where frames enter and leave switchyard.
//!
//! A port is anything that can receive a batch of frames, send a frame, and expose
//! file descriptors to poll: today a TAP device inside an endpoint's namespace
//! ([`tap::TapPort`]). The trait is small on purpose (after smoltcp's `Device`), so
//! that other ports — a VXLAN tunnel, a pcap replay — and *middleware* ports wrapping
//! another one (a capture tap, a fault injector) fit the same dataplane unchanged.
//!
//! This is the only layer with `unsafe` code: the TAP ioctls. Each block says why it
//! is sound.

pub mod tap;

use crate::pipeline::Frame;
use std::io;
use std::os::fd::RawFd;

/// What a port can do, shown by `show ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// IP MTU of the device (the namespace side uses the same).
    pub mtu: u16,
    /// Frames carry a virtio-net header (offload metadata).
    pub vnet_hdr: bool,
    /// Offloads in use on the device (`TUN_F_*` bits passed to `TUNSETOFFLOAD`), both
    /// ways: with `TUN_F_CSUM` frames may carry partial checksums, with `TUN_F_TSO4`
    /// TCP super-frames, with `TUN_F_USO4` UDP super-frames. A super-frame headed for a
    /// port without the matching offload is segmented in software on the way out.
    pub offloads: u32,
    /// Queues (one file descriptor each) the device was opened with.
    pub queues: u16,
}

/// The offloads switchyard asks a TAP for: checksum, TCP segmentation over IPv4 and
/// IPv6 (with ECN), and UDP segmentation where the kernel has it (Linux 6.2).
pub const OFFLOADS_ALL: u32 = libc::TUN_F_CSUM
    | libc::TUN_F_TSO4
    | libc::TUN_F_TSO6
    | libc::TUN_F_TSO_ECN
    | libc::TUN_F_USO4
    | libc::TUN_F_USO6;

impl Capabilities {
    /// The offloads as words, for people: "csum tso4 tso6 ufo uso4 uso6", or "none".
    pub fn offload_names(&self) -> String {
        let names = [
            (libc::TUN_F_CSUM, "csum"),
            (libc::TUN_F_TSO4, "tso4"),
            (libc::TUN_F_TSO6, "tso6"),
            (libc::TUN_F_TSO_ECN, "tso-ecn"),
            (libc::TUN_F_UFO, "ufo"),
            (libc::TUN_F_USO4, "uso4"),
            (libc::TUN_F_USO6, "uso6"),
        ];
        let on: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.offloads & bit != 0)
            .map(|&(_, n)| n)
            .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(" ")
        }
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

    /// The file descriptor to poll for readability.
    fn fd(&self) -> RawFd;

    fn capabilities(&self) -> Capabilities;
}
