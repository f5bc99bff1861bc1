//! `LogStore`: openraft's log storage (`RaftLogStorage`, `RaftLogReader`) on Arbor trees.
//!
//! The log is tree `raft.log` (index → entry); the vote and the committed and purged marks
//! are tree `raft.state`. Truncation and purge remove a key range inside one transaction, the
//! purge together with its mark, so a crash never shows a purged mark without the purge or a
//! hole in the log.
//!
//! Durability of appends ([`LogSync`]): openraft counts the leader's own flush towards the
//! quorum only once `LogFlushed` fires, and a follower answers the leader only then, so no
//! entry is acknowledged before a device flush covers it in either mode.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Weak};

use arbor::{Db, Durability, WriteTree};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, Vote};

use crate::codec::{blocking, decode, encode, index_key, inline, read_value, Subject};
use crate::codec::{KEY_COMMITTED, KEY_PURGED, KEY_VOTE, TREE_LOG, TREE_STATE};
use crate::{NodeId, StorageError, TypeConfig};

/// How an append becomes durable. Both fire openraft's callback only after a device flush
/// covers the entries; they differ in what waits for the flush. The `cluster` example
/// measures both (docs/scale-out.md has the figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogSync {
    /// The append commits with `Durability::Immediate` and returns after the flush (commits
    /// of other threads that arrive meanwhile share it). Raft's core waits for the leader's
    /// flush before it replicates, and the client writes that queue up meanwhile travel to
    /// the followers in bigger batches: the higher rate under many concurrent clients.
    #[default]
    Immediate,
    /// The append commits with `Durability::None` (published: readers see the entries when
    /// `append` returns, as openraft requires) and a flusher thread then makes it durable
    /// with `Db::flush` — the same group-commit pipeline an `Immediate` commit waits on —
    /// and fires the callback. The leader's flush overlaps the followers': the lower latency
    /// for one client at a time, but more, smaller replication rounds under many clients.
    Pipelined,
}

/// Keys removed per step of a range removal (each step collects this many keys first).
const REMOVE_KEYS_PER_STEP: usize = 1024;

/// Callbacks the flusher fires per `Db::flush` at most; more wait for its next flush.
const FLUSH_CALLBACKS_MAX: usize = 4096;

/// The log store of one node. Cheap to clone; clones are its log readers.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    sync: LogSync,
    /// Callbacks of pipelined appends, in append order, for the flusher thread.
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>, sync: LogSync) -> LogStore {
        let (tx, rx) = mpsc::channel();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("arbor-raft-flush".into())
            .spawn(move || flusher(weak, rx))
            .expect("spawning a thread");
        LogStore { db, sync, flusher: tx }
    }

    /// The store this log lives in.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }
}

/// Makes pipelined appends durable in order: one `Db::flush` covers every append whose
/// callback is queued by then (their commits all precede the flush). Holds the store only
/// during a flush, so dropping the last `LogStore` closes the store and ends the thread.
fn flusher(db: Weak<Db>, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < FLUSH_CALLBACKS_MAX {
            match rx.try_recv() {
                Ok(cb) => batch.push(cb),
                Err(_) => break,
            }
        }
        let result = match db.upgrade() {
            Some(db) => db.flush().map_err(|e| e.to_string()),
            None => Err("the store was closed".to_string()),
        };
        for cb in batch {
            cb.log_io_completed(result.clone().map_err(std::io::Error::other));
        }
    }
}

fn bound_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    b.map(|i| index_key(*i))
}

/// Entries of `range` from the last commit, in index order.
fn read_entries(
    db: &Db,
    start: Bound<[u8; 8]>,
    end: Bound<[u8; 8]>,
) -> Result<Vec<Entry<TypeConfig>>, arbor::Error> {
    let snap = db.snapshot()?;
    let Some(log) = snap.tree(TREE_LOG)? else { return Ok(Vec::new()) };
    let range = (start.as_ref().map(|k| k.as_slice()), end.as_ref().map(|k| k.as_slice()));
    let mut out = Vec::new();
    for item in log.range(range)? {
        let (_, v) = item?;
        out.push(decode(&v, TREE_LOG)?);
    }
    Ok(out)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = bound_key(range.start_bound());
        let end = bound_key(range.end_bound());
        inline(Subject::ReadLogs, || read_entries(&self.db, start, end))
    }
}

/// Removes every key of `range` from `tree`.
fn remove_range(
    tree: &mut WriteTree<'_, '_>,
    range: (Bound<&[u8]>, Bound<&[u8]>),
) -> arbor::Result<()> {
    // Each step removes at least one key, so the tree's size bounds the steps.
    let steps_max = tree.len()? / REMOVE_KEYS_PER_STEP as u64 + 1;
    for _ in 0..steps_max {
        let keys: Vec<Vec<u8>> = tree
            .range(range)?
            .take(REMOVE_KEYS_PER_STEP)
            .map(|item| item.map(|(k, _)| k))
            .collect::<arbor::Result<_>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        for k in &keys {
            tree.remove(k)?;
        }
    }
    debug_assert!(tree.range(range)?.next().is_none());
    Ok(())
}

/// Writes one value of `raft.state` in its own transaction.
fn put_state(db: &Db, key: &[u8], value: Vec<u8>, durability: Durability) -> arbor::Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(durability);
    tx.tree(TREE_STATE)?.insert(key, &value)?;
    tx.commit()?;
    Ok(())
}

fn log_state(db: &Db) -> arbor::Result<LogState<TypeConfig>> {
    let snap = db.snapshot()?;
    let purged: Option<LogId<NodeId>> = read_value(&snap, TREE_STATE, KEY_PURGED)?;
    let last = match snap.tree(TREE_LOG)? {
        Some(log) => match log.last()? {
            Some((_, v)) => Some(decode::<Entry<TypeConfig>>(&v, TREE_LOG)?.log_id),
            None => None,
        },
        None => None,
    };
    Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
}

fn append_entries(
    db: &Db,
    entries: &[Entry<TypeConfig>],
    durability: Durability,
) -> arbor::Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(durability);
    {
        let mut log = tx.tree(TREE_LOG)?;
        for e in entries {
            log.insert(index_key(e.log_id.index), &encode(e)?)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Removes the entries from `index` on (a conflict with the leader's log).
fn truncate_from(db: &Db, index: u64) -> arbor::Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    let from = index_key(index);
    remove_range(&mut tx.tree(TREE_LOG)?, (Bound::Included(&from[..]), Bound::Unbounded))?;
    tx.commit()?;
    Ok(())
}

/// Removes the entries up to `log_id` and records it as purged, in one transaction.
fn purge_upto(db: &Db, log_id: LogId<NodeId>) -> arbor::Result<()> {
    let mut tx = db.begin_write()?;
    // A purge that a crash loses leaves entries a snapshot already covers: harmless. The
    // next durable commit makes it durable, and no later commit can be durable without it.
    tx.set_durability(Durability::None);
    tx.tree(TREE_STATE)?.insert(KEY_PURGED, &encode(&log_id)?)?;
    let upto = index_key(log_id.index);
    remove_range(&mut tx.tree(TREE_LOG)?, (Bound::Unbounded, Bound::Included(&upto[..])))?;
    tx.commit()?;
    Ok(())
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        inline(Subject::ReadLogs, || log_state(&self.db))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let db = Arc::clone(&self.db);
        let bytes = encode(vote).map_err(|e| Subject::WriteVote.error(&e))?;
        // A vote must be durable before Raft acts on it.
        blocking(Subject::WriteVote, move || put_state(&db, KEY_VOTE, bytes, Durability::Immediate))
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        inline(Subject::ReadVote, || read_value(&self.db.snapshot()?, TREE_STATE, KEY_VOTE))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        // Optional in Raft: a committed mark a crash loses only means re-applying less at
        // start-up; the next durable commit carries it.
        inline(Subject::WriteLogs, || {
            put_state(&self.db, KEY_COMMITTED, encode(&committed)?, Durability::None)
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        inline(Subject::ReadLogs, || {
            let v: Option<Option<LogId<NodeId>>> =
                read_value(&self.db.snapshot()?, TREE_STATE, KEY_COMMITTED)?;
            Ok(v.flatten())
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        match self.sync {
            LogSync::Immediate => {
                let db = Arc::clone(&self.db);
                let append = move || append_entries(&db, &entries, Durability::Immediate);
                blocking(Subject::WriteLogs, append).await?;
                callback.log_io_completed(Ok(()));
            }
            LogSync::Pipelined => {
                inline(Subject::WriteLogs, || {
                    append_entries(&self.db, &entries, Durability::None)
                })?;
                if let Err(mpsc::SendError(cb)) = self.flusher.send(callback) {
                    cb.log_io_completed(Err(std::io::Error::other("the flusher thread ended")));
                }
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let db = Arc::clone(&self.db);
        blocking(Subject::WriteLogs, move || truncate_from(&db, log_id.index)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        inline(Subject::WriteLogs, || purge_upto(&self.db, log_id))
    }
}
