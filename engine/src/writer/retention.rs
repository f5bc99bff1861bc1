//! What outstanding snapshots may still need, kept by the writer (DESIGN §5, §6, §10.5):
//! the order in which log entries were appended (for pruning), frozen blocks whose entries
//! are still needed, the pinned set, and the first seq of each recent generation.
//!
//! The rules, applied at every commit under the registry lock:
//! * a block identity allocated at seq `a` and freed at the commit's seq `f` is *pinned*
//!   while an outstanding snapshot has a seq in `[a, f)` — for nodes and leaves, written or
//!   not. A pinned run is handed to the allocator as pending (so a crash frees it) but held
//!   (never reused); a pinned block that was never written keeps its image for readers;
//! * a pin is released when the last snapshot in `[a, f)` leaves (drop, or expiry once no
//!   reader operation is using it);
//! * log entries older than the oldest outstanding seq are pruned; a frozen block whose
//!   entries are all pruned leaves the readers' table.
//!
//! Allocation seqs: a block published in the open generation records its commit's seq; a
//! block of an older generation of this process gets its generation's first possible seq;
//! a block from before the store was opened gets 0 (every snapshot is younger).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::mvcc::{RegInner, Slot};
use crate::store::Store;
use crate::sync::Arc;
use crate::writer::Writer;

/// A freed run that an outstanding snapshot can still reach.
struct PinnedRun {
    addr: u64,
    count: u64,
    a: u64,
    f: u64,
    /// The image of a pinned block that is still in the readers' table.
    slot: Option<Arc<Slot>>,
}

#[derive(Default)]
pub(crate) struct History {
    /// (seq, slot) of every log entry in append order: pruning walks it from the front.
    order: VecDeque<(u64, Arc<Slot>)>,
    /// Bytes of log entries not yet pruned.
    pub log_bytes: u64,
    /// Frozen blocks still in the readers' table because some entry of theirs is needed.
    retained: HashMap<u64, Arc<Slot>>,
    /// Image bytes kept only for readers (retained and pinned slots).
    pub retained_bytes: u64,
    pins: Vec<PinnedRun>,
    pub pinned_blocks: u64,
    /// `departures` of the registry when pins were last re-examined.
    seen_departures: u64,
    /// Generation → the lowest seq at which one of its blocks can have become visible.
    gen_start: BTreeMap<u64, u64>,
}

/// Whether a freed run is pinned, and if so what it keeps.
pub(crate) struct Freed {
    pub addr: u64,
    pub count: u64,
    /// Generation that wrote the run (decides pending vs immediate reuse).
    pub gen: u64,
    pub a: u64,
    /// The block's slot, if it has one (a published dirty block or a retained frozen one).
    pub slot: Option<Arc<Slot>>,
}

impl History {
    pub(crate) fn note_logged(&mut self, seq: u64, slot: &Arc<Slot>, bytes: u64) {
        self.order.push_back((seq, Arc::clone(slot)));
        self.log_bytes += bytes;
    }

    /// A new generation opens after the last seq handed out was `last_seq`.
    pub(crate) fn open_generation(&mut self, gen: u64, last_seq: u64) {
        self.gen_start.insert(gen, last_seq + 1);
    }

    /// The lowest seq at which a block of generation `gen` can have become visible.
    pub(crate) fn alloc_seq_lower(&self, gen: u64) -> u64 {
        self.gen_start.get(&gen).copied().unwrap_or(0)
    }

    /// A frozen block with log entries stays readable through the table (see `freeze`).
    pub(crate) fn retain(&mut self, addr: u64, slot: Arc<Slot>, block_bytes: u64) {
        if self.retained.insert(addr, slot).is_none() {
            self.retained_bytes += block_bytes;
        }
    }

    /// Takes a retained slot out of the retained set (its block is being freed).
    pub(crate) fn take_retained(&mut self, addr: u64, block_bytes: u64) -> Option<Arc<Slot>> {
        let slot = self.retained.remove(&addr)?;
        self.retained_bytes -= block_bytes;
        Some(slot)
    }

    /// Bytes counted against `Options::modlog_max_bytes`.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.log_bytes + self.retained_bytes
    }
}

/// Drops a slot readers can no longer need: out of the table, its entries unaccounted.
fn discard_slot(w: &mut Writer, s: &Store, addr: u64, slot: &Arc<Slot>) {
    s.table.remove(addr, slot);
    let (_, bytes, _) = slot.prune_below(u64::MAX);
    w.hist.log_bytes -= bytes;
}

/// Applies a commit's frees (`f` = the commit's seq) through the pinning rule.
pub(crate) fn apply_free(w: &mut Writer, s: &Store, r: &RegInner, f: u64, fr: Freed) {
    let block_bytes = u64::from(s.block_bytes);
    if r.any_in(fr.a, f) {
        w.alloc.free_pending(fr.addr, fr.count, w.gen);
        w.alloc.hold(fr.addr, fr.count);
        w.hist.pinned_blocks += fr.count;
        if fr.slot.is_some() {
            w.hist.retained_bytes += block_bytes;
        }
        w.hist.pins.push(PinnedRun { addr: fr.addr, count: fr.count, a: fr.a, f, slot: fr.slot });
        return;
    }
    if let Some(slot) = &fr.slot {
        discard_slot(w, s, fr.addr, slot);
    }
    // No snapshot can reach the block any more: its cached image is dead weight.
    if fr.count == 1 {
        s.cache.remove(fr.addr);
    }
    if fr.gen == w.gen {
        // Never written and never reachable from a superblock (DESIGN §6 rules 2, 3).
        w.alloc.free_now(fr.addr, fr.count);
    } else {
        w.alloc.free_pending(fr.addr, fr.count, w.gen);
    }
}

/// Releases pins no outstanding snapshot needs any more (only when one has left).
fn release_pins(w: &mut Writer, s: &Store, r: &RegInner) {
    if r.departures == w.hist.seen_departures {
        return;
    }
    w.hist.seen_departures = r.departures;
    let block_bytes = u64::from(s.block_bytes);
    let pins = std::mem::take(&mut w.hist.pins);
    for pin in pins {
        if r.any_in(pin.a, pin.f) {
            w.hist.pins.push(pin);
            continue;
        }
        w.alloc.release_hold(pin.addr, pin.count);
        w.hist.pinned_blocks -= pin.count;
        if pin.count == 1 {
            s.cache.remove(pin.addr);
        }
        if let Some(slot) = &pin.slot {
            w.hist.retained_bytes -= block_bytes;
            discard_slot(w, s, pin.addr, slot);
        }
    }
}

/// Drops expired snapshots no reader is using, then [`release_and_prune`].
pub(crate) fn settle(w: &mut Writer, s: &Store, r: &mut RegInner) {
    r.sweep();
    release_and_prune(w, s, r);
}

/// Releases pins of departed snapshots and prunes the log below the oldest outstanding seq.
pub(crate) fn release_and_prune(w: &mut Writer, s: &Store, r: &RegInner) {
    release_pins(w, s, r);
    let bound = r.prune_bound(w.seq + 1);
    prune(w, s, bound);
}

/// Prunes log entries older than `bound` (the oldest outstanding seq); frozen blocks left
/// with no entries leave the table; generation start seqs no snapshot can be older than
/// are forgotten (0 is then the conservative answer).
fn prune(w: &mut Writer, s: &Store, bound: u64) {
    let block_bytes = u64::from(s.block_bytes);
    while w.hist.order.front().is_some_and(|(seq, _)| *seq < bound) {
        let Some((_, slot)) = w.hist.order.pop_front() else { break };
        let (_, bytes, left) = slot.prune_below(bound);
        w.hist.log_bytes -= bytes;
        let addr = slot.addr;
        if left == 0 && w.hist.retained.get(&addr).is_some_and(|r| Arc::ptr_eq(r, &slot)) {
            w.hist.take_retained(addr, block_bytes);
            s.table.remove(addr, &slot);
        }
    }
    let open = w.gen;
    w.hist.gen_start.retain(|g, start| *g >= open || *start > bound);
}
