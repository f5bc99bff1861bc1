//! The buffer pool's memory: frames and state words (design.md §12.1), and, under
//! `--cfg loom`, cells loom tracks in their place. The contracts of the `unsafe` functions
//! here are kept by the state-word protocol in `pool/mod.rs`.

/// The frames and state words: one anonymous mapping each.
#[cfg(not(loom))]
mod imp {
    // Not loom (see the loom `mem` below), so this is std's atomic: the state words live in
    // a mapping, and a zero-filled `u64` is a valid one.
    use crate::sync::AtomicU64;

    /// Reservations are this multiple of the device's blocks (room for the file to grow),
    /// between the bounds below; blocks past the reservation are read around the pool.
    const RESERVE_FACTOR: u64 = 4;
    const RESERVE_MIN_BYTES: u64 = 64 << 30;
    const RESERVE_MAX_BYTES: u64 = 16 << 40;
    /// Smallest reservation worth trying when a large one is refused (strict overcommit).
    const RESERVE_FLOOR_BYTES: u64 = 64 << 20;

    /// An anonymous private mapping, `MAP_NORESERVE`: untouched pages cost nothing.
    struct Mapping {
        ptr: *mut u8,
        len: usize,
    }

    // SAFETY: a mapping is plain memory owned by this value; who may touch which bytes is
    // governed by the state words (see the module comment of `pool`).
    unsafe impl Send for Mapping {}
    // SAFETY: as above.
    unsafe impl Sync for Mapping {}

    impl Mapping {
        fn anonymous(len: usize) -> Option<Mapping> {
            // SAFETY: a fresh anonymous mapping; no existing memory is affected.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            (ptr != libc::MAP_FAILED).then_some(Mapping { ptr: ptr.cast(), len })
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping was created by `anonymous` with this length and nothing
            // borrows it any more (frames are borrowed only through the pool).
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    /// The bytes of a pinned frame (valid while the pin is held).
    #[derive(Debug)]
    pub(crate) struct FrameRef {
        ptr: *const u8,
        len: usize,
    }

    // SAFETY: the pointer names frame memory of a pool kept alive by the holder, readable
    // from any thread while pinned.
    unsafe impl Send for FrameRef {}
    // SAFETY: as above; shared reads only.
    unsafe impl Sync for FrameRef {}

    impl FrameRef {
        /// # Safety
        /// The frame must stay pinned for the returned lifetime.
        pub(crate) unsafe fn get<'a>(&self) -> &'a [u8] {
            // SAFETY: `ptr..ptr + len` is one frame of a live mapping, unchanged while
            // pinned (the caller's contract).
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    /// The bytes of a frame claimed for a load (exclusive while the claim lasts).
    pub(crate) struct FrameMut {
        ptr: *mut u8,
        len: usize,
    }

    impl FrameMut {
        /// # Safety
        /// The frame must be held exclusively (Loading) for the returned lifetime.
        pub(crate) unsafe fn get<'a>(&mut self) -> &'a mut [u8] {
            // SAFETY: one frame of a live mapping, exclusive by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
        }
    }

    pub(crate) struct Frames {
        frames: Option<Mapping>,
        states: Option<Mapping>,
        block_bytes: usize,
        capacity: u64,
    }

    impl Frames {
        /// Reserves frames for a device of `device_blocks`.
        pub(crate) fn reserve(block_bytes: usize, device_blocks: u64) -> Frames {
            let bb = block_bytes as u64;
            let want = device_blocks.saturating_mul(RESERVE_FACTOR).saturating_mul(bb);
            let mut bytes = want.clamp(RESERVE_MIN_BYTES, RESERVE_MAX_BYTES);
            while bytes >= RESERVE_FLOOR_BYTES {
                let capacity = bytes / bb;
                let state_bytes = capacity * 8;
                if let (Ok(fl), Ok(sl)) = (usize::try_from(bytes), usize::try_from(state_bytes)) {
                    if let (Some(f), Some(s)) = (Mapping::anonymous(fl), Mapping::anonymous(sl)) {
                        let (frames, states) = (Some(f), Some(s));
                        return Frames { frames, states, block_bytes, capacity };
                    }
                }
                bytes /= 2;
            }
            // No address space: every read goes around the pool.
            Frames { frames: None, states: None, block_bytes, capacity: 0 }
        }

        pub(crate) fn capacity(&self) -> u64 {
            self.capacity
        }

        pub(crate) fn state(&self, addr: u64) -> &AtomicU64 {
            assert!(addr < self.capacity, "block {addr} beyond the pool's {}", self.capacity);
            let states = self.states.as_ref().expect("a pool with capacity has state words");
            // SAFETY: `addr < capacity` words fit the mapping; it is page aligned and zero
            // filled (a valid `AtomicU64` of 0 = Evicted, version 0), and lives as long
            // as `self`; atomics may be shared.
            unsafe { &*states.ptr.cast::<AtomicU64>().add(addr as usize) }
        }

        pub(super) fn frame_ptr(&self, addr: u64) -> *mut u8 {
            assert!(addr < self.capacity, "block {addr} beyond the pool's {}", self.capacity);
            let frames = self.frames.as_ref().expect("a pool with capacity has frames");
            // SAFETY: `addr × block_bytes + block_bytes <= capacity × block_bytes`, the
            // mapping's length.
            unsafe { frames.ptr.add(addr as usize * self.block_bytes) }
        }

        /// # Safety
        /// The caller holds a pin on the frame (it stays unchanged while the pin lives).
        pub(crate) unsafe fn frame(&self, addr: u64) -> FrameRef {
            FrameRef { ptr: self.frame_ptr(addr), len: self.block_bytes }
        }

        /// # Safety
        /// The caller holds the frame exclusively (Loading) while the result lives.
        pub(crate) unsafe fn frame_mut(&self, addr: u64) -> FrameMut {
            FrameMut { ptr: self.frame_ptr(addr), len: self.block_bytes }
        }

        /// Runs `f` on the frame's bytes.
        ///
        /// # Safety
        /// The caller holds the frame exclusively (Loading or Locked).
        pub(crate) unsafe fn with_frame_mut<R>(
            &self,
            addr: u64,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> R {
            // SAFETY: exclusive by the caller's state transition; in bounds (frame_ptr).
            f(unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(addr), self.block_bytes) })
        }

        /// Asks the kernel to back the frames `first..first + count` with memory now, in one
        /// call, rather than one page fault per page when they are first written (a fault
        /// costs ~1.9 µs here, a page populated in bulk ~1.4 µs: design.md §12.3). Contents
        /// are unchanged (pages already present are left alone), so no exclusive hold is
        /// needed; a kernel without `MADV_POPULATE_WRITE` (before 5.14) refuses, and the
        /// frames fault in as before.
        pub(crate) fn populate(&self, first: u64, count: u64) {
            if count == 0 {
                return;
            }
            let last = first + count - 1;
            assert!(last < self.capacity, "frames up to {last} beyond {}", self.capacity);
            let ptr = self.frame_ptr(first);
            // SAFETY: a range of whole frames of our own mapping (checked above); the advice
            // only allocates pages that are not present and changes no byte of any frame.
            unsafe {
                libc::madvise(
                    ptr.cast(),
                    count as usize * self.block_bytes,
                    libc::MADV_POPULATE_WRITE,
                )
            };
        }

        /// Gives the frame's memory back to the kernel (it reads as zeros after); the
        /// caller holds the frame exclusively.
        pub(crate) fn release(&self, addr: u64) {
            self.release_run(addr, 1);
        }

        /// `release` for the frames `first..first + count`, in one call; the caller holds
        /// every one of them exclusively.
        pub(crate) fn release_run(&self, first: u64, count: u64) {
            let last = first + count.max(1) - 1;
            assert!(last < self.capacity, "frames up to {last} beyond {}", self.capacity);
            let ptr = self.frame_ptr(first);
            let len = count as usize * self.block_bytes;
            // SAFETY: whole frames of our own mapping (checked above), page aligned (block
            // sizes are multiples of 4 KiB, the mapping is page aligned), held exclusively by
            // the caller: no reference into them is alive.
            let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) };
            // Only EINVAL/ENOMEM for a bad range, which the bounds above rule out.
            assert_eq!(rc, 0, "madvise of the frames of blocks {first}..={last}");
        }
    }
}

/// The frames under loom: cells loom tracks, so an unpinned read is a detected race.
#[cfg(loom)]
mod imp {
    use loom::cell::{ConstPtr, MutPtr, UnsafeCell};
    use loom::sync::atomic::AtomicU64;

    /// Models need a handful of frames; blocks past these are read around the pool.
    const CAPACITY: u64 = 8;

    pub(crate) struct FrameRef(ConstPtr<Vec<u8>>);

    /// A frame claimed for a load; loom tracks the write access while it lives.
    pub(crate) struct FrameMut(MutPtr<Vec<u8>>);

    impl FrameMut {
        /// # Safety
        /// The frame must be held exclusively (Loading) for the returned lifetime.
        pub(crate) unsafe fn get<'a>(&mut self) -> &'a mut [u8] {
            // SAFETY: exclusive by the caller's contract; loom checks it.
            let v: &mut Vec<u8> = unsafe { self.0.deref() };
            // SAFETY: the vector lives in the pool's cell for the pool's life.
            unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr(), v.len()) }
        }
    }

    impl std::fmt::Debug for FrameRef {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("FrameRef")
        }
    }

    impl FrameRef {
        /// # Safety
        /// The frame must stay pinned for the returned lifetime.
        pub(crate) unsafe fn get<'a>(&self) -> &'a [u8] {
            // SAFETY: loom checks the access while `self` lives; the caller's pin keeps
            // writers out.
            let v: &Vec<u8> = unsafe { self.0.deref() };
            // SAFETY: the vector lives in the pool's cell for the pool's life.
            unsafe { std::slice::from_raw_parts(v.as_ptr(), v.len()) }
        }
    }

    pub(crate) struct Frames {
        frames: Vec<UnsafeCell<Vec<u8>>>,
        states: Vec<AtomicU64>,
    }

    // SAFETY: who touches a frame is governed by the state words, and loom checks every
    // access of the cells against that (the point of this model version).
    unsafe impl Send for Frames {}
    // SAFETY: as above.
    unsafe impl Sync for Frames {}

    impl Frames {
        pub(crate) fn reserve(block_bytes: usize, device_blocks: u64) -> Frames {
            let n = device_blocks.min(CAPACITY);
            Frames {
                frames: (0..n).map(|_| UnsafeCell::new(vec![0; block_bytes])).collect(),
                states: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }
        }

        pub(crate) fn capacity(&self) -> u64 {
            self.frames.len() as u64
        }

        pub(crate) fn state(&self, addr: u64) -> &AtomicU64 {
            &self.states[addr as usize]
        }

        /// # Safety
        /// The caller holds a pin on the frame.
        pub(crate) unsafe fn frame(&self, addr: u64) -> FrameRef {
            FrameRef(self.frames[addr as usize].get())
        }

        /// # Safety
        /// The caller holds the frame exclusively (Loading) while the result lives.
        pub(crate) unsafe fn frame_mut(&self, addr: u64) -> FrameMut {
            FrameMut(self.frames[addr as usize].get_mut())
        }

        /// Runs `f` on the frame's bytes (loom checks the write against every live read).
        ///
        /// # Safety
        /// The caller holds the frame exclusively (Loading or Locked).
        pub(crate) unsafe fn with_frame_mut<R>(
            &self,
            addr: u64,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> R {
            self.frames[addr as usize].with_mut(|v| {
                // SAFETY: exclusive by the caller's state transition.
                let v = unsafe { &mut *v };
                f(&mut v[..])
            })
        }

        pub(crate) fn populate(&self, _first: u64, _count: u64) {}

        pub(crate) fn release_run(&self, first: u64, count: u64) {
            for addr in first..first + count {
                self.release(addr);
            }
        }

        pub(crate) fn release(&self, addr: u64) {
            self.frames[addr as usize].with_mut(|v| {
                // SAFETY: the caller holds the frame exclusively.
                unsafe { (*v).fill(0) }
            });
        }
    }
}

pub(crate) use imp::*;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Frames;
    use crate::io::resident_pages as resident;

    #[test]
    fn populate_backs_exactly_the_frames_asked_for() {
        let frames = Frames::reserve(4096, 1024);
        let base = frames.frame_ptr(0);
        assert!(resident(base, 40).iter().all(|r| !r), "an untouched reservation");
        frames.populate(10, 16);
        let r = resident(base, 40);
        assert!(r[10..26].iter().all(|r| *r), "populated frames 10..26: {r:?}");
        assert!(!r[9] && !r[26], "frames beside the run stay untouched: {r:?}");
        frames.release(12);
        assert!(!resident(base, 40)[12], "a released frame is no longer backed");
    }
}
