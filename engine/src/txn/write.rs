//! Write transactions: `WriteTxn` and its tree handle `WriteTree`.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::ops::{Deref, DerefMut};

use arbor_format::constants::{key_bytes_max, overflow_block_count, VALUE_BYTES_MAX};
use arbor_format::journal::Op;
use arbor_format::{overflow, OverflowRef};

use crate::durable::pipeline::{Failure, Pipeline, PANIC_HOLDING_WRITER};
use crate::io::AlignedBuf;
use crate::mvcc::modlog::ItemValue;
use crate::options::Durability;
use crate::store::Store;
use crate::sync::{lock, MutexGuard};
use crate::txn::publish;
use crate::txn::write_tree::WriteTree;
use crate::txn::Shared;
use crate::writer::bound;
use crate::writer::{Mark, TreeMeta, TxnScratch, Writer};
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
/// Trees open from `&self` ([`WriteTxn::tree`]): any number of [`WriteTree`] handles at
/// once, the same tree twice included; every call through them goes to this one writer.
/// The transaction is `!Send` and `!Sync`: it holds the writer lock's guard, which must be
/// released on the thread that took it, and its handles share the writer through a
/// `RefCell` that no call holds across a return to the caller (so no call observes another
/// half done, and a range re-reads after a change; see [`WriteRange`](crate::WriteRange)).
///
/// A panic that unwinds out of one of its calls may leave the writer half changed: the
/// transaction ends without an undo and the handle becomes fail-stop (`Error::Poisoned`)
/// until the store is reopened. A panic in the caller's own code while the transaction is
/// open only aborts it, as dropping it does.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
/// let tx = db.begin_write()?;
/// let mut users = tx.tree("users")?;
/// let mut by_email = tx.tree("users_by_email")?; // a second tree, open at the same time
/// users.insert(b"u1", b"ada@example.org")?;
/// by_email.insert(b"ada@example.org", b"u1")?;
/// tx.commit()?;
/// # Ok::<(), arbor::Error>(())
/// ```
pub struct WriteTxn<'db> {
    pub(super) db: &'db Shared,
    w: RefCell<Option<MutexGuard<'db, Writer>>>,
    durability: Durability,
    /// Counts the calls that changed (or may have changed) the writer; a
    /// [`WriteRange`](crate::WriteRange) re-seeks when it moved since its last read.
    pub(super) changes: Cell<u64>,
    /// Identifies this transaction to its savepoints.
    id: u64,
    /// Savepoints that can still be rolled back to, oldest first (by number).
    savepoints: RefCell<Vec<u64>>,
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("id", &self.id)
            .field("durability", &self.durability)
            .field("open", &self.w.try_borrow().map(|w| w.is_some()).unwrap_or(true))
            .finish()
    }
}

/// A point inside a write transaction to roll back to ([`WriteTxn::savepoint`]).
pub struct Savepoint {
    txn: u64,
    number: u64,
    mark: Mark,
}

impl std::fmt::Debug for Savepoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Savepoint").field("txn", &self.txn).field("number", &self.number).finish()
    }
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn begin(db: &'db Shared) -> Result<WriteTxn<'db>> {
        let w = db.lock_writer()?;
        WriteTxn::start(db, w)
    }

    /// `begin` if the writer is free now, else `Ok(None)`.
    pub(crate) fn try_begin(db: &'db Shared) -> Result<Option<WriteTxn<'db>>> {
        match db.pipeline.try_lock_writer(&db.writer)? {
            Some(w) => WriteTxn::start(db, w).map(Some),
            None => Ok(None),
        }
    }

    fn start(db: &'db Shared, mut w: MutexGuard<'db, Writer>) -> Result<WriteTxn<'db>> {
        let durable = db.pipeline.writable()?;
        w.record.reset();
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
        Ok(WriteTxn {
            db,
            w: RefCell::new(Some(w)),
            durability: db.opts.durability,
            changes: Cell::new(0),
            id: db.txn_ids.fetch_add(1, crate::sync::Ordering::Relaxed),
            savepoints: RefCell::new(Vec::new()),
        })
    }

    /// Replay of the journal at open (`txn::replay`): the commit's record is already in the
    /// journal, so this transaction commits like a `None` one.
    pub(super) fn begin_replay(db: &'db Shared) -> Result<WriteTxn<'db>> {
        let mut tx = WriteTxn::begin(db)?;
        tx.durability = Durability::None;
        Ok(tx)
    }

    /// Why the transaction no longer holds the writer: a panic in one of its calls ended it
    /// (`commit` and `abort` consume it), which made the handle fail-stop.
    pub(super) fn ended(&self) -> Error {
        match self.db.pipeline.writable() {
            Err(e) => e,
            Ok(_) => Error::InvalidInput("transaction ended".into()),
        }
    }

    /// The writer for one call that changes it, and the store. Refused once a change of
    /// this transaction failed part-way (see [`WriteTxn::note_failure`]).
    pub(super) fn parts(&self) -> Result<(InCall<'_, 'db>, &'db Store)> {
        let guard = self.w.try_borrow_mut().map_err(|_| busy())?;
        let Some(w) = guard.as_deref() else { return Err(self.ended()) };
        if let Some(failed) = &w.txn.failed {
            return Err(failed_txn(failed, "abort it"));
        }
        self.changes.set(self.changes.get() + 1);
        let call = InCall {
            guard,
            pipeline: &self.db.pipeline,
            began_panicking: std::thread::panicking(),
        };
        Ok((call, &self.db.store))
    }

    /// The writer, to read.
    pub(super) fn view(&self) -> Result<Ref<'_, Writer>> {
        let guard = self.w.try_borrow().map_err(|_| busy())?;
        Ref::filter_map(guard, |g| g.as_deref()).map_err(|_| self.ended())
    }

    /// The named tree, created (empty) if it does not exist. Takes `&self`: open as many
    /// trees as needed at once (see the type's example).
    pub fn tree(&self, name: &str) -> Result<WriteTree<'_, 'db>> {
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
                w.record.push(Op::CreateTree { tree: id, name: &key });
                let meta = TreeMeta { id, root: w.dirty.ptr(root), entries: 0 };
                w.trees.map.insert(key.clone(), meta);
                w.trees.changed.insert(key.clone());
            }
        }
        Ok(WriteTree::new(self, key))
    }

    /// Deletes a tree and frees its blocks; returns whether it existed. Handles of the tree
    /// then return an error (unless the tree is opened again).
    pub fn delete_tree(&self, name: &str) -> Result<bool> {
        self.delete_tree_unguarded(name).map_err(|e| self.note_failure(e))
    }

    /// Marks the transaction failed after a change returned `e`, unless `e` is one that
    /// changing calls return before they change anything (a key or value over the limit,
    /// `NoSpace` from the up-front reservation). Other errors can come part-way through a
    /// change — a read error while copying the path, reading the old overflow value, the
    /// undo cap, an early write-back — and leave the tree half-changed: a root copied but not
    /// recorded, a block queued for freeing that the tree still uses. Committing that would
    /// free live blocks, so from then on the transaction refuses everything but abort.
    pub(super) fn note_failure(&self, e: Error) -> Error {
        let before_any_change =
            matches!(e, Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::NoSpace);
        if !before_any_change {
            if let Ok(mut guard) = self.w.try_borrow_mut() {
                if let Some(w) = guard.as_deref_mut() {
                    w.txn.failed.get_or_insert_with(|| e.to_string());
                }
            }
        }
        e
    }

    fn delete_tree_unguarded(&self, name: &str) -> Result<bool> {
        let (mut w, s) = self.parts()?;
        let key = name.as_bytes().to_vec();
        let Some(meta) = w.trees.map.remove(&key) else { return Ok(false) };
        w.record.push(Op::DeleteTree { tree: meta.id });
        w.trees.changed.insert(key);
        publish::free_tree(&mut w, s, meta.root)?;
        Ok(true)
    }

    /// Names of every tree, sorted.
    pub fn tree_names(&self) -> Result<Vec<String>> {
        let w = self.view()?;
        Ok(w.trees.map.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect())
    }

    /// Sets how this transaction's commit becomes durable (default: `Options::durability`).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Marks the transaction's current state; [`WriteTxn::rollback_to`] returns to it.
    /// Savepoints nest: rolling back to one discards those taken after it, and a savepoint
    /// stays usable after a rollback to it. Costs a copy of the tree metadata; the
    /// transaction's blocks allocated so far then log their changes (design.md §10.6).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// t.insert(b"kept", b"1")?;
    /// let sp = tx.savepoint()?;
    /// t.insert(b"dropped", b"2")?;
    /// tx.rollback_to(&sp)?;
    /// assert!(!t.contains_key(b"dropped")?);
    /// assert!(t.contains_key(b"kept")?);
    /// tx.commit()?;
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn savepoint(&self) -> Result<Savepoint> {
        let (mut w, _) = self.parts()?;
        let mark = w.mark();
        let mut live = self.savepoints.borrow_mut();
        let number = live.last().map_or(0, |n| n + 1);
        live.push(number);
        Ok(Savepoint { txn: self.id, number, mark })
    }

    /// Undoes every change made after `sp` was taken; the transaction stays open. Fails
    /// with `InvalidInput` for a savepoint of another transaction, or one taken after a
    /// savepoint this transaction already rolled back to.
    pub fn rollback_to(&self, sp: &Savepoint) -> Result<()> {
        let mut live = self.savepoints.borrow_mut();
        let Some(at) = live.iter().position(|&n| n == sp.number) else {
            return Err(Error::InvalidInput("savepoint no longer valid".into()));
        };
        if sp.txn != self.id {
            return Err(Error::InvalidInput("savepoint of another transaction".into()));
        }
        let (mut w, s) = self.parts()?;
        live.truncate(at + 1);
        let result = w.rollback_to(s, &sp.mark);
        if let Err(e) = &result {
            // A log that disagrees with its block: like a failed abort, fail-stop.
            self.db.pipeline.state().fail(Failure::Io(e.to_string()));
        }
        result
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
        let mut w = self.w.get_mut().take().ok_or_else(|| self.ended())?;
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
        let durable = self.db.commit_durably(w, seq, self.durability)?;
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
        match self.w.get_mut().take() {
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
        let Some(mut w) = self.w.get_mut().take() else { return };
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
pub(super) struct InCall<'t, 'db> {
    /// The transaction's guard, `Some` for as long as this lives.
    guard: RefMut<'t, Option<MutexGuard<'db, Writer>>>,
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

/// A second call into the transaction while one holds the writer: only possible from code
/// the engine calls back (a `Debug` impl, say), which must not reach the transaction.
fn busy() -> Error {
    Error::InvalidInput("the write transaction is in use by another call".into())
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
    w.record.reset();
    publish::abort(w, &db.store, &db.registry)?;
    note_figures(w, db);
    Ok(())
}

/// Refreshes the figures `Db::stats` reports while a transaction holds the writer.
fn note_figures(w: &Writer, db: &Shared) {
    let mut f = lock(&db.figures);
    *f = w.figures(false, f.largest_free_run());
}

/// Turns a removed or replaced item into its bytes, freeing an overflow extent.
pub(super) fn take_value(w: &mut Writer, s: &Store, v: ItemValue) -> Result<Vec<u8>> {
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
pub(super) fn write_overflow(
    w: &mut Writer,
    s: &Store,
    owner: u64,
    value: &[u8],
) -> Result<OverflowRef> {
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
pub(super) fn check_undo_cap(w: &Writer, db: &Shared) -> Result<()> {
    let undo_bytes = w.txn.undo_bytes;
    let max = db.opts.txn_undo_max_bytes;
    if undo_bytes > max {
        return Err(Error::TransactionTooLarge { undo_bytes, max });
    }
    Ok(())
}

/// Past `Options::dirty_max_bytes` in memory, writes private leaves back to half of it.
pub(super) fn write_back_if_over(w: &mut Writer, db: &Shared) -> Result<()> {
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
pub(super) fn fail_on_io(db: &Shared, e: Error) -> Error {
    if let Error::Io { .. } = &e {
        db.pipeline.state().fail(Failure::Io(e.with_sources()));
    }
    e
}
