//! Randomized model test: sequences of node operations agree with a `BTreeMap` after every
//! operation, and the buffer always decodes. Reproduce a failure with the seed it prints:
//! `ARBOR_TEST_SEED=0x... cargo test -p arbor-format --test node_model`.

mod common;

use arbor_format::*;
use common::{base_seed, with_seed, Rng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How often the interesting paths ran, so the test cannot silently stop covering them.
static FULL_INSERTS: AtomicU64 = AtomicU64::new(0);
static KEY_CHANGES: AtomicU64 = AtomicU64::new(0);
static SPLITS: AtomicU64 = AtomicU64::new(0);
static GROWING_REPLACES: AtomicU64 = AtomicU64::new(0);

const LEAF_SEQUENCES: u64 = 1200;
const INTERNAL_SEQUENCES: u64 = 400;
const OPS_PER_SEQUENCE: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Inline(Vec<u8>),
    Overflow(OverflowRef),
}

impl Val {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Val::Inline(bytes) => ValueRef::Inline(bytes),
            Val::Overflow(r) => ValueRef::Overflow(*r),
        }
    }
    fn len(&self) -> usize {
        self.as_ref().len()
    }
}

fn seeds(default: u64, count: u64) -> Vec<u64> {
    match std::env::var("ARBOR_TEST_SEED") {
        Ok(_) => vec![base_seed(default)],
        Err(_) => (0..count).map(|i| default.wrapping_add(i)).collect(),
    }
}

fn pick_block_bytes(rng: &mut Rng) -> u32 {
    match rng.below(20) {
        0 => 65536,
        1..=4 => 8192,
        _ => 4096,
    }
}

/// Keys from a small alphabet so prefixes and collisions are common; mostly short, sometimes
/// at the limit.
fn random_key(rng: &mut Rng, block_bytes: u32) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1 => key_bytes_max(block_bytes) - rng.index(3),
        2 => rng.index(key_bytes_max(block_bytes) + 1),
        _ => rng.index(6),
    };
    (0..len).map(|_| b'a' + rng.below(3) as u8).collect()
}

fn random_value(rng: &mut Rng, block_bytes: u32) -> Val {
    if rng.chance(15) {
        let len = value_inline_bytes_max(block_bytes) as u64 + 1 + rng.below(100_000);
        let count = overflow_block_count(len, block_bytes) as u32;
        return Val::Overflow(OverflowRef::new(1000 + rng.below(1000), len, 3, 7, count));
    }
    let len = match rng.below(10) {
        0 => value_inline_bytes_max(block_bytes),
        1 => rng.index(value_inline_bytes_max(block_bytes) + 1),
        _ => rng.index(40),
    };
    Val::Inline(rng.bytes(len))
}

fn check_leaf(buf: &[u8], model: &BTreeMap<Vec<u8>, Val>) {
    let node = Node::decode(buf).expect("leaf decodes");
    assert_eq!(node.len(), model.len());
    let mut used = HEADER_BYTES;
    for (i, (key, val)) in model.iter().enumerate() {
        assert_eq!(node.key(i), &key[..]);
        let got = match node.leaf_value(i) {
            LeafValue::Inline(bytes) => Val::Inline(bytes.to_vec()),
            LeafValue::Overflow(r) => Val::Overflow(r),
        };
        assert_eq!(&got, val);
        assert_eq!(node.search(key), Ok(i));
        used += SLOT_BYTES + key.len() + val.len();
    }
    assert_eq!(node.used_bytes(), used);
    assert_eq!(node.free_bytes(), buf.len() - used);
}

fn leaf_insert(rng: &mut Rng, buf: &mut [u8], model: &mut BTreeMap<Vec<u8>, Val>) {
    let block_bytes = buf.len() as u32;
    let key = random_key(rng, block_bytes);
    let val = random_value(rng, block_bytes);
    let before = buf.to_vec();
    let mut node = NodeMut::open(buf).unwrap();
    match node.as_node().search(&key) {
        Ok(i) => {
            let fits = val.len() <= model[&key].len()
                || val.len() - model[&key].len() <= node.free_bytes();
            match node.replace_value(i, val.as_ref()) {
                Ok(()) => {
                    assert!(fits);
                    model.insert(key, val);
                }
                Err(NodeFull) => {
                    assert!(!fits);
                    assert_eq!(node.bytes(), &before[..], "failed replace changed the node");
                }
            }
        }
        Err(i) => {
            let fits = node.fits(key.len(), val.len());
            match node.insert(i, &key, val.as_ref()) {
                Ok(()) => {
                    assert!(fits);
                    model.insert(key, val);
                }
                Err(NodeFull) => {
                    assert!(!fits);
                    assert_eq!(node.bytes(), &before[..], "failed insert changed the node");
                    check_split_for_insert(buf, i, &key, &val, model);
                }
            }
        }
    }
}

/// On a full leaf: `split_point_for_insert` must give a split in which the item fits.
fn check_split_for_insert(
    buf: &[u8],
    index: usize,
    key: &[u8],
    val: &Val,
    model: &BTreeMap<Vec<u8>, Val>,
) {
    FULL_INSERTS.fetch_add(1, Relaxed);
    let mut left_buf = buf.to_vec();
    let mut right_buf = vec![0u8; buf.len()];
    let mut left = NodeMut::open(&mut left_buf).unwrap();
    let (at, goes_left) = left.split_point_for_insert(index, key.len(), val.len()).expect("split");
    let mut right = NodeMut::init(&mut right_buf, BlockKind::Leaf, 0, 99, 1, 16);
    left.move_tail_to(at, &mut right).unwrap();
    if goes_left {
        left.insert(index, key, val.as_ref()).expect("fits left");
    } else {
        right.insert(index - at, key, val.as_ref()).expect("fits right");
    }
    assert!(!left.is_empty() && !right.is_empty());
    let mut expected = model.clone();
    expected.insert(key.to_vec(), val.clone());
    let split = expected.keys().nth(left.len()).unwrap().clone();
    let right_model = expected.split_off(&split);
    check_leaf(&left_buf, &expected);
    check_leaf(&right_buf, &right_model);
}

fn leaf_set_key(rng: &mut Rng, buf: &mut [u8], model: &mut BTreeMap<Vec<u8>, Val>) {
    if model.is_empty() {
        return;
    }
    let i = rng.index(model.len());
    let old: Vec<u8> = model.keys().nth(i).unwrap().clone();
    let new = random_key(rng, buf.len() as u32);
    let lower_ok = model.range(..old.clone()).next_back().is_none_or(|(k, _)| *k < new);
    let upper_ok = model.range(old.clone()..).nth(1).is_none_or(|(k, _)| new < *k);
    if !lower_ok || !upper_ok || new == old {
        return;
    }
    let mut node = NodeMut::open(buf).unwrap();
    let fits = new.len() <= old.len() || new.len() - old.len() <= node.free_bytes();
    match node.set_key(i, &new) {
        Ok(()) => {
            assert!(fits);
            KEY_CHANGES.fetch_add(1, Relaxed);
            let val = model.remove(&old).unwrap();
            model.insert(new, val);
        }
        Err(NodeFull) => assert!(!fits),
    }
}

fn leaf_split_merge(rng: &mut Rng, buf: &mut [u8], model: &BTreeMap<Vec<u8>, Val>) {
    if model.len() < 2 {
        return;
    }
    SPLITS.fetch_add(1, Relaxed);
    let mut right_buf = vec![0u8; buf.len()];
    let mut left = NodeMut::open(buf).unwrap();
    let at = if rng.chance(70) { left.split_point() } else { 1 + rng.index(model.len() - 1) };
    assert!(at >= 1 && at < model.len());
    let mut right = NodeMut::init(&mut right_buf, BlockKind::Leaf, 0, 99, 1, 16);
    left.move_tail_to(at, &mut right).unwrap();
    let mut left_model = model.clone();
    let split = model.keys().nth(at).unwrap().clone();
    let right_model = left_model.split_off(&split);
    check_leaf(buf, &left_model);
    check_leaf(&right_buf, &right_model);
    let mut left = NodeMut::open(buf).unwrap();
    let right = Node::decode(&right_buf).unwrap();
    left.append_from(&right).unwrap();
}

fn run_leaf_sequence(seed: u64) {
    let mut rng = Rng::new(seed);
    let block_bytes = pick_block_bytes(&mut rng);
    let mut buf = vec![0u8; block_bytes as usize];
    NodeMut::init(&mut buf, BlockKind::Leaf, 0, 100, 1, 16);
    let mut model = BTreeMap::new();
    let insert_weight = 30 + rng.below(50);
    for _ in 0..OPS_PER_SEQUENCE {
        let op = rng.below(100);
        if op < insert_weight {
            leaf_insert(&mut rng, &mut buf, &mut model);
        } else if op < insert_weight + 8 {
            if !model.is_empty() {
                let i = rng.index(model.len());
                NodeMut::open(&mut buf).unwrap().remove(i);
                let key = model.keys().nth(i).unwrap().clone();
                model.remove(&key);
            }
        } else if op < insert_weight + 14 {
            leaf_set_key(&mut rng, &mut buf, &mut model);
        } else if op < insert_weight + 17 {
            NodeMut::open(&mut buf).unwrap().compact();
        } else if op < insert_weight + 20 {
            leaf_split_merge(&mut rng, &mut buf, &model);
        } else if !model.is_empty() {
            // Replace a value, often with one of a different size.
            let i = rng.index(model.len());
            let key = model.keys().nth(i).unwrap().clone();
            let val = random_value(&mut rng, block_bytes);
            let mut node = NodeMut::open(&mut buf).unwrap();
            if node.replace_value(i, val.as_ref()).is_ok() {
                if val.len() > model[&key].len() {
                    GROWING_REPLACES.fetch_add(1, Relaxed);
                }
                model.insert(key, val);
            }
        }
        check_leaf(&buf, &model);
    }
}

#[test]
fn leaf_operations_agree_with_btreemap() {
    for seed in seeds(0x1eaf_0000, LEAF_SEQUENCES) {
        with_seed("leaf sequence", seed, run_leaf_sequence);
    }
    if std::env::var("ARBOR_TEST_SEED").is_err() {
        let counts =
            [&FULL_INSERTS, &KEY_CHANGES, &SPLITS, &GROWING_REPLACES].map(|c| c.load(Relaxed));
        eprintln!("full inserts, key changes, splits, growing replaces: {counts:?}");
        assert!(counts.iter().all(|&count| count >= 500), "coverage too thin: {counts:?}");
    }
}

fn check_internal(buf: &[u8], model: &BTreeMap<Vec<u8>, ChildPtr>, level: u8) {
    let node = Node::decode(buf).expect("internal node decodes");
    assert_eq!((node.kind(), node.level()), (BlockKind::Internal, level));
    assert_eq!(node.len(), model.len());
    for (i, (key, child)) in model.iter().enumerate() {
        assert_eq!(node.key(i), &key[..]);
        assert_eq!(node.child(i), *child);
        assert_eq!(node.child_index(key), i);
    }
}

fn child_for(model: &BTreeMap<Vec<u8>, ChildPtr>, key: &[u8]) -> usize {
    model.range(..=key.to_vec()).count() - 1
}

fn internal_split_merge(buf: &mut [u8], model: &BTreeMap<Vec<u8>, ChildPtr>, level: u8) {
    if model.len() < 2 {
        return;
    }
    let mut right_buf = vec![0u8; buf.len()];
    let mut left = NodeMut::open(buf).unwrap();
    let at = left.split_point();
    let mut right = NodeMut::init(&mut right_buf, BlockKind::Internal, level, 99, 1, 16);
    left.move_tail_to(at, &mut right).unwrap();
    let separator = right.as_node().key(0).to_vec();
    right.set_key(0, b"").unwrap();
    let mut left_model = model.clone();
    let mut right_model = left_model.split_off(&separator);
    let first = right_model.remove(&separator).unwrap();
    right_model.insert(Vec::new(), first);
    check_internal(buf, &left_model, level);
    check_internal(&right_buf, &right_model, level);
    let mut left = NodeMut::open(buf).unwrap();
    let right = Node::decode(&right_buf).unwrap();
    left.append_from_with_separator(&right, &separator).unwrap();
}

fn run_internal_sequence(seed: u64) {
    let mut rng = Rng::new(seed);
    let block_bytes = pick_block_bytes(&mut rng);
    let level = 1 + rng.below(5) as u8;
    let mut buf = vec![0u8; block_bytes as usize];
    let mut node = NodeMut::init(&mut buf, BlockKind::Internal, level, 100, 1, 16);
    let first = ChildPtr::new(500, 1, 1);
    node.insert(0, b"", ValueRef::Child(first)).unwrap();
    let mut model = BTreeMap::from([(Vec::new(), first)]);
    for _ in 0..OPS_PER_SEQUENCE {
        let op = rng.below(100);
        let mut node = NodeMut::open(&mut buf).unwrap();
        let child = ChildPtr::new(1000 + rng.below(1 << 20), rng.below(9), rng.next_u64() as u32);
        if op < 55 {
            let key = random_key(&mut rng, block_bytes);
            if let Err(i) = node.as_node().search(&key) {
                if node.insert(i, &key, ValueRef::Child(child)).is_ok() {
                    model.insert(key, child);
                }
            }
        } else if op < 70 && model.len() > 1 {
            let i = 1 + rng.index(model.len() - 1);
            node.remove(i);
            let key = model.keys().nth(i).unwrap().clone();
            model.remove(&key);
        } else if op < 75 && model.len() > 1 {
            // Remove the first child: the next one becomes minus infinity.
            node.remove(0);
            node.set_key(0, b"").unwrap();
            model.remove(&Vec::new());
            let (key, ptr) = model.pop_first().unwrap();
            assert!(!key.is_empty());
            model.insert(Vec::new(), ptr);
        } else if op < 85 {
            let i = rng.index(model.len());
            node.set_child(i, child);
            *model.values_mut().nth(i).unwrap() = child;
        } else if op < 90 {
            node.compact();
        } else if op < 95 {
            internal_split_merge(&mut buf, &model, level);
        } else {
            let probe = random_key(&mut rng, block_bytes);
            assert_eq!(node.as_node().child_index(&probe), child_for(&model, &probe));
        }
        check_internal(&buf, &model, level);
    }
}

#[test]
fn internal_operations_agree_with_btreemap() {
    for seed in seeds(0x1a7e_0000, INTERNAL_SEQUENCES) {
        with_seed("internal sequence", seed, run_internal_sequence);
    }
}

/// The node search (a branchless search over the slots' key hints, keys compared only in
/// the run of equal hints) against a linear scan.
#[test]
fn search_matches_a_linear_scan_with_runs_of_equal_hints() {
    // Keys sharing their first four bytes (runs of equal hints, of every length from 1),
    // keys shorter than a hint, and keys that differ in the hint alone.
    let mut keys: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), b"a\0".to_vec()];
    for run in 1..6u8 {
        for i in 0..run {
            keys.push([b"k".as_slice(), &[run, 0, 0], &[i * 2]].concat());
        }
    }
    keys.extend([b"x".to_vec(), b"xyzw".to_vec(), b"xyzw\x01".to_vec(), b"z".to_vec()]);
    for count in 0..=keys.len() {
        let mut buf = vec![0u8; 4096];
        let mut node = NodeMut::init(&mut buf, BlockKind::Leaf, 0, 70, 1, 16);
        for (i, key) in keys.iter().take(count).enumerate() {
            node.insert(i, key, ValueRef::Inline(b"v")).unwrap();
        }
        let node = Node::decode(&buf).unwrap();
        let stored = &keys[..count];
        let mut probes: Vec<Vec<u8>> = keys.clone();
        for key in &keys {
            probes.push([key.as_slice(), b"\0"].concat());
            probes.push([key.as_slice(), b"\xff"].concat());
            if let Some((last, head)) = key.split_last() {
                probes.push([head, &[last.wrapping_add(1)]].concat());
            }
        }
        for probe in &probes {
            let want = match stored.iter().position(|k| k == probe) {
                Some(i) => Ok(i),
                None => Err(stored.iter().filter(|k| k.as_slice() < probe.as_slice()).count()),
            };
            assert_eq!(node.search(probe), want, "{probe:?} among {count} keys");
        }
    }
}
