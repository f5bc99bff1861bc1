//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use arbor::Db;

#[allow(unused_imports)] // not every test binary that shares this module uses each
pub use arbor_testkit::{small_opts, Rng};

pub type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Reads every tree of `db` into a model (through a write transaction that is aborted).
pub fn dump(db: &Db) -> Model {
    let tx = db.begin_write().expect("begin");
    let mut out = Model::new();
    for name in tx.tree_names().expect("names") {
        let t = tx.tree(&name).expect("tree");
        let items: BTreeMap<Vec<u8>, Vec<u8>> =
            t.iter().expect("iter").map(|r| r.expect("item")).collect();
        assert_eq!(items.len() as u64, t.len().expect("len"), "tree {name}: len vs scan");
        out.insert(name, items);
    }
    tx.abort().expect("abort");
    out
}

/// Reads every tree of a snapshot into a model.
pub fn snap_dump(snap: &arbor::Snapshot) -> arbor::Result<Model> {
    let mut out = Model::new();
    for name in snap.tree_names()? {
        let t = snap.tree(&name)?.expect("listed tree exists");
        let owned = t.iter()?.map(|r| r.map(|(k, v)| (k.into_vec(), v.into_vec())));
        let items: BTreeMap<Vec<u8>, Vec<u8>> = owned.collect::<arbor::Result<_>>()?;
        assert_eq!(items.len() as u64, t.len().unwrap(), "tree {name}: len vs scan");
        out.insert(name, items);
    }
    Ok(out)
}

/// A key from a small space so that removes and replaces hit existing keys.
pub fn key(rng: &mut Rng, space: u64) -> Vec<u8> {
    let k = rng.below(space);
    let len = 1 + (k % 40) as usize;
    let mut key = format!("{k:010}").into_bytes();
    key.resize(len.max(10), b'k');
    key
}

/// One of four kinds of range over `lo..hi` (`kind % 4`): included/excluded start and end,
/// either end unbounded.
pub fn range_bounds<'a>(
    lo: &'a [u8],
    hi: &'a [u8],
    kind: usize,
) -> (std::ops::Bound<&'a [u8]>, std::ops::Bound<&'a [u8]>) {
    use std::ops::Bound;
    let bounds = [
        (Bound::Included(lo), Bound::Excluded(hi)),
        (Bound::Excluded(lo), Bound::Included(hi)),
        (Bound::Unbounded, Bound::Included(hi)),
        (Bound::Included(lo), Bound::Unbounded),
    ];
    bounds[kind % 4]
}

/// Values of mixed sizes: mostly small, some past the inline limit (overflow extents).
pub fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(100) {
        0..=79 => rng.below(200) as usize,
        80..=96 => rng.below(900) as usize,
        _ => 1000 + rng.below(12_000) as usize,
    };
    rng.bytes(len)
}

/// Tests that spawn a child process and tests that check a store's lock is released on drop
/// run one at a time: a child forked from the test process holds duplicates of every open
/// file descriptor (with their `flock`) until it reaches `exec`, so a concurrent spawn can
/// briefly keep a dropped store's lock alive.
static SPAWN_VS_RELEASE: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serialized_with_spawns() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_VS_RELEASE.lock().unwrap_or_else(|e| e.into_inner())
}
