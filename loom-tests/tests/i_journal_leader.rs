//! (i) The commit journal's leader: group commit through one batch writer, and ring space
//! freed only by durable checkpoints (design.md §11.3–§11.6; `engine/src/durable/journal.rs`).
//!
//! The engine's own `Journal` runs here over a fake disk (`BatchSink`) that encodes each
//! batch with the real `encode_batch`, decodes which seqs it holds, and records outside the
//! model which batches completed and what the newest durable checkpoint is; every device
//! operation is one step on a shared loom atomic (see `Disk`), so loom runs the other
//! threads while a batch is in flight and orders batch writes against superblock flushes
//! every way. A loom mutex stands in for the writer lock: a commit takes it, takes the next
//! seq and appends its record, and calls `make_durable` after releasing it, as
//! `txn/shared.rs` does. A checkpoint does what the engine's does, serialized by a second
//! loom mutex (the commit pipeline's one flush in flight): under the writer stand-in it
//! takes the last seq and `replay_lsn_for_checkpoint()`; outside it (a window: tree blocks,
//! superblock, flushes) its superblock becomes durable, then it calls `checkpointed`. A
//! leader that finds the ring full runs that same checkpoint (the `checkpoint` closure of
//! `make_durable`).
//!
//! The ring has 8 slots and each commit's record fills exactly one journal block's payload
//! (a put of a ~3.9 KiB value: tiny records pack ~150 to a block, so the ring would take
//! over a thousand commits to fill), so a batch of n commits takes n blocks. The full-ring
//! models first commit seqs 1–7 one at a time on the main thread (no branching before the
//! threads start), leaving one free slot and the durable checkpoint replaying from lsn 1.
//!
//! Invariants, in every interleaving:
//! (1) when `make_durable(seq, wait)` returns `Ok`, every commit up to `seq` is durable: a
//! completed fake flush holds its record at lsns replay can still reach (its batch starts at
//! or after the durable checkpoint's replay lsn), or the durable checkpoint covers it; the
//! same holds for every acknowledged commit when the model ends;
//! (2) hence a commit is acknowledged only by the flush that holds its record (or a
//! checkpoint), never by another batch's flush;
//! (3) a batch never overwrites a slot whose lsn a replay from the durable checkpoint needs,
//! nor a slot a batch still in flight writes: every lsn `L` it writes has `L < durable
//! replay lsn + slots` and `L < first lsn in flight + slots` when the write starts;
//! and batches chain (each starts at the lsn after the previous one, with its crc, whichever
//! write starts first), at most the journal's limit are in flight, each holds seqs above
//! every lower-lsn batch's.
//! With batches in flight together (the pipelined model), a commit is durable only once its
//! batch *and every batch before it* completed: replay stops at the first torn one.
//! The passing models also assert that loom reached a batch acknowledging two commits, a
//! leader finding the ring full and checkpointing, a commit acknowledged by a checkpoint
//! (before its record was written), and a batch reusing a slot after a checkpoint freed it.
//!
//! The broken variants: `Broken::AckAnyBatch` (a waiter returns when the running batch ends,
//! so a commit that joined the next batch is acknowledged by the running one's flush),
//! `Broken::AckOutOfOrder` (with two batches in flight, the later one's flush acknowledges
//! its commits while the earlier one is still being written), and
//! `Broken::ReuseBeforeDurable` (a frozen checkpoint's replay lsn frees ring space before
//! its superblock is durable; loom finds a batch overwriting the oldest records while the
//! durable superblock still replays from them).
#![cfg(loom)]

use std::collections::BTreeMap;
use std::sync::Mutex as GhostMutex;

use arbor::journal::{Batch, BatchSink, Broken, Journal, JournalStart};
use arbor::sync::{lock, thread, Arc, AtomicUsize, Mutex, Ordering};
use arbor::Result;
use arbor_format::{JournalRegion, Op, RecordBuilder};
use arbor_format::{RecordHeader, RecordLimits, JOURNAL_LSN_FIRST};
use arbor_loom_tests::Outcomes;

const BLOCK_BYTES: u32 = 4096;
const SLOTS: u64 = 8;
const UUID: [u8; 16] = [7; 16];
/// The only key: what matters is the record's length, not its content.
const KEY: &[u8] = b"k";

/// What the fake disk holds. Ghost state, outside the model: plain std, never contended
/// (loom runs one thread at a time and no loom operation happens while it is held).
struct Ghost {
    /// Every seq a completed batch holds → the first lsn of its batch.
    flushed: BTreeMap<u64, u64>,
    /// Seqs per completed batch, in completion order.
    batches: Vec<Vec<u64>>,
    /// Every batch whose write started: first lsn → (last lsn, prev crc, last crc, its
    /// seqs, completed).
    started: BTreeMap<u64, StartedBatch>,
    /// Batches in flight at once, at most (the journal's limit).
    limit: usize,
    /// Two batches were in flight at once.
    overlapped: bool,
    /// The newest durable checkpoint (its superblock): last seq it covers, replay lsn.
    checkpoint_seq: u64,
    replay_lsn: u64,
    /// Checkpoints a leader ran because the ring was full.
    leader_checkpoints: usize,
    /// Commits acknowledged, and whether a checkpoint (not a flush) made each durable.
    acked: Vec<(u64, bool)>,
}

/// A batch the fake disk saw start.
struct StartedBatch {
    last_lsn: u64,
    prev_crc: u32,
    last_crc: u32,
    seqs: Vec<u64>,
    completed: bool,
}

impl Ghost {
    /// Whether commit `seq` survives a crash now: the durable checkpoint covers it, or a
    /// completed batch holds it at lsns a replay from the checkpoint reads, and completed
    /// batches hold every lsn from the replay lsn up to it (replay stops at a torn one).
    fn recoverable(&self, seq: u64) -> bool {
        if seq <= self.checkpoint_seq {
            return true;
        }
        let Some(&first) = self.flushed.get(&seq) else { return false };
        let mut lsn = self.replay_lsn;
        while lsn < first {
            match self.started.get(&lsn) {
                Some(b) if b.completed => lsn = b.last_lsn + 1,
                _ => return false,
            }
        }
        lsn == first
    }

    /// The next lsn to write: past every batch that started.
    fn next_lsn(&self) -> u64 {
        self.started.values().map(|b| b.last_lsn + 1).max().unwrap_or(JOURNAL_LSN_FIRST)
    }

    fn in_flight(&self) -> impl Iterator<Item = (&u64, &StartedBatch)> {
        self.started.iter().filter(|(_, b)| !b.completed)
    }

    /// Invariant (3) and the chain, for a batch whose write starts at `first..=last`.
    fn check_start(&self, first: u64, last: u64, prev_crc: u32, seqs: &[u64]) {
        let slots = SLOTS;
        assert!(
            last < self.replay_lsn + slots,
            "a batch at lsns {first}..={last} overwrites lsn {}, which a replay from the \
             durable checkpoint (replay lsn {}) still needs",
            last - slots,
            self.replay_lsn
        );
        for (&other, _) in self.in_flight() {
            assert!(last < other + slots, "a batch at {first}..={last} over in-flight {other}");
        }
        assert!(self.in_flight().count() < self.limit, "more batches in flight than allowed");
        // Neighbours that started already (a batch taken before this one may start after it).
        if let Some((_, before)) = self.started.range(..first).next_back() {
            assert!(before.last_lsn < first, "batches at overlapping lsns");
            if before.last_lsn + 1 == first {
                assert_eq!(prev_crc, before.last_crc, "a batch chains from the previous");
            }
            let newest = before.seqs.last().copied().unwrap_or(0);
            assert!(seqs[0] > newest, "batch {seqs:?} after seq {newest} at lower lsns");
        }
        if let Some((&after, _)) = self.started.range(first..).next() {
            assert!(after > last, "batches at overlapping lsns");
        }
    }
}

/// The fake device the journal leader writes batches to.
///
/// Every device operation — a batch's write starting, its flush completing, a checkpoint's
/// superblock becoming durable — is one read-modify-write of `ops`, and the ghost update
/// it makes follows with no loom operation between. loom's partial-order reduction only
/// reorders operations on loom objects, and these all touch `ops`, so it explores every
/// order of the device's operations (a batch write before or after a superblock flush);
/// with a separate atomic per window it would see them as independent and never run a
/// batch inside a checkpoint's window. Between a batch's start and end the leader holds
/// no lock: the other threads run there.
struct Disk {
    ops: AtomicUsize,
    ghost: GhostMutex<Ghost>,
}

impl Disk {
    fn ghost(&self) -> std::sync::MutexGuard<'_, Ghost> {
        self.ghost.lock().expect("ghost state is never poisoned")
    }
}

/// The seqs of the records in `records` (whole records end to end).
fn seqs_of(records: &[u8], region: &JournalRegion) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let header = RecordHeader::parse(&records[at..], region.record_bytes_max())
            .expect("a batch holds whole records");
        seqs.push(header.seq());
        at += usize::try_from(header.record_bytes()).expect("a small record");
    }
    assert_eq!(at, records.len(), "a batch holds whole records");
    seqs
}

impl BatchSink for Disk {
    fn write(&self, journal: &Journal, batch: &Batch) -> Result<()> {
        let region = &journal.region;
        let seqs = seqs_of(&batch.records, region);
        assert_eq!(seqs.last(), Some(&batch.last_seq), "the batch's last seq");
        let (first, last) = (batch.info.first_lsn, batch.info.last_lsn);
        assert_eq!(first, batch.start.first_lsn, "the encoded batch is the batch");
        // The write starts.
        self.ops.fetch_add(1, Ordering::SeqCst);
        {
            let mut g = self.ghost();
            g.check_start(first, last, batch.start.prev_crc, &seqs);
            if let Some((&next, after)) = g.started.range(first..).next() {
                if next == last + 1 {
                    assert_eq!(after.prev_crc, batch.info.last_crc, "the next batch chains");
                }
            }
            g.overlapped |= g.in_flight().count() > 0;
            let started = StartedBatch {
                last_lsn: last,
                prev_crc: batch.start.prev_crc,
                last_crc: batch.info.last_crc,
                seqs: seqs.clone(),
                completed: false,
            };
            g.started.insert(first, started);
        }
        // Both copies written, the flush completes.
        self.ops.fetch_add(1, Ordering::SeqCst);
        {
            let mut g = self.ghost();
            g.started.get_mut(&first).expect("started").completed = true;
            g.flushed.extend(seqs.iter().map(|&s| (s, first)));
            g.batches.push(seqs);
        }
        Ok(())
    }
}

struct Sys {
    /// The writer lock's stand-in: the last seq taken (commits append under it).
    writer: Mutex<u64>,
    /// The commit pipeline's one flush in flight: checkpoints run one at a time.
    checkpointing: Mutex<()>,
    journal: Journal,
    disk: Disk,
    /// Every commit's record: one put filling one journal block's payload.
    record: RecordBuilder,
}

impl Sys {
    fn new(broken: Broken, in_flight: usize) -> Sys {
        let region = JournalRegion::new(BLOCK_BYTES, 64, 2 * SLOTS).expect("a valid region");
        assert_eq!(region.slot_count(), SLOTS);
        let start = JournalStart {
            next_lsn: JOURNAL_LSN_FIRST,
            prev_crc: 0,
            checkpoint_seq: 0,
            replay_lsn: JOURNAL_LSN_FIRST,
        };
        let journal = Journal::new(region, UUID, 1 << 20, start)
            .with_broken_rule(broken)
            .with_batches_in_flight(in_flight);
        let ghost = Ghost {
            flushed: BTreeMap::new(),
            batches: Vec::new(),
            started: BTreeMap::new(),
            limit: in_flight,
            overlapped: false,
            checkpoint_seq: 0,
            replay_lsn: JOURNAL_LSN_FIRST,
            leader_checkpoints: 0,
            acked: Vec::new(),
        };
        let mut record = RecordBuilder::new(RecordLimits::new(BLOCK_BYTES, 1 << 20));
        let empty = record.record_bytes() as usize + arbor_format::JOURNAL_OP_PUT_BYTES;
        let value = vec![0xa5; region.payload_bytes() - empty - KEY.len()];
        record.append(Op::Put { tree: 16, key: KEY, value: &value }).expect("the put fits");
        assert_eq!(record.record_bytes(), region.payload_bytes() as u64, "one block a record");
        let disk = Disk { ops: AtomicUsize::new(0), ghost: GhostMutex::new(ghost) };
        Sys { writer: Mutex::new(0), checkpointing: Mutex::new(()), journal, disk, record }
    }

    /// The engine's checkpoint: freeze under the writer lock, write out, then tell the
    /// journal.
    fn checkpoint(&self) -> Result<()> {
        let one_at_a_time = lock(&self.checkpointing);
        let (seq, replay_lsn) = {
            let last_seq = lock(&self.writer);
            (*last_seq, self.journal.replay_lsn_for_checkpoint())
        };
        // Tree blocks, a flush, the superblock, a flush: now durable.
        self.disk.ops.fetch_add(1, Ordering::SeqCst);
        {
            let mut g = self.disk.ghost();
            assert!(seq >= g.checkpoint_seq && replay_lsn >= g.replay_lsn, "checkpoint order");
            (g.checkpoint_seq, g.replay_lsn) = (seq, replay_lsn);
        }
        self.journal.checkpointed(seq, replay_lsn);
        drop(one_at_a_time);
        Ok(())
    }

    /// A commit: takes the next seq and appends its record under the writer stand-in, then
    /// makes it durable (waiting) and checks invariant (1). Returns its seq.
    fn commit(&self) -> u64 {
        let seq = {
            let mut last_seq = lock(&self.writer);
            *last_seq += 1;
            self.journal.append(*last_seq, &self.record);
            *last_seq
        };
        let leader_checkpoint = || {
            self.disk.ghost().leader_checkpoints += 1;
            self.checkpoint()
        };
        let result = self.journal.make_durable(&self.disk, seq, true, &leader_checkpoint);
        assert!(result.is_ok(), "commit {seq} failed without a failure");
        let mut g = self.disk.ghost();
        for s in 1..=seq {
            assert!(
                g.recoverable(s),
                "commit {seq} acknowledged before a completed flush or durable checkpoint \
                 held commit {s}"
            );
        }
        let by_checkpoint = !g.flushed.contains_key(&seq);
        g.acked.push((seq, by_checkpoint));
        seq
    }

    /// Checks at the end of an execution: every acknowledged commit is still recoverable,
    /// and the journal agrees.
    fn check_end(&self) {
        let g = self.disk.ghost();
        assert_eq!(g.in_flight().count(), 0, "a batch left running");
        // The batches tile the lsns from the first on, each chained to the one before.
        let mut lsn = JOURNAL_LSN_FIRST;
        for (&first, b) in &g.started {
            assert_eq!(first, lsn, "a gap in the journal's lsns before {first}");
            lsn = b.last_lsn + 1;
        }
        for &(seq, _) in &g.acked {
            assert!(g.recoverable(seq), "acknowledged commit {seq} lost");
            assert!(self.journal.is_durable(seq), "the journal forgot commit {seq}");
        }
    }
}

/// Two committers (one on the main thread) on an empty ring, with at most `in_flight`
/// batches in flight.
fn group_commit_model(broken: Broken, in_flight: usize, seen: &'static Outcomes) {
    arbor_loom_tests::model(move || {
        let sys = Arc::new(Sys::new(broken, in_flight));
        let other = {
            let sys = Arc::clone(&sys);
            thread::spawn(move || sys.commit())
        };
        sys.commit();
        other.join().expect("committer");
        sys.check_end();
        let g = sys.disk.ghost();
        // 1: one batch acknowledged both commits; 2: each had its own.
        assert!((1..=2).contains(&g.batches.len()), "{} batches", g.batches.len());
        seen.note(g.batches.len());
        if g.overlapped {
            seen.note(3);
        }
    });
}

static GROUP: Outcomes = Outcomes::new();

#[test]
fn a_batch_acknowledges_exactly_the_commits_it_holds() {
    group_commit_model(Broken::None, 1, &GROUP);
    GROUP.assert_seen(&[1, 2], "batches for two commits (shared, one each)");
}

static PIPELINED: Outcomes = Outcomes::new();

/// Two batches in flight at once: the second's commit is acknowledged only after the first
/// completed too.
#[test]
fn batches_in_flight_together_acknowledge_in_lsn_order() {
    group_commit_model(Broken::None, 2, &PIPELINED);
    PIPELINED.assert_seen(&[1, 2, 3], "a shared batch, one each, two in flight at once");
}

static PIPELINED_BROKEN: Outcomes = Outcomes::new();

/// A later batch's flush acknowledging its commits while an earlier batch is in flight:
/// loom finds the later commit acknowledged while the earlier batch could still tear.
#[test]
#[should_panic(expected = "acknowledged before a completed flush")]
fn broken_ack_out_of_order_is_caught() {
    group_commit_model(Broken::AckOutOfOrder, 2, &PIPELINED_BROKEN);
}

static GROUP_BROKEN: Outcomes = Outcomes::new();

/// A waiter that returns when the running batch ends: loom finds a commit that joined
/// while the other's batch was being written, acknowledged by that batch's flush.
#[test]
#[should_panic(expected = "acknowledged before a completed flush")]
fn broken_ack_any_batch_is_caught() {
    group_commit_model(Broken::AckAnyBatch, 1, &GROUP_BROKEN);
}

/// The ring nearly full (7 of 8 slots hold commits 1–7, flushed one at a time before the
/// threads start; the durable checkpoint still replays from lsn 1): a checkpointer thread
/// and two committers, each commit one block.
fn full_ring_model(broken: Broken, seen: &'static Outcomes) {
    arbor_loom_tests::model(move || {
        let sys = Arc::new(Sys::new(broken, 2));
        for seq in 1..SLOTS {
            assert_eq!(sys.commit(), seq);
        }
        let checkpointer = {
            let sys = Arc::clone(&sys);
            thread::spawn(move || sys.checkpoint().expect("the model's checkpoint"))
        };
        let other = {
            let sys = Arc::clone(&sys);
            thread::spawn(move || sys.commit())
        };
        sys.commit();
        other.join().expect("committer");
        checkpointer.join().expect("checkpointer");
        sys.check_end();
        let g = sys.disk.ghost();
        if g.leader_checkpoints > 0 {
            seen.note(0);
        }
        if g.acked.iter().any(|&(_, by_checkpoint)| by_checkpoint) {
            seen.note(1);
        }
        if g.next_lsn() > SLOTS + 1 {
            seen.note(2);
        }
        if g.batches.iter().skip(SLOTS as usize - 1).any(|b| b.len() == 2) {
            seen.note(3);
        }
    });
}

static RING: Outcomes = Outcomes::new();

#[test]
fn a_full_ring_waits_for_a_durable_checkpoint() {
    full_ring_model(Broken::None, &RING);
    RING.assert_seen(
        &[0, 1, 2, 3],
        "a leader's checkpoint, an ack by checkpoint, a reused slot, a shared batch",
    );
}

static RING_BROKEN: Outcomes = Outcomes::new();

/// Ring space freed at the freeze: loom finds a batch written over lsn 1 while the durable
/// superblock still replays from it.
#[test]
#[should_panic(expected = "which a replay from the durable checkpoint")]
fn broken_reuse_before_durable_is_caught() {
    full_ring_model(Broken::ReuseBeforeDurable, &RING_BROKEN);
}
