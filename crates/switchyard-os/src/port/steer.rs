//! Which queue of a TAP a frame sent into it lands on — and so which worker switches it.
//!
//! A multi-queue TAP has one file descriptor per queue, and each worker reads its own
//! queue of every TAP. When the endpoint sends a frame, the kernel picks the queue. By
//! default it hashes the flow (and remembers which queue a flow was last written
//! from), so a flow sticks to one worker — but that worker runs on whichever CPU the
//! scheduler gave it, and when that is not the CPU the sender runs on, every frame
//! costs a wake-up across CPUs: an inter-processor interrupt, and on a virtual machine
//! an exit to the hypervisor (~30–40 µs on a 2-vCPU guest, measured by pinning).
//!
//! The kernel bridge never pays that: a veth hands the frame on on the CPU that sent
//! it. switchyard does the same with two steps:
//! * each worker is pinned to "its" CPUs ([`worker_cpus`]: CPU `c` belongs to worker
//!   `c % workers`), and
//! * each TAP gets a steering program (`TUNSETSTEERINGEBPF`), a two-instruction
//!   socket-filter eBPF program that returns the number of the CPU it runs on; the
//!   kernel runs it on the sender's CPU and takes the queue `result % queues`.
//!
//! So a frame sent from CPU 1 is read by worker 1, which runs on CPU 1: the sender's
//! wake-up of the worker stays on one CPU, and so do the caches the frame warmed.
//!
//! Loading an eBPF program needs `CAP_BPF` (or `CAP_SYS_ADMIN`) and a kernel built
//! with `CONFIG_BPF_SYSCALL`; a seccomp filter may forbid `bpf(2)`. Where it fails,
//! [`cpu_program`] says why once and TAPs keep the kernel's flow hash
//! ([`Steering::Hash`]), which is what `show ports` then reports.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// How a device's frames are spread over its queues (and so over the workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Steering {
    /// The kernel's choice: a hash of the flow (TAP), a hash fanout (host interface),
    /// the UDP source port (tunnel).
    #[default]
    Hash,
    /// The queue of the CPU that sent the frame, read by the worker pinned to it.
    Cpu,
}

impl Steering {
    pub fn name(self) -> &'static str {
        match self {
            Steering::Hash => "hash",
            Steering::Cpu => "cpu",
        }
    }
}

/// `TUNSETSTEERINGEBPF`: `_IOR('T', 224, int)`, not in the libc crate.
const TUNSETSTEERINGEBPF: libc::c_ulong =
    (2 << 30) | (4 << 16) | ((b'T' as libc::c_ulong) << 8) | 224;

/// `bpf(2)` command and program type (uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// The helper `bpf_get_smp_processor_id()`.
const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
/// Opcodes: `BPF_JMP | BPF_CALL`, `BPF_JMP | BPF_EXIT`.
const OP_CALL: u8 = 0x05 | 0x80;
const OP_EXIT: u8 = 0x05 | 0x90;

/// One eBPF instruction (`struct bpf_insn`): opcode, destination and source
/// registers in one byte, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The leading fields of `union bpf_attr` that `BPF_PROG_LOAD` reads; the kernel
/// takes the rest as zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The steering program: `r0 = bpf_get_smp_processor_id(); return r0;`.
const PROGRAM: [Insn; 2] = [
    Insn {
        code: OP_CALL,
        regs: 0,
        off: 0,
        imm: BPF_FUNC_GET_SMP_PROCESSOR_ID,
    },
    Insn {
        code: OP_EXIT,
        regs: 0,
        off: 0,
        imm: 0,
    },
];

/// Loads the steering program into the kernel; the fd keeps it alive.
pub fn load_cpu_program() -> io::Result<OwnedFd> {
    // The helper is not GPL-only; the license string is the program's metadata.
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"sy_cpu_txq");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: PROGRAM.len() as u32,
        insns: PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `size` bytes of `attr`, a live struct of that
    // size, and through it the instruction array and the license string, both
    // 'static. It returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The process's steering program, loaded on first use; `None` (with the reason
/// logged once) where the kernel refuses it.
pub fn cpu_program() -> Option<BorrowedFd<'static>> {
    static PROGRAM_FD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PROGRAM_FD
        .get_or_init(|| match load_cpu_program() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(
                    "cannot load the TAP steering program ({e}): frames are spread over \
                     the workers by the kernel's flow hash instead of by sending CPU"
                );
                None
            }
        })
        .as_ref()
        .map(AsFd::as_fd)
}

/// Attaches `program` to the TAP of `queue` (any of its queue fds: the program is the
/// device's); the kernel holds its own reference from then on.
pub fn attach(queue: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let prog: libc::c_int = program.as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads one int (a BPF program fd) through the
    // pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(queue.as_raw_fd(), TUNSETSTEERINGEBPF, &prog) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs worker `worker` of `workers` is pinned to: those of `allowed` (the
/// process's CPUs) whose number modulo `workers` is `worker` — the CPUs whose frames
/// the steering program sends to that worker's queue. Empty when there is none (more
/// workers than CPUs): that worker is left unpinned.
pub fn worker_cpus(worker: usize, workers: usize, allowed: &[usize]) -> Vec<usize> {
    allowed
        .iter()
        .copied()
        .filter(|c| workers > 0 && c % workers == worker)
        .collect()
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pins the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(io::Error::from)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_is_the_kernels() {
        // From uapi/linux/if_tun.h on x86_64: _IOR('T', 224, int).
        assert_eq!(TUNSETSTEERINGEBPF, 0x8004_54e0);
    }

    #[test]
    fn every_cpu_belongs_to_exactly_one_worker() {
        let allowed = [0, 1, 2, 3, 5];
        assert_eq!(worker_cpus(0, 2, &allowed), vec![0, 2]);
        assert_eq!(worker_cpus(1, 2, &allowed), vec![1, 3, 5]);
        assert_eq!(worker_cpus(0, 1, &allowed), allowed.to_vec());
        // More workers than CPUs: the last ones run unpinned.
        assert!(worker_cpus(7, 8, &[0, 1]).is_empty());
    }
}
