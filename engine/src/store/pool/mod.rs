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
//! Every `unsafe` of the engine's read path is in this module (and its `frames`). Under
//! `--cfg loom` the frames are loom cells, so the model (`loom-tests/tests/f_evict_vs_held.rs`)
//! sees a read that overlaps an eviction or a load as the data race it would be.

mod frames;

use self::frames as mem;
use crate::sync::{lock, Arc, Mutex, Ordering};
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

/// A frame claimed for a load: the caller fills it, then `finish` publishes it resident
/// (pinned); dropped unfinished, the frame goes back to evicted.
pub struct Loading<'a> {
    pool: &'a BufferPool,
    addr: u64,
    /// The word the claim replaced (evicted, its version).
    w: u64,
    frame: Option<mem::FrameMut>,
    /// The frame's bytes are lent out (`lend`) while this has a second count.
    lent: Option<Arc<()>>,
}

/// A claimed frame's bytes lent to a device read (`Loading::lend`): the load cannot finish
/// (nor give the frame back) while this lives.
pub struct LentFrame {
    frame: mem::FrameMut,
    _out: Arc<()>,
}

impl crate::io::ReadBuf for LentFrame {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the frame is its load's alone until `finish` or drop, and both assert that
        // this lent frame is gone first; it is the only handle on the bytes meanwhile.
        unsafe { self.frame.get() }
    }
    fn into_aligned(self: Box<Self>) -> Option<crate::io::AlignedBuf> {
        None
    }
}

enum Claim<'a> {
    Claimed(Loading<'a>),
    NoRoom,
    Raced,
}

impl<'a> Loading<'a> {
    /// The frame's bytes, for the caller to fill (a device read lands here directly).
    pub fn frame(&mut self) -> &mut [u8] {
        let frame = self.frame.as_mut().expect("an unfinished load holds its frame");
        // SAFETY: the frame is this load's alone until `finish` or drop.
        unsafe { frame.get() }
    }

    /// The frame's bytes for a device read that outlives this borrow (a streamed read,
    /// `Store::stream_blocks`): `finish` or a drop may come only after the lent frame is
    /// dropped (asserted).
    pub fn lend(&mut self) -> LentFrame {
        let frame = self.frame.take().expect("an unfinished load holds its frame");
        let out = Arc::new(());
        self.lent = Some(Arc::clone(&out));
        LentFrame { frame, _out: out }
    }

    /// Whether the frame is this load's again (never lent, or its lent frame dropped).
    fn returned(&mut self) -> bool {
        match self.lent.take() {
            Some(out) => {
                assert_eq!(
                    Arc::strong_count(&out),
                    1,
                    "the load of block {} ended while its frame was lent to a read",
                    self.addr
                );
                true
            }
            None => self.frame.is_some(),
        }
    }

    /// Publishes the filled frame resident, pinned for the caller.
    pub fn finish(mut self) -> Pin<'a> {
        assert!(self.returned(), "the load of block {} holds its frame", self.addr);
        let (pool, addr) = (self.pool, self.addr);
        // The bytes are not written past this point (under loom the tracked write ends;
        // otherwise the drop is a no-op).
        #[allow(clippy::drop_non_drop)]
        drop(self.frame.take());
        let st = pool.mem.state(addr);
        st.store(word(RESIDENT, version(self.w)) | PIN_ONE | REF, Ordering::Release);
        pool.on_ring(addr);
        pool.pinned(addr)
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if self.returned() {
            self.frame = None;
            // Never filled (an I/O or verification error): back to evicted.
            self.pool.drop_frame(self.addr, self.w);
        }
    }
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
        let budget = (budget_bytes / block_bytes as u64).max(1);
        // Frames are 4 KiB pages: no huge-page range (design.md §12.1).
        let mem = mem::Frames::reserve(block_bytes, device_blocks);
        BufferPool {
            capacity: mem.capacity(),
            mem,
            block_bytes,
            budget,
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
    #[inline]
    pub fn pin(&self, addr: u64) -> Option<Pin<'_>> {
        self.pin_or(addr, true)
    }

    /// As `pin`, but `None` at once while another thread loads the frame: for callers that
    /// hold frames of their own in `Loading` (a streamed read), which must not wait for a
    /// load that may itself be waiting for theirs.
    #[inline]
    pub fn pin_now(&self, addr: u64) -> Option<Pin<'_>> {
        self.pin_or(addr, false)
    }

    #[inline]
    fn pin_or(&self, addr: u64, wait_loads: bool) -> Option<Pin<'_>> {
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
                LOADING if !wait_loads => return None,
                // An eviction holds a frame locked only for its `madvise`.
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
        let mut loading = loop {
            let w = st.load(Ordering::Acquire);
            match state(w) {
                EVICTED => match self.claim(addr, w) {
                    Claim::Claimed(loading) => break loading,
                    Claim::NoRoom => return Ok(None),
                    Claim::Raced => {}
                },
                RESIDENT if w & RETIRED != 0 => return Ok(None),
                RESIDENT => {
                    if let Some(pin) = self.pin(addr) {
                        return Ok(Some(pin));
                    }
                }
                _ => wait(),
            }
        };
        fill(loading.frame())?;
        Ok(Some(loading.finish()))
    }

    /// Claims the evicted frame of `addr` for a load the caller makes itself (several in
    /// flight at once: `Store::stream_blocks`). `None` if the frame is not evicted
    /// (resident: pin it; being loaded: read around it), beyond the reservation, or there
    /// is no room.
    pub fn start_load(&self, addr: u64) -> Option<Loading<'_>> {
        if addr >= self.capacity {
            return None;
        }
        let w = self.mem.state(addr).load(Ordering::Acquire);
        match state(w) {
            EVICTED => match self.claim(addr, w) {
                Claim::Claimed(loading) => Some(loading),
                Claim::NoRoom | Claim::Raced => None,
            },
            _ => None,
        }
    }

    /// `Evicted(w) → Loading`, with a frame counted against the budget.
    fn claim(&self, addr: u64, w: u64) -> Claim<'_> {
        debug_assert_eq!(state(w), EVICTED, "claiming block {addr} in state {w:#x}");
        if !self.reserve_frame() {
            return Claim::NoRoom;
        }
        let st = self.mem.state(addr);
        if st.compare_exchange(w, w | LOADING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.resident.fetch_sub(1, Ordering::Relaxed);
            return Claim::Raced;
        }
        // SAFETY: this thread moved the word Evicted → Loading: nobody else touches the
        // frame until it publishes another state (pins need Resident).
        let frame = unsafe { self.mem.frame_mut(addr) };
        Claim::Claimed(Loading { pool: self, addr, w, frame: Some(frame), lent: None })
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

    /// Backs the evicted frames among `addrs` (ascending) with memory in bulk, one call per
    /// run of consecutive addresses, before `install` copies images into them: the copy then
    /// takes no page fault per frame. Frames not evicted are skipped (they have memory, or
    /// are being loaded); one evicted meanwhile is only backed by a zero page again, which the
    /// next install or eviction reuses or releases.
    pub fn populate(&self, addrs: &[u64]) {
        debug_assert!(addrs.windows(2).all(|w| w[0] < w[1]), "addresses not ascending");
        let evicted = |a: u64| {
            a < self.capacity && state(self.mem.state(a).load(Ordering::Relaxed)) == EVICTED
        };
        let mut run: Option<(u64, u64)> = None;
        for &a in addrs {
            if !evicted(a) {
                continue;
            }
            run = match run {
                Some((first, n)) if first + n == a => Some((first, n + 1)),
                Some((first, n)) => {
                    self.mem.populate(first, n);
                    Some((a, 1))
                }
                None => Some((a, 1)),
            };
        }
        if let Some((first, n)) = run {
            self.mem.populate(first, n);
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

    /// `discard` for many addresses (ascending), releasing the memory of consecutive
    /// unpinned frames with one call per run instead of one per frame (a commit that frees
    /// tens of thousands of blocks paid a `madvise` and a TLB flush for each). Frames it
    /// cannot lock at once (pinned, loading, locked) go through `discard` afterwards, once
    /// no frame is held here: waiting for a load while holding frames locked could wait on a
    /// stream that waits for one of them.
    pub fn discard_many(&self, addrs: &[u64]) {
        debug_assert!(addrs.windows(2).all(|w| w[0] < w[1]), "addresses not ascending");
        let mut locked: Vec<(u64, u64)> = Vec::new();
        let mut later = Vec::new();
        for &addr in addrs.iter().filter(|&&a| a < self.capacity) {
            let st = self.mem.state(addr);
            let w = st.load(Ordering::Acquire);
            match state(w) {
                EVICTED => {}
                RESIDENT if pins(w) == 0 => {
                    let to = word(LOCKED, version(w));
                    match st.compare_exchange(w, to, Ordering::Acquire, Ordering::Relaxed) {
                        Ok(_) => locked.push((addr, w)),
                        Err(_) => later.push(addr),
                    }
                }
                _ => later.push(addr),
            }
        }
        let mut run = 0;
        while run < locked.len() {
            let first = locked[run].0;
            let len = locked[run..].iter().zip(first..).take_while(|((a, _), b)| a == b).count();
            self.mem.release_run(first, len as u64);
            run += len;
        }
        for (addr, w) in locked {
            self.publish_evicted(addr, w);
        }
        for addr in later {
            self.discard(addr);
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
        self.publish_evicted(addr, w);
    }

    /// Publishes `Evicted(v + 1)` for a frame the caller holds exclusively and whose memory
    /// it released.
    fn publish_evicted(&self, addr: u64, w: u64) {
        self.mem.state(addr).store(word(EVICTED, version(w) + 1), Ordering::Release);
        let before = self.resident.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "evicting block {addr} with no frame counted resident");
    }

    #[inline]
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

    #[inline]
    fn pinned(&self, addr: u64) -> Pin<'_> {
        // SAFETY: the caller pinned the frame (or holds its load's pin): nothing writes it
        // until the pin is released.
        let bytes = unsafe { self.mem.frame(addr) };
        let raw = RawPin { pool: self.id(), addr, bytes };
        Pin { pool: self, raw: std::mem::ManuallyDrop::new(raw) }
    }

    #[inline]
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
    #[inline]
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
