//! Snapshots: consistent read-only views that never block the writer (design.md §5, §10.1,
//! §10.3, §10.7).
//!
//! A snapshot copies the root record of the last commit (seq S, the generation G that was
//! open, the catalog root) and registers S. Reading a block through it:
//! * a block of a generation older than G was frozen before S: nothing newer than S changed
//!   it, so the cached image is used as is, with no lock (zero copy);
//! * a block of generation G may have changed after S: if the readers' table has it, its
//!   image and entries are copied under its lock and the copy is rewound to S (`Slot::
//!   image_at`); if the table does not, its final image is in the store and is the image
//!   at S (the writer drops a slot only once that holds).
//!
//! Every block fetch is one reader operation (§10.7): it pins the snapshot's history and
//! fails with `SnapshotExpired` if the bound expired the snapshot. Iterators hold private or
//! immutable images between steps, never a lock or a pin.

use std::ops::{Bound, RangeBounds};

use arbor_format::constants::key_bytes_max;
use arbor_format::{ChildPtr, OverflowRef};

use crate::mvcc::modlog::ItemValue;
use crate::mvcc::{RootRecord, SnapState};
use crate::store::header_generation;
use crate::store::NodeBuf;
use crate::sync::Arc;
use crate::tree::catalog;
use crate::tree::read::{self, owned_bound, NodeSource, Range};
use crate::txn::Shared;
use crate::writer::TreeMeta;
use crate::{Error, Result};

struct Inner {
    shared: Arc<Shared>,
    state: Arc<SnapState>,
    root: RootRecord,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.registry.deregister(&self.state);
    }
}

/// A consistent view of the store as of one commit. `Send + Sync`; clones share one
/// registration, which is released when the last clone is dropped.
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.inner.root.seq).finish()
    }
}

impl Snapshot {
    pub(crate) fn new(shared: Arc<Shared>) -> Snapshot {
        let (root, state) = shared.registry.register();
        Snapshot { inner: Arc::new(Inner { shared, state, root }) }
    }

    /// The seq of the commit this snapshot sees.
    pub fn seq(&self) -> u64 {
        self.inner.root.seq
    }

    /// Whether the bound expired this snapshot (reads return `Error::SnapshotExpired`).
    pub fn is_expired(&self) -> bool {
        self.inner.state.is_expired()
    }

    fn source(&self) -> SnapSource {
        SnapSource { inner: Arc::clone(&self.inner) }
    }

    /// The named tree as of this snapshot, or `None` if it did not exist.
    pub fn tree(&self, name: &str) -> Result<Option<Tree>> {
        if name.len() > key_bytes_max(self.inner.shared.store.block_bytes) {
            return Ok(None);
        }
        let src = self.source();
        match read::lookup(&src, self.inner.root.catalog, name.as_bytes())? {
            Some(ItemValue::Inline(bytes)) => {
                let meta = catalog::decode(&bytes, self.inner.root.catalog.address())?;
                Ok(Some(Tree { snap: self.clone(), meta }))
            }
            Some(_) => Err(Error::corrupt(self.inner.root.catalog.address(), "bad catalog entry")),
            None => Ok(None),
        }
    }

    /// Names of every tree in this snapshot, sorted.
    pub fn tree_names(&self) -> Result<Vec<String>> {
        let range = Range::new(
            Box::new(self.source()),
            self.inner.root.catalog,
            Bound::Unbounded,
            Bound::Unbounded,
        );
        range.map(|item| item.map(|(k, _)| String::from_utf8_lossy(&k).into_owned())).collect()
    }
}

/// A tree as of a snapshot. Owns a clone of the snapshot, so it can outlive the handle it
/// came from and move across threads.
#[derive(Clone)]
pub struct Tree {
    snap: Snapshot,
    meta: TreeMeta,
}

impl Tree {
    /// The value of `key` at the snapshot, or `None`.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// # let mut tx = db.begin_write()?;
    /// # tx.tree("users")?.insert(b"alice", b"admin")?;
    /// # tx.commit()?;
    /// let snap = db.snapshot()?;
    /// let users = snap.tree("users")?.expect("the tree exists");
    /// assert_eq!(users.get(b"alice")?, Some(b"admin".to_vec()));
    /// assert_eq!(users.get(b"nobody")?, None);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.len() > key_bytes_max(self.snap.inner.shared.store.block_bytes) {
            return Ok(None);
        }
        read::get(&self.snap.source(), self.meta.root, key)
    }

    /// Iterates a key range in order; `.rev()` iterates backwards.
    pub fn range<'a, R: RangeBounds<&'a [u8]>>(&self, range: R) -> Result<Range<'static>> {
        let start = owned_bound(range.start_bound().map(|k| *k));
        let end = owned_bound(range.end_bound().map(|k| *k));
        Ok(Range::new(Box::new(self.snap.source()), self.meta.root, start, end))
    }

    /// Iterates the whole tree.
    pub fn iter(&self) -> Result<Range<'static>> {
        Ok(Range::new(
            Box::new(self.snap.source()),
            self.meta.root,
            Bound::Unbounded,
            Bound::Unbounded,
        ))
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.meta.entries
    }

    /// Whether the tree held no entry at the snapshot.
    pub fn is_empty(&self) -> bool {
        self.meta.entries == 0
    }

    /// The entry with the smallest key, or `None` for an empty tree.
    pub fn first(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter()?.next().transpose()
    }

    /// The entry with the largest key, or `None` for an empty tree.
    pub fn last(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter()?.next_back().transpose()
    }
}

/// Block images as of the snapshot's seq.
struct SnapSource {
    inner: Arc<Inner>,
}

impl NodeSource<'static> for SnapSource {
    fn node(&self, ptr: ChildPtr) -> Result<NodeBuf<'static>> {
        let inner = &self.inner;
        let _op = inner.state.enter()?;
        let store = &inner.shared.store;
        if ptr.generation() < inner.root.gen {
            return Ok(NodeBuf::Clean(store.read_block(ptr)?));
        }
        let Some(slot) = store.table.get(ptr.address()) else {
            // Not in memory: a block of the open generation written back early, reached
            // through a crc-pending pointer; the writer knows its crc.
            return Ok(NodeBuf::Clean(store.read_block(store.with_written_back_crc(ptr))?));
        };
        debug_assert_eq!(slot.addr, ptr.address(), "the table filed a slot under another address");
        let image = slot.image_at(inner.root.seq, store.align)?;
        if header_generation(&image) != Some(ptr.generation()) {
            return Err(Error::corrupt(
                ptr.address(),
                "snapshot reached a block whose generation does not match its pointer",
            ));
        }
        Ok(NodeBuf::Clean(image))
    }

    fn overflow(&self, r: &OverflowRef) -> Result<Vec<u8>> {
        let _op = self.inner.state.enter()?;
        self.inner.shared.store.read_overflow(r)
    }
}
