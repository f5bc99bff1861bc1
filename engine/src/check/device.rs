//! The offline check (`arbor check`): every superblock copy, then every generation they
//! hold, read straight from the device without opening the store — so it works on a store
//! that `Db::open` refuses.
//!
//! The newest valid generation gets the full check (every tree, every block, the allocator
//! against reachability). Older generations (the fallback `open` would use) get their trees
//! verified, skipping subtrees the newest walk already verified through an identical pointer
//! (same address, generation, crc), and their allocator loaded; their free-space bookkeeping
//! is not cross-checked, because only the newest generation's bitmap is the one the next
//! commit builds on. Both are sound because a block reachable from either durable superblock
//! is never reused before a later generation is durable (design.md §4, §10.13).

use std::collections::HashSet;

use arbor_format::constants::{check_block_bytes, SUPERBLOCK_SLOT_COUNT};
use arbor_format::superblock::{alternation, Superblock};
use arbor_format::ChildPtr;

use super::{CheckReport, Problem, ProblemKind, Progress, Source, Walk};
use crate::alloc::Allocator;
use crate::durable::superblock::{decode_slot, read_area, SlotReport, SlotState};
use crate::durable::{journal_scan, recovery};
use crate::io::{target_name, BlockDevice};
use crate::store::Store;
use crate::txn::replay::is_checkpointed_marker;
use crate::{Error, Result};

/// Cache budget of the store an offline check builds (it reads uncached).
const CHECK_CACHE_BYTES: u64 = 1 << 20;

/// The check of one generation (one superblock's trees and allocator).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GenerationCheck {
    /// The generation checked.
    pub generation: u64,
    /// Slots holding a valid copy of this generation.
    pub slots: Vec<u8>,
    /// Its superblock (the first valid copy).
    pub superblock: Superblock,
    /// Whether the allocator was cross-checked against reachability (the newest only).
    pub full: bool,
    /// What the walk of its trees and allocator found.
    pub report: CheckReport,
}

impl GenerationCheck {
    /// No damage beyond free-space bookkeeping: every tree block verifies.
    pub fn data_intact(&self) -> bool {
        self.report.findings.iter().all(|p| p.kind.is_free_space_only())
    }
}

/// Everything the offline check found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeviceCheck {
    /// Every superblock slot as read.
    pub slots: Vec<SlotReport>,
    /// The store's block size.
    pub block_bytes: u32,
    /// The device's length.
    pub device_bytes: u64,
    /// Every generation a valid superblock copy holds, newest first.
    pub generations: Vec<GenerationCheck>,
    /// The generation `Db::open` would recover to, or why it would fail.
    pub opens_at: Option<u64>,
    /// Why `Db::open` would fail, when `opens_at` is `None`.
    pub open_error: Option<String>,
    /// The journal past that checkpoint, when open would succeed: the commits it would
    /// replay and those of a torn last batch it would drop (design.md §11.7).
    pub journal: Option<JournalTail>,
    /// Superblock-level problems (slots and copies).
    pub problems: Vec<Problem>,
}

/// What the journal holds past the checkpoint open would take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalTail {
    /// Complete records of commits the checkpoint does not cover: open replays them.
    pub records: u64,
    /// The seq of the last of them (the checkpoint's when there are none).
    pub last_seq: u64,
    /// Records from a large transaction's marker on that the checkpoint does not cover
    /// (that transaction's checkpoint never became durable): open skips them.
    pub skipped: u64,
    /// Records of a torn last batch, never acknowledged: open drops them.
    pub dropped: u64,
}

impl DeviceCheck {
    /// No problem in any slot or generation.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.generations.iter().all(|g| g.report.is_ok())
    }

    /// Every problem: superblock-level first, then per generation, newest first.
    pub fn findings(&self) -> impl Iterator<Item = &Problem> {
        let gens = self.generations.iter().flat_map(|g| g.report.findings.iter());
        self.problems.iter().chain(gens)
    }

    /// The largest generation any slot names, verified or not (plausible values only).
    pub fn max_generation_seen(&self) -> u64 {
        let valid = self.slots.iter().filter_map(SlotReport::generation).max().unwrap_or(0);
        let claimed = self.slots.iter().filter_map(|s| s.claimed_generation);
        // A torn record's generation is untrusted: accept it only near the valid ones.
        claimed.filter(|&g| g <= valid.saturating_add(1 << 20)).fold(valid, u64::max)
    }
}

/// Checks a store offline. `progress` is called with the number of blocks visited so far.
///
/// Errors only when the device cannot be read or holds no Arbor superblock at all; every
/// kind of damage is reported in the result instead.
pub fn check_device(dev: Box<dyn BlockDevice>, progress: &mut Progress<'_>) -> Result<DeviceCheck> {
    let area = read_area(dev.as_ref())?;
    let slots: Vec<SlotReport> =
        (0..SUPERBLOCK_SLOT_COUNT).map(|s| decode_slot(&area, s)).collect();
    let mut problems = slot_problems(&slots);
    let newest = slots.iter().filter_map(|s| s.superblock).max_by_key(Superblock::generation);
    let Some(newest) = newest else {
        // Without a single superblock magic this is not a damaged store but something else.
        if slots.iter().all(|s| s.claimed_generation.is_none()) {
            return Err(Error::NotAnArborStore { target: target_name(dev.as_ref()) });
        }
        let device_bytes = dev.len_bytes();
        return Ok(DeviceCheck {
            slots,
            block_bytes: 0,
            device_bytes,
            generations: Vec::new(),
            opens_at: None,
            open_error: Some("no superblock copy verifies".into()),
            journal: None,
            problems,
        });
    };
    let block_bytes = newest.block_bytes();
    check_block_bytes(block_bytes).map_err(|e| Error::corrupt(0, e.to_string()))?;
    let store = Store::new(dev, block_bytes, CHECK_CACHE_BYTES);
    if let Ok(Some(region)) = newest.journal() {
        store.set_first_data(region.end_block());
    }
    let mut gens: Vec<u64> = slots.iter().filter_map(SlotReport::generation).collect();
    gens.sort_unstable_by(|a, b| b.cmp(a));
    gens.dedup();
    let mut generations = Vec::new();
    let mut verified: Option<HashSet<ChildPtr>> = None;
    for gen in gens {
        let holders: Vec<&SlotReport> =
            slots.iter().filter(|s| s.generation() == Some(gen)).collect();
        let Some(sb) = holders.first().and_then(|s| s.superblock) else { continue };
        if sb.block_bytes() != block_bytes || sb.uuid() != newest.uuid() {
            let addr = holders.first().map_or(0, |s| s.offset / 4096);
            let detail =
                format!("generation {gen} belongs to another store (uuid or block size differs)");
            problems.push(Problem { kind: ProblemKind::Superblock, addr, detail });
            continue;
        }
        let full = verified.is_none();
        let (report, seen) = check_generation(&store, &sb, verified.as_ref(), progress);
        if full {
            verified = Some(seen);
        }
        let slots = holders.iter().map(|s| s.slot).collect();
        generations.push(GenerationCheck { generation: gen, slots, superblock: sb, full, report });
    }
    let (opens_at, open_error, journal) = open_verdict(&store, &mut problems);
    let device_bytes = store.dev.len_bytes();
    Ok(DeviceCheck {
        slots,
        block_bytes,
        device_bytes,
        generations,
        opens_at,
        open_error,
        journal,
        problems,
    })
}

/// What `Db::open` would do: the generation it opens at and the journal it would replay,
/// or its error.
fn open_verdict(
    store: &Store,
    problems: &mut Vec<Problem>,
) -> (Option<u64>, Option<String>, Option<JournalTail>) {
    let opened = crate::durable::superblock::read_superblocks(store.dev.as_ref())
        .and_then(|found| recovery::recover(store, found));
    match opened.and_then(|o| check_journal(store, &o, problems).map(|tail| (o, tail))) {
        Ok((opened, tail)) => (Some(opened.sb.generation()), None, Some(tail)),
        Err(e) => (None, Some(e.to_string()), None),
    }
}

/// Reads the journal past the checkpoint open would take, as open does: damage to
/// acknowledged history is a problem (and open's error).
fn check_journal(
    s: &Store,
    opened: &recovery::Opened,
    problems: &mut Vec<Problem>,
) -> Result<JournalTail> {
    let sb = &opened.sb;
    let scanned = journal_scan::scan(s, opened.journal, sb.uuid(), sb.replay_lsn());
    if let Err(Error::Corrupt { addr, reason }) = &scanned {
        problems.push(Problem { kind: ProblemKind::Journal, addr: *addr, detail: reason.clone() });
    }
    let scanned = scanned?;
    let region = &opened.journal;
    let past: Vec<_> = scanned.records.iter().filter(|r| r.seq > sb.checkpoint_seq()).collect();
    // Replay stops at a large transaction's marker the checkpoint does not cover.
    let applied = past.iter().take_while(|r| !is_checkpointed_marker(region, r)).count();
    Ok(JournalTail {
        records: applied as u64,
        last_seq: past[..applied].last().map_or(sb.checkpoint_seq(), |r| r.seq),
        skipped: (past.len() - applied) as u64,
        dropped: scanned.dropped_records,
    })
}

/// Problems visible from the slots alone: copies that fail verification, a copy missing
/// beside a valid twin, twins that disagree.
fn slot_problems(slots: &[SlotReport]) -> Vec<Problem> {
    let mut out = Vec::new();
    for s in slots {
        let addr = s.offset / 4096;
        let twin =
            slots.iter().find(|t| t.slot != s.slot && alternation(t.slot) == alternation(s.slot));
        let detail = match (&s.state, twin.and_then(SlotReport::generation)) {
            (SlotState::Invalid(reason), _) => {
                let claims = s.claimed_generation.map(|g| format!(" (claims generation {g})"));
                format!(
                    "slot {} (offset {}): {reason}{}",
                    s.slot,
                    s.offset,
                    claims.unwrap_or_default()
                )
            }
            (SlotState::Empty, Some(g)) => {
                format!(
                    "slot {} (offset {}) is empty but its twin holds generation {g}",
                    s.slot, s.offset
                )
            }
            (SlotState::Valid, Some(g)) if s.generation() < Some(g) => format!(
                "slot {} holds generation {} but its twin holds {g}: a copy was not written",
                s.slot,
                s.generation().unwrap_or(0)
            ),
            _ => continue,
        };
        out.push(Problem { kind: ProblemKind::Superblock, addr, detail });
    }
    out
}

/// Checks one generation; returns its report and the pointers its walk verified.
fn check_generation(
    s: &Store,
    sb: &Superblock,
    skip: Option<&HashSet<ChildPtr>>,
    progress: &mut Progress<'_>,
) -> (CheckReport, HashSet<ChildPtr>) {
    let gen = sb.generation();
    let mut report = CheckReport::default();
    let device_blocks = s.dev.len_bytes() / u64::from(s.block_bytes);
    // The superblock may name more blocks than the device has when a checkpoint cut the
    // file's free tail (design.md §10.16); a block in use past the end is the problem.
    let mut read = |ptr: ChildPtr| s.read_uncached(ptr);
    let root = sb.alloc_root();
    let alloc = match Allocator::load_superblock(sb, gen, &mut read) {
        Ok(a) => match crate::durable::recovery::fits_device(&a, device_blocks) {
            Ok(()) => Some(a),
            Err(e) => {
                let reason = match e {
                    Error::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                };
                report.add(ProblemKind::Superblock, 0, format!("generation {gen}: {reason}"));
                None
            }
        },
        Err(e) => {
            let (addr, reason) = match e {
                Error::Corrupt { addr, reason } => (addr, reason),
                other => (root.address(), other.to_string()),
            };
            report.add(ProblemKind::Allocator, addr, format!("generation {gen}: {reason}"));
            None
        }
    };
    let mut tick = |n: u64| progress(n);
    let mut walk = Walk::new(Source::Device, s, &mut tick);
    walk.report = report;
    walk.skip = skip;
    walk.alloc = alloc.as_ref().filter(|_| skip.is_none());
    let orphans = alloc.as_ref().map(|a| a.orphans().to_vec()).unwrap_or_default();
    walk.store(sb.catalog_root(), &orphans);
    if let (Some(a), None) = (alloc.as_ref(), skip) {
        walk.cross_check(a, None);
    }
    (walk.report, walk.seen)
}
