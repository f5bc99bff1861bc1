//! Arbor's on-disk format. Pure: no I/O, no threads. See `docs/format.md`.
//!
//! Every byte this crate decodes comes from a disk and is untrusted: decoders validate every
//! length, offset, count and level and return [`FormatError`], never panic and never index
//! out of bounds (the lints below keep it that way outside tests).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)
)]

pub mod alloc;
pub mod catalog;
pub mod constants;
pub mod error;
pub mod header;
pub mod journal;
pub mod le;
pub mod node;
pub mod node_mut;
pub mod overflow;
pub mod ptr;
pub mod superblock;

pub use alloc::{AllocIndex, BitmapChunk, OrphanList, PendingList};
pub use catalog::{CatalogEntry, CATALOG_ENTRY_BYTES};
pub use constants::*;
pub use error::{FormatError, FormatErrorKind};
pub use header::{
    block_crc, parse_header, seal_block, verify_block, verify_child, BlockHeader, BlockKind,
    BLOCK_MAGIC,
};
pub use journal::{
    batch_block_count, decode_chain, encode_batch, pick_twin, BatchInfo, BatchStart, BatchWrite,
    ChainDecode, ChainDecoder, ChainStop, ChainStopReason, CopyError, JournalBlock, JournalHeader,
    JournalRegion, Op, Record, RecordBuilder, RecordError, RecordHeader, RecordLimits, RecordMark,
    RecordReader, RecordWriter, TwinError, TwinPick,
};
pub use le::{U16Le, U32Le, U64Le};
pub use node::{LeafValue, Node, Slot, ValueRef};
pub use node_mut::{NodeFull, NodeMut};
pub use overflow::{overflow_read, overflow_write};
pub use ptr::{ChildPtr, Extent, OverflowRef};
pub use superblock::{alternation, slot_offset, Superblock, SUPERBLOCK_MAGIC};
