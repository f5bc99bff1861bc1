//! Tree names, key and value encodings, and the bridge from blocking engine calls to
//! openraft's async storage errors.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StorageError;

/// The log: index (big-endian, so key order is index order) → entry.
pub(crate) const TREE_LOG: &str = "raft.log";
/// Vote, committed and purged marks.
pub(crate) const TREE_STATE: &str = "raft.state";
/// Which tree set holds the state machine.
pub(crate) const TREE_SM_ACTIVE: &str = "sm.active";

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_PURGED: &[u8] = b"purged";
pub(crate) const KEY_SET: &[u8] = b"set";
pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";

/// Prefix of every state machine tree; `sm.<n>.` is set `n`'s.
pub(crate) const SM_PREFIX: &str = "sm.";

/// The application's keys and values in tree set `set`.
pub(crate) fn kv_tree(set: u64) -> String {
    format!("{SM_PREFIX}{set}.kv")
}

/// `last_applied` and `membership` of tree set `set`.
pub(crate) fn applied_tree(set: u64) -> String {
    format!("{SM_PREFIX}{set}.applied")
}

/// The tree set a state machine tree belongs to, if `name` is one (`sm.<n>.kv`, …).
pub(crate) fn tree_set_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(SM_PREFIX)?;
    let (set, _) = rest.split_once('.')?;
    set.parse().ok()
}

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, arbor::Error> {
    bincode::serialize(value).map_err(|e| arbor::Error::InvalidInput(format!("encode: {e}")))
}

/// Decodes bytes this crate wrote to the store; a failure means the store holds bytes this
/// code did not write there, which Arbor reports as corruption.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, arbor::Error> {
    bincode::deserialize(bytes)
        .map_err(|e| arbor::Error::Corrupt { addr: 0, reason: format!("{what}: {e}") })
}

/// Reads `key` from `tree` of the store's last commit.
pub(crate) fn read_value<T: DeserializeOwned>(
    snap: &arbor::Snapshot,
    tree: &str,
    key: &[u8],
) -> Result<Option<T>, arbor::Error> {
    let Some(t) = snap.tree(tree)? else { return Ok(None) };
    match t.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes, tree)?)),
        None => Ok(None),
    }
}

/// Runs an engine call that only touches memory in the calling task: it publishes or reads
/// (`Durability::None` commits, snapshot reads of recent blocks), holds the writer for
/// microseconds, and waits on no device flush. Handing it to the blocking pool would cost
/// two thread switches per call, which on a busy machine cost more than the call.
// The error is openraft's own storage error, as large as openraft makes it.
#[allow(clippy::result_large_err)]
pub(crate) fn inline<T>(
    subject: Subject,
    f: impl FnOnce() -> Result<T, arbor::Error>,
) -> Result<T, StorageError> {
    f().map_err(|e| subject.error(&e))
}

/// Runs an engine call that waits on the device (an `Immediate` commit, a snapshot file)
/// on tokio's blocking pool; a panic in it becomes a storage error.
pub(crate) async fn blocking<T, F>(subject: Subject, f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, arbor::Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(subject.error(&e)),
        Err(join) => Err(subject.error(&join)),
    }
}

/// What a storage call was doing, for openraft's error.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject {
    ReadLogs,
    WriteLogs,
    ReadVote,
    WriteVote,
    ReadStateMachine,
    WriteStateMachine,
    ReadSnapshot,
    WriteSnapshot,
}

impl Subject {
    pub(crate) fn error<E: std::error::Error + 'static>(self, e: &E) -> StorageError {
        let (subject, verb) = match self {
            Subject::ReadLogs => (ErrorSubject::Logs, ErrorVerb::Read),
            Subject::WriteLogs => (ErrorSubject::Logs, ErrorVerb::Write),
            Subject::ReadVote => (ErrorSubject::Vote, ErrorVerb::Read),
            Subject::WriteVote => (ErrorSubject::Vote, ErrorVerb::Write),
            Subject::ReadStateMachine => (ErrorSubject::StateMachine, ErrorVerb::Read),
            Subject::WriteStateMachine => (ErrorSubject::StateMachine, ErrorVerb::Write),
            Subject::ReadSnapshot => (ErrorSubject::Snapshot(None), ErrorVerb::Read),
            Subject::WriteSnapshot => (ErrorSubject::Snapshot(None), ErrorVerb::Write),
        };
        StorageIOError::new(subject, verb, AnyError::new(e)).into()
    }
}
