//! Transactions: the write transaction (`WriteTxn`, `WriteTree`) and read-only snapshots.

mod publish;
mod shared;
pub(crate) mod snapshot;
pub(crate) mod write;

pub(crate) use shared::Shared;
