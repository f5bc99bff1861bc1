//! The compound operations of a [`WriteTree`] (pop, retain, extract, update,
//! compare-and-swap) and its iterators: [`WriteRange`], which never holds the writer
//! between steps, and [`ExtractIf`].

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;

use crate::codec::KeyRange;
use crate::tree::read::{self, WriterView};
use crate::txn::write::WriteTxn;
use crate::txn::write_tree::{meta_of, Entry, WriteTree};
use crate::Result;

impl<'t, 'db> WriteTree<'t, 'db> {
    /// Removes and returns the smallest key and its value.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut queue = tx.tree("queue")?;
    /// queue.insert(2u64.to_be_bytes(), b"second")?;
    /// queue.insert(1u64.to_be_bytes(), b"first")?;
    /// let (_, job) = queue.pop_first()?.expect("two jobs");
    /// assert_eq!(job, b"first");
    /// assert_eq!(queue.len()?, 1);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn pop_first(&mut self) -> Result<Option<Entry>> {
        let Some((k, v)) = self.first()? else { return Ok(None) };
        self.remove_bytes(&k)?;
        Ok(Some((k, v)))
    }

    /// Removes and returns the largest key and its value.
    pub fn pop_last(&mut self) -> Result<Option<Entry>> {
        let Some((k, v)) = self.last()? else { return Ok(None) };
        self.remove_bytes(&k)?;
        Ok(Some((k, v)))
    }

    /// Keeps only the entries for which `keep` returns true; returns how many it removed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("t")?;
    /// for i in 0u8..10 {
    ///     t.insert([i], [i % 2])?;
    /// }
    /// assert_eq!(t.retain(|_, v| v == [0])?, 5);
    /// assert_eq!(t.len()?, 5);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) -> Result<u64> {
        let mut removed = 0;
        for item in self.extract_if(.., |k, v| !keep(k, v))? {
            item?;
            removed += 1;
        }
        Ok(removed)
    }

    /// An iterator that removes and yields, in key order, the entries of `range` for which
    /// `pred` returns true. Entries it does not reach (the iterator dropped early) stay.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("sessions")?;
    /// t.insert(b"s1", b"expired")?;
    /// t.insert(b"s2", b"live")?;
    /// let gone: Vec<_> = t.extract_if(.., |_, v| v == b"expired")?.collect::<Result<_, _>>()?;
    /// assert_eq!(gone, [(b"s1".to_vec(), b"expired".to_vec())]);
    /// assert_eq!(t.len()?, 1);
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn extract_if<F>(
        &mut self,
        range: impl KeyRange,
        pred: F,
    ) -> Result<ExtractIf<'_, 't, 'db, F>>
    where
        F: FnMut(&[u8], &[u8]) -> bool,
    {
        let range = self.range(range)?;
        Ok(ExtractIf { tree: self, range, pred })
    }

    /// Reads `key`'s value, passes it to `f`, and stores what `f` returns (`None` removes
    /// the key); returns the value before. Atomic: the transaction is the only writer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut counters = tx.tree("counters")?;
    /// for _ in 0..3 {
    ///     counters.update(b"hits", |old| {
    ///         let n = old.map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()));
    ///         Some((n + 1).to_be_bytes().to_vec())
    ///     })?;
    /// }
    /// assert_eq!(counters.get(b"hits")?, Some(3u64.to_be_bytes().to_vec()));
    /// # Ok::<(), arbor::Error>(())
    /// ```
    pub fn update(
        &mut self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        let old = self.get(key)?;
        match f(old.as_deref()) {
            Some(new) => {
                self.insert_bytes(key, &new)?;
            }
            None if old.is_some() => {
                self.remove_bytes(key)?;
            }
            None => {}
        }
        Ok(old)
    }

    /// Stores `new` (`None` removes the key) if the current value is `expected` (`None`:
    /// absent). `Ok(Err(current))` when it is not, with the value found.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
    /// let tx = db.begin_write()?;
    /// let mut t = tx.tree("locks")?;
    /// assert_eq!(t.compare_and_swap(b"l", None, Some(b"me"))?, Ok(()));
    /// assert_eq!(t.compare_and_swap(b"l", None, Some(b"you"))?, Err(Some(b"me".to_vec())));
    /// assert_eq!(t.compare_and_swap(b"l", Some(b"me"), None)?, Ok(()));
    /// # Ok::<(), arbor::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn compare_and_swap(
        &mut self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>> {
        let key = key.as_ref();
        let current = self.get(key)?;
        if current.as_deref() != expected {
            return Ok(Err(current));
        }
        match new {
            Some(v) => {
                self.insert_bytes(key, v)?;
            }
            None if current.is_some() => {
                self.remove_bytes(key)?;
            }
            None => {}
        }
        Ok(Ok(()))
    }
}

/// Entries a [`WriteRange`] reads at once, at most (it starts at one after every change).
const RANGE_BATCH_MAX: usize = 64;

/// Iterator over a key range of a tree in the write transaction ([`WriteTree::range`]),
/// either direction (`.rev()`). It holds no borrow of the writer between steps: it reads
/// ahead a small batch, and when the transaction changed anything since (through any
/// handle) it drops the batch and reads again after the last key it returned. So removing
/// or inserting while iterating is allowed, and the range sees the tree as it is at each
/// step; keys already returned are never returned again in the same direction.
pub struct WriteRange<'t, 'db> {
    txn: &'t WriteTxn<'db>,
    name: Vec<u8>,
    /// What is left to return: past the last key returned forward (or the start bound)...
    front: Bound<Vec<u8>>,
    /// ...and before the last key returned backward (or the end bound).
    back: Bound<Vec<u8>>,
    fbuf: VecDeque<Entry>,
    bbuf: VecDeque<Entry>,
    /// `WriteTxn::changes` when the buffers were read.
    seen: u64,
    batch: usize,
    done: bool,
}

impl fmt::Debug for WriteRange<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteRange")
            .field("tree", &String::from_utf8_lossy(&self.name))
            .field("front", &self.front)
            .field("back", &self.back)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Forward,
    Backward,
}

impl<'t, 'db> WriteRange<'t, 'db> {
    pub(super) fn new(
        txn: &'t WriteTxn<'db>,
        name: Vec<u8>,
        front: Bound<Vec<u8>>,
        back: Bound<Vec<u8>>,
    ) -> WriteRange<'t, 'db> {
        let seen = txn.changes.get();
        let (fbuf, bbuf) = (VecDeque::new(), VecDeque::new());
        WriteRange { txn, name, front, back, fbuf, bbuf, seen, batch: 1, done: false }
    }

    /// Reads the next batch in `dir` between the two bounds.
    fn fetch(&mut self, dir: Dir) -> Result<()> {
        let w = self.txn.view()?;
        let meta = meta_of(&w, &self.name)?;
        let view = WriterView { dirty: &w.dirty, s: &self.txn.db.store };
        let (front, back) = (self.front.clone(), self.back.clone());
        let mut r = read::Range::new(view, meta.root, front, back);
        let buf = if dir == Dir::Forward { &mut self.fbuf } else { &mut self.bbuf };
        for _ in 0..self.batch {
            let item = if dir == Dir::Forward { r.next() } else { r.next_back() };
            match item {
                Some(item) => buf.push_back(item?),
                None => break,
            }
        }
        self.batch = (self.batch * 2).min(RANGE_BATCH_MAX);
        Ok(())
    }

    fn step(&mut self, dir: Dir) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        if self.txn.changes.get() != self.seen {
            self.fbuf.clear();
            self.bbuf.clear();
            self.batch = 1;
            self.seen = self.txn.changes.get();
        }
        let empty = if dir == Dir::Forward { self.fbuf.is_empty() } else { self.bbuf.is_empty() };
        if empty {
            if let Err(e) = self.fetch(dir) {
                self.done = true;
                return Some(Err(e));
            }
        }
        let next = if dir == Dir::Forward { self.fbuf.pop_front() } else { self.bbuf.pop_front() };
        let Some((k, v)) = next else {
            self.done = true;
            return None;
        };
        // The other end may have moved past this batch since it was read.
        let inside =
            if dir == Dir::Forward { below(&k, &self.back) } else { above(&k, &self.front) };
        if !inside {
            self.done = true;
            return None;
        }
        let bound = Bound::Excluded(k.clone());
        if dir == Dir::Forward {
            self.front = bound
        } else {
            self.back = bound
        }
        Some(Ok((k, v)))
    }
}

fn below(k: &[u8], end: &Bound<Vec<u8>>) -> bool {
    match end {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    }
}

fn above(k: &[u8], start: &Bound<Vec<u8>>) -> bool {
    match start {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    }
}

impl Iterator for WriteRange<'_, '_> {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step(Dir::Forward)
    }
}

impl DoubleEndedIterator for WriteRange<'_, '_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(Dir::Backward)
    }
}

/// Removes and yields the entries a predicate picks ([`WriteTree::extract_if`]).
pub struct ExtractIf<'a, 't, 'db, F> {
    tree: &'a mut WriteTree<'t, 'db>,
    range: WriteRange<'t, 'db>,
    pred: F,
}

impl<F> fmt::Debug for ExtractIf<'_, '_, '_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtractIf").field("range", &self.range).finish_non_exhaustive()
    }
}

impl<F: FnMut(&[u8], &[u8]) -> bool> Iterator for ExtractIf<'_, '_, '_, F> {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (k, v) = match self.range.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e)),
            };
            if (self.pred)(&k, &v) {
                return Some(self.tree.remove_bytes(&k).map(|_| (k, v)));
            }
        }
    }
}
