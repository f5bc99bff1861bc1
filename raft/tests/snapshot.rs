//! Raft snapshots: a build sees the state of the moment openraft asked for the builder even
//! while later batches are applied; an install replaces the whole map; what an interrupted
//! install leaves is deleted at the next open.

use arbor_raft::{open, KvPair, Request, StateMachine, StoreOptions, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload, RaftSnapshotBuilder};

fn put(index: u64, key: &str, value: &str) -> Entry<TypeConfig> {
    let req = Request::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() };
    Entry { log_id: log_id(1, 1, index), payload: EntryPayload::Normal(req) }
}

/// Applies puts `first..first + count` of keys `k-<i % 500>` with values tagged `tag`.
async fn apply_puts(sm: &mut StateMachine, first: u64, count: u64, tag: &str) {
    let entries: Vec<_> = (first..first + count)
        .map(|i| put(i, &format!("k-{:03}", i % 500), &format!("{tag}{i}")))
        .collect();
    for batch in entries.chunks(100) {
        sm.apply(batch.to_vec()).await.expect("apply");
    }
}

fn store(dir: &tempfile::TempDir, name: &str) -> (arbor_raft::LogStore, StateMachine) {
    store_with(dir, name, arbor_raft::MODLOG_MAX_BYTES)
}

fn store_with(
    dir: &tempfile::TempDir,
    name: &str,
    modlog_max_bytes: u64,
) -> (arbor_raft::LogStore, StateMachine) {
    let engine = arbor::Options {
        file_initial_bytes: 8 << 20,
        modlog_max_bytes,
        ..StoreOptions::default().engine
    };
    let opts = StoreOptions { engine, ..StoreOptions::default() };
    open(&dir.path().join(name), opts).expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_keeps_its_view_while_applies_go_on_and_install_replaces_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = store(&dir, "leader.arbor");
    apply_puts(&mut leader, 1, 2000, "old").await;
    let at_build: Vec<KvPair> = leader.reader().dump().unwrap().1;
    let mut builder = leader.get_snapshot_builder().await;
    // Every key is overwritten after the builder's view was taken.
    apply_puts(&mut leader, 2001, 1000, "new").await;
    let snap = builder.build_snapshot().await.expect("build");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1, 2000)));

    let (_log_f, mut follower) = store(&dir, "follower.arbor");
    apply_puts(&mut follower, 1, 10, "stale").await;
    follower.apply([put(11, "only-on-follower", "x")]).await.unwrap();
    let mut data = follower.begin_receiving_snapshot().await.unwrap();
    *data = *snap.snapshot;
    follower.install_snapshot(&snap.meta, data).await.expect("install");

    let (applied, pairs) = follower.reader().dump().unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 2000)));
    assert_eq!(pairs.len(), 500);
    assert!(pairs == at_build, "the installed map is the map at the build");
    let current = follower.get_current_snapshot().await.unwrap().expect("kept as current");
    assert_eq!(current.meta, snap.meta);
}

#[tokio::test]
async fn open_deletes_tree_sets_an_interrupted_install_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.arbor");
    {
        let (_log, mut sm) = store(&dir, "node.arbor");
        apply_puts(&mut sm, 1, 10, "v").await;
    }
    {
        // What a crash between an install's loading and its swap leaves: set 1 half loaded.
        let db = arbor::Db::open(&path, arbor::Options::default()).unwrap();
        let tx = db.begin_write().unwrap();
        tx.tree("sm.1.kv").unwrap().insert(b"half", b"loaded").unwrap();
        tx.commit().unwrap();
    }
    let (log, sm) = open(&path, StoreOptions::default()).unwrap();
    let names = log.db().snapshot().unwrap().tree_names().unwrap();
    assert!(!names.iter().any(|n| n.starts_with("sm.1.")), "{names:?}");
    let (applied, pairs) = sm.reader().dump().unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 10)));
    assert_eq!(pairs.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_whose_view_expired_is_retried_from_the_current_state() {
    let dir = tempfile::tempdir().unwrap();
    // A bound so small that the applies after the builder's view expire it.
    let (log, mut sm) = store_with(&dir, "node.arbor", 64 << 10);
    apply_puts(&mut sm, 1, 2000, "old").await;
    let mut builder = sm.get_snapshot_builder().await;
    // Checkpoints between the applies keep the images of blocks the view still reads.
    for first in [2001, 3001, 4001] {
        apply_puts(&mut sm, first, 1000, "new").await;
        log.db().flush().unwrap();
    }
    let snap = builder.build_snapshot().await.expect("a retried build");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1, 5000)), "built from the fresh state");
}
