use arbor::io::SimDevice;
use arbor::{Db, Options};
use arbor_testkit::store;

#[test]
fn smoke_sim() {
    let dev = SimDevice::new(64 << 20, 4096, 1);
    let db = Db::create_on(Box::new(dev.clone()), Options::default()).unwrap();
    {
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("users").unwrap();
        for i in 0..5000u32 {
            t.insert(format!("key{i:08}").as_bytes(), format!("value{i}").as_bytes()).unwrap();
        }
        assert_eq!(t.get(b"key00000042").unwrap(), Some(b"value42".to_vec()));
        tx.commit().unwrap();
    }
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    drop(db);
    let db = Db::open_on(Box::new(dev.crash()), Options::default()).unwrap();
    let tx = db.begin_write().unwrap();
    let t = tx.tree("users").unwrap();
    assert_eq!(t.len().unwrap(), 5000);
    assert_eq!(t.get(b"key00004999").unwrap(), Some(b"value4999".to_vec()));
    let all: Vec<_> = t.iter().unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(all.len(), 5000);
    let rev: Vec<_> = t.iter().unwrap().rev().map(|r| r.unwrap().0).collect();
    assert_eq!(rev.len(), 5000);
    assert!(rev.windows(2).all(|w| w[0] > w[1]));
}

/// A store at a path, closed and reopened: a file, or in the memory pass a memory device
/// (`arbor_testkit::store`), which this test also checks is what the store runs on.
#[test]
fn smoke_path() {
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("s.arbor");
    let db = store::create(&path, Options::default()).unwrap();
    let device = db.stats().device;
    assert_eq!(device.starts_with("memory"), store::in_memory(), "{device}");
    let tx = db.begin_write().unwrap();
    tx.tree("a").unwrap().insert(b"x", b"y").unwrap();
    tx.commit().unwrap();
    drop(db);
    let db = store::open(&path, Options::default()).unwrap();
    let tx = db.begin_write().unwrap();
    assert_eq!(tx.tree("a").unwrap().get(b"x").unwrap(), Some(b"y".to_vec()));
}
