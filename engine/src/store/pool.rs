//! The buffer pool (design.md §12): clean block images addressed like memory.
//!
//! One reserved anonymous mapping holds a frame per block address (`base + addr ×
//! block_bytes`), so finding a cached block is pointer arithmetic, not a hash lookup; a
//! parallel array of state words (one `AtomicU64` per address, also an untouched anonymous
//! mapping until used) says what the frame holds:
//!
//! ```text
//!  63            32 31           8 7    4   3       2     1 0
//! +----------------+--------------+------+---------+-----+---+
//! | version (32)   | pins (24)    |  -   | retired | ref | st|   st: Evicted, Loading,
//! +----------------+--------------+------+---------+-----+---+       Resident, Locked
//! ```
//!
//! * **Reads pin.** A reader moves `Resident(v, pins)` to `Resident(v, pins + 1)` with one
//!   compare-and-swap of the word it just loaded — the swap fails if the frame was evicted,
//!   reloaded or retired in between (the version and state are in the word), so a pin is
//!   only ever taken on the frame state the reader saw (the "version re-check"). Bytes are
//!   read only under a pin. Why not read first and validate the version after, as vmcache
//!   does: in Rust a read of bytes that the kernel may be rewriting (an eviction's
//!   `madvise`, a load's DMA) is a data race whatever the check after it says, and a pin
//!   costs one uncontended atomic on a line per block — the old cache paid a shard lock,
//!   a hash lookup and two `Arc` counts per level.
//! * **Loads** are single flight: `Evicted → Loading` by one thread, which reads the block
//!   into its frame, verifies it, and publishes `Resident` with its own pin; others wait.
//! * **Eviction** (CLOCK over resident frames, `cache_bytes` bounding them): only an
//!   unpinned, unreferenced frame, `Resident(v, 0) → Locked`, `madvise(MADV_DONTNEED)`,
//!   `Evicted(v + 1)`.
//! * **Retire.** An address about to hold another block (freed, or rewritten) must not be
//!   served again: an unpinned frame is evicted at once; a pinned one is marked retired (no
//!   new pins) and the last unpin evicts it. A guard that outlives its snapshot's expiry
//!   therefore keeps exactly the bytes it pinned.
//!
//! Every `unsafe` of the engine's read path is in this module. Under `--cfg loom` the frames
//! are loom cells, so the model (`loom-tests/tests/f_evict_vs_held.rs`) sees a read that
//! overlaps an eviction or a load as the data race it would be.

use crate::sync::{lock, Mutex, Ordering};
use crate::Result;

/// What a frame holds (the low two bits of its state word).
const EVICTED: u64 = 0;
const LOADING: u64 = 1;
const RESIDENT: u64 = 2;
const LOCKED: u64 = 3;
const STATE: u64 = 0b11;
/// CLOCK's reference bit: set by every pin.
const REF: u64 = 1 << 2;
/// No new pins; the last unpin evicts.
const RETIRED: u64 = 1 << 3;
const PIN_SHIFT: u32 = 8;
const PIN_ONE: u64 = 1 << PIN_SHIFT;
const PIN_MAX: u64 = (1 << 24) - 1;
const VERSION_SHIFT: u32 = 32;

fn state(w: u64) -> u64 {
    w & STATE
}

fn pins(w: u64) -> u64 {
    (w >> PIN_SHIFT) & PIN_MAX
}

fn version(w: u64) -> u64 {
    w >> VERSION_SHIFT
}

/// A word in state `st` at `version`, with no pins and no flags.
fn word(st: u64, version: u64) -> u64 {
    ((version & u64::from(u32::MAX)) << VERSION_SHIFT) | st
}

/// Test-only ways to break the pool's rules (the loom model must catch each).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    None,
    /// Pin with a blind `fetch_add`, without checking that the word still says `Resident`
    /// at the version the reader saw (a reader can then read a frame being evicted or
    /// reloaded).
    PinWithoutRecheck,
}

/// Hit counters, one cache line each; a thread counts on the one its id picks, so a hit
/// writes no line that readers on other threads write (design.md §12.4).
struct Hits([PaddedCounter; HIT_COUNTERS]);

#[repr(align(128))]
struct PaddedCounter(crate::sync::AtomicU64);

const HIT_COUNTERS: usize = 16;

thread_local! {
    /// This thread's hit counter: its id hashed, once.
    static HIT_COUNTER: usize = {
        use std::hash::{BuildHasher, RandomState};
        let hash = RandomState::new().hash_one(std::thread::current().id());
        (hash as usize) % HIT_COUNTERS
    };
}

/// The CLOCK: addresses of frames made resident, swept by a hand when room is needed.
#[derive(Default)]
struct Clock {
    ring: Vec<u64>,
    /// Which addresses are on `ring` (an address is on it once, however often reloaded).
    on_ring: crate::addr_map::AddrMap<()>,
    hand: usize,
}

/// Clean block images by address (see the module comment).
pub struct BufferPool {
    mem: mem::Frames,
    block_bytes: usize,
    /// Addresses `0..capacity` have a frame; reads of others bypass the pool.
    capacity: u64,
    /// Frames that may be resident at once (`cache_bytes / block_bytes`).
    budget: u64,
    /// Frames resident, loading or locked (counted before a load starts).
    resident: crate::sync::AtomicU64,
    clock: Mutex<Clock>,
    hits: Hits,
    broken: Broken,
}

/// A pinned frame: its bytes stay exactly as they are until the pin drops.
pub struct Pin<'a> {
    pool: &'a BufferPool,
    raw: std::mem::ManuallyDrop<RawPin>,
}

/// A pin detached from the pool's lifetime, for holders that keep the pool alive some other
/// way (a value guard holds the store). Only the pool it came from can read or release it.
#[derive(Debug)]
pub struct RawPin {
    pool: usize,
    addr: u64,
    bytes: mem::FrameRef,
}

impl BufferPool {
    /// A pool for a device of `device_blocks` blocks (and room to grow: the reservation is
    /// a multiple of it), holding at most `budget_bytes` of frames.
    pub fn new(block_bytes: u32, budget_bytes: u64, device_blocks: u64) -> BufferPool {
        BufferPool::with_broken(block_bytes, budget_bytes, device_blocks, Broken::None)
    }

    #[doc(hidden)]
    pub fn with_broken(
        block_bytes: u32,
        budget_bytes: u64,
        device_blocks: u64,
        broken: Broken,
    ) -> BufferPool {
        let block_bytes = block_bytes as usize;
        let mem = mem::Frames::reserve(block_bytes, device_blocks);
        BufferPool {
            capacity: mem.capacity(),
            mem,
            block_bytes,
            budget: (budget_bytes / block_bytes as u64).max(1),
            resident: crate::sync::AtomicU64::new(0),
            clock: Mutex::new(Clock::default()),
            hits: Hits(std::array::from_fn(|_| PaddedCounter(crate::sync::AtomicU64::new(0)))),
            broken,
        }
    }

    /// Addresses with a frame.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Pins the resident frame of `addr`, or `None` if it is not resident (evicted,
    /// retired, or beyond the reservation). Waits while another thread loads it.
    pub fn pin(&self, addr: u64) -> Option<Pin<'_>> {
        if addr >= self.capacity {
            return None;
        }
        let st = self.mem.state(addr);
        loop {
            let w = st.load(Ordering::Acquire);
            match state(w) {
                RESIDENT if w & RETIRED == 0 && pins(w) < PIN_MAX => {
                    if self.broken == Broken::PinWithoutRecheck {
                        st.fetch_add(PIN_ONE, Ordering::Acquire);
                    } else if st
                        .compare_exchange_weak(
                            w,
                            (w + PIN_ONE) | REF,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    self.count_hit();
                    return Some(self.pinned(addr));
                }
                LOADING | LOCKED => wait(),
                _ => return None,
            }
        }
    }

    /// Loads `addr` into its frame with `fill` (which reads and verifies the block) and
    /// returns it pinned — or, if another thread made it resident meanwhile, pins that
    /// (the caller checks the identity). `Ok(None)`: the frame cannot be used (beyond the
    /// reservation, retired under a pin, or every resident frame pinned); read around the
    /// pool. A `fill` error leaves the frame evicted.
    pub fn load(
        &self,
        addr: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Option<Pin<'_>>> {
        if addr >= self.capacity {
            return Ok(None);
        }
        let st = self.mem.state(addr);
        let w = loop {
            let w = st.load(Ordering::Acquire);
            match state(w) {
                EVICTED => {
                    if !self.reserve_frame() {
                        return Ok(None);
                    }
                    if st
                        .compare_exchange(w, w | LOADING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        break w;
                    }
                    self.resident.fetch_sub(1, Ordering::Relaxed);
                }
                RESIDENT if w & RETIRED != 0 => return Ok(None),
                RESIDENT => {
                    if let Some(pin) = self.pin(addr) {
                        return Ok(Some(pin));
                    }
                }
                _ => wait(),
            }
        };
        // SAFETY: this thread moved the word Evicted → Loading: nobody else touches the
        // frame until it publishes another state (pins need Resident).
        let filled = unsafe { self.mem.with_frame_mut(addr, fill) };
        match filled {
            Ok(()) => {
                st.store(word(RESIDENT, version(w)) | PIN_ONE | REF, Ordering::Release);
                self.on_ring(addr);
                Ok(Some(self.pinned(addr)))
            }
            Err(e) => {
                self.drop_frame(addr, w);
                Err(e)
            }
        }
    }

    /// Puts `image` (just written to the device at `addr`) into the frame of `addr`,
    /// replacing whatever it held. A frame pinned by readers is retired instead (they keep
    /// their bytes; the next read loads the new image).
    pub fn install(&self, addr: u64, image: &[u8]) {
        assert_eq!(image.len(), self.block_bytes, "image of block {addr}");
        if addr >= self.capacity {
            return;
        }
        let st = self.mem.state(addr);
        loop {
            let w = st.load(Ordering::Acquire);
            let (resident_before, locked) = match state(w) {
                EVICTED => {
                    if !self.reserve_frame() {
                        return;
                    }
                    (false, w | LOADING)
                }
                RESIDENT if pins(w) == 0 => (true, word(LOCKED, version(w))),
                RESIDENT => {
                    if self.retire_pinned(addr, w) {
                        return;
                    }
                    continue;
                }
                _ => {
                    wait();
                    continue;
                }
            };
            if st.compare_exchange(w, locked, Ordering::Acquire, Ordering::Relaxed).is_err() {
                if !resident_before {
                    self.resident.fetch_sub(1, Ordering::Relaxed);
                }
                continue;
            }
            // SAFETY: this thread moved the word to Loading or Locked from a state with no
            // pins: it alone touches the frame until the store below.
            unsafe { self.mem.with_frame_mut(addr, |frame| frame.copy_from_slice(image)) };
            st.store(word(RESIDENT, version(w) + 1), Ordering::Release);
            self.on_ring(addr);
            return;
        }
    }

    /// The address is about to hold another block, or is free: no read may be served the
    /// frame's image again. Unpinned → evicted now; pinned → retired.
    pub fn discard(&self, addr: u64) {
        if addr >= self.capacity {
            return;
        }
        let st = self.mem.state(addr);
        loop {
            let w = st.load(Ordering::Acquire);
            match state(w) {
                EVICTED => return,
                RESIDENT if pins(w) == 0 => {
                    if self.try_evict(addr, w) {
                        return;
                    }
                }
                RESIDENT => {
                    if self.retire_pinned(addr, w) {
                        return;
                    }
                }
                _ => wait(),
            }
        }
    }

    /// Marks a pinned frame retired; false if the word changed first.
    fn retire_pinned(&self, addr: u64, w: u64) -> bool {
        debug_assert!(state(w) == RESIDENT && pins(w) > 0, "retiring {addr} in state {w:#x}");
        let st = self.mem.state(addr);
        st.compare_exchange(w, w | RETIRED, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// `Resident(v, 0) → Locked → Evicted(v + 1)`, releasing the frame's memory; false if
    /// the word was no longer `w`.
    fn try_evict(&self, addr: u64, w: u64) -> bool {
        debug_assert!(state(w) == RESIDENT && pins(w) == 0, "evicting {addr} in state {w:#x}");
        let st = self.mem.state(addr);
        let locked = word(LOCKED, version(w));
        if st.compare_exchange(w, locked, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        self.drop_frame(addr, w);
        true
    }

    /// Releases the frame's memory and publishes `Evicted(v + 1)`; the caller holds the
    /// frame exclusively (Loading or Locked).
    fn drop_frame(&self, addr: u64, w: u64) {
        self.mem.release(addr);
        self.mem.state(addr).store(word(EVICTED, version(w) + 1), Ordering::Release);
        let before = self.resident.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "evicting block {addr} with no frame counted resident");
    }

    fn unpin(&self, addr: u64) {
        let st = self.mem.state(addr);
        let before = st.fetch_sub(PIN_ONE, Ordering::Release);
        assert!(
            state(before) == RESIDENT && pins(before) > 0,
            "unpinning block {addr} in state {before:#x}"
        );
        if before & RETIRED != 0 && pins(before) == 1 {
            // The last reader of a retired frame evicts it (unless a replacement already
            // took it over).
            let w = before - PIN_ONE;
            self.try_evict(addr, w);
        }
    }

    /// Counts a frame about to become resident, evicting others first to stay within the
    /// budget; false if every resident frame is pinned or referenced twice around.
    fn reserve_frame(&self) -> bool {
        if self.resident.fetch_add(1, Ordering::Relaxed) < self.budget {
            return true;
        }
        self.resident.fetch_sub(1, Ordering::Relaxed);
        let mut clock = lock(&self.clock);
        // Two sweeps: the first may only clear reference bits.
        let mut steps = 2 * clock.ring.len() + 1;
        while self.resident.load(Ordering::Relaxed) >= self.budget {
            if clock.ring.is_empty() || steps == 0 {
                return false;
            }
            steps -= 1;
            if clock.hand >= clock.ring.len() {
                clock.hand = 0;
            }
            let hand = clock.hand;
            let addr = clock.ring[hand];
            let st = self.mem.state(addr);
            let w = st.load(Ordering::Acquire);
            match state(w) {
                RESIDENT if w & REF != 0 => {
                    st.fetch_and(!REF, Ordering::Relaxed);
                    clock.hand += 1;
                }
                RESIDENT if pins(w) == 0 && self.try_evict(addr, w) => {
                    clock.ring.swap_remove(hand);
                    clock.on_ring.remove(&addr);
                }
                RESIDENT | LOADING | LOCKED => clock.hand += 1,
                _ => {
                    clock.ring.swap_remove(hand);
                    clock.on_ring.remove(&addr);
                }
            }
        }
        self.resident.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn on_ring(&self, addr: u64) {
        let mut clock = lock(&self.clock);
        if clock.on_ring.insert(addr, ()).is_none() {
            clock.ring.push(addr);
        }
    }

    fn pinned(&self, addr: u64) -> Pin<'_> {
        // SAFETY: the caller pinned the frame (or holds its load's pin): nothing writes it
        // until the pin is released.
        let bytes = unsafe { self.mem.frame(addr) };
        let raw = RawPin { pool: self.id(), addr, bytes };
        Pin { pool: self, raw: std::mem::ManuallyDrop::new(raw) }
    }

    fn count_hit(&self) {
        let counter = HIT_COUNTER.with(|&i| i);
        self.hits.0[counter].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes of resident frames.
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * self.block_bytes as u64
    }

    /// Resident frames.
    pub fn len(&self) -> usize {
        self.resident.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pins that found their frame resident.
    pub fn hits(&self) -> u64 {
        self.hits.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    /// The bytes of a detached pin of this pool.
    pub fn raw_bytes<'p>(&'p self, pin: &'p RawPin) -> &'p [u8] {
        assert_eq!(pin.pool, self.id(), "a pin of another pool");
        // SAFETY: the pin is held (released only by `release`, which takes it by value).
        unsafe { pin.bytes.get() }
    }

    /// Releases a detached pin of this pool.
    pub fn release(&self, pin: RawPin) {
        assert_eq!(pin.pool, self.id(), "a pin of another pool");
        let addr = pin.addr;
        // The frame's bytes are not borrowed past this point (under loom the tracked read
        // ends here; otherwise the drop is a no-op).
        #[allow(clippy::drop_non_drop)]
        drop(pin);
        self.unpin(addr);
    }

    fn id(&self) -> usize {
        self as *const BufferPool as usize
    }
}

impl RawPin {
    /// The address of the pinned frame.
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

impl Pin<'_> {
    /// The address of the pinned frame.
    pub fn addr(&self) -> u64 {
        self.raw.addr
    }

    /// Detaches the pin from the pool's lifetime (see [`RawPin`]).
    pub fn into_raw(self) -> RawPin {
        let mut this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the pin moves out exactly once.
        unsafe { std::mem::ManuallyDrop::take(&mut this.raw) }
    }
}

impl std::ops::Deref for Pin<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the frame is pinned for as long as `self` lives.
        unsafe { self.raw.bytes.get() }
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; the bytes are not read after.
        let raw = unsafe { std::mem::ManuallyDrop::take(&mut self.raw) };
        self.pool.release(raw);
    }
}

impl std::fmt::Debug for Pin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin").field("addr", &self.raw.addr).finish()
    }
}

/// Waits for another thread's load or eviction of a frame to finish.
fn wait() {
    #[cfg(loom)]
    crate::sync::thread::yield_now();
    #[cfg(not(loom))]
    {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

/// The frames and state words: one anonymous mapping each.
#[cfg(not(loom))]
mod mem {
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
    pub(super) struct FrameRef {
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
        pub(super) unsafe fn get<'a>(&self) -> &'a [u8] {
            // SAFETY: `ptr..ptr + len` is one frame of a live mapping, unchanged while
            // pinned (the caller's contract).
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    pub(super) struct Frames {
        frames: Option<Mapping>,
        states: Option<Mapping>,
        block_bytes: usize,
        capacity: u64,
    }

    impl Frames {
        pub(super) fn reserve(block_bytes: usize, device_blocks: u64) -> Frames {
            let bb = block_bytes as u64;
            let want = device_blocks.saturating_mul(RESERVE_FACTOR).saturating_mul(bb);
            let mut bytes = want.clamp(RESERVE_MIN_BYTES, RESERVE_MAX_BYTES);
            while bytes >= RESERVE_FLOOR_BYTES {
                let capacity = bytes / bb;
                let state_bytes = capacity * 8;
                if let (Ok(fl), Ok(sl)) = (usize::try_from(bytes), usize::try_from(state_bytes)) {
                    if let (Some(f), Some(s)) = (Mapping::anonymous(fl), Mapping::anonymous(sl)) {
                        return Frames { frames: Some(f), states: Some(s), block_bytes, capacity };
                    }
                }
                bytes /= 2;
            }
            // No address space: every read goes around the pool.
            Frames { frames: None, states: None, block_bytes, capacity: 0 }
        }

        pub(super) fn capacity(&self) -> u64 {
            self.capacity
        }

        pub(super) fn state(&self, addr: u64) -> &AtomicU64 {
            assert!(addr < self.capacity, "block {addr} beyond the pool's {}", self.capacity);
            let states = self.states.as_ref().expect("a pool with capacity has state words");
            // SAFETY: `addr < capacity` words fit the mapping; it is page aligned and zero
            // filled (a valid `AtomicU64` of 0 = Evicted, version 0), and lives as long
            // as `self`; atomics may be shared.
            unsafe { &*states.ptr.cast::<AtomicU64>().add(addr as usize) }
        }

        fn frame_ptr(&self, addr: u64) -> *mut u8 {
            assert!(addr < self.capacity, "block {addr} beyond the pool's {}", self.capacity);
            let frames = self.frames.as_ref().expect("a pool with capacity has frames");
            // SAFETY: `addr × block_bytes + block_bytes <= capacity × block_bytes`, the
            // mapping's length.
            unsafe { frames.ptr.add(addr as usize * self.block_bytes) }
        }

        /// # Safety
        /// The caller holds a pin on the frame (it stays unchanged while the pin lives).
        pub(super) unsafe fn frame(&self, addr: u64) -> FrameRef {
            FrameRef { ptr: self.frame_ptr(addr), len: self.block_bytes }
        }

        /// Runs `f` on the frame's bytes.
        ///
        /// # Safety
        /// The caller holds the frame exclusively (Loading or Locked).
        pub(super) unsafe fn with_frame_mut<R>(
            &self,
            addr: u64,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> R {
            // SAFETY: exclusive by the caller's state transition; in bounds (frame_ptr).
            f(unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(addr), self.block_bytes) })
        }

        /// Gives the frame's memory back to the kernel (it reads as zeros after); the
        /// caller holds the frame exclusively.
        pub(super) fn release(&self, addr: u64) {
            let ptr = self.frame_ptr(addr);
            // SAFETY: a whole frame of our own mapping, page aligned (block sizes are
            // multiples of 4 KiB, the mapping is page aligned), held exclusively by the
            // caller: no reference into it is alive.
            let rc = unsafe { libc::madvise(ptr.cast(), self.block_bytes, libc::MADV_DONTNEED) };
            // Only EINVAL/ENOMEM for a bad range, which the bounds above rule out.
            assert_eq!(rc, 0, "madvise of the frame of block {addr}");
        }
    }
}

/// The frames under loom: cells loom tracks, so an unpinned read is a detected race.
#[cfg(loom)]
mod mem {
    use loom::cell::{ConstPtr, UnsafeCell};
    use loom::sync::atomic::AtomicU64;

    /// Models need a handful of frames; blocks past these are read around the pool.
    const CAPACITY: u64 = 8;

    pub(super) struct FrameRef(ConstPtr<Vec<u8>>);

    impl std::fmt::Debug for FrameRef {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("FrameRef")
        }
    }

    impl FrameRef {
        /// # Safety
        /// The frame must stay pinned for the returned lifetime.
        pub(super) unsafe fn get<'a>(&self) -> &'a [u8] {
            // SAFETY: loom checks the access while `self` lives; the caller's pin keeps
            // writers out.
            let v: &Vec<u8> = unsafe { self.0.deref() };
            // SAFETY: the vector lives in the pool's cell for the pool's life.
            unsafe { std::slice::from_raw_parts(v.as_ptr(), v.len()) }
        }
    }

    pub(super) struct Frames {
        frames: Vec<UnsafeCell<Vec<u8>>>,
        states: Vec<AtomicU64>,
    }

    // SAFETY: who touches a frame is governed by the state words, and loom checks every
    // access of the cells against that (the point of this model version).
    unsafe impl Send for Frames {}
    // SAFETY: as above.
    unsafe impl Sync for Frames {}

    impl Frames {
        pub(super) fn reserve(block_bytes: usize, device_blocks: u64) -> Frames {
            let n = device_blocks.min(CAPACITY);
            Frames {
                frames: (0..n).map(|_| UnsafeCell::new(vec![0; block_bytes])).collect(),
                states: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }
        }

        pub(super) fn capacity(&self) -> u64 {
            self.frames.len() as u64
        }

        pub(super) fn state(&self, addr: u64) -> &AtomicU64 {
            &self.states[addr as usize]
        }

        /// # Safety
        /// The caller holds a pin on the frame.
        pub(super) unsafe fn frame(&self, addr: u64) -> FrameRef {
            FrameRef(self.frames[addr as usize].get())
        }

        /// Runs `f` on the frame's bytes (loom checks the write against every live read).
        ///
        /// # Safety
        /// The caller holds the frame exclusively (Loading or Locked).
        pub(super) unsafe fn with_frame_mut<R>(
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

        pub(super) fn release(&self, addr: u64) {
            self.frames[addr as usize].with_mut(|v| {
                // SAFETY: the caller holds the frame exclusively.
                unsafe { (*v).fill(0) }
            });
        }
    }
}
