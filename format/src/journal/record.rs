//! One journal record: one committed transaction's logical ops (design.md §11.2).
//!
//! ```text
//! Record: header 24 | op 0 | op 1 | ... | op n-1            (no padding, no alignment)
//!  0 seq         u64   the commit's seq (strictly increasing along the journal)
//!  8 body_bytes  u32   bytes of ops after the header
//! 12 op_count    u32
//! 16 crc         u32   crc32 of header (this field 0) and body
//! 20 reserved    u32   0
//!
//! Ops (tree ids ≥ 16: user trees only; lengths little-endian):
//! put          | 1 u8 | tree u64 | key_len u16 | value_len u32 | key | value |  15 + k + v
//! remove       | 2 u8 | tree u64 | key_len u16 | key |                          11 + k
//! create tree  | 3 u8 | tree u64 | name_len u16 | name |                        11 + n
//! delete tree  | 4 u8 | tree u64 |                                              9
//! checkpointed | 5 u8 | 0 u64 |                                                 9
//! ```
//!
//! `checkpointed` is the only op of a record written for a transaction too large to journal
//! (design.md §11.5): its changes are only in the checkpoint that commits it, so replay
//! stops at such a record unless the checkpoint it opened from covers it.
//!
//! Keys and names are at most `key_bytes_max(block_bytes)`; a whole record at most the
//! writer's `record_bytes_max` (the engine's `journal_record_max`), which bounds values too.

use crate::constants::{
    key_bytes_max, JOURNAL_OP_CREATE_TREE_BYTES, JOURNAL_OP_DELETE_TREE_BYTES,
    JOURNAL_OP_PUT_BYTES, JOURNAL_OP_REMOVE_BYTES, JOURNAL_RECORD_BYTES_LIMIT,
    JOURNAL_RECORD_HEADER_BYTES, TREE_ID_FIRST_USER,
};
use crate::error::FormatError;
use crate::le::{U32Le, U64Le};
use bytemuck::{Pod, Zeroable};
use core::fmt;

const TAG_PUT: u8 = 1;
const TAG_REMOVE: u8 = 2;
const TAG_CREATE_TREE: u8 = 3;
const TAG_DELETE_TREE: u8 = 4;
const TAG_CHECKPOINTED: u8 = 5;

const CRC_OFFSET: usize = 16;

/// The record header (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct RecordHeader {
    seq: U64Le,
    body_bytes: U32Le,
    op_count: U32Le,
    crc: U32Le,
    reserved: U32Le,
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == JOURNAL_RECORD_HEADER_BYTES);
const _: () = assert!(core::mem::align_of::<RecordHeader>() == 1);
const _: () = assert!(core::mem::offset_of!(RecordHeader, crc) == CRC_OFFSET);

impl RecordHeader {
    /// The commit's seq.
    pub fn seq(&self) -> u64 {
        self.seq.get()
    }
    /// Bytes of ops after the header.
    pub fn body_bytes(&self) -> u32 {
        self.body_bytes.get()
    }
    /// Ops in the record.
    pub fn op_count(&self) -> u32 {
        self.op_count.get()
    }
    /// Stored crc.
    pub fn crc(&self) -> u32 {
        self.crc.get()
    }
    /// Header and body: the whole record's length.
    pub fn record_bytes(&self) -> u64 {
        JOURNAL_RECORD_HEADER_BYTES as u64 + u64::from(self.body_bytes())
    }

    /// Reads the header at the start of `bytes` and checks what the header alone can tell:
    /// reserved zero, and a record length within `record_bytes_max`. No crc (the body may not
    /// have arrived yet: the chain decoder reads the header to learn how much to gather).
    pub fn parse(bytes: &[u8], record_bytes_max: u64) -> Result<RecordHeader, FormatError> {
        let header: RecordHeader = bytes
            .get(..JOURNAL_RECORD_HEADER_BYTES)
            .and_then(|b| bytemuck::try_pod_read_unaligned(b).ok())
            .ok_or_else(|| {
                FormatError::corrupt(format!(
                    "journal record: {} bytes, shorter than its header",
                    bytes.len()
                ))
            })?;
        if header.reserved.get() != 0 {
            return Err(FormatError::corrupt(format!(
                "journal record seq {}: reserved field {:#x} is not zero",
                header.seq(),
                header.reserved.get()
            )));
        }
        let max = record_bytes_max.min(JOURNAL_RECORD_BYTES_LIMIT);
        if header.record_bytes() > max {
            return Err(FormatError::corrupt(format!(
                "journal record seq {}: {} bytes exceed the limit {max}",
                header.seq(),
                header.record_bytes()
            )));
        }
        // Every op takes at least the delete-tree size, so the count is bounded by the body.
        if u64::from(header.op_count()) * JOURNAL_OP_DELETE_TREE_BYTES as u64
            > u64::from(header.body_bytes())
        {
            return Err(FormatError::corrupt(format!(
                "journal record seq {}: {} ops cannot fit in {} bytes",
                header.seq(),
                header.op_count(),
                header.body_bytes()
            )));
        }
        Ok(header)
    }
}

/// crc32 of a whole record with the header's crc field taken as zero.
pub(crate) fn record_crc(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    match (record.get(..CRC_OFFSET), record.get(CRC_OFFSET + 4..)) {
        (Some(head), Some(tail)) => {
            hasher.update(head);
            hasher.update(&[0; 4]);
            hasher.update(tail);
        }
        _ => hasher.update(record),
    }
    hasher.finalize()
}

/// One logical op of a record. Borrowed from the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Insert or replace `key` in `tree`.
    Put {
        /// Tree id.
        tree: u64,
        /// Key bytes.
        key: &'a [u8],
        /// Value bytes.
        value: &'a [u8],
    },
    /// Remove `key` from `tree` (absent is not an error at replay).
    Remove {
        /// Tree id.
        tree: u64,
        /// Key bytes.
        key: &'a [u8],
    },
    /// Create the named tree `tree`.
    CreateTree {
        /// Id given to the new tree.
        tree: u64,
        /// Its name.
        name: &'a [u8],
    },
    /// Delete tree `tree` and its contents.
    DeleteTree {
        /// Tree id.
        tree: u64,
    },
    /// The transaction is committed by a checkpoint, not by this record (the only op of
    /// its record): replay stops here unless the checkpoint covers it.
    Checkpointed,
}

impl Op<'_> {
    /// Encoded size of the op.
    pub fn encoded_bytes(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => JOURNAL_OP_PUT_BYTES + key.len() + value.len(),
            Op::Remove { key, .. } => JOURNAL_OP_REMOVE_BYTES + key.len(),
            Op::CreateTree { name, .. } => JOURNAL_OP_CREATE_TREE_BYTES + name.len(),
            Op::DeleteTree { .. } | Op::Checkpointed => JOURNAL_OP_DELETE_TREE_BYTES,
        }
    }

    fn tree(&self) -> Option<u64> {
        match *self {
            Op::Put { tree, .. }
            | Op::Remove { tree, .. }
            | Op::CreateTree { tree, .. }
            | Op::DeleteTree { tree } => Some(tree),
            Op::Checkpointed => None,
        }
    }
}

/// The limits a record writer enforces. The chain decoder uses the region's hard limit
/// instead (`JournalRegion::record_bytes_max`), so a smaller option never strands a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest key or tree name.
    pub key_bytes_max: usize,
    /// Largest whole record (header and ops): the engine's `journal_record_max`.
    pub record_bytes_max: u64,
}

impl RecordLimits {
    /// Keys up to `key_bytes_max(block_bytes)`, records up to `record_bytes_max` (capped at
    /// `JOURNAL_RECORD_BYTES_LIMIT`).
    pub fn new(block_bytes: u32, record_bytes_max: u64) -> Self {
        Self {
            key_bytes_max: key_bytes_max(block_bytes),
            record_bytes_max: record_bytes_max.min(JOURNAL_RECORD_BYTES_LIMIT),
        }
    }
}

/// Why an op was not appended. The record is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// A key or tree name is longer than `key_bytes_max` (engine: `KeyTooLarge`).
    KeyTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The record would exceed `record_bytes_max`: the engine commits this transaction
    /// through a checkpoint instead (design.md §11.5).
    RecordTooLarge {
        /// The record's length with the op.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyTooLarge { len, max } => write!(f, "key of {len} bytes exceeds {max}"),
            Self::RecordTooLarge { bytes, max } => {
                write!(f, "journal record of {bytes} bytes exceeds {max}")
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// Appends one record to a caller's buffer (several records may share one buffer: a batch's
/// pending records end to end, which `encode_batch` takes as is). The header is written
/// first and completed by `finish`; dropping the writer without `finish` removes the record.
pub struct RecordWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    limits: RecordLimits,
    op_count: u32,
    finished: bool,
}

impl<'a> RecordWriter<'a> {
    /// Starts record `seq` at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>, seq: u64, limits: RecordLimits) -> Self {
        let start = buf.len();
        let mut header = RecordHeader::zeroed();
        header.seq = U64Le::new(seq);
        buf.extend_from_slice(bytemuck::bytes_of(&header));
        Self { buf, start, limits, op_count: 0, finished: false }
    }

    /// Bytes of the record so far.
    pub fn record_bytes(&self) -> u64 {
        (self.buf.len() - self.start) as u64
    }

    /// Ops appended so far.
    pub fn op_count(&self) -> u32 {
        self.op_count
    }

    /// Appends a put of `key` → `value` in `tree`.
    pub fn put(&mut self, tree: u64, key: &[u8], value: &[u8]) -> Result<(), RecordError> {
        self.append(Op::Put { tree, key, value })
    }

    /// Appends a remove of `key` from `tree`.
    pub fn remove(&mut self, tree: u64, key: &[u8]) -> Result<(), RecordError> {
        self.append(Op::Remove { tree, key })
    }

    /// Appends the creation of tree `tree` named `name`.
    pub fn create_tree(&mut self, tree: u64, name: &[u8]) -> Result<(), RecordError> {
        self.append(Op::CreateTree { tree, name })
    }

    /// Appends the deletion of tree `tree`.
    pub fn delete_tree(&mut self, tree: u64) -> Result<(), RecordError> {
        self.append(Op::DeleteTree { tree })
    }

    /// Appends any op, after checking the limits; on error nothing is appended.
    pub fn append(&mut self, op: Op<'_>) -> Result<(), RecordError> {
        check_op(&self.limits, self.record_bytes(), self.op_count, &op)?;
        let before = self.buf.len();
        encode_op(self.buf, &op);
        debug_assert_eq!(self.buf.len() - before, op.encoded_bytes());
        self.op_count += 1;
        Ok(())
    }

    /// Completes the header (length, op count, crc) and returns the record's length.
    pub fn finish(mut self) -> usize {
        let record = self.buf.get_mut(self.start..).unwrap_or_default();
        let body_bytes = record.len() - JOURNAL_RECORD_HEADER_BYTES;
        // The limit check in `append` keeps every record within `JOURNAL_RECORD_BYTES_LIMIT`.
        assert!(body_bytes as u64 <= JOURNAL_RECORD_BYTES_LIMIT);
        if let Some(header) = record
            .get_mut(..JOURNAL_RECORD_HEADER_BYTES)
            .and_then(|b| bytemuck::try_from_bytes_mut::<RecordHeader>(b).ok())
        {
            header.body_bytes = U32Le::new(body_bytes as u32);
            header.op_count = U32Le::new(self.op_count);
        }
        let crc = record_crc(record);
        if let Some(field) = record.get_mut(CRC_OFFSET..CRC_OFFSET + 4) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        self.finished = true;
        record.len()
    }
}

impl Drop for RecordWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.buf.truncate(self.start);
        }
    }
}

/// The limits every appended op is held to: user trees only, keys within
/// `key_bytes_max`, the whole record (`record_bytes` so far plus the op) within
/// `record_bytes_max`.
fn check_op(
    limits: &RecordLimits,
    record_bytes: u64,
    op_count: u32,
    op: &Op<'_>,
) -> Result<(), RecordError> {
    // Internal trees are never journaled: their changes follow from the logical ops.
    let tree = op.tree().unwrap_or(TREE_ID_FIRST_USER);
    assert!(tree >= TREE_ID_FIRST_USER, "journal op on internal tree {tree}");
    let key_len = match op {
        Op::Put { key, .. } | Op::Remove { key, .. } => key.len(),
        Op::CreateTree { name, .. } => name.len(),
        Op::DeleteTree { .. } | Op::Checkpointed => 0,
    };
    if key_len > limits.key_bytes_max {
        return Err(RecordError::KeyTooLarge { len: key_len, max: limits.key_bytes_max });
    }
    let bytes = record_bytes.saturating_add(op.encoded_bytes() as u64);
    if bytes > limits.record_bytes_max || op_count == u32::MAX {
        return Err(RecordError::RecordTooLarge { bytes, max: limits.record_bytes_max });
    }
    Ok(())
}

/// A record under construction that owns its ops (the engine's open transaction keeps
/// one): ops are appended as the transaction makes them, cut back to a mark by a savepoint
/// rollback, and written out as a whole record once the commit's seq is known
/// (`finish_into`). Same limits and encoding as [`RecordWriter`].
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    body: Vec<u8>,
    op_count: u32,
    limits: RecordLimits,
}

/// Where a [`RecordBuilder`] stood (`RecordBuilder::mark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMark {
    body_bytes: usize,
    op_count: u32,
}

impl RecordBuilder {
    /// An empty record held to `limits`.
    pub fn new(limits: RecordLimits) -> Self {
        Self { body: Vec::new(), op_count: 0, limits }
    }

    /// Bytes the whole record would take now (header and ops).
    pub fn record_bytes(&self) -> u64 {
        (JOURNAL_RECORD_HEADER_BYTES + self.body.len()) as u64
    }

    /// Ops appended so far.
    pub fn op_count(&self) -> u32 {
        self.op_count
    }

    /// Appends `op` after checking the limits; on error nothing is appended.
    pub fn append(&mut self, op: Op<'_>) -> Result<(), RecordError> {
        check_op(&self.limits, self.record_bytes(), self.op_count, &op)?;
        encode_op(&mut self.body, &op);
        self.op_count += 1;
        Ok(())
    }

    /// Where the record stands, to cut back to.
    pub fn mark(&self) -> RecordMark {
        RecordMark { body_bytes: self.body.len(), op_count: self.op_count }
    }

    /// Drops every op appended after `mark` (a mark of a longer state is ignored).
    pub fn truncate(&mut self, mark: RecordMark) {
        if mark.body_bytes <= self.body.len() && mark.op_count <= self.op_count {
            self.body.truncate(mark.body_bytes);
            self.op_count = mark.op_count;
        }
    }

    /// Empties the record (its buffer is kept for the next transaction).
    pub fn clear(&mut self) {
        self.body.clear();
        self.op_count = 0;
    }

    /// Appends the finished record for commit `seq` (header, ops, crc) to `out`, where
    /// `encode_batch` takes records end to end; returns its length. The builder keeps its
    /// ops (call `clear` for the next transaction).
    pub fn finish_into(&self, seq: u64, out: &mut Vec<u8>) -> usize {
        let mut w = RecordWriter::new(out, seq, self.limits);
        w.buf.extend_from_slice(&self.body);
        w.op_count = self.op_count;
        w.finish()
    }
}

fn encode_op(buf: &mut Vec<u8>, op: &Op<'_>) {
    let (tag, tree) = match op {
        Op::Put { tree, .. } => (TAG_PUT, tree),
        Op::Remove { tree, .. } => (TAG_REMOVE, tree),
        Op::CreateTree { tree, .. } => (TAG_CREATE_TREE, tree),
        Op::DeleteTree { tree } => (TAG_DELETE_TREE, tree),
        Op::Checkpointed => (TAG_CHECKPOINTED, &0),
    };
    buf.push(tag);
    buf.extend_from_slice(&U64Le::new(*tree).to_bytes());
    // Lengths were checked against the limits: keys ≤ key_bytes_max ≤ u16::MAX, values ≤
    // the record limit ≤ u32::MAX.
    match op {
        Op::Put { key, value, .. } => {
            buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
            buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
            buf.extend_from_slice(value);
        }
        Op::Remove { key: bytes, .. } | Op::CreateTree { name: bytes, .. } => {
            buf.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        Op::DeleteTree { .. } | Op::Checkpointed => {}
    }
}

/// Decodes one whole record: `new` checks the header, the exact length and the crc; the
/// iterator then yields its ops, validating every tag, tree id and length, and ends with an
/// error if the body holds more or fewer ops than the header says. After an error it yields
/// nothing more.
pub struct RecordReader<'a> {
    header: RecordHeader,
    body: &'a [u8],
    pos: usize,
    ops_left: u32,
    key_bytes_max: usize,
    failed: bool,
}

impl<'a> RecordReader<'a> {
    /// Validates `record` (exactly one record's bytes) for a store of `block_bytes`, with
    /// records up to `record_bytes_max`.
    pub fn new(
        record: &'a [u8],
        block_bytes: u32,
        record_bytes_max: u64,
    ) -> Result<Self, FormatError> {
        let header = RecordHeader::parse(record, record_bytes_max)?;
        let seq = header.seq();
        if record.len() as u64 != header.record_bytes() {
            return Err(FormatError::corrupt(format!(
                "journal record seq {seq}: {} bytes but its header says {}",
                record.len(),
                header.record_bytes()
            )));
        }
        let computed = record_crc(record);
        if computed != header.crc() {
            return Err(FormatError::checksum("journal record", header.crc(), computed));
        }
        Ok(Self {
            header,
            body: record.get(JOURNAL_RECORD_HEADER_BYTES..).unwrap_or_default(),
            pos: 0,
            ops_left: header.op_count(),
            key_bytes_max: key_bytes_max(block_bytes),
            failed: false,
        })
    }

    /// The record's header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The commit's seq.
    pub fn seq(&self) -> u64 {
        self.header.seq()
    }

    fn corrupt(&self, reason: String) -> FormatError {
        FormatError::corrupt(format!(
            "journal record seq {}, op at body offset {}: {reason}",
            self.header.seq(),
            self.pos
        ))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], FormatError> {
        let body: &'a [u8] = self.body;
        let bytes = self.pos.checked_add(len).and_then(|end| body.get(self.pos..end));
        let bytes = bytes.ok_or_else(|| {
            self.corrupt(format!("{what} of {len} bytes runs past the body of {}", body.len()))
        })?;
        self.pos += len;
        Ok(bytes)
    }

    fn take_u16(&mut self, what: &str) -> Result<u16, FormatError> {
        let bytes = self.take(2, what)?;
        Ok(bytes.iter().rev().fold(0u16, |v, &b| v << 8 | u16::from(b)))
    }

    fn take_u32(&mut self, what: &str) -> Result<u32, FormatError> {
        let bytes = self.take(4, what)?;
        Ok(bytes.iter().rev().fold(0u32, |v, &b| v << 8 | u32::from(b)))
    }

    fn take_u64(&mut self, what: &str) -> Result<u64, FormatError> {
        let bytes = self.take(8, what)?;
        Ok(bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b)))
    }

    fn take_key(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let len = usize::from(self.take_u16(what)?);
        if len > self.key_bytes_max {
            return Err(
                self.corrupt(format!("{what} of {len} bytes exceeds {}", self.key_bytes_max))
            );
        }
        self.take(len, what)
    }

    fn next_op(&mut self) -> Result<Op<'a>, FormatError> {
        let tag = self.take(1, "tag")?.first().copied().unwrap_or(0);
        let tree = self.take_u64("tree id")?;
        if tag == TAG_CHECKPOINTED {
            if tree != 0 || self.header.op_count() != 1 {
                return Err(self.corrupt("a checkpointed op is not alone, or not zero".into()));
            }
            return Ok(Op::Checkpointed);
        }
        if tree < TREE_ID_FIRST_USER {
            return Err(self.corrupt(format!("tree id {tree} is an internal tree")));
        }
        match tag {
            TAG_PUT => {
                let key_len = usize::from(self.take_u16("key length")?);
                let value_len = self.take_u32("value length")? as usize;
                if key_len > self.key_bytes_max {
                    return Err(self.corrupt(format!(
                        "key of {key_len} bytes exceeds {}",
                        self.key_bytes_max
                    )));
                }
                let key = self.take(key_len, "key")?;
                let value = self.take(value_len, "value")?;
                Ok(Op::Put { tree, key, value })
            }
            TAG_REMOVE => Ok(Op::Remove { tree, key: self.take_key("key")? }),
            TAG_CREATE_TREE => Ok(Op::CreateTree { tree, name: self.take_key("tree name")? }),
            TAG_DELETE_TREE => Ok(Op::DeleteTree { tree }),
            other => Err(self.corrupt(format!("unknown op tag {other}"))),
        }
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = Result<Op<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = if self.ops_left == 0 {
            if self.pos == self.body.len() {
                return None;
            }
            Err(self.corrupt(format!(
                "{} bytes after the last of {} ops",
                self.body.len() - self.pos,
                self.header.op_count()
            )))
        } else {
            self.ops_left -= 1;
            self.next_op()
        };
        self.failed = result.is_err();
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::BLOCK_BYTES_MAX;
    use core::mem::offset_of;

    #[test]
    fn field_offsets() {
        assert_eq!(offset_of!(RecordHeader, seq), 0);
        assert_eq!(offset_of!(RecordHeader, body_bytes), 8);
        assert_eq!(offset_of!(RecordHeader, op_count), 12);
        assert_eq!(offset_of!(RecordHeader, crc), 16);
        assert_eq!(offset_of!(RecordHeader, reserved), 20);
    }

    fn limits() -> RecordLimits {
        RecordLimits::new(4096, 1 << 20)
    }

    #[test]
    fn op_encodings() {
        let mut buf = Vec::new();
        let mut w = RecordWriter::new(&mut buf, 7, limits());
        w.put(16, b"k", b"vv").unwrap();
        w.remove(17, b"ab").unwrap();
        w.create_tree(18, b"t").unwrap();
        w.delete_tree(19).unwrap();
        assert_eq!(w.finish(), 24 + 18 + 13 + 12 + 9);
        let body = &buf[24..];
        assert_eq!(&body[..18], &[1, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, b'k', b'v', b'v']);
        assert_eq!(&body[18..31], &[2, 17, 0, 0, 0, 0, 0, 0, 0, 2, 0, b'a', b'b']);
        assert_eq!(&body[31..43], &[3, 18, 0, 0, 0, 0, 0, 0, 0, 1, 0, b't']);
        assert_eq!(&body[43..], &[4, 19, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&buf[..8], &7u64.to_le_bytes());
        assert_eq!(&buf[8..12], &52u32.to_le_bytes());
        assert_eq!(&buf[12..16], &4u32.to_le_bytes());
        let ops: Vec<Op<'_>> =
            RecordReader::new(&buf, 4096, 1 << 20).unwrap().map(Result::unwrap).collect();
        assert_eq!(
            ops,
            [
                Op::Put { tree: 16, key: b"k", value: b"vv" },
                Op::Remove { tree: 17, key: b"ab" },
                Op::CreateTree { tree: 18, name: b"t" },
                Op::DeleteTree { tree: 19 },
            ]
        );
    }

    #[test]
    fn limits_enforced_and_record_unchanged() {
        let mut buf = vec![9u8; 3];
        let mut w = RecordWriter::new(&mut buf, 1, RecordLimits::new(4096, 200));
        assert_eq!(
            w.put(16, &[0; 1025], b""),
            Err(RecordError::KeyTooLarge { len: 1025, max: 1024 })
        );
        assert_eq!(
            w.create_tree(16, &[0; 1025]),
            Err(RecordError::KeyTooLarge { len: 1025, max: 1024 })
        );
        w.put(16, b"", &[1; 100]).unwrap();
        assert!(matches!(w.put(16, b"", &[1; 100]), Err(RecordError::RecordTooLarge { .. })));
        assert_eq!(w.record_bytes(), 24 + 115);
        let len = w.finish();
        assert_eq!(buf.len(), 3 + len);
        assert_eq!(RecordReader::new(&buf[3..], 4096, 200).unwrap().count(), 1);
        // The reader's limit applies too.
        assert!(RecordReader::new(&buf[3..], 4096, 100).is_err());
        // Dropping an unfinished writer removes its bytes.
        {
            let mut w = RecordWriter::new(&mut buf, 2, limits());
            w.put(16, b"x", b"y").unwrap();
        }
        assert_eq!(buf.len(), 3 + len);
    }

    #[test]
    fn empty_record_and_max_key() {
        let mut buf = Vec::new();
        let len = RecordWriter::new(&mut buf, 3, limits()).finish();
        assert_eq!(len, 24);
        assert_eq!(RecordReader::new(&buf, 4096, 1 << 20).unwrap().count(), 0);
        let key = vec![0xab; key_bytes_max(BLOCK_BYTES_MAX)];
        let mut buf = Vec::new();
        let mut w = RecordWriter::new(&mut buf, 3, RecordLimits::new(BLOCK_BYTES_MAX, 1 << 20));
        w.put(20, &key, b"").unwrap();
        w.remove(20, &key).unwrap();
        w.finish();
        let r = RecordReader::new(&buf, BLOCK_BYTES_MAX, 1 << 20).unwrap();
        assert!(r.map(|op| op.unwrap()).all(|op| matches!(op,
            Op::Put { key: k, value: b"", .. } | Op::Remove { key: k, .. } if k == &key[..])));
        // At a smaller block size the same key is too long.
        let err = RecordReader::new(&buf, 4096, 1 << 20).unwrap().next().unwrap();
        assert!(err.is_err());
    }

    #[test]
    #[should_panic(expected = "internal tree")]
    fn internal_tree_is_a_caller_bug() {
        let mut buf = Vec::new();
        let _ = RecordWriter::new(&mut buf, 1, limits()).put(1, b"k", b"v");
    }

    /// Seals `body` under a header claiming `op_count` ops (bypassing the writer).
    fn forged(op_count: u32, body: &[u8]) -> Vec<u8> {
        let mut rec = vec![0u8; 24];
        rec[0] = 5;
        rec[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&op_count.to_le_bytes());
        rec.extend_from_slice(body);
        let crc = record_crc(&rec);
        rec[16..20].copy_from_slice(&crc.to_le_bytes());
        rec
    }

    #[test]
    fn reader_rejects() {
        let delete = [4, 16, 0, 0, 0, 0, 0, 0, 0];
        let ok = forged(1, &delete);
        assert_eq!(RecordReader::new(&ok, 4096, 1 << 20).unwrap().count(), 1);
        let errs = |rec: &[u8]| match RecordReader::new(rec, 4096, 1 << 20) {
            Err(_) => true,
            Ok(r) => {
                let items: Vec<_> = r.collect();
                items.last().is_some_and(Result::is_err)
                    && items.iter().filter(|i| i.is_err()).count() == 1
            }
        };
        // Too few ops for the body, too many, unknown tag, internal tree, truncated key.
        assert!(errs(&forged(0, &delete)));
        assert!(errs(&forged(1, &[delete, delete].concat())));
        assert!(errs(&forged(1, &[9, 16, 0, 0, 0, 0, 0, 0, 0])));
        assert!(errs(&forged(1, &[4, 1, 0, 0, 0, 0, 0, 0, 0])));
        assert!(errs(&forged(1, &[2, 16, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1, 2])));
        // Put whose value length runs past the body.
        assert!(errs(&forged(1, &[1, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0])));
        // More ops than the body could hold: refused from the header alone.
        assert!(errs(&forged(2, &delete)));
        // Length, crc and reserved field.
        assert!(errs(&ok[..ok.len() - 1]));
        let mut flip = ok.clone();
        flip[30] ^= 1;
        assert!(errs(&flip));
        let mut reserved = ok.clone();
        reserved[21] = 1;
        assert!(errs(&reserved));
        assert!(errs(&ok[..10]));
    }
}
