//! What outstanding snapshots may still need, kept by the writer (design.md §5, §6, §10.5):
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

use crate::alloc::Allocator;
use crate::mvcc::{RegInner, Slot};
use crate::store::Store;
use crate::sync::Arc;

/// A freed run that an outstanding snapshot can still reach: allocated at `seq_alloc`,
/// freed at `seq_free`, pinned while a snapshot's seq is in `[seq_alloc, seq_free)`.
struct PinnedRun {
    addr: u64,
    count: u64,
    seq_alloc: u64,
    seq_free: u64,
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
    /// Pinned runs, each with the image of a pinned block still in the readers' table.
    pins: Vec<(PinnedRun, Option<Arc<Slot>>)>,
    pub pinned_blocks: u64,
    /// `departures` of the registry when pins were last re-examined.
    seen_departures: u64,
    /// Generation → the lowest seq at which one of its blocks can have become visible.
    gen_start: BTreeMap<u64, u64>,
    /// The open generation (the newest `open_generation`).
    gen: u64,
}

/// Whether a freed run is pinned, and if so what it keeps.
pub(crate) struct Freed {
    pub addr: u64,
    pub count: u64,
    /// Generation that wrote the run (decides pending vs immediate reuse).
    pub gen: u64,
    /// Seq at which the run's identity was allocated (see the module comment).
    pub seq_alloc: u64,
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
        assert!(gen >= self.gen, "generation {gen} opens after {}", self.gen);
        self.gen = gen;
        self.gen_start.insert(gen, last_seq + 1);
    }

    /// The open generation, as `open_generation` last set it.
    pub(crate) fn open_gen(&self) -> u64 {
        self.gen
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

impl History {
    /// Drops a slot readers can no longer need: out of the table, its entries unaccounted.
    fn discard_slot(&mut self, s: &Store, addr: u64, slot: &Arc<Slot>) {
        s.table.remove(addr, slot);
        let (_, bytes, _) = slot.prune_below(u64::MAX);
        self.log_bytes -= bytes;
    }

    /// Applies a commit's frees (`f` = the commit's seq) through the pinning rule. A block
    /// no snapshot can reach any more goes on `discard`: the caller drops its pool frames
    /// together (`BufferPool::discard_many`) before the address can be reused.
    pub(crate) fn apply_free(
        &mut self,
        alloc: &mut Allocator,
        s: &Store,
        r: &RegInner,
        f: u64,
        fr: Freed,
        discard: &mut Vec<u64>,
    ) {
        debug_assert!(
            fr.seq_alloc <= f,
            "run {} allocated at seq {} after its free at {f}",
            fr.addr,
            fr.seq_alloc
        );
        let block_bytes = u64::from(s.block_bytes);
        if r.any_in(fr.seq_alloc, f) {
            alloc.free_pending(fr.addr, fr.count, self.gen);
            alloc.hold(fr.addr, fr.count);
            self.pinned_blocks += fr.count;
            if fr.slot.is_some() {
                self.retained_bytes += block_bytes;
            }
            let pin =
                PinnedRun { addr: fr.addr, count: fr.count, seq_alloc: fr.seq_alloc, seq_free: f };
            self.pins.push((pin, fr.slot));
            return;
        }
        if let Some(slot) = &fr.slot {
            self.discard_slot(s, fr.addr, slot);
        }
        // No snapshot can reach the block any more: its image in the pool is dead weight.
        if fr.count == 1 {
            discard.push(fr.addr);
        }
        if fr.gen == self.gen {
            // Never written and never reachable from a superblock (design.md §6 rules 2, 3).
            alloc.free_now(fr.addr, fr.count);
        } else {
            alloc.free_pending(fr.addr, fr.count, self.gen);
        }
    }

    /// Releases pins no outstanding snapshot needs any more (only when one has left).
    fn release_pins(&mut self, alloc: &mut Allocator, s: &Store, r: &RegInner) {
        if r.departures == self.seen_departures {
            return;
        }
        self.seen_departures = r.departures;
        let block_bytes = u64::from(s.block_bytes);
        let pins = std::mem::take(&mut self.pins);
        for (pin, slot) in pins {
            if r.any_in(pin.seq_alloc, pin.seq_free) {
                self.pins.push((pin, slot));
                continue;
            }
            alloc.release_hold(pin.addr, pin.count);
            assert!(
                self.pinned_blocks >= pin.count,
                "releasing {} pinned blocks at {} with {} counted",
                pin.count,
                pin.addr,
                self.pinned_blocks
            );
            self.pinned_blocks -= pin.count;
            if pin.count == 1 {
                s.pool.discard(pin.addr);
            }
            if let Some(slot) = &slot {
                self.retained_bytes -= block_bytes;
                self.discard_slot(s, pin.addr, slot);
            }
        }
        debug_assert_eq!(
            self.pinned_blocks,
            self.pins.iter().map(|(p, _)| p.count).sum::<u64>(),
            "pinned-block counter and pinned runs disagree"
        );
    }

    /// Drops expired snapshots no reader is using, then [`History::release_and_prune`].
    pub(crate) fn settle(
        &mut self,
        alloc: &mut Allocator,
        s: &Store,
        r: &mut RegInner,
        last_seq: u64,
    ) {
        r.sweep();
        self.release_and_prune(alloc, s, r, last_seq);
    }

    /// Releases pins of departed snapshots and prunes the log below the oldest outstanding
    /// seq (`last_seq` is the last seq handed out).
    pub(crate) fn release_and_prune(
        &mut self,
        alloc: &mut Allocator,
        s: &Store,
        r: &RegInner,
        last_seq: u64,
    ) {
        self.release_pins(alloc, s, r);
        let bound = r.prune_bound(last_seq + 1);
        self.prune(s, bound);
    }

    /// Prunes log entries older than `bound` (the oldest outstanding seq); frozen blocks left
    /// with no entries leave the table; generation start seqs no snapshot can be older than
    /// are forgotten (0 is then the conservative answer).
    fn prune(&mut self, s: &Store, bound: u64) {
        let block_bytes = u64::from(s.block_bytes);
        while self.order.front().is_some_and(|(seq, _)| *seq < bound) {
            let Some((_, slot)) = self.order.pop_front() else { break };
            let (_, bytes, left) = slot.prune_below(bound);
            assert!(
                self.log_bytes >= bytes,
                "pruning {bytes} log bytes of block {} with {} counted",
                slot.addr,
                self.log_bytes
            );
            self.log_bytes -= bytes;
            let addr = slot.addr;
            if left == 0 && self.retained.get(&addr).is_some_and(|r| Arc::ptr_eq(r, &slot)) {
                self.take_retained(addr, block_bytes);
                s.table.remove(addr, &slot);
            }
        }
        if self.order.is_empty() {
            assert_eq!(self.log_bytes, 0, "no log entry is left but bytes are counted");
        }
        let open = self.gen;
        self.gen_start.retain(|g, start| *g >= open || *start > bound);
    }
}
