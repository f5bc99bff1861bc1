//! Transactions: the write transaction (`WriteTxn`, `WriteTree`) and read-only snapshots.

pub(crate) mod snapshot;
pub(crate) mod write;
