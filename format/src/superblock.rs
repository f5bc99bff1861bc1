//! The superblock record and the slots that hold it.
//!
//! ```text
//! byte 0                64 KiB             128 KiB            192 KiB            256 KiB
//! | slot 0 (copy 0, A) | slot 1 (copy 0, B) | slot 2 (copy 1, A) | slot 3 (copy 1, B) | blocks
//!
//! Superblock record (4096 bytes; crc32 over all 4096 bytes with the crc field zeroed)
//!   0 magic           [u8; 8]  b"ARBORSB\0"
//!   8 version         u16
//!  10 slot            u8       slot index this copy was written to (catches misdirected writes)
//!  11 reserved        u8
//!  12 block_bytes     u32
//!  16 uuid            [u8;16]  store UUID (random at create)
//!  32 device_bytes    u64      usable size of the store, a multiple of block_bytes
//!  40 generation      u64
//!  48 flushed_gen     u64      newest generation whose flush had completed when this was built
//!  56 prev_crc        u32      crc of the previous generation's superblock
//!  60 crc             u32
//!  64 catalog_root    ChildPtr (24)   B-tree of named trees
//!  88 alloc_root      ChildPtr (24)   allocator index root
//! 112 pending_root    ChildPtr (24)   head of the pending(G) extent lists
//! 136 orphan_root     ChildPtr (24)   head of the orphan list (deleted trees not yet freed)
//! 160 next_tree_id    u64
//! 168 block_count     u64      device_bytes / block_bytes
//! 176 catalog_level   u8       level of the catalog root block (0 when it is a leaf)
//! 177 alloc_level     u8       level of the allocator index root block (≥ 1 unless null)
//! 178 reserved1       [u8; 6]  zero
//! 184 journal_start   u64      first block of the journal region; 0 = no journal (version 1)
//! 192 journal_blocks  u64      blocks in the region (2 per slot: both copies of each block)
//! 200 replay_lsn      u64      lsn of the first journal block recovery reads (design.md §11.6)
//! 208 checkpoint_seq  u64      last seq in this checkpoint: replay applies records after it
//! 216 reserved        [u8; 3880] zero
//! ```
//!
//! The four journal fields occupy bytes that version 1 required to be zero, so a version 1
//! superblock decodes unchanged with "no journal"; they are valid from
//! `FORMAT_VERSION_JOURNAL` on (see its documentation for the version bump).

use crate::constants::{
    check_block_bytes, first_data_block, FORMAT_VERSION, FORMAT_VERSION_JOURNAL, JOURNAL_LSN_FIRST,
    SUPERBLOCK_BYTES, SUPERBLOCK_SLOT_COUNT, SUPERBLOCK_SLOT_STRIDE_BYTES, TREE_DEPTH_MAX,
    TREE_ID_FIRST_USER,
};
use crate::error::FormatError;
use crate::journal::JournalRegion;
use crate::le::{U16Le, U32Le, U64Le};
use crate::ptr::ChildPtr;
use bytemuck::{Pod, Zeroable};
use core::fmt;

/// Magic bytes at offset 0 of a superblock record.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"ARBORSB\0";

const CRC_OFFSET: usize = 60;
const RESERVED_OFFSET: usize = 216;

/// Byte offset of superblock slot `slot` (0..SUPERBLOCK_SLOT_COUNT) on the device.
pub const fn slot_offset(slot: u8) -> u64 {
    slot as u64 * SUPERBLOCK_SLOT_STRIDE_BYTES
}

/// The alternation a slot belongs to: 0 (A = slots 0 and 2) or 1 (B = slots 1 and 3). A commit
/// writes both copies of one alternation, never the one holding the newest durable superblock.
pub const fn alternation(slot: u8) -> u8 {
    slot % 2
}

/// The two slots (copies) of alternation `alternation` (0 or 1).
pub const fn alternation_slots(alternation: u8) -> [u8; 2] {
    let a = alternation % 2;
    [a, a + 2]
}

/// The superblock record (see the module diagram). Exactly `SUPERBLOCK_BYTES` bytes.
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Superblock {
    magic: [u8; 8],
    version: U16Le,
    slot: u8,
    reserved0: u8,
    block_bytes: U32Le,
    uuid: [u8; 16],
    device_bytes: U64Le,
    generation: U64Le,
    flushed_gen: U64Le,
    prev_crc: U32Le,
    crc: U32Le,
    catalog_root: ChildPtr,
    alloc_root: ChildPtr,
    pending_root: ChildPtr,
    orphan_root: ChildPtr,
    next_tree_id: U64Le,
    block_count: U64Le,
    catalog_level: u8,
    alloc_level: u8,
    reserved1: [u8; 6],
    journal_start: U64Le,
    journal_blocks: U64Le,
    replay_lsn: U64Le,
    checkpoint_seq: U64Le,
    reserved: [u8; SUPERBLOCK_BYTES - RESERVED_OFFSET],
}

const _: () = assert!(core::mem::size_of::<Superblock>() == SUPERBLOCK_BYTES);
const _: () = assert!(core::mem::align_of::<Superblock>() == 1);
const _: () = assert!(core::mem::offset_of!(Superblock, crc) == CRC_OFFSET);
const _: () = assert!(core::mem::offset_of!(Superblock, reserved) == RESERVED_OFFSET);

macro_rules! le_accessors {
    ($($(#[$doc:meta])* $get:ident, $set:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $get(&self) -> $ty {
            self.$get.get()
        }
        #[doc = concat!("Sets `", stringify!($get), "`.")]
        pub fn $set(&mut self, value: $ty) {
            self.$get.set(value);
        }
    )*};
}

macro_rules! plain_accessors {
    ($($(#[$doc:meta])* $get:ident, $set:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $get(&self) -> $ty {
            self.$get
        }
        #[doc = concat!("Sets `", stringify!($get), "`.")]
        pub fn $set(&mut self, value: $ty) {
            self.$get = value;
        }
    )*};
}

impl Superblock {
    /// A fresh superblock for a new store: magic, version, block size, uuid, device size and
    /// block count set, `next_tree_id` = `TREE_ID_FIRST_USER`, null roots, generation 0.
    /// `device_bytes` is rounded down to a whole number of blocks.
    pub fn new(block_bytes: u32, uuid: [u8; 16], device_bytes: u64) -> Self {
        let mut sb = Self::zeroed();
        sb.magic = SUPERBLOCK_MAGIC;
        sb.version = U16Le::new(FORMAT_VERSION);
        sb.block_bytes = U32Le::new(block_bytes);
        sb.uuid = uuid;
        sb.set_device_bytes(device_bytes);
        sb.next_tree_id = U64Le::new(TREE_ID_FIRST_USER);
        sb
    }

    le_accessors! {
        /// Format version of the writer.
        version, set_version: u16;
        /// Block size of the store.
        block_bytes, set_block_bytes: u32;
        /// Generation this superblock commits.
        generation, set_generation: u64;
        /// Newest generation whose flush had completed when this superblock was built.
        flushed_gen, set_flushed_gen: u64;
        /// crc of the previous generation's superblock.
        prev_crc, set_prev_crc: u32;
        /// Stored crc (valid after `seal`).
        crc, set_crc: u32;
        /// Next tree id to hand out (ids are never reused).
        next_tree_id, set_next_tree_id: u64;
        /// Blocks the allocator manages (`device_bytes / block_bytes`).
        block_count, set_block_count: u64;
        /// Lsn of the first journal block recovery reads: the block where the first record
        /// with seq > `checkpoint_seq` starts, or the next lsn to write when none is pending.
        replay_lsn, set_replay_lsn: u64;
        /// Last seq whose effects this checkpoint holds; replay applies only later records.
        checkpoint_seq, set_checkpoint_seq: u64;
    }

    /// The journal region, or `None` for a store without one (version 1).
    pub fn journal(&self) -> Result<Option<JournalRegion>, FormatError> {
        if self.journal_blocks.get() == 0 {
            return Ok(None);
        }
        JournalRegion::new(self.block_bytes(), self.journal_start.get(), self.journal_blocks.get())
            .map(Some)
    }

    /// Records the journal region (at create; it never moves).
    pub fn set_journal(&mut self, region: &JournalRegion) {
        self.journal_start.set(region.start_block());
        self.journal_blocks.set(region.block_count());
    }

    plain_accessors! {
        /// The slot this copy was sealed for.
        slot, set_slot: u8;
        /// Store UUID.
        uuid, set_uuid: [u8; 16];
        /// Root of the catalog of named trees.
        catalog_root, set_catalog_root: ChildPtr;
        /// Root of the allocator index.
        alloc_root, set_alloc_root: ChildPtr;
        /// Head of the pending(G) extent lists.
        pending_root, set_pending_root: ChildPtr;
        /// Head of the orphan list.
        orphan_root, set_orphan_root: ChildPtr;
        /// Level of the catalog root block.
        catalog_level, set_catalog_level: u8;
        /// Level of the allocator index root block.
        alloc_level, set_alloc_level: u8;
    }

    /// Usable size of the store in bytes.
    pub fn device_bytes(&self) -> u64 {
        self.device_bytes.get()
    }

    /// Sets the usable size, rounded down to whole blocks, and the matching `block_count`.
    pub fn set_device_bytes(&mut self, device_bytes: u64) {
        let block_bytes = u64::from(self.block_bytes()).max(1);
        let block_count = device_bytes / block_bytes;
        self.device_bytes.set(block_count * block_bytes);
        self.block_count.set(block_count);
    }

    /// crc32 over the record with the crc field taken as zero.
    pub fn compute_crc(&self) -> u32 {
        let bytes = bytemuck::bytes_of(self);
        let mut hasher = crc32fast::Hasher::new();
        match (bytes.get(..CRC_OFFSET), bytes.get(CRC_OFFSET + 4..)) {
            (Some(head), Some(tail)) => {
                hasher.update(head);
                hasher.update(&[0; 4]);
                hasher.update(tail);
            }
            _ => hasher.update(bytes),
        }
        hasher.finalize()
    }

    /// Stamps the slot it will be written to and the crc. Returns the crc (the next
    /// generation's `prev_crc`).
    pub fn seal(&mut self, slot: u8) -> u32 {
        assert!(slot < SUPERBLOCK_SLOT_COUNT, "superblock slot {slot} out of range");
        self.slot = slot;
        let crc = self.compute_crc();
        self.crc.set(crc);
        crc
    }

    /// The on-disk bytes (`SUPERBLOCK_BYTES` long); `seal` first.
    pub fn encode(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// Decodes and validates the first `SUPERBLOCK_BYTES` of `bytes`: magic (`BadMagic`),
    /// version (`UnsupportedVersion` when newer), crc, block size, slot index, device size
    /// against block count, roots inside the device, levels, reserved bytes zero.
    pub fn decode(bytes: &[u8]) -> Result<Superblock, FormatError> {
        Self::decode_up_to(bytes, FORMAT_VERSION)
    }

    /// `decode` accepting versions up to `version_max`: the tests run the journal checks of
    /// `FORMAT_VERSION_JOURNAL` before the engine bumps `FORMAT_VERSION` to it.
    fn decode_up_to(bytes: &[u8], version_max: u16) -> Result<Superblock, FormatError> {
        let record = bytes.get(..SUPERBLOCK_BYTES).ok_or_else(|| {
            FormatError::corrupt(format!(
                "superblock: {} bytes, need {SUPERBLOCK_BYTES}",
                bytes.len()
            ))
        })?;
        let sb: Superblock = bytemuck::try_pod_read_unaligned(record)
            .map_err(|_| FormatError::corrupt("superblock: cannot read record"))?;
        if sb.magic != SUPERBLOCK_MAGIC {
            return Err(FormatError::bad_magic("superblock", &sb.magic));
        }
        let version = sb.version();
        if version > version_max {
            return Err(FormatError::unsupported_version("superblock", version));
        }
        if version == 0 {
            return Err(FormatError::corrupt("superblock: format version 0"));
        }
        let computed = sb.compute_crc();
        if computed != sb.crc() {
            return Err(FormatError::checksum("superblock", sb.crc(), computed));
        }
        sb.check_fields()?;
        Ok(sb)
    }

    /// `decode`, and the record must say it was written to `slot` (misdirected writes).
    pub fn decode_slot(bytes: &[u8], slot: u8) -> Result<Superblock, FormatError> {
        let sb = Self::decode(bytes)?;
        if sb.slot != slot {
            return Err(FormatError::corrupt(format!(
                "superblock: read from slot {slot} but written for slot {}",
                sb.slot
            )));
        }
        Ok(sb)
    }

    fn check_fields(&self) -> Result<(), FormatError> {
        let corrupt = |reason: String| Err(FormatError::corrupt(format!("superblock: {reason}")));
        check_block_bytes(self.block_bytes())?;
        let block_bytes = u64::from(self.block_bytes());
        if self.slot >= SUPERBLOCK_SLOT_COUNT {
            return corrupt(format!("slot {} ≥ {SUPERBLOCK_SLOT_COUNT}", self.slot));
        }
        if self.reserved0 != 0
            || self.reserved1.iter().any(|&b| b != 0)
            || self.reserved.iter().any(|&b| b != 0)
        {
            return corrupt("reserved bytes are not zero".into());
        }
        if !self.device_bytes().is_multiple_of(block_bytes) {
            return corrupt(format!(
                "device_bytes {} is not a multiple of block size {block_bytes}",
                self.device_bytes()
            ));
        }
        if self.block_count() != self.device_bytes() / block_bytes {
            return corrupt(format!(
                "block_count {} ≠ device_bytes {} / block size {block_bytes}",
                self.block_count(),
                self.device_bytes()
            ));
        }
        let journal = self.check_journal()?;
        // Tree blocks start after the journal region when there is one.
        let first = journal.map_or(first_data_block(self.block_bytes()), |j| j.end_block());
        if self.block_count() <= first {
            return corrupt(format!(
                "block_count {} leaves no block after the superblock area and journal",
                self.block_count()
            ));
        }
        if self.flushed_gen() > self.generation() {
            return corrupt(format!(
                "flushed_gen {} > generation {}",
                self.flushed_gen(),
                self.generation()
            ));
        }
        if self.next_tree_id() < TREE_ID_FIRST_USER {
            return corrupt(format!("next_tree_id {} < {TREE_ID_FIRST_USER}", self.next_tree_id()));
        }
        if self.catalog_level > TREE_DEPTH_MAX || self.alloc_level > TREE_DEPTH_MAX {
            return corrupt(format!(
                "root levels {} / {} exceed {TREE_DEPTH_MAX}",
                self.catalog_level, self.alloc_level
            ));
        }
        let roots = [
            ("catalog_root", self.catalog_root),
            ("alloc_root", self.alloc_root),
            ("pending_root", self.pending_root),
            ("orphan_root", self.orphan_root),
        ];
        for (name, root) in roots {
            self.check_root(name, &root, first)?;
        }
        Ok(())
    }

    /// The journal fields: all zero before `FORMAT_VERSION_JOURNAL` (they were reserved), a
    /// region right after the superblock area from it on, and a replay lsn that is a real lsn.
    fn check_journal(&self) -> Result<Option<JournalRegion>, FormatError> {
        let corrupt = |reason: String| Err(FormatError::corrupt(format!("superblock: {reason}")));
        let fields = [
            self.journal_start.get(),
            self.journal_blocks.get(),
            self.replay_lsn(),
            self.checkpoint_seq(),
        ];
        if self.version() < FORMAT_VERSION_JOURNAL {
            if fields.iter().any(|&f| f != 0) {
                return corrupt(format!(
                    "version {} has non-zero journal fields {fields:?}",
                    self.version()
                ));
            }
            return Ok(None);
        }
        let Some(region) = self.journal()? else {
            return corrupt(format!("version {} has no journal region", self.version()));
        };
        if region.start_block() != first_data_block(self.block_bytes()) {
            return corrupt(format!(
                "journal starts at block {}, not right after the superblock area ({})",
                region.start_block(),
                first_data_block(self.block_bytes())
            ));
        }
        if region.end_block() >= self.block_count() {
            return corrupt(format!(
                "journal [{}, {}) leaves no block of a device of {} blocks",
                region.start_block(),
                region.end_block(),
                self.block_count()
            ));
        }
        if self.replay_lsn() < JOURNAL_LSN_FIRST {
            return corrupt(format!("replay_lsn {} < {JOURNAL_LSN_FIRST}", self.replay_lsn()));
        }
        Ok(Some(region))
    }

    fn check_root(&self, name: &str, root: &ChildPtr, first: u64) -> Result<(), FormatError> {
        if root.flags() & !ChildPtr::FLAGS_KNOWN != 0 || root.is_crc_pending() {
            return Err(FormatError::corrupt(format!(
                "superblock: {name} has flags {:#x} (a durable root's crc is always final)",
                root.flags()
            )));
        }
        if root.is_null() {
            return Ok(());
        }
        if root.address() < first || root.address() >= self.block_count() {
            return Err(FormatError::corrupt(format!(
                "superblock: {name} address {} outside [{first}, {})",
                root.address(),
                self.block_count()
            )));
        }
        if root.generation() > self.generation() {
            return Err(FormatError::corrupt(format!(
                "superblock: {name} generation {} > superblock generation {}",
                root.generation(),
                self.generation()
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for Superblock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Superblock")
            .field("version", &self.version())
            .field("slot", &self.slot)
            .field("block_bytes", &self.block_bytes())
            .field("uuid", &format_args!("{:02x?}", self.uuid))
            .field("device_bytes", &self.device_bytes())
            .field("generation", &self.generation())
            .field("flushed_gen", &self.flushed_gen())
            .field("prev_crc", &format_args!("{:#010x}", self.prev_crc()))
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .field("catalog_root", &self.catalog_root)
            .field("alloc_root", &self.alloc_root)
            .field("pending_root", &self.pending_root)
            .field("orphan_root", &self.orphan_root)
            .field("next_tree_id", &self.next_tree_id())
            .field("block_count", &self.block_count())
            .field("catalog_level", &self.catalog_level)
            .field("alloc_level", &self.alloc_level)
            .field("journal_start", &self.journal_start.get())
            .field("journal_blocks", &self.journal_blocks.get())
            .field("replay_lsn", &self.replay_lsn())
            .field("checkpoint_seq", &self.checkpoint_seq())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FormatErrorKind;
    use core::mem::offset_of;

    #[test]
    fn field_offsets() {
        assert_eq!(offset_of!(Superblock, magic), 0);
        assert_eq!(offset_of!(Superblock, version), 8);
        assert_eq!(offset_of!(Superblock, slot), 10);
        assert_eq!(offset_of!(Superblock, reserved0), 11);
        assert_eq!(offset_of!(Superblock, block_bytes), 12);
        assert_eq!(offset_of!(Superblock, uuid), 16);
        assert_eq!(offset_of!(Superblock, device_bytes), 32);
        assert_eq!(offset_of!(Superblock, generation), 40);
        assert_eq!(offset_of!(Superblock, flushed_gen), 48);
        assert_eq!(offset_of!(Superblock, prev_crc), 56);
        assert_eq!(offset_of!(Superblock, crc), 60);
        assert_eq!(offset_of!(Superblock, catalog_root), 64);
        assert_eq!(offset_of!(Superblock, alloc_root), 88);
        assert_eq!(offset_of!(Superblock, pending_root), 112);
        assert_eq!(offset_of!(Superblock, orphan_root), 136);
        assert_eq!(offset_of!(Superblock, next_tree_id), 160);
        assert_eq!(offset_of!(Superblock, block_count), 168);
        assert_eq!(offset_of!(Superblock, catalog_level), 176);
        assert_eq!(offset_of!(Superblock, alloc_level), 177);
        assert_eq!(offset_of!(Superblock, reserved1), 178);
        assert_eq!(offset_of!(Superblock, journal_start), 184);
        assert_eq!(offset_of!(Superblock, journal_blocks), 192);
        assert_eq!(offset_of!(Superblock, replay_lsn), 200);
        assert_eq!(offset_of!(Superblock, checkpoint_seq), 208);
        assert_eq!(offset_of!(Superblock, reserved), 216);
        assert_eq!(core::mem::size_of::<Superblock>(), 4096);
    }

    /// A current-version superblock (with a 16-block journal at block 64).
    pub(crate) fn sample() -> Superblock {
        let mut sb = sample_v1();
        sb.set_version(FORMAT_VERSION);
        sb.set_journal(&JournalRegion::new(4096, 64, 16).unwrap());
        sb.set_replay_lsn(1);
        sb.seal(2);
        sb
    }

    /// A version 1 superblock: no journal.
    fn sample_v1() -> Superblock {
        let mut sb = Superblock::new(4096, [7; 16], 1 << 30);
        sb.set_version(1);
        sb.set_generation(9);
        sb.set_flushed_gen(8);
        sb.set_catalog_root(ChildPtr::new(100, 9, 0x1234));
        sb.set_alloc_root(ChildPtr::new(101, 9, 0x5678));
        sb.set_alloc_level(1);
        sb.seal(2);
        sb
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        let bytes = sb.encode().to_vec();
        let back = Superblock::decode(&bytes).unwrap();
        assert_eq!(back, sb);
        assert_eq!(back.encode(), &bytes[..]);
        assert_eq!(back.block_count(), (1 << 30) / 4096);
        assert!(Superblock::decode_slot(&bytes, 2).is_ok());
        assert!(Superblock::decode_slot(&bytes, 0).is_err());
        // A longer read (a whole slot stride) decodes the first 4096 bytes.
        let mut long = bytes.clone();
        long.resize(65536, 0xee);
        assert_eq!(Superblock::decode(&long).unwrap(), sb);
    }

    #[test]
    fn rejects() {
        let bytes = sample().encode().to_vec();
        let mut magic = bytes.clone();
        magic[0] = 0;
        assert!(Superblock::decode(&magic).unwrap_err().is_bad_magic());
        let mut newer = sample();
        newer.set_version(FORMAT_VERSION + 1);
        newer.seal(0);
        assert!(Superblock::decode(newer.encode()).unwrap_err().is_unsupported_version());
        let mut flip = bytes.clone();
        flip[3000] ^= 0x10;
        assert!(matches!(
            Superblock::decode(&flip).unwrap_err().kind,
            FormatErrorKind::ChecksumMismatch { .. }
        ));
        let mut bad = sample();
        bad.set_block_count(5);
        bad.seal(0);
        assert!(Superblock::decode(bad.encode()).is_err());
        let mut bad = sample();
        bad.set_alloc_root(ChildPtr::new(1 << 40, 1, 0));
        bad.seal(0);
        assert!(Superblock::decode(bad.encode()).is_err());
        let mut bad = sample();
        bad.set_block_bytes(3000);
        bad.seal(0);
        assert!(Superblock::decode(bad.encode()).is_err());
        assert!(Superblock::decode(&bytes[..4095]).is_err());
    }

    /// A version `FORMAT_VERSION_JOURNAL` superblock with a 16-block journal at block 64.
    fn with_journal() -> Superblock {
        let mut sb = sample();
        sb.set_version(FORMAT_VERSION_JOURNAL);
        sb.set_journal(&JournalRegion::new(4096, 64, 16).unwrap());
        sb.set_replay_lsn(7);
        sb.set_checkpoint_seq(41);
        sb.seal(1);
        sb
    }

    fn decode_journal(sb: &Superblock) -> Result<Superblock, FormatError> {
        Superblock::decode_up_to(sb.encode(), FORMAT_VERSION_JOURNAL)
    }

    #[test]
    fn version_1_has_no_journal() {
        let sb = Superblock::decode(sample_v1().encode()).unwrap();
        assert_eq!(sb.journal().unwrap(), None);
        assert_eq!((sb.replay_lsn(), sb.checkpoint_seq()), (0, 0));
        // Version 1 stores never set the fields (they were reserved, and still must be 0).
        let mut bad = sample_v1();
        bad.set_checkpoint_seq(1);
        bad.seal(2);
        assert!(Superblock::decode(bad.encode()).is_err());
        let mut bad = sample_v1();
        bad.set_journal(&JournalRegion::new(4096, 64, 16).unwrap());
        bad.seal(2);
        assert!(Superblock::decode(bad.encode()).is_err());
        // A decoder of version 1 refuses a journal store by version, never misreads it.
        let err = Superblock::decode_up_to(with_journal().encode(), 1).unwrap_err();
        assert!(err.is_unsupported_version());
    }

    #[test]
    fn journal_fields() {
        let sb = decode_journal(&with_journal()).unwrap();
        assert_eq!(sb, with_journal());
        let region = sb.journal().unwrap().unwrap();
        assert_eq!((region.start_block(), region.block_count()), (64, 16));
        assert_eq!((sb.replay_lsn(), sb.checkpoint_seq()), (7, 41));
        assert!(format!("{sb:?}").contains("replay_lsn: 7"));
        let refused = |edit: &dyn Fn(&mut Superblock)| {
            let mut sb = with_journal();
            edit(&mut sb);
            sb.seal(1);
            decode_journal(&sb).unwrap_err()
        };
        refused(&|sb| sb.set_journal(&JournalRegion::new(4096, 65, 16).unwrap()));
        refused(&|sb| sb.journal_blocks.set(0));
        refused(&|sb| sb.journal_blocks.set(17));
        refused(&|sb| sb.set_replay_lsn(0));
        // A root inside the journal region, a journal filling the device.
        refused(&|sb| sb.set_catalog_root(ChildPtr::new(70, 9, 1)));
        refused(&|sb| sb.set_journal(&JournalRegion::new(4096, 64, (1 << 18) - 64).unwrap()));
        refused(&|sb| sb.reserved1[3] = 1);
    }

    #[test]
    fn slots() {
        assert_eq!(slot_offset(0), 0);
        assert_eq!(slot_offset(3), 196_608);
        assert_eq!([alternation(0), alternation(1), alternation(2), alternation(3)], [0, 1, 0, 1]);
        assert_eq!(alternation_slots(0), [0, 2]);
        assert_eq!(alternation_slots(1), [1, 3]);
    }
}
