//! Journal blocks, their twin copies, and the batch encoder (design.md §11.2, §11.4).
//!
//! ```text
//! Journal block (kind 8): | block header 64 | journal header 64 | payload: record bytes | 0 pad |
//!
//! Block header: the common one (header.rs) with kind 8, level 0, item_count = records that
//!   start in this block, address = copy 0 of the slot (both copies record it), crc over the
//!   whole block; flags, generation, owner, heap_start, aux32, aux64, reserved all 0.
//! Journal header:
//!  64 lsn              u64   ≥ 1; grows by one per block, never reused across laps
//!  72 batch_first_lsn  u64   first lsn of the flush batch this block was written in
//!  80 batch_last_lsn   u64   last lsn of that batch (batch_first ≤ lsn ≤ batch_last)
//!  88 prev_crc         u32   crc of the block with lsn − 1 (0 for lsn 1)
//!  92 record_bytes     u32   payload bytes in use, 1 ..= block − 128; zero after them
//!  96 first_record     u32   payload offset of the first record starting here, or
//!                            0xffff_ffff: none (the payload continues an earlier record);
//!                            0 in the first block of a batch
//! 100 reserved0        u32   0
//! 104 store_uuid       [u8;16] the superblock's uuid: a block left by an earlier store on
//!                            the same device never joins this store's chain
//! 120 flushed_below    u64   every block with a smaller lsn was flushed before this
//!                            batch was written (≤ batch_first_lsn; batches may be in flight
//!                            together, design.md §11.4); 0 in blocks of builds that wrote
//!                            one batch at a time: read as batch_first_lsn
//! 128 payload
//!
//! Twin layout: slot s = lsn mod slot_count holds copy 0 at start + 2s, copy 1 at start + 2s + 1
//! (byte-identical). A batch of n blocks from slot s is written as
//!   | L copy0 | L copy1 | L+1 copy0 | L+1 copy1 | ... | L+n−1 copy1 |
//! in one write, or two if it passes the last slot (the rest continues at slot 0).
//! ```
//!
//! Why adjacent twins: both copies go out in the one write the batch needs anyway, a torn
//! write leaves at most one block of the pair half-written, and the slot of an lsn stays a
//! function of the lsn alone. Why identical copies: `prev_crc` names one crc per lsn whichever
//! copy is read.

use crate::constants::{
    check_block_len, journal_payload_bytes, HEADER_BYTES, JOURNAL_HEADER_BYTES, JOURNAL_LSN_FIRST,
    JOURNAL_NO_RECORD_START, JOURNAL_PAYLOAD_OFFSET,
};
use crate::error::FormatError;
use crate::header::{seal_block, verify_block, BlockHeader, BlockKind};
use crate::journal::record::RecordHeader;
use crate::journal::JournalRegion;
use crate::le::{U16Le, U32Le, U64Le};
use bytemuck::{Pod, Zeroable};
use core::fmt;
use core::ops::Range;

/// The journal header after the block header (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct JournalHeader {
    lsn: U64Le,
    batch_first_lsn: U64Le,
    batch_last_lsn: U64Le,
    prev_crc: U32Le,
    record_bytes: U32Le,
    first_record: U32Le,
    reserved0: U32Le,
    store_uuid: [u8; 16],
    flushed_below: U64Le,
}

const _: () = assert!(core::mem::size_of::<JournalHeader>() == JOURNAL_HEADER_BYTES);
const _: () = assert!(core::mem::align_of::<JournalHeader>() == 1);

impl JournalHeader {
    /// The block's lsn.
    pub fn lsn(&self) -> u64 {
        self.lsn.get()
    }
    /// First lsn of the block's flush batch.
    pub fn batch_first_lsn(&self) -> u64 {
        self.batch_first_lsn.get()
    }
    /// Last lsn of the block's flush batch.
    pub fn batch_last_lsn(&self) -> u64 {
        self.batch_last_lsn.get()
    }
    /// crc of the block with lsn − 1.
    pub fn prev_crc(&self) -> u32 {
        self.prev_crc.get()
    }
    /// Payload bytes in use.
    pub fn record_bytes(&self) -> u32 {
        self.record_bytes.get()
    }
    /// Payload offset of the first record starting in this block, if any.
    pub fn first_record(&self) -> Option<u32> {
        let first = self.first_record.get();
        (first != JOURNAL_NO_RECORD_START).then_some(first)
    }
    /// The store's uuid.
    pub fn store_uuid(&self) -> [u8; 16] {
        self.store_uuid
    }
    /// Every block with a smaller lsn was flushed before this block's batch was written:
    /// damage below it is damage to flushed (possibly acknowledged) history. A stored 0 (a
    /// build that wrote one batch at a time) reads as `batch_first_lsn`.
    pub fn flushed_below(&self) -> u64 {
        match self.flushed_below.get() {
            0 => self.batch_first_lsn(),
            lsn => lsn,
        }
    }
}

/// A journal block that passed `JournalBlock::decode`: borrowed bytes plus copies of both
/// headers.
#[derive(Clone, Copy)]
pub struct JournalBlock<'a> {
    bytes: &'a [u8],
    header: BlockHeader,
    journal: JournalHeader,
}

impl fmt::Debug for JournalBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalBlock")
            .field("address", &self.header.address())
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .field("record_starts", &self.record_starts())
            .field("journal", &self.journal)
            .finish()
    }
}

impl<'a> JournalBlock<'a> {
    /// Verifies a journal block read from `expected_address` (copy 0's address for either
    /// copy): the common checks of `verify_block` (magic, version, crc, address), kind
    /// `Journal`, every unused header field zero, `1 ≤ batch_first ≤ lsn ≤ batch_last`,
    /// framing in range (`record_bytes` in 1..=payload, `first_record` inside it or none, 0 at
    /// a batch start, `item_count` 0 exactly when no record starts) and zero padding.
    pub fn decode(buf: &'a [u8], expected_address: u64) -> Result<Self, FormatError> {
        let block_bytes = check_block_len(buf.len())?;
        let header = verify_block(buf, expected_address)?;
        let corrupt = |reason: String| {
            Err(FormatError::corrupt(format!("journal block {expected_address}: {reason}")))
        };
        if header.kind()? != BlockKind::Journal {
            return corrupt(format!("kind is {:?}", header.kind()?));
        }
        if header.level() != 0
            || header.flags.get() != 0
            || header.generation() != 0
            || header.owner() != 0
            || header.heap_start() != 0
            || header.aux32() != 0
            || header.aux64() != 0
            || header.reserved != [0; 8]
        {
            return corrupt("unused block header fields are not zero".into());
        }
        let journal: JournalHeader = buf
            .get(HEADER_BYTES..JOURNAL_PAYLOAD_OFFSET)
            .and_then(|b| bytemuck::try_pod_read_unaligned(b).ok())
            .unwrap_or_else(JournalHeader::zeroed);
        if journal.reserved0.get() != 0 {
            return corrupt("reserved journal header fields are not zero".into());
        }
        let (lsn, first, last) =
            (journal.lsn(), journal.batch_first_lsn(), journal.batch_last_lsn());
        if !(JOURNAL_LSN_FIRST <= first && first <= lsn && lsn <= last) {
            return corrupt(format!("lsn {lsn} outside its batch [{first}, {last}]"));
        }
        if journal.flushed_below() > first {
            let below = journal.flushed_below();
            return corrupt(format!("lsn {lsn}: flushed below {below}, after its batch ({first})"));
        }
        let record_bytes = journal.record_bytes();
        let payload = journal_payload_bytes(block_bytes);
        if record_bytes == 0 || record_bytes as usize > payload {
            return corrupt(format!("lsn {lsn}: {record_bytes} record bytes (payload {payload})"));
        }
        let starts = header.item_count();
        match journal.first_record() {
            None if starts != 0 => return corrupt(format!("lsn {lsn}: {starts} record starts")),
            None if lsn == first => return corrupt(format!("lsn {lsn}: batch without a record")),
            Some(at) if at >= record_bytes || starts == 0 || (lsn == first && at != 0) => {
                return corrupt(format!(
                    "lsn {lsn}: first record at {at} of {record_bytes}, {starts} starts"
                ));
            }
            _ => {}
        }
        let pad = buf.get(JOURNAL_PAYLOAD_OFFSET + record_bytes as usize..).unwrap_or_default();
        if pad.iter().any(|&b| b != 0) {
            return corrupt(format!("lsn {lsn}: bytes after the records are not zero"));
        }
        Ok(Self { bytes: buf, header, journal })
    }

    /// The block header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }
    /// The journal header.
    pub fn journal(&self) -> &JournalHeader {
        &self.journal
    }
    /// The whole block.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The block's lsn.
    pub fn lsn(&self) -> u64 {
        self.journal.lsn()
    }
    /// The block's crc: the next block's `prev_crc`.
    pub fn crc(&self) -> u32 {
        self.header.crc()
    }
    /// Records starting in this block.
    pub fn record_starts(&self) -> u16 {
        self.header.item_count()
    }
    /// The payload bytes in use.
    pub fn records(&self) -> &'a [u8] {
        let end = JOURNAL_PAYLOAD_OFFSET + self.journal.record_bytes() as usize;
        self.bytes.get(JOURNAL_PAYLOAD_OFFSET..end).unwrap_or_default()
    }
}

/// Why one copy of a twin was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// It does not verify (torn, bit rot, never written, another kind of block).
    Invalid(FormatError),
    /// It verifies but belongs to another store (a block left by an earlier store).
    OtherStore,
    /// It verifies but carries another lsn than the one expected (another lap of the ring).
    OtherLsn(u64),
    /// It verifies, as did the copy taken, but its bytes differ from it.
    Differs {
        /// The lsn it carries.
        lsn: u64,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "{e}"),
            Self::OtherStore => f.write_str("a journal block of another store"),
            Self::OtherLsn(lsn) => write!(f, "a journal block with lsn {lsn}"),
            Self::Differs { lsn } => write!(f, "differs from its twin (lsn {lsn})"),
        }
    }
}

/// The copy `pick_twin` took.
#[derive(Debug, Clone)]
pub struct TwinPick<'a> {
    /// The block.
    pub block: JournalBlock<'a>,
    /// Which copy (0 or 1).
    pub copy: u8,
    /// Why the other copy was not taken, or `None` when both verify and are identical.
    pub other: Option<CopyError>,
}

/// Neither copy of a twin is the block wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinError {
    /// Block number of copy 0.
    pub address: u64,
    /// Why copy 0 was not taken.
    pub first: CopyError,
    /// Why copy 1 was not taken.
    pub second: CopyError,
}

impl TwinError {
    /// True when both copies fail to verify: damage or a torn write, not merely the end of
    /// the written journal (a verifying block of another lap or store).
    pub fn both_invalid(&self) -> bool {
        matches!((&self.first, &self.second), (CopyError::Invalid(_), CopyError::Invalid(_)))
    }

    /// The highest lsn a verifying copy of this store carries, if any.
    pub fn found_lsn(&self) -> Option<u64> {
        let lsn = |e: &CopyError| match e {
            CopyError::OtherLsn(lsn) => Some(*lsn),
            _ => None,
        };
        lsn(&self.first).max(lsn(&self.second))
    }
}

impl fmt::Display for TwinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "journal block {}: copy 0: {}; copy 1: {}", self.address, self.first, self.second)
    }
}

/// Takes the copy of a twin to use, given both copies' bytes as read from the slot whose
/// copy 0 is at `address`. A copy qualifies when it decodes (`JournalBlock::decode`), carries
/// `uuid` and, if `expected_lsn` is given, that lsn. Of two qualifying copies the higher lsn
/// wins (a torn rewrite of a slot can leave one copy of the old lap), then copy 0.
pub fn pick_twin<'a>(
    copy0: &'a [u8],
    copy1: &'a [u8],
    address: u64,
    uuid: &[u8; 16],
    expected_lsn: Option<u64>,
) -> Result<TwinPick<'a>, TwinError> {
    let check = |buf: &'a [u8]| -> Result<JournalBlock<'a>, CopyError> {
        let block = JournalBlock::decode(buf, address).map_err(CopyError::Invalid)?;
        if block.journal.store_uuid != *uuid {
            return Err(CopyError::OtherStore);
        }
        match expected_lsn {
            Some(lsn) if block.lsn() != lsn => Err(CopyError::OtherLsn(block.lsn())),
            _ => Ok(block),
        }
    };
    match (check(copy0), check(copy1)) {
        (Ok(a), Ok(b)) if a.bytes == b.bytes => Ok(TwinPick { block: a, copy: 0, other: None }),
        (Ok(a), Ok(b)) if b.lsn() > a.lsn() => {
            Ok(TwinPick { block: b, copy: 1, other: Some(CopyError::Differs { lsn: a.lsn() }) })
        }
        (Ok(a), Ok(b)) => {
            Ok(TwinPick { block: a, copy: 0, other: Some(CopyError::Differs { lsn: b.lsn() }) })
        }
        (Ok(a), Err(e)) => Ok(TwinPick { block: a, copy: 0, other: Some(e) }),
        (Err(e), Ok(b)) => Ok(TwinPick { block: b, copy: 1, other: Some(e) }),
        (Err(first), Err(second)) => Err(TwinError { address, first, second }),
    }
}

/// Where a batch starts: the next lsn, the crc of the block before it (0 before the first
/// block ever), the store's uuid, and how far the journal was flushed when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStart {
    /// Lsn of the batch's first block.
    pub first_lsn: u64,
    /// crc of the block with `first_lsn − 1`.
    pub prev_crc: u32,
    /// The superblock's uuid.
    pub uuid: [u8; 16],
    /// Every block with a smaller lsn is flushed (`first_lsn` when no batch before it is in
    /// flight); 1 ..= `first_lsn`.
    pub flushed_below: u64,
}

/// What `encode_batch` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Lsn of the first block.
    pub first_lsn: u64,
    /// Lsn of the last block.
    pub last_lsn: u64,
    /// crc of the last block: the next batch's `prev_crc`.
    pub last_crc: u32,
    /// Journal blocks (each written twice).
    pub block_count: u64,
}

/// One device write of a batch: `out[range]` goes to byte `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchWrite {
    /// Device byte offset.
    pub offset: u64,
    /// Byte range of the encoded batch buffer.
    pub range: Range<usize>,
}

impl BatchInfo {
    /// The writes that put the batch in place: one, or two when it runs past the last slot.
    pub fn writes(&self, region: &JournalRegion) -> Vec<BatchWrite> {
        let twin_bytes = 2 * region.block_bytes() as usize;
        let first_slot = region.slot(self.first_lsn);
        let before_end = (region.slot_count() - first_slot).min(self.block_count) as usize;
        let mut writes = vec![BatchWrite {
            offset: region.byte_offset(region.address(self.first_lsn)),
            range: 0..before_end * twin_bytes,
        }];
        if (before_end as u64) < self.block_count {
            writes.push(BatchWrite {
                offset: region.byte_offset(region.start_block()),
                range: before_end * twin_bytes..self.block_count as usize * twin_bytes,
            });
        }
        writes
    }
}

/// Journal blocks a batch of `record_bytes` bytes of records takes (each written twice).
pub fn batch_block_count(region: &JournalRegion, record_bytes: usize) -> u64 {
    record_bytes.div_ceil(region.payload_bytes()) as u64
}

/// Payload offsets where records start in `records` (whole records end to end), checking
/// that their headers tile it exactly. The records come from `RecordWriter`, so a mismatch
/// is the caller's bug, reported as an error rather than written to disk.
fn record_starts(records: &[u8], region: &JournalRegion) -> Result<Vec<usize>, FormatError> {
    let mut starts = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let header =
            RecordHeader::parse(records.get(at..).unwrap_or_default(), region.record_bytes_max())?;
        starts.push(at);
        at += header.record_bytes() as usize;
    }
    if at != records.len() {
        return Err(FormatError::corrupt(format!(
            "journal batch: the last record runs {} bytes past the {} given",
            at - records.len(),
            records.len()
        )));
    }
    Ok(starts)
}

/// Writes a journal block's two headers and payload into `block` (zeroing the rest); the
/// caller seals it.
fn fill_block(block: &mut [u8], address: u64, starts: u16, journal: &JournalHeader, chunk: &[u8]) {
    let mut header = BlockHeader::new(BlockKind::Journal, 0, address, 0, 0);
    header.item_count = U16Le::new(starts);
    block.fill(0);
    let parts = [bytemuck::bytes_of(&header), bytemuck::bytes_of(journal), chunk];
    let mut at = 0;
    for part in parts {
        if let Some(dst) = block.get_mut(at..at + part.len()) {
            dst.copy_from_slice(part);
        }
        at += part.len();
    }
    debug_assert!(at <= block.len());
}

/// Encodes a batch: `records` (complete records end to end, as `RecordWriter` appends them)
/// split into journal blocks from `start.first_lsn`, chained by `prev_crc`, each sealed and
/// copied into its twin. `out` must be exactly `2 × batch_block_count × block_bytes` bytes
/// (the engine's aligned write buffer); it is laid out as the device expects (see
/// `BatchInfo::writes`). A batch must have at least one record and fit in the ring.
pub fn encode_batch(
    region: &JournalRegion,
    start: &BatchStart,
    records: &[u8],
    out: &mut [u8],
) -> Result<BatchInfo, FormatError> {
    let block_bytes = region.block_bytes() as usize;
    let payload = region.payload_bytes();
    let block_count = batch_block_count(region, records.len());
    let err = |reason: String| Err(FormatError::corrupt(format!("journal batch: {reason}")));
    if start.first_lsn < JOURNAL_LSN_FIRST || records.is_empty() {
        return err(format!("lsn {} with {} bytes", start.first_lsn, records.len()));
    }
    if !(JOURNAL_LSN_FIRST..=start.first_lsn).contains(&start.flushed_below) {
        return err(format!("flushed below {} at lsn {}", start.flushed_below, start.first_lsn));
    }
    if block_count > region.slot_count() {
        return err(format!("{block_count} blocks exceed the ring's {}", region.slot_count()));
    }
    if out.len() as u64 != 2 * block_count * block_bytes as u64 {
        return err(format!("buffer of {} bytes for {block_count} twin blocks", out.len()));
    }
    let starts = record_starts(records, region)?;
    let last_lsn = start.first_lsn + block_count - 1;
    let mut prev_crc = start.prev_crc;
    let mut next_start = starts.iter().peekable();
    for (i, (chunk, twin)) in
        records.chunks(payload).zip(out.chunks_exact_mut(2 * block_bytes)).enumerate()
    {
        let lsn = start.first_lsn + i as u64;
        let chunk_start = i * payload;
        let chunk_end = chunk_start + chunk.len();
        let mut first_record = JOURNAL_NO_RECORD_START;
        let mut count = 0u16;
        while let Some(&&at) = next_start.peek().filter(|&&&at| at < chunk_end) {
            if count == 0 {
                first_record = (at - chunk_start) as u32;
            }
            // A record takes at least its header, so a block holds at most
            // payload / header + 1 starts: far below u16::MAX at 64 KiB.
            count += 1;
            next_start.next();
        }
        let (block, copy) = twin.split_at_mut(block_bytes);
        let mut journal = JournalHeader::zeroed();
        journal.lsn = U64Le::new(lsn);
        journal.batch_first_lsn = U64Le::new(start.first_lsn);
        journal.batch_last_lsn = U64Le::new(last_lsn);
        journal.prev_crc = U32Le::new(prev_crc);
        journal.record_bytes = U32Le::new(chunk.len() as u32);
        journal.first_record = U32Le::new(first_record);
        journal.store_uuid = start.uuid;
        journal.flushed_below = U64Le::new(start.flushed_below);
        fill_block(block, region.address(lsn), count, &journal, chunk);
        prev_crc = seal_block(block);
        copy.copy_from_slice(block);
        debug_assert!(JournalBlock::decode(copy, region.address(lsn)).is_ok());
    }
    debug_assert!(next_start.next().is_none());
    Ok(BatchInfo { first_lsn: start.first_lsn, last_lsn, last_crc: prev_crc, block_count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FormatErrorKind;
    use crate::journal::record::{RecordLimits, RecordWriter};
    use core::mem::offset_of;

    #[test]
    fn field_offsets() {
        // Offsets inside the block: the journal header follows the 64-byte block header.
        let at = |offset: usize| HEADER_BYTES + offset;
        assert_eq!(at(offset_of!(JournalHeader, lsn)), 64);
        assert_eq!(at(offset_of!(JournalHeader, batch_first_lsn)), 72);
        assert_eq!(at(offset_of!(JournalHeader, batch_last_lsn)), 80);
        assert_eq!(at(offset_of!(JournalHeader, prev_crc)), 88);
        assert_eq!(at(offset_of!(JournalHeader, record_bytes)), 92);
        assert_eq!(at(offset_of!(JournalHeader, first_record)), 96);
        assert_eq!(at(offset_of!(JournalHeader, reserved0)), 100);
        assert_eq!(at(offset_of!(JournalHeader, store_uuid)), 104);
        assert_eq!(at(offset_of!(JournalHeader, flushed_below)), 120);
        assert_eq!(at(core::mem::size_of::<JournalHeader>()), JOURNAL_PAYLOAD_OFFSET);
    }

    const UUID: [u8; 16] = [3; 16];

    fn region() -> JournalRegion {
        JournalRegion::new(4096, 64, 32).unwrap()
    }

    fn records(sizes: &[usize]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let mut w = RecordWriter::new(&mut buf, i as u64 + 1, RecordLimits::new(4096, 1 << 20));
            w.put(16, b"key", &vec![i as u8; size]).unwrap();
            w.finish();
        }
        buf
    }

    fn batch(first_lsn: u64, recs: &[u8]) -> (Vec<u8>, BatchInfo) {
        let r = region();
        let mut out = vec![0xee; 2 * batch_block_count(&r, recs.len()) as usize * 4096];
        let start =
            BatchStart { first_lsn, prev_crc: 0x1234, uuid: UUID, flushed_below: first_lsn };
        let info = encode_batch(&r, &start, recs, &mut out).unwrap();
        (out, info)
    }

    #[test]
    fn encode_layout() {
        // Three records: 4 + 4000 + 10 bytes of value; the second spans blocks 0 and 1.
        let recs = records(&[4, 4000, 10]);
        let (out, info) = batch(5, &recs);
        assert_eq!(info.block_count, 2);
        assert_eq!((info.first_lsn, info.last_lsn), (5, 6));
        let r = region();
        let b0 = JournalBlock::decode(&out[..4096], r.address(5)).unwrap();
        assert_eq!(&out[..4096], &out[4096..8192]);
        let b1 = JournalBlock::decode(&out[8192..12288], r.address(6)).unwrap();
        assert_eq!(b0.header().address(), 64 + 2 * 5);
        assert_eq!((b0.lsn(), b1.lsn()), (5, 6));
        assert_eq!(b0.journal().prev_crc(), 0x1234);
        assert_eq!(b1.journal().prev_crc(), b0.crc());
        assert_eq!(info.last_crc, b1.crc());
        assert_eq!((b0.journal().batch_first_lsn(), b0.journal().batch_last_lsn()), (5, 6));
        assert_eq!(b0.journal().first_record(), Some(0));
        assert_eq!(b0.record_starts(), 2);
        assert_eq!(b0.records().len(), 3968);
        // Record 1 is 24 + 15 + 3 + 4 = 46 bytes; record 2 (4042) ends 120 bytes into block 1.
        assert_eq!(b1.journal().first_record(), Some(46 + 4042 - 3968));
        assert_eq!(b1.record_starts(), 1);
        assert_eq!(b0.records().len() + b1.records().len(), recs.len());
        assert_eq!([b0.records(), b1.records()].concat(), recs);
        assert_eq!(info.writes(&r), vec![BatchWrite { offset: 74 * 4096, range: 0..16384 }]);
    }

    #[test]
    fn continuation_block_and_wrap() {
        // One record over three blocks, starting at slot 15 of 16: the write wraps.
        let recs = records(&[9000]);
        let (out, info) = batch(15, &recs);
        assert_eq!(info.block_count, 3);
        let r = region();
        let b1 = JournalBlock::decode(&out[8192..12288], r.address(16)).unwrap();
        assert_eq!(b1.journal().first_record(), None);
        assert_eq!(b1.record_starts(), 0);
        assert_eq!(
            info.writes(&r),
            vec![
                BatchWrite { offset: 94 * 4096, range: 0..8192 },
                BatchWrite { offset: 64 * 4096, range: 8192..24576 },
            ]
        );
    }

    #[test]
    fn encode_refuses() {
        let r = region();
        let start = BatchStart { first_lsn: 1, prev_crc: 0, uuid: UUID, flushed_below: 1 };
        let recs = records(&[10]);
        assert!(encode_batch(&r, &start, &recs, &mut vec![0; 4096]).is_err());
        assert!(encode_batch(&r, &start, &[], &mut []).is_err());
        let zero = BatchStart { first_lsn: 0, ..start };
        assert!(encode_batch(&r, &zero, &recs, &mut vec![0; 8192]).is_err());
        assert!(encode_batch(&r, &start, &recs[..recs.len() - 1], &mut vec![0; 8192]).is_err());
        let big = records(&[16 * 3968]);
        let mut out = vec![0; 2 * 17 * 4096];
        assert!(encode_batch(&r, &start, &big, &mut out).is_err());
    }

    #[test]
    fn decode_rejects() {
        // Two records in one block, with zero padding after them.
        let (out, _) = batch(5, &records(&[4, 10]));
        let r = region();
        let block = &out[..4096];
        assert!(JournalBlock::decode(block, r.address(5) + 2).is_err());
        assert!(JournalBlock::decode(&block[..4000], r.address(5)).is_err());
        // Change a field and reseal: each must be refused for its own reason.
        let reseal = |offset: usize, bytes: &[u8]| {
            let mut b = block.to_vec();
            b[offset..offset + bytes.len()].copy_from_slice(bytes);
            seal_block(&mut b);
            JournalBlock::decode(&b, r.address(5)).unwrap_err()
        };
        assert!(reseal(6, &[1]).reason.contains("kind"));
        assert!(reseal(24, &[1]).reason.contains("unused"));
        assert!(reseal(64, &[9]).reason.contains("outside its batch"));

        assert!(reseal(72, &[0]).reason.contains("outside its batch"));
        // Not the first block of its batch, so a record may start later than offset 0.
        let mut later = block.to_vec();
        later[72] = 4;
        later[96] = 1;
        later[120] = 4;
        seal_block(&mut later);
        assert!(JournalBlock::decode(&later, r.address(5)).is_ok());
        assert!(reseal(92, &[0, 0, 0, 0]).reason.contains("record bytes"));
        assert!(reseal(92, &[0, 0x10, 0, 0]).reason.contains("record bytes"));
        assert!(reseal(96, &[1, 0, 0, 0]).reason.contains("first record"));
        assert!(reseal(96, &[0xff; 4]).reason.contains("starts"));
        assert!(reseal(8, &[0, 0]).reason.contains("first record"));
        assert!(reseal(100, &[1]).reason.contains("reserved"));
        assert!(reseal(120, &[6]).reason.contains("flushed below 6"));
        // 0: a block of a build that wrote one batch at a time.
        let mut old = block.to_vec();
        old[120] = 0;
        seal_block(&mut old);
        let decoded = JournalBlock::decode(&old, r.address(5)).unwrap();
        assert_eq!(decoded.journal().flushed_below(), 5);
        assert!(reseal(4095, &[1]).reason.contains("not zero"));
        let mut flipped = block.to_vec();
        flipped[500] ^= 4;
        assert!(matches!(
            JournalBlock::decode(&flipped, r.address(5)).unwrap_err().kind,
            FormatErrorKind::ChecksumMismatch { .. }
        ));
    }

    #[test]
    fn twin_pick() {
        let (out, _) = batch(5, &records(&[100]));
        let r = region();
        let addr = r.address(5);
        let (a, b) = out.split_at(4096);
        let both = pick_twin(a, b, addr, &UUID, Some(5)).unwrap();
        assert_eq!((both.copy, both.other.is_none()), (0, true));
        let mut bad = a.to_vec();
        bad[1000] ^= 0x80;
        let pick = pick_twin(&bad, b, addr, &UUID, Some(5)).unwrap();
        assert_eq!(pick.copy, 1);
        assert!(matches!(pick.other, Some(CopyError::Invalid(_))));
        let pick = pick_twin(a, &bad, addr, &UUID, None).unwrap();
        assert_eq!(pick.copy, 0);
        let err = pick_twin(&bad, &bad, addr, &UUID, Some(5)).unwrap_err();
        assert!(err.both_invalid());
        assert_eq!(err.found_lsn(), None);
        // Both verify but belong elsewhere: not damage, the end of the written journal.
        let err = pick_twin(a, b, addr, &UUID, Some(21)).unwrap_err();
        assert!(!err.both_invalid());
        assert_eq!(err.found_lsn(), Some(5));
        let err = pick_twin(a, b, addr, &[4; 16], None).unwrap_err();
        assert_eq!(err.first, CopyError::OtherStore);
        // A torn rewrite of the slot one lap later: copy 0 new (lsn 21), copy 1 old (lsn 5).
        let (newer, _) = batch(21, &records(&[100]));
        let pick = pick_twin(&newer[..4096], b, addr, &UUID, None).unwrap();
        assert_eq!((pick.copy, pick.block.lsn()), (0, 21));
        assert_eq!(pick.other, Some(CopyError::Differs { lsn: 5 }));
        let pick = pick_twin(b, &newer[..4096], addr, &UUID, None).unwrap();
        assert_eq!((pick.copy, pick.block.lsn()), (1, 21));
        let pick = pick_twin(b, &newer[..4096], addr, &UUID, Some(5)).unwrap();
        assert_eq!((pick.copy, pick.other), (0, Some(CopyError::OtherLsn(21))));
        assert!(err.to_string().contains("another store"));
    }
}
