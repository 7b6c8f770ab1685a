//! The process's allocator: mimalloc, counting the bytes it hands out.
//!
//! `INFO memory`'s `allocator_allocated` (and `used_memory`, as in Redis, whose `zmalloc` keeps
//! the same count) is this number: every block's usable size as mimalloc reports it, added on
//! allocation and subtracted on free. It is what the process really holds, whatever holds it
//! (keys, Raft logs, snapshot builds, connection buffers, openraft's own state), which the
//! per-structure estimates (`Entry::mem_usage`, the log store's count) cannot promise. The
//! binary installs [`CountingMimalloc`] as its global allocator; a program that does not (the
//! test harness) reads `None` from [`allocated`].
//!
//! The cost is one relaxed atomic add per allocation and per free on a shared counter, the same
//! trade Redis makes.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// mimalloc, counting usable bytes (see the module documentation).
pub struct CountingMimalloc;

/// Bytes currently allocated through [`CountingMimalloc`], if it is the global allocator.
pub fn allocated() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| ALLOCATED.load(Ordering::Relaxed))
}

fn usable(ptr: *mut u8) -> usize {
    // SAFETY: `ptr` is a live block mimalloc returned (callers check for null).
    unsafe { MiMalloc.usable_size(ptr) }
}

fn added(ptr: *mut u8) -> *mut u8 {
    if !ptr.is_null() {
        ALLOCATED.fetch_add(usable(ptr), Ordering::Relaxed);
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }
    ptr
}

// SAFETY: every call is forwarded to mimalloc unchanged; the counting only reads block sizes.
unsafe impl GlobalAlloc for CountingMimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        added(MiMalloc.alloc(layout))
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        added(MiMalloc.alloc_zeroed(layout))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(usable(ptr), Ordering::Relaxed);
        MiMalloc.dealloc(ptr, layout);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = usable(ptr);
        let new = MiMalloc.realloc(ptr, layout, new_size);
        if !new.is_null() {
            ALLOCATED.fetch_sub(old, Ordering::Relaxed);
            added(new);
        }
        new
    }
}
