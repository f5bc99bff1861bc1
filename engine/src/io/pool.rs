//! A pool for block-sized buffers (`len == align`, 4 KiB to 64 KiB).
//!
//! glibc serves a 4 KiB allocation aligned to 4 KiB from a chunk of about twice that and the
//! leftover pieces rarely fit another aligned block, so a store's block buffers cost twice
//! their size in RSS (measured: 72,000 of them, 564 MB for 281 MB). Here they are carved out
//! of 2 MiB chunks and recycled through one free list per size; chunks are kept for the life
//! of the process, like the allocator's own arenas. Under loom the pool is off (a global free
//! list is not part of any model).

use std::ptr::NonNull;

#[cfg(not(loom))]
mod imp {
    use std::alloc::{self, Layout};
    use std::ptr::NonNull;

    use crate::sync::{lock, Mutex};

    const CLASSES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
    const CHUNK_BYTES: usize = 2 << 20;

    /// Free buffers of each class, as addresses (raw pointers are not `Send`).
    static FREE: [Mutex<Vec<usize>>; 5] = [const { Mutex::new(Vec::new()) }; 5];

    fn class(len: usize, align: usize) -> Option<usize> {
        if len != align {
            return None;
        }
        CLASSES.iter().position(|&c| c == len)
    }

    /// A buffer of `len` bytes aligned to `align` (contents unspecified), if pooled.
    pub fn take(len: usize, align: usize) -> Option<NonNull<u8>> {
        let c = class(len, align)?;
        let mut free = lock(&FREE[c]);
        if free.is_empty() {
            let layout = Layout::from_size_align(CHUNK_BYTES, CLASSES[4]).ok()?;
            // SAFETY: the layout has a non-zero size.
            let chunk = unsafe { alloc::alloc(layout) };
            let chunk = NonNull::new(chunk)?;
            // The chunk is never freed: its pieces circulate through `FREE` for the life of
            // the process. Every piece is `len`-aligned (the chunk is 64 KiB-aligned).
            let base = chunk.as_ptr() as usize;
            free.extend((0..CHUNK_BYTES / len).map(|i| base + i * len));
        }
        let addr = free.pop()?;
        NonNull::new(addr as *mut u8)
    }

    /// Returns a buffer from `take`; false if `len`/`align` is not a pooled class.
    pub fn give(ptr: NonNull<u8>, len: usize, align: usize) -> bool {
        let Some(c) = class(len, align) else { return false };
        lock(&FREE[c]).push(ptr.as_ptr() as usize);
        true
    }
}

#[cfg(loom)]
mod imp {
    use std::ptr::NonNull;

    pub fn take(_len: usize, _align: usize) -> Option<NonNull<u8>> {
        None
    }

    pub fn give(_ptr: NonNull<u8>, _len: usize, _align: usize) -> bool {
        false
    }
}

/// A pooled buffer for `len` bytes aligned to `align`, contents unspecified.
pub(crate) fn take(len: usize, align: usize) -> Option<NonNull<u8>> {
    imp::take(len, align)
}

/// Gives back a buffer `take` returned for the same `len` and `align`.
pub(crate) fn give(ptr: NonNull<u8>, len: usize, align: usize) -> bool {
    imp::give(ptr, len, align)
}
