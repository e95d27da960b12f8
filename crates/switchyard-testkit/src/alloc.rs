//! An allocator that counts, for tests that prove a code path allocates nothing.
//!
//! A test binary installs it as its global allocator and counts over the stretch it
//! cares about:
//!
//! ```
//! use switchyard_testkit::alloc::CountingAlloc;
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc::new();
//!
//! fn main() {
//!     let mut sum = 0u64;
//!     let n = ALLOC.count(|| sum = (1..=10u64).sum());
//!     assert_eq!((sum, n), (55, 0));
//!     assert_eq!(ALLOC.count(|| drop(vec![0u8; 16])), 1);
//! }
//! ```
//!
//! Allocations and reallocations made by any thread while counting are counted, so a
//! test using it should do nothing else meanwhile.
//!
//! It also keeps the number of bytes live on the heap at all times
//! ([`CountingAlloc::live_bytes`]), for tests that measure what a table costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, counting allocations while switched on.
pub struct CountingAlloc {
    counting: AtomicBool,
    allocs: AtomicUsize,
    live: AtomicUsize,
}

impl CountingAlloc {
    pub const fn new() -> CountingAlloc {
        CountingAlloc {
            counting: AtomicBool::new(false),
            allocs: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    /// Runs `f` and returns how many allocations (and reallocations) happened meanwhile.
    pub fn count(&self, f: impl FnOnce()) -> usize {
        self.allocs.store(0, Ordering::SeqCst);
        self.counting.store(true, Ordering::SeqCst);
        f();
        self.counting.store(false, Ordering::SeqCst);
        self.allocs.load(Ordering::SeqCst)
    }

    /// Runs `f` and returns the bytes it left allocated (what it allocated minus what
    /// it freed, by any thread meanwhile): the memory of a value it builds and returns.
    pub fn net_bytes<T>(&self, f: impl FnOnce() -> T) -> (T, isize) {
        let base = self.live.load(Ordering::SeqCst);
        let v = f();
        let after = self.live.load(Ordering::SeqCst);
        (v, after.wrapping_sub(base) as isize)
    }

    /// Bytes allocated and not yet freed, by every thread, since the start.
    pub fn live_bytes(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    #[inline]
    fn note(&self) {
        if self.counting.load(Ordering::Relaxed) {
            self.allocs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        CountingAlloc::new()
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// GlobalAlloc's contract; counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        self.live.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from System.alloc/realloc with this layout (every
        // allocation goes through this allocator).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        self.live.fetch_add(new_size, Ordering::Relaxed);
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for dealloc; the caller guarantees new_size is valid for layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
