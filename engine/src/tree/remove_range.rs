//! Removing a contiguous key range (design.md §4.2): whole subtrees inside the range are
//! detached from their parent with one logged edit each and handed back to the caller, which
//! frees them like a deleted tree's blocks (deferred to commit, through the pinning rule of
//! §6); only the nodes on the two boundary paths are copied and edited item by item. The
//! boundary paths are then rebalanced until no merge is left to make.

use std::ops::Bound;

use arbor_format::constants::TREE_DEPTH_MAX;
use arbor_format::ChildPtr;

use crate::mvcc::modlog::ItemValue;
use crate::store::Store;
use crate::tree::write::{
    blocks_per_op_max, collapse_root, cow_path, rebalance, root_level, set_separator,
    writable_child, Aim,
};
use crate::writer::{Edit, Need};
use crate::Result;

/// What a range removal took out of the tree.
#[derive(Default)]
pub(crate) struct Removed {
    /// Items removed one by one from the boundary leaves, in no particular order.
    pub items: Vec<(Vec<u8>, ItemValue)>,
    /// Subtrees detached whole (root pointer and the root's level): the caller counts their
    /// entries and frees them.
    pub subtrees: Vec<(ChildPtr, u8)>,
}

/// The range being removed.
struct Span<'k> {
    start: Bound<&'k [u8]>,
    end: Bound<&'k [u8]>,
}

impl Span<'_> {
    /// Whether every key at or above `lo` (`None`: minus infinity) is at or above the start.
    fn covers_from(&self, lo: Option<&[u8]>) -> bool {
        match (self.start, lo) {
            (Bound::Unbounded, _) => true,
            (_, None) => false,
            (Bound::Included(s), Some(lo)) => s <= lo,
            (Bound::Excluded(s), Some(lo)) => s < lo,
        }
    }

    /// Whether every key below `hi` (`None`: plus infinity) is inside the end bound.
    fn covers_to(&self, hi: Option<&[u8]>) -> bool {
        match (self.end, hi) {
            (Bound::Unbounded, _) => true,
            (_, None) => false,
            (Bound::Included(e) | Bound::Excluded(e), Some(hi)) => hi <= e,
        }
    }

    /// Whether no key can be inside (start after end, or an empty interval).
    fn is_empty(&self) -> bool {
        match (self.start, self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        }
    }

    /// Items `[a, b)` of a sorted node that lie inside the range.
    fn slots(&self, node: &arbor_format::node::Node<'_>) -> (usize, usize) {
        let a = match self.start {
            Bound::Unbounded => 0,
            Bound::Included(s) => node.search(s).unwrap_or_else(|i| i),
            Bound::Excluded(s) => node.search(s).map_or_else(|i| i, |i| i + 1),
        };
        let b = match self.end {
            Bound::Unbounded => node.len(),
            Bound::Included(e) => node.search(e).map_or_else(|i| i, |i| i + 1),
            Bound::Excluded(e) => node.search(e).unwrap_or_else(|i| i),
        };
        (a, b.max(a))
    }

    /// Children `first..=last` of a non-empty internal node whose key ranges can hold keys
    /// inside the range.
    fn children(&self, node: &arbor_format::node::Node<'_>) -> (usize, usize) {
        let first = match self.start {
            Bound::Unbounded => 0,
            Bound::Included(s) | Bound::Excluded(s) => node.child_index(s),
        };
        let last = match self.end {
            Bound::Unbounded => node.len() - 1,
            Bound::Included(e) => node.child_index(e),
            // Child i starting at e holds nothing below e.
            Bound::Excluded(e) => node.search(e).unwrap_or_else(|i| i).saturating_sub(1),
        };
        (first, last.max(first))
    }
}

/// Removes every key in `(start, end)`; see the module comment.
pub(crate) fn remove_range(
    edit: &mut Edit<'_>,
    s: &Store,
    root: &mut ChildPtr,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Result<Removed> {
    let span = Span { start, end };
    let mut out = Removed::default();
    if span.is_empty() {
        return Ok(out);
    }
    let level = root_level(edit, s, *root)?;
    // Two boundary paths, each with a sibling per level for the merges that follow.
    edit.reserve_for(s, 4 * blocks_per_op_max(level), Need::Shrink)?;
    let addr = edit.make_writable(s, *root)?;
    if addr != root.address() {
        *root = edit.dirty_ptr(addr);
    }
    remove_in(edit, s, addr, (None, None), &span, &mut out, 0)?;
    let left = match start {
        Bound::Included(k) | Bound::Excluded(k) => Aim::Key(k),
        Bound::Unbounded => Aim::First,
    };
    let right = match end {
        Bound::Included(k) | Bound::Excluded(k) => Aim::Key(k),
        Bound::Unbounded => Aim::Last,
    };
    for aim in [left, right] {
        settle(edit, s, root, aim)?;
    }
    collapse_root(edit, s, root)?;
    Ok(out)
}

/// Rebalances the path to `aim` until a pass merges nothing (a chain of single-child nodes
/// left by the removal takes one pass per level).
fn settle(edit: &mut Edit<'_>, s: &Store, root: &mut ChildPtr, aim: Aim<'_>) -> Result<()> {
    for _ in 0..=TREE_DEPTH_MAX {
        let descent = cow_path(edit, s, root, aim, false)?;
        let path = descent.expect("a descent without must_exist reaches a leaf").path;
        if !rebalance(edit, s, root, &path, true)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Removes the range from the writable node `addr`, whose keys lie in `[lo, hi)`.
fn remove_in(
    edit: &mut Edit<'_>,
    s: &Store,
    addr: u64,
    (lo, hi): (Option<&[u8]>, Option<&[u8]>),
    span: &Span<'_>,
    out: &mut Removed,
    depth: usize,
) -> Result<()> {
    assert!(depth <= usize::from(TREE_DEPTH_MAX), "range removal below the depth limit");
    let (level, len) = edit.peek(addr, |n| Ok((n.level(), n.len())))?;
    if level == 0 {
        let (a, b) = edit.peek(addr, |n| Ok(span.slots(n)))?;
        return remove_leaf_items(edit, addr, len, a, b, out);
    }
    // Children `first..=last` can hold keys in the range; bounds[i] is child i's lower bound.
    let (first, last, bounds) = edit.peek(addr, |n| {
        let (first, last) = span.children(n);
        let bounds: Vec<Option<Vec<u8>>> = (first..=last + 1)
            .map(|i| match i {
                0 => lo.map(<[u8]>::to_vec),
                i if i == n.len() => hi.map(<[u8]>::to_vec),
                i => Some(n.key(i).to_vec()),
            })
            .collect();
        Ok((first, last, bounds))
    })?;
    let bound = |i: usize| bounds[i - first].as_deref();
    let covered = |i: usize| span.covers_from(bound(i)) && span.covers_to(bound(i + 1));
    // Never detach every child: an internal node keeps one, emptied instead.
    let keep_first = first == 0 && last + 1 == len && (first..=last).all(covered);
    for i in (first..=last).rev() {
        if covered(i) && !(keep_first && i == 0) {
            let (_, child) = edit.node_remove(addr, i)?;
            match child {
                ItemValue::Child(ptr) => out.subtrees.push((ptr, level - 1)),
                other => panic!("item {i} of internal block {addr} is {other:?}"),
            }
        } else {
            let child = writable_child(edit, s, addr, i)?;
            remove_in(edit, s, child, (bound(i), bound(i + 1)), span, out, depth + 1)?;
        }
    }
    // Detaching child 0 leaves the next one first: its key becomes minus infinity.
    if edit.peek(addr, |n| Ok(!n.key(0).is_empty()))? {
        set_separator(edit, addr, 0, b"")?;
    }
    Ok(())
}

/// Removes items `[a, b)` of the writable leaf `addr` (of `len` items) into `out`.
fn remove_leaf_items(
    edit: &mut Edit<'_>,
    addr: u64,
    len: usize,
    a: usize,
    b: usize,
    out: &mut Removed,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    if b == len {
        // The tail in one logged edit.
        out.items.extend(edit.truncate_tail(addr, a)?);
        return Ok(());
    }
    for slot in (a..b).rev() {
        out.items.push(edit.node_remove(addr, slot)?);
    }
    Ok(())
}
