//! A 3-node group in one process: a follower is killed, misses writes that the leader then
//! compacts into a snapshot and purges from its log, and on restart receives the snapshot;
//! then the leader is killed and restarted. Every node ends with the same map, and the map
//! is what the writes say it should be.

use std::collections::BTreeMap;
use std::time::Duration;

use arbor_raft::mem_cluster::{local_config, BoxError, Cluster};
use arbor_raft::{LogSync, NodeId, Request, Response, StoreOptions};
use openraft::SnapshotPolicy;

const TIMEOUT: Duration = Duration::from_secs(30);

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Writes keys `range` (every seventh one deleted again) through the leader, and the same
/// into `model`.
async fn write_keys(
    c: &Cluster,
    model: &mut Model,
    range: std::ops::Range<u32>,
    tag: &str,
) -> Result<(), BoxError> {
    for i in range {
        let key = format!("key-{i:05}").into_bytes();
        let value = format!("{tag}-{i}").into_bytes();
        c.put(&key, &value).await?;
        model.insert(key.clone(), value);
        if i % 7 == 0 {
            let r = c.write(Request::Delete { key: key.clone() }).await?;
            assert!(matches!(r, Response::Done { previous: Some(_) }));
            model.remove(&key);
        }
    }
    Ok(())
}

fn last_applied(c: &Cluster, id: NodeId) -> Result<u64, BoxError> {
    let m = c.node(id)?.raft.metrics().borrow().clone();
    Ok(m.last_applied.map(|l| l.index).unwrap_or(0))
}

/// Waits until every running node applied every committed write, then checks that each
/// node's map equals `model`.
async fn assert_converged(c: &Cluster, model: &Model) -> Result<(), BoxError> {
    c.wait_all_applied(TIMEOUT).await?;
    for id in c.running() {
        let (_, pairs) = c.node(id)?.kv.dump()?;
        let got: Model = pairs.into_iter().collect();
        assert_eq!(got.len(), model.len(), "node {id}: key count");
        assert!(got == *model, "node {id}: map differs from the writes");
    }
    Ok(())
}

/// Builds a snapshot on `leader` and purges its log up to it.
async fn compact(c: &Cluster, leader: NodeId) -> Result<u64, BoxError> {
    let raft = &c.node(leader)?.raft;
    let applied = last_applied(c, leader)?;
    raft.trigger().snapshot().await?;
    raft.wait(Some(TIMEOUT))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot built")
        .await?;
    raft.trigger().purge_log(applied).await?;
    raft.wait(Some(TIMEOUT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= applied), "purged")
        .await?;
    Ok(applied)
}

async fn scenario(dir: &std::path::Path, log_sync: LogSync) -> Result<(), BoxError> {
    let config = local_config();
    // Snapshots only when the test asks, and a purge keeps nothing it covers, so the
    // restarted follower cannot catch up from the log.
    let config = openraft::Config {
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        snapshot_max_chunk_size: 4 << 10,
        ..config
    };
    let opts = StoreOptions { log_sync, ..StoreOptions::default() };
    let mut c = Cluster::start(dir, &[1, 2, 3], config, opts).await?;
    let mut model = Model::new();
    write_keys(&c, &mut model, 0..100, "a").await?;
    assert_eq!(c.read(b"key-00001").await?, Some(b"a-1".to_vec()));
    assert_converged(&c, &model).await?;

    let leader = c.wait_for_leader(TIMEOUT).await?;
    let follower = *c.running().iter().find(|&&id| id != leader).expect("a follower");
    c.kill(follower).await?;
    write_keys(&c, &mut model, 50..400, "b").await?;
    let purged = compact(&c, leader).await?;
    write_keys(&c, &mut model, 390..420, "c").await?;

    c.start_node(follower).await?;
    assert_converged(&c, &model).await?;
    let snap = c.node(follower)?.raft.metrics().borrow().snapshot;
    assert!(snap.is_some_and(|s| s.index >= purged), "follower {follower} installed no snapshot");

    let leader = c.wait_for_leader(TIMEOUT).await?;
    c.kill(leader).await?;
    write_keys(&c, &mut model, 420..450, "d").await?;
    c.start_node(leader).await?;
    assert_converged(&c, &model).await?;
    assert_eq!(c.read(b"key-00449").await?, Some(b"d-449".to_vec()));
    c.shutdown().await
}

fn run(log_sync: LogSync) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(scenario(dir.path(), log_sync)).expect("the scenario");
}

#[test]
fn three_nodes_survive_restarts_and_a_snapshot_install() {
    run(LogSync::Immediate);
}

#[test]
fn three_nodes_survive_restarts_and_a_snapshot_install_pipelined_appends() {
    run(LogSync::Pipelined);
}
