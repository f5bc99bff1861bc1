//! `WriteTree`, a tree inside the write transaction: the byte API (its compound operations
//! and iterators are in `write_ops.rs`).

use std::fmt;
use std::ops::Bound;

use arbor_format::constants::{key_bytes_max, value_inline_bytes_max, VALUE_BYTES_MAX};
use arbor_format::journal::Op;
use arbor_format::node::ValueRef;
use arbor_format::ChildPtr;

use crate::codec::KeyRange;
use crate::mvcc::modlog::ItemValue;
use crate::store::Store;
use crate::tree;
use crate::tree::read::{self, prefix_bounds, WriterView};
use crate::tree::walk::Walk;
use crate::txn::publish;
use crate::txn::write::{
    check_undo_cap, fail_on_io, take_value, write_back_if_over, write_overflow, WriteTxn,
};
use crate::txn::write_ops::WriteRange;
use crate::writer::{TreeMeta, Writer};
use crate::{Error, Result};

/// A key and its value, as the byte API returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A tree inside the write transaction, from [`WriteTxn::tree`]. Keys and values are any
/// byte form (`&[u8]`, `b"…"`, `Vec<u8>`, `&str`, `String`); see [`crate::TreeDef`] for
/// typed keys and values. Several handles (of one tree or of several) can be used at once.
pub struct WriteTree<'t, 'db> {
    pub(super) txn: &'t WriteTxn<'db>,
    pub(super) name: Vec<u8>,
}

impl fmt::Debug for WriteTree<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTree").field("name", &String::from_utf8_lossy(&self.name)).finish()
    }
}

/// Counts the entries of a subtree a range removal detached (rooted at `root`, of `level`)
/// and records their removal in the journal record while it is still recording: reads every
/// node of the subtree, changes none (freeing it is `publish::free_tree`'s job).
fn record_subtree(w: &mut Writer, s: &Store, tree: u64, root: ChildPtr, level: u8) -> Result<u64> {
    let mut walk = Walk::new(w.alloc.block_count());
    walk.push(root, Some(level), ());
    let mut count = 0;
    let (dirty, record) = (&w.dirty, &mut w.record);
    walk.each_leaf(
        |ptr| dirty.node(s, ptr),
        |node, _| {
            count += node.len() as u64;
            if record.is_recording() {
                for i in 0..node.len() {
                    record.push(Op::Remove { tree, key: node.key(i) });
                }
            }
            Ok(())
        },
    )?;
    Ok(count)
}

/// Stores tree `name`'s metadata after a change (no allocation per change: the name is
/// copied only the first time the transaction changes the tree).
fn store_meta(w: &mut Writer, name: &[u8], meta: TreeMeta) {
    match w.trees.map.get_mut(name) {
        Some(m) => *m = meta,
        None => {
            w.trees.map.insert(name.to_vec(), meta);
        }
    }
    if !w.trees.changed.contains(name) {
        w.trees.changed.insert(name.to_vec());
    }
}

/// The metadata of tree `name` in the open transaction.
pub(super) fn meta_of(w: &Writer, name: &[u8]) -> Result<TreeMeta> {
    w.trees.map.get(name).copied().ok_or_else(|| Error::InvalidInput("tree deleted".into()))
}

impl<'t, 'db> WriteTree<'t, 'db> {
    pub(super) fn new(txn: &'t WriteTxn<'db>, name: Vec<u8>) -> WriteTree<'t, 'db> {
        WriteTree { txn, name }
    }

    fn meta(&self) -> Result<TreeMeta> {
        meta_of(&*self.txn.view()?, &self.name)
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = key_bytes_max(self.txn.db.store.block_bytes);
        if key.len() > max {
            return Err(Error::KeyTooLarge { len: key.len(), max });
        }
        Ok(())
    }

    /// Inserts or replaces; returns the old value. After an error other than `KeyTooLarge`,
    /// `ValueTooLarge` or `NoSpace` the transaction can only be aborted.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// assert_eq!(t.insert(b"k", b"v1")?, None);
    /// assert_eq!(t.insert("k", vec![b'v', b'2'])?, Some(b"v1".to_vec()));
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn insert(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        self.insert_bytes(key.as_ref(), value.as_ref())
    }

    /// [`WriteTree::insert`] on bytes. After an error other than `KeyTooLarge`,
    /// `ValueTooLarge` or `NoSpace` the transaction can only be aborted
    /// ([`WriteTxn::note_failure`]).
    pub(super) fn insert_bytes(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.insert_unguarded(key, value).map_err(|e| self.txn.note_failure(e))
    }

    fn insert_unguarded(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        if value.len() as u64 > VALUE_BYTES_MAX {
            return Err(Error::ValueTooLarge { len: value.len() as u64, max: VALUE_BYTES_MAX });
        }
        let mut meta = self.meta()?;
        let db = self.txn.db;
        let (mut w, s) = self.txn.parts()?;
        let overflow = if value.len() > value_inline_bytes_max(s.block_bytes) {
            Some(write_overflow(&mut w, s, meta.id, value).map_err(|e| fail_on_io(db, e))?)
        } else {
            None
        };
        let item = match overflow {
            Some(r) => ValueRef::Overflow(r),
            None => ValueRef::Inline(value),
        };
        let inserted =
            tree::write::insert_ref(&mut w.edit(), s, &mut meta.root, meta.id, key, item);
        let old = match inserted {
            Ok(old) => old,
            Err(e) => {
                if let Some(r) = overflow {
                    // Never linked into the tree: give its blocks back now.
                    w.alloc.free_now(r.address(), u64::from(r.block_count()));
                    w.txn.allocated.retain(|(a, _)| *a != r.address());
                }
                return Err(e);
            }
        };
        let old = match old {
            None => {
                meta.entries += 1;
                None
            }
            Some(v) => Some(take_value(&mut w, s, v)?),
        };
        w.record.push(Op::Put { tree: meta.id, key, value });
        store_meta(&mut w, &self.name, meta);
        check_undo_cap(&w, db)?;
        write_back_if_over(&mut w, db)?;
        Ok(old)
    }

    /// Removes a key; returns its value. After an error other than `KeyTooLarge` the
    /// transaction can only be aborted.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.remove_bytes(key.as_ref())
    }

    /// [`WriteTree::remove`] on bytes; a failure part-way makes the transaction abort-only,
    /// as for inserts.
    pub(super) fn remove_bytes(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.remove_unguarded(key).map_err(|e| self.txn.note_failure(e))
    }

    fn remove_unguarded(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        let mut meta = self.meta()?;
        let db = self.txn.db;
        let (mut w, s) = self.txn.parts()?;
        let Some(old) = tree::write::remove(&mut w.edit(), s, &mut meta.root, key)? else {
            return Ok(None);
        };
        meta.entries = meta.entries.saturating_sub(1);
        let old = take_value(&mut w, s, old)?;
        w.record.push(Op::Remove { tree: meta.id, key });
        store_meta(&mut w, &self.name, meta);
        check_undo_cap(&w, db)?;
        write_back_if_over(&mut w, db)?;
        Ok(Some(old))
    }

    /// Removes every key in `range` and returns how many it removed; bounds are any byte
    /// form, as for [`WriteTree::range`]; an empty or inverted range removes nothing.
    ///
    /// Cheaper than removing the keys one by one: a subtree that lies wholly inside the range
    /// is detached from its parent in one edit and freed like a deleted tree's blocks (at
    /// commit, and not before every snapshot that can still read it is gone), so only the
    /// two boundary paths are copied and rebalanced. The removed entries are still counted
    /// (their leaves are read, not changed), for [`WriteTree::len`] and the journal.
    /// Snapshots taken before the commit keep seeing every removed key. After an error
    /// other than `NoSpace` the transaction can only be aborted.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut log = tx.tree("log")?;
    /// for day in 0u32..100 {
    ///     log.insert(day.to_be_bytes(), b"entry")?;
    /// }
    /// // Drop days 0 to 89 in one call; a snapshot taken before would still see them.
    /// assert_eq!(log.remove_range(..90u32.to_be_bytes())?, 90);
    /// assert_eq!(log.len()?, 10);
    /// assert_eq!(log.first()?.map(|(k, _)| k), Some(90u32.to_be_bytes().to_vec()));
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn remove_range(&mut self, range: impl KeyRange) -> Result<u64> {
        let (start, end) = range.into_bounds();
        self.remove_range_unguarded(start, end).map_err(|e| self.txn.note_failure(e))
    }

    fn remove_range_unguarded(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<u64> {
        let mut meta = self.meta()?;
        let db = self.txn.db;
        let (mut w, s) = self.txn.parts()?;
        let (from, to) = (start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice));
        let removed = tree::remove_range::remove_range(&mut w.edit(), s, &mut meta.root, from, to)?;
        let mut count = removed.items.len() as u64;
        for (key, v) in &removed.items {
            w.record.push(Op::Remove { tree: meta.id, key });
            if let ItemValue::Overflow(r) = v {
                w.edit().defer_free(r.address(), u64::from(r.block_count()), r.generation());
            }
        }
        for (ptr, level) in removed.subtrees {
            count += record_subtree(&mut w, s, meta.id, ptr, level)?;
            publish::free_tree(&mut w, s, ptr)?;
        }
        assert!(
            count <= meta.entries,
            "range removal took {count} entries from tree {} of {}",
            meta.id,
            meta.entries
        );
        meta.entries -= count;
        store_meta(&mut w, &self.name, meta);
        check_undo_cap(&w, db)?;
        write_back_if_over(&mut w, db)?;
        Ok(count)
    }

    /// The value of `key`, as this transaction sees it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        if key.len() > key_bytes_max(self.txn.db.store.block_bytes) {
            return Ok(None);
        }
        let w = self.txn.view()?;
        let meta = meta_of(&w, &self.name)?;
        read::get(&WriterView { dirty: &w.dirty, s: &self.txn.db.store }, meta.root, key)
    }

    /// Whether `key` is present (reads no overflow value).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// t.insert(b"k", b"v")?;
    /// assert!(t.contains_key(b"k")? && !t.contains_key(b"x")?);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        if key.len() > key_bytes_max(self.txn.db.store.block_bytes) {
            return Ok(false);
        }
        let w = self.txn.view()?;
        let meta = meta_of(&w, &self.name)?;
        let view = WriterView { dirty: &w.dirty, s: &self.txn.db.store };
        Ok(read::lookup(&view, meta.root, key)?.is_some())
    }

    /// Iterates a key range in order; `.rev()` iterates backwards. Bounds are any byte form
    /// (`b"a"..b"c"`, `vec_a..`, `"a"..="m"`, `..`; see [`KeyRange`]).
    /// The range borrows the transaction, not this handle: the tree can change while it is
    /// open, and it then continues after the last key it returned (see [`WriteRange`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// for k in [b"a", b"b", b"c"] {
    ///     t.insert(k, b"")?;
    /// }
    /// let keys: Vec<Vec<u8>> =
    ///     t.range(b"a"..b"c")?.map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn range(&self, range: impl KeyRange) -> Result<WriteRange<'t, 'db>> {
        let (start, end) = range.into_bounds();
        self.range_owned(start, end)
    }

    /// Iterates the keys that start with `prefix`, in order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// for k in ["user/1", "user/2", "video/1"] {
    ///     t.insert(k, b"")?;
    /// }
    /// assert_eq!(t.prefix("user/")?.count(), 2);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Result<WriteRange<'t, 'db>> {
        let (start, end) = prefix_bounds(prefix.as_ref());
        self.range_owned(start, end)
    }

    /// Iterates the whole tree.
    pub fn iter(&self) -> Result<WriteRange<'t, 'db>> {
        self.range_owned(Bound::Unbounded, Bound::Unbounded)
    }

    fn range_owned(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<WriteRange<'t, 'db>> {
        self.meta()?;
        Ok(WriteRange::new(self.txn, self.name.clone(), start, end))
    }

    /// Number of keys.
    pub fn len(&self) -> Result<u64> {
        Ok(self.meta()?.entries)
    }

    /// Whether the tree has no entry.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.meta()?.entries == 0)
    }

    /// The smallest key and its value.
    pub fn first(&self) -> Result<Option<Entry>> {
        self.iter()?.next().transpose()
    }

    /// The largest key and its value.
    pub fn last(&self) -> Result<Option<Entry>> {
        self.iter()?.next_back().transpose()
    }
}
