//! A pool for block-sized buffers (`len == align`, 4 KiB to 64 KiB).
//!
//! glibc serves a 4 KiB allocation aligned to 4 KiB from a chunk of about twice that and the
//! leftover pieces rarely fit another aligned block, so a store's block buffers cost twice
//! their size in RSS (measured: 72,000 of them, 564 MB for 281 MB). Here they are carved out
//! of 2 MiB chunks and recycled through one free list per size; chunks are kept for the life
//! of the process, like the allocator's own arenas. Each chunk is its own 2 MiB-aligned
//! mapping advised `MADV_HUGEPAGE`: the writer's images (the main user) then fault in 2 MiB
//! at a time and a descent through them misses the TLB far less (design.md §4.1). Once a
//! process has needed a few chunks, a background thread keeps a few more (8 MiB) mapped
//! and faulted in ahead of need, so that a long load does not stop for each 2 MiB fault (on
//! a VM that has given the memory back to its host, one costs milliseconds). Under loom the
//! pool is off (a global free list is not part of any model).

use std::ptr::NonNull;

#[cfg(not(loom))]
mod imp {
    use std::ptr::NonNull;

    use crate::sync::{lock, wait, Condvar, Mutex};

    const CLASSES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
    /// A chunk: one transparent huge page on x86-64 and arm64 (4 KiB base pages).
    const CHUNK_BYTES: usize = 2 << 20;
    /// Chunks the filler keeps mapped and faulted in ahead of need (8 MiB).
    const RESERVE_CHUNKS: usize = 4;
    /// Chunks a process maps on demand before the filler starts: a small store never
    /// starts the thread or holds a reserve.
    const FILL_AFTER_CHUNKS: usize = 4;

    /// Free buffers of each class, as addresses (raw pointers are not `Send`).
    static FREE: [Mutex<Vec<usize>>; 5] = [const { Mutex::new(Vec::new()) }; 5];

    /// Chunks mapped and faulted in ahead of need, by base address; chunks mapped on demand;
    /// and whether the filler was started (once: a failed spawn, or a filler that stopped
    /// for want of mappings, leaves `take` mapping on demand).
    struct Reserve {
        ready: Vec<usize>,
        mapped: usize,
        filler_started: bool,
    }

    static RESERVE: Mutex<Reserve> =
        Mutex::new(Reserve { ready: Vec::new(), mapped: 0, filler_started: false });
    /// Signalled when a chunk leaves the reserve.
    static LOW: Condvar = Condvar::new();

    /// A chunk for `take`: one from the reserve if the filler has one ready, else a fresh
    /// mapping made here. Starts the filler once the process has mapped a few chunks.
    fn next_chunk() -> Option<NonNull<u8>> {
        let mut r = lock(&RESERVE);
        if let Some(base) = r.ready.pop() {
            LOW.notify_one();
            return NonNull::new(base as *mut u8);
        }
        r.mapped += 1;
        if r.mapped >= FILL_AFTER_CHUNKS && !r.filler_started {
            r.filler_started = true;
            // A failed spawn only leaves every chunk to be mapped on demand.
            let _ = std::thread::Builder::new().name("arbor-pool-fill".into()).spawn(fill);
        }
        drop(r);
        chunk()
    }

    /// The filler: maps and faults in chunks while the reserve is short, then sleeps until
    /// `next_chunk` takes one. Never ends (the pool lives as long as the process).
    fn fill() {
        let mut r = lock(&RESERVE);
        loop {
            while r.ready.len() >= RESERVE_CHUNKS {
                r = wait(&LOW, r);
            }
            drop(r);
            // Out of address space or mappings: stop, and leave `take` to fail on its own.
            let Some(c) = chunk() else { return };
            populate(c);
            r = lock(&RESERVE);
            r.ready.push(c.as_ptr() as usize);
        }
    }

    /// Faults a chunk in (a hint: a kernel without `MADV_POPULATE_WRITE`, before 5.14,
    /// refuses, and the chunk faults in on first use as without the reserve).
    fn populate(c: NonNull<u8>) {
        // SAFETY: the range is one chunk this thread just mapped and nobody else knows of;
        // populating only faults in its (zero) pages.
        unsafe {
            libc::madvise(c.as_ptr().cast(), CHUNK_BYTES, libc::MADV_POPULATE_WRITE);
        }
    }

    fn class(len: usize, align: usize) -> Option<usize> {
        if len != align {
            return None;
        }
        CLASSES.iter().position(|&c| c == len)
    }

    /// A fresh chunk: `CHUNK_BYTES` of zeroed memory aligned to `CHUNK_BYTES`, advised huge,
    /// never unmapped. `None` if the kernel refuses the mapping.
    fn chunk() -> Option<NonNull<u8>> {
        // Twice the size, so that an aligned chunk lies inside; the rest is unmapped.
        let span = 2 * CHUNK_BYTES;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let start = ptr as usize;
        let aligned = start.next_multiple_of(CHUNK_BYTES);
        let (head, tail) = (aligned - start, start + span - (aligned + CHUNK_BYTES));
        // SAFETY: the unmapped ranges lie in the mapping made above, outside the chunk kept,
        // and nothing refers to them; the advice changes no contents.
        unsafe {
            if head > 0 {
                libc::munmap(ptr, head);
            }
            if tail > 0 {
                libc::munmap((aligned + CHUNK_BYTES) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, CHUNK_BYTES, libc::MADV_HUGEPAGE);
        }
        NonNull::new(aligned as *mut u8)
    }

    /// A buffer of `len` bytes aligned to `align` (contents unspecified), if pooled.
    pub fn take(len: usize, align: usize) -> Option<NonNull<u8>> {
        let c = class(len, align)?;
        let mut free = lock(&FREE[c]);
        if free.is_empty() {
            // The chunk is never unmapped: its pieces circulate through `FREE` for the life
            // of the process. Every piece is `len`-aligned (the chunk is 2 MiB-aligned).
            let base = next_chunk()?.as_ptr() as usize;
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

    /// Chunks ready in the reserve now.
    #[cfg(test)]
    pub fn reserve_ready() -> Vec<usize> {
        lock(&RESERVE).ready.clone()
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

/// Which of `pages` 4 KiB pages from `ptr` are resident (`mincore`): for tests of memory
/// faulted in ahead (this pool's reserve, the buffer pool's populated frames).
#[cfg(all(test, not(loom)))]
pub(crate) fn resident_pages(ptr: *const u8, pages: usize) -> Vec<bool> {
    let mut vec = vec![0u8; pages];
    // SAFETY: `ptr` is page aligned and the range lies in a live mapping of the caller's;
    // mincore only writes `pages` bytes into `vec`.
    let rc = unsafe { libc::mincore(ptr as *mut libc::c_void, pages * 4096, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore({ptr:?}): {}", std::io::Error::last_os_error());
    vec.iter().map(|b| b & 1 == 1).collect()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{give, resident_pages, take};

    /// The `VmFlags` of the mapping holding `addr`, from `/proc/self/smaps`.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.trim().to_string();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// Whether every 4 KiB page of the 2 MiB chunk at `base` (never unmapped) is resident.
    fn resident(base: usize) -> bool {
        resident_pages(base as *const u8, 512).iter().all(|&r| r)
    }

    #[test]
    fn a_growing_pool_keeps_chunks_faulted_in_ahead() {
        // Enough 64 KiB buffers to map more chunks than the filler waits for (other tests
        // take from the same pool at the same time; that only brings the filler sooner).
        let bufs: Vec<_> = (0..6 * 32).map(|_| take(65536, 65536).expect("pooled")).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let seen = loop {
            let ready = super::imp::reserve_ready();
            if let Some(&base) = ready.iter().find(|&&b| resident(b)) {
                break base;
            }
            assert!(std::time::Instant::now() < deadline, "no chunk faulted in ahead: {ready:x?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(seen % (2 << 20), 0, "reserve chunk {seen:#x} not 2 MiB-aligned");
        for b in bufs {
            assert!(give(b, 65536, 65536), "a pooled class");
        }
    }

    #[test]
    fn buffers_come_from_aligned_chunks_advised_huge() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let bufs: Vec<_> = (0..4).map(|_| take(4096, 4096).expect("a pooled buffer")).collect();
        for b in &bufs {
            let addr = b.as_ptr() as usize;
            assert_eq!(addr % 4096, 0, "buffer {addr:#x} not block-aligned");
            let flags = vm_flags(addr);
            assert!(flags.split_whitespace().any(|f| f == "hg"), "{addr:#x}: VmFlags {flags}");
        }
        for b in bufs {
            assert!(give(b, 4096, 4096), "a pooled class");
        }
    }
}
