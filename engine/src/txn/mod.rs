//! Transactions: the write transaction (`WriteTxn`, `WriteTree` and its operations,
//! savepoints), read-only snapshots, typed trees over both, and copying a snapshot into
//! another store (backup).

pub(crate) mod backup;
pub(crate) mod checkpointer;
pub(crate) mod guard;
mod publish;
pub(crate) mod replay;
mod shared;
pub(crate) mod snapshot;
pub(crate) mod typed;
pub(crate) mod write;
pub(crate) mod write_ops;
pub(crate) mod write_tree;

pub(crate) use shared::Shared;
