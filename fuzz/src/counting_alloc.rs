//! An allocation counter for the forwarding targets, so they can bound the forwarder's
//! memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// A global allocator that counts the bytes live on the current thread's tracked allocations
/// and their peak, so the forwarding target can bound the forwarder's memory. Allocations made
/// inside [`untracked`] (the driver's own logs) are not counted.
pub struct CountingAlloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static UNTRACKED: Cell<bool> = const { Cell::new(false) };
}

fn tracked() -> bool {
    UNTRACKED.try_with(|u| !u.get()).unwrap_or(false)
}

fn add(delta: isize) {
    let live = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && tracked() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && tracked() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if tracked() {
            add(-(layout.size() as isize));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && tracked() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` with the allocation counter off on this thread.
pub fn untracked<T>(f: impl FnOnce() -> T) -> T {
    UNTRACKED.with(|u| u.set(true));
    let out = f();
    UNTRACKED.with(|u| u.set(false));
    out
}

/// Starts a measurement: the peak is reset to the bytes live now, which are returned.
pub fn memory_baseline() -> isize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The highest count of live bytes since [`memory_baseline`].
pub fn memory_peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}
