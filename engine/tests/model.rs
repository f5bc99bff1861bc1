//! Random operations against a `BTreeMap` model, checked after every step: inserts,
//! removes, gets, ranges forward and backward, tree create/delete, commit, abort, reopen.

mod common;

use arbor::io::{MemDevice, SimDevice};
use arbor::{BlockDevice, Db, Durability};
use common::{dump, key, range_bounds, small_opts, value, Model, Rng};

fn check_range(
    t: &arbor::WriteTree<'_, '_>,
    m: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    rng: &mut Rng,
) {
    let a = key(rng, 400);
    let b = key(rng, 400);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let (s, e) = range_bounds(&lo, &hi, rng.below(4) as usize);
    let want: Vec<(Vec<u8>, Vec<u8>)> =
        m.range::<[u8], _>((s, e)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let got: Vec<_> = t.range((s, e)).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(got, want, "forward range");
    let mut want_rev = want.clone();
    want_rev.reverse();
    let got_rev: Vec<_> = t.range((s, e)).unwrap().rev().map(|r| r.unwrap()).collect();
    assert_eq!(got_rev, want_rev, "reverse range");
    // Both ends at once meet in the middle without duplicates.
    let mut it = t.range((s, e)).unwrap();
    let mut both = Vec::new();
    let mut tail = Vec::new();
    while let Some(x) = it.next() {
        both.push(x.unwrap());
        match it.next_back() {
            Some(x) => tail.push(x.unwrap()),
            None => break,
        }
    }
    tail.reverse();
    both.extend(tail);
    assert_eq!(both, want, "alternating ends");
}

/// Where `run` keeps the store: the simulated device (reopened after a simulated crash) or
/// the memory device of `Db::memory` (reopened as after a clean close).
#[derive(Clone)]
enum Device {
    Sim(SimDevice),
    Mem(MemDevice),
}

impl Device {
    fn boxed(&self) -> Box<dyn BlockDevice> {
        match self {
            Device::Sim(dev) => Box::new(dev.clone()),
            Device::Mem(dev) => Box::new(dev.clone()),
        }
    }

    fn crash(&self) -> Device {
        match self {
            Device::Sim(dev) => Device::Sim(dev.crash()),
            Device::Mem(dev) => Device::Mem(dev.clone()),
        }
    }
}

fn run(seed: u64, steps: usize) {
    run_on(Device::Sim(SimDevice::new(256 << 20, 4096, seed)), seed, steps)
}

fn run_on(mut dev: Device, seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut db = Db::create_on(dev.boxed(), small_opts()).unwrap();
    let mut committed = Model::new();
    let names = ["alpha", "beta", "gamma"];
    let mut step = 0;
    while step < steps {
        let mut working = committed.clone();
        let mut tx = db.begin_write().unwrap();
        if rng.chance(30) {
            tx.set_durability(Durability::None);
        }
        let ops = 1 + rng.below(60);
        for _ in 0..ops {
            step += 1;
            let name = names[rng.below(3) as usize];
            if rng.chance(2) {
                let existed = tx.delete_tree(name).unwrap();
                assert_eq!(existed, working.remove(name).is_some(), "seed {seed} step {step}");
                continue;
            }
            let m = working.entry(name.to_string()).or_default();
            random_op(&mut tx.tree(name).unwrap(), m, &mut rng, (seed, step));
        }
        if rng.chance(25) {
            tx.abort().unwrap();
        } else {
            tx.commit().unwrap();
            committed = working;
        }
        assert_eq!(dump(&db), committed, "seed {seed} step {step}: after commit/abort");
        if rng.chance(10) {
            let report = db.check().unwrap();
            assert!(report.is_ok(), "seed {seed} step {step}: {:?}", report.problems);
        }
        if rng.chance(8) {
            db.flush().unwrap();
            drop(db);
            dev = dev.crash();
            db = Db::open_on(dev.boxed(), small_opts()).unwrap();
            let got = dump(&db);
            assert_eq!(got, committed, "seed {seed} step {step}: after reopen");
        }
    }
    let report = db.check().unwrap();
    assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);
}

/// One random operation on tree `t` and its model `m`, checked against each other.
fn random_op(
    t: &mut arbor::WriteTree<'_, '_>,
    m: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    rng: &mut Rng,
    (seed, step): (u64, usize),
) {
    match rng.below(10) {
        0..=4 => {
            let (k, v) = (key(rng, 400), value(rng));
            let old = t.insert(&k, &v).unwrap();
            assert_eq!(old, m.insert(k, v), "seed {seed} step {step}: insert");
        }
        5..=6 => {
            let k = key(rng, 400);
            assert_eq!(t.remove(&k).unwrap(), m.remove(&k), "seed {seed} step {step}: remove");
        }
        7..=8 => {
            let k = key(rng, 400);
            assert_eq!(t.get(&k).unwrap(), m.get(&k).cloned(), "seed {seed} step {step}: get");
        }
        _ => check_range(t, m, rng),
    }
    assert_eq!(t.len().unwrap(), m.len() as u64, "seed {seed} step {step}: len");
}

#[test]
fn random_operations_agree_with_a_btreemap() {
    let steps: usize =
        std::env::var("ARBOR_MODEL_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    for seed in 1..=4u64 {
        run(seed, steps);
    }
}

/// The same random operations on the memory device behind `Db::memory`, which starts empty
/// and grows as the store fills.
#[test]
fn random_operations_in_memory() {
    for seed in 1..=2 {
        run_on(Device::Mem(MemDevice::new(256 << 20)), seed, 3000);
    }
}

#[test]
fn removing_everything_shrinks_to_one_empty_leaf() {
    let dev = SimDevice::new(64 << 20, 4096, 9);
    let db = Db::create_on(Box::new(dev), small_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..20_000u32 {
        t.insert(i.to_be_bytes(), [7u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    let blocks_full = db.check().unwrap().tree_blocks;
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..20_000u32 {
        assert!(t.remove(i.to_be_bytes()).unwrap().is_some());
    }
    assert!(t.is_empty().unwrap());
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // The catalog leaf and the tree's single empty leaf.
    assert_eq!(report.tree_blocks, 2, "was {blocks_full} blocks when full");
}

#[test]
fn sequential_load_fills_leaves() {
    let dev = SimDevice::new(64 << 20, 4096, 10);
    let db = Db::create_on(Box::new(dev), small_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    let n = 20_000u32;
    for i in 0..n {
        t.insert(i.to_be_bytes(), [7u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    let report = db.check().unwrap();
    // 116 bytes per item: 34 per 4 KiB leaf when full.
    let leaves_min = u64::from(n).div_ceil(34);
    assert!(report.tree_blocks < leaves_min * 105 / 100 + 10, "{} blocks", report.tree_blocks);
}
