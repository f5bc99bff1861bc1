//! The commit journal (design.md §11.3–§11.6): every commit appends one record of its
//! logical ops; a journal leader writes every pending record as one batch (one contiguous
//! write, two at the ring's end) and issues one flush, which acknowledges every commit in
//! the batch once every batch before it is flushed too (group commit). Up to
//! `Options::journal_batches_in_flight` batches are written and flushed at once, by as many
//! leaders (for devices that flush in parallel: commits arriving while one batch flushes
//! then need not wait for it to end before theirs starts). Checkpoints (the generation write-out of
//! `durable::freeze`) make records unnecessary; the ring's space before the replay lsn of
//! the newest *durable* checkpoint is reused.
//!
//! Durability of a commit with seq `s` (`JournalState::durable`): a durable checkpoint covers
//! it (`s ≤ checkpoint_seq`), or its record and every record before it are flushed and no
//! commit between the checkpoint and `s` went without a record (a large transaction
//! commits through a checkpoint instead, design.md §11.5; until that checkpoint is durable,
//! later records cannot be acknowledged, because replay stops at the gap its missing
//! record leaves).
//!
//! Locks: the journal's state is taken under the writer lock (append, the checkpoint's
//! freeze) and on its own (leaders, waiters); nobody waits for the writer while holding it.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use arbor_format::journal::JournalRegion;
use arbor_format::journal::{batch_block_count, encode_batch, BatchInfo, BatchStart};
use arbor_format::journal::{Op, RecordLimits};
use arbor_format::RecordBuilder;

use crate::durable::gather::Gather;
use crate::io::{dev_error, AlignedBuf, WriteOp};
use crate::store::Store;
use crate::sync::{self, Arc, Condvar, Mutex, MutexGuard, Ordering};
use crate::{Error, Result};

/// Batches written and flushed at once by default (`Options::journal_batches_in_flight`,
/// design.md §11.4). 1: on this project's development disk (virtio) a second batch in
/// flight split the pending records into more, smaller batches whose flushes did not run
/// in parallel (8 committing threads: 17–22k commits/s with 2, 25–27k with 1). Devices that
/// flush in parallel may want more.
pub const BATCHES_IN_FLIGHT: usize = 1;

/// The journal of one open store.
pub struct Journal {
    pub region: JournalRegion,
    uuid: [u8; 16],
    /// Largest record a commit journals (`Options::journal_record_max`).
    pub record_max: u64,
    /// Batches written and flushed at once ([`BATCHES_IN_FLIGHT`]).
    batches_in_flight: usize,
    state: Mutex<JournalState>,
    /// A rule broken on purpose (loom-tests' broken variants).
    #[cfg(any(test, loom, feature = "fault-injection"))]
    broken: Broken,
}

/// Test-only: a rule of the journal to break, so a model can show it catches the bug.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Broken {
    /// Nothing broken.
    #[default]
    None,
    /// A waiter returns `Ok` when the batch it waited on ends, covered or not (a commit
    /// that joined the next batch acknowledged by the running one's flush).
    AckAnyBatch,
    /// A batch's flush acknowledges its commits even while an earlier batch is still in
    /// flight (whose torn write would stop replay before them).
    AckOutOfOrder,
    /// A frozen checkpoint's replay start frees ring space at once, before its superblock
    /// is durable (the space a replay from the older checkpoint still needs).
    ReuseBeforeDurable,
}

/// Where the journal stood at open (from the superblock and the replay of its chain).
pub struct JournalStart {
    /// The lsn the next batch writes.
    pub next_lsn: u64,
    /// The crc of the block before it (0 if none).
    pub prev_crc: u32,
    /// The newest durable checkpoint's last seq and replay lsn.
    pub checkpoint_seq: u64,
    pub replay_lsn: u64,
}

/// The journal's counters, for `Db::stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournalFigures {
    /// Ring bytes between the newest durable checkpoint's replay lsn and the next append
    /// (both copies counted).
    pub bytes_in_use: u64,
    pub batches: u64,
    /// Journal blocks written (each twice; this counts both copies).
    pub blocks_written: u64,
    pub records: u64,
}

/// A batch between its leader's take and the end of its flush.
struct InFlight {
    first_lsn: u64,
    last_seq: u64,
    blocks: u64,
    /// Its flush ended (it waits for the batches before it to end too).
    done: bool,
    /// When its leader took it.
    taken_at: Instant,
}

struct JournalState {
    /// Records appended and not yet taken by a batch, end to end, in seq order.
    pending: Vec<u8>,
    /// `(seq, end offset in pending)` per pending record.
    pending_ends: VecDeque<(u64, usize)>,
    /// Batches being written and flushed, in lsn order.
    in_flight: VecDeque<InFlight>,
    next_lsn: u64,
    prev_crc: u32,
    /// Every journaled record with a seq up to this one is flushed.
    flushed_seq: u64,
    /// The newest durable checkpoint.
    checkpoint_seq: u64,
    replay_lsn: u64,
    /// Commits above `checkpoint_seq` that went without a record (large transactions).
    unjournaled: BTreeSet<u64>,
    /// Why the journal can no longer be written (a failed write or flush).
    failed: Option<String>,
    /// While open replays the journal: the lsn where the next unapplied record starts and
    /// the seq of the last applied one — what a checkpoint taken meanwhile must record.
    replay_cursor: Option<(u64, u64)>,
    /// The cursor once the record being replayed is applied: it becomes `replay_cursor`
    /// when that record's transaction publishes, under the writer lock (`replay_applied`).
    replay_next: Option<(u64, u64)>,
    last_flush_at: Instant,
    figures: JournalFigures,
    /// Committers waiting for their seq, each on a condvar of its own (arrival order): an
    /// event wakes the ones it made durable and at most one other, to lead the next batch,
    /// instead of every waiter.
    waiters: Vec<(u64, Arc<Condvar>)>,
    /// Who committed the pending records and the last batch; a leader gathering the next.
    gather: Gather,
}

impl JournalState {
    fn durable(&self, seq: u64) -> bool {
        seq <= self.checkpoint_seq
            || (seq <= self.flushed_seq && self.unjournaled.range(..=seq).next().is_none())
    }

    /// Every journal block with a smaller lsn is flushed: a new batch's `flushed_below`.
    fn flushed_below(&self) -> u64 {
        self.in_flight.front().map_or(self.next_lsn, |b| b.first_lsn)
    }

    /// Wakes the waiters an event (a batch's end, a durable checkpoint, a failure) concerns:
    /// those whose seq is now durable (or all, after a failure), and, when records wait and
    /// another batch may start, the first other waiter, to lead it.
    fn wake(&self, batches_in_flight: usize) {
        let mut leader = self.in_flight.len() < batches_in_flight && !self.pending_ends.is_empty();
        for (seq, cv) in &self.waiters {
            if self.failed.is_some() || self.durable(*seq) {
                cv.notify_one();
            } else if leader {
                cv.notify_one();
                leader = false;
            }
        }
    }
}

/// The running batch, owned by its leader. Dropped without being forgotten only when a
/// panic unwinds out of the write: the journal then ends the batch as failed, so waiters
/// wake to an error instead of waiting for a batch that never ends.
struct Leading<'j>(&'j Journal);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.failed.get_or_insert_with(|| "a panic in the journal leader".to_string());
        self.0.wake(&st);
    }
}

/// Before leading a batch: waits, at most about one flush cycle, for the committers the
/// last batch acknowledged to append their next records (see `gather`).
fn gather(mut st: MutexGuard<'_, JournalState>) -> MutexGuard<'_, JournalState> {
    if st.pending_ends.is_empty() {
        return st;
    }
    let Some((target, deadline)) = st.gather.plan(st.pending_ends.len()) else { return st };
    let me = Arc::new(Condvar::new());
    st.gather.start(target, Arc::clone(&me));
    while st.pending_ends.len() < target && st.failed.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st = sync::wait_timeout(&me, st, left);
    }
    st.gather.stop();
    st
}

/// Waits (on a condvar of its own) until an event concerns `seq`; the caller re-checks.
fn wait_for(mut st: MutexGuard<'_, JournalState>, seq: u64) -> MutexGuard<'_, JournalState> {
    let me = Arc::new(Condvar::new());
    st.waiters.push((seq, Arc::clone(&me)));
    let mut st = sync::wait(&me, st);
    st.waiters.retain(|(_, cv)| !Arc::ptr_eq(cv, &me));
    st
}

/// A batch a leader took, encoded: its records, where it goes, the last seq it holds, and
/// both copies of its blocks.
pub struct Batch {
    /// Whole records end to end (what `encoded` holds).
    pub records: Vec<u8>,
    /// Its first lsn, the crc before it, the store's uuid, how far the journal is flushed.
    pub start: BatchStart,
    /// The seq of its last record.
    pub last_seq: u64,
    /// Its lsns and last crc (the next batch's `prev_crc`).
    pub info: BatchInfo,
    /// Both copies of every block, laid out as `info.writes` says (aligned to the block).
    pub encoded: AlignedBuf,
}

/// Where a leader's batch goes: the store's device, or (in `loom-tests/`) a model's fake
/// disk. `write` writes both copies of every block of the encoded batch and flushes.
/// Leaders of different batches call it at the same time.
pub trait BatchSink {
    /// Writes and flushes `batch` of `journal`.
    fn write(&self, journal: &Journal, batch: &Batch) -> Result<()>;
}

impl BatchSink for Store {
    /// One write of both copies of every block (two at the ring's end), then one flush.
    fn write(&self, journal: &Journal, batch: &Batch) -> Result<()> {
        let writes = batch.info.writes(&journal.region);
        let ops: Vec<WriteOp<'_>> = writes
            .iter()
            .map(|w| WriteOp { offset: w.offset, data: &batch.encoded[w.range.clone()] })
            .collect();
        self.dev.write_batch(&ops).map_err(dev_error(&*self.dev, "write the journal"))?;
        crate::fault::hit(crate::fault::FaultPoint::JournalWrite);
        self.dev.flush().map_err(dev_error(&*self.dev, "flush the journal"))?;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What a leader found when it looked for a batch to write.
enum Take {
    Batch(Batch),
    /// Records are pending but the ring has no room for the first: a checkpoint must free
    /// journal space first.
    NoSpace,
    /// Nothing pending.
    Empty,
}

impl Journal {
    pub fn new(
        region: JournalRegion,
        uuid: [u8; 16],
        record_max: u64,
        start: JournalStart,
    ) -> Journal {
        assert!(
            start.next_lsn >= start.replay_lsn
                && start.next_lsn - start.replay_lsn <= region.slot_count(),
            "journal start {} outside the ring from replay lsn {} ({} slots)",
            start.next_lsn,
            start.replay_lsn,
            region.slot_count()
        );
        let state = JournalState {
            pending: Vec::new(),
            pending_ends: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_lsn: start.next_lsn,
            prev_crc: start.prev_crc,
            flushed_seq: start.checkpoint_seq,
            checkpoint_seq: start.checkpoint_seq,
            replay_lsn: start.replay_lsn,
            unjournaled: BTreeSet::new(),
            failed: None,
            replay_cursor: None,
            replay_next: None,
            last_flush_at: Instant::now(),
            figures: JournalFigures::default(),
            waiters: Vec::new(),
            gather: Gather::default(),
        };
        Journal {
            region,
            uuid,
            record_max,
            batches_in_flight: BATCHES_IN_FLIGHT,
            state: Mutex::new(state),
            #[cfg(any(test, loom, feature = "fault-injection"))]
            broken: Broken::None,
        }
    }

    /// Test-only: this journal breaks `rule` (see [`Broken`]).
    #[doc(hidden)]
    #[cfg(any(test, loom, feature = "fault-injection"))]
    pub fn with_broken_rule(mut self, rule: Broken) -> Journal {
        self.broken = rule;
        self
    }

    /// At most `n` batches in flight (`Options::journal_batches_in_flight`).
    pub fn with_batches_in_flight(mut self, n: usize) -> Journal {
        assert!(n >= 1, "at least one batch in flight");
        self.batches_in_flight = n;
        self
    }

    fn breaks(&self, rule: Broken) -> bool {
        #[cfg(any(test, loom, feature = "fault-injection"))]
        return self.broken == rule;
        #[cfg(not(any(test, loom, feature = "fault-injection")))]
        {
            let _ = rule;
            false
        }
    }

    /// The store's uuid, which every journal block records.
    pub fn uuid(&self) -> &[u8; 16] {
        &self.uuid
    }

    fn state(&self) -> MutexGuard<'_, JournalState> {
        sync::lock(&self.state)
    }

    fn wake(&self, st: &JournalState) {
        st.wake(self.batches_in_flight);
    }

    /// Appends commit `seq`'s record (called under the writer lock, in seq order).
    pub fn append(&self, seq: u64, record: &RecordBuilder) {
        let mut st = self.state();
        record.finish_into(seq, &mut st.pending);
        let end = st.pending.len();
        debug_assert!(st.pending_ends.back().is_none_or(|&(s, _)| s < seq), "records out of order");
        st.pending_ends.push_back((seq, end));
        st.figures.records += 1;
        let pending = st.pending_ends.len();
        if let Some(leader) = st.gather.appended(pending) {
            leader.notify_one();
        }
    }

    /// Notes that commit `seq` is too large for a record: it becomes durable only through a
    /// checkpoint, and no later commit is acknowledged by the journal before that. Its
    /// record holds only the `Checkpointed` marker, at which replay stops unless the
    /// checkpoint covers it (design.md §11.5).
    pub fn append_checkpointed(&self, seq: u64) {
        let limits = RecordLimits::new(self.region.block_bytes(), self.record_max);
        let mut marker = RecordBuilder::new(limits);
        let appended = marker.append(Op::Checkpointed);
        assert!(appended.is_ok(), "the checkpointed marker fits any record limit");
        self.append(seq, &marker);
        self.state().unjournaled.insert(seq);
    }

    pub fn is_durable(&self, seq: u64) -> bool {
        self.state().durable(seq)
    }

    /// The lsn a checkpoint frozen now records as its replay start: every record appended
    /// so far belongs to a commit the checkpoint covers (appends happen under the writer
    /// lock the freeze holds), so replay can start at the next batch's first block.
    pub fn replay_lsn_for_checkpoint(&self) -> u64 {
        let mut st = self.state();
        if let Some((lsn, _)) = st.replay_cursor {
            return lsn;
        }
        if self.breaks(Broken::ReuseBeforeDurable) {
            st.replay_lsn = st.next_lsn;
        }
        st.next_lsn
    }

    /// The last seq a checkpoint frozen now covers, if not the writer's: during replay, the
    /// seq of the last record applied (replayed commits take seqs of their own).
    pub fn checkpoint_seq_override(&self) -> Option<u64> {
        self.state().replay_cursor.map(|(_, seq)| seq)
    }

    /// Replay at open applied records up to `seq`; the next one starts at `next_lsn`. Until
    /// `end_replay`, checkpoints record this instead of the journal's end, and commits (the
    /// replay's own) append no records.
    pub fn replay_progress(&self, next_lsn: u64, seq: u64) {
        self.state().replay_cursor = Some((next_lsn, seq));
    }

    /// Replay is about to apply the record of `seq`; the one after it starts at
    /// `next_lsn`. The cursor moves only when the record's transaction publishes
    /// ([`Journal::replay_applied`], called under the writer lock): a checkpoint freezes
    /// under that lock too, so the cursor it records always matches the state it freezes —
    /// never the state with a record applied and a cursor that replays it again.
    pub fn replay_next(&self, next_lsn: u64, seq: u64) {
        self.state().replay_next = Some((next_lsn, seq));
    }

    /// The record `replay_next` named is published (the caller holds the writer lock).
    pub fn replay_applied(&self) {
        let mut st = self.state();
        if let Some(cursor) = st.replay_next.take() {
            st.replay_cursor = Some(cursor);
        }
    }

    /// Replay is over: checkpoints and commits work as usual.
    pub fn end_replay(&self) {
        self.state().replay_cursor = None;
    }

    /// Whether open is replaying the journal.
    pub fn replaying(&self) -> bool {
        self.state().replay_cursor.is_some()
    }

    /// A checkpoint holding every commit up to `seq` is durable, with replay starting at
    /// `replay_lsn`: the ring before it may be reused, and commits it covers are durable.
    pub fn checkpointed(&self, seq: u64, replay_lsn: u64) {
        let mut st = self.state();
        assert!(
            seq >= st.checkpoint_seq && replay_lsn >= st.replay_lsn,
            "checkpoint (seq {seq}, replay lsn {replay_lsn}) older than the durable one \
             (seq {}, replay lsn {})",
            st.checkpoint_seq,
            st.replay_lsn
        );
        st.checkpoint_seq = seq;
        st.replay_lsn = replay_lsn;
        st.unjournaled = st.unjournaled.split_off(&(seq + 1));
        // Pending records the checkpoint covers are still written, in order: if this
        // superblock's write was lost (a device acknowledging what it never stored), replay
        // from the older checkpoint must meet them (a large transaction's marker above all)
        // and stop there, never apply a later record over a gap.
        self.wake(&st);
    }

    /// Makes the journal fail-stop: waiters wake to the error.
    pub fn fail(&self, why: String) {
        let mut st = self.state();
        st.failed.get_or_insert(why);
        self.wake(&st);
    }

    /// Whether a checkpoint should run: the ring is at least half used.
    pub fn wants_checkpoint(&self) -> bool {
        let st = self.state();
        st.next_lsn - st.replay_lsn >= self.region.slot_count() / 2
    }

    /// Whether records are pending or flushed past the newest checkpoint.
    pub fn has_records_since_checkpoint(&self) -> bool {
        let st = self.state();
        !st.pending_ends.is_empty() || st.flushed_seq > st.checkpoint_seq
    }

    /// The last pending seq, if `interval` has passed since the last batch.
    pub fn eventual_due(&self, interval: std::time::Duration) -> Option<u64> {
        let st = self.state();
        let last = st.pending_ends.back().map(|&(seq, _)| seq)?;
        (st.last_flush_at.elapsed() >= interval).then_some(last)
    }

    pub fn figures(&self) -> JournalFigures {
        let st = self.state();
        let block_bytes = u64::from(self.region.block_bytes());
        JournalFigures {
            bytes_in_use: (st.next_lsn - st.replay_lsn) * 2 * block_bytes,
            ..st.figures
        }
    }

    /// Makes commit `seq` durable: returns once journal flushes or a checkpoint cover it,
    /// leading batches meanwhile whenever fewer than the journal's limit are in flight
    /// (design.md §11.4). With `wait == false` it returns at once if a batch is in flight
    /// (whose leader, or the next one's, writes the record). `checkpoint` runs a checkpoint
    /// of every commit so far; a leader calls it when the ring has no room for the pending
    /// records.
    pub fn make_durable(
        &self,
        sink: &dyn BatchSink,
        seq: u64,
        wait: bool,
        checkpoint: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        // Bounded: each round returns, waits for a batch or checkpoint to end, or writes
        // a batch (which makes progress: the pending records only shrink).
        loop {
            let mut st = self.state();
            if st.durable(seq) {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(Error::PreviousIo { original: why.clone() });
            }
            if !wait && !st.in_flight.is_empty() {
                return Ok(());
            }
            let may_lead = st.in_flight.len() < self.batches_in_flight && !st.gather.busy();
            if may_lead {
                st = gather(st);
            }
            let take = if may_lead { self.take(&mut st) } else { Take::Empty };
            match take {
                Take::Batch(batch) => {
                    drop(st);
                    self.lead(sink, batch)?;
                }
                Take::NoSpace => {
                    drop(st);
                    checkpoint()?;
                }
                Take::Empty => {
                    // Not durable and nothing this thread may write: `seq` waits for a batch
                    // in flight, or for a checkpoint (a large transaction, or a record behind
                    // one) that its committer started.
                    if !wait {
                        return Ok(());
                    }
                    let before = st.in_flight.front().map(|b| b.first_lsn);
                    drop(wait_for(st, seq));
                    if self.breaks(Broken::AckAnyBatch) && before.is_some() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Writes `batch` as its leader and ends it.
    fn lead(&self, sink: &dyn BatchSink, batch: Batch) -> Result<()> {
        let leading = Leading(self);
        let result = sink.write(self, &batch);
        std::mem::forget(leading);
        self.end_batch(&batch, result)
    }

    /// Takes the pending records that fit in the ring's free space as the next batch and
    /// encodes it (here, so the batch after it knows its last crc at once).
    fn take(&self, st: &mut JournalState) -> Take {
        if st.pending_ends.is_empty() {
            return Take::Empty;
        }
        // Slots are reused from the durable checkpoint's replay lsn on, but never under a
        // batch still in flight (its write could land after the reuse's).
        let oldest = st.in_flight.front().map_or(st.replay_lsn, |b| b.first_lsn);
        let free_slots = oldest.min(st.replay_lsn) + self.region.slot_count() - st.next_lsn;
        let mut end = 0;
        let mut last_seq = 0;
        let mut taken = 0;
        for &(seq, record_end) in &st.pending_ends {
            if batch_block_count(&self.region, record_end) > free_slots {
                break;
            }
            (end, last_seq) = (record_end, seq);
            taken += 1;
        }
        if taken == 0 {
            // A batch in flight holds the space a checkpoint freed already: its end frees it.
            let in_flight_blocks = oldest < st.replay_lsn;
            return if in_flight_blocks { Take::Empty } else { Take::NoSpace };
        }
        let records: Vec<u8> = st.pending.drain(..end).collect();
        st.pending_ends.drain(..taken);
        st.gather.taken(taken);
        for (_, e) in st.pending_ends.iter_mut() {
            *e -= end;
        }
        let start = BatchStart {
            first_lsn: st.next_lsn,
            prev_crc: st.prev_crc,
            uuid: self.uuid,
            flushed_below: st.flushed_below(),
        };
        let blocks = batch_block_count(&self.region, records.len());
        let block_bytes = self.region.block_bytes() as usize;
        let mut encoded = AlignedBuf::zeroed(2 * blocks as usize * block_bytes, block_bytes);
        let info = encode_batch(&self.region, &start, &records, &mut encoded)
            .unwrap_or_else(|e| panic!("journal batch from lsn {}: {e}", start.first_lsn));
        st.next_lsn += blocks;
        st.prev_crc = info.last_crc;
        st.in_flight.push_back(InFlight {
            first_lsn: start.first_lsn,
            last_seq,
            blocks,
            done: false,
            taken_at: Instant::now(),
        });
        Take::Batch(Batch { records, start, last_seq, info, encoded })
    }

    /// Ends the batch a leader wrote: acknowledges its commits and those of the batches
    /// after it that ended before it (the flushed prefix of the journal), or makes the
    /// journal fail-stop.
    fn end_batch(&self, batch: &Batch, written: Result<()>) -> Result<()> {
        let mut st = self.state();
        let first_lsn = batch.start.first_lsn;
        let at = st.in_flight.iter().position(|b| b.first_lsn == first_lsn);
        let at = at.unwrap_or_else(|| panic!("journal batch at lsn {first_lsn} is not in flight"));
        let result = match written {
            Ok(()) => {
                st.in_flight[at].done = true;
                st.last_flush_at = Instant::now();
                st.gather.last_cycle = st.in_flight[at].taken_at.elapsed();
                if self.breaks(Broken::AckOutOfOrder) {
                    st.flushed_seq = st.flushed_seq.max(batch.last_seq);
                }
                while let Some(b) = st.in_flight.front().filter(|b| b.done) {
                    let (last_seq, blocks) = (b.last_seq, b.blocks);
                    st.in_flight.pop_front();
                    st.flushed_seq = st.flushed_seq.max(last_seq);
                    st.figures.batches += 1;
                    st.figures.blocks_written += 2 * blocks;
                }
                Ok(())
            }
            Err(e) => {
                st.failed.get_or_insert_with(|| e.with_sources());
                Err(e)
            }
        };
        self.wake(&st);
        result
    }
}
