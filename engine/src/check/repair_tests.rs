//! `plan_rollback` and `roll_back` on a simulated device: commits after the newest
//! checkpoint live only in the journal, the newest checkpoint's catalog rots, and the
//! rollback must report those commits, replay none of them, and leave a store that takes
//! and recovers new commits (design.md §11.7, §11.8).

use super::{plan_rollback, roll_back};
use crate::check::check_device;
use crate::durable::superblock::read_superblocks;
use crate::io::SimDevice;
use crate::{Db, Options};

fn opts() -> Options {
    Options { checkpoint_interval: None, ..Options::default() }
}

fn insert(db: &Db, key: &[u8]) {
    let tx = db.begin_write().unwrap();
    tx.tree("a").unwrap().insert(key, b"v").unwrap();
    assert!(tx.commit().unwrap().durable);
}

fn keys(db: &Db) -> Vec<Vec<u8>> {
    let snap = db.snapshot().unwrap();
    let tree = snap.tree("a").unwrap().unwrap();
    tree.iter().unwrap().map(|r| r.unwrap().0.into_vec()).collect()
}

#[test]
fn rollback_reports_journal_commits_and_replays_none() {
    let dev = SimDevice::new(32 << 20, 4096, 3);
    let db = Db::create_on(Box::new(dev.clone()), opts()).unwrap();
    insert(&db, b"old");
    db.flush().unwrap();
    insert(&db, b"newest");
    db.flush().unwrap();
    for key in [b"j1", b"j2", b"j3"] {
        insert(&db, key); // journal only: no checkpoint after them
    }
    let image = dev.crash();
    drop(db);
    let found = read_superblocks(&image).unwrap();
    let catalog = found.copies[0].1.catalog_root().address();
    image.flip_bit(catalog * 4096 + 100, 3);
    assert!(Db::open_on(Box::new(image.clone()), opts()).is_err(), "the catalog is rotten");

    let check = check_device(Box::new(image.clone()), &mut |_| {}).unwrap();
    let plan = plan_rollback(Box::new(image.clone()), &check).unwrap().expect("a rollback");
    assert_eq!(plan.journal.records, 3, "{plan:?}");
    assert_eq!(plan.catalog_bad_blocks, 1, "{plan:?}");
    assert!(plan.trees.iter().all(|t| t.discarded.is_none()), "{plan:?}");
    assert_eq!(plan.trees.iter().map(|t| t.kept).collect::<Vec<_>>(), [Some(1)], "{plan:?}");
    let before = image.write_count();
    assert!(plan_rollback(Box::new(image.clone()), &check).is_ok());
    assert_eq!(image.write_count(), before, "planning writes nothing");

    roll_back(&image, &check, &plan).unwrap();
    let db = Db::open_on(Box::new(image.clone()), opts()).unwrap();
    assert_eq!(db.stats().records_replayed, 0);
    assert_eq!(keys(&db), [b"old".to_vec()]);
    insert(&db, b"after");
    let crashed = image.crash();
    drop(db);
    let db = Db::open_on(Box::new(crashed), opts()).unwrap();
    assert_eq!(keys(&db), [b"after".to_vec(), b"old".to_vec()]);
    assert!(db.check().unwrap().is_ok());
}
