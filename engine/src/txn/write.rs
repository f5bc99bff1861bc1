//! Write transactions: `WriteTxn` and its tree handle `WriteTree`.

use std::ops::{Bound, Deref, DerefMut, RangeBounds};

use arbor_format::constants::{
    key_bytes_max, overflow_block_count, value_inline_bytes_max, VALUE_BYTES_MAX,
};
use arbor_format::{overflow, OverflowRef};

use crate::durable::pipeline::{Failure, Pipeline, PANIC_HOLDING_WRITER};
use crate::io::AlignedBuf;
use crate::mvcc::modlog::ItemValue;
use crate::options::Durability;
use crate::store::Store;
use crate::sync::{lock, MutexGuard};
use crate::tree;
use crate::tree::read::{self, owned_bound, Range, WriterView};
use crate::txn::publish;
use crate::txn::Shared;
use crate::writer::bound;
use crate::writer::{TreeMeta, TxnScratch, Writer};
use crate::{Error, Result};

/// What a commit produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitInfo {
    /// The seq at which the commit became visible.
    pub seq: u64,
    /// The generation that holds the commit.
    pub generation: u64,
    /// Whether the commit was durable when `commit` returned.
    pub durable: bool,
}

/// The one write transaction. Dropping it without `commit` aborts it.
///
/// A panic that unwinds out of one of its calls may leave the writer half changed: the
/// transaction ends without an undo and the handle becomes fail-stop (`Error::Poisoned`)
/// until the store is reopened. A panic in the caller's own code while the transaction is
/// open only aborts it, as dropping it does.
pub struct WriteTxn<'db> {
    db: &'db Shared,
    w: Option<MutexGuard<'db, Writer>>,
    durability: Durability,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn begin(db: &'db Shared) -> Result<WriteTxn<'db>> {
        let mut w = db.lock_writer()?;
        let durable = db.pipeline.writable()?;
        w.alloc.note_durable(durable);
        w.txn = TxnScratch {
            trees_at_start: Some(w.trees.map.clone()),
            catalog_at_start: w.trees.catalog,
            next_tree_id_at_start: w.trees.next_id,
            orphans_at_start: w.alloc.orphans().len(),
            ..TxnScratch::default()
        };
        w.trees.changed.clear();
        // Past the snapshot bound, `WriterWaits` waits here (nothing of this transaction
        // exists yet, so its error loses nothing); `ExpireOldest` acts at commit.
        let wr = &mut *w;
        let held = bound::Held {
            hist: &mut wr.hist,
            alloc: &mut wr.alloc,
            store: &db.store,
            last_seq: wr.seq,
        };
        bound::enforce(held, &db.opts, &db.registry)?;
        Ok(WriteTxn { db, w: Some(w), durability: db.opts.durability })
    }

    /// Why the transaction no longer holds the writer: a panic in one of its calls ended it
    /// (`commit` and `abort` consume it), which made the handle fail-stop.
    fn ended(&self) -> Error {
        match self.db.pipeline.writable() {
            Err(e) => e,
            Ok(_) => Error::InvalidInput("transaction ended".into()),
        }
    }

    /// The writer for one call that changes it, and the store. Refused once a change of
    /// this transaction failed part-way (see [`WriteTxn::note_failure`]).
    fn parts(&mut self) -> Result<(InCall<'_, 'db>, &'db Store)> {
        let Some(w) = self.w.as_deref() else { return Err(self.ended()) };
        if let Some(failed) = &w.txn.failed {
            return Err(failed_txn(failed, "abort it"));
        }
        let call = InCall {
            guard: &mut self.w,
            pipeline: &self.db.pipeline,
            began_panicking: std::thread::panicking(),
        };
        Ok((call, &self.db.store))
    }

    /// Marks the transaction failed after a change returned `e`, unless `e` is one that
    /// changing calls return before they change anything (a key or value over the limit,
    /// `NoSpace` from the up-front reservation). Other errors can come part-way through a
    /// change — a read error while copying the path, reading the old overflow value, the
    /// undo cap, an early write-back — and leave the tree half-changed: a root copied but not
    /// recorded, a block queued for freeing that the tree still uses. Committing that would
    /// free live blocks, so from then on the transaction refuses everything but abort.
    fn note_failure(&mut self, e: Error) -> Error {
        let before_any_change =
            matches!(e, Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::NoSpace);
        if !before_any_change {
            if let Some(w) = self.w.as_deref_mut() {
                w.txn.failed.get_or_insert_with(|| e.to_string());
            }
        }
        e
    }

    /// The named tree, created (empty) if it does not exist.
    pub fn tree(&mut self, name: &str) -> Result<WriteTree<'_, 'db>> {
        let max = key_bytes_max(self.db.store.block_bytes);
        if name.len() > max {
            return Err(Error::KeyTooLarge { len: name.len(), max });
        }
        let key = name.as_bytes().to_vec();
        {
            let (mut w, s) = self.parts()?;
            if !w.trees.map.contains_key(&key) {
                let id = w.trees.next_id;
                w.trees.next_id += 1;
                let root = w.edit().new_node(s, arbor_format::BlockKind::Leaf, 0, id)?;
                let meta = TreeMeta { id, root: w.dirty.ptr(root), entries: 0 };
                w.trees.map.insert(key.clone(), meta);
                w.trees.changed.insert(key.clone());
            }
        }
        Ok(WriteTree { txn: self, name: key })
    }

    /// Deletes a tree and frees its blocks; returns whether it existed.
    pub fn delete_tree(&mut self, name: &str) -> Result<bool> {
        let r = self.delete_tree_inner(name);
        r.map_err(|e| self.note_failure(e))
    }

    fn delete_tree_inner(&mut self, name: &str) -> Result<bool> {
        let (mut w, s) = self.parts()?;
        let key = name.as_bytes().to_vec();
        let Some(meta) = w.trees.map.remove(&key) else { return Ok(false) };
        w.trees.changed.insert(key);
        publish::free_tree(&mut w, s, meta.root)?;
        Ok(true)
    }

    /// Names of every tree, sorted.
    pub fn tree_names(&mut self) -> Result<Vec<String>> {
        let (w, _) = self.parts()?;
        Ok(w.trees.map.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect())
    }

    /// How this transaction's commit becomes durable, instead of `Options::durability`
    /// (design.md §10.15).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Publishes the transaction; with `Durability::Immediate` returns after its flush.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// let mut tx = db.begin_write()?;
    /// tx.tree("t")?.insert(b"k", b"v")?;
    /// let info = tx.commit()?;
    /// assert!(info.durable); // Immediate, the default
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn commit(mut self) -> Result<CommitInfo> {
        let mut w = self.w.take().ok_or_else(|| self.ended())?;
        if let Some(failed) = w.txn.failed.take() {
            abort_writer(&mut w, self.db)?;
            return Err(failed_txn(&failed, "it was rolled back"));
        }
        let seq = match finish(&mut w, self.db) {
            Ok(seq) => seq,
            Err(e) => {
                // The catalog update failed before anything was published: roll back.
                let undo = abort_writer(&mut w, self.db);
                return Err(undo.err().unwrap_or(e));
            }
        };
        let gen = w.gen();
        w.last_commit_gen = gen;
        let over_dirty = w.dirty.bytes > self.db.opts.dirty_max_bytes;
        let db = self.db;
        let durable = match self.durability {
            Durability::Immediate => {
                db.make_durable(Some(w), gen, true)?;
                true
            }
            Durability::Eventual => {
                let due =
                    db.pipeline.state().last_durable_at.elapsed() >= db.opts.eventual_interval;
                if due || over_dirty {
                    db.make_durable(Some(w), gen, false)?;
                }
                db.pipeline.durable_gen() >= gen
            }
            Durability::None => {
                if over_dirty {
                    db.make_durable(Some(w), gen, false)?;
                }
                false
            }
        };
        Ok(CommitInfo { seq, generation: gen, durable })
    }

    /// Discards every change of the transaction (dropping it does the same).
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// let mut tx = db.begin_write()?;
    /// tx.tree("t")?.insert(b"k", b"v")?;
    /// tx.abort()?;
    /// assert!(db.snapshot()?.tree("t")?.is_none());
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn abort(mut self) -> Result<()> {
        match self.w.take() {
            Some(mut w) => abort_writer(&mut w, self.db),
            None => Ok(()),
        }
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        // A panic unwinding through the open transaction from the caller's own code finds
        // the writer whole: every engine call that changes it holds an `InCall`, whose drop
        // takes the guard away (and fails the handle) if the panic started inside the engine.
        // So the guard being here means the abort below meets no half-done change.
        let Some(mut w) = self.w.take() else { return };
        // Errors here mean the log and a block disagree: the handle turns fail-stop.
        if let Err(e) = abort_writer(&mut w, self.db) {
            self.db.pipeline.state().fail(Failure::Io(e.with_sources()));
        }
        if std::thread::panicking() {
            // Dropping the guard now poisons the lock; the writer is whole, so say so.
            self.db.pipeline.note_released_whole();
        }
        drop(w);
    }
}

/// The writer lent to one call of a transaction that changes it ([`WriteTxn::parts`]). If a
/// panic unwinds out of the call, the writer may be half changed: dropping this then ends
/// the transaction — its guard is dropped while the panic unwinds, without an undo — and
/// makes the handle fail-stop, even when the caller catches the panic and keeps the
/// transaction.
struct InCall<'t, 'db> {
    /// The transaction's guard, `Some` for as long as this lives.
    guard: &'t mut Option<MutexGuard<'db, Writer>>,
    pipeline: &'db Pipeline,
    /// The call began while a panic was already unwinding (from a `Drop`).
    began_panicking: bool,
}

impl Deref for InCall<'_, '_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        self.guard.as_deref().expect("a transaction holds its writer during a call")
    }
}

impl DerefMut for InCall<'_, '_> {
    fn deref_mut(&mut self) -> &mut Writer {
        self.guard.as_deref_mut().expect("a transaction holds its writer during a call")
    }
}

impl Drop for InCall<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.began_panicking {
            self.pipeline.fail_on_panic(PANIC_HOLDING_WRITER);
            drop(self.guard.take());
        }
    }
}

/// Publishes the transaction (see [`publish::publish`]) and refreshes the figures `stats`
/// shows meanwhile.
fn finish(w: &mut Writer, db: &Shared) -> Result<u64> {
    let seq = publish::publish(w, &db.store, &db.registry, &db.opts)?;
    note_figures(w, db);
    Ok(seq)
}

/// Undoes the open transaction (see [`publish::abort`]) and refreshes the figures.
fn abort_writer(w: &mut Writer, db: &Shared) -> Result<()> {
    publish::abort(w, &db.store, &db.registry)?;
    note_figures(w, db);
    Ok(())
}

/// Refreshes the figures `Db::stats` reports while a transaction holds the writer.
fn note_figures(w: &Writer, db: &Shared) {
    let mut f = lock(&db.figures);
    *f = w.figures(false, f.largest_free_run());
}

/// A tree inside the write transaction.
pub struct WriteTree<'t, 'db> {
    txn: &'t mut WriteTxn<'db>,
    name: Vec<u8>,
}

impl WriteTree<'_, '_> {
    fn meta(&self) -> Result<TreeMeta> {
        let w = self.txn.w.as_deref().ok_or_else(|| self.txn.ended())?;
        w.trees
            .map
            .get(&self.name)
            .copied()
            .ok_or_else(|| Error::InvalidInput("tree deleted".into()))
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
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// let mut tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// assert_eq!(t.insert(b"k", b"one")?, None);
    /// assert_eq!(t.insert(b"k", b"two")?, Some(b"one".to_vec()));
    /// assert_eq!(t.remove(b"k")?, Some(b"two".to_vec()));
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let r = self.insert_inner(key, value);
        r.map_err(|e| self.txn.note_failure(e))
    }

    fn insert_inner(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        if value.len() as u64 > VALUE_BYTES_MAX {
            return Err(Error::ValueTooLarge { len: value.len() as u64, max: VALUE_BYTES_MAX });
        }
        let mut meta = self.meta()?;
        let name = self.name.clone();
        let db = self.txn.db;
        let (mut w, s) = self.txn.parts()?;
        let item = if value.len() > value_inline_bytes_max(s.block_bytes) {
            match write_overflow(&mut w, s, meta.id, value) {
                Ok(r) => ItemValue::Overflow(r),
                Err(e) => return Err(fail_on_io(db, e)),
            }
        } else {
            ItemValue::Inline(value.to_vec())
        };
        let old =
            match tree::write::insert(&mut w.edit(), s, &mut meta.root, meta.id, key, item.clone())
            {
                Ok(old) => old,
                Err(e) => {
                    if let ItemValue::Overflow(r) = item {
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
        w.trees.map.insert(name.clone(), meta);
        w.trees.changed.insert(name);
        check_undo_cap(&w, db)?;
        write_back_if_over(&mut w, db)?;
        Ok(old)
    }

    /// Removes a key; returns its value. After an error other than `KeyTooLarge` the
    /// transaction can only be aborted.
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let r = self.remove_inner(key);
        r.map_err(|e| self.txn.note_failure(e))
    }

    fn remove_inner(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        let mut meta = self.meta()?;
        let name = self.name.clone();
        let db = self.txn.db;
        let (mut w, s) = self.txn.parts()?;
        let Some(old) = tree::write::remove(&mut w.edit(), s, &mut meta.root, key)? else {
            return Ok(None);
        };
        meta.entries = meta.entries.saturating_sub(1);
        let old = take_value(&mut w, s, old)?;
        w.trees.map.insert(name.clone(), meta);
        w.trees.changed.insert(name);
        check_undo_cap(&w, db)?;
        write_back_if_over(&mut w, db)?;
        Ok(Some(old))
    }

    /// The value of `key`, as this transaction sees it (its own changes included).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.len() > key_bytes_max(self.txn.db.store.block_bytes) {
            return Ok(None);
        }
        let meta = self.meta()?;
        let w = self.txn.w.as_deref().ok_or_else(|| self.txn.ended())?;
        read::get(&WriterView { dirty: &w.dirty, s: &self.txn.db.store }, meta.root, key)
    }

    /// Iterates a key range in order; `.rev()` iterates backwards.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// let mut tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// for k in [b"a", b"b", b"c"] {
    ///     t.insert(k, b"")?;
    /// }
    /// let keys: Vec<Vec<u8>> =
    ///     t.range(b"b".as_slice()..)?.rev().map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [b"c".to_vec(), b"b".to_vec()]);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn range<'a, R: RangeBounds<&'a [u8]>>(&self, range: R) -> Result<Range<'_>> {
        let start = owned_bound(range.start_bound().map(|k| *k));
        let end = owned_bound(range.end_bound().map(|k| *k));
        self.range_owned(start, end)
    }

    /// Iterates the whole tree.
    pub fn iter(&self) -> Result<Range<'_>> {
        self.range_owned(Bound::Unbounded, Bound::Unbounded)
    }

    fn range_owned(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Range<'_>> {
        let meta = self.meta()?;
        let w = self.txn.w.as_deref().ok_or_else(|| self.txn.ended())?;
        Ok(Range::new(
            Box::new(WriterView { dirty: &w.dirty, s: &self.txn.db.store }),
            meta.root,
            start,
            end,
        ))
    }

    /// Number of keys, as this transaction sees it.
    pub fn len(&self) -> Result<u64> {
        Ok(self.meta()?.entries)
    }

    /// Whether the tree has no entry, as this transaction sees it.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.meta()?.entries == 0)
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

/// Turns a removed or replaced item into its bytes, freeing an overflow extent.
fn take_value(w: &mut Writer, s: &Store, v: ItemValue) -> Result<Vec<u8>> {
    match v {
        ItemValue::Inline(v) => Ok(v),
        ItemValue::Overflow(r) => {
            let bytes = s.read_overflow(&r)?;
            w.edit().defer_free(r.address(), u64::from(r.block_count()), r.generation());
            Ok(bytes)
        }
        ItemValue::Child(ptr) => panic!("a leaf removal returned child pointer {ptr:?}"),
    }
}

/// Writes a large value to a fresh extent (write-once, design.md §10.4).
fn write_overflow(w: &mut Writer, s: &Store, owner: u64, value: &[u8]) -> Result<OverflowRef> {
    let blocks = overflow_block_count(value.len() as u64, s.block_bytes);
    w.edit().reserve_for(s, blocks, crate::writer::Need::Grow)?;
    let addr = w.edit().alloc_run(s, blocks)?;
    let len = usize::try_from(blocks * u64::from(s.block_bytes))
        .map_err(|_| Error::ValueTooLarge { len: value.len() as u64, max: VALUE_BYTES_MAX })?;
    let mut buf = AlignedBuf::zeroed(len, s.align);
    let r = overflow::overflow_write(&mut buf, s.block_bytes, addr, w.gen(), owner, value)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    s.dev.write_at(s.block_offset(addr), &buf)?;
    Ok(r)
}

/// The transaction's own undo entries are capped (design.md §10.8): past the cap a write
/// returns an error (the caller aborts or commits what it has) instead of growing the log
/// without bound or waiting on itself.
fn check_undo_cap(w: &Writer, db: &Shared) -> Result<()> {
    let undo_bytes = w.txn.undo_bytes;
    let max = db.opts.txn_undo_max_bytes;
    if undo_bytes > max {
        return Err(Error::TransactionTooLarge { undo_bytes, max });
    }
    Ok(())
}

/// Past `Options::dirty_max_bytes` in memory, writes private leaves back to half of it.
fn write_back_if_over(w: &mut Writer, db: &Shared) -> Result<()> {
    let max = db.opts.dirty_max_bytes;
    if w.dirty.bytes > max {
        let txn = &mut w.txn;
        w.dirty
            .write_back(&db.store, &txn.allocated, &mut txn.writeback_cursor, max / 2)
            .map_err(|e| fail_on_io(db, e))?;
    }
    Ok(())
}

/// The error of every call on a transaction after one of its changes failed.
fn failed_txn(failed: &str, what_now: &str) -> Error {
    Error::InvalidInput(format!(
        "a change in this transaction failed earlier ({failed}); {what_now}"
    ))
}

/// A device error during a transaction makes the handle fail-stop.
fn fail_on_io(db: &Shared, e: Error) -> Error {
    if let Error::Io { .. } = &e {
        db.pipeline.state().fail(Failure::Io(e.with_sources()));
    }
    e
}
