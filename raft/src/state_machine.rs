//! `StateMachine`: openraft's `RaftStateMachine` as a key-value map in Arbor trees.
//!
//! The live tree set `n` (named by `sm.active`) is `sm.<n>.kv`, the application's keys, and
//! `sm.<n>.applied`, its `last_applied` log id and membership. Each applied batch changes
//! both in one transaction, so the map and `last_applied` never disagree after a crash.
//!
//! Applies commit with `Durability::None`: they become durable with the next log append's
//! flush (appends never stop while entries are being applied). A crash can lose the newest
//! applies, never part of one; openraft then applies those entries again from the log,
//! whose entries after `last_applied` are still there: a purge comes after the snapshot that
//! covers its entries, and commit order makes a durable purge imply every earlier apply.

use std::sync::Arc;

use arbor::{Db, Durability};
use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, Entry, EntryPayload, LogId, Snapshot, StoredMembership};

use crate::codec::{applied_tree, blocking, encode, inline, kv_tree, read_value, Subject};
use crate::codec::{KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_SET, TREE_SM_ACTIVE};
use crate::snapshot::{self, SnapshotBuilder, SnapshotFiles};
use crate::{NodeId, Request, Response, StorageError, TypeConfig};

/// The state machine of one node.
pub struct StateMachine {
    db: Arc<Db>,
    /// The live tree set; only `install_snapshot` changes it.
    set: u64,
    files: Arc<SnapshotFiles>,
}

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Reads the state machine's map as of the last apply, from any thread.
#[derive(Clone)]
pub struct KvReader {
    db: Arc<Db>,
}

impl KvReader {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> arbor::Result<Option<Vec<u8>>> {
        let snap = self.db.snapshot()?;
        let set = active_set(&snap)?;
        match snap.tree(&kv_tree(set))? {
            Some(t) => Ok(t.get(key)?.map(arbor::Guard::into_vec)),
            None => Ok(None),
        }
    }

    /// Every key and value, in key order, with the `last_applied` they reflect.
    pub fn dump(&self) -> arbor::Result<(Option<LogId<NodeId>>, Vec<KvPair>)> {
        let snap = self.db.snapshot()?;
        let set = active_set(&snap)?;
        let (applied, _) = applied_state(&snap, set)?;
        let pairs = match snap.tree(&kv_tree(set))? {
            Some(t) => {
                let owned = t.iter()?.map(|r| r.map(|(k, v)| (k.into_vec(), v.into_vec())));
                owned.collect::<arbor::Result<_>>()?
            }
            None => Vec::new(),
        };
        Ok((applied, pairs))
    }
}

/// The live tree set as of `snap` (0 before the first `open` recorded one).
pub(crate) fn active_set(snap: &arbor::Snapshot) -> arbor::Result<u64> {
    Ok(read_value::<u64>(snap, TREE_SM_ACTIVE, KEY_SET)?.unwrap_or(0))
}

pub(crate) type Applied = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// `last_applied` and membership of tree set `set` as of `snap`.
pub(crate) fn applied_state(snap: &arbor::Snapshot, set: u64) -> arbor::Result<Applied> {
    let tree = applied_tree(set);
    // Stored as an `Option` (a snapshot of an empty state machine has none).
    let last: Option<Option<LogId<NodeId>>> = read_value(snap, &tree, KEY_LAST_APPLIED)?;
    let last = last.flatten();
    let membership = read_value(snap, &tree, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((last, membership))
}

/// Applies one command to the map. Commands over Arbor's limits are refused the same way on
/// every replica, before the tree changes.
fn apply_request(kv: &mut arbor::WriteTree<'_, '_>, req: &Request) -> arbor::Result<Response> {
    let result = match req {
        Request::Put { key, value } => kv.insert(key, value),
        Request::Delete { key } => kv.remove(key),
    };
    match result {
        Ok(previous) => Ok(Response::Done { previous }),
        Err(e @ (arbor::Error::KeyTooLarge { .. } | arbor::Error::ValueTooLarge { .. })) => {
            Ok(Response::Rejected { reason: e.to_string() })
        }
        Err(e) => Err(e),
    }
}

/// Applies a batch of committed entries and records `last_applied` (and the newest
/// membership) in the same transaction.
fn apply_batch(db: &Db, set: u64, entries: &[Entry<TypeConfig>]) -> arbor::Result<Vec<Response>> {
    let Some(last) = entries.last().map(|e| e.log_id) else { return Ok(Vec::new()) };
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::None);
    let mut responses = Vec::with_capacity(entries.len());
    let mut membership = None;
    {
        let mut kv = tx.tree(&kv_tree(set))?;
        for e in entries {
            let response = match &e.payload {
                EntryPayload::Blank => Response::Done { previous: None },
                EntryPayload::Normal(req) => apply_request(&mut kv, req)?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                    Response::Done { previous: None }
                }
            };
            responses.push(response);
        }
    }
    {
        let mut applied = tx.tree(&applied_tree(set))?;
        applied.insert(KEY_LAST_APPLIED, &encode(&Some(last))?)?;
        if let Some(m) = membership {
            applied.insert(KEY_MEMBERSHIP, &encode(&m)?)?;
        }
    }
    tx.commit()?;
    debug_assert_eq!(responses.len(), entries.len());
    Ok(responses)
}

impl StateMachine {
    pub(crate) fn new(db: Arc<Db>, set: u64, files: Arc<SnapshotFiles>) -> StateMachine {
        StateMachine { db, set, files }
    }

    /// A reader of the map, usable after the state machine moved into `Raft::new`.
    pub fn reader(&self) -> KvReader {
        KvReader { db: Arc::clone(&self.db) }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<Applied, StorageError> {
        inline(Subject::ReadStateMachine, || applied_state(&self.db.snapshot()?, self.set))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        inline(Subject::WriteStateMachine, || apply_batch(&self.db, self.set, &entries))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Taken here, between two applies: the builder's view is exactly the applied state,
        // and it keeps it while later batches are applied.
        SnapshotBuilder::new(Arc::clone(&self.db), Arc::clone(&self.files))
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let files = Arc::clone(&self.files);
        let file = blocking(Subject::WriteSnapshot, move || Ok(files.receiving_file()?)).await?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &snapshot::Meta,
        data: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut data = *data;
        // Waits for openraft's last chunk write to reach the file, and reports its error.
        tokio::io::AsyncWriteExt::flush(&mut data)
            .await
            .map_err(|e| Subject::WriteSnapshot.error(&e))?;
        let data = data.into_std().await;
        let (db, files, meta, set) =
            (Arc::clone(&self.db), Arc::clone(&self.files), meta.clone(), self.set);
        let install = move || snapshot::install(&db, &files, set, &meta, data);
        self.set = blocking(Subject::WriteSnapshot, install).await?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let files = Arc::clone(&self.files);
        let current = blocking(Subject::ReadSnapshot, move || Ok(files.open_current()?)).await?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
