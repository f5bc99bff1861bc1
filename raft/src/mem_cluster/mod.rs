//! A replicated key-value service in one process: nodes on their own Arbor stores, talking
//! over an in-memory network ([`Router`]). Used by the `cluster` example and the tests;
//! an application replaces the router with its own transport (openraft's `RaftNetwork`)
//! and keeps the rest.

mod network;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState};

pub use network::{Connection, Router};

use crate::{
    KvReader, LogStore, NodeId, Request, Response, StateMachine, StoreOptions, TypeConfig,
};

/// Errors of the harness: openraft's, the engine's, timeouts.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Attempts at a write that meets a leader change (each waits `RETRY_PAUSE`).
const WRITE_ATTEMPTS_MAX: u32 = 100;
/// Attempts at opening a store that a node just shut down still holds (its storage tasks
/// drop their handles shortly after `Raft::shutdown` returns).
const OPEN_ATTEMPTS_MAX: u32 = 200;
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// One running node.
pub struct Node {
    pub raft: Raft<TypeConfig>,
    /// Reads this node's state machine (possibly behind the leader).
    pub kv: KvReader,
}

/// A group of nodes, each on the store `node-<id>.arbor` in one directory.
pub struct Cluster {
    dir: PathBuf,
    config: Arc<Config>,
    opts: StoreOptions,
    router: Router,
    nodes: BTreeMap<NodeId, Node>,
}

/// Timing suited to nodes in one process: quick elections, small snapshot chunks so a
/// transfer takes several of them.
pub fn local_config() -> Config {
    Config {
        cluster_name: "arbor-raft".into(),
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_max_chunk_size: 256 << 10,
        ..Config::default()
    }
}

impl Cluster {
    /// Starts nodes `ids` in `dir` and makes them one group (the first node initialises it
    /// with all of them); returns once a leader is elected.
    pub async fn start(
        dir: &Path,
        ids: &[NodeId],
        config: Config,
        opts: StoreOptions,
    ) -> Result<Cluster, BoxError> {
        let config = Arc::new(config.validate()?);
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            config,
            opts,
            router: Router::default(),
            nodes: BTreeMap::new(),
        };
        for &id in ids {
            cluster.start_node(id).await?;
        }
        let members: BTreeMap<NodeId, BasicNode> =
            ids.iter().map(|&id| (id, BasicNode::new(format!("in-memory:{id}")))).collect();
        let first = ids.first().ok_or("a cluster needs a node")?;
        cluster.node(*first)?.raft.initialize(members).await?;
        cluster.wait_for_leader(Duration::from_secs(10)).await?;
        Ok(cluster)
    }

    /// The store of node `id`.
    pub fn store_path(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("node-{id}.arbor"))
    }

    /// Starts (or restarts) node `id` on its store and makes it reachable.
    pub async fn start_node(&mut self, id: NodeId) -> Result<(), BoxError> {
        assert!(!self.nodes.contains_key(&id), "node {id} is already running");
        let (log, sm) = open_retrying(&self.store_path(id), &self.opts).await?;
        let kv = sm.reader();
        let raft = Raft::new(id, Arc::clone(&self.config), self.router.clone(), log, sm).await?;
        self.router.add(id, raft.clone());
        self.nodes.insert(id, Node { raft, kv });
        Ok(())
    }

    /// Stops node `id` as a crash would look to the others: unreachable at once, then shut
    /// down, its store closed.
    pub async fn kill(&mut self, id: NodeId) -> Result<(), BoxError> {
        self.router.remove(id);
        if let Some(node) = self.nodes.remove(&id) {
            node.raft.shutdown().await?;
        }
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(mut self) -> Result<(), BoxError> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id).await?;
        }
        Ok(())
    }

    pub fn node(&self, id: NodeId) -> Result<&Node, BoxError> {
        self.nodes.get(&id).ok_or_else(|| format!("node {id} is not running").into())
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The running node that believes it leads, of the newest term (a node restarted from
    /// its store can report a leader of a term long over until it hears from the group).
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| {
                let m = n.raft.metrics().borrow().clone();
                (m.state == ServerState::Leader && m.current_leader == Some(id))
                    .then_some((m.current_term, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, BoxError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(id) = self.leader() {
                return Ok(id);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(format!("no leader within {timeout:?}").into())
    }

    /// Proposes `req` through the leader; returns once it is committed and applied there.
    pub async fn write(&self, req: Request) -> Result<Response, BoxError> {
        for _ in 0..WRITE_ATTEMPTS_MAX {
            let Some(leader) = self.leader() else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            match self.node(leader)?.raft.client_write(req.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err("no leader accepted the write".into())
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<Response, BoxError> {
        self.write(Request::Put { key: key.to_vec(), value: value.to_vec() }).await
    }

    /// A linearizable read: the leader confirms it still leads and waits until it applied
    /// everything committed before the read began, then reads its state machine.
    pub async fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BoxError> {
        let leader = self.leader().ok_or("no leader")?;
        let node = self.node(leader)?;
        node.raft.ensure_linearizable().await?;
        Ok(node.kv.get(key)?)
    }

    /// Waits until every running node applied everything committed when this was called
    /// (as the leader's linearizable read sees it).
    pub async fn wait_all_applied(&self, timeout: Duration) -> Result<(), BoxError> {
        let leader = self.wait_for_leader(timeout).await?;
        let raft = &self.node(leader)?.raft;
        let read = raft.ensure_linearizable().await?;
        let index = read.map(|l| l.index).unwrap_or(0);
        for id in self.running() {
            self.wait_applied(id, index, timeout).await?;
        }
        Ok(())
    }

    /// Waits until node `id` applied the log up to `index`.
    pub async fn wait_applied(
        &self,
        id: NodeId,
        index: u64,
        timeout: Duration,
    ) -> Result<(), BoxError> {
        self.node(id)?
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied")
            .await?;
        Ok(())
    }
}

/// Opens a node's store, waiting while the node's previous incarnation still holds it.
async fn open_retrying(
    path: &Path,
    opts: &StoreOptions,
) -> Result<(LogStore, StateMachine), BoxError> {
    for _ in 0..OPEN_ATTEMPTS_MAX {
        let (p, o) = (path.to_path_buf(), opts.clone());
        match tokio::task::spawn_blocking(move || crate::open(&p, o)).await? {
            Ok(stores) => return Ok(stores),
            Err(arbor::Error::Locked { .. }) => tokio::time::sleep(RETRY_PAUSE).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(format!("{} stayed locked", path.display()).into())
}
