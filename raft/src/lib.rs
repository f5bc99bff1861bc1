//! Arbor as the storage of an openraft cluster.
//!
//! One Arbor store holds everything a Raft node keeps on disk:
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `raft.log` | log index, u64 big-endian | the entry (bincode) |
//! | `raft.state` | `vote`, `committed`, `purged` | bincode of the vote or log id |
//! | `sm.active` | `set` | the number `n` of the state machine's live tree set, u64 LE |
//! | `sm.<n>.kv` | the application's key | its value |
//! | `sm.<n>.applied` | `last_applied`, `membership` | bincode of the log id / membership |
//!
//! [`LogStore`] implements openraft's `RaftLogStorage`, [`StateMachine`] its
//! `RaftStateMachine`; [`open`] gives both on one store. Raft snapshots are files beside the
//! store, streamed out of an Arbor [`arbor::Snapshot`] while the state machine keeps applying,
//! and installed into a fresh tree set `sm.<n+1>.*` that one transaction swaps in (see
//! `snapshot.rs`). [`mem_cluster`] runs a group of nodes in one process over an in-memory
//! network, for tests and the `cluster` example.
//!
//! The engine's calls block. Those that wait on the device (`Immediate` commits: votes,
//! truncations, appends in the default [`LogSync::Immediate`] mode, a snapshot's swap; and
//! the snapshot files) run on tokio's blocking pool (`spawn_blocking`), so a flush never
//! stalls a runtime thread that drives heartbeats and elections. Those that only publish or
//! read recent blocks (applies, `Durability::None` appends and marks, log reads) run in the
//! calling task: they hold the writer for microseconds, less than two thread switches cost.

mod codec;
mod log_store;
pub mod mem_cluster;
mod snapshot;
mod snapshot_file;
mod state_machine;
mod store;

use openraft::{BasicNode, TokioRuntime};
use serde::{Deserialize, Serialize};

pub use log_store::{LogStore, LogSync};
pub use snapshot::SnapshotBuilder;
pub use state_machine::{KvPair, KvReader, StateMachine};
pub use store::{open, snapshot_dir, StoreOptions, MODLOG_MAX_BYTES};

/// The node id type of the group.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for an Arbor-backed key-value state machine.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// A command the replicated state machine applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sets `key` to `value`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Removes `key`.
    Delete { key: Vec<u8> },
}

/// What applying one log entry produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied; `previous` is the key's value before it (`None` for blank and membership
    /// entries).
    Done { previous: Option<Vec<u8>> },
    /// Every replica refused the command the same way (a key or value over Arbor's limits):
    /// it is in the log, and changed nothing.
    Rejected { reason: String },
}

/// openraft's storage error for this type configuration.
pub type StorageError = openraft::StorageError<NodeId>;
