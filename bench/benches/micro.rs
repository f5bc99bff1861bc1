//! criterion micro-benchmarks: the pieces one Arbor operation is made of.
//!
//! `cargo bench -p arbor-bench --bench micro` (add `-- node_` etc. to pick some).
//! * `node_search` / `node_insert`: `arbor-format` leaf search and insert on a 4 KiB leaf
//!   holding the benchmark's 24-byte keys and 150-byte values;
//! * `block_crc`: the checksum every block read verifies and every write seals;
//! * `cache_hit_get`: `get` of one hot key through the public API, so every block of the path
//!   comes from the cache (through the same read path `kv-bench` uses, `ArborEngine::read`).
//!
//! * `modlog_append/k`: k logged in-place value replacements on a published leaf (each edit
//!   and its undo entry under the block's lock, `Slot::edit_logged`);
//! * `modlog_rewind/k`: a snapshot reader's view of that leaf as of before the k edits
//!   (copy under the lock, then undo k entries newest first, `Slot::image_at`).

use std::hint::black_box;

use arbor_bench::data::{KEY_BYTES, VALUE_BYTES};
use arbor_bench::engines::arbor::ArborEngine;
use arbor_bench::engines::{Engine, Store};
use arbor_bench::rng::SplitMix64;
use arbor_format::{block_crc, BlockKind, Node, NodeMut, ValueRef};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const BLOCK: usize = 4096;

fn random_keys(n: usize, seed: u64) -> Vec<[u8; KEY_BYTES]> {
    let mut rng = SplitMix64::new(seed);
    let mut keys = vec![[0u8; KEY_BYTES]; n];
    keys.iter_mut().for_each(|k| rng.fill(k));
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A leaf filled with every other key of `keys` (sorted) while it fits; returns the block and
/// how many keys went in.
fn leaf(keys: &[[u8; KEY_BYTES]]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; BLOCK];
    let value = [0x5A; VALUE_BYTES];
    let mut node = NodeMut::init(&mut buf, BlockKind::Leaf, 0, 4096, 1, 1);
    let mut n = 0;
    for key in keys.iter().step_by(2) {
        if !node.fits(KEY_BYTES, VALUE_BYTES) {
            break;
        }
        node.insert(n, key, ValueRef::Inline(&value)).expect("fits");
        n += 1;
    }
    node.seal();
    (buf, n)
}

fn node_benches(c: &mut Criterion) {
    let keys = random_keys(200, 1);
    let (buf, count) = leaf(&keys);
    // Probes: the stored keys (hits) and the ones between them (misses).
    let probes: Vec<_> = keys.iter().take(2 * count).copied().collect();
    c.bench_function("node_search", |b| {
        let node = Node::decode(&buf).expect("valid leaf");
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % probes.len();
            black_box(node.search(black_box(&probes[i])))
        })
    });
    c.bench_function("node_decode_trusted_search", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % probes.len();
            let node = Node::decode_trusted(black_box(&buf)).expect("valid leaf");
            black_box(node.search(&probes[i]))
        })
    });

    // Insert one missing key into a leaf with room for it (the block minus one item).
    let (half, _) = leaf(&keys[..count]);
    let missing: Vec<_> = keys[..count].iter().skip(1).step_by(2).copied().collect();
    let value = [0xA5; VALUE_BYTES];
    let mut i = 0;
    c.bench_function("node_insert", |b| {
        b.iter_batched_ref(
            || half.clone(),
            |block| {
                i = (i + 1) % missing.len();
                let mut node = NodeMut::open_trusted(block).expect("valid leaf");
                let at = node.as_node().search(&missing[i]).expect_err("missing key");
                node.insert(at, &missing[i], ValueRef::Inline(&value)).expect("fits");
            },
            BatchSize::SmallInput,
        )
    });
}

fn crc_bench(c: &mut Criterion) {
    let (buf, _) = leaf(&random_keys(200, 2));
    c.bench_function("block_crc_4k", |b| b.iter(|| black_box(block_crc(black_box(&buf)))));
}

fn cache_hit_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = Store { path: dir.path().join("micro.arbor"), erase: false };
    let engine =
        ArborEngine::create(&store, arbor_bench::config::Durability::Immediate).expect("create");
    let keys: Vec<Vec<u8>> = random_keys(100_000, 3).iter().map(|k| k.to_vec()).collect();
    let values = vec![vec![7u8; VALUE_BYTES]; keys.len()];
    engine.insert_txn(&keys, &values).expect("load");
    let hot = keys[keys.len() / 2].clone();
    engine
        .read(|t| {
            c.bench_function("cache_hit_get", |b| {
                b.iter(|| black_box(t.get(black_box(&hot)).expect("get")))
            });
            Ok(())
        })
        .expect("read");
}

/// A published leaf slot holding `count` items of the benchmark's sizes.
fn slot_with_leaf(keys: &[[u8; KEY_BYTES]]) -> (arbor::mvcc::Slot, usize) {
    let (bytes, count) = leaf(keys);
    let buf = arbor::AlignedBuf::from_slice(&bytes, BLOCK);
    (arbor::mvcc::Slot::new(4096, buf), count)
}

/// k value replacements on `slot`, each logged (the writer's path for a published block).
fn replace_k(slot: &arbor::mvcc::Slot, count: usize, k: usize, seq: &mut u64) {
    use arbor::modlog::{ItemValue, Op};
    for i in 0..k {
        let at = i % count;
        let fresh = [i as u8; VALUE_BYTES];
        let done = slot
            .edit_logged(Some(&mut *seq), |node| {
                let old = match node.as_node().leaf_value(at) {
                    arbor_format::LeafValue::Inline(v) => ItemValue::Inline(v.to_vec()),
                    arbor_format::LeafValue::Overflow(r) => ItemValue::Overflow(r),
                };
                node.replace_value(at, ValueRef::Inline(&fresh)).expect("same size fits");
                Ok(Some(((), Op::Replace { slot: at as u16, old })))
            })
            .expect("edit");
        assert!(done.is_some());
    }
}

fn modlog_benches(c: &mut Criterion) {
    let keys = random_keys(200, 3);
    for k in [1usize, 8, 64] {
        c.bench_function(&format!("modlog_append/{k}"), |b| {
            b.iter_batched(
                || slot_with_leaf(&keys),
                |(slot, count)| {
                    let mut seq = 100;
                    replace_k(&slot, count, k, &mut seq);
                    black_box(seq)
                },
                BatchSize::SmallInput,
            )
        });
        let (slot, count) = slot_with_leaf(&keys);
        let mut seq = 100;
        replace_k(&slot, count, k, &mut seq);
        c.bench_function(&format!("modlog_rewind/{k}"), |b| {
            b.iter(|| black_box(slot.image_at(100, BLOCK).expect("rewind")))
        });
    }
}

criterion_group!(benches, node_benches, crc_bench, cache_hit_bench, modlog_benches);
criterion_main!(benches);
