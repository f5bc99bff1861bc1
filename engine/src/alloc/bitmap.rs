//! The in-memory free-space bitmap: one bit per block (set = allocated), in 64-bit words,
//! split into chunks of `bits_per_chunk` bits that mirror the on-disk bitmap chunks
//! (`docs/format.md`, "Allocator"). Per chunk it keeps a free count (so searches skip full
//! chunks instead of scanning them) and a dirty flag (so a commit rewrites only the chunks
//! that changed since the last persist, design.md §10.13).
//!
//! Bits at or past `block_count` inside the last chunk are kept set: they are never handed
//! out, and the chunk's free count only counts real blocks.

/// Bits per word of the in-memory bitmap.
const WORD_BITS: u64 = 64;

/// The bitmap and its per-chunk bookkeeping.
pub(super) struct Bitmap {
    words: Vec<u64>,
    block_count: u64,
    bits_per_chunk: u64,
    chunk_free: Vec<u64>,
    chunk_dirty: Vec<bool>,
    dirty_count: u64,
    free_count: u64,
}

impl Bitmap {
    /// A bitmap over `block_count` blocks, every block free (the caller reserves what it must)
    /// and every chunk dirty (nothing of it is on disk yet).
    pub(super) fn new(bits_per_chunk: u64, block_count: u64) -> Bitmap {
        let whole_words = bits_per_chunk / WORD_BITS * WORD_BITS == bits_per_chunk;
        assert!(bits_per_chunk > 0 && whole_words, "chunks are whole words");
        let mut bitmap = Bitmap {
            words: Vec::new(),
            block_count: 0,
            bits_per_chunk,
            chunk_free: Vec::new(),
            chunk_dirty: Vec::new(),
            dirty_count: 0,
            free_count: 0,
        };
        bitmap.grow(block_count);
        bitmap
    }

    pub(super) fn block_count(&self) -> u64 {
        self.block_count
    }

    pub(super) fn bits_per_chunk(&self) -> u64 {
        self.bits_per_chunk
    }

    pub(super) fn chunk_count(&self) -> u64 {
        self.chunk_free.len() as u64
    }

    pub(super) fn free_count(&self) -> u64 {
        self.free_count
    }

    pub(super) fn chunk_free(&self, chunk: u64) -> u64 {
        self.chunk_free.get(to_index(chunk)).copied().unwrap_or(0)
    }

    pub(super) fn is_dirty(&self, chunk: u64) -> bool {
        self.chunk_dirty.get(to_index(chunk)).copied().unwrap_or(false)
    }

    pub(super) fn dirty_count(&self) -> u64 {
        self.dirty_count
    }

    /// Indices of the dirty chunks, ascending.
    pub(super) fn dirty_chunks(&self) -> Vec<u64> {
        let dirty = self.chunk_dirty.iter().enumerate().filter(|(_, d)| **d);
        dirty.map(|(k, _)| k as u64).collect()
    }

    pub(super) fn mark_dirty(&mut self, chunk: u64) {
        let Some(flag) = self.chunk_dirty.get_mut(to_index(chunk)) else { return };
        if !*flag {
            *flag = true;
            self.dirty_count += 1;
        }
    }

    pub(super) fn clear_dirty(&mut self) {
        self.chunk_dirty.iter_mut().for_each(|d| *d = false);
        self.dirty_count = 0;
    }

    /// Whether block `addr` is allocated; false past the end (no such block).
    pub(super) fn is_set(&self, addr: u64) -> bool {
        if addr >= self.block_count {
            return false;
        }
        let word = self.words[to_index(addr / WORD_BITS)];
        word & (1u64 << (addr % WORD_BITS)) != 0
    }

    /// Whether every block of `[start, start + count)` is allocated (false past the end).
    pub(super) fn all_set(&self, start: u64, count: u64) -> bool {
        let Some(end) = start.checked_add(count) else { return false };
        end <= self.block_count && self.next_clear(start, end).is_none()
    }

    /// Whether every block of `[start, start + count)` is free (false past the end).
    pub(super) fn all_clear(&self, start: u64, count: u64) -> bool {
        let Some(end) = start.checked_add(count) else { return false };
        end <= self.block_count && self.next_set(start, end).is_none()
    }

    /// Marks `[start, start + count)` allocated. Every block must be free and in range.
    pub(super) fn set_range(&mut self, start: u64, count: u64) {
        assert!(self.all_clear(start, count), "allocating blocks that are not free");
        self.flip_range(start, count, true);
    }

    /// Marks `[start, start + count)` free. Every block must be allocated and in range.
    pub(super) fn clear_range(&mut self, start: u64, count: u64) {
        assert!(self.all_set(start, count), "freeing blocks that are not allocated");
        self.flip_range(start, count, false);
    }

    /// Flips a range whose bits all hold `!set`, keeping the counts and dirty flags.
    fn flip_range(&mut self, start: u64, count: u64, set: bool) {
        let end = start + count;
        let mut pos = start;
        while pos < end {
            let chunk = pos / self.bits_per_chunk;
            let chunk_end = ((chunk + 1) * self.bits_per_chunk).min(end);
            let n = chunk_end - pos;
            let free = &mut self.chunk_free[to_index(chunk)];
            if set {
                debug_assert!(*free >= n);
                *free -= n;
                self.free_count -= n;
            } else {
                *free += n;
                self.free_count += n;
                debug_assert!(*free <= self.bits_per_chunk);
            }
            self.mark_dirty(chunk);
            self.flip_words(pos, chunk_end);
            pos = chunk_end;
        }
    }

    /// XORs the bits of `[start, end)`.
    fn flip_words(&mut self, start: u64, end: u64) {
        let mut pos = start;
        while pos < end {
            let bit = pos % WORD_BITS;
            let n = (WORD_BITS - bit).min(end - pos);
            let mask = if n == WORD_BITS { u64::MAX } else { ((1u64 << n) - 1) << bit };
            self.words[to_index(pos / WORD_BITS)] ^= mask;
            pos += n;
        }
    }

    /// The first free block in `[from, end)` (`end` clamped to the block count).
    pub(super) fn next_clear(&self, from: u64, end: u64) -> Option<u64> {
        self.next_with(from, end, u64::MAX)
    }

    /// The first allocated block in `[from, end)` (`end` clamped to the block count).
    pub(super) fn next_set(&self, from: u64, end: u64) -> Option<u64> {
        self.next_with(from, end, 0)
    }

    /// Word-at-a-time search for the first bit in `[from, end)` that differs from the
    /// matching bit of `skip` (all ones: find a clear bit; zero: find a set bit).
    fn next_with(&self, from: u64, end: u64, skip: u64) -> Option<u64> {
        let end = end.min(self.block_count);
        let mut pos = from;
        while pos < end {
            let word = self.words[to_index(pos / WORD_BITS)] ^ skip;
            let masked = word & (u64::MAX << (pos % WORD_BITS));
            if masked != 0 {
                let hit = pos - pos % WORD_BITS + u64::from(masked.trailing_zeros());
                return (hit < end).then_some(hit);
            }
            pos = pos - pos % WORD_BITS + WORD_BITS;
        }
        None
    }

    /// The lowest start of a run of `count` free blocks inside `[from, end)`. Skips chunks
    /// with no free block without reading their words.
    pub(super) fn find_run(&self, from: u64, end: u64, count: u64) -> Option<u64> {
        debug_assert!(count > 0);
        let end = end.min(self.block_count);
        let mut pos = from;
        // Each iteration moves `pos` forward by at least one block: bounded by the range.
        while pos < end && end - pos >= count {
            let chunk = pos / self.bits_per_chunk;
            let chunk_end = (chunk + 1) * self.bits_per_chunk;
            if self.chunk_free(chunk) == 0 {
                pos = chunk_end;
                continue;
            }
            let Some(start) = self.next_clear(pos, chunk_end.min(end)) else {
                pos = chunk_end;
                continue;
            };
            let want_end = start.saturating_add(count);
            if want_end > end {
                return None;
            }
            match self.next_set(start, want_end) {
                None => return Some(start),
                Some(blocked) => pos = blocked + 1,
            }
        }
        None
    }

    /// Length of the longest run of free blocks.
    pub(super) fn largest_free_run(&self) -> u64 {
        let mut best = 0;
        let mut pos = 0;
        while let Some(start) = self.next_clear(pos, self.block_count) {
            let stop = self.next_set(start, self.block_count).unwrap_or(self.block_count);
            best = best.max(stop - start);
            pos = stop;
        }
        best
    }

    /// Grows to `block_count` blocks, all free. Only the old last chunk becomes dirty: it may
    /// have gained blocks, and its index path must be rewritten to point at the new chunks.
    /// New chunks stay clean: never written, their index entries are null, which means "all
    /// free" on disk (`docs/format.md`), so growth writes no bitmap it does not have to.
    pub(super) fn grow(&mut self, block_count: u64) {
        assert!(block_count >= self.block_count, "the bitmap never shrinks");
        if block_count == self.block_count {
            return;
        }
        let chunk_count = block_count.div_ceil(self.bits_per_chunk);
        let word_count = chunk_count * (self.bits_per_chunk / WORD_BITS);
        // Words past the old end are created all-set (out of range), then the new blocks
        // are cleared by the ordinary path, which keeps counts and dirty flags right.
        self.words.resize(to_index(word_count), u64::MAX);
        self.chunk_free.resize(to_index(chunk_count), 0);
        self.chunk_dirty.resize(to_index(chunk_count), false);
        let old = self.block_count;
        let old_chunk_count = old.div_ceil(self.bits_per_chunk);
        self.block_count = block_count;
        self.flip_range(old, block_count - old, false);
        for chunk in old_chunk_count..chunk_count {
            if std::mem::replace(&mut self.chunk_dirty[to_index(chunk)], false) {
                self.dirty_count -= 1;
            }
        }
        if old_chunk_count > 0 {
            self.mark_dirty(old_chunk_count - 1);
        }
    }

    /// Cuts the bitmap back to `block_count` blocks (a file's unused tail, design.md §10.16).
    /// Every block cut must be free. Chunks past the new end go; the new last chunk becomes
    /// dirty (its bits past the end now read as allocated).
    pub(super) fn shrink(&mut self, block_count: u64) {
        let old = self.block_count;
        assert!(block_count > 0 && block_count <= old, "shrink of {old} blocks to {block_count}");
        assert!(
            self.all_clear(block_count, old - block_count),
            "cutting blocks in use: the last is {:?}, the new end {block_count}",
            self.last_set()
        );
        // Bits past the end are kept set: flipping the cut range keeps the counts right.
        self.flip_range(block_count, old - block_count, true);
        let chunk_count = block_count.div_ceil(self.bits_per_chunk);
        let cut_dirty = self.chunk_dirty.drain(to_index(chunk_count)..).filter(|d| *d).count();
        self.dirty_count -= cut_dirty as u64;
        self.chunk_free.truncate(to_index(chunk_count));
        self.words.truncate(to_index(chunk_count * (self.bits_per_chunk / WORD_BITS)));
        self.block_count = block_count;
        self.mark_dirty(chunk_count - 1);
    }

    /// The highest allocated block, if any.
    pub(super) fn last_set(&self) -> Option<u64> {
        let mut word = to_index(self.block_count.div_ceil(WORD_BITS));
        while word > 0 {
            word -= 1;
            let first = word as u64 * WORD_BITS;
            // Bits past the block count are set but are no blocks.
            let valid = self.block_count - first;
            let mask = if valid >= WORD_BITS { u64::MAX } else { (1u64 << valid) - 1 };
            let bits = self.words[word] & mask;
            if bits != 0 {
                return Some(first + u64::from(WORD_BITS as u32 - 1 - bits.leading_zeros()));
            }
        }
        None
    }

    /// The words of chunk `chunk`, as they go to disk.
    pub(super) fn chunk_words(&self, chunk: u64) -> &[u64] {
        let per = to_index(self.bits_per_chunk / WORD_BITS);
        let start = to_index(chunk) * per;
        &self.words[start..start + per]
    }

    /// Replaces chunk `chunk`'s words with loaded ones. Bits past the block count are forced
    /// set; the free count is recounted. The chunk stays clean (it matches the disk).
    pub(super) fn load_chunk(&mut self, chunk: u64, words: &[u64]) {
        let per = to_index(self.bits_per_chunk / WORD_BITS);
        assert_eq!(words.len(), per, "a chunk is a fixed number of words");
        let start = to_index(chunk) * per;
        let first_block = chunk * self.bits_per_chunk;
        let mut free = 0;
        for (i, &w) in words.iter().enumerate() {
            let word_first = first_block + i as u64 * WORD_BITS;
            let mut w = w;
            if word_first + WORD_BITS > self.block_count {
                let valid = self.block_count.saturating_sub(word_first);
                w |= if valid == 0 { u64::MAX } else { u64::MAX << valid };
            }
            free += u64::from(w.count_zeros());
            self.words[start + i] = w;
        }
        let old_free = std::mem::replace(&mut self.chunk_free[to_index(chunk)], free);
        self.free_count = self.free_count - old_free + free;
    }
}

/// A block or chunk number as an index into an in-memory vector. Every caller has bounded
/// the number by the bitmap's size, which lives in memory, so it fits a `usize`.
fn to_index(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_counts_and_dirty() {
        let mut b = Bitmap::new(128, 300);
        assert_eq!(b.chunk_count(), 3);
        assert_eq!(b.free_count(), 300);
        assert_eq!(b.chunk_free(2), 44);
        b.clear_dirty();
        b.set_range(120, 20);
        assert_eq!(b.dirty_chunks(), vec![0, 1]);
        assert_eq!(b.free_count(), 280);
        assert!(b.all_set(120, 20) && !b.is_set(119) && !b.is_set(140));
        b.clear_range(125, 3);
        assert_eq!(b.free_count(), 283);
        assert!(!b.is_set(300) && !b.all_clear(299, 2));
    }

    #[test]
    fn find_run_skips_and_spans() {
        let mut b = Bitmap::new(128, 1000);
        b.set_range(0, 250);
        b.set_range(260, 5);
        assert_eq!(b.find_run(0, 1000, 10), Some(250));
        assert_eq!(b.find_run(0, 1000, 11), Some(265));
        assert_eq!(b.find_run(0, 270, 11), None);
        assert_eq!(b.find_run(990, 1000, 10), Some(990));
        assert_eq!(b.find_run(991, 1000, 10), None);
        b.set_range(265, 735);
        assert_eq!(b.largest_free_run(), 10);
        assert_eq!(b.find_run(0, 1000, 1), Some(250));
    }

    #[test]
    fn grow_and_load_chunk() {
        let mut b = Bitmap::new(128, 100);
        b.set_range(0, 100);
        b.clear_dirty();
        b.grow(300);
        assert_eq!(b.free_count(), 200);
        assert_eq!(b.dirty_chunks(), vec![0]);
        assert!(!b.is_set(100) && !b.is_set(299) && !b.is_set(300));
        let words = b.chunk_words(2).to_vec();
        assert_eq!(words[0], u64::MAX << 44);
        assert_eq!(words[1], u64::MAX);
        b.load_chunk(2, &[0, 0]);
        assert_eq!(b.chunk_free(2), 44);
        assert_eq!(b.free_count(), 200);
    }
    #[test]
    fn shrink_cuts_free_tail_chunks() {
        let mut b = Bitmap::new(128, 300);
        b.set_range(0, 100);
        b.set_range(130, 2);
        b.clear_dirty();
        assert_eq!(b.last_set(), Some(131));
        b.shrink(140);
        assert_eq!((b.block_count(), b.chunk_count(), b.free_count()), (140, 2, 140 - 102));
        assert_eq!(b.dirty_chunks(), vec![1]);
        assert_eq!(b.chunk_free(1), 10);
        assert!(!b.is_set(139) && !b.is_set(140));
        assert_eq!(b.chunk_words(1)[0], 0b1100 | (u64::MAX << 12));
        assert_eq!(b.find_run(0, 140, 8), Some(100));
        b.grow(300);
        assert_eq!((b.free_count(), b.chunk_free(2)), (300 - 102, 44));
        b.clear_range(130, 2);
        assert_eq!(b.last_set(), Some(99));
        b.shrink(100);
        assert_eq!((b.chunk_count(), b.free_count(), b.last_set()), (1, 0, Some(99)));
    }

    #[test]
    #[should_panic(expected = "cutting blocks in use")]
    fn shrink_refuses_blocks_in_use() {
        let mut b = Bitmap::new(128, 300);
        b.set_range(200, 1);
        b.shrink(200);
    }
}
