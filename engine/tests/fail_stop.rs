//! A panic inside the engine makes the handle fail-stop (issue 12): later writes, flushes and
//! checks get `Error::Poisoned` instead of building on a half-changed writer, nothing hangs,
//! snapshots keep reading what was published, and the next open recovers the last durable
//! commit. The panics come from `arbor::fault` points, armed on the test's own thread.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use arbor::fault::{arm_panic, disarm, FaultPoint};
use arbor::io::SimDevice;
use arbor::{Db, Error, WriteTree};
use common::small_opts;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// Commits `value` under keys `keys` of tree `t` (one Immediate commit).
fn commit(db: &Db, keys: std::ops::Range<u32>, value: &[u8]) {
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in keys {
        t.insert(key(i), value).unwrap();
    }
    tx.commit().unwrap();
}

/// Two acknowledged commits: keys 0..1000 hold "one", 1000..3000 hold "two"; checkpointed,
/// so the next transaction copies the blocks it changes (and frees the old ones at commit).
fn two_commits() -> (SimDevice, Db) {
    let dev = SimDevice::new(64 << 20, 4096, 31);
    let opts = arbor::Options { checkpoint_interval: None, ..small_opts() };
    let db = Db::create_on(Box::new(dev.clone()), opts).unwrap();
    commit(&db, 0..2000, b"one");
    commit(&db, 1000..3000, b"two");
    db.flush().unwrap();
    (dev, db)
}

fn expect_poisoned<T: std::fmt::Debug>(what: &str, r: arbor::Result<T>) {
    match r {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("{what}: expected Error::Poisoned, got {other:?}"),
    }
}

/// Everything a fail-stop handle must refuse, without panicking or hanging; then drop it.
fn expect_fail_stop(db: Db) {
    expect_poisoned("begin_write", db.begin_write().map(|_| ()));
    expect_poisoned("flush", db.flush());
    expect_poisoned("check", db.check().map(|r| r.is_ok()));
    let stats = db.stats();
    assert!(stats.generation_durable > 0, "{stats:?}");
    let msg = db.begin_write().map(|_| ()).unwrap_err().to_string();
    assert!(msg.contains("panic") && msg.contains("reopened"), "{msg}");
    drop(db);
}

/// Reopens after a power loss: a clean store whose tree `t` still has its 3000 keys, for
/// `verify` to read.
fn reopen_after_crash(dev: &SimDevice, verify: impl FnOnce(&WriteTree<'_, '_>)) {
    let db = Db::open_on(Box::new(dev.crash()), small_opts()).unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let tx = db.begin_write().unwrap();
    let t = tx.tree("t").unwrap();
    assert_eq!(t.len().unwrap(), 3000);
    verify(&t);
}

/// Reopens after a power loss: a clean store holding the two acknowledged commits, and the
/// panicked transaction's keys wholly or not at all.
fn expect_recovered(dev: &SimDevice, panicked: &[u8]) {
    reopen_after_crash(dev, |t| {
        let landed = t.get(key(0)).unwrap().as_deref() == Some(panicked);
        for i in (0..3000u32).step_by(7) {
            let acked: &[u8] = if i < 1000 { b"one" } else { b"two" };
            let want = if landed { panicked } else { acked };
            assert_eq!(t.get(key(i)).unwrap().as_deref(), Some(want), "key {i}");
        }
    });
}

/// The allocator panics in the middle of a commit (while it applies the commit's frees, the
/// writer held): the handle refuses everything after, and reopening recovers.
#[test]
fn a_panic_inside_a_commit_makes_the_handle_fail_stop() {
    let (dev, db) = two_commits();
    let snap = db.snapshot().unwrap();
    // Replacing committed keys only defers frees: the first allocator free is the commit's.
    arm_panic(FaultPoint::AllocatorFree);
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    for i in 0..3000u32 {
        t.insert(key(i), b"three").unwrap();
    }
    let outcome = catch_unwind(AssertUnwindSafe(move || tx.commit()));
    disarm();
    assert!(outcome.is_err(), "the commit panicked: {outcome:?}");

    // Snapshots, old and new, read what was published before the panic.
    let new_snap = db.snapshot().unwrap();
    for s in [&snap, &new_snap] {
        let t = s.tree("t").unwrap().unwrap();
        assert_eq!(t.len().unwrap(), 3000);
        assert_eq!(t.get(key(10)).unwrap().map(Vec::from), Some(b"one".to_vec()));
        assert_eq!(t.get(key(1500)).unwrap().map(Vec::from), Some(b"two".to_vec()));
    }
    drop((snap, new_snap));
    expect_fail_stop(db);
    expect_recovered(&dev, b"three");
}

/// A checkpoint leader panics after writing its generation, before the flush (no engine
/// lock is held there): its checkpoint must end as failed, or every later commit and
/// `flush` would wait for it forever.
#[test]
fn a_panic_in_a_checkpoint_fails_the_handle_instead_of_hanging() {
    let (dev, db) = two_commits();
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(key(0), b"three").unwrap();
    tx.commit().unwrap();
    arm_panic(FaultPoint::WriteOut);
    let outcome = catch_unwind(AssertUnwindSafe(|| db.flush()));
    disarm();
    assert!(outcome.is_err(), "the commit panicked: {outcome:?}");
    expect_fail_stop(db);
    reopen_after_crash(&dev, |t| {
        let first = t.get(key(0)).unwrap();
        assert_eq!(first.as_deref(), Some(b"three".as_slice()), "the commit was acknowledged");
        assert_eq!(t.get(key(1)).unwrap(), Some(b"one".to_vec()));
        assert_eq!(t.get(key(2999)).unwrap(), Some(b"two".to_vec()));
    });
}

/// A journal leader panics after writing its batch, before the flush (no engine lock is
/// held there): the batch must end as failed — the commit is not acknowledged, later
/// commits get `Poisoned` instead of waiting for a flush that never comes.
#[test]
fn a_panic_in_a_journal_write_fails_the_handle_instead_of_hanging() {
    let (dev, db) = two_commits();
    arm_panic(FaultPoint::JournalWrite);
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(key(0), b"three").unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(move || tx.commit()));
    disarm();
    assert!(outcome.is_err(), "the commit panicked: {outcome:?}");
    expect_fail_stop(db);
    reopen_after_crash(&dev, |t| {
        let first = t.get(key(0)).unwrap();
        assert!(matches!(first.as_deref(), Some(b"one" | b"three")), "{first:?}");
        assert_eq!(t.get(key(2999)).unwrap(), Some(b"two".to_vec()));
    });
}

/// An insert panics half-way and the caller catches the panic but keeps the transaction:
/// the transaction has ended (it must not commit a half-done insert) and the handle is
/// fail-stop.
#[test]
fn a_panic_caught_inside_a_call_ends_the_transaction() {
    let (dev, db) = two_commits();
    let tx = db.begin_write().unwrap();
    let mut t = tx.tree("t").unwrap();
    t.insert(key(5), b"three").unwrap();
    arm_panic(FaultPoint::TreeInsert);
    let outcome = catch_unwind(AssertUnwindSafe(|| t.insert(key(6), b"three")));
    disarm();
    assert!(outcome.is_err(), "the insert panicked: {outcome:?}");
    expect_poisoned("insert after the panic", t.insert(key(7), b"three"));
    expect_poisoned("get after the panic", t.get(key(7)));
    expect_poisoned("commit after the panic", tx.commit());
    expect_fail_stop(db);
    expect_recovered(&dev, b"three");
}

/// A panic in the caller's own code while a transaction is open (no engine call running)
/// aborts the transaction like a drop; the handle stays writable and nothing of it remains.
#[test]
fn a_panic_in_the_callers_code_only_aborts_the_transaction() {
    let (_dev, db) = two_commits();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("t").unwrap();
        t.insert(key(5000), b"lost").unwrap();
        t.remove(key(1)).unwrap();
        panic!("the caller's own bug");
    }));
    assert!(outcome.is_err());
    let tx = db.begin_write().expect("the handle stays writable");
    let mut t = tx.tree("t").unwrap();
    assert_eq!(t.get(key(5000)).unwrap(), None, "the panicked transaction was aborted");
    assert_eq!(t.get(key(1)).unwrap(), Some(b"one".to_vec()));
    t.insert(key(6000), b"kept").unwrap();
    tx.commit().unwrap();
    assert!(db.check().unwrap().is_ok());
}
