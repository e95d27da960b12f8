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

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, counting allocations while switched on.
pub struct CountingAlloc {
    counting: AtomicBool,
    allocs: AtomicUsize,
    /// Bytes allocated and not freed since counting started (wrapping: a free of
    /// memory allocated before subtracts).
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
    /// it freed): the memory of a value it builds and returns.
    pub fn net_bytes<T>(&self, f: impl FnOnce() -> T) -> (T, isize) {
        self.live.store(0, Ordering::SeqCst);
        self.counting.store(true, Ordering::SeqCst);
        let v = f();
        self.counting.store(false, Ordering::SeqCst);
        (v, self.live.load(Ordering::SeqCst) as isize)
    }

    #[inline]
    fn note(&self) {
        if self.counting.load(Ordering::Relaxed) {
            self.allocs.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    fn grow(&self, add: usize, sub: usize) {
        if self.counting.load(Ordering::Relaxed) {
            self.live.fetch_add(add, Ordering::Relaxed);
            self.live.fetch_sub(sub, Ordering::Relaxed);
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
        self.grow(layout.size(), 0);
        // SAFETY: the caller's layout is passed on as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.grow(0, layout.size());
        // SAFETY: `ptr` came from System.alloc/realloc with this layout (every
        // allocation goes through this allocator).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        self.grow(new_size, layout.size());
        // SAFETY: as for dealloc; the caller guarantees new_size is valid for layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
