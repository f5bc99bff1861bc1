//! The memory pass's stores (`arbor_testkit::store` with `ARBOR_TEST_STORE=memory`): a store
//! named by a path lives in memory, is reopened with its bytes, copies as after a crash,
//! writes nothing to the directory that names it, and is gone with that directory. One
//! test in its own binary: it sets the environment variable for the whole process.

use arbor::{Db, Error, Options};
use arbor_testkit::store::{self, Backing, STORE_ENV};

fn put(db: &Db, key: &[u8]) {
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(key, b"v").unwrap();
    tx.commit().unwrap();
}

fn has(db: &Db, key: &[u8]) -> bool {
    let tree = db.snapshot().unwrap().tree("t").unwrap().unwrap();
    tree.get(key).unwrap().is_some()
}

#[test]
fn memory_stores_are_named_by_paths() {
    std::env::set_var(STORE_ENV, "memory");
    assert_eq!(store::backing(), Backing::Memory);
    let dir = arbor_testkit::temp_dir!();
    let (path, crashed) = (dir.path().join("s"), dir.path().join("crashed"));
    let not_found = std::io::ErrorKind::NotFound;
    let missing = store::open(&path, Options::default());
    assert!(matches!(missing, Err(Error::Io { source, .. }) if source.kind() == not_found));
    let db = store::create(&path, Options::default()).unwrap();
    assert!(db.stats().device.starts_with("memory"), "{}", db.stats().device);
    put(&db, b"before");
    store::crash_image(&path, &crashed);
    put(&db, b"after");
    drop(db);
    let reopened = store::open(&path, Options::default()).unwrap();
    assert!(has(&reopened, b"before") && has(&reopened, b"after"));
    let image = store::open(&crashed, Options::default()).unwrap();
    assert!(has(&image, b"before") && !has(&image, b"after"), "the image is of its time");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "files were written");
    drop((reopened, image, dir));
    let gone = store::open(&path, Options::default());
    assert!(matches!(gone, Err(Error::Io { source, .. }) if source.kind() == not_found));
}
