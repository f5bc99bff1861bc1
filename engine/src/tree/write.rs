//! B-tree writes on the writer's state: copy-on-write descent, insert with splits, remove
//! with merges and root collapse. Every change goes through the writer's logged node edits.
//!
//! Splitting: the split point is chosen on the virtual node (old items plus the new one) so
//! that both halves fit whatever the item sizes (every item is at most half a node, so a
//! fitting point always exists). Appends past the last key split at the end, so sequential
//! loads fill leaves completely, as redb and LMDB do.
//!
//! Merging: a node whose items use less than a quarter of its space is merged with a
//! sibling when both fit in one node, else items move over from the sibling until the two
//! are about even; a root with one child is replaced by that child, so a tree whose keys are
//! all removed shrinks back to one empty leaf.

use arbor_format::constants::{
    CHILD_PTR_BYTES, HEADER_BYTES, OVERFLOW_REF_BYTES, SLOT_BYTES, TREE_DEPTH_MAX,
};
use arbor_format::node::{LeafValue, Node};
use arbor_format::{BlockKind, ChildPtr};

use crate::mvcc::modlog::ItemValue;
use crate::store::decode;
use crate::store::Store;
use crate::tree::read::{check_child, lookup, WriterView};
use crate::writer::{Edit, Need};
use crate::{Error, Result};

struct PathElem {
    addr: u64,
    /// For internal nodes: the index of the child taken.
    idx: usize,
}

/// Blocks one insert or remove may allocate in the worst case: a copy and a split sibling
/// per level, plus a new root.
pub(crate) fn blocks_per_op_max(root_level: u8) -> u64 {
    2 * (u64::from(root_level) + 2) + 1
}

fn item_bytes(node: &Node<'_>, i: usize) -> usize {
    let value = if node.level() > 0 {
        CHILD_PTR_BYTES
    } else {
        match node.leaf_value(i) {
            LeafValue::Inline(v) => v.len(),
            LeafValue::Overflow(_) => OVERFLOW_REF_BYTES,
        }
    };
    SLOT_BYTES + node.key(i).len() + value
}

fn capacity(s: &Store) -> usize {
    s.block_bytes as usize - HEADER_BYTES
}

fn root_level(edit: &Edit<'_>, s: &Store, root: ChildPtr) -> Result<u8> {
    let buf = edit.node(s, root)?;
    Ok(decode(&buf, root.address())?.level())
}

/// Copies the path from the root to the leaf for `key` into the open generation.
fn cow_path(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    key: &[u8],
) -> Result<Vec<PathElem>> {
    let addr = edit.make_writable(s, *root)?;
    if addr != root.address() {
        *root = edit.dirty_ptr(addr);
    }
    let mut path = Vec::new();
    let mut cur = addr;
    let mut expect = None;
    for _ in 0..=TREE_DEPTH_MAX {
        let step = edit.peek(cur, |node| {
            check_child(node, cur, expect)?;
            if node.level() == 0 {
                return Ok(None);
            }
            if node.is_empty() {
                return Err(Error::corrupt(cur, "empty internal node"));
            }
            let idx = node.child_index(key);
            Ok(Some((node.level(), idx, node.child(idx))))
        })?;
        let Some((level, idx, child)) = step else {
            path.push(PathElem { addr: cur, idx: 0 });
            return Ok(path);
        };
        let caddr = edit.make_writable(s, child)?;
        if caddr != child.address() {
            edit.set_child(cur, idx, edit.dirty_ptr(caddr))?;
        }
        debug_assert!(edit.dirty.holds(edit.dirty_ptr(caddr)), "copied child {caddr} is dirty");
        path.push(PathElem { addr: cur, idx });
        expect = Some(level - 1);
        cur = caddr;
    }
    // Every step checked the child's level (one less than its parent's, at most
    // TREE_DEPTH_MAX), so the loop reaches a leaf within TREE_DEPTH_MAX + 1 steps.
    unreachable!("descent from block {addr} passed the depth limit")
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
    let level = root_level(edit, s, *root)?;
    edit.reserve_for(s, blocks_per_op_max(level), Need::Grow)?;
    let path = cow_path(edit, s, root, key)?;
    crate::fault::hit(crate::fault::FaultPoint::TreeInsert);
    debug_assert!(edit.dirty.holds(*root), "after the copy-on-write descent the root is dirty");
    debug_assert!(path.len() <= usize::from(TREE_DEPTH_MAX) + 1, "a path deeper than a tree");
    let leaf = path.last().expect("a cow path holds at least the root").addr;
    let found = edit.peek(leaf, |n| Ok(n.search(key)))?;
    match found {
        Ok(slot) => {
            if let Some(old) = edit.node_replace(leaf, slot, value.as_ref())? {
                return Ok(Some(old));
            }
            let (_, old) = edit.node_remove(leaf, slot)?;
            insert_split(edit, s, root, owner, &path, slot, key.to_vec(), value)?;
            Ok(Some(old))
        }
        Err(slot) => {
            if !edit.node_insert(leaf, slot, key, value.as_ref())? {
                insert_split(edit, s, root, owner, &path, slot, key.to_vec(), value)?;
            }
            Ok(None)
        }
    }
}

/// Chooses how many items of the virtual node (old items with the new one at `slot`) stay
/// on the left. Both halves fit; balanced, except that an append keeps the left full.
fn pick_split(node: &Node<'_>, slot: usize, new_bytes: usize, cap: usize) -> Result<usize> {
    let n = node.len();
    let sizes: Vec<usize> = (0..=n)
        .map(|v| match v.cmp(&slot) {
            std::cmp::Ordering::Less => item_bytes(node, v),
            std::cmp::Ordering::Equal => new_bytes,
            std::cmp::Ordering::Greater => item_bytes(node, v - 1),
        })
        .collect();
    let total: usize = sizes.iter().sum();
    if slot == n && total - new_bytes <= cap && new_bytes <= cap && n > 0 {
        return Ok(n);
    }
    let mut best: Option<(usize, usize)> = None;
    let mut left = 0usize;
    for j in 1..=n {
        left += sizes[j - 1];
        let right = total - left;
        if left <= cap && right <= cap {
            let imbalance = left.abs_diff(right);
            if best.is_none_or(|(_, b)| imbalance < b) {
                best = Some((j, imbalance));
            }
        }
    }
    // Every item is at most half a node (key and inline value limits), so some point fits.
    let split = best.map(|(j, _)| j);
    assert!(split.is_some(), "no split point of block {} fits {n} items", node.header().address());
    Ok(split.unwrap_or(0))
}

#[allow(clippy::too_many_arguments)]
fn insert_split(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    owner: u64,
    path: &[PathElem],
    mut slot: usize,
    mut key: Vec<u8>,
    mut value: ItemValue,
) -> Result<()> {
    let cap = capacity(s);
    let mut depth = path.len() - 1;
    loop {
        let addr = path[depth].addr;
        if edit.node_insert(addr, slot, &key, value.as_ref())? {
            return Ok(());
        }
        let new_bytes = SLOT_BYTES + key.len() + value.bytes();
        let (level, keep_left) =
            edit.peek(addr, |node| Ok((node.level(), pick_split(node, slot, new_bytes, cap)?)))?;
        debug_assert!(keep_left >= 1, "a split keeps at least one item on the left");
        let kind = if level == 0 { BlockKind::Leaf } else { BlockKind::Internal };
        let right = edit.new_node(s, kind, level, owner)?;
        let placed = if slot < keep_left {
            edit.move_tail(addr, keep_left - 1, right)?;
            edit.node_insert(addr, slot, &key, value.as_ref())?
        } else {
            edit.move_tail(addr, keep_left, right)?;
            edit.node_insert(right, slot - keep_left, &key, value.as_ref())?
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
            let ok = edit.node_insert(new_root, 0, b"", ItemValue::Child(left_ptr).as_ref())?
                && edit.node_insert(new_root, 1, &sep, ItemValue::Child(right_ptr).as_ref())?;
            assert!(ok, "new root {new_root} cannot hold two children");
            *root = edit.dirty_ptr(new_root);
            return Ok(());
        }
        depth -= 1;
        slot = path[depth].idx + 1;
        key = sep;
        value = ItemValue::Child(right_ptr);
    }
}

/// Removes `key`; returns the old value.
pub(crate) fn remove(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    key: &[u8],
) -> Result<Option<ItemValue>> {
    if lookup(&WriterView { dirty: edit.dirty, s }, *root, key)?.is_none() {
        return Ok(None);
    }
    let level = root_level(edit, s, *root)?;
    edit.reserve_for(s, blocks_per_op_max(level), Need::Shrink)?;
    let path = cow_path(edit, s, root, key)?;
    debug_assert!(edit.dirty.holds(*root), "after the copy-on-write descent the root is dirty");
    let leaf = path.last().expect("a cow path holds at least the root").addr;
    let slot = match edit.peek(leaf, |n| Ok(n.search(key)))? {
        Ok(slot) => slot,
        Err(_) => panic!("key vanished from block {leaf} between lookup and removal"),
    };
    let (_, old) = edit.node_remove(leaf, slot)?;
    rebalance(edit, s, root, &path)?;
    Ok(Some(old))
}

fn used_bytes(edit: &Edit<'_>, addr: u64) -> Result<(usize, usize)> {
    edit.peek(addr, |node| Ok(((0..node.len()).map(|i| item_bytes(node, i)).sum(), node.len())))
}

/// Merges under-full nodes on the path with a sibling, bottom-up, then collapses the root.
fn rebalance(edit: &mut Edit<'_>, s: &Store, root: &mut ChildPtr, path: &[PathElem]) -> Result<()> {
    let cap = capacity(s);
    for depth in (1..path.len()).rev() {
        let (used, _) = used_bytes(edit, path[depth].addr)?;
        if used >= cap / 4 {
            break;
        }
        let parent = path[depth - 1].addr;
        let pidx = path[depth - 1].idx;
        let plen = edit.peek(parent, |n| Ok(n.len()))?;
        if plen < 2 {
            continue;
        }
        let left_idx = if pidx + 1 < plen { pidx } else { pidx - 1 };
        if !merge_pair(edit, s, parent, left_idx, cap)? {
            // Too full to merge: even the pair out instead, so no node stays under-full
            // beside a full sibling.
            redistribute(edit, s, parent, left_idx, cap)?;
            break;
        }
    }
    collapse_root(edit, s, root)
}

/// Makes child `idx` of the dirty node `parent` writable; returns its address.
fn writable_child(edit: &mut Edit<'_>, s: &Store, parent: u64, idx: usize) -> Result<u64> {
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
    let (rused, rlen) = used_bytes(edit, right)?;
    let level = edit.peek(right, |n| Ok(n.level()))?;
    let extra = if level > 0 { sep.len() } else { 0 };
    if lused + rused + extra > cap {
        return Ok(false);
    }
    let items = edit.peek(right, |node| {
        let mut items = Vec::with_capacity(rlen);
        for i in 0..rlen.min(node.len()) {
            let (mut k, v) = crate::mvcc::modlog::owned_node_item(node, i)?;
            if i == 0 && level > 0 {
                k = sep.clone();
            }
            items.push((k, v));
        }
        Ok(items)
    })?;
    edit.append_items(left, &items)?;
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
        edit.node_remove(p.right, 0)?;
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
fn set_separator(edit: &mut Edit<'_>, parent: u64, slot: usize, key: &[u8]) -> Result<()> {
    let (_, child) = edit.node_remove(parent, slot)?;
    insert_fitting(edit, parent, slot, key, &child)
}

/// Replaces an internal root that has a single child by that child, repeatedly.
fn collapse_root(edit: &mut Edit<'_>, s: &Store, root: &mut ChildPtr) -> Result<()> {
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
