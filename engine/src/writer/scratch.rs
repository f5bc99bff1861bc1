//! What the open transaction did that `abort` must reverse or `commit` must finish.

use std::collections::BTreeMap;

use arbor_format::ChildPtr;

use crate::writer::TreeMeta;

/// One level of a copy-on-write descent (`tree::write::cow_path`): a dirty node's address
/// and, for internal nodes, the index of the child taken.
pub(crate) struct PathElem {
    pub addr: u64,
    pub idx: usize,
}

/// The open transaction's record of its own changes.
pub(crate) struct TxnScratch {
    /// Runs the transaction allocated (blocks and overflow extents): freed on abort.
    pub allocated: Vec<(u64, u64)>,
    /// Runs the transaction freed, with the generation of the freed block: applied at commit.
    pub frees: Vec<(u64, u64, u64)>,
    /// (address, seq) of every log entry this transaction appended, in order (for abort).
    pub logged: Vec<(u64, u64)>,
    /// Bytes of the log entries this transaction appended (its own undo, capped apart from
    /// snapshot retention, §10.8).
    pub undo_bytes: u64,
    /// Tree metadata as of the transaction's start, restored on abort.
    pub trees_at_start: Option<BTreeMap<Vec<u8>, TreeMeta>>,
    pub catalog_at_start: ChildPtr,
    pub next_tree_id_at_start: u64,
    /// Length of the orphan list when the transaction started (abort drops what it added).
    pub orphans_at_start: usize,
    /// How far early write-back has walked `allocated` (it writes the oldest first).
    pub writeback_cursor: usize,
    /// A change failed part-way (see `WriteTxn::note_failure`): the transaction can only be
    /// aborted.
    pub failed: Option<String>,
    /// The buffer each insert or removal builds its descent's path in, kept between
    /// operations so that none allocates one.
    pub path_buf: Vec<PathElem>,
}

impl Default for TxnScratch {
    fn default() -> TxnScratch {
        TxnScratch {
            allocated: Vec::new(),
            frees: Vec::new(),
            logged: Vec::new(),
            undo_bytes: 0,
            trees_at_start: None,
            catalog_at_start: ChildPtr::NULL,
            next_tree_id_at_start: 0,
            orphans_at_start: 0,
            writeback_cursor: 0,
            failed: None,
            path_buf: Vec::new(),
        }
    }
}
