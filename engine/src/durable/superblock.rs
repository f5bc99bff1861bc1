//! The superblock area: the one reader of the device's first `SUPERBLOCK_AREA_BYTES`, used
//! by `open` (recovery) and by the offline check alike, and the decoding of each slot.

use arbor_format::constants::{
    FORMAT_VERSION, SUPERBLOCK_AREA_BYTES, SUPERBLOCK_BYTES, SUPERBLOCK_SLOT_COUNT,
};
use arbor_format::superblock::{slot_offset, Superblock, SUPERBLOCK_MAGIC};

use crate::io::{dev_error, target_name, AlignedBuf, BlockDevice};
use crate::{Error, Result};

/// What one superblock slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotState {
    /// A record that verifies (magic, version, crc, fields, slot index).
    Valid,
    /// All zeros: never written (a fresh store writes one alternation at a time).
    Empty,
    /// Anything else: the reason it fails verification.
    Invalid(String),
}

/// One superblock slot as read from the device.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SlotReport {
    /// The slot's number (0..4: two alternations of two copies, design.md §10.11).
    pub slot: u8,
    /// Byte offset of the slot on the device.
    pub offset: u64,
    /// Whether the slot is empty, valid or invalid.
    pub state: SlotState,
    /// The decoded record, when it verifies.
    pub superblock: Option<Superblock>,
    /// The generation an invalid record claims (unverified: a torn copy's last words).
    pub claimed_generation: Option<u64>,
    /// The format version of a record written by a newer Arbor (not decoded).
    pub newer_version: Option<u16>,
}

impl SlotReport {
    /// The verified generation of this copy.
    pub fn generation(&self) -> Option<u64> {
        self.superblock.map(|sb| sb.generation())
    }
}

/// Decodes slot `slot` from `area`, the first bytes of the device (up to 256 KiB; a shorter
/// area leaves the slots past its end `Invalid`). Pure: no I/O, never panics.
pub fn decode_slot(area: &[u8], slot: u8) -> SlotReport {
    let offset = slot_offset(slot);
    let mut report = SlotReport {
        slot,
        offset,
        state: SlotState::Empty,
        superblock: None,
        claimed_generation: None,
        newer_version: None,
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let Some(bytes) = area.get(start..start.saturating_add(SUPERBLOCK_BYTES)) else {
        report.state = SlotState::Invalid("beyond the end of the device".into());
        return report;
    };
    if bytes.iter().all(|&b| b == 0) {
        return report;
    }
    if bytes.get(..8) == Some(&SUPERBLOCK_MAGIC[..]) {
        report.claimed_generation =
            bytemuck::try_pod_read_unaligned::<Superblock>(bytes).ok().map(|sb| sb.generation());
    }
    match Superblock::decode_slot(bytes, slot) {
        Ok(sb) => {
            report.state = SlotState::Valid;
            report.superblock = Some(sb);
        }
        Err(e) => {
            if e.is_unsupported_version() {
                report.newer_version = bytes.get(8..10).map(|v| u16::from_le_bytes([v[0], v[1]]));
            }
            report.state = SlotState::Invalid(e.to_string());
        }
    }
    report
}

/// Reads the superblock area (zero-padded when the device is shorter).
pub(crate) fn read_area(dev: &dyn BlockDevice) -> Result<AlignedBuf> {
    let sector = (dev.sector_bytes() as usize).max(1);
    let mut area = AlignedBuf::zeroed(SUPERBLOCK_AREA_BYTES as usize, sector.max(4096));
    let have = usize::try_from(dev.len_bytes()).unwrap_or(usize::MAX).min(area.len());
    let have = have - have % sector;
    if let Some(buf) = area.get_mut(..have) {
        dev.read_at(0, buf).map_err(dev_error(dev, "read the superblock area"))?;
    }
    Ok(area)
}

/// The verified superblock copies found on a device.
pub(crate) struct Found {
    /// Valid copies, newest generation first.
    pub copies: Vec<(u8, Superblock)>,
    /// Copies that carried the magic but failed verification.
    pub rejected: u32,
    pub max_generation_seen: u64,
}

/// Reads and decodes every superblock slot, for `open`: the valid copies, or why there is
/// none (`NotAnArborStore`, `UnsupportedVersion`, or `Corrupt` when every copy that carries
/// the magic fails verification).
pub(crate) fn read_superblocks(dev: &dyn BlockDevice) -> Result<Found> {
    if dev.len_bytes() < SUPERBLOCK_AREA_BYTES {
        return Err(Error::NotAnArborStore { target: target_name(dev) });
    }
    let area = read_area(dev)?;
    let mut copies = Vec::new();
    let mut rejected = 0;
    let mut newer_version = None;
    let mut max_generation_seen = 0;
    for slot in 0..SUPERBLOCK_SLOT_COUNT {
        let report = decode_slot(&area, slot);
        if let Some(sb) = report.superblock {
            max_generation_seen = max_generation_seen.max(sb.generation());
            copies.push((slot, sb));
        } else if report.newer_version.is_some() {
            newer_version = report.newer_version;
        } else if report.claimed_generation.is_some() {
            rejected += 1;
        }
    }
    if copies.is_empty() {
        if let Some(found) = newer_version {
            return Err(Error::UnsupportedVersion { found, supported: FORMAT_VERSION });
        }
        if rejected > 0 {
            return Err(Error::corrupt(0, "every superblock copy failed verification"));
        }
        return Err(Error::NotAnArborStore { target: target_name(dev) });
    }
    copies.sort_by_key(|(_, sb)| std::cmp::Reverse(sb.generation()));
    debug_assert!(copies.iter().all(|(_, sb)| sb.generation() <= max_generation_seen));
    Ok(Found { copies, rejected, max_generation_seen })
}
