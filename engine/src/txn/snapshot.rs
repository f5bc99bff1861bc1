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
//! A lookup (its whole descent) and a range's block fetch are each one reader operation
//! (§10.7): it pins the snapshot's history and fails with `SnapshotExpired` if the bound
//! expired the snapshot. Iterators hold the blocks of their path between steps — pinned in
//! the buffer pool (design.md §12.2), or private or immutable images — never a lock or a
//! reader operation. A snapshot holds the store's memory through a count of its own (its
//! reader threads never write the store's count); reads of a closed store return
//! `Error::Closed`, and the close releases the device's lock whatever snapshots live.

use std::fmt;
use std::ops::Bound;

use arbor_format::constants::key_bytes_max;
use arbor_format::node::LeafValue;
use arbor_format::{ChildPtr, OverflowRef};

use crate::codec::KeyRange;
use crate::mvcc::modlog::ItemValue;
use crate::mvcc::table::Lookup;
use crate::mvcc::{ActiveGuard, RootRecord, SnapState};
use crate::store::{decode, header_generation, Block, Store, Wanted};
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::tree::catalog;
use crate::tree::read::{self, prefix_bounds, NodeSource};
use crate::txn::guard::{Detached, Guard, StoreRef};
use crate::txn::write_tree::Entry;
use crate::txn::Shared;
use crate::writer::TreeMeta;
use crate::{Error, Result};

/// A snapshot's registration. It holds the store's memory (not its device: the last `Db`
/// handle closes the store and releases its lock even while snapshots live; their reads
/// then return `Error::Closed`).
struct Inner {
    /// One count on the store per snapshot; a read clones this, not the store's own count,
    /// which every reader thread would share (design.md §12.4).
    shared: StoreRef,
    state: Arc<SnapState>,
    root: RootRecord,
    key_bytes_max: usize,
}

impl Inner {
    /// The store, for one read operation; `Error::Closed` once every `Db` handle is gone.
    #[inline]
    fn shared(&self) -> Result<StoreRef> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(Arc::clone(&self.shared))
    }

    /// The store, borrowed for a step that keeps nothing of it (no count taken);
    /// `Error::Closed` once every `Db` handle is gone.
    #[inline]
    fn store(&self) -> Result<&Shared> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(&self.shared)
    }

    /// Starts one reader operation (design.md §10.7): `SnapshotExpired` if the bound
    /// expired the snapshot; until the guard drops, the snapshot's history stays.
    #[inline]
    fn enter(&self, shared: &Shared) -> Result<ActiveGuard<'_>> {
        self.state.enter().map_err(|e| with_reason(e, shared))
    }

    /// The block `ptr` names, as of the snapshot, inside a reader operation the caller
    /// holds.
    #[inline]
    fn node_in_op<'s>(&self, shared: &'s Shared, ptr: ChildPtr) -> Result<Block<'s>> {
        self.node_via(shared, ptr, Store::read_block)
    }

    /// `node_in_op`, reading blocks from the store with `read` (`Store::read_block`, or
    /// `Store::read_block_now` where the caller must not wait for another thread's load).
    #[inline]
    fn node_via<'s>(
        &self,
        shared: &'s Shared,
        ptr: ChildPtr,
        read: fn(&'s Store, ChildPtr) -> Result<Block<'s>>,
    ) -> Result<Block<'s>> {
        let store = &shared.store;
        if ptr.generation() < self.root.gen {
            return read(store, ptr);
        }
        let image = match store.table.lookup(ptr.address(), self.root.seq) {
            // Not in memory: a block of the open generation written back early, reached
            // through a crc-pending pointer; the writer knows its crc.
            Lookup::Absent => {
                let read = read(store, store.with_written_back_crc(ptr));
                // It may have changed since the lookup: the writer files a written-back block
                // in the table before its first change, and a checkpoint then rewrites it at
                // the same address and generation, so the read may hold (or fail to verify)
                // a newer image. Looked up again after the read, an absent block had not
                // changed before it; a filed one is read from the table, rewound to our seq.
                match store.table.lookup(ptr.address(), self.root.seq) {
                    Lookup::Absent => return read,
                    Lookup::Image(image) => image,
                    Lookup::Slot(slot) => slot.image_at(self.root.seq, store.align)?,
                }
            }
            Lookup::Image(image) => image,
            Lookup::Slot(slot) => {
                debug_assert_eq!(slot.addr, ptr.address(), "the table filed a slot elsewhere");
                slot.image_at(self.root.seq, store.align)?
            }
        };
        if header_generation(&image) != Some(ptr.generation()) {
            return Err(Error::corrupt(
                ptr.address(),
                "snapshot reached a block whose generation does not match its pointer",
            ));
        }
        Ok(Block::Image(image))
    }

    fn overflow(&self, shared: &Shared, r: &OverflowRef) -> Result<Vec<u8>> {
        let _op = self.enter(shared)?;
        shared.store.read_overflow(r)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.registry.deregister(&self.state);
    }
}

/// A consistent view of the store as of one commit. `Send + Sync`; clones share one
/// registration, which is released when the last clone is dropped. A snapshot (or a tree
/// or range from it) that outlives the last `Db` handle does not keep the store open (the
/// close releases its lock; its reads return `Error::Closed`), only its memory, until it
/// drops.
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.inner.root.seq).finish()
    }
}

impl Snapshot {
    pub(crate) fn new(shared: &Arc<Shared>) -> Snapshot {
        let (root, state) = shared.registry.register();
        let key_bytes_max = key_bytes_max(shared.store.block_bytes);
        let inner = Inner { shared: Arc::new(Arc::clone(shared)), state, root, key_bytes_max };
        Snapshot { inner: Arc::new(inner) }
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
        SnapSource { inner: Arc::clone(&self.inner), root: None, in_op: AtomicBool::new(false) }
    }

    /// The source for one lookup through `shared`: one reader operation for the whole
    /// descent, not one per block.
    #[inline]
    fn op<'a>(&'a self, shared: &'a Shared) -> Result<OpSource<'a>> {
        let op = self.inner.enter(shared)?;
        Ok(OpSource { inner: &self.inner, shared, _op: op, held: None })
    }

    /// The named tree as of this snapshot, or `None` if it did not exist.
    pub fn tree(&self, name: &str) -> Result<Option<Tree>> {
        if name.len() > self.inner.key_bytes_max {
            return Ok(None);
        }
        let shared = self.inner.shared()?;
        let op = self.op(&shared)?;
        match read::lookup(&op, self.inner.root.catalog, name.as_bytes())? {
            Some(ItemValue::Inline(bytes)) => {
                let meta = catalog::decode(&bytes, self.inner.root.catalog.address())?;
                // A copy: a tree holds no pin (it may outlive the store's last handle).
                let image = self.inner.node_in_op(&shared, meta.root)?;
                let image = image.into_image(shared.store.align);
                let len = image.len();
                let root = Held::new(Guard::in_image(image, 0..len), meta.root.address());
                drop(op);
                Ok(Some(Tree { snap: self.clone(), meta, root }))
            }
            Some(_) => Err(Error::corrupt(self.inner.root.catalog.address(), "bad catalog entry")),
            None => Ok(None),
        }
    }

    /// Reads the internal nodes of the catalog and of every tree into the buffer pool, at
    /// most `max_reads` blocks (design.md §12.8); returns how many it read.
    pub(crate) fn warm_internal_nodes(&self, max_reads: usize) -> Result<usize> {
        let catalog = self.inner.root.catalog;
        let mut roots = vec![catalog];
        let entries = read::Range::new(self.source(), catalog, Bound::Unbounded, Bound::Unbounded);
        for entry in entries {
            roots.push(catalog::decode(&entry?.1, catalog.address())?.root);
        }
        let shared = self.inner.shared()?;
        let op = self.op(&shared)?;
        crate::tree::warm::internal_nodes(&op, &roots, max_reads)
    }

    /// Names of every tree in this snapshot, sorted.
    pub fn tree_names(&self) -> Result<Vec<String>> {
        let range = read::Range::new(
            self.source(),
            self.inner.root.catalog,
            Bound::Unbounded,
            Bound::Unbounded,
        );
        range.map(|item| item.map(|(k, _)| String::from_utf8_lossy(&k).into_owned())).collect()
    }
}

/// A tree as of a snapshot. Owns a clone of the snapshot, so it can outlive the handle it
/// came from and move across threads. Keys are any byte form, as in [`crate::WriteTree`].
#[derive(Clone)]
pub struct Tree {
    snap: Snapshot,
    meta: TreeMeta,
    /// The root node's image as of the snapshot (immutable, like every image a snapshot
    /// reads): lookups and ranges start from it without a pool lookup, and the hottest
    /// block is not a line every reader thread writes (its pin).
    root: Held,
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree")
            .field("seq", &self.snap.seq())
            .field("entries", &self.meta.entries)
            .finish()
    }
}

impl Tree {
    /// The source for one lookup through `shared`, starting from the held root image.
    #[inline]
    fn op<'a>(&'a self, shared: &'a Shared) -> Result<OpSource<'a>> {
        let mut op = self.snap.op(shared)?;
        op.held = Some((self.meta.root, &self.root));
        Ok(op)
    }

    /// The store, for one operation (`Error::Closed` once every `Db` handle is gone).
    #[inline]
    fn shared(&self) -> Result<StoreRef> {
        self.snap.inner.shared()
    }

    /// The value of `key` at the snapshot, or `None`. The value is lent without a copy (see
    /// [`Guard`]): deref it to `&[u8]`, or `to_vec()` for an owned copy.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// # let mut tx = db.begin_write()?;
    /// # tx.tree("users")?.insert(b"alice", b"admin")?;
    /// # tx.commit()?;
    /// let snap = db.snapshot()?;
    /// let users = snap.tree("users")?.expect("the tree exists");
    /// assert_eq!(users.get(b"alice")?.as_deref(), Some(&b"admin"[..]));
    /// assert!(users.get(b"nobody")?.is_none());
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Guard>> {
        let key = key.as_ref();
        if key.len() > self.snap.inner.key_bytes_max {
            return Ok(None);
        }
        let shared = self.shared()?;
        let (block, at) = {
            let op = self.op(&shared)?;
            let (buf, addr) = read::leaf_for(&op, self.meta.root, key)?;
            let node = decode(&buf, addr)?;
            let Ok(i) = node.search(key) else { return Ok(None) };
            let at = match node.leaf_value(i) {
                LeafValue::Inline(v) => read::span(&buf, v),
                LeafValue::Overflow(r) => return Ok(Some(Guard::owned(op.overflow(&r)?))),
            };
            let block = match buf {
                OpImage::Fetched(block) => Detached::new(block),
                OpImage::Held(root) => return Ok(Some(root.lend(at))),
            };
            (block, at)
        };
        Ok(Some(Guard::lend(shared, block, at)))
    }

    /// The values of many keys at once, in the order given (`None` where absent): the keys
    /// descend the tree together, level by level, and the blocks a level needs that are not
    /// in memory are read in one device batch (design.md §12.6) — for cold reads, one
    /// round of I/O per level instead of one read per key and level.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// tx.tree("t")?.insert(b"a", b"1")?;
    /// tx.tree("t")?.insert(b"c", b"3")?;
    /// tx.commit()?;
    /// let t = db.snapshot()?.tree("t")?.expect("exists");
    /// let got = t.get_many(&[&b"c"[..], b"b", b"a"])?;
    /// assert_eq!(got, [Some(b"3".to_vec()), None, Some(b"1".to_vec())]);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        let shared = self.shared()?;
        let op = self.op(&shared)?;
        crate::tree::many::get_many(&op, self.meta.root, &keys)
    }

    /// Whether `key` is present (reads no overflow value).
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        if key.len() > self.snap.inner.key_bytes_max {
            return Ok(false);
        }
        let shared = self.shared()?;
        let op = self.op(&shared)?;
        Ok(read::lookup(&op, self.meta.root, key)?.is_some())
    }

    /// Iterates a key range in order; `.rev()` iterates backwards. Bounds are any byte form
    /// (see [`KeyRange`]). The range is `Send`: it can move to another thread.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// # let tx = db.begin_write()?;
    /// # let mut t = tx.tree("t")?;
    /// # for k in [b"a", b"b", b"c"] { t.insert(k, b"")?; }
    /// # tx.commit()?;
    /// let tree = db.snapshot()?.tree("t")?.expect("exists");
    /// let range = tree.range(b"a"..b"c")?;
    /// let n = std::thread::spawn(move || range.count()).join().unwrap();
    /// assert_eq!(n, 2);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn range(&self, range: impl KeyRange) -> Result<Range> {
        let (start, end) = range.into_bounds();
        self.range_owned(start, end)
    }

    /// Iterates the keys that start with `prefix`, in order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Range> {
        let (start, end) = prefix_bounds(prefix.as_ref());
        self.range_owned(start, end)
    }

    /// Iterates the whole tree.
    pub fn iter(&self) -> Result<Range> {
        self.range_owned(Bound::Unbounded, Bound::Unbounded)
    }

    fn range_owned(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Range> {
        self.snap.inner.shared()?;
        let mut src = self.snap.source();
        src.root = Some((self.meta.root, self.root.clone()));
        let inner = read::Range::new(src, self.meta.root, start, end);
        Ok(Range { inner })
    }

    /// Number of keys. A `Result`, as in [`crate::WriteTree::len`]: `Error::Closed` once
    /// the store is closed.
    pub fn len(&self) -> Result<u64> {
        self.snap.inner.shared()?;
        Ok(self.meta.entries)
    }

    /// Whether the tree held no entry at the snapshot.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The entry with the smallest key, or `None` for an empty tree (owned copies).
    pub fn first(&self) -> Result<Option<Entry>> {
        Ok(self.iter()?.next().transpose()?.map(|(k, v)| (k.into_vec(), v.into_vec())))
    }

    /// The entry with the largest key, or `None` for an empty tree (owned copies).
    pub fn last(&self) -> Result<Option<Entry>> {
        Ok(self.iter()?.next_back().transpose()?.map(|(k, v)| (k.into_vec(), v.into_vec())))
    }
}

/// Iterator over a key range of a snapshot's tree ([`Tree::range`]), either direction
/// (`.rev()`). `Send + Sync`; holds images, never a lock, between steps.
pub struct Range {
    inner: read::Range<SnapSource>,
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Range").finish_non_exhaustive()
    }
}

impl Range {
    /// The next entry, its key and value borrowed from the range until its next step: no
    /// guard per entry, the fastest way to scan (like a RocksDB iterator's `key()` and
    /// `value()`, or an LMDB cursor's slices). Mixes freely with `next` and `next_back`.
    ///
    /// ```
    /// # let db = arbor::Db::memory(16 << 20)?;
    /// # let tx = db.begin_write()?;
    /// # let mut t = tx.tree("t")?;
    /// # for k in [b"a", b"b", b"c"] { t.insert(k, b"v")?; }
    /// # tx.commit()?;
    /// let tree = db.snapshot()?.tree("t")?.expect("exists");
    /// let mut range = tree.range(b"b"..)?;
    /// let mut bytes = 0;
    /// while let Some(entry) = range.next_ref() {
    ///     let (key, value) = entry?;
    ///     bytes += key.len() + value.len();
    /// }
    /// assert_eq!(bytes, 4);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn next_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        self.inner.advance_ref(read::Dir::Forward)
    }

    /// As [`Range::next_ref`], from the range's other end.
    pub fn next_back_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        self.inner.advance_ref(read::Dir::Backward)
    }
}

impl Iterator for Range {
    type Item = Result<(Guard, Guard)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl DoubleEndedIterator for Range {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back()
    }
}

/// Block images as of the snapshot's seq, for ranges: each block fetch is a reader
/// operation of its own (a range holds no operation between steps) and checks that the
/// store is still open.
struct SnapSource {
    inner: Arc<Inner>,
    /// The tree's root image, lent instead of fetched.
    root: Option<(ChildPtr, Held)>,
    /// A descent (`NodeSource::descent`) holds a reader operation: its block fetches do
    /// not enter one each. Only the thread that has the range (`&mut`) descends.
    in_op: AtomicBool,
}

/// Clears `SnapSource::in_op` when a descent ends, unwinding too.
struct InOp<'a>(&'a AtomicBool);

impl Drop for InOp<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Block images as of the snapshot's seq, for one lookup that holds the store and one
/// reader operation throughout (one `enter` per lookup, not per level).
struct OpSource<'a> {
    inner: &'a Inner,
    shared: &'a Shared,
    _op: ActiveGuard<'a>,
    /// A block image the caller holds (a tree's root), lent instead of fetched.
    held: Option<(ChildPtr, &'a Held)>,
}

/// A block image for one lookup: fetched (pinned in the pool, or an image), or lent by the
/// caller for the lookup's length.
enum OpImage<'a> {
    Fetched(Block<'a>),
    Held(&'a Held),
}

impl std::ops::Deref for OpImage<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            OpImage::Fetched(image) => image,
            OpImage::Held(root) => root,
        }
    }
}

/// A block a range holds between steps. A leaf's items are lent from it, so its hold is
/// shared by their guards; an internal node is only read (one hold, no allocation).
#[derive(Clone)]
enum Held {
    Leaf(Arc<Guard>),
    Internal(Guard),
}

impl Held {
    /// Holds `block`, read from address `addr` (a block that fails to decode is held as a
    /// leaf; the reader reports it when it decodes it).
    fn new(block: Guard, addr: u64) -> Held {
        match decode(&block, addr) {
            Ok(node) if node.level() > 0 => Held::Internal(block),
            _ => Held::Leaf(Arc::new(block)),
        }
    }

    /// The bytes at `at`, lent from a leaf (copied from an internal node, which lends none).
    #[inline]
    fn lend(&self, at: std::ops::Range<usize>) -> Guard {
        match self {
            Held::Leaf(block) => Guard::within(block, at),
            Held::Internal(block) => Guard::owned(block[at].to_vec()),
        }
    }
}

impl std::ops::Deref for Held {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Held::Leaf(block) => block,
            Held::Internal(block) => block,
        }
    }
}

impl NodeSource for SnapSource {
    type Buf = Held;
    fn node(&self, ptr: ChildPtr) -> Result<Held> {
        if let Some((root, held)) = &self.root {
            if *root == ptr {
                // Still `Closed` once the store is.
                self.inner.shared()?;
                return Ok(held.clone());
            }
        }
        let shared = self.inner.shared()?;
        // Inside a descent the caller holds the reader operation.
        let _op = match self.in_op.load(Ordering::Relaxed) {
            true => None,
            false => Some(self.inner.enter(&shared)?),
        };
        let block = Detached::new(self.inner.node_in_op(&shared, ptr)?);
        let len = shared.store.block_bytes as usize;
        Ok(Held::new(Guard::lend(shared, block, 0..len), ptr.address()))
    }

    /// Internal nodes of a seek or a step to the next leaf: pinned for `f` only, no hold.
    #[inline]
    fn peek<R>(&self, ptr: ChildPtr, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        if let Some((root, held)) = &self.root {
            if *root == ptr {
                self.inner.store()?;
                return f(held);
            }
        }
        let shared = self.inner.store()?;
        let _op = match self.in_op.load(Ordering::Relaxed) {
            true => None,
            false => Some(self.inner.enter(shared)?),
        };
        f(&self.inner.node_in_op(shared, ptr)?)
    }

    fn descent<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let shared = self.inner.store()?;
        let _op = self.inner.enter(shared)?;
        self.in_op.store(true, Ordering::Relaxed);
        let _clear = InOp(&self.in_op);
        f()
    }

    fn overflow(&self, r: &OverflowRef) -> Result<Vec<u8>> {
        let shared = self.inner.shared()?;
        self.inner.overflow(&shared, r)
    }
}

impl read::RangeSource for SnapSource {
    type Bytes = Guard;
    #[inline]
    fn lend(&self, buf: &Held, at: std::ops::Range<usize>) -> Guard {
        buf.lend(at)
    }
    fn own(&self, value: Vec<u8>) -> Guard {
        Guard::owned(value)
    }
}

impl<'a> OpSource<'a> {
    /// The held root, or block `ptr` as of the snapshot, reading from the store with `read`.
    #[inline]
    fn node_via(
        &self,
        ptr: ChildPtr,
        read: fn(&'a Store, ChildPtr) -> Result<Block<'a>>,
    ) -> Result<OpImage<'a>> {
        match self.held {
            Some((held, image)) if held == ptr => Ok(OpImage::Held(image)),
            _ => self.inner.node_via(self.shared, ptr, read).map(OpImage::Fetched),
        }
    }
}

impl<'a> NodeSource for OpSource<'a> {
    type Buf = OpImage<'a>;
    #[inline]
    fn node(&self, ptr: ChildPtr) -> Result<OpImage<'a>> {
        self.node_via(ptr, Store::read_block)
    }

    fn overflow(&self, r: &OverflowRef) -> Result<Vec<u8>> {
        self.shared.store.read_overflow(r)
    }

    fn overflows(&self, refs: &[OverflowRef]) -> Result<Vec<Vec<u8>>> {
        self.shared.store.read_overflows(refs)
    }

    /// The held root, blocks of the snapshot's generation (memory, through the readers'
    /// table), and older blocks in flight or resident in the pool. Never waits for another
    /// thread's load: a streamed read calls this while it holds frames of its own in
    /// loading, and two streams waiting for each other's frames would never finish.
    fn cached(&self, ptr: ChildPtr) -> Option<Result<OpImage<'a>>> {
        let held = self.held.is_some_and(|(h, _)| h == ptr);
        if held || ptr.generation() >= self.inner.root.gen {
            return Some(self.node_via(ptr, Store::read_block_now));
        }
        self.shared.store.hit(ptr).map(|b| Ok(OpImage::Fetched(b)))
    }

    /// Blocks older than the snapshot's generation (all that `cached` leaves) stream from
    /// the store.
    fn stream(
        &self,
        first: Vec<Wanted>,
        arrived: &mut read::Arrived<'_, OpImage<'a>>,
    ) -> Result<()> {
        // Blocks of the snapshot's generation may change in place: only `node` reads them.
        let older = |reads: &[Wanted]| {
            for Wanted { ptr, .. } in reads {
                let gen = self.inner.root.gen;
                assert!(ptr.generation() < gen, "a device read of {ptr:?} at generation {gen}");
            }
        };
        older(&first);
        self.shared.store.stream_blocks(first, &mut |tag, block| {
            let next = arrived(tag, OpImage::Fetched(block))?;
            older(&next);
            Ok(next)
        })
    }
}

/// Fills in which bound expired a snapshot (the registry keeps the last reason; design.md
/// §10.7).
fn with_reason(e: Error, shared: &Shared) -> Error {
    match e {
        Error::SnapshotExpired { what } if what.is_empty() => {
            Error::SnapshotExpired { what: shared.registry.lock().expiry_reason.clone() }
        }
        e => e,
    }
}
