//! B-tree reads over any `NodeSource` (the writer's view now; snapshot views later):
//! point lookups and a double-ended range iterator.
//!
//! Descent is bounded: every child must sit exactly one level below its parent, and the
//! root's level is at most `TREE_DEPTH_MAX`, so a corrupt pointer cycle ends in
//! `Error::Corrupt`, never a hang (every loop has a bound).

use std::ops::Bound;

use arbor_format::constants::TREE_DEPTH_MAX;
use arbor_format::node::{LeafValue, Node};
use arbor_format::{BlockKind, ChildPtr, OverflowRef};

use crate::mvcc::modlog::ItemValue;
use crate::store::{decode, prefetch_search_lines, NodeBuf, Store, Wanted};
use crate::writer::DirtySet;
use crate::{Error, Result};

/// Where a reader gets node images from, and what holds an image while it is read (the
/// writer's view lends a slot's read guard; a snapshot owns immutable images, which is
/// what makes its ranges `Send`).
pub(crate) trait NodeSource {
    type Buf: std::ops::Deref<Target = [u8]>;
    fn node(&self, ptr: ChildPtr) -> Result<Self::Buf>;
    fn overflow(&self, r: &OverflowRef) -> Result<Vec<u8>>;
    /// Runs `f`, whose `node` calls form one descent, as one reader operation where the
    /// source has them (a snapshot enters its operation once, not once per level).
    fn descent<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R>
    where
        Self: Sized,
    {
        f()
    }
    /// Runs `f` on node `ptr` without keeping it (a descent through internal nodes): a
    /// snapshot pins the block for the call only, where `node` makes a hold that outlives
    /// it.
    #[inline]
    fn peek<R>(&self, ptr: ChildPtr, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R>
    where
        Self: Sized,
    {
        f(&self.node(ptr)?)
    }
    /// `node(ptr)` if the source has it without I/O (`None`: it may need a read).
    fn cached(&self, _ptr: ChildPtr) -> Option<Result<Self::Buf>> {
        None
    }
    /// Reads the nodes of `first` (none of them `cached`) and hands each to `arrived` with
    /// its tag once it is in memory; `arrived` returns more such nodes to read. A snapshot
    /// streams them from its device (`Store::stream_blocks`: all in flight at once, a node's
    /// follow-ups started as it arrives); this default reads one at a time.
    fn stream(&self, first: Vec<Wanted>, arrived: &mut Arrived<'_, Self::Buf>) -> Result<()> {
        let mut queue = first;
        while let Some(w) = queue.pop() {
            let buf = self.node(w.ptr)?;
            queue.extend(arrived(w.tag, buf)?);
        }
        Ok(())
    }
    /// `overflow` of every extent, in order (in one device batch where the source can).
    fn overflows(&self, refs: &[OverflowRef]) -> Result<Vec<Vec<u8>>> {
        refs.iter().map(|r| self.overflow(r)).collect()
    }
}

/// What a streamed read does with each node as it arrives (`NodeSource::stream`): the nodes
/// to read next, with their tags.
pub(crate) type Arrived<'a, B> = dyn FnMut(usize, B) -> Result<Vec<Wanted>> + 'a;

/// Sources ranges iterate: how an item's key and value leave their leaf (the writer's view
/// copies them; a snapshot lends them from the leaf it holds, design.md §12.5).
pub(crate) trait RangeSource: NodeSource {
    type Bytes: std::ops::Deref<Target = [u8]> + Clone;
    /// The bytes at `at` of a node image this source returned.
    fn lend(&self, buf: &Self::Buf, at: std::ops::Range<usize>) -> Self::Bytes;
    /// A value read into a buffer of its own (an overflow extent).
    fn own(&self, value: Vec<u8>) -> Self::Bytes;
}

/// Where `part` (a slice of `whole`) lies in it.
pub(crate) fn span(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    assert!(
        start <= whole.len() && part.len() <= whole.len() - start,
        "a slice of {} bytes at {start} lies outside its block of {}",
        part.len(),
        whole.len()
    );
    start..start + part.len()
}

/// Where a leaf item's value lies: in the leaf (its bytes there), or in an overflow extent.
enum ItemSpan {
    Inline(std::ops::Range<usize>),
    Overflow(OverflowRef),
}

/// What a range does with the item its cursor reached.
enum Step {
    /// The item's key and value, where they lie in the cursor's leaf.
    Yield(std::ops::Range<usize>, ItemSpan),
    /// An excluded bound: go on to the next item.
    Skip,
    /// Past the range's end (or where the other end already was).
    End,
}

/// Checks that a node fetched through a parent has the expected shape.
#[inline]
pub(crate) fn check_child(node: &Node<'_>, addr: u64, expect_level: Option<u8>) -> Result<()> {
    let level = node.level();
    if level > TREE_DEPTH_MAX {
        return Err(Error::corrupt(addr, format!("level {level} exceeds the depth limit")));
    }
    if let Some(expected) = expect_level {
        if level != expected {
            return Err(Error::corrupt(
                addr,
                format!("level {level} where the parent expects {expected}"),
            ));
        }
    }
    let kind_ok = match node.kind() {
        BlockKind::Leaf => level == 0,
        BlockKind::Internal => level > 0,
        _ => false,
    };
    if !kind_ok {
        return Err(Error::corrupt(addr, "tree pointer leads to a block of the wrong kind"));
    }
    Ok(())
}

/// Looks up `key`; returns the owned item value (leaf value or overflow reference).
pub(crate) fn lookup<S: NodeSource + ?Sized>(
    src: &S,
    root: ChildPtr,
    key: &[u8],
) -> Result<Option<ItemValue>> {
    let (buf, addr) = leaf_for(src, root, key)?;
    let node = decode(&buf, addr)?;
    Ok(match node.search(key) {
        Ok(i) => Some(owned_leaf_value(&node, i)),
        Err(_) => None,
    })
}

/// The leaf that holds `key` if any leaf does, and its address: the image is the caller's
/// to search (a snapshot lends the value from it without a copy).
#[inline]
pub(crate) fn leaf_for<S: NodeSource + ?Sized>(
    src: &S,
    root: ChildPtr,
    key: &[u8],
) -> Result<(S::Buf, u64)> {
    let mut ptr = root;
    let mut expect = None;
    loop {
        let buf = src.node(ptr)?;
        // Most levels below the root are cold at scale: their search lines load at once.
        prefetch_search_lines(&buf);
        let node = decode(&buf, ptr.address())?;
        check_child(&node, ptr.address(), expect)?;
        if node.level() == 0 {
            return Ok((buf, ptr.address()));
        }
        if node.is_empty() {
            return Err(Error::corrupt(ptr.address(), "empty internal node"));
        }
        let idx = node.child_index(key);
        debug_assert!(idx < node.len(), "child {idx} of a node with {} items", node.len());
        expect = Some(node.level() - 1);
        ptr = node.child(idx);
    }
}

pub(crate) fn owned_leaf_value(node: &Node<'_>, i: usize) -> ItemValue {
    match node.leaf_value(i) {
        LeafValue::Inline(v) => ItemValue::Inline(v.to_vec()),
        LeafValue::Overflow(r) => ItemValue::Overflow(r),
    }
}

/// Materialises a leaf value, reading an overflow extent if needed.
pub(crate) fn value_bytes<S: NodeSource + ?Sized>(src: &S, v: ItemValue) -> Result<Vec<u8>> {
    match v {
        ItemValue::Inline(v) => Ok(v),
        ItemValue::Overflow(r) => src.overflow(&r),
        // Leaf lookups return leaf values; a child pointer here is a tree-code bug.
        ItemValue::Child(ptr) => panic!("child pointer {ptr:?} where a leaf value was expected"),
    }
}

pub(crate) fn get<S: NodeSource + ?Sized>(
    src: &S,
    root: ChildPtr,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    match lookup(src, root, key)? {
        Some(v) => Ok(Some(value_bytes(src, v)?)),
        None => Ok(None),
    }
}

/// A position: the leaf's image and the index in it, and above it the internal nodes from
/// the root down (their pointers and the child index taken: a cursor holds only its leaf,
/// and reads a parent again when it moves to the next leaf).
struct Cursor<B> {
    /// Internal nodes, root first: pointer, level, child index taken.
    up: Vec<(ChildPtr, u8, usize)>,
    leaf: B,
    /// The cursor's index in the leaf.
    idx: usize,
    /// Items in the leaf (read once, when the cursor reaches it).
    leaf_len: usize,
}

impl<B: std::ops::Deref<Target = [u8]>> Cursor<B> {
    /// The leaf the cursor is on, and the cursor's index in it.
    #[inline]
    fn leaf(&self) -> Option<(Node<'_>, usize)> {
        Some((Node::assume(&self.leaf, BlockKind::Leaf, self.leaf_len), self.idx))
    }
}

/// The last key a cursor moving in `dir` took from its leaf (yielded, or skipped as an
/// excluded bound): a forward cursor points one past it, a backward cursor at it. A range
/// ends where its two ends meet, so each end stops before the other's last key — read in
/// place from the other cursor's leaf, never copied per item.
#[inline]
fn passed<B: std::ops::Deref<Target = [u8]>>(cur: Option<&Cursor<B>>, dir: Dir) -> Option<&[u8]> {
    let (node, idx) = cur?.leaf()?;
    let at = match dir {
        Dir::Forward => idx.checked_sub(1)?,
        Dir::Backward => idx,
    };
    (at < node.len()).then(|| node.key(at))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Forward,
    Backward,
}

/// Iterator over a key range of one tree, in either direction (`.rev()`).
pub(crate) struct Range<S: RangeSource> {
    src: S,
    root: ChildPtr,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    front: Option<Cursor<S::Buf>>,
    back: Option<Cursor<S::Buf>>,
    done: bool,
    /// The last overflow value `advance_ref` lent.
    spilled: Vec<u8>,
}

impl<S: RangeSource> Range<S> {
    pub(crate) fn new(
        src: S,
        root: ChildPtr,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Range<S> {
        Range { src, root, start, end, front: None, back: None, done: false, spilled: Vec::new() }
    }

    /// Descends from the root to the leaf that holds `target` (or the first/last leaf).
    fn seek(&self, target: Option<&[u8]>, dir: Dir) -> Result<Cursor<S::Buf>> {
        self.src.descent(|| self.seek_in_op(target, dir))
    }

    fn seek_in_op(&self, target: Option<&[u8]>, dir: Dir) -> Result<Cursor<S::Buf>> {
        let mut up = Vec::with_capacity(usize::from(TREE_DEPTH_MAX));
        let mut ptr = self.root;
        let mut expect = None;
        // Internal nodes are only looked at; the leaf is held (its level is known from its
        // parent; a root's from itself).
        while expect != Some(0) {
            let step = self.src.peek(ptr, |buf| {
                if target.is_some() {
                    prefetch_search_lines(buf);
                }
                let node = decode(buf, ptr.address())?;
                check_child(&node, ptr.address(), expect)?;
                let len = node.len();
                if node.level() == 0 {
                    return Ok(None);
                }
                if len == 0 {
                    return Err(Error::corrupt(ptr.address(), "empty internal node"));
                }
                let idx = match (target, dir) {
                    (None, Dir::Forward) => 0,
                    (None, Dir::Backward) => len - 1,
                    (Some(k), _) => node.child_index(k),
                };
                debug_assert!(idx < len, "child {idx} of a node with {len} items");
                Ok(Some((node.level(), idx, node.child(idx))))
            })?;
            let Some((level, idx, child)) = step else { break };
            up.push((ptr, level, idx));
            debug_assert!(up.len() <= usize::from(TREE_DEPTH_MAX), "seek too deep");
            expect = Some(level - 1);
            ptr = child;
        }
        let buf = self.src.node(ptr)?;
        if target.is_some() {
            prefetch_search_lines(&buf);
        }
        let node = decode(&buf, ptr.address())?;
        check_child(&node, ptr.address(), Some(0))?;
        let len = node.len();
        let idx = match (target, dir) {
            (None, Dir::Forward) => 0,
            (None, Dir::Backward) => len,
            (Some(k), _) => match node.search(k) {
                Ok(i) if dir == Dir::Backward => i + 1,
                Ok(i) | Err(i) => i,
            },
        };
        // Backward cursors point one past the next item to yield.
        debug_assert!(idx <= len, "leaf cursor {idx} past {len} items");
        Ok(Cursor { up, leaf: buf, idx, leaf_len: len })
    }

    /// Moves the cursor for `dir` to its next item and returns the item's index in the
    /// cursor's leaf (`None` at the end of the tree).
    #[inline]
    fn next_item(&mut self, dir: Dir) -> Result<Option<usize>> {
        let sought = match dir {
            Dir::Forward => self.front.is_none(),
            Dir::Backward => self.back.is_none(),
        };
        if sought {
            let target = match (dir, &self.start, &self.end) {
                (Dir::Forward, Bound::Included(k) | Bound::Excluded(k), _) => Some(k.as_slice()),
                (Dir::Backward, _, Bound::Included(k) | Bound::Excluded(k)) => Some(k.as_slice()),
                _ => None,
            };
            let cur = self.seek(target, dir)?;
            match dir {
                Dir::Forward => self.front = Some(cur),
                Dir::Backward => self.back = Some(cur),
            }
        }
        let cur = match dir {
            Dir::Forward => self.front.as_mut(),
            Dir::Backward => self.back.as_mut(),
        };
        let cur = cur.expect("a cursor was kept or just sought");
        loop {
            let len = cur.leaf_len;
            let idx = &mut cur.idx;
            match dir {
                Dir::Forward if *idx < len => {
                    *idx += 1;
                    return Ok(Some(*idx - 1));
                }
                Dir::Backward if *idx > 0 => {
                    *idx -= 1;
                    return Ok(Some(*idx));
                }
                _ => {}
            }
            if !self.src.descent(|| step_leaf(&self.src, cur, dir))? {
                return Ok(None);
            }
        }
    }

    /// What to do with item `i` of the leaf the cursor for `dir` is on: yield it (where its
    /// key and value lie in the leaf), skip it (an excluded bound), or end the range.
    #[inline]
    fn take_item(&self, dir: Dir, i: usize) -> Step {
        let (node, _) = self.cursor(dir).leaf().expect("a cursor on a leaf");
        let key = node.key(i);
        // An excluded bound positions the cursor at the bound itself.
        let excluded = match dir {
            Dir::Forward => matches!(&self.start, Bound::Excluded(s) if s.as_slice() == key),
            Dir::Backward => matches!(&self.end, Bound::Excluded(e) if e.as_slice() == key),
        };
        if excluded {
            return Step::Skip;
        }
        if !self.in_bounds(key, dir) {
            return Step::End;
        }
        let buf = node.bytes();
        let value = match node.leaf_value(i) {
            LeafValue::Inline(v) => ItemSpan::Inline(span(buf, v)),
            LeafValue::Overflow(r) => ItemSpan::Overflow(r),
        };
        Step::Yield(span(buf, key), value)
    }

    /// The cursor for `dir` (one was kept or just sought).
    #[inline]
    fn cursor(&self, dir: Dir) -> &Cursor<S::Buf> {
        let cur = match dir {
            Dir::Forward => self.front.as_ref(),
            Dir::Backward => self.back.as_ref(),
        };
        cur.expect("a cursor was kept or just sought")
    }

    /// The image of the leaf the cursor for `dir` is on.
    #[inline]
    fn leaf_buf(&self, dir: Dir) -> &S::Buf {
        &self.cursor(dir).leaf
    }

    #[inline]
    fn in_bounds(&self, key: &[u8], dir: Dir) -> bool {
        match dir {
            Dir::Forward => {
                let before_end = match &self.end {
                    Bound::Included(e) => key <= e.as_slice(),
                    Bound::Excluded(e) => key < e.as_slice(),
                    Bound::Unbounded => true,
                };
                let after_start = match &self.start {
                    Bound::Excluded(s) => key > s.as_slice(),
                    _ => true,
                };
                let not_crossed = passed(self.back.as_ref(), Dir::Backward).is_none_or(|b| key < b);
                before_end && after_start && not_crossed
            }
            Dir::Backward => {
                let after_start = match &self.start {
                    Bound::Included(s) => key >= s.as_slice(),
                    Bound::Excluded(s) => key > s.as_slice(),
                    Bound::Unbounded => true,
                };
                let before_end = match &self.end {
                    Bound::Excluded(e) => key < e.as_slice(),
                    _ => true,
                };
                let not_crossed = passed(self.front.as_ref(), Dir::Forward).is_none_or(|f| key > f);
                after_start && before_end && not_crossed
            }
        }
    }

    /// Moves the cursor for `dir` to the next item in the range: where its key and value
    /// lie in the cursor's leaf (`None` at the range's end).
    fn step(&mut self, dir: Dir) -> Option<Result<(std::ops::Range<usize>, ItemSpan)>> {
        if self.done {
            return None;
        }
        loop {
            let step = match self.next_item(dir) {
                Ok(Some(i)) => self.take_item(dir, i),
                Ok(None) => Step::End,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            match step {
                Step::Yield(key, value) => return Some(Ok((key, value))),
                Step::Skip => continue,
                Step::End => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    /// The next item for `dir`, its key and value lent by the source.
    fn advance(&mut self, dir: Dir) -> Option<Result<(S::Bytes, S::Bytes)>> {
        let (key, value) = match self.step(dir)? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        let buf = self.leaf_buf(dir);
        let key = self.src.lend(buf, key);
        let value = match value {
            ItemSpan::Inline(at) => Ok(self.src.lend(buf, at)),
            ItemSpan::Overflow(r) => self.src.overflow(&r).map(|v| self.src.own(v)),
        };
        Some(value.map(|v| (key, v)))
    }

    /// The next item for `dir`, borrowed from the range until its next step: slices of the
    /// cursor's leaf (an overflow value: of a buffer the range keeps), no lending per item.
    pub(crate) fn advance_ref(&mut self, dir: Dir) -> Option<Result<(&[u8], &[u8])>> {
        let (key, value) = match self.step(dir)? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        let value = match value {
            ItemSpan::Inline(at) => at,
            ItemSpan::Overflow(r) => match self.src.overflow(&r) {
                Ok(v) => {
                    self.spilled = v;
                    return Some(Ok((&self.leaf_buf(dir)[key], &self.spilled)));
                }
                Err(e) => return Some(Err(e)),
            },
        };
        let buf = self.leaf_buf(dir);
        Some(Ok((&buf[key], &buf[value])))
    }
}

/// Moves a cursor to the next (forward) or previous (backward) leaf when its leaf is
/// exhausted. Returns false at the end of the tree (the cursor stays where it was).
fn step_leaf<S: NodeSource>(src: &S, cur: &mut Cursor<S::Buf>, dir: Dir) -> Result<bool> {
    // Up to the lowest internal node with a next child in `dir`.
    let mut depth = cur.up.len();
    let mut next = None;
    while depth > 0 {
        let (ptr, _, idx) = cur.up[depth - 1];
        let child = src.peek(ptr, |buf| {
            let node = decode(buf, ptr.address())?;
            let n = match dir {
                Dir::Forward if idx + 1 < node.len() => Some(idx + 1),
                Dir::Backward if idx > 0 => Some(idx - 1),
                _ => None,
            };
            Ok(n.map(|n| (n, node.child(n))))
        })?;
        if let Some(found) = child {
            next = Some(found);
            break;
        }
        depth -= 1;
    }
    let Some((n, mut ptr)) = next else { return Ok(false) };
    cur.up.truncate(depth);
    let (_, level, idx) = cur.up.last_mut().expect("a level with a next child");
    *idx = n;
    // Down to the extreme leaf of the new subtree.
    let mut expect = *level - 1;
    while expect > 0 {
        let (cidx, child) = src.peek(ptr, |buf| {
            let node = decode(buf, ptr.address())?;
            check_child(&node, ptr.address(), Some(expect))?;
            if node.is_empty() {
                return Err(Error::corrupt(ptr.address(), "empty internal node"));
            }
            let cidx = match dir {
                Dir::Forward => 0,
                Dir::Backward => node.len() - 1,
            };
            Ok((cidx, node.child(cidx)))
        })?;
        cur.up.push((ptr, expect, cidx));
        ptr = child;
        expect -= 1;
    }
    let buf = src.node(ptr)?;
    let node = decode(&buf, ptr.address())?;
    check_child(&node, ptr.address(), Some(0))?;
    cur.leaf_len = node.len();
    cur.idx = match dir {
        Dir::Forward => 0,
        Dir::Backward => node.len(),
    };
    cur.leaf = buf;
    Ok(true)
}

impl<S: RangeSource> Iterator for Range<S> {
    type Item = Result<(S::Bytes, S::Bytes)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.advance(Dir::Forward)
    }
}

impl<S: RangeSource> DoubleEndedIterator for Range<S> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.advance(Dir::Backward)
    }
}

/// The bounds of every key that starts with `prefix`: from the prefix itself up to (not
/// including) the shortest key above all of them, unbounded if there is none (all `0xff`).
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

/// The writer's dirty set as a `NodeSource` for lookups and iteration.
pub(crate) struct WriterView<'a> {
    pub dirty: &'a DirtySet,
    pub s: &'a Store,
}

impl<'a> NodeSource for WriterView<'a> {
    type Buf = NodeBuf<'a>;
    fn node(&self, ptr: ChildPtr) -> Result<NodeBuf<'a>> {
        self.dirty.node(self.s, ptr)
    }
    fn overflow(&self, r: &arbor_format::OverflowRef) -> Result<Vec<u8>> {
        self.s.read_overflow(r)
    }
}

impl<'a> RangeSource for WriterView<'a> {
    type Bytes = Vec<u8>;
    fn lend(&self, buf: &NodeBuf<'a>, at: std::ops::Range<usize>) -> Vec<u8> {
        buf[at].to_vec()
    }
    fn own(&self, value: Vec<u8>) -> Vec<u8> {
        value
    }
}
