//! The commit journal's on-disk format (design.md §11): the region, journal blocks and their
//! twin copies, records of logical ops, the batch encoder and the chain decoder.
//!
//! ```text
//! byte 0            256 KiB (first_data_block)                         end_block
//! | superblock area | slot 0: copy 0, copy 1 | slot 1: copy 0, copy 1 | ... | tree blocks ...
//!                   |<----------- journal region: 2 × slot_count blocks ----------->|
//!
//! lsn L lives in slot L mod slot_count, at blocks start + 2·slot (copy 0) and +1 (copy 1).
//! ```
//!
//! * Every journal block is written twice, as two adjacent blocks in the same write, and
//!   both copies are byte-identical (their header records the address of copy 0). A batch of
//!   n blocks starting at slot s is one contiguous write of 2n blocks, or two when it runs
//!   past the last slot (the ring's end).
//! * The lsn only grows, so it names one block across all laps of the ring; its slot is a
//!   function of the lsn, so recovery finds block L without an index.
//! * Records (one committed transaction each) are laid end to end in the payloads of a
//!   batch's blocks; a record may span blocks but never batches, and every batch starts with
//!   a record at payload offset 0 and ends at a record boundary.
//!
//! Layers: [`record`] encodes and decodes one record, [`block`] one journal block, its twin
//! and a batch, [`chain`] reassembles records from a run of blocks.

pub mod block;
pub mod chain;
pub mod record;

pub use block::{
    batch_block_count, encode_batch, pick_twin, BatchInfo, BatchStart, BatchWrite, CopyError,
    JournalBlock, JournalHeader, TwinError, TwinPick,
};
pub use chain::{decode_chain, ChainDecode, ChainDecoder, ChainStop, ChainStopReason, Record};
pub use record::{
    Op, RecordBuilder, RecordError, RecordHeader, RecordLimits, RecordMark, RecordReader,
    RecordWriter,
};

use crate::constants::{
    check_block_bytes, first_data_block, journal_payload_bytes, JOURNAL_COPY_COUNT,
    JOURNAL_DEVICE_FRACTION_MAX, JOURNAL_RECORD_BYTES_LIMIT, JOURNAL_RECORD_FRACTION_DEFAULT,
    JOURNAL_SLOT_COUNT_MIN,
};
use crate::error::FormatError;

/// Where the journal lives: a run of blocks right after the superblock area, two per slot.
/// Built by `plan` at create, or `new` from the superblock's fields (validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalRegion {
    block_bytes: u32,
    start_block: u64,
    block_count: u64,
}

impl JournalRegion {
    /// A region of `block_count` blocks from `start_block`: a valid block size, a start after
    /// the superblock area, an even count of at least `2 × JOURNAL_SLOT_COUNT_MIN` blocks,
    /// and an end that fits a device (no `u64` byte offset overflows).
    pub fn new(block_bytes: u32, start_block: u64, block_count: u64) -> Result<Self, FormatError> {
        check_block_bytes(block_bytes)?;
        let corrupt =
            |reason: String| Err(FormatError::corrupt(format!("journal region: {reason}")));
        if start_block < first_data_block(block_bytes) {
            return corrupt(format!("starts at block {start_block}, inside the superblock area"));
        }
        if !block_count.is_multiple_of(JOURNAL_COPY_COUNT)
            || block_count / JOURNAL_COPY_COUNT < JOURNAL_SLOT_COUNT_MIN
        {
            return corrupt(format!(
                "{block_count} blocks is not an even count ≥ {}",
                JOURNAL_COPY_COUNT * JOURNAL_SLOT_COUNT_MIN
            ));
        }
        let end_bytes = start_block
            .checked_add(block_count)
            .and_then(|end| end.checked_mul(u64::from(block_bytes)));
        if end_bytes.is_none() {
            return corrupt(format!("[{start_block}, +{block_count}) overflows a device"));
        }
        Ok(Self { block_bytes, start_block, block_count })
    }

    /// The region a new store reserves: `journal_bytes` (`JOURNAL_BYTES_DEFAULT` unless the
    /// caller chose), at most 1/`JOURNAL_DEVICE_FRACTION_MAX` of `device_bytes` but never
    /// fewer than `JOURNAL_SLOT_COUNT_MIN` slots, rounded down to whole slots, right after
    /// the superblock area. (Whether the device has room for it is the caller's check.)
    pub fn plan(
        block_bytes: u32,
        device_bytes: u64,
        journal_bytes: u64,
    ) -> Result<Self, FormatError> {
        check_block_bytes(block_bytes)?;
        let slot_bytes = JOURNAL_COPY_COUNT * u64::from(block_bytes);
        let bytes = journal_bytes
            .min(device_bytes / JOURNAL_DEVICE_FRACTION_MAX)
            .max(JOURNAL_SLOT_COUNT_MIN * slot_bytes);
        Self::new(
            block_bytes,
            first_data_block(block_bytes),
            bytes / slot_bytes * JOURNAL_COPY_COUNT,
        )
    }

    /// Block size of the store.
    pub fn block_bytes(&self) -> u32 {
        self.block_bytes
    }
    /// First block of the region.
    pub fn start_block(&self) -> u64 {
        self.start_block
    }
    /// Blocks in the region (both copies).
    pub fn block_count(&self) -> u64 {
        self.block_count
    }
    /// First block after the region: where tree blocks may start.
    pub fn end_block(&self) -> u64 {
        self.start_block + self.block_count
    }
    /// Slots: journal blocks the ring holds at once (each stored twice).
    pub fn slot_count(&self) -> u64 {
        self.block_count / JOURNAL_COPY_COUNT
    }
    /// The slot of `lsn`.
    pub fn slot(&self, lsn: u64) -> u64 {
        lsn % self.slot_count()
    }
    /// Block number of copy 0 of `lsn`'s slot: the address both copies record.
    pub fn address(&self, lsn: u64) -> u64 {
        self.start_block + JOURNAL_COPY_COUNT * self.slot(lsn)
    }
    /// Block numbers of both copies of `lsn`.
    pub fn copy_addresses(&self, lsn: u64) -> [u64; 2] {
        let address = self.address(lsn);
        [address, address + 1]
    }
    /// Device byte offset of block `address`.
    pub fn byte_offset(&self, address: u64) -> u64 {
        address * u64::from(self.block_bytes)
    }
    /// Record bytes one journal block carries.
    pub fn payload_bytes(&self) -> usize {
        journal_payload_bytes(self.block_bytes)
    }
    /// The hard limit on one record: it must fit in one batch, and a batch in the ring (and
    /// its length in a `u32`). Decoders use this, never a configurable limit, so a store
    /// written with a larger `journal_record_max` still replays.
    pub fn record_bytes_max(&self) -> u64 {
        (self.slot_count() * self.payload_bytes() as u64).min(JOURNAL_RECORD_BYTES_LIMIT)
    }
    /// The default `journal_record_max`: 1/8 of the ring's payload (design.md §11.5).
    pub fn record_bytes_max_default(&self) -> u64 {
        self.record_bytes_max() / JOURNAL_RECORD_FRACTION_DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::JOURNAL_BYTES_DEFAULT;

    #[test]
    fn plan_default_and_clamped() {
        let r = JournalRegion::plan(4096, 1 << 40, JOURNAL_BYTES_DEFAULT).unwrap();
        assert_eq!(r.start_block(), 64);
        assert_eq!(r.block_count(), 4096);
        assert_eq!(r.slot_count(), 2048);
        assert_eq!(r.end_block(), 64 + 4096);
        assert_eq!(r.record_bytes_max(), 2048 * 3968);
        assert_eq!(r.record_bytes_max_default(), 256 * 3968);
        // A 64 MiB device: 1/8 = 8 MiB.
        let r = JournalRegion::plan(4096, 64 << 20, JOURNAL_BYTES_DEFAULT).unwrap();
        assert_eq!(r.block_count() * 4096, 8 << 20);
        // Odd byte counts round down to whole slots.
        let r = JournalRegion::plan(65536, 1 << 40, 20 * 65536 + 1).unwrap();
        assert_eq!((r.start_block(), r.block_count()), (4, 20));
        // Never fewer than the minimum slots, however small the device.
        let r = JournalRegion::plan(4096, 256 << 10, JOURNAL_BYTES_DEFAULT).unwrap();
        assert_eq!(r.slot_count(), JOURNAL_SLOT_COUNT_MIN);
        assert!(JournalRegion::plan(4000, 1 << 40, JOURNAL_BYTES_DEFAULT).is_err());
    }

    #[test]
    fn slots_and_addresses() {
        let r = JournalRegion::new(4096, 64, 32).unwrap();
        assert_eq!(r.slot_count(), 16);
        assert_eq!(r.copy_addresses(1), [66, 67]);
        assert_eq!(r.copy_addresses(16), [64, 65]);
        assert_eq!(r.copy_addresses(31), [94, 95]);
        assert_eq!(r.byte_offset(66), 66 * 4096);
        assert!(JournalRegion::new(4096, 63, 32).is_err());
        assert!(JournalRegion::new(4096, 64, 33).is_err());
        assert!(JournalRegion::new(4096, 64, 14).is_err());
        assert!(JournalRegion::new(4096, u64::MAX - 10, 32).is_err());
        assert!(JournalRegion::new(4096, 1 << 60, 32).is_err());
    }
}
