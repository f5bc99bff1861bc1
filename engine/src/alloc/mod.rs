//! The space allocator (design.md §4, §6, §10.13; `docs/format.md`, "Allocator").
//!
//! In memory: a bitmap over every block (set = allocated) with per-chunk free counts and dirty
//! flags ([`bitmap`]), the current on-disk pointers of every bitmap chunk and index block, and
//! the pending frees `freed_gen → runs` ([`pending`]). On disk: bitmap chunks under an index
//! (`alloc_root`), and one pending list per outstanding generation (`pending_root`).
//!
//! Rules this module keeps:
//! * A block freed with [`Allocator::free_pending`] in generation G stays allocated in the
//!   bitmap until [`Allocator::note_durable`] is called with a generation > G: both
//!   superblock slots keep describing intact trees (design.md §4). The engine decides which
//!   frees may be immediate ([`Allocator::free_now`]: blocks no durable superblock reaches)
//!   and enforces the snapshot pinning of §6 before it calls either.
//! * [`Allocator::persist`] writes only the dirty chunks and the index path above them; the
//!   allocator's own new blocks are allocated last, from chunks already dirty where possible
//!   (see `persist.rs` for the passes); its previous blocks join pending(gen).
//! * Loaded bytes are untrusted: a bad index, chunk or pending list is `Error::Corrupt`.

mod bitmap;
mod codec;
mod load;
mod orphans;
mod pending;
mod persist;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_persist;

use crate::io::AlignedBuf;
use arbor_format::{alloc_index_fanout, bitmap_bits_per_chunk, first_data_block, ChildPtr};
use bitmap::Bitmap;
use pending::{PendingMap, Run};

/// Deepest allocator index accepted. With the smallest fanout (168 at 4 KiB) and chunk
/// (32,256 blocks), 5 levels already cover 2^64 blocks; a deeper index is corrupt.
const INDEX_LEVELS_MAX: usize = 8;

/// The allocator could not satisfy a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllocError {
    /// No free run of the requested length: grow the device and call [`Allocator::grow`].
    NoSpace,
}

impl From<AllocError> for crate::Error {
    fn from(e: AllocError) -> crate::Error {
        match e {
            AllocError::NoSpace => crate::Error::NoSpace,
        }
    }
}

/// What one [`Allocator::persist`] produced for the commit to write.
#[derive(Debug)]
pub(crate) struct Persisted {
    /// The top index block (crc filled in): the superblock's `alloc_root`.
    pub alloc_root: ChildPtr,
    /// Head of the pending lists (`ChildPtr::NULL` if nothing is pending).
    pub pending_root: ChildPtr,
    /// Head of the orphan lists (`ChildPtr::NULL` if no deleted tree awaits freeing).
    pub orphan_root: ChildPtr,
    /// `(address, sealed block)` for every block written in this commit, ascending address.
    pub blocks: Vec<(u64, AlignedBuf)>,
}

/// Free-space manager of one store. Single-threaded: the engine's writer owns it.
pub(crate) struct Allocator {
    block_bytes: u32,
    /// Blocks below this are the superblock area: allocated forever.
    first_data: u64,
    bitmap: Bitmap,
    /// `ptrs[0][k]`: where chunk k lives on disk; `ptrs[l][i]`: index block i of level l
    /// (covering `ptrs[l-1][i*fanout ..]`). The last level has one block: the root.
    /// `ChildPtr::NULL` until first written.
    ptrs: Vec<Vec<ChildPtr>>,
    pending: PendingMap,
    /// The pending-list blocks the last persist wrote (or load read), head first.
    pending_lists: Vec<ChildPtr>,
    /// Where the next search starts: right after the previous allocation, so one
    /// generation's blocks — and the next generation's — are contiguous (wraps at the end).
    cursor: u64,
    /// The pending map changed since the last persist (so the lists must be rewritten even
    /// if no chunk is dirty).
    pending_changed: bool,
    /// Allocation rounds the last persist needed for its own blocks (design.md §10.13: ≤ 2
    /// unless space is nearly exhausted). For tests and stats.
    persist_passes: u32,
    /// Freed runs a snapshot still pins (design.md §6 rule 1), start → count: never reused
    /// until `release_hold`. While their pending generation is not yet reusable they are
    /// pending like any free; after that they are `masked`.
    held: std::collections::BTreeMap<u64, u64>,
    /// Held runs past their pending generation: allocated in memory (not reusable) but
    /// persisted as free, so a crash (which ends every snapshot) leaks nothing and the
    /// pending lists stay as short as without snapshots. start → count.
    masked: std::collections::BTreeMap<u64, u64>,
    /// Blocks in `held` and in `masked`: the held blocks still pending are the difference.
    held_blocks: u64,
    masked_blocks: u64,
    /// Subtrees of deleted trees still to free (see `orphans.rs`), and the blocks of the
    /// persisted chain, head first.
    orphans: Vec<ChildPtr>,
    orphan_lists: Vec<ChildPtr>,
    orphans_changed: bool,
    /// Times the device grew since `take_growths` (design.md §10.16).
    growths: u32,
}

impl Allocator {
    /// A fresh store of `block_count` blocks; the superblock area is allocated forever.
    ///
    /// Only chunk 0 (which holds the superblock area) starts dirty: a chunk never written has
    /// a null pointer in its index block, which means "all free" (`docs/format.md`), so
    /// creating a large store does not write its whole bitmap.
    pub fn new(block_bytes: u32, block_count: u64) -> Allocator {
        let mut a = Allocator::empty(block_bytes, block_count);
        a.bitmap.clear_dirty();
        let reserved = a.first_data.min(block_count);
        if reserved > 0 {
            a.bitmap.set_range(0, reserved);
        }
        a
    }

    /// Reserves blocks `[0, end)` — the superblock area and the journal region (design.md
    /// §11.1) — which allocation never hands out and frees never reach.
    pub fn reserve_prefix(&mut self, end: u64) {
        let end = end.min(self.bitmap.block_count());
        // A loaded bitmap has the region set already; a new one only the superblock area.
        if end > self.first_data && !self.bitmap.all_set(0, end) {
            self.bitmap.set_range(self.first_data, end - self.first_data);
        }
        self.first_data = self.first_data.max(end);
        self.cursor = self.cursor.max(self.first_data);
    }

    /// The store's block size.
    pub fn block_bytes(&self) -> u32 {
        self.block_bytes
    }

    /// The first block allocation may hand out (after the superblock area and journal).
    pub fn first_data(&self) -> u64 {
        self.first_data
    }

    /// An allocator with every block free and nothing on disk.
    fn empty(block_bytes: u32, block_count: u64) -> Allocator {
        assert!(arbor_format::is_valid_block_bytes(block_bytes), "invalid block size");
        let bitmap = Bitmap::new(bitmap_bits_per_chunk(block_bytes), block_count);
        let first_data = first_data_block(block_bytes);
        let mut a = Allocator {
            block_bytes,
            first_data,
            bitmap,
            ptrs: Vec::new(),
            pending: PendingMap::default(),
            pending_lists: Vec::new(),
            cursor: first_data,
            pending_changed: false,
            persist_passes: 0,
            held: std::collections::BTreeMap::new(),
            masked: std::collections::BTreeMap::new(),
            held_blocks: 0,
            masked_blocks: 0,
            orphans: Vec::new(),
            orphan_lists: Vec::new(),
            orphans_changed: false,
            growths: 0,
        };
        a.resize_levels();
        a
    }

    fn fanout(&self) -> u64 {
        alloc_index_fanout(self.block_bytes) as u64
    }

    /// Sizes `ptrs` for the current chunk count: new entries are null (to be written).
    fn resize_levels(&mut self) {
        let counts = level_counts(self.bitmap.chunk_count(), self.fanout());
        self.ptrs.resize_with(counts.len(), Vec::new);
        for (level, count) in self.ptrs.iter_mut().zip(counts) {
            level.resize(usize::try_from(count).unwrap_or(usize::MAX), ChildPtr::NULL);
        }
    }

    /// A contiguous run of `count` blocks, marked allocated. Next-fit from the end of the
    /// previous allocation (so a generation's blocks are contiguous and written
    /// sequentially), wrapping once to the lowest addresses.
    pub fn alloc(&mut self, count: u64) -> Result<u64, AllocError> {
        assert!(count > 0, "alloc of zero blocks");
        let end = self.bitmap.block_count();
        let from = self.cursor.clamp(self.first_data, end);
        let found = self.bitmap.find_run(from, end, count).or_else(|| {
            let wrap_end = from.saturating_add(count - 1).min(end);
            self.bitmap.find_run(self.first_data, wrap_end, count)
        });
        let start = found.ok_or(AllocError::NoSpace)?;
        self.bitmap.set_range(start, count);
        self.cursor = start + count;
        debug_assert!(self.bitmap.all_set(start, count));
        Ok(start)
    }

    /// Frees a run at once: blocks no durable or in-flight superblock references.
    pub fn free_now(&mut self, addr: u64, count: u64) {
        self.check_freeable(addr, count);
        self.bitmap.clear_range(addr, count);
    }

    /// Frees a run a durable or in-flight superblock may still reference: it joins
    /// pending(`freed_gen`) and stays allocated until `note_durable(g)` with g > freed_gen.
    pub fn free_pending(&mut self, addr: u64, count: u64, freed_gen: u64) {
        self.check_freeable(addr, count);
        self.pending.insert(freed_gen, Run { start: addr, count });
        self.pending_changed = true;
    }

    /// A double free or a free of the superblock area would corrupt the store later (two
    /// owners of one block): refuse it loudly.
    fn check_freeable(&self, addr: u64, count: u64) {
        crate::fault::hit(crate::fault::FaultPoint::AllocatorFree);
        assert!(count > 0, "free of zero blocks");
        assert!(addr >= self.first_data, "freeing the superblock area");
        assert!(self.bitmap.all_set(addr, count), "freeing blocks that are not allocated");
        let run = Run { start: addr, count };
        debug_assert!(!self.pending.overlaps(run), "freeing blocks that are already pending");
    }

    /// Pending blocks that checkpoints alone will make free: every pending block except
    /// those a snapshot holds (they become masked, not free, design.md §6). A block freed
    /// in the open generation needs two checkpoints, one freed earlier at most one
    /// (design.md §10.13).
    pub fn reclaimable_blocks(&self) -> u64 {
        let pending = self.pending.blocks();
        let held_pending = self.held_blocks.checked_sub(self.masked_blocks);
        match held_pending.and_then(|h| pending.checked_sub(h)) {
            Some(reclaimable) => reclaimable,
            None => panic!(
                "{} blocks held, {} of them masked, but {pending} pending",
                self.held_blocks, self.masked_blocks
            ),
        }
    }

    /// Generation `gen` is durable: every pending(g) with g < gen becomes free, except the
    /// parts still held, which become masked (persisted free, kept from reuse).
    pub fn note_durable(&mut self, gen: u64) {
        for (_, runs) in self.pending.take_below(gen) {
            self.pending_changed = true;
            for run in runs {
                let mut at = run.start;
                let held: Vec<(u64, u64)> =
                    self.held.range(run.start..run.end()).map(|(a, c)| (*a, *c)).collect();
                for (h, count) in held {
                    if h > at {
                        self.bitmap.clear_range(at, h - at);
                    }
                    self.masked.insert(h, count);
                    self.masked_blocks += count;
                    self.mark_chunks_dirty(h, count);
                    at = h + count;
                }
                if run.end() > at {
                    self.bitmap.clear_range(at, run.end() - at);
                }
            }
        }
    }

    fn mark_chunks_dirty(&mut self, start: u64, count: u64) {
        let bits = self.bitmap.bits_per_chunk();
        for chunk in start / bits..=(start + count - 1) / bits {
            self.bitmap.mark_dirty(chunk);
        }
    }

    /// Keeps a run (just freed with `free_pending`) from being reused until `release_hold`.
    pub fn hold(&mut self, addr: u64, count: u64) {
        debug_assert!(self
            .held
            .range(..addr + count)
            .next_back()
            .is_none_or(|(a, c)| a + c <= addr));
        self.held.insert(addr, count);
        self.held_blocks += count;
    }

    /// The run may be reused: at once if it was masked, else when its pending generation
    /// allows.
    pub fn release_hold(&mut self, addr: u64, count: u64) {
        let removed = self.held.remove(&addr);
        debug_assert_eq!(removed, Some(count), "released a run that was not held");
        self.held_blocks -= count;
        if self.masked.remove(&addr).is_some() {
            self.masked_blocks -= count;
            self.bitmap.clear_range(addr, count);
        }
    }

    /// Whether `addr` is in a held run (allocated only because a snapshot pins it).
    pub fn is_held(&self, addr: u64) -> bool {
        self.held.range(..=addr).next_back().is_some_and(|(a, c)| addr < a + c)
    }

    /// Chunk `chunk`'s words as persisted: masked runs read as free.
    fn persisted_words(&self, chunk: u64) -> std::borrow::Cow<'_, [u64]> {
        let words = self.bitmap.chunk_words(chunk);
        let bits = self.bitmap.bits_per_chunk();
        let (lo, hi) = (chunk * bits, (chunk + 1) * bits);
        let first = self.masked.range(..lo).next_back().filter(|(a, c)| *a + *c > lo);
        let runs: Vec<(u64, u64)> =
            first.into_iter().chain(self.masked.range(lo..hi)).map(|(a, c)| (*a, *c)).collect();
        if runs.is_empty() {
            return std::borrow::Cow::Borrowed(words);
        }
        let mut out = words.to_vec();
        for (a, c) in runs {
            for block in a.max(lo)..(a + c).min(hi) {
                let bit = block - lo;
                out[(bit / 64) as usize] &= !(1u64 << (bit % 64));
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// The device grew: manage blocks up to `new_block_count` (never shrinks).
    pub fn grow(&mut self, new_block_count: u64) {
        if new_block_count <= self.bitmap.block_count() {
            return;
        }
        let old = self.bitmap.block_count();
        self.growths = self.growths.saturating_add(1);
        self.bitmap.grow(new_block_count);
        // A store smaller than the superblock area (only in tests) reserves what it gains.
        if old < self.first_data {
            self.bitmap.set_range(old, self.first_data.min(new_block_count) - old);
        }
        self.resize_levels();
    }

    /// The device was cut back to `new_block_count` blocks (a file's unused growth tail,
    /// design.md §10.16); every block past it must be free. Bitmap chunks and index blocks
    /// that no longer exist join pending(`gen`), like blocks a persist replaces: the durable
    /// superblocks still reach them.
    pub fn shrink(&mut self, new_block_count: u64, gen: u64) {
        if new_block_count >= self.bitmap.block_count() {
            return;
        }
        assert!(
            new_block_count >= self.first_data,
            "cutting the store to {new_block_count} blocks, inside its reserved prefix"
        );
        self.bitmap.shrink(new_block_count);
        let counts = level_counts(self.bitmap.chunk_count(), self.fanout());
        let mut gone = Vec::new();
        for (level, ptrs) in self.ptrs.iter_mut().enumerate() {
            let keep = counts.get(level).map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX));
            let cut = ptrs.drain(keep.min(ptrs.len())..);
            gone.extend(cut.filter(|p| !p.is_null()).map(|p| p.address()));
        }
        self.resize_levels();
        for addr in gone {
            self.free_pending(addr, 1, gen);
        }
    }

    /// Times the device grew since the last call.
    pub fn take_growths(&mut self) -> u32 {
        std::mem::take(&mut self.growths)
    }

    /// The highest block in use (allocated, pending or held), if any.
    pub fn last_allocated(&self) -> Option<u64> {
        self.bitmap.last_set()
    }

    pub fn is_allocated(&self, addr: u64) -> bool {
        self.bitmap.is_set(addr)
    }

    /// Blocks free now (pending blocks are not free yet).
    pub fn free_blocks(&self) -> u64 {
        self.bitmap.free_count()
    }

    pub fn block_count(&self) -> u64 {
        self.bitmap.block_count()
    }

    /// Marks a free run allocated: `arbor check --repair` restores blocks a tree reaches
    /// that the bitmap calls free. Every block of the run must be free.
    pub fn mark_allocated(&mut self, addr: u64, count: u64) {
        self.bitmap.set_range(addr, count);
    }

    pub fn largest_free_run(&self) -> u64 {
        self.bitmap.largest_free_run()
    }

    /// Every block the allocator's own structures occupy (chunks, index, pending lists), as
    /// of the last persist or load.
    pub fn own_blocks(&self) -> Vec<u64> {
        let tree = self.ptrs.iter().flatten();
        let all = tree.chain(self.pending_lists.iter()).chain(self.orphan_lists.iter());
        all.filter(|p| !p.is_null()).map(|p| p.address()).collect()
    }

    /// Every pending run: `(addr, count, freed_gen)`.
    pub fn pending_blocks(&self) -> Vec<(u64, u64, u64)> {
        let per_gen = self.pending.iter();
        per_gen.flat_map(|(g, runs)| runs.iter().map(move |r| (r.start, r.count, g))).collect()
    }
}

/// Entries per level: `[chunks, level-1 index blocks, ..., 1]`, at least one index level.
fn level_counts(chunk_count: u64, fanout: u64) -> Vec<u64> {
    debug_assert!(fanout >= 2);
    let mut counts = vec![chunk_count];
    let mut n = chunk_count;
    loop {
        n = n.div_ceil(fanout).max(1);
        counts.push(n);
        if n == 1 {
            return counts;
        }
    }
}
