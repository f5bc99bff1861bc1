//! Reading the journal at open (design.md §11.7): the chain of blocks from the checkpoint's
//! replay lsn, taking either copy of each block, and where the chain stops, the verdict:
//! a verifying block of this store from a *later* flush batch anywhere in the ring means
//! the stop is damage to acknowledged history (`Error::Corrupt` naming the block); without
//! one, the stop is the torn tail of the last batch, whose commits were never acknowledged,
//! and it is dropped (the next batch overwrites it).

use arbor_format::journal::{ChainDecoder, ChainStop, ChainStopReason, JournalBlock, Record};
use arbor_format::JournalRegion;

use crate::io::{dev_error, AlignedBuf};
use crate::store::Store;
use crate::{Error, Result};

/// Slots read per device read while following the chain or scanning the ring.
const SLOTS_PER_READ: u64 = 128;

/// What the journal holds past the checkpoint.
pub(crate) struct Scanned {
    /// Complete records in chain order (the caller skips those the checkpoint covers).
    pub records: Vec<Record>,
    /// Where the next batch goes: the chain's stop, or past every block a torn batch left
    /// beyond it (see `scan`).
    pub next_lsn: u64,
    /// Blocks of a torn batch lie beyond the stop: the next batch skips their lsns, and open
    /// must checkpoint so that replay starts past the gap this leaves.
    pub skipped_leftovers: bool,
    /// The crc of the last accepted block (0 if none).
    pub prev_crc: u32,
    /// Records of a torn last batch that were dropped.
    pub dropped_records: u64,
}

/// Reads `count` slots from `lsn`'s slot on (not past the ring's end): both copies each.
fn read_slots(s: &Store, region: &JournalRegion, lsn: u64, count: u64) -> Result<AlignedBuf> {
    let block_bytes = region.block_bytes() as usize;
    let mut buf = AlignedBuf::zeroed(2 * count as usize * block_bytes, s.align);
    let offset = region.byte_offset(region.address(lsn));
    s.dev.read_at(offset, &mut buf).map_err(dev_error(&*s.dev, "read the journal"))?;
    Ok(buf)
}

/// Follows the chain from `replay_lsn` and decides where it ends (see the module comment).
pub(crate) fn scan(
    s: &Store,
    region: JournalRegion,
    uuid: [u8; 16],
    replay_lsn: u64,
) -> Result<Scanned> {
    let block_bytes = region.block_bytes() as usize;
    let mut decoder = ChainDecoder::new(region, uuid, replay_lsn);
    let mut records = Vec::new();
    let stop = 'chain: loop {
        let lsn = decoder.next_lsn();
        let count = SLOTS_PER_READ.min(region.slot_count() - region.slot(lsn));
        let buf = read_slots(s, &region, lsn, count)?;
        for twin in buf.chunks_exact(2 * block_bytes) {
            let (copy0, copy1) = twin.split_at(block_bytes);
            if let Err(stop) = decoder.push(copy0, copy1, &mut records) {
                break 'chain stop;
            }
        }
    };
    // Verifying blocks beyond the stop are left by the torn batch: their lsns are not
    // reused, or a later replay that starts at one of them (no block before it to chain to)
    // would take a leftover for a record of this life.
    let max_lsn = match stop.reason {
        ChainStopReason::RingWrapped => 0,
        _ => find_later_batch(s, &region, &uuid, &stop)?,
    };
    let next_lsn = stop.lsn.max(max_lsn + 1);
    Ok(Scanned {
        records,
        next_lsn,
        skipped_leftovers: next_lsn > stop.lsn,
        prev_crc: decoder.last_crc().unwrap_or(0),
        dropped_records: decoder.dropped_records(),
    })
}

/// Scans every slot of the ring for a verifying block of this store written in a flush
/// batch after the one the chain stopped in: `Error::Corrupt` if there is one. Otherwise
/// returns the largest lsn of any verifying block of this store.
fn find_later_batch(
    s: &Store,
    region: &JournalRegion,
    uuid: &[u8; 16],
    stop: &ChainStop,
) -> Result<u64> {
    let mut max_lsn = 0;
    let block_bytes = region.block_bytes() as usize;
    let mut slot = 0;
    while slot < region.slot_count() {
        let count = SLOTS_PER_READ.min(region.slot_count() - slot);
        // The slot numbers of lsns 0..slot_count are the slots themselves.
        let buf = read_slots(s, region, slot, count)?;
        for (i, twin) in buf.chunks_exact(2 * block_bytes).enumerate() {
            let address = region.address(slot + i as u64);
            for copy in twin.chunks_exact(block_bytes) {
                let Ok(block) = JournalBlock::decode(copy, address) else { continue };
                if &block.journal().store_uuid() != uuid {
                    continue;
                }
                max_lsn = max_lsn.max(block.lsn());
                if stop.is_later_batch(&block) {
                    return Err(Error::corrupt(
                        stop.address,
                        format!(
                            "{stop}; journal block lsn {} at block {address} was written by a \
                             later flush batch (from lsn {}), so the commits at the stop were \
                             acknowledged: the journal is damaged, not torn",
                            block.lsn(),
                            block.journal().batch_first_lsn()
                        ),
                    ));
                }
            }
        }
        slot += count;
    }
    Ok(max_lsn)
}
