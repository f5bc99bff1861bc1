//! The mod log (DESIGN §5, §10.4, §10.6): for every in-place change to a *published* block
//! of the open generation, the logical pre-image needed to undo it.
//!
//! Entries are logical, never heap offsets: they carry keys, values and child triples, so
//! undo works on any compacted image of the block. The log is append-only; `abort` undoes
//! by appending compensation entries with fresh seqs (so a reader that copied a block
//! mid-abort still finds every op to undo), and only `prune_below` removes entries.
//! Readers (snapshots) rewind a private copy of a block by undoing, newest first, the
//! entries with seq in (S, newest]; the writer's `abort` uses the same `undo`.

use std::collections::HashMap;

use arbor_format::node::{LeafValue, ValueRef};
use arbor_format::NodeMut;
use arbor_format::{ChildPtr, OverflowRef};

use crate::{Error, Result};

/// An owned item value: the pre-image of a leaf value or a child pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ItemValue {
    Inline(Vec<u8>),
    Overflow(OverflowRef),
    Child(ChildPtr),
}

impl ItemValue {
    pub(crate) fn as_ref(&self) -> ValueRef<'_> {
        match self {
            ItemValue::Inline(v) => ValueRef::Inline(v),
            ItemValue::Overflow(r) => ValueRef::Overflow(*r),
            ItemValue::Child(c) => ValueRef::Child(*c),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            ItemValue::Inline(v) => v.len(),
            ItemValue::Overflow(_) => 32,
            ItemValue::Child(_) => 24,
        }
    }
}

/// One logged change. Each variant holds what is needed to reverse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
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
    /// The writer freed the block: its address names a different block after this seq.
    Free,
}

impl Op {
    fn bytes(&self) -> usize {
        const FIXED: usize = 48;
        FIXED
            + match self {
                Op::Remove { key, value, .. } => key.len() + value.bytes(),
                Op::Replace { old, .. } => old.bytes(),
                Op::TruncateTail { items } => {
                    items.iter().map(|(k, v)| k.len() + v.bytes() + 16).sum()
                }
                Op::Insert { .. } | Op::AppendTail { .. } | Op::Free => 0,
            }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub seq: u64,
    pub op: Op,
}

/// The log: entries per block address, in seq order.
#[derive(Default)]
pub(crate) struct ModLog {
    by_addr: HashMap<u64, Vec<Entry>>,
    bytes: u64,
}

impl ModLog {
    pub(crate) fn append(&mut self, addr: u64, seq: u64, op: Op) {
        self.bytes += op.bytes() as u64;
        let entries = self.by_addr.entry(addr).or_default();
        debug_assert!(entries.last().is_none_or(|e| e.seq < seq), "seqs increase per block");
        entries.push(Entry { seq, op });
    }

    pub(crate) fn entries(&self, addr: u64) -> &[Entry] {
        self.by_addr.get(&addr).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Removes every entry with seq strictly below `seq_min` (DESIGN §5: `< min`).
    pub(crate) fn prune_below(&mut self, seq_min: u64) {
        let mut freed = 0u64;
        self.by_addr.retain(|_, entries| {
            let keep_from = entries.partition_point(|e| e.seq < seq_min);
            freed += entries[..keep_from].iter().map(|e| e.op.bytes() as u64).sum::<u64>();
            entries.drain(..keep_from);
            !entries.is_empty()
        });
        self.bytes -= freed;
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn precondition(addr: u64, op: &Op, what: &str) -> Error {
    Error::corrupt(addr, format!("mod-log undo of {op:?} failed: {what}"))
}

fn owned_value(node: &NodeMut<'_>, slot: usize, addr: u64) -> Result<ItemValue> {
    let n = node.as_node();
    if n.level() > 0 {
        return Ok(ItemValue::Child(n.child(slot)));
    }
    Ok(match n.leaf_value(slot) {
        LeafValue::Inline(v) => ItemValue::Inline(v.to_vec()),
        LeafValue::Overflow(r) => ItemValue::Overflow(r),
    })
    .map_err(|e: Error| precondition(addr, &Op::Free, &e.to_string()))
}

/// Reads item `slot` as owned key and value (the pre-image of a removal).
pub(crate) fn owned_item(
    node: &NodeMut<'_>,
    slot: usize,
    addr: u64,
) -> Result<(Vec<u8>, ItemValue)> {
    let key = node.as_node().key(slot).to_vec();
    Ok((key, owned_value(node, slot, addr)?))
}

/// Undoes `op` on `node` (the image of block `addr`), checking every precondition, and
/// returns the compensation op that would redo it. A violated precondition means the log
/// and the block disagree: `Error::Corrupt`, never a panic and never a silent wrong image.
pub(crate) fn undo(node: &mut NodeMut<'_>, addr: u64, op: &Op) -> Result<Op> {
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
            Ok(Op::Remove { slot: slot as u16, key, value })
        }
        Op::Remove { slot, key, value } => {
            if usize::from(*slot) > len {
                return Err(precondition(addr, op, "slot out of range"));
            }
            node.insert(usize::from(*slot), key, value.as_ref()).map_err(full)?;
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
        Op::Free => Ok(Op::Free),
    }
}
