//! Reassembling records from a run of journal blocks (design.md §11.7).
//!
//! Recovery reads the twin at the slot of each lsn from the superblock's `replay_lsn` on and
//! feeds it to a [`ChainDecoder`], which accepts a block only if a copy verifies with the
//! expected lsn and store, its `prev_crc` is the crc of the block accepted before it, and its
//! framing agrees with the record stream so far. It yields each record whose bytes are all in
//! accepted blocks and whose crc holds, and reports where and why the chain stops. Deciding
//! whether the stop is a torn tail (drop it) or damage to acknowledged history (`Corrupt`)
//! needs a scan past the stop for a later batch, which is the engine's: the stop carries the
//! facts it needs (the stop lsn, the batch of the last accepted block).
//!
//! Framing rules checked here: the first block read may begin inside a record (its bytes
//! before `first_record` are skipped: they belong to a record already in the checkpoint); a
//! batch's first block starts a record at offset 0; within a batch the records continue from
//! block to block, so `first_record` must be where the record in progress ends; and a batch's
//! last block ends at a record boundary. One exception, written by recovery itself: after a
//! torn batch, the next append starts a new batch at the stop lsn, so a batch may begin
//! while the previous batch is short of its `batch_last_lsn`. The record that was in
//! progress there was never complete, never acknowledged, and is dropped (counted in
//! `dropped_records`).

use crate::constants::JOURNAL_RECORD_HEADER_BYTES;
use crate::error::FormatError;
use crate::journal::block::{pick_twin, JournalBlock, TwinError};
use crate::journal::record::{record_crc, RecordHeader, RecordReader};
use crate::journal::JournalRegion;
use core::fmt;

/// One complete record found in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The commit's seq.
    pub seq: u64,
    /// Lsn of the block where the record starts.
    pub lsn: u64,
    /// The record's bytes (header and ops), crc verified.
    pub bytes: Vec<u8>,
}

impl Record {
    /// Its ops (see `RecordReader`).
    pub fn ops(&self, region: &JournalRegion) -> Result<RecordReader<'_>, FormatError> {
        RecordReader::new(&self.bytes, region.block_bytes(), region.record_bytes_max())
    }
}

/// Why a chain stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStopReason {
    /// Neither copy of the twin is the expected block: both damaged (`both_invalid`), or a
    /// verifying copy of another lap (`found_lsn`) or another store — the written end.
    NoBlock(Box<TwinError>),
    /// The block verifies but does not follow the one before it.
    PrevCrcMismatch {
        /// The crc of the block accepted before it.
        expected: u32,
        /// The block's `prev_crc`.
        found: u32,
    },
    /// The block verifies and follows, but its batch fields, framing or a record in it
    /// contradict the stream: never a torn write (every block verified), so damage or a bug.
    Framing(FormatError),
    /// As many blocks as the ring holds were accepted: the next lsn's slot holds the first.
    RingWrapped,
    /// The caller had no more blocks (`decode_chain` only).
    End,
}

impl fmt::Display for ChainStopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBlock(e) => write!(f, "{e}"),
            Self::PrevCrcMismatch { expected, found } => write!(
                f,
                "prev_crc {found:#010x} is not the crc {expected:#010x} of the block before"
            ),
            Self::Framing(e) => write!(f, "{e}"),
            Self::RingWrapped => f.write_str("a whole ring of blocks read"),
            Self::End => f.write_str("no more blocks"),
        }
    }
}

/// Where and why a chain stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStop {
    /// The first lsn not accepted: where the next append goes if the stop is a torn tail.
    pub lsn: u64,
    /// Block number of copy 0 of its slot.
    pub address: u64,
    /// Why.
    pub reason: ChainStopReason,
    /// `(lsn, batch_first_lsn, batch_last_lsn)` of the last accepted block: the stop is inside
    /// that batch when its lsn < its batch_last_lsn.
    pub last_accepted: Option<(u64, u64, u64)>,
    /// Bytes of an incomplete record at the stop (never acknowledged; not yielded).
    pub partial_record_bytes: usize,
}

impl ChainStop {
    /// Whether `block` — a verifying block of this store found in the ring past the stop —
    /// belongs to a flush batch written after the stop lsn's block was flushed: its
    /// `flushed_below` passes the stop. One such block means the stop is damage to flushed,
    /// possibly acknowledged history (`Error::Corrupt`); blocks of the stop's own batch, of
    /// batches in flight with it, or of older laps are what a torn tail leaves, and the tail
    /// is dropped (design.md §11.7).
    pub fn is_later_batch(&self, block: &JournalBlock<'_>) -> bool {
        block.journal().flushed_below() > self.lsn
    }
}

impl fmt::Display for ChainStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal chain stops at lsn {} (block {}): {}",
            self.lsn, self.address, self.reason
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Before the first record start of the chain's first block.
    Skipping,
    /// At a record boundary: the next payload byte starts a record.
    Boundary,
    /// Inside a record; `record` holds its bytes so far.
    InRecord,
}

/// Incremental chain decoder: feed it the twin of `next_lsn()` (read at
/// `region.copy_addresses(next_lsn())`) until it stops. The loop is bounded: after
/// `slot_count` blocks it stops with `RingWrapped`.
pub struct ChainDecoder {
    region: JournalRegion,
    uuid: [u8; 16],
    next_lsn: u64,
    /// crc and `(lsn, batch_first, batch_last)` of the last accepted block.
    last: Option<(u32, (u64, u64, u64))>,
    blocks_accepted: u64,
    stream: Stream,
    record: Vec<u8>,
    record_lsn: u64,
    last_seq: Option<u64>,
    dropped_records: u64,
    stop: Option<ChainStop>,
}

impl ChainDecoder {
    /// A decoder reading from `start_lsn` (the superblock's `replay_lsn`) for store `uuid`.
    pub fn new(region: JournalRegion, uuid: [u8; 16], start_lsn: u64) -> Self {
        Self {
            region,
            uuid,
            next_lsn: start_lsn,
            last: None,
            blocks_accepted: 0,
            stream: Stream::Skipping,
            record: Vec::new(),
            record_lsn: 0,
            last_seq: None,
            dropped_records: 0,
            stop: None,
        }
    }

    /// The lsn whose twin to feed next.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The stop, once the chain has stopped.
    pub fn stop(&self) -> Option<&ChainStop> {
        self.stop.as_ref()
    }

    /// crc of the last accepted block: the `prev_crc` of the next append.
    pub fn last_crc(&self) -> Option<u32> {
        self.last.map(|(crc, _)| crc)
    }

    /// Seq of the last record yielded.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Incomplete records dropped where a torn batch was followed by a new one.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// Stops the chain at the next lsn for `reason` (the caller ran out of blocks: `End`).
    pub fn finish(&mut self, reason: ChainStopReason) -> ChainStop {
        if let Some(stop) = &self.stop {
            return stop.clone();
        }
        let stop = self.make_stop(reason);
        self.stop = Some(stop.clone());
        stop
    }

    fn make_stop(&self, reason: ChainStopReason) -> ChainStop {
        ChainStop {
            lsn: self.next_lsn,
            address: self.region.address(self.next_lsn),
            reason,
            last_accepted: self.last.map(|(_, batch)| batch),
            partial_record_bytes: if self.stream == Stream::InRecord {
                self.record.len()
            } else {
                0
            },
        }
    }

    /// Feeds both copies read at the slot of `next_lsn()`. On acceptance appends the records
    /// completed by this block to `out` and returns how many; otherwise returns the stop
    /// (and the same stop on every later call). Nothing is appended from a refused block.
    pub fn push(
        &mut self,
        copy0: &[u8],
        copy1: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<usize, ChainStop> {
        if let Some(stop) = &self.stop {
            return Err(stop.clone());
        }
        match self.accept(copy0, copy1) {
            Ok(records) => {
                let count = records.len();
                out.extend(records);
                Ok(count)
            }
            Err(reason) => Err(self.finish(reason)),
        }
    }

    fn accept(&mut self, copy0: &[u8], copy1: &[u8]) -> Result<Vec<Record>, ChainStopReason> {
        if self.blocks_accepted >= self.region.slot_count() {
            return Err(ChainStopReason::RingWrapped);
        }
        let lsn = self.next_lsn;
        let address = self.region.address(lsn);
        let pick = pick_twin(copy0, copy1, address, &self.uuid, Some(lsn))
            .map_err(|e| ChainStopReason::NoBlock(Box::new(e)))?;
        let block = pick.block;
        let journal = *block.journal();
        if let Some((expected, _)) = self.last {
            if journal.prev_crc() != expected {
                return Err(ChainStopReason::PrevCrcMismatch {
                    expected,
                    found: journal.prev_crc(),
                });
            }
        }
        let framing = |reason: String| {
            ChainStopReason::Framing(FormatError::corrupt(format!("journal lsn {lsn}: {reason}")))
        };
        let (first, last) = (journal.batch_first_lsn(), journal.batch_last_lsn());
        if last - first >= self.region.slot_count() {
            return Err(framing(format!("batch [{first}, {last}] is longer than the ring")));
        }
        match self.last.map(|(_, batch)| batch) {
            // A new batch. If the previous one stopped short of its last block (a torn batch
            // that recovery cut off), its incomplete record is dropped.
            Some((prev_lsn, _, prev_last)) if lsn == first => {
                if self.stream == Stream::InRecord {
                    if prev_lsn >= prev_last {
                        return Err(framing("the previous batch ended inside a record".into()));
                    }
                    self.dropped_records += 1;
                }
                self.stream = Stream::Boundary;
            }
            Some((_, prev_first, prev_last)) if (prev_first, prev_last) != (first, last) => {
                return Err(framing(format!(
                    "batch [{first}, {last}] follows a block of batch [{prev_first}, {prev_last}]"
                )));
            }
            _ => {}
        }
        let records = self.take_payload(&block, lsn).map_err(|e| framing(e.to_string()))?;
        if lsn == last && self.stream == Stream::InRecord {
            return Err(framing("the batch's last block ends inside a record".into()));
        }
        self.last = Some((block.crc(), (lsn, first, last)));
        self.next_lsn += 1;
        self.blocks_accepted += 1;
        Ok(records)
    }

    /// Runs the block's payload through the record stream.
    fn take_payload(&mut self, block: &JournalBlock<'_>, lsn: u64) -> Result<Vec<Record>, String> {
        let payload = block.records();
        let mut records = Vec::new();
        let mut pos = 0usize;
        let mut first_start: Option<usize> = None;
        let mut starts = 0usize;
        if self.stream == Stream::Skipping {
            match block.journal().first_record() {
                None => return Ok(records),
                Some(at) => {
                    pos = at as usize;
                    self.stream = Stream::Boundary;
                }
            }
        }
        // Each pass consumes at least one byte or completes a record (a record is at least
        // its header), so the loop ends within 2 × payload passes.
        while pos < payload.len() {
            if self.stream == Stream::Boundary {
                first_start.get_or_insert(pos);
                starts += 1;
                self.stream = Stream::InRecord;
                self.record.clear();
                self.record_lsn = lsn;
            }
            let want = if self.record.len() < JOURNAL_RECORD_HEADER_BYTES {
                JOURNAL_RECORD_HEADER_BYTES
            } else {
                self.record_total()?
            };
            let take = (want - self.record.len()).min(payload.len() - pos);
            self.record.extend_from_slice(payload.get(pos..pos + take).unwrap_or_default());
            pos += take;
            if self.record.len() >= JOURNAL_RECORD_HEADER_BYTES
                && self.record.len() == self.record_total()?
            {
                records.push(self.complete_record()?);
                self.stream = Stream::Boundary;
            }
        }
        let first_record = block.journal().first_record().map(|at| at as usize);
        if first_start != first_record || starts != usize::from(block.record_starts()) {
            return Err(format!(
                "records start at {first_start:?} ({starts} starts) but the header says \
                 {first_record:?} ({} starts)",
                block.record_starts()
            ));
        }
        Ok(records)
    }

    /// Length of the record in progress, from its (complete) header.
    fn record_total(&self) -> Result<usize, String> {
        let header = RecordHeader::parse(&self.record, self.region.record_bytes_max())
            .map_err(|e| e.reason)?;
        Ok(header.record_bytes() as usize)
    }

    fn complete_record(&mut self) -> Result<Record, String> {
        let header = RecordHeader::parse(&self.record, self.region.record_bytes_max())
            .map_err(|e| e.reason)?;
        let computed = record_crc(&self.record);
        if computed != header.crc() {
            return Err(format!(
                "record seq {} crc mismatch: stored {:#010x}, computed {computed:#010x}",
                header.seq(),
                header.crc()
            ));
        }
        if self.last_seq.is_some_and(|last| header.seq() <= last) {
            return Err(format!(
                "record seq {} does not follow seq {}",
                header.seq(),
                self.last_seq.unwrap_or_default()
            ));
        }
        self.last_seq = Some(header.seq());
        Ok(Record {
            seq: header.seq(),
            lsn: self.record_lsn,
            bytes: core::mem::take(&mut self.record),
        })
    }
}

/// What `decode_chain` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDecode {
    /// Complete records, in chain order.
    pub records: Vec<Record>,
    /// Where and why the chain stopped.
    pub stop: ChainStop,
    /// Incomplete records dropped at recovered torn tails.
    pub dropped_records: u64,
    /// crc of the last accepted block.
    pub last_crc: Option<u32>,
}

/// Runs a `ChainDecoder` from `start_lsn` over `blocks` (the twin of lsn start_lsn, then of
/// start_lsn + 1, ...) until it stops or the blocks run out (`End`).
pub fn decode_chain<'a, I>(
    region: JournalRegion,
    uuid: [u8; 16],
    start_lsn: u64,
    blocks: I,
) -> ChainDecode
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut decoder = ChainDecoder::new(region, uuid, start_lsn);
    let mut records = Vec::new();
    let mut stop = None;
    for (copy0, copy1) in blocks {
        if let Err(s) = decoder.push(copy0, copy1, &mut records) {
            stop = Some(s);
            break;
        }
    }
    let stop = stop.unwrap_or_else(|| decoder.finish(ChainStopReason::End));
    ChainDecode {
        records,
        stop,
        dropped_records: decoder.dropped_records(),
        last_crc: decoder.last_crc(),
    }
}
