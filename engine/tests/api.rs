//! The user-facing API (issue 17): several trees per transaction, typed trees, the compound
//! operations and savepoints against a `BTreeMap` model with snapshots held, ranges that
//! see changes made while they are open, backup under concurrent writes, `Db` clones and a
//! closed store.

mod common;

use std::collections::BTreeMap;

use arbor::io::SimDevice;
use arbor::{Db, Durability, Error, Snapshot, TreeDef};
use arbor_testkit::store;
use common::{dump, key, small_opts, snap_dump, value, Model, Rng};

fn new_db(seed: u64) -> Db {
    Db::create_on(Box::new(SimDevice::new(256 << 20, 4096, seed)), small_opts()).unwrap()
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_sync_where_sound() {
    assert_send_sync::<Db>();
    assert_send_sync::<Snapshot>();
    assert_send_sync::<arbor::Tree>();
    assert_send_sync::<arbor::Range>();
    assert_send_sync::<arbor::TypedTree<u64, str>>();
    assert_send_sync::<arbor::TypedIter<arbor::Range, (String, u64), ()>>();
}

/// One random operation on tree `t` of the open transaction, mirrored in `m`.
fn random_op(rng: &mut Rng, t: &mut arbor::WriteTree<'_, '_>, m: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    match rng.below(10) {
        0..=3 => {
            let (k, v) = (key(rng, 300), value(rng));
            assert_eq!(t.insert(&k, &v).unwrap(), m.insert(k, v));
        }
        4 => {
            let k = key(rng, 300);
            assert_eq!(t.remove(&k).unwrap(), m.remove(&k));
        }
        5 => assert_eq!(t.pop_first().unwrap(), m.pop_first()),
        6 => assert_eq!(t.pop_last().unwrap(), m.pop_last()),
        7 => {
            let byte = b'0' + rng.below(10) as u8;
            let removed = t.retain(|k, _| k[9] != byte).unwrap();
            let before = m.len();
            m.retain(|k, _| k[9] != byte);
            assert_eq!(removed, (before - m.len()) as u64);
        }
        8 => {
            let k = key(rng, 300);
            let new = value(rng);
            let old = t.update(&k, |old| old.is_none().then(|| new.clone())).unwrap();
            assert_eq!(old, m.get(&k).cloned());
            match old {
                None => m.insert(k, new),
                Some(_) => m.remove(&k), // `f` returned None: removed
            };
        }
        _ => {
            let k = key(rng, 300);
            let cur = m.get(&k).cloned();
            let got = t.compare_and_swap(&k, cur.as_deref(), None).unwrap();
            assert_eq!(got, Ok(()));
            m.remove(&k);
            let wrong = t.compare_and_swap(&k, Some(b"never stored"), Some(b"x")).unwrap();
            assert_eq!(wrong, Err(None));
        }
    }
}

fn check_tree(t: &arbor::WriteTree<'_, '_>, m: &BTreeMap<Vec<u8>, Vec<u8>>, rng: &mut Rng) {
    assert_eq!(t.len().unwrap(), m.len() as u64);
    let all: Vec<_> = t.iter().unwrap().collect::<arbor::Result<_>>().unwrap();
    assert_eq!(all, m.clone().into_iter().collect::<Vec<_>>());
    let p = format!("{:02}", rng.below(100)).into_bytes();
    let got: Vec<_> = t.prefix(&p).unwrap().map(|r| r.unwrap().0).collect();
    let want: Vec<_> = m.keys().filter(|k| k.starts_with(&p)).cloned().collect();
    assert_eq!(got, want, "prefix {p:?}");
}

#[test]
fn operations_and_savepoints_match_a_model_with_snapshots_held() {
    let db = new_db(7);
    let mut rng = Rng(17);
    let mut model = Model::new();
    let mut held: Vec<(Snapshot, Model)> = Vec::new();
    for round in 0..40 {
        let mut tx = db.begin_write().unwrap();
        if round % 3 == 0 {
            tx.set_durability(Durability::None);
        }
        let mut next = model.clone();
        let mut a = tx.tree("a").unwrap();
        let mut b = tx.tree("b").unwrap(); // two trees at once
        let mut ma = next.get("a").cloned().unwrap_or_default();
        let mut mb = next.get("b").cloned().unwrap_or_default();
        let sp = tx.savepoint().unwrap();
        let (sa, sb) = (ma.clone(), mb.clone());
        for _ in 0..60 {
            random_op(&mut rng, &mut a, &mut ma);
            random_op(&mut rng, &mut b, &mut mb);
        }
        if rng.below(3) == 0 {
            tx.rollback_to(&sp).unwrap();
            (ma, mb) = (sa, sb);
            for _ in 0..20 {
                random_op(&mut rng, &mut a, &mut ma);
            }
        }
        check_tree(&a, &ma, &mut rng);
        check_tree(&b, &mb, &mut rng);
        next.insert("a".into(), ma);
        next.insert("b".into(), mb);
        if round % 7 == 6 {
            tx.abort().unwrap();
        } else {
            tx.commit().unwrap();
            model = next;
        }
        held.push((db.snapshot().unwrap(), model.clone()));
        if held.len() > 5 {
            held.remove(rng.below(held.len() as u64) as usize);
        }
        for (snap, m) in &held {
            assert_eq!(&snap_dump(snap).unwrap(), m, "round {round}");
        }
    }
    assert_eq!(dump(&db), model);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn savepoints_nest_and_roll_back_splits_tree_creation_and_deletion() {
    let db = new_db(3);
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..3000u32 {
        t.insert(i.to_be_bytes(), [1u8; 100]).unwrap();
    }
    let outer = tx.savepoint().unwrap();
    for i in 0..3000u32 {
        t.insert(i.to_be_bytes(), [2u8; 150]).unwrap(); // splits private blocks
    }
    tx.tree("new").unwrap().insert(b"k", b"v").unwrap();
    let inner = tx.savepoint().unwrap();
    tx.delete_tree("t").unwrap();
    tx.rollback_to(&inner).unwrap();
    assert_eq!(t.get(5u32.to_be_bytes()).unwrap(), Some(vec![2u8; 150]));
    tx.rollback_to(&outer).unwrap();
    assert!(matches!(tx.rollback_to(&inner), Err(Error::InvalidInput(_))));
    assert_eq!(tx.tree_names().unwrap(), ["t"]);
    assert_eq!(t.len().unwrap(), 3000);
    assert_eq!(t.get(5u32.to_be_bytes()).unwrap(), Some(vec![1u8; 100]));
    tx.commit().unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let snap = db.snapshot().unwrap();
    let t = snap.tree("t").unwrap().unwrap();
    assert_eq!(t.len().unwrap(), 3000);
    assert!(t.iter().unwrap().all(|r| r.unwrap().1 == [1u8; 100]));
}

#[test]
fn savepoint_rollback_of_published_blocks_keeps_snapshots_right() {
    let db = new_db(4);
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(Durability::None); // the generation stays open: blocks are published
    let mut t = tx.tree("t").unwrap();
    for i in 0..2000u32 {
        t.insert(i.to_be_bytes(), b"v0").unwrap();
    }
    tx.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let before = snap_dump(&snap).unwrap();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    t.insert(1u32.to_be_bytes(), b"kept").unwrap();
    let sp = tx.savepoint().unwrap();
    for i in 0..2000u32 {
        t.remove(i.to_be_bytes()).unwrap();
    }
    assert_eq!(snap_dump(&snap).unwrap(), before);
    tx.rollback_to(&sp).unwrap();
    assert_eq!(t.len().unwrap(), 2000);
    tx.commit().unwrap();
    assert_eq!(snap_dump(&snap).unwrap(), before);
    let now = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    assert_eq!(now.get(1u32.to_be_bytes()).unwrap().map(Vec::from), Some(b"kept".to_vec()));
    assert_eq!(now.get(2u32.to_be_bytes()).unwrap().map(Vec::from), Some(b"v0".to_vec()));
}

#[test]
fn a_write_range_sees_changes_made_while_it_is_open() {
    let db = new_db(5);
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..500u32 {
        t.insert(i.to_be_bytes(), b"").unwrap();
    }
    let mut seen = 0;
    for item in t.range(..).unwrap() {
        let (k, _) = item.unwrap();
        let i = u32::from_be_bytes(k.as_slice().try_into().unwrap());
        if i % 2 == 0 {
            t.remove(&k).unwrap();
            t.remove((i + 1).to_be_bytes()).unwrap(); // ahead of the range: never returned
        }
        seen += 1;
    }
    assert_eq!(seen, 250);
    assert_eq!(t.len().unwrap(), 0);
    // Both ends, with an insert past the front.
    for i in 0..10u32 {
        t.insert(i.to_be_bytes(), b"").unwrap();
    }
    let mut r = t.iter().unwrap();
    assert_eq!(r.next().unwrap().unwrap().0, 0u32.to_be_bytes());
    assert_eq!(r.next_back().unwrap().unwrap().0, 9u32.to_be_bytes());
    t.insert(5u32.to_be_bytes(), b"again").unwrap();
    t.insert(100u32.to_be_bytes(), b"past the back").unwrap();
    let rest: Vec<_> = r.map(|x| x.unwrap()).collect();
    assert_eq!(rest.len(), 8);
    assert_eq!(rest[4].1, b"again");
}

const USERS: TreeDef<u64, str> = TreeDef::new("users");
const BY_NAME: TreeDef<(String, u64), ()> = TreeDef::new("by_name");
const SIGNED: TreeDef<i64, [u8; 2]> = TreeDef::new("signed");

#[test]
fn typed_trees_sort_by_value_and_agree_with_the_byte_api() {
    let db = new_db(6);
    let tx = db.begin_write().unwrap();
    let mut users = tx.open(USERS).unwrap();
    let mut by_name = tx.open(BY_NAME).unwrap();
    for (id, name) in [(300u64, "b"), (2, "ab"), (10, "a"), (1, "a\0")] {
        users.insert(id, name).unwrap();
        by_name.insert((name.to_string(), id), ()).unwrap();
    }
    let ids: Vec<u64> = users.iter().unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(ids, [1, 2, 10, 300]);
    let names: Vec<(String, u64)> = by_name.iter().unwrap().map(|r| r.unwrap().0).collect();
    let want = [("a", 10), ("a\0", 1), ("ab", 2), ("b", 300)];
    assert_eq!(names, want.map(|(n, i)| (n.to_string(), i)));
    assert_eq!(tx.tree("users").unwrap().get(300u64.to_be_bytes()).unwrap(), Some(b"b".to_vec()));
    let mut signed = tx.open(SIGNED).unwrap();
    for i in [-5i64, 3, i64::MIN, 0, i64::MAX] {
        signed.insert(i, [1, 2]).unwrap();
    }
    let got: Vec<i64> = signed.range(-5..=3).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(got, [-5, 0, 3]);
    assert_eq!(users.pop_first().unwrap(), Some((1, "a\0".to_string())));
    assert_eq!(users.retain(|id, _| *id > 5).unwrap(), 1);
    tx.tree("users").unwrap().insert(b"bad", b"").unwrap();
    assert!(users.get(7).unwrap().is_none());
    assert!(matches!(users.last(), Err(Error::Decode { type_name: "u64", .. })));
    tx.commit().unwrap();
    let snap_users = db.snapshot().unwrap().open(USERS).unwrap().unwrap();
    let range = snap_users.range(10u64..).unwrap();
    let got = std::thread::spawn(move || range.filter_map(|r| r.ok()).count()).join().unwrap();
    assert_eq!(got, 2);
}

#[test]
fn backup_under_concurrent_writes_equals_its_snapshot_and_checks() {
    let dir = arbor_testkit::temp_dir_in(std::env::temp_dir(), "arbor-api-backup");
    // The source is a test store (in memory in the memory pass); the backups are files,
    // because `backup_to` takes a path.
    let db = store::create(dir.path().join("src"), small_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    let mut rng = Rng(9);
    for name in ["a", "b"] {
        let mut t = tx.tree(name).unwrap();
        for _ in 0..3000 {
            t.insert(key(&mut rng, 1 << 20), value(&mut rng)).unwrap();
        }
    }
    tx.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let want = snap_dump(&snap).unwrap();
    let writer = {
        let db = db.clone(); // a second handle, moved to the writing thread
        std::thread::spawn(move || {
            let mut rng = Rng(10);
            for _ in 0..30 {
                let tx = db.begin_write().unwrap();
                let mut t = tx.tree("a").unwrap();
                for _ in 0..100 {
                    let k = key(&mut rng, 1 << 20);
                    t.remove(&k).unwrap();
                    t.insert(k, value(&mut rng)).unwrap();
                }
                tx.commit().unwrap();
            }
        })
    };
    let path = dir.path().join("backup");
    let info = Db::backup_snapshot_to(&snap, &path, small_opts()).unwrap();
    writer.join().unwrap();
    assert_eq!(info.seq, snap.seq());
    assert_eq!(info.entries, want.values().map(|t| t.len() as u64).sum::<u64>());
    let copy = Db::open(&path, small_opts()).unwrap();
    assert_eq!(snap_dump(&copy.snapshot().unwrap()).unwrap(), want);
    let report = copy.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let again = db.backup_to(dir.path().join("again"), small_opts()).unwrap();
    assert_eq!(again.trees, 2);
}

#[test]
fn the_last_db_handle_closes_the_store_while_snapshots_live() {
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir_in(std::env::temp_dir(), "arbor-api-closed");
    let path = dir.path().join("s");
    let db = store::open_or_create(&path, small_opts()).unwrap();
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(b"k", b"v").unwrap();
    tx.commit().unwrap();
    let clone = db.clone();
    let snap = db.snapshot().unwrap();
    let tree = snap.tree("t").unwrap().unwrap();
    drop(db);
    assert_eq!(
        tree.get(b"k").unwrap().map(Vec::from),
        Some(b"v".to_vec()),
        "a clone keeps it open"
    );
    assert!(format!("{clone:?}").starts_with("Db"));
    drop(clone);
    assert!(matches!(tree.get(b"k"), Err(Error::Closed)));
    assert!(matches!(tree.len(), Err(Error::Closed)));
    assert!(matches!(snap.tree("t"), Err(Error::Closed)));
    // On a file, the lock must have been released; in memory, the bytes are reopened.
    let reopened = store::open_or_create(&path, small_opts()).expect("the lock was released");
    let t = reopened.snapshot().unwrap().tree("t").unwrap().unwrap();
    assert_eq!(t.get(b"k").unwrap().map(Vec::from), Some(b"v".to_vec()));
    drop(snap);
}

#[test]
fn try_begin_write_does_not_wait() {
    let db = new_db(8);
    let tx = db.begin_write().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| assert!(db.try_begin_write().unwrap().is_none()));
    });
    drop(tx);
    assert!(db.try_begin_write().unwrap().is_some());
}
