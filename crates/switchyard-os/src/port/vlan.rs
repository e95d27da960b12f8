//! A trunk's VLAN as a port: middleware over the trunk's device that puts the VLAN's
//! 802.1Q tag on every frame it sends.
//!
//! A trunk is one device — an endpoint's `eth0`, a TAP — carrying the frames of
//! several networks, each under its own VLAN tag (the endpoint has `eth0.10`,
//! `eth0.20`, ... on top of it). The pipeline sees one port per VLAN, so that every
//! port is in one network; this is that port's I/O. Its `send` tags the frame — the
//! VLAN id, and the priority bits the frame arrived with ([`Frame::vlan_prio`]) —
//! writes it to the device, and takes the tag off again, so that a flooded frame
//! goes on to the next port as it was. Receiving is the other way round: the trunk's
//! *carrier* port reads the device, and the pipeline's vlan-input hands each frame to
//! the port of its tag. So one port of a trunk reads ([`VlanPort::carrier`]) and the
//! others only write ([`VlanPort::rider`]), each through its own handle on the same
//! device queue.
//!
//! A super-frame the device cannot take whole is cut here, before tagging, since the
//! segmentation code reads the network header right after the MAC addresses.

use super::{Capabilities, Port};
use std::io;
use std::os::fd::RawFd;
use switchyard_core::pipeline::{Frame, MAX_FRAME_LEN};
use switchyard_core::wire::{gso, VirtioNetHdr};

/// One VLAN of a trunk (see the module documentation).
pub struct VlanPort {
    inner: Box<dyn Port>,
    vid: u16,
    /// The carrier reads the device for the whole trunk; the others never do.
    reads: bool,
    /// Where segments are cut and tagged when the device takes no super-frames of
    /// a kind: allocated the first time that happens.
    scratch: Vec<u8>,
    segment: Option<Box<Frame>>,
}

impl VlanPort {
    /// VLAN `vid` on `inner`, which this port also reads for the whole trunk.
    pub fn carrier(inner: Box<dyn Port>, vid: u16) -> VlanPort {
        VlanPort::new(inner, vid, true)
    }

    /// VLAN `vid` on `inner`, a handle on a device another port reads.
    pub fn rider(inner: Box<dyn Port>, vid: u16) -> VlanPort {
        VlanPort::new(inner, vid, false)
    }

    fn new(inner: Box<dyn Port>, vid: u16, reads: bool) -> VlanPort {
        VlanPort {
            inner,
            vid: vid & 0x0fff,
            reads,
            scratch: Vec::new(),
            segment: None,
        }
    }

    /// The VLAN id the port tags its frames with.
    pub fn vid(&self) -> u16 {
        self.vid
    }

    /// Sends `frame` to the device in segments, each tagged with `tci`.
    fn send_segmented(&mut self, frame: &Frame, tci: u16) -> io::Result<usize> {
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; MAX_FRAME_LEN];
        }
        let mut seg = self.segment.take().unwrap_or_default();
        let mut scratch = std::mem::take(&mut self.scratch);
        let (inner, mut err) = (&mut self.inner, None);
        let result = gso::segment(frame.data(), &frame.vnet, &mut scratch, |bytes| {
            if err.is_some() {
                return;
            }
            // Each segment is complete (checksums done): a plain header.
            seg.load(bytes);
            seg.vnet = VirtioNetHdr::default();
            if !seg.push_vlan_tag(tci) {
                err = Some(no_headroom());
                return;
            }
            if let Err(e) = inner.send(&mut seg) {
                err = Some(e);
            }
        });
        self.scratch = scratch;
        self.segment = Some(seg);
        let n = result.map_err(io::Error::other)?;
        match err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

fn no_headroom() -> io::Error {
    io::Error::other("no headroom in front of the frame for its VLAN tag")
}

impl Port for VlanPort {
    fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize> {
        if self.reads {
            self.inner.recv_batch(frames)
        } else {
            Ok(0)
        }
    }

    fn send(&mut self, frame: &mut Frame) -> io::Result<usize> {
        let tci = frame.vlan_prio | self.vid;
        let caps = self.inner.capabilities();
        if frame.vnet.is_gso() && !caps.offloads.takes_gso(&frame.vnet) {
            return self.send_segmented(frame, tci);
        }
        if !frame.push_vlan_tag(tci) {
            return Err(no_headroom());
        }
        let sent = self.inner.send(frame);
        frame.pop_vlan_tag();
        sent
    }

    fn fd(&self) -> RawFd {
        self.inner.fd()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A device that keeps what is written to it.
    struct Wire(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Port for Wire {
        fn recv_batch(&mut self, frames: &mut [Frame]) -> io::Result<usize> {
            frames[0].load(&[0u8; 60]);
            Ok(1)
        }
        fn send(&mut self, frame: &mut Frame) -> io::Result<usize> {
            self.0.lock().unwrap().push(frame.data().to_vec());
            Ok(1)
        }
        fn fd(&self) -> RawFd {
            -1
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
    }

    #[test]
    fn sends_tagged_with_the_frames_priority_and_gives_it_back_untagged() {
        let wire = Arc::new(Mutex::new(Vec::new()));
        let mut port = VlanPort::rider(Box::new(Wire(wire.clone())), 20);
        let plain: Vec<u8> = (0..60).collect();
        let mut f = Frame::from_bytes(switchyard_core::pipeline::PortId(0), &plain);
        f.vlan_prio = 0xa000;
        assert_eq!(port.send(&mut f).unwrap(), 1);
        let sent = wire.lock().unwrap()[0].clone();
        assert_eq!(&sent[..12], &plain[..12]);
        assert_eq!(&sent[12..16], &[0x81, 0x00, 0xa0, 20]);
        assert_eq!(&sent[16..], &plain[12..]);
        assert_eq!(f.data(), &plain[..], "ready for the next port of a flood");
        // Only the carrier reads the device.
        let mut frames = [Frame::new()];
        assert_eq!(port.recv_batch(&mut frames).unwrap(), 0);
        let mut carrier = VlanPort::carrier(Box::new(Wire(wire)), 10);
        assert_eq!(carrier.recv_batch(&mut frames).unwrap(), 1);
    }
}
