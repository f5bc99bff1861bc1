//! Allocator bitmap chunk (kind 4): one bit per block, set = allocated.

use super::{check_alloc_header, header_of, init_alloc_block};
use crate::constants::{bitmap_bits_per_chunk, HEADER_BYTES, TREE_ID_ALLOCATOR};
use crate::error::FormatError;
use crate::header::{BlockHeader, BlockKind};
use crate::le::U64Le;

/// A bitmap chunk over a block buffer. Bit `i` stands for block `first_block() + i`.
pub struct BitmapChunk<B> {
    buf: B,
}

impl<B: AsRef<[u8]>> BitmapChunk<B> {
    /// Validates a chunk read from disk: kind, owner, level 0, no items, first block a
    /// multiple of the bits per chunk.
    pub fn decode(buf: B) -> Result<Self, FormatError> {
        let (block_bytes, header) = check_alloc_header(buf.as_ref(), BlockKind::AllocBitmap)?;
        let bits = bitmap_bits_per_chunk(block_bytes);
        if header.level() != 0 || header.item_count() != 0 || header.aux32() != 0 {
            return Err(FormatError::corrupt(format!(
                "bitmap chunk: level {}, item_count {}, aux32 {} (all must be 0)",
                header.level(),
                header.item_count(),
                header.aux32()
            )));
        }
        if header.aux64() % bits != 0 {
            return Err(FormatError::corrupt(format!(
                "bitmap chunk: first block {} is not a multiple of {bits}",
                header.aux64()
            )));
        }
        Ok(Self { buf })
    }

    /// The header.
    pub fn header(&self) -> BlockHeader {
        header_of(self.buf.as_ref())
    }
    /// The block bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
    /// Bits in the chunk.
    pub fn bits(&self) -> u64 {
        (self.buf.as_ref().len().saturating_sub(HEADER_BYTES) as u64) * 8
    }
    /// First block number covered.
    pub fn first_block(&self) -> u64 {
        self.header().aux64()
    }

    /// Word `index` (64 bits, bit j = bit index·64 + j); out-of-range words read as allocated.
    fn word(&self, index: u64) -> u64 {
        let at = HEADER_BYTES + (index as usize) * 8;
        self.buf
            .as_ref()
            .get(at..at + 8)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map_or(u64::MAX, u64::from_le_bytes)
    }

    /// Whether bit `bit` is set (allocated). Bits past the end read as allocated.
    pub fn get(&self, bit: u64) -> bool {
        bit < self.bits() && self.word(bit / 64) & (1 << (bit % 64)) != 0
    }

    /// Number of set bits.
    pub fn count_set(&self) -> u64 {
        (0..self.bits() / 64).map(|w| u64::from(self.word(w).count_ones())).sum()
    }

    /// The first bit of a run of `count` clear bits, searching from `hint` to the end and then
    /// from the start (a run never wraps). `None` if there is none or `count` is 0. Reads a
    /// word at a time: full and empty words cost one step each.
    pub fn find_free_run(&self, count: u64, hint: u64) -> Option<u64> {
        let bits = self.bits();
        if count == 0 || count > bits {
            return None;
        }
        let hint = if hint >= bits { 0 } else { hint };
        self.scan(hint, bits, count)
            .or_else(|| self.scan(0, hint.saturating_add(count - 1).min(bits), count))
    }

    /// The first run of `count` clear bits lying inside `[from, to)`.
    fn scan(&self, from: u64, to: u64, count: u64) -> Option<u64> {
        let (mut pos, mut run_start, mut run_len) = (from, from, 0u64);
        while pos < to {
            let offset = pos % 64;
            let avail = (64 - offset).min(to - pos);
            let mask = if avail == 64 { u64::MAX } else { (1u64 << avail) - 1 };
            let free = (!self.word(pos / 64) >> offset) & mask;
            // Clear bits continuing the current run.
            let ones = u64::from(free.trailing_ones()).min(avail);
            if ones > 0 {
                if run_len == 0 {
                    run_start = pos;
                }
                run_len += ones;
                if run_len >= count {
                    return Some(run_start);
                }
            }
            if ones == avail {
                pos += avail;
                continue;
            }
            // An allocated bit ends the run: skip every allocated bit that follows.
            run_len = 0;
            let used = u64::from((free >> ones).trailing_zeros()).min(avail - ones);
            pos += ones + used;
        }
        None
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> BitmapChunk<B> {
    /// Formats `buf` as a chunk with every bit clear. `first_block` is a multiple of the bits
    /// per chunk.
    pub fn init(mut buf: B, address: u64, generation: u64, first_block: u64) -> Self {
        let mut header =
            BlockHeader::new(BlockKind::AllocBitmap, 0, address, generation, TREE_ID_ALLOCATOR);
        header.aux64 = U64Le::new(first_block);
        init_alloc_block(buf.as_mut(), header);
        Self { buf }
    }

    /// Sets the header's address and generation (the chunk was COWed to a new block).
    pub fn set_location(&mut self, address: u64, generation: u64) {
        super::update_header(self.buf.as_mut(), |h| {
            h.address = U64Le::new(address);
            h.generation = U64Le::new(generation);
        });
    }

    /// Mutable block bytes (to seal).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// The buffer.
    pub fn into_inner(self) -> B {
        self.buf
    }

    /// Marks bit `bit` allocated.
    pub fn set(&mut self, bit: u64) {
        self.set_range(bit, 1);
    }

    /// Marks bit `bit` free.
    pub fn clear(&mut self, bit: u64) {
        self.clear_range(bit, 1);
    }

    /// Marks bits `[start, start + count)` allocated (clamped to the chunk).
    pub fn set_range(&mut self, start: u64, count: u64) {
        self.update_range(start, count, |word, mask| word | mask);
    }

    /// Marks bits `[start, start + count)` free (clamped to the chunk).
    pub fn clear_range(&mut self, start: u64, count: u64) {
        self.update_range(start, count, |word, mask| word & !mask);
    }

    fn update_range(&mut self, start: u64, count: u64, op: impl Fn(u64, u64) -> u64) {
        let end = start.saturating_add(count).min(self.bits());
        debug_assert!(start.saturating_add(count) <= self.bits(), "bit range past the chunk");
        let mut pos = start;
        while pos < end {
            let offset = pos % 64;
            let len = (64 - offset).min(end - pos);
            let mask = if len == 64 { u64::MAX } else { ((1u64 << len) - 1) << offset };
            let index = pos / 64;
            let word = op(self.word(index), mask);
            let at = HEADER_BYTES + (index as usize) * 8;
            if let Some(dst) = self.buf.as_mut().get_mut(at..at + 8) {
                dst.copy_from_slice(&word.to_le_bytes());
            }
            pos += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_find(chunk: &BitmapChunk<Vec<u8>>, count: u64, hint: u64) -> Option<u64> {
        let bits = chunk.bits();
        let hint = if hint >= bits { 0 } else { hint };
        let fits = |s: u64| s + count <= bits && (s..s + count).all(|b| !chunk.get(b));
        (hint..bits).find(|&s| fits(s)).or_else(|| (0..hint).find(|&s| fits(s)))
    }

    #[test]
    fn bits_and_runs() {
        let mut chunk = BitmapChunk::init(vec![0u8; 4096], 70, 1, 0);
        assert_eq!(chunk.bits(), 32_256);
        assert_eq!(chunk.count_set(), 0);
        chunk.set_range(10, 100);
        assert!(chunk.get(10) && chunk.get(109) && !chunk.get(110) && !chunk.get(9));
        assert_eq!(chunk.count_set(), 100);
        chunk.clear(50);
        assert_eq!(chunk.count_set(), 99);
        assert_eq!(chunk.find_free_run(1, 10), Some(50));
        assert_eq!(chunk.find_free_run(2, 10), Some(110));
        assert_eq!(chunk.find_free_run(10, 0), Some(0));
        assert_eq!(chunk.find_free_run(11, 0), Some(110));
        chunk.set_range(0, chunk.bits());
        assert_eq!(chunk.find_free_run(1, 0), None);
        assert!(!chunk.get(chunk.bits()) || chunk.get(chunk.bits()));
        let bytes = chunk.into_inner();
        assert!(BitmapChunk::decode(&bytes[..]).is_ok());
    }

    #[test]
    fn find_matches_naive() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut chunk = BitmapChunk::init(vec![0u8; 4096], 70, 1, 0);
            let density = next() % 100;
            for bit in 0..chunk.bits() {
                if next() % 100 < density {
                    chunk.set(bit);
                }
            }
            for _ in 0..20 {
                let count = 1 + next() % 40;
                let hint = next() % (chunk.bits() + 10);
                let got = chunk.find_free_run(count, hint);
                assert_eq!(
                    got,
                    naive_find(&chunk, count, hint),
                    "round {round} n {count} h {hint}"
                );
            }
        }
    }
}
