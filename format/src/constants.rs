//! Every limit of the format, with one name and one home, and compile-time cross-checks
//! relating them (TigerBeetle's `constants.zig`). Sizes of in-memory things are `usize`,
//! device offsets and block numbers are `u64`, block sizes are `u32`.

use crate::error::FormatError;

/// Smallest block size: the common logical sector and page size.
pub const BLOCK_BYTES_MIN: u32 = 4096;
/// Largest block size. Keeps every in-block offset in a `u32` and every key length in a `u16`.
pub const BLOCK_BYTES_MAX: u32 = 65536;
/// Block size used when the caller does not choose one.
pub const BLOCK_BYTES_DEFAULT: u32 = 4096;

/// Size of one superblock record.
pub const SUPERBLOCK_BYTES: usize = 4096;
/// Distance between superblock slots: one slot per 64 KiB, so a slot never shares a block
/// with another slot, whatever the block size.
pub const SUPERBLOCK_SLOT_STRIDE_BYTES: u64 = 65536;
/// Slots: 2 alternations (A = {0, 2}, B = {1, 3}) × 2 copies (design.md §10.11).
pub const SUPERBLOCK_SLOT_COUNT: u8 = 4;
/// The superblock area at the start of the device, read before the block size is known.
pub const SUPERBLOCK_AREA_BYTES: u64 = 262_144;

/// The header at the start of every tree block.
pub const HEADER_BYTES: usize = 64;
/// One slot of a slotted node.
pub const SLOT_BYTES: usize = 12;
/// `ChildPtr`: address, generation, crc, flags.
pub const CHILD_PTR_BYTES: usize = 24;
/// `OverflowRef`: address, value length, generation, crc, block count.
pub const OVERFLOW_REF_BYTES: usize = 32;
/// `Extent`: start block, block count.
pub const EXTENT_BYTES: usize = 16;

/// Deepest tree accepted: the bound on every descent, so a corrupt image with a pointer
/// cycle ends in `Corrupt` instead of a hang (redb's `MAX_BTREE_DEPTH`).
///
/// Why 64: a device holds at most 2^64 bytes, so at most 2^52 blocks at the smallest block
/// size, hence at most 2^52 leaves. Every internal node except the root has at least two
/// children (the engine collapses a root with one child), so a tree of depth d has at least
/// 2^(d−1) leaves, and d ≤ 53 < 64. Realistic trees are under 10 levels deep: every internal
/// node holds at least three maximum-size items. The level is stored in a `u8`.
pub const TREE_DEPTH_MAX: u8 = 64;

/// Largest value: its length is stored as a `u32` in the overflow header's block count
/// arithmetic and in the engine's API contract (4 GiB − 1).
pub const VALUE_BYTES_MAX: u64 = u32::MAX as u64;

/// The layout version written by this crate. A block or superblock with a newer version is
/// refused with a distinguishable error (`FormatErrorKind::UnsupportedVersion`); the engine
/// refuses an older one with an error naming it (design.md §11.1).
pub const FORMAT_VERSION: u16 = FORMAT_VERSION_HINTS;

/// The layout version whose node slots carry each key's order hint (`node::key_hint`) and
/// store the key's offset from the block's end in 16 bits (design.md §12.4). Node blocks of
/// older versions are laid out differently, so the engine opens only stores of this
/// version.
pub const FORMAT_VERSION_HINTS: u16 = 3;

/// The layout version that adds the commit journal (design.md §11): the superblock's journal
/// fields and `Journal` blocks. From this version on every superblock records a journal
/// region (`Superblock::set_journal`) and `Superblock::decode` requires a valid one
/// (`check_journal`); below it the fields were reserved and must be zero.
pub const FORMAT_VERSION_JOURNAL: u16 = 2;

/// Tree id of the catalog of named trees.
pub const TREE_ID_CATALOG: u64 = 0;
/// Tree id that owns the allocator's blocks (bitmap, index, pending and orphan lists).
pub const TREE_ID_ALLOCATOR: u64 = 1;
/// First id handed to a user tree; ids below are reserved for internal trees.
pub const TREE_ID_FIRST_USER: u64 = 16;

/// Journal size used when the caller does not choose one (design.md §11.1).
pub const JOURNAL_BYTES_DEFAULT: u64 = 16 << 20;
/// The journal takes at most 1/`JOURNAL_DEVICE_FRACTION_MAX` of the device.
pub const JOURNAL_DEVICE_FRACTION_MAX: u64 = 8;
/// Copies of every journal block, written side by side in the same write (design.md §11.2).
pub const JOURNAL_COPY_COUNT: u64 = 2;
/// Fewest slots (twin block pairs) a journal region may have: room for a few small batches
/// and a record limit of at least one block's payload.
pub const JOURNAL_SLOT_COUNT_MIN: u64 = 8;
/// The journal header that follows the block header in every journal block.
pub const JOURNAL_HEADER_BYTES: usize = 64;
/// Offset of the record bytes (payload) in a journal block.
pub const JOURNAL_PAYLOAD_OFFSET: usize = HEADER_BYTES + JOURNAL_HEADER_BYTES;
/// The lsn of the first journal block ever written; lsn 0 means "none".
pub const JOURNAL_LSN_FIRST: u64 = 1;
/// `first_record` value of a journal block in which no record starts (all continuation).
pub const JOURNAL_NO_RECORD_START: u32 = u32::MAX;
/// The header of a journal record: seq, body length, op count, crc, reserved.
pub const JOURNAL_RECORD_HEADER_BYTES: usize = 24;
/// The default record limit is 1/`JOURNAL_RECORD_FRACTION_DEFAULT` of the ring's payload
/// (design.md §11.5: larger transactions commit through a checkpoint instead).
pub const JOURNAL_RECORD_FRACTION_DEFAULT: u64 = 8;
/// Hard cap on a record, whatever the journal size: its length is stored in a `u32`.
pub const JOURNAL_RECORD_BYTES_LIMIT: u64 = u32::MAX as u64;
/// Encoded size of a put op without key and value: tag, tree id, key length, value length.
pub const JOURNAL_OP_PUT_BYTES: usize = 1 + 8 + 2 + 4;
/// Encoded size of a remove op without key: tag, tree id, key length.
pub const JOURNAL_OP_REMOVE_BYTES: usize = 1 + 8 + 2;
/// Encoded size of a create-tree op without name: tag, tree id, name length.
pub const JOURNAL_OP_CREATE_TREE_BYTES: usize = 1 + 8 + 2;
/// Encoded size of a delete-tree op: tag, tree id.
pub const JOURNAL_OP_DELETE_TREE_BYTES: usize = 1 + 8;

/// Flag bit of a slot: the value is an `OverflowRef` (leaf nodes only).
pub const SLOT_FLAG_OVERFLOW: u8 = 1;

/// Largest key for a block size: a quarter of a block (1 KiB at 4 KiB).
pub const fn key_bytes_max(block_bytes: u32) -> usize {
    block_bytes as usize / 4
}

/// Largest value stored inline in a leaf: a quarter of a block less 128 bytes (896 at 4 KiB).
/// Larger values go to an overflow extent.
pub const fn value_inline_bytes_max(block_bytes: u32) -> usize {
    block_bytes as usize / 4 - 128
}

/// Bits in one allocator bitmap chunk: everything after the header (32,256 at 4 KiB).
pub const fn bitmap_bits_per_chunk(block_bytes: u32) -> u64 {
    (block_bytes as u64 - HEADER_BYTES as u64) * 8
}

/// Child pointers in one allocator index block.
pub const fn alloc_index_fanout(block_bytes: u32) -> usize {
    (block_bytes as usize - HEADER_BYTES) / CHILD_PTR_BYTES
}

/// The first block number after the superblock area.
pub const fn first_data_block(block_bytes: u32) -> u64 {
    SUPERBLOCK_AREA_BYTES / block_bytes as u64
}

/// Record bytes one journal block carries: everything after the two headers (3,968 at 4 KiB).
pub const fn journal_payload_bytes(block_bytes: u32) -> usize {
    block_bytes as usize - JOURNAL_PAYLOAD_OFFSET
}

/// Blocks of an overflow extent holding `value_len` bytes after its header.
pub const fn overflow_block_count(value_len: u64, block_bytes: u32) -> u64 {
    (HEADER_BYTES as u64 + value_len).div_ceil(block_bytes as u64)
}

/// Extents in one pending-list block (after the header and the `next` pointer).
pub const fn pending_list_capacity(block_bytes: u32) -> usize {
    (block_bytes as usize - HEADER_BYTES - CHILD_PTR_BYTES) / EXTENT_BYTES
}

/// Child pointers in one orphan-list block (after the header and the `next` pointer).
pub const fn orphan_list_capacity(block_bytes: u32) -> usize {
    (block_bytes as usize - HEADER_BYTES - CHILD_PTR_BYTES) / CHILD_PTR_BYTES
}

/// Bytes one leaf item of maximum size takes (slot, key, largest value form).
pub const fn leaf_item_bytes_max(block_bytes: u32) -> usize {
    let value_max = if value_inline_bytes_max(block_bytes) > OVERFLOW_REF_BYTES {
        value_inline_bytes_max(block_bytes)
    } else {
        OVERFLOW_REF_BYTES
    };
    SLOT_BYTES + key_bytes_max(block_bytes) + value_max
}

/// Bytes one internal item of maximum size takes (slot, key, child pointer).
pub const fn internal_item_bytes_max(block_bytes: u32) -> usize {
    SLOT_BYTES + key_bytes_max(block_bytes) + CHILD_PTR_BYTES
}

/// Whether `block_bytes` is a valid block size: a power of two in
/// [`BLOCK_BYTES_MIN`, `BLOCK_BYTES_MAX`].
pub const fn is_valid_block_bytes(block_bytes: u32) -> bool {
    block_bytes.is_power_of_two()
        && block_bytes >= BLOCK_BYTES_MIN
        && block_bytes <= BLOCK_BYTES_MAX
}

/// Checks a block size read from disk or given by a caller.
pub fn check_block_bytes(block_bytes: u32) -> Result<(), FormatError> {
    if is_valid_block_bytes(block_bytes) {
        Ok(())
    } else {
        Err(FormatError::corrupt(format!(
            "block size {block_bytes} is not a power of two in [{BLOCK_BYTES_MIN}, \
             {BLOCK_BYTES_MAX}]"
        )))
    }
}

/// Checks a buffer length as one block and returns it as a block size.
pub fn check_block_len(len: usize) -> Result<u32, FormatError> {
    match u32::try_from(len) {
        Ok(block_bytes) if is_valid_block_bytes(block_bytes) => Ok(block_bytes),
        _ => Err(FormatError::corrupt(format!(
            "block buffer of {len} bytes is not a valid block size"
        ))),
    }
}

// Compile-time cross-checks. Each one states a property other code relies on.
const _: () = assert!(BLOCK_BYTES_MIN.is_power_of_two() && BLOCK_BYTES_MAX.is_power_of_two());
const _: () = assert!(is_valid_block_bytes(BLOCK_BYTES_DEFAULT));
const _: () = assert!(SUPERBLOCK_BYTES as u64 <= SUPERBLOCK_SLOT_STRIDE_BYTES);
const _: () =
    assert!(SUPERBLOCK_SLOT_STRIDE_BYTES * SUPERBLOCK_SLOT_COUNT as u64 == SUPERBLOCK_AREA_BYTES);
// The superblock area is a whole number of blocks at every block size, so tree blocks
// start on a block boundary and block 0 (the null address) is never a tree block.
const _: () = assert!(SUPERBLOCK_AREA_BYTES.is_multiple_of(BLOCK_BYTES_MAX as u64));
const _: () = assert!(first_data_block(BLOCK_BYTES_MAX) >= 1);
// Slot stride keeps each slot in its own block (misdirected writes hit one copy only).
const _: () = assert!(SUPERBLOCK_SLOT_STRIDE_BYTES >= BLOCK_BYTES_MAX as u64);
// Key lengths are stored in a u16, in-block offsets in a u32.
const _: () = assert!(key_bytes_max(BLOCK_BYTES_MAX) <= u16::MAX as usize);
const _: () = assert!(value_inline_bytes_max(BLOCK_BYTES_MIN) >= OVERFLOW_REF_BYTES);
// Every leaf holds at least two items of maximum size, every internal node three, at both
// ends of the block size range (so a split always leaves both halves non-empty).
const _: () =
    assert!(2 * leaf_item_bytes_max(BLOCK_BYTES_MIN) <= BLOCK_BYTES_MIN as usize - HEADER_BYTES);
const _: () =
    assert!(2 * leaf_item_bytes_max(BLOCK_BYTES_MAX) <= BLOCK_BYTES_MAX as usize - HEADER_BYTES);
const _: () = assert!(
    3 * internal_item_bytes_max(BLOCK_BYTES_MIN) <= BLOCK_BYTES_MIN as usize - HEADER_BYTES
);
const _: () = assert!(
    3 * internal_item_bytes_max(BLOCK_BYTES_MAX) <= BLOCK_BYTES_MAX as usize - HEADER_BYTES
);
// Item counts are stored in a u16.
const _: () = assert!((BLOCK_BYTES_MAX as usize - HEADER_BYTES) / SLOT_BYTES <= u16::MAX as usize);
const _: () = assert!(alloc_index_fanout(BLOCK_BYTES_MIN) >= 2);
const _: () = assert!(pending_list_capacity(BLOCK_BYTES_MIN) >= 2);
const _: () = assert!(orphan_list_capacity(BLOCK_BYTES_MIN) >= 2);
// The largest value's extent length fits the header's u32 block count at the smallest block.
const _: () = assert!(overflow_block_count(VALUE_BYTES_MAX, BLOCK_BYTES_MIN) <= u32::MAX as u64);
// Bitmap chunks are whole 64-bit words (the free-run search reads a word at a time).
const _: () = assert!((BLOCK_BYTES_MIN as usize - HEADER_BYTES).is_multiple_of(8));
const _: () = assert!(TREE_DEPTH_MAX >= 53);
// The journal: its two headers leave most of the smallest block for records, every in-block
// offset fits the u32 framing fields with room for the "no record starts here" marker, and
// a maximum-size put (key and value lengths in u16 / u32) is a valid op at every block size.
const _: () = assert!(JOURNAL_PAYLOAD_OFFSET == 128);
const _: () = assert!(journal_payload_bytes(BLOCK_BYTES_MIN) >= 3 * BLOCK_BYTES_MIN as usize / 4);
const _: () = assert!((BLOCK_BYTES_MAX as u64) < JOURNAL_NO_RECORD_START as u64);
const _: () = assert!(JOURNAL_COPY_COUNT == 2);
const _: () = assert!(JOURNAL_SLOT_COUNT_MIN >= JOURNAL_RECORD_FRACTION_DEFAULT);
const _: () = assert!(JOURNAL_BYTES_DEFAULT.is_multiple_of(BLOCK_BYTES_MAX as u64));
const _: () = assert!(
    JOURNAL_BYTES_DEFAULT / (JOURNAL_COPY_COUNT * BLOCK_BYTES_MAX as u64) >= JOURNAL_SLOT_COUNT_MIN
);
const _: () = assert!(
    JOURNAL_RECORD_HEADER_BYTES + JOURNAL_OP_PUT_BYTES < journal_payload_bytes(BLOCK_BYTES_MIN)
);
const _: () = assert!(FORMAT_VERSION_JOURNAL > 1 && FORMAT_VERSION_JOURNAL < FORMAT_VERSION_HINTS);
const _: () =
    assert!(TREE_ID_CATALOG < TREE_ID_FIRST_USER && TREE_ID_ALLOCATOR < TREE_ID_FIRST_USER);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_at_4k() {
        assert_eq!(key_bytes_max(4096), 1024);
        assert_eq!(value_inline_bytes_max(4096), 896);
        assert_eq!(bitmap_bits_per_chunk(4096), 32_256);
        assert_eq!(alloc_index_fanout(4096), 168);
        assert_eq!(first_data_block(4096), 64);
        assert_eq!(first_data_block(65536), 4);
        assert_eq!(pending_list_capacity(4096), 250);
        assert_eq!(orphan_list_capacity(4096), 167);
        assert_eq!(journal_payload_bytes(4096), 3968);
        assert_eq!(journal_payload_bytes(65536), 65408);
    }

    #[test]
    fn overflow_counts() {
        assert_eq!(overflow_block_count(0, 4096), 1);
        assert_eq!(overflow_block_count(4032, 4096), 1);
        assert_eq!(overflow_block_count(4033, 4096), 2);
        assert_eq!(overflow_block_count(VALUE_BYTES_MAX, 4096), 1_048_577);
    }

    #[test]
    fn block_sizes() {
        for ok in [4096u32, 8192, 16384, 32768, 65536] {
            assert!(check_block_bytes(ok).is_ok());
            assert_eq!(check_block_len(ok as usize).ok(), Some(ok));
        }
        for bad in [0u32, 1, 2048, 4095, 4097, 6144, 131_072, u32::MAX] {
            assert!(check_block_bytes(bad).is_err());
        }
        assert!(check_block_len(usize::MAX).is_err());
    }
}
