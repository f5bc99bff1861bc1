//! A pool for block-sized buffers (`len == align`, 4 KiB to 64 KiB).
//!
//! glibc serves a 4 KiB allocation aligned to 4 KiB from a chunk of about twice that and the
//! leftover pieces rarely fit another aligned block, so a store's block buffers cost twice
//! their size in RSS (measured: 72,000 of them, 564 MB for 281 MB). Here they are carved out
//! of 2 MiB chunks (transparent huge pages where the kernel gives them) and recycled through
//! one free list per size; chunks are kept for the life of the process, like the
//! allocator's own arenas. Under loom the pool is off (a global free
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
            // The chunk is never freed: its pieces circulate through `FREE` for the life of
            // the process. Every piece is `len`-aligned (the chunk is 2 MiB-aligned).
            let base = chunk()?.as_ptr() as usize;
            free.extend((0..CHUNK_BYTES / len).map(|i| base + i * len));
        }
        let addr = free.pop()?;
        NonNull::new(addr as *mut u8)
    }

    /// A fresh chunk, 2 MiB-aligned and advised as a transparent huge page: a block buffer
    /// is then reached through one TLB entry per 512 blocks, and the chunk's memory comes in
    /// with one page fault instead of 512 (design.md §4.1). Falls back to the heap (64
    /// KiB-aligned, 4 KiB pages) if the mapping is refused.
    fn chunk() -> Option<NonNull<u8>> {
        if let Some(p) = huge_chunk() {
            return Some(p);
        }
        let layout = Layout::from_size_align(CHUNK_BYTES, CLASSES[4]).ok()?;
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
    }

    /// `CHUNK_BYTES` of anonymous memory at a `CHUNK_BYTES`-aligned address, `MADV_HUGEPAGE`.
    fn huge_chunk() -> Option<NonNull<u8>> {
        let len = 2 * CHUNK_BYTES;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = (start + CHUNK_BYTES - 1) & !(CHUNK_BYTES - 1);
        let (head, tail) = (aligned - start, start + len - (aligned + CHUNK_BYTES));
        // SAFETY: the head and tail are parts of the mapping just made, outside the chunk
        // kept; nothing refers to them. Advice on the chunk changes no contents. Failures
        // only leave unused address space mapped or the advice unapplied.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + CHUNK_BYTES) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, CHUNK_BYTES, libc::MADV_HUGEPAGE);
        }
        NonNull::new(aligned as *mut u8)
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

#[cfg(all(test, not(loom)))]
mod tests {
    /// Whether the mapping holding `addr` may use transparent huge pages (`/proc/self/smaps`).
    fn thp_eligible(addr: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((lo, hi)) = range {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("THPeligible:") {
                    return Some(v.trim() == "1");
                }
            }
        }
        None
    }

    #[test]
    fn block_buffers_come_from_huge_page_chunks() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if !thp.is_ok_and(|s| !s.contains("[never]")) {
            return; // No transparent huge pages on this machine: nothing to check.
        }
        let ptr = super::take(4096, 4096).expect("4 KiB is a pooled class");
        let addr = ptr.as_ptr() as usize;
        assert_eq!(thp_eligible(addr), Some(true), "the chunk of {addr:#x} is not THP-advised");
        assert!(super::give(ptr, 4096, 4096), "4 KiB is a pooled class");
    }
}
