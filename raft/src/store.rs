//! Opening one Arbor store as a node's log store and state machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbor::{Db, Durability, Options};

use crate::codec::{encode, tree_set_of, KEY_SET, TREE_LOG, TREE_SM_ACTIVE, TREE_STATE};
use crate::snapshot::SnapshotFiles;
use crate::state_machine::active_set;
use crate::{LogStore, LogSync, StateMachine};

/// How [`open`] opens the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The engine's options.
    pub engine: Options,
    /// How log appends become durable.
    pub log_sync: LogSync,
}

/// Mod-log bound of the store: a snapshot build reads the whole state machine while applies
/// go on, and the history it pins grows with the applies meanwhile. Four times Arbor's
/// default, so that a build under a steady writer is rarely expired (an expired build is
/// retried from a fresh snapshot).
pub const MODLOG_MAX_BYTES: u64 = 256 << 20;

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            engine: Options { modlog_max_bytes: MODLOG_MAX_BYTES, ..Options::default() },
            log_sync: LogSync::default(),
        }
    }
}

/// Where the Raft snapshots of the store at `path` live: `<path>.snapshots/`.
pub fn snapshot_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".snapshots");
    PathBuf::from(name)
}

/// Opens the store at `path` (creating it if the file is missing or empty) as one node's
/// log store and state machine. Deletes what an interrupted snapshot install or build left.
pub fn open(path: &Path, opts: StoreOptions) -> arbor::Result<(LogStore, StateMachine)> {
    let exists = std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
    let db = if exists { Db::open(path, opts.engine)? } else { Db::create(path, opts.engine)? };
    let set = prepare(&db)?;
    let files = Arc::new(SnapshotFiles::open(&snapshot_dir(path))?);
    let db = Arc::new(db);
    let log = LogStore::new(Arc::clone(&db), opts.log_sync);
    Ok((log, StateMachine::new(db, set, files)))
}

/// Creates the trees, records the live set, deletes every other set; returns the live one.
fn prepare(db: &Db) -> arbor::Result<u64> {
    let set = active_set(&db.snapshot()?)?;
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    tx.tree(TREE_LOG)?;
    tx.tree(TREE_STATE)?;
    tx.tree(TREE_SM_ACTIVE)?.insert(KEY_SET, &encode(&set)?)?;
    for name in tx.tree_names()? {
        if tree_set_of(&name).is_some_and(|s| s != set) {
            tx.delete_tree(&name)?;
        }
    }
    tx.commit()?;
    Ok(set)
}
