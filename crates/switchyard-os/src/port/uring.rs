//! `uring` — many reads and writes for the price of one system call, with io_uring.
//!
//! Read and written one frame per `read(2)`/`writev(2)`, a TAP costs a system call per
//! frame, and one more per batch for the read that finds the queue empty. A [`Ring`]
//! takes a whole batch of those operations — the writes of every frame a batch sends,
//! to whichever ports, or a run of reads from one queue — and hands them to the kernel
//! in one `io_uring_enter(2)`, which also waits for them all.
//!
//! Four facts about TAP files under io_uring (checked by this crate's tests on a real
//! TAP) make that a drop-in replacement for the system calls:
//! * The operations complete inline, during the one `io_uring_enter`: a TAP write
//!   never waits (the frame goes to the namespace's stack or is dropped there), and a
//!   read with nothing to read completes at once with `EAGAIN`. No kernel worker
//!   thread takes part. That takes `RWF_NOWAIT` on every operation: a TAP file says
//!   it can be tried without waiting (`FMODE_NOWAIT`), and for such a file io_uring
//!   ignores `O_NONBLOCK` and parks a read of an empty queue until a frame comes
//!   (seen on Linux 6.18) — which would hold the worker in `io_uring_enter`.
//! * Inline operations run in the order they were queued, so the writes to one port
//!   leave in the order the pipeline decided them (a TCP stream's segments stay in
//!   order), and the reads of one queue take its frames in the queue's order.
//! * A failed operation fails alone: with `IORING_SETUP_SUBMIT_ALL` one refused entry
//!   does not stop the kernel from taking those after it, and each reports its own
//!   result. A write refused with `EAGAIN` is reported as such, never retried later
//!   (that could reorder a stream); the caller counts it as a transmit error, as it
//!   did a failed `writev`.
//! * The ring is the calling thread's: one per worker, never shared.
//!
//! Memory safety rests on one rule, kept inside [`Ring::submit`]: the kernel is given
//! pointers into the caller's buffers only for the duration of that call, which does
//! not return before every operation it queued has completed. The buffers are
//! borrowed for as long (`&mut` for reads, `&` for writes), so nothing else touches
//! them meanwhile, and no code of the caller runs between queueing and completion
//! (the iterator of operations is run to its end before anything is queued).
//!
//! Nothing here allocates after [`Ring::new`]: the operations and their results live
//! in vectors sized once, at the ring's capacity.

use io_uring::{opcode, types, IoUring};
use std::io;
use std::os::fd::RawFd;

/// One operation for [`Ring::submit`]: a read from a file into a buffer, or a write of
/// a buffer to a file. Each is one `read(2)` or `write(2)`, done by the kernel.
pub enum Op<'a> {
    Read(RawFd, &'a mut [u8]),
    Write(RawFd, &'a [u8]),
}

/// An operation as queued: where, how long, which way.
#[derive(Clone, Copy)]
struct Queued {
    fd: RawFd,
    ptr: *mut u8,
    len: u32,
    write: bool,
}

/// A worker's io_uring (see the module documentation).
pub struct Ring {
    ring: IoUring,
    /// Operations taken from the caller's iterator, before they are queued.
    queued: Vec<Queued>,
    /// Each operation's result, by its place in the submission: bytes moved, or a
    /// negated `errno`.
    results: Vec<i32>,
}

// SAFETY: `Queued` holds raw pointers only while `Ring::submit` runs, on the thread
// that called it; between calls the vector is empty. The ring itself is `Send`.
unsafe impl Send for Ring {}

impl Ring {
    /// Operations one worker submits at a time by default: a batch of reads, or the
    /// writes of a batch of frames flooded to a few ports each.
    pub const DEFAULT_CAPACITY: u32 = 256;

    /// A ring for up to `capacity` operations per [`Ring::submit`]. Fails where io_uring
    /// is not to be had: a kernel without it (before 5.1, or before 5.18 for
    /// `IORING_SETUP_SUBMIT_ALL`, which this code relies on), io_uring switched off
    /// (`/proc/sys/kernel/io_uring_disabled`), or a seccomp filter refusing it (some
    /// container runtimes' default profiles).
    pub fn new(capacity: u32) -> io::Result<Ring> {
        let capacity = capacity.clamp(1, 4096);
        // Twice as many completion slots as submission slots (the kernel's default):
        // every completion is reaped before the next submission, so they never overflow.
        let ring = IoUring::builder().setup_submit_all().build(capacity)?;
        let capacity = ring.params().sq_entries() as usize;
        Ok(Ring {
            ring,
            queued: Vec::with_capacity(capacity),
            results: Vec::with_capacity(capacity),
        })
    }

    /// Most operations one [`Ring::submit`] takes.
    pub fn capacity(&self) -> usize {
        self.queued.capacity()
    }

    /// Runs up to [`Ring::capacity`] operations from `ops` (those past it are left in
    /// the iterator, unused) in one `io_uring_enter`, in order, and waits for them
    /// all. Returns each one's result, in the same order: bytes read or written, or
    /// the error it met (`WouldBlock` for a read that found nothing).
    pub fn submit<'a, I>(&mut self, ops: I) -> Completions<'_>
    where
        I: IntoIterator<Item = Op<'a>>,
    {
        self.queued.clear();
        self.results.clear();
        let cap = self.queued.capacity();
        // The caller's code (the iterator) runs to its end here, before the kernel
        // is told of any buffer.
        for op in ops.into_iter().take(cap) {
            let q = match op {
                Op::Read(fd, buf) => Queued {
                    fd,
                    ptr: buf.as_mut_ptr(),
                    len: len32(buf.len()),
                    write: false,
                },
                Op::Write(fd, buf) => Queued {
                    fd,
                    ptr: buf.as_ptr().cast_mut(),
                    len: len32(buf.len()),
                    write: true,
                },
            };
            self.queued.push(q);
        }
        let n = self.queued.len();
        self.results.resize(n, 0);
        if n == 0 {
            return Completions(&self.results);
        }
        {
            let mut sq = self.ring.submission();
            for (i, q) in self.queued.iter().enumerate() {
                // Offset 0: a TAP is not seekable (the kernel ignores the position).
                let entry = if q.write {
                    opcode::Write::new(types::Fd(q.fd), q.ptr.cast_const(), q.len)
                        .rw_flags(libc::RWF_NOWAIT)
                        .build()
                } else {
                    opcode::Read::new(types::Fd(q.fd), q.ptr, q.len)
                        .rw_flags(libc::RWF_NOWAIT)
                        .build()
                };
                let entry = entry.user_data(i as u64);
                // SAFETY: the entry points into a buffer borrowed by this call for
                // `q.len` bytes (shared for a write, exclusive for a read); the call
                // waits below for the entry's completion before it returns, so the
                // kernel never uses the pointer after the borrow ends. The queue has
                // room: `n` is at most its capacity, and it is empty (every entry of
                // the previous call was taken and completed).
                let pushed = unsafe { sq.push(&entry) };
                debug_assert!(
                    pushed.is_ok(),
                    "the submission queue holds a whole submission"
                );
            }
        }
        self.complete(n);
        self.queued.clear();
        Completions(&self.results)
    }

    /// Submits what is queued and waits until all `n` operations have completed,
    /// filling `results`.
    fn complete(&mut self, n: usize) {
        let mut done = 0;
        while done < n {
            // Submits whatever the kernel has not taken yet, then waits for the
            // completions still missing (they are there already when inline).
            match self.ring.submit_and_wait(n - done) {
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => {
                    // The kernel may still hold pointers into buffers this call must
                    // give back: returning, or unwinding, would let them be reused
                    // under it. Only a broken ring gets here (the arguments are this
                    // code's own), and the process cannot go on safely.
                    tracing::error!("io_uring_enter failed with operations in flight: {e}");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                if let Some(r) = self.results.get_mut(cqe.user_data() as usize) {
                    *r = cqe.result();
                    done += 1;
                }
            }
        }
    }
}

/// Errors of `io_uring_enter` that mean "again": a signal came, or the kernel was
/// short of memory for a moment.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// A buffer length as an operation takes it (frames are far below 4 GiB).
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The results of one [`Ring::submit`], in the order of its operations.
pub struct Completions<'r>(&'r [i32]);

impl Completions<'_> {
    /// How many operations ran.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The result of operation `i`: bytes moved, or its error.
    pub fn get(&self, i: usize) -> Option<io::Result<usize>> {
        self.0.get(i).map(|&r| outcome(r))
    }

    pub fn iter(&self) -> impl Iterator<Item = io::Result<usize>> + '_ {
        self.0.iter().map(|&r| outcome(r))
    }
}

/// A completion's result as `read(2)` would have given it.
fn outcome(r: i32) -> io::Result<usize> {
    if r >= 0 {
        Ok(r as usize)
    } else {
        Err(io::Error::from_raw_os_error(-r))
    }
}

/// How a worker reads and writes its TAP queues (`[switch] io`): a batch per
/// `io_uring_enter` on its [`Ring`], or one `read(2)`/`writev(2)` per frame. Ports
/// of other kinds use their own system calls either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    Uring,
    /// The default: `uring` makes fewer system calls and forwards more small frames
    /// per second, but added a few µs of round-trip latency where measured
    /// (docs/fast-path.md).
    #[default]
    Syscalls,
}

impl IoMode {
    /// The name a config file and `show ports` use.
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Uring => "uring",
            IoMode::Syscalls => "syscalls",
        }
    }

    /// The mode of that name.
    pub fn from_name(name: &str) -> Option<IoMode> {
        [IoMode::Uring, IoMode::Syscalls]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
