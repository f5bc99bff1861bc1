//! The mod log (design.md §5, §10.4, §10.6): for every in-place change to a *published* block
//! of the open generation, the logical pre-image needed to undo it.
//!
//! Entries are logical, never heap offsets: they carry keys, values and child triples, so
//! undo works on any compacted image of the block. Each block's entries live with its image
//! in its `mvcc::Slot`, under the same lock. The log is append-only; `abort` undoes by
//! appending compensation entries with fresh seqs (so a reader that copied a block
//! mid-abort still finds every op to undo), and only pruning removes entries.
//! Readers (snapshots) rewind a private copy of a block by undoing, newest first, the
//! entries with seq in (S, newest]; the writer's `abort` uses the same `undo`.

use arbor_format::constants::{CHILD_PTR_BYTES, OVERFLOW_REF_BYTES};
use arbor_format::node::{LeafValue, Node, ValueRef};
use arbor_format::NodeMut;
use arbor_format::{ChildPtr, OverflowRef};

use crate::{Error, Result};

/// An owned item value: the pre-image of a leaf value or a child pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemValue {
    Inline(Vec<u8>),
    Overflow(OverflowRef),
    Child(ChildPtr),
}

impl ItemValue {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            ItemValue::Inline(v) => ValueRef::Inline(v),
            ItemValue::Overflow(r) => ValueRef::Overflow(*r),
            ItemValue::Child(c) => ValueRef::Child(*c),
        }
    }

    /// Bytes the value takes in a node's heap.
    pub fn bytes(&self) -> usize {
        match self {
            ItemValue::Inline(v) => v.len(),
            ItemValue::Overflow(_) => OVERFLOW_REF_BYTES,
            ItemValue::Child(_) => CHILD_PTR_BYTES,
        }
    }
}

/// One logged change. Each variant holds what is needed to reverse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// An item was inserted at `slot`: undo removes it.
    Insert { slot: u16 },
    /// The item at `slot` was removed: undo re-inserts it.
    Remove { slot: u16, key: Vec<u8>, value: ItemValue },
    /// The value at `slot` was replaced: undo restores `old`.
    Replace { slot: u16, old: ItemValue },
    /// The tail items were moved out (a split): undo appends them back.
    TruncateTail { items: Vec<(Vec<u8>, ItemValue)> },
    /// `count` items were appended at the end (a merge): undo removes them.
    AppendTail { count: u16 },
}

impl Op {
    /// Memory this entry accounts for in the mod-log budget.
    pub fn bytes(&self) -> usize {
        const FIXED: usize = 48;
        FIXED
            + match self {
                Op::Remove { key, value, .. } => key.len() + value.bytes(),
                Op::Replace { old, .. } => old.bytes(),
                Op::TruncateTail { items } => {
                    items.iter().map(|(k, v)| k.len() + v.bytes() + 16).sum()
                }
                Op::Insert { .. } | Op::AppendTail { .. } => 0,
            }
    }
}

/// One logged change to one block, with the seq it was made at.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    pub op: Op,
}

fn precondition(addr: u64, op: &Op, what: &str) -> Error {
    Error::corrupt(addr, format!("mod-log undo of {op:?} failed: {what}"))
}

/// Reads item `slot` of a node as owned key and value (the pre-image of a removal).
pub fn owned_node_item(node: &Node<'_>, slot: usize) -> Result<(Vec<u8>, ItemValue)> {
    let value = if node.level() > 0 {
        ItemValue::Child(node.child(slot))
    } else {
        match node.leaf_value(slot) {
            LeafValue::Inline(v) => ItemValue::Inline(v.to_vec()),
            LeafValue::Overflow(r) => ItemValue::Overflow(r),
        }
    };
    Ok((node.key(slot).to_vec(), value))
}

/// As [`owned_node_item`], on a node being edited.
pub fn owned_item(node: &NodeMut<'_>, slot: usize, addr: u64) -> Result<(Vec<u8>, ItemValue)> {
    if slot >= node.len() {
        return Err(Error::corrupt(addr, format!("item {slot} out of range")));
    }
    owned_node_item(&node.as_node(), slot)
}

fn owned_value(node: &NodeMut<'_>, slot: usize, addr: u64) -> Result<ItemValue> {
    Ok(owned_item(node, slot, addr)?.1)
}

/// Undoes `op` on `node` (the image of block `addr`), checking every precondition, and
/// returns the compensation op that would redo it. A violated precondition means the log
/// and the block disagree: `Error::Corrupt`, never a panic and never a silent wrong image.
pub fn undo(node: &mut NodeMut<'_>, addr: u64, op: &Op) -> Result<Op> {
    let len = node.as_node().len();
    let full = |_| precondition(addr, op, "item does not fit");
    match op {
        Op::Insert { slot } => {
            let slot = usize::from(*slot);
            if slot >= len {
                return Err(precondition(addr, op, "slot out of range"));
            }
            let (key, value) = owned_item(node, slot, addr)?;
            node.remove(slot);
            debug_assert_eq!(node.as_node().len(), len - 1, "undo of an insert removes one item");
            Ok(Op::Remove { slot: slot as u16, key, value })
        }
        Op::Remove { slot, key, value } => {
            if usize::from(*slot) > len {
                return Err(precondition(addr, op, "slot out of range"));
            }
            node.insert(usize::from(*slot), key, value.as_ref()).map_err(full)?;
            debug_assert_eq!(node.as_node().len(), len + 1, "undo of a removal restores one item");
            Ok(Op::Insert { slot: *slot })
        }
        Op::Replace { slot, old } => {
            let s = usize::from(*slot);
            if s >= len {
                return Err(precondition(addr, op, "slot out of range"));
            }
            let current = owned_value(node, s, addr)?;
            node.replace_value(s, old.as_ref()).map_err(full)?;
            Ok(Op::Replace { slot: *slot, old: current })
        }
        Op::TruncateTail { items } => {
            for (key, value) in items {
                let at = node.as_node().len();
                node.insert(at, key, value.as_ref()).map_err(full)?;
            }
            Ok(Op::AppendTail { count: items.len() as u16 })
        }
        Op::AppendTail { count } => {
            let count = usize::from(*count);
            if count > len {
                return Err(precondition(addr, op, "fewer items than were appended"));
            }
            let mut items = Vec::with_capacity(count);
            for slot in len - count..len {
                items.push(owned_item(node, slot, addr)?);
            }
            for _ in 0..count {
                node.remove(len - count);
            }
            Ok(Op::TruncateTail { items })
        }
    }
}
