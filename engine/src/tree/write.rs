//! B-tree writes on the writer's state: copy-on-write descent, insert with splits, remove
//! with merges and root collapse. Every change goes through the writer's logged node edits.
//!
//! Splitting: the split point is chosen on the virtual node (old items plus the new one) so
//! that both halves fit whatever the item sizes (every item is at most half a node, so a
//! fitting point always exists). Appends past the last key of a node on the tree's right
//! edge split at the end, so ascending loads fill nodes completely, as LMDB's append mode
//! does (design.md §4.1).
//!
//! Merging: a node whose items use less than a quarter of its space is merged with a
//! sibling when both fit in one node, else items move over from the sibling until the two
//! are about even; a root with one child is replaced by that child, so a tree whose keys are
//! all removed shrinks back to one empty leaf.

use arbor_format::constants::{
    CHILD_PTR_BYTES, HEADER_BYTES, OVERFLOW_REF_BYTES, SLOT_BYTES, TREE_DEPTH_MAX,
};
use arbor_format::node::{Node, ValueRef};
use arbor_format::{BlockKind, ChildPtr};

use crate::mvcc::modlog::ItemValue;
use crate::store::decode;
use crate::store::Store;
use crate::tree::fill;
use crate::tree::read::{check_child, leaf_for, WriterView};
use crate::writer::{Edit, Need, Prefetch};
use crate::{Error, Result};

/// Where a copy-on-write descent goes: to the leaf for a key, or along the first or last
/// child at every level.
#[derive(Clone, Copy)]
pub(super) enum Aim<'k> {
    Key(&'k [u8]),
    First,
    Last,
}

pub(super) use crate::writer::PathElem;

/// Blocks one insert or remove may allocate in the worst case: a copy and a split sibling
/// per level, plus a new root.
pub(crate) fn blocks_per_op_max(root_level: u8) -> u64 {
    2 * (u64::from(root_level) + 2) + 1
}

/// Bytes item `i` takes: its slot, key and value (inline bytes, an overflow reference or a
/// child pointer: the slot records each one's length), read off the slot alone.
pub(super) fn item_bytes(node: &Node<'_>, i: usize) -> usize {
    let slot = node.slot(i);
    debug_assert_eq!(
        slot.val_len,
        match (node.level(), node.value(i)) {
            (0, ValueRef::Inline(v)) => v.len(),
            (0, ValueRef::Overflow(_)) => OVERFLOW_REF_BYTES,
            _ => CHILD_PTR_BYTES,
        },
        "value length of item {i} of block {}",
        node.header().address()
    );
    SLOT_BYTES + slot.key_len + slot.val_len
}

fn capacity(s: &Store) -> usize {
    s.block_bytes as usize - HEADER_BYTES
}

pub(super) fn root_level(edit: &Edit<'_>, s: &Store, root: ChildPtr) -> Result<u8> {
    let buf = edit.node(s, root)?;
    Ok(decode(&buf, root.address())?.level())
}

/// One level of a descent, decided on the node in one look.
enum Step {
    /// A leaf, and where the aimed key is in it (found, or where it would go).
    Leaf(std::result::Result<usize, usize>),
    Child {
        level: u8,
        idx: usize,
        child: ChildPtr,
    },
}

fn decide(node: &Node<'_>, addr: u64, expect: Option<u8>, aim: Aim<'_>) -> Result<Step> {
    let level = node.level();
    // The node was decoded (`Node::decode_trusted`: kind matches level, level within the
    // depth limit), so only the level the parent expects is left to check.
    debug_assert!(check_child(node, addr, None).is_ok(), "decoded block {addr} is not a node");
    if expect.is_some_and(|e| e != level) {
        check_child(node, addr, expect)?;
    }
    if level == 0 {
        return Ok(Step::Leaf(match aim {
            Aim::Key(key) => node.search(key),
            Aim::First => Err(0),
            Aim::Last => Err(node.len()),
        }));
    }
    if node.is_empty() {
        return Err(Error::corrupt(addr, "empty internal node"));
    }
    let idx = match aim {
        Aim::Key(key) => node.child_index(key),
        Aim::First => 0,
        Aim::Last => node.len() - 1,
    };
    Ok(Step::Child { level, idx, child: node.child(idx) })
}

/// The copy-on-write path to a leaf, and where the aimed key is in the leaf.
pub(super) struct Descent {
    pub path: Vec<PathElem>,
    pub slot: std::result::Result<usize, usize>,
}

/// What a removal's read-only search of a subtree it would have to copy found.
enum Probe {
    /// The key is not there: nothing is copied.
    Absent,
    /// The key is there; `Some(slot)` when `ptr` is the leaf itself (its copy holds the same
    /// items, so the descent does not search it again).
    Present(Option<usize>),
}

/// Whether the subtree at `ptr` holds the key `aim` names (always, for first and last): one
/// read-only descent, no value copied (design.md §4.1).
fn probe(edit: &Edit<'_>, s: &Store, ptr: ChildPtr, aim: Aim<'_>) -> Result<Probe> {
    let Aim::Key(key) = aim else { return Ok(Probe::Present(None)) };
    let (buf, addr) = leaf_for(&WriterView { dirty: edit.dirty, s }, ptr, key)?;
    Ok(match decode(&buf, addr)?.search(key) {
        Err(_) => Probe::Absent,
        Ok(slot) => Probe::Present((addr == ptr.address()).then_some(slot)),
    })
}

/// Makes `ptr` writable for a descent and decides its step on the copy; `None`, with nothing
/// copied, when a removal (`!verified`) finds the key absent in a read-only search first.
/// When that search ended in `ptr` itself, the leaf the parent expects, the copy holds the
/// same items: its slot is taken from the search, not searched again.
fn copy_step(
    edit: &mut Edit<'_>,
    s: &Store,
    ptr: ChildPtr,
    expect: Option<u8>,
    aim: Aim<'_>,
    verified: bool,
) -> Result<Option<(u64, Step)>> {
    let found = match verified {
        true => None,
        false => match probe(edit, s, ptr, aim)? {
            Probe::Absent => return Ok(None),
            Probe::Present(slot) => slot,
        },
    };
    let addr = edit.make_writable(s, ptr)?;
    let step = match found {
        // `leaf_for` checked the node is a leaf; the parent expects one.
        Some(slot) if expect.is_none_or(|e| e == 0) => {
            debug_assert!(
                matches!(
                    edit.peek(addr, |n| decide(n, addr, expect, aim)),
                    Ok(Step::Leaf(Ok(at))) if at == slot
                ),
                "copy {addr} does not hold the key at slot {slot} as its source did"
            );
            Step::Leaf(Ok(slot))
        }
        _ => edit.peek(addr, |n| decide(n, addr, expect, aim))?,
    };
    Ok(Some((addr, step)))
}

/// Copies the path from the root to the leaf `aim` names into the open generation. A node
/// already dirty and resident is found with one lookup and read under one lock: a path this
/// transaction already owns is not hashed again per edit (design.md §4.1). With
/// `must_exist` (a removal), the part still to be copied is first searched read-only, and
/// `None` returned with nothing changed when the key is absent.
pub(super) fn cow_path(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    aim: Aim<'_>,
    must_exist: bool,
) -> Result<Option<Descent>> {
    // The transaction's path buffer, handed back by the caller after a change (a removal of
    // a missing key drops it: the next operation allocates one again).
    let mut path = std::mem::take(&mut edit.txn.path_buf);
    path.clear();
    let mut verified = !must_exist;
    // An insert writes below its leaf's heap start: those lines load too (design.md §4.1).
    let near_leaf = if must_exist { Prefetch::Search } else { Prefetch::Insert };
    let top =
        edit.dirty.peek_resident(*root, Prefetch::No, |n| decide(n, root.address(), None, aim));
    let (mut cur, mut step) = match top {
        Some(step) => (root.address(), step?),
        None => {
            let Some((addr, step)) = copy_step(edit, s, *root, None, aim, verified)? else {
                return Ok(None);
            };
            verified = true;
            if addr != root.address() {
                *root = edit.dirty_ptr(addr);
            }
            (addr, step)
        }
    };
    for _ in 0..=TREE_DEPTH_MAX {
        let (level, idx, child) = match step {
            Step::Child { level, idx, child } => (level, idx, child),
            Step::Leaf(Err(_)) if !verified => return Ok(None),
            Step::Leaf(slot) => {
                assert!(
                    !must_exist || slot.is_ok(),
                    "key vanished from block {cur} between lookup and removal"
                );
                path.push(PathElem { addr: cur, idx: 0 });
                return Ok(Some(Descent { path, slot }));
            }
        };
        path.push(PathElem { addr: cur, idx });
        let expect = Some(level - 1);
        let caddr = child.address();
        // Leaves and their parents are prefetched; the few levels above stay cached.
        let prefetch = if level <= 2 { near_leaf } else { Prefetch::No };
        if let Some(next) =
            edit.dirty.peek_resident(child, prefetch, |n| decide(n, caddr, expect, aim))
        {
            (cur, step) = (caddr, next?);
            continue;
        }
        let Some((copy, next)) = copy_step(edit, s, child, expect, aim, verified)? else {
            return Ok(None);
        };
        verified = true;
        if copy != caddr {
            edit.set_child(cur, idx, edit.dirty_ptr(copy))?;
        }
        debug_assert!(edit.dirty.holds(edit.dirty_ptr(copy)), "copied child {copy} is dirty");
        (cur, step) = (copy, next);
    }
    // Every step checked the child's level (one less than its parent's, at most
    // TREE_DEPTH_MAX), so the loop reaches a leaf within TREE_DEPTH_MAX + 1 steps.
    unreachable!("descent from block {} passed the depth limit", root.address())
}

/// Checks there are free blocks for one insert or removal: against the deepest possible tree
/// first (no node read), and only when that fails against the tree's actual depth.
fn reserve_op(edit: &mut Edit<'_>, s: &Store, root: ChildPtr, need: Need) -> Result<()> {
    let deepest = blocks_per_op_max(TREE_DEPTH_MAX);
    if edit.alloc.free_blocks() >= deepest + edit.reserve_blocks {
        return Ok(());
    }
    let level = root_level(edit, s, root)?;
    edit.reserve_for(s, blocks_per_op_max(level), need)
}

/// Inserts or replaces `key`; returns the old value.
pub(crate) fn insert(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    owner: u64,
    key: &[u8],
    value: ItemValue,
) -> Result<Option<ItemValue>> {
    insert_ref(edit, s, root, owner, key, value.as_ref())
}

/// [`insert`] of a borrowed value (the value is copied into the leaf, never owned).
pub(crate) fn insert_ref(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    owner: u64,
    key: &[u8],
    value: ValueRef<'_>,
) -> Result<Option<ItemValue>> {
    reserve_op(edit, s, *root, Need::Grow)?;
    let descent = cow_path(edit, s, root, Aim::Key(key), false)?;
    let Descent { path, slot } = descent.expect("a descent without must_exist reaches a leaf");
    crate::fault::hit(crate::fault::FaultPoint::TreeInsert);
    debug_assert!(edit.dirty.holds(*root), "after the copy-on-write descent the root is dirty");
    debug_assert!(path.len() <= usize::from(TREE_DEPTH_MAX) + 1, "a path deeper than a tree");
    let leaf = path.last().expect("a cow path holds at least the root").addr;
    let old = match slot {
        Ok(slot) => match edit.node_replace(leaf, slot, value)? {
            Some(old) => Some(old),
            None => {
                let (_, old) = edit.node_remove(leaf, slot)?;
                insert_split(edit, s, root, owner, &path, slot, key, value)?;
                Some(old)
            }
        },
        Err(slot) => {
            if !edit.node_insert(leaf, slot, key, value)? {
                insert_split(edit, s, root, owner, &path, slot, key, value)?;
            }
            None
        }
    };
    edit.txn.path_buf = path;
    Ok(old)
}

/// Chooses how many items of the virtual node (old items with the new one at `slot`) stay
/// on the left. Both halves fit; balanced, except that an `append` (past the last key of a
/// node on the tree's right edge) keeps the left as full as it goes (design.md §4.1).
fn pick_split(
    node: &Node<'_>,
    slot: usize,
    new_bytes: usize,
    cap: usize,
    append: bool,
) -> Result<usize> {
    let n = node.len();
    let size = |v: usize| match v.cmp(&slot) {
        std::cmp::Ordering::Less => item_bytes(node, v),
        std::cmp::Ordering::Equal => new_bytes,
        std::cmp::Ordering::Greater => item_bytes(node, v - 1),
    };
    let total: usize = (0..=n).map(size).sum();
    if append && slot == n && total - new_bytes <= cap && new_bytes <= cap && n > 0 {
        return Ok(n);
    }
    let mut best: Option<(usize, usize)> = None;
    let mut left = 0usize;
    for j in 1..=n {
        left += size(j - 1);
        let right = total - left;
        if left <= cap && right <= cap {
            let imbalance = left.abs_diff(right);
            if best.is_none_or(|(_, b)| imbalance < b) {
                best = Some((j, imbalance));
            } else if left > right {
                // Past the balance point the imbalance only grows.
                break;
            }
        }
    }
    // Every item is at most half a node (key and inline value limits), so some point fits.
    let split = best.map(|(j, _)| j);
    assert!(split.is_some(), "no split point of block {} fits {n} items", node.header().address());
    Ok(split.unwrap_or(0))
}

/// How deep the path runs along the tree's right edge: nodes at depths up to the result took
/// no child but the last above them (ascending keys arrive there).
fn right_edge_depth(edit: &Edit<'_>, path: &[PathElem]) -> Result<usize> {
    for (depth, elem) in path.iter().enumerate().take(path.len() - 1) {
        if edit.peek(elem.addr, |n| Ok(elem.idx + 1 != n.len()))? {
            return Ok(depth);
        }
    }
    Ok(path.len() - 1)
}

#[allow(clippy::too_many_arguments)]
fn insert_split(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    owner: u64,
    path: &[PathElem],
    mut slot: usize,
    key: &[u8],
    value: ValueRef<'_>,
) -> Result<()> {
    let cap = capacity(s);
    let mut depth = path.len() - 1;
    let edge = right_edge_depth(edit, path)?;
    // The separator and new sibling carried up from the level below.
    let mut carried: Option<(Vec<u8>, ChildPtr)> = None;
    loop {
        let (key, value) = match &carried {
            None => (key, value),
            Some((sep, ptr)) => (sep.as_slice(), ValueRef::Child(*ptr)),
        };
        let addr = path[depth].addr;
        if edit.node_insert(addr, slot, key, value)? {
            return Ok(());
        }
        let append = depth <= edge;
        // A leaf first fills a private sibling (design.md §4.1); appends keep it full.
        let may_fill = edit.fill_siblings && carried.is_none() && !append;
        if may_fill && fill::insert_into_sibling(edit, path, slot, key, value, cap)? {
            return Ok(());
        }
        let new_bytes = SLOT_BYTES + key.len() + value.len();
        let (level, keep_left) = edit.peek(addr, |node| {
            Ok((node.level(), pick_split(node, slot, new_bytes, cap, append)?))
        })?;
        debug_assert!(keep_left >= 1, "a split keeps at least one item on the left");
        let kind = if level == 0 { BlockKind::Leaf } else { BlockKind::Internal };
        let right = edit.new_node(s, kind, level, owner)?;
        let placed = if slot < keep_left {
            edit.move_tail(addr, keep_left - 1, right)?;
            edit.node_insert(addr, slot, key, value)?
        } else {
            edit.move_tail(addr, keep_left, right)?;
            edit.node_insert(right, slot - keep_left, key, value)?
        };
        assert!(placed, "split of block {addr} at {keep_left}: the new item fits neither half");
        let sep = edit.peek(right, |n| Ok(n.key(0).to_vec()))?;
        if level > 0 {
            // The right node's first child is now bounded below by the separator in the
            // parent; its own first key is "minus infinity". `right` is private: no entry.
            edit.dirty.edit_unlogged(right, |r| {
                let cleared = r.set_key(0, b"");
                assert!(cleared.is_ok(), "cannot clear the first key of split block {right}");
                Ok(())
            })?;
        }
        let right_ptr = edit.dirty_ptr(right);
        if depth == 0 {
            let new_root = edit.new_node(s, BlockKind::Internal, level + 1, owner)?;
            let left_ptr = edit.dirty_ptr(addr);
            let ok = edit.node_insert(new_root, 0, b"", ValueRef::Child(left_ptr))?
                && edit.node_insert(new_root, 1, &sep, ValueRef::Child(right_ptr))?;
            assert!(ok, "new root {new_root} cannot hold two children");
            *root = edit.dirty_ptr(new_root);
            return Ok(());
        }
        depth -= 1;
        slot = path[depth].idx + 1;
        carried = Some((sep, right_ptr));
    }
}

/// Removes `key`; returns the old value.
pub(crate) fn remove(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    key: &[u8],
) -> Result<Option<ItemValue>> {
    reserve_op(edit, s, *root, Need::Shrink)?;
    let Some(Descent { path, slot }) = cow_path(edit, s, root, Aim::Key(key), true)? else {
        return Ok(None);
    };
    debug_assert!(edit.dirty.holds(*root), "after the copy-on-write descent the root is dirty");
    let leaf = path.last().expect("a cow path holds at least the root").addr;
    let slot = slot.unwrap_or_else(|_| panic!("removal found no key in block {leaf}"));
    let (old, leaf_used) = edit.node_remove_value(leaf, slot)?;
    rebalance_from(edit, s, root, &path, false, Some(leaf_used))?;
    edit.txn.path_buf = path;
    Ok(Some(old))
}

/// Bytes the items of `addr` use (slots, keys, values) and how many there are: read off the
/// slot array alone.
fn used_bytes(edit: &Edit<'_>, addr: u64) -> Result<(usize, usize)> {
    edit.peek(addr, |node| {
        let used = node.used_bytes() - HEADER_BYTES;
        debug_assert_eq!(used, (0..node.len()).map(|i| item_bytes(node, i)).sum::<usize>());
        Ok((used, node.len()))
    })
}

/// Merges under-full nodes on the path with a sibling, bottom-up, then collapses the root.
/// A single removal stops at the first node that needs nothing; `thorough` (a range
/// removal, which can leave several levels under-full) goes on to the root. Returns
/// whether it merged anything.
pub(super) fn rebalance(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    path: &[PathElem],
    thorough: bool,
) -> Result<bool> {
    rebalance_from(edit, s, root, path, thorough, None)
}

/// [`rebalance`], told the bytes the leaf's items use when the caller knows them.
fn rebalance_from(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    path: &[PathElem],
    thorough: bool,
    leaf_used: Option<usize>,
) -> Result<bool> {
    let cap = capacity(s);
    let mut merged = false;
    for depth in (1..path.len()).rev() {
        let used = match leaf_used {
            Some(used) if depth == path.len() - 1 => used,
            _ => used_bytes(edit, path[depth].addr)?.0,
        };
        if used >= cap / 4 {
            if thorough {
                continue;
            }
            break;
        }
        let parent = path[depth - 1].addr;
        let pidx = path[depth - 1].idx;
        let plen = edit.peek(parent, |n| Ok(n.len()))?;
        if plen < 2 {
            continue;
        }
        let left_idx = if pidx + 1 < plen { pidx } else { pidx - 1 };
        if merge_pair(edit, s, parent, left_idx, cap)? {
            merged = true;
        } else {
            // Too full to merge: even the pair out instead, so no node stays under-full
            // beside a full sibling.
            redistribute(edit, s, parent, left_idx, cap)?;
            if !thorough {
                break;
            }
        }
    }
    // Only a merge below the root takes a child from it.
    if merged || thorough {
        collapse_root(edit, s, root)?;
    }
    Ok(merged)
}

/// Makes child `idx` of the dirty node `parent` writable; returns its address.
pub(super) fn writable_child(
    edit: &mut Edit<'_>,
    s: &Store,
    parent: u64,
    idx: usize,
) -> Result<u64> {
    let child = edit.peek(parent, |n| Ok(n.child(idx)))?;
    let addr = edit.make_writable(s, child)?;
    if addr != child.address() {
        edit.set_child(parent, idx, edit.dirty_ptr(addr))?;
    }
    Ok(addr)
}

/// Merges children `left_idx` and `left_idx + 1` of `parent` when they fit in one node.
fn merge_pair(
    edit: &mut Edit<'_>,
    s: &Store,
    parent: u64,
    left_idx: usize,
    cap: usize,
) -> Result<bool> {
    let left = writable_child(edit, s, parent, left_idx)?;
    let right = writable_child(edit, s, parent, left_idx + 1)?;
    let sep = edit.peek(parent, |n| Ok(n.key(left_idx + 1).to_vec()))?;
    let (lused, _) = used_bytes(edit, left)?;
    let (rused, _) = used_bytes(edit, right)?;
    let level = edit.peek(right, |n| Ok(n.level()))?;
    let extra = if level > 0 { sep.len() } else { 0 };
    if lused + rused + extra > cap {
        return Ok(false);
    }
    edit.append_node(left, right, (level > 0).then_some(sep.as_slice()))?;
    let (_, removed) = edit.node_remove(parent, left_idx + 1)?;
    match removed {
        ItemValue::Child(ptr) => edit.free_node(ptr),
        other => panic!("item {} of internal block {parent} is {other:?}", left_idx + 1),
    }
    Ok(true)
}

/// Two siblings being evened out by [`redistribute`], and what it measured of them.
struct Siblings {
    parent: u64,
    left_idx: usize,
    left: u64,
    right: u64,
    /// The separator between them in the parent.
    sep: Vec<u8>,
    parent_free: usize,
    used: (usize, usize),
    len: (usize, usize),
    internal: bool,
    /// Bytes each should end up with, about.
    target: usize,
    cap: usize,
}

impl Siblings {
    fn fits_parent(&self, new_sep: &[u8]) -> bool {
        new_sep.len() <= self.sep.len() + self.parent_free
    }
}

/// Moves items between children `left_idx` and `left_idx + 1` of `parent` (too full to
/// merge) until their used bytes are about even, and updates the separator. Every edit is a
/// logged node edit, so snapshots and abort see through it. Skipped (the tree stays valid)
/// when the parent has no room for a longer separator.
fn redistribute(
    edit: &mut Edit<'_>,
    s: &Store,
    parent: u64,
    left_idx: usize,
    cap: usize,
) -> Result<()> {
    let left = writable_child(edit, s, parent, left_idx)?;
    let right = writable_child(edit, s, parent, left_idx + 1)?;
    let sep = edit.peek(parent, |n| Ok(n.key(left_idx + 1).to_vec()))?;
    let parent_free = edit.peek(parent, |n| Ok(n.free_bytes()))?;
    let (lused, llen) = used_bytes(edit, left)?;
    let (rused, rlen) = used_bytes(edit, right)?;
    let level = edit.peek(right, |n| Ok(n.level()))?;
    let pair = Siblings {
        parent,
        left_idx,
        left,
        right,
        sep,
        parent_free,
        used: (lused, rused),
        len: (llen, rlen),
        internal: level > 0,
        target: (lused + rused) / 2,
        cap,
    };
    if lused < rused {
        shift_to_left(edit, &pair)
    } else {
        shift_to_right(edit, &pair)
    }
}

/// Right's head to left's tail; right keeps at least one item.
fn shift_to_left(edit: &mut Edit<'_>, p: &Siblings) -> Result<()> {
    let (lused, rlen) = (p.used.0, p.len.1);
    let plan = edit.peek(p.right, |n| {
        let (mut k, mut moved) = (0usize, 0usize);
        while k + 1 < rlen {
            let key_len = if p.internal && k == 0 { p.sep.len() } else { n.key(k).len() };
            let size = item_bytes(n, k) - n.key(k).len() + key_len;
            if lused + moved + size > p.target.max(lused + 1) || lused + moved + size > p.cap {
                break;
            }
            moved += size;
            k += 1;
        }
        let mut items = Vec::with_capacity(k);
        for i in 0..k {
            let (mut key, v) = crate::mvcc::modlog::owned_node_item(n, i)?;
            if p.internal && i == 0 {
                key = p.sep.clone();
            }
            items.push((key, v));
        }
        Ok((items, n.key(k).to_vec()))
    })?;
    let (items, new_sep) = plan;
    if items.is_empty() || !p.fits_parent(&new_sep) {
        return Ok(());
    }
    edit.append_items(p.left, &items)?;
    for _ in 0..items.len() {
        edit.node_drop(p.right, 0)?;
    }
    if p.internal {
        let (_, v) = edit.node_remove(p.right, 0)?;
        insert_fitting(edit, p.right, 0, b"", &v)?;
    }
    set_separator(edit, p.parent, p.left_idx + 1, &new_sep)
}

/// Left's tail to right's head; left keeps at least one item.
fn shift_to_right(edit: &mut Edit<'_>, p: &Siblings) -> Result<()> {
    let (rused, llen) = (p.used.1, p.len.0);
    let at = edit.peek(p.left, |n| {
        let (mut at, mut moved) = (llen, 0usize);
        while at > 1 {
            let size = item_bytes(n, at - 1) + if p.internal { p.sep.len() } else { 0 };
            if rused + moved + size > p.target.max(rused + 1) || rused + moved + size > p.cap {
                break;
            }
            moved += size;
            at -= 1;
        }
        Ok(at)
    })?;
    if at == llen {
        return Ok(());
    }
    let new_sep = edit.peek(p.left, |n| Ok(n.key(at).to_vec()))?;
    if !p.fits_parent(&new_sep) {
        return Ok(());
    }
    if p.internal {
        // Right's first child is bounded by the old separator once it is not first.
        let (_, v) = edit.node_remove(p.right, 0)?;
        insert_fitting(edit, p.right, 0, &p.sep, &v)?;
    }
    let items = edit.truncate_tail(p.left, at)?;
    debug_assert!(!items.is_empty(), "a shift to the right moves at least one item");
    for (i, (key, v)) in items.iter().enumerate() {
        insert_fitting(edit, p.right, i, key, v)?;
    }
    if p.internal {
        let (_, v) = edit.node_remove(p.right, 0)?;
        insert_fitting(edit, p.right, 0, b"", &v)?;
    }
    set_separator(edit, p.parent, p.left_idx + 1, &new_sep)
}

fn insert_fitting(
    edit: &mut Edit<'_>,
    addr: u64,
    slot: usize,
    key: &[u8],
    v: &ItemValue,
) -> Result<()> {
    let fits = edit.node_insert(addr, slot, key, v.as_ref())?;
    // Redistribution moves only what the receiving node has room for.
    assert!(fits, "redistributed item {slot} does not fit block {addr}");
    Ok(())
}

/// Replaces the key of internal item `slot` (remove and insert, both logged).
pub(super) fn set_separator(
    edit: &mut Edit<'_>,
    parent: u64,
    slot: usize,
    key: &[u8],
) -> Result<()> {
    let (_, child) = edit.node_remove(parent, slot)?;
    insert_fitting(edit, parent, slot, key, &child)
}

/// Replaces an internal root that has a single child by that child, repeatedly.
pub(super) fn collapse_root(edit: &mut Edit<'_>, s: &Store, root: &mut ChildPtr) -> Result<()> {
    for _ in 0..=TREE_DEPTH_MAX {
        let (level, len, first) = {
            let buf = edit.node(s, *root)?;
            let node = decode(&buf, root.address())?;
            let first =
                if node.level() > 0 && node.len() == 1 { Some(node.child(0)) } else { None };
            (node.level(), node.len(), first)
        };
        if level == 0 || len != 1 {
            return Ok(());
        }
        let Some(child) = first else { return Ok(()) };
        edit.free_node(*root);
        *root = child;
    }
    Err(Error::corrupt(root.address(), "root collapse exceeded the depth limit"))
}
