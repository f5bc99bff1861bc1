//! The single writer's state below the tree: the open generation's dirty blocks and their
//! logged edits, the transaction scratch, what outstanding snapshots still need (retention)
//! and its bound, and early write-back.

pub(crate) mod bound;
mod dirty;
pub(crate) mod retention;
mod writeback;

pub(crate) use dirty::*;
