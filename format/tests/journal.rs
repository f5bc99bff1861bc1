//! The journal format end to end: records of random ops and sizes through `RecordWriter`,
//! `encode_batch` onto a modelled ring, and back through `decode_chain` and `RecordReader`;
//! where the chain stops (damage, prev_crc, lsn gap, torn tail, ring wrap); and over 10,000
//! random and mutated blocks, records and chains through every decoder without a panic.
//! Reproduce a failure with the printed seed: `ARBOR_TEST_SEED=0x... cargo test -p
//! arbor-format --test journal`.

mod common;

use arbor_format::*;
use common::{base_seed, with_seed, Rng};

const UUID: [u8; 16] = *b"journal-test-uid";

/// An owned op, to compare with what the reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedOp {
    Put(u64, Vec<u8>, Vec<u8>),
    Remove(u64, Vec<u8>),
    Create(u64, Vec<u8>),
    Delete(u64),
    Checkpointed,
}

impl OwnedOp {
    fn as_op(&self) -> Op<'_> {
        match self {
            Self::Put(tree, key, value) => Op::Put { tree: *tree, key, value },
            Self::Remove(tree, key) => Op::Remove { tree: *tree, key },
            Self::Create(tree, name) => Op::CreateTree { tree: *tree, name },
            Self::Delete(tree) => Op::DeleteTree { tree: *tree },
            Self::Checkpointed => Op::Checkpointed,
        }
    }

    fn from_op(op: Op<'_>) -> Self {
        match op {
            Op::Put { tree, key, value } => Self::Put(tree, key.to_vec(), value.to_vec()),
            Op::Remove { tree, key } => Self::Remove(tree, key.to_vec()),
            Op::CreateTree { tree, name } => Self::Create(tree, name.to_vec()),
            Op::DeleteTree { tree } => Self::Delete(tree),
            Op::Checkpointed => Self::Checkpointed,
        }
    }
}

fn random_key(rng: &mut Rng, block_bytes: u32) -> Vec<u8> {
    let max = key_bytes_max(block_bytes);
    let len = match rng.below(10) {
        0 => 0,
        1 => max,
        _ => rng.index(40),
    };
    rng.bytes(len)
}

/// Random ops for one record: small ones mostly, sometimes empty values, maximum keys, or a
/// value of several blocks.
fn random_ops(rng: &mut Rng, block_bytes: u32) -> Vec<OwnedOp> {
    let max = if rng.chance(10) { 200 } else { 6 };
    let count = if rng.chance(5) { 0 } else { 1 + rng.index(max) };
    (0..count)
        .map(|_| {
            let tree = TREE_ID_FIRST_USER + rng.below(5);
            match rng.below(10) {
                0..=5 => {
                    let key = random_key(rng, block_bytes);
                    let len = match rng.below(10) {
                        0 => 0,
                        1 => rng.index(5 * block_bytes as usize),
                        2 => 3 * block_bytes as usize,
                        _ => rng.index(100),
                    };
                    OwnedOp::Put(tree, key, rng.bytes(len))
                }
                6 | 7 => OwnedOp::Remove(tree, random_key(rng, block_bytes)),
                8 => OwnedOp::Create(tree, random_key(rng, block_bytes)),
                _ => OwnedOp::Delete(tree),
            }
        })
        .collect()
}

/// Appends record `seq` holding `ops` to `buf`; returns whether it fit the limits.
fn write_record(buf: &mut Vec<u8>, seq: u64, ops: &[OwnedOp], limits: RecordLimits) -> bool {
    let mut w = RecordWriter::new(buf, seq, limits);
    for op in ops {
        if w.append(op.as_op()).is_err() {
            return false; // The writer is dropped unfinished: its bytes are removed.
        }
    }
    w.finish();
    true
}

/// The journal region as a device: `blocks[i]` is region block i.
struct Ring {
    region: JournalRegion,
    blocks: Vec<Vec<u8>>,
    next_lsn: u64,
    prev_crc: u32,
}

impl Ring {
    fn new(block_bytes: u32, slots: u64) -> Self {
        let region = JournalRegion::new(block_bytes, first_data_block(block_bytes), 2 * slots)
            .expect("region");
        let blocks = vec![vec![0u8; block_bytes as usize]; 2 * slots as usize];
        Self { region, blocks, next_lsn: JOURNAL_LSN_FIRST, prev_crc: 0 }
    }

    fn block_bytes(&self) -> usize {
        self.region.block_bytes() as usize
    }

    /// Encodes `records` as one batch and applies its writes to the ring (every batch
    /// before it flushed).
    fn append(&mut self, records: &[u8]) -> BatchInfo {
        self.append_flushed_below(records, self.next_lsn)
    }

    /// `append` of a batch written while the batches from lsn `flushed_below` on were still
    /// in flight.
    fn append_flushed_below(&mut self, records: &[u8], flushed_below: u64) -> BatchInfo {
        let count = batch_block_count(&self.region, records.len());
        let mut out = vec![0u8; 2 * count as usize * self.block_bytes()];
        let start = BatchStart {
            first_lsn: self.next_lsn,
            prev_crc: self.prev_crc,
            uuid: UUID,
            flushed_below,
        };
        let info = encode_batch(&self.region, &start, records, &mut out).expect("encode");
        for write in info.writes(&self.region) {
            let first = (write.offset / self.region.block_bytes() as u64
                - self.region.start_block()) as usize;
            for (i, block) in out[write.range].chunks(self.block_bytes()).enumerate() {
                self.blocks[first + i].copy_from_slice(block);
            }
        }
        self.next_lsn = info.last_lsn + 1;
        self.prev_crc = info.last_crc;
        info
    }

    fn twin(&self, lsn: u64) -> (usize, usize) {
        let [a, _] = self.region.copy_addresses(lsn);
        let i = (a - self.region.start_block()) as usize;
        (i, i + 1)
    }

    fn twin_mut(&mut self, lsn: u64) -> (&mut Vec<u8>, &mut Vec<u8>) {
        let (a, _) = self.twin(lsn);
        let (x, y) = self.blocks.split_at_mut(a + 1);
        (&mut x[a], &mut y[0])
    }

    /// Decodes the chain from `start_lsn`, reading at most a whole ring plus one.
    fn decode(&self, start_lsn: u64) -> ChainDecode {
        let twins = (start_lsn..start_lsn + self.region.slot_count() + 1).map(|lsn| {
            let (a, b) = self.twin(lsn);
            (&self.blocks[a][..], &self.blocks[b][..])
        });
        decode_chain(self.region, UUID, start_lsn, twins)
    }
}

fn read_ops(record: &Record, region: &JournalRegion) -> Vec<OwnedOp> {
    record.ops(region).expect("record header").map(|op| OwnedOp::from_op(op.expect("op"))).collect()
}

#[test]
fn round_trip_random_records() {
    for (case, block_bytes) in [4096u32, 4096, 8192, 65536].into_iter().enumerate() {
        with_seed("round trip", base_seed(0x70_7272) + case as u64, |seed| {
            let mut rng = Rng::new(seed);
            let mut ring = Ring::new(block_bytes, 64);
            let limits = RecordLimits::new(block_bytes, ring.region.record_bytes_max_default());
            let mut written: Vec<(u64, Vec<OwnedOp>)> = Vec::new();
            let mut seq = 100;
            let mut spanning = 0;
            // Batches until the ring is about to wrap past lsn 1 (the replay start).
            while ring.next_lsn < ring.region.slot_count() - 12 {
                let mut batch = Vec::new();
                for _ in 0..1 + rng.index(4) {
                    let ops = random_ops(&mut rng, block_bytes);
                    seq += 1 + rng.below(3);
                    if write_record(&mut batch, seq, &ops, limits) {
                        written.push((seq, ops));
                    }
                }
                if batch.is_empty()
                    || batch_block_count(&ring.region, batch.len()) + ring.next_lsn
                        > ring.region.slot_count()
                {
                    continue;
                }
                let info = ring.append(&batch);
                spanning += u64::from(info.block_count > 1);
            }
            assert!(spanning > 3, "too few records spanning blocks");
            let decoded = ring.decode(JOURNAL_LSN_FIRST);
            assert_eq!(decoded.stop.lsn, ring.next_lsn);
            assert!(matches!(decoded.stop.reason, ChainStopReason::NoBlock(_)));
            assert_eq!(decoded.stop.partial_record_bytes, 0);
            assert_eq!(decoded.last_crc, Some(ring.prev_crc));
            assert_eq!(decoded.records.len(), written.len());
            for (record, (seq, ops)) in decoded.records.iter().zip(&written) {
                assert_eq!(record.seq, *seq);
                assert_eq!(&read_ops(record, &ring.region), ops);
            }
        });
    }
}

/// A ring with batches of one record each, record i (seq i) of `sizes[i]` value bytes.
fn ring_of(sizes: &[usize]) -> (Ring, Vec<BatchInfo>) {
    let mut ring = Ring::new(4096, 32);
    let limits = RecordLimits::new(4096, 1 << 20);
    let infos = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut buf = Vec::new();
            assert!(write_record(
                &mut buf,
                i as u64 + 1,
                &[OwnedOp::Put(16, vec![1], vec![2; size])],
                limits
            ));
            ring.append(&buf)
        })
        .collect();
    (ring, infos)
}

#[test]
fn one_damaged_copy_is_read_from_its_twin() {
    let (mut ring, _) = ring_of(&[10, 9000, 10]);
    for lsn in 1..=5 {
        let (a, b) = ring.twin_mut(lsn);
        if lsn % 2 == 0 {
            a[700] ^= 1
        } else {
            b[4095] ^= 0x40
        }
    }
    let decoded = ring.decode(1);
    assert_eq!(decoded.records.len(), 3);
    assert_eq!(decoded.stop.lsn, 6);
}

#[test]
fn chain_stops_where_both_copies_fail() {
    let (mut ring, _) = ring_of(&[10, 9000, 10]);
    // Blocks: lsn 1 (record 1), 2..=4 (record 2), 5 (record 3). Damage both copies of lsn 3.
    let (a, b) = ring.twin_mut(3);
    a[200] ^= 1;
    b.fill(0);
    let decoded = ring.decode(1);
    assert_eq!(decoded.records.len(), 1);
    assert_eq!(decoded.stop.lsn, 3);
    assert_eq!(decoded.stop.last_accepted, Some((2, 2, 4)));
    assert!(decoded.stop.partial_record_bytes > 0);
    match &decoded.stop.reason {
        ChainStopReason::NoBlock(e) => assert!(e.both_invalid()),
        other => panic!("{other:?}"),
    }
    // Lsn 4 is of the stop's batch; lsn 5 of a later one: the stop is damage, not a tear.
    let later = |lsn| {
        let (a, _) = ring.twin(lsn);
        let block = JournalBlock::decode(&ring.blocks[a], ring.region.address(lsn)).unwrap();
        decoded.stop.is_later_batch(&block)
    };
    assert_eq!((later(4), later(5)), (false, true));
}

#[test]
fn a_batch_written_while_the_torn_one_was_in_flight_is_not_later() {
    let limits = RecordLimits::new(4096, 1 << 20);
    let (mut ring, _) = ring_of(&[10]);
    // Lsn 2 and lsn 3 are batches in flight together (lsn 3's written before lsn 2's flush
    // ended: flushed below 2); lsn 4's was written after both flushes.
    for (seq, below) in [(2, 2), (3, 2), (4, 4)] {
        let mut buf = Vec::new();
        write_record(&mut buf, seq, &[OwnedOp::Delete(16)], limits);
        ring.append_flushed_below(&buf, below);
    }
    let (a, b) = ring.twin_mut(2);
    a.fill(0);
    b.fill(0);
    let decoded = ring.decode(1);
    assert_eq!(decoded.stop.lsn, 2);
    let later = |lsn| {
        let (a, _) = ring.twin(lsn);
        let block = JournalBlock::decode(&ring.blocks[a], ring.region.address(lsn)).unwrap();
        assert_eq!(block.journal().flushed_below(), if lsn == 3 { 2 } else { lsn });
        decoded.stop.is_later_batch(&block)
    };
    // Lsn 3 cannot tell that lsn 2 was ever flushed (a torn pair); lsn 4 can.
    assert_eq!((later(3), later(4)), (false, true));
}

#[test]
fn chain_stops_on_wrong_prev_crc() {
    let (mut ring, _) = ring_of(&[10, 10, 10]);
    // Re-encode lsn 2 with a wrong prev_crc: a verifying block that does not follow lsn 1.
    let mut buf = Vec::new();
    write_record(&mut buf, 2, &[OwnedOp::Delete(16)], RecordLimits::new(4096, 1 << 20));
    let mut out = vec![0u8; 8192];
    let start = BatchStart { first_lsn: 2, prev_crc: 0xbad, uuid: UUID, flushed_below: 2 };
    encode_batch(&ring.region, &start, &buf, &mut out).unwrap();
    let (a, b) = ring.twin_mut(2);
    a.copy_from_slice(&out[..4096]);
    b.copy_from_slice(&out[4096..]);
    let decoded = ring.decode(1);
    assert_eq!(decoded.records.len(), 1);
    assert_eq!(decoded.stop.lsn, 2);
    assert!(matches!(decoded.stop.reason, ChainStopReason::PrevCrcMismatch { found: 0xbad, .. }));
    assert!(decoded.stop.to_string().contains("prev_crc"));
}

#[test]
fn chain_stops_on_lsn_gap() {
    let (ring, _) = ring_of(&[10, 10, 10, 10]);
    // Starting from lsn 3 works (a replay start); then blocks are offered out of order.
    let decoded = ring.decode(3);
    assert_eq!(decoded.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
    let twin = |lsn| {
        let (a, b) = ring.twin(lsn);
        (&ring.blocks[a][..], &ring.blocks[b][..])
    };
    // Lsn 3's block offered as lsn 2 was read from the wrong slot: misdirected.
    let decoded = decode_chain(ring.region, UUID, 1, [twin(1), twin(3)]);
    assert_eq!(decoded.stop.lsn, 2);
    match &decoded.stop.reason {
        ChainStopReason::NoBlock(twin) if matches!(twin.first, CopyError::Invalid(_)) => {
            let CopyError::Invalid(e) = &twin.first else { unreachable!() };
            assert!(matches!(e.kind, FormatErrorKind::Misdirected { .. }), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Ran out of blocks.
    let decoded = decode_chain(ring.region, UUID, 1, [twin(1)]);
    assert_eq!((decoded.stop.lsn, decoded.stop.reason.clone()), (2, ChainStopReason::End));
    // Another store's uuid: nothing is accepted.
    let decoded = decode_chain(ring.region, [0; 16], 1, [twin(1)]);
    assert_eq!((decoded.records.len(), decoded.stop.lsn), (0, 1));
}

#[test]
fn chain_stops_at_a_block_of_another_lap() {
    // Lsn 2 was never written; its slot holds lsn 34 (a later lap, 32 slots): a gap.
    let (mut ring, _) = ring_of(&[10]);
    ring.next_lsn = 34;
    let mut buf = Vec::new();
    write_record(&mut buf, 9, &[OwnedOp::Delete(16)], RecordLimits::new(4096, 1 << 20));
    ring.append(&buf);
    let decoded = ring.decode(1);
    assert_eq!((decoded.records.len(), decoded.stop.lsn), (1, 2));
    match &decoded.stop.reason {
        ChainStopReason::NoBlock(e) => {
            assert_eq!((e.both_invalid(), e.found_lsn()), (false, Some(34)))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn replay_start_inside_a_record_skips_its_tail() {
    // Record 1 spans lsn 1..=3 in one batch with record 2, which starts in lsn 3.
    let mut ring = Ring::new(4096, 32);
    let limits = RecordLimits::new(4096, 1 << 20);
    let mut buf = Vec::new();
    write_record(&mut buf, 1, &[OwnedOp::Put(16, vec![], vec![7; 9000])], limits);
    write_record(&mut buf, 2, &[OwnedOp::Delete(17)], limits);
    ring.append(&buf);
    for start in [2, 3] {
        let decoded = ring.decode(start);
        assert_eq!(decoded.records.iter().map(|r| (r.seq, r.lsn)).collect::<Vec<_>>(), [(2, 3)]);
    }
}

#[test]
fn torn_batch_then_recovery_append() {
    let (mut ring, infos) = ring_of(&[10, 9000]);
    assert_eq!((infos[1].first_lsn, infos[1].last_lsn), (2, 4));
    // The batch holding lsn 2..=4 is torn: lsn 3 never reached the disk (old zeros).
    let (a, b) = ring.twin_mut(3);
    a.fill(0);
    b.fill(0);
    let decoded = ring.decode(1);
    assert_eq!(decoded.stop.lsn, 3);
    assert_eq!(decoded.stop.last_accepted, Some((2, 2, 4)));
    // Lsn 4 survived, but it is of the stop's own batch: a torn tail, not damage.
    let (a, _) = ring.twin(4);
    let lsn4 = JournalBlock::decode(&ring.blocks[a], ring.region.address(4)).unwrap();
    assert!(!decoded.stop.is_later_batch(&lsn4));
    // Recovery appends at the stop, chained to the last accepted block.
    ring.next_lsn = decoded.stop.lsn;
    ring.prev_crc = decoded.last_crc.unwrap();
    let mut buf = Vec::new();
    write_record(&mut buf, 3, &[OwnedOp::Delete(18)], RecordLimits::new(4096, 1 << 20));
    ring.append(&buf);
    let decoded = ring.decode(1);
    assert_eq!(decoded.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(decoded.dropped_records, 1);
    assert_eq!(decoded.stop.lsn, 4);
}

#[test]
fn ring_wraps_and_bounds_the_chain() {
    let mut ring = Ring::new(4096, 8);
    let limits = RecordLimits::new(4096, 1 << 20);
    // 20 single-block batches: lsn 1..=20 over 8 slots; replay from lsn 13.
    for seq in 1..=20 {
        let mut buf = Vec::new();
        write_record(&mut buf, seq, &[OwnedOp::Put(16, vec![seq as u8], vec![])], limits);
        ring.append(&buf);
    }
    let decoded = ring.decode(13);
    assert_eq!(
        decoded.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (13..=20).collect::<Vec<_>>()
    );
    assert_eq!(decoded.stop.lsn, 21);
    match &decoded.stop.reason {
        ChainStopReason::RingWrapped => {}
        other => panic!("{other:?}"),
    }
    // Lsn 12's slot now holds lsn 20: an old lsn is not found.
    let decoded = ring.decode(12);
    assert_eq!(decoded.records.len(), 0);
    // A batch that runs past the last slot is written in two pieces and reads back.
    let mut buf = Vec::new();
    write_record(&mut buf, 21, &[OwnedOp::Put(16, vec![], vec![1; 20_000])], limits);
    let info = ring.append(&buf);
    assert_eq!(info.writes(&ring.region).len(), 2);
    assert_eq!(ring.decode(21).records.len(), 1);
}

#[test]
fn framing_contradictions_are_not_torn_writes() {
    // Two records in a batch; rewrite block 2's first_record (resealed, so it verifies).
    let mut ring = Ring::new(4096, 32);
    let limits = RecordLimits::new(4096, 1 << 20);
    let mut buf = Vec::new();
    write_record(&mut buf, 1, &[OwnedOp::Put(16, vec![], vec![7; 5000])], limits);
    write_record(&mut buf, 2, &[OwnedOp::Delete(17)], limits);
    ring.append(&buf);
    let (a, b) = ring.twin_mut(2);
    a[96] += 1;
    seal_block(a);
    b.copy_from_slice(a);
    let decoded = ring.decode(1);
    assert_eq!(decoded.stop.lsn, 2);
    assert!(matches!(decoded.stop.reason, ChainStopReason::Framing(_)), "{:?}", decoded.stop);
    assert!(decoded.records.is_empty());
}

// ---- Robustness: random and mutated inputs through every decoder. ----

const CASES: u64 = 12_000;

fn run(name: &str, case: impl Fn(&mut Rng) -> bool + std::panic::RefUnwindSafe) {
    let seed = base_seed(0x6a6f_7572) ^ name.len() as u64;
    let decoded = std::sync::atomic::AtomicU64::new(0);
    for batch in 0..CASES / 1000 {
        with_seed(name, seed.wrapping_add(batch), |seed| {
            let mut rng = Rng::new(seed);
            for _ in 0..1000 {
                if case(&mut rng) {
                    decoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let decoded = decoded.into_inner();
    eprintln!("{name}: {decoded} of {CASES} decoded");
    assert!((CASES / 20..=CASES * 19 / 20).contains(&decoded), "{name}: {decoded} decoded");
}

/// A mutated copy: bit flips, boundary values in header fields (resealed half the time),
/// truncation, extension, random bytes.
fn mutate(rng: &mut Rng, base: &[u8], fields: &[(usize, usize)], block: bool) -> Vec<u8> {
    let mut buf = base.to_vec();
    match rng.below(7) {
        0 => {}
        1 => {
            for _ in 0..1 + rng.below(4) {
                if !buf.is_empty() {
                    let at = rng.index(buf.len());
                    buf[at] ^= 1 << rng.below(8);
                }
            }
        }
        2 | 3 => {
            let (at, width) = fields[rng.index(fields.len())];
            let value = match rng.below(6) {
                0 => 0,
                1 => 1,
                2 => u64::MAX,
                3 => rng.below(buf.len() as u64 + 2),
                4 => u64::from(u32::MAX),
                _ => rng.next_u64(),
            };
            if let Some(dst) = buf.get_mut(at..at + width) {
                dst.copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        4 => {
            let len = rng.index(buf.len() + 1);
            buf.truncate(len);
        }
        5 => {
            let extra = rng.index(300);
            buf.extend(rng.bytes(extra));
        }
        _ => {
            let len = rng.index(buf.len() + 1);
            buf = rng.bytes(len);
        }
    }
    if block && rng.chance(60) && buf.len() >= HEADER_BYTES {
        seal_block(&mut buf);
    }
    buf
}

const BLOCK_FIELDS: &[(usize, usize)] = &[
    (6, 1),
    (7, 1),
    (8, 2),
    (10, 2),
    (16, 8),
    (24, 8),
    (32, 8),
    (40, 4),
    (44, 4),
    (48, 8),
    (64, 8),
    (72, 8),
    (80, 8),
    (88, 4),
    (92, 4),
    (96, 4),
    (100, 4),
    (104, 8),
    (120, 8),
    (128, 8),
    (136, 4),
    (140, 4),
    (144, 4),
];
/// Record fields: seq, body_bytes, op_count, crc, reserved, then the first op's tag, tree id,
/// key length, value length.
const RECORD_FIELDS: &[(usize, usize)] =
    &[(0, 8), (8, 4), (12, 4), (16, 4), (20, 4), (24, 1), (25, 8), (33, 2), (35, 4)];

fn reseal_record(rng: &mut Rng, buf: &mut [u8]) {
    if rng.chance(70) && buf.len() >= JOURNAL_RECORD_HEADER_BYTES {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&buf[..16]);
        hasher.update(&[0; 4]);
        hasher.update(&buf[20..]);
        let crc = hasher.finalize();
        buf[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

fn record_pool(rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..32)
        .map(|_| {
            let mut buf = Vec::new();
            let ops = random_ops(rng, 4096);
            while !write_record(&mut buf, rng.below(1000), &ops, RecordLimits::new(4096, 1 << 20)) {
            }
            buf
        })
        .collect()
}

#[test]
fn record_reader_never_panics() {
    let pool = record_pool(&mut Rng::new(base_seed(1)));
    run("RecordReader", |rng| {
        let pick = rng.index(pool.len());
        let mut buf = mutate(rng, &pool[pick], RECORD_FIELDS, false);
        reseal_record(rng, &mut buf);
        let Ok(reader) = RecordReader::new(&buf, 4096, 1 << 20) else { return false };
        let count = reader.header().op_count();
        let ops: Vec<_> = reader.collect();
        let ok = ops.iter().all(Result::is_ok);
        assert!(ops.iter().filter(|op| op.is_err()).count() <= 1);
        if ok {
            assert_eq!(ops.len() as u32, count);
            // A record that reads cleanly re-encodes to the same bytes.
            let owned: Vec<OwnedOp> =
                ops.into_iter().map(|op| OwnedOp::from_op(op.unwrap())).collect();
            let mut again = Vec::new();
            assert!(write_record(
                &mut again,
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                &owned,
                RecordLimits::new(4096, 1 << 20)
            ));
            assert_eq!(again, buf);
        }
        ok
    });
}

fn block_pool(rng: &mut Rng) -> (Ring, Vec<u64>) {
    let mut ring = Ring::new(4096, 64);
    let mut lsns = Vec::new();
    while ring.next_lsn < 50 {
        let mut batch = Vec::new();
        for _ in 0..1 + rng.index(3) {
            let ops = random_ops(rng, 4096);
            write_record(
                &mut batch,
                ring.next_lsn * 10 + rng.below(10),
                &ops,
                RecordLimits::new(4096, 1 << 20),
            );
        }
        if batch.is_empty() || batch_block_count(&ring.region, batch.len()) + ring.next_lsn > 64 {
            continue;
        }
        let info = ring.append(&batch);
        lsns.extend(info.first_lsn..=info.last_lsn);
    }
    (ring, lsns)
}

#[test]
fn journal_block_and_twin_never_panic() {
    let (ring, lsns) = block_pool(&mut Rng::new(base_seed(2)));
    run("JournalBlock::decode / pick_twin", |rng| {
        let lsn = lsns[rng.index(lsns.len())];
        let (a, b) = ring.twin(lsn);
        let address = ring.region.address(lsn);
        let copy0 = mutate(rng, &ring.blocks[a], BLOCK_FIELDS, true);
        let copy1 = if rng.chance(50) {
            ring.blocks[b].clone()
        } else {
            mutate(rng, &ring.blocks[b], BLOCK_FIELDS, true)
        };
        let expect = if rng.chance(80) { Some(lsn) } else { None };
        let decoded = JournalBlock::decode(&copy0, address);
        if let Ok(block) = &decoded {
            assert!(block.records().len() <= journal_payload_bytes(4096));
            let _ = (block.lsn(), block.crc(), block.record_starts(), format!("{block:?}"));
        }
        match pick_twin(&copy0, &copy1, address, &UUID, expect) {
            Ok(pick) => {
                let _ = pick.other.map(|e| e.to_string());
                if let Some(lsn) = expect {
                    assert_eq!(pick.block.lsn(), lsn);
                }
            }
            Err(e) => {
                let _ = (e.to_string(), e.found_lsn());
            }
        }
        decoded.is_ok()
    });
}

#[test]
fn chain_decoder_never_panics() {
    let (ring, _) = block_pool(&mut Rng::new(base_seed(3)));
    run("ChainDecoder", |rng| {
        let start = 1 + rng.below(12);
        let len = rng.index(20);
        // Mutate one or two copies along the chain (often both copies of a block).
        let mut twins: Vec<(Vec<u8>, Vec<u8>)> = (start..start + len as u64)
            .map(|lsn| {
                let (a, b) = ring.twin(lsn);
                (ring.blocks[a].clone(), ring.blocks[b].clone())
            })
            .collect();
        for _ in 0..1 + rng.index(2) {
            if twins.is_empty() {
                break;
            }
            let i = rng.index(twins.len());
            twins[i].0 = mutate(rng, &twins[i].0, BLOCK_FIELDS, true);
            if rng.chance(60) {
                twins[i].1 = twins[i].0.clone();
            }
        }
        if rng.chance(10) && twins.len() > 2 {
            twins.swap(0, 1);
        }
        let decoded =
            decode_chain(ring.region, UUID, start, twins.iter().map(|(a, b)| (&a[..], &b[..])));
        assert!(decoded.stop.lsn >= start && decoded.stop.lsn <= start + len as u64);
        let mut last = None;
        for record in &decoded.records {
            assert!(last < Some(record.seq));
            last = Some(record.seq);
            if let Ok(reader) = record.ops(&ring.region) {
                let _ = reader.count();
            }
        }
        let _ = decoded.stop.to_string();
        !decoded.records.is_empty() && decoded.stop.lsn == start + len as u64
    });
}

/// The marker of a transaction committed by a checkpoint (design.md §11.5) decodes only alone.
#[test]
fn checkpointed_marker_only_alone() {
    use arbor_format::{RecordBuilder, RecordLimits, RecordReader};
    let limits = RecordLimits::new(4096, 1 << 20);
    let decode = |ops: &[OwnedOp]| {
        let mut b = RecordBuilder::new(limits);
        for op in ops {
            b.append(op.as_op()).unwrap();
        }
        let mut out = Vec::new();
        b.finish_into(7, &mut out);
        let reader = RecordReader::new(&out, 4096, 1 << 20).unwrap();
        reader.map(|op| op.map(OwnedOp::from_op)).collect::<Result<Vec<_>, _>>()
    };
    assert_eq!(decode(&[OwnedOp::Checkpointed]).unwrap(), vec![OwnedOp::Checkpointed]);
    assert!(decode(&[OwnedOp::Checkpointed, OwnedOp::Delete(16)]).is_err());
    assert!(decode(&[OwnedOp::Delete(16), OwnedOp::Checkpointed]).is_err());
}
