//! Many lookups at once (design.md §12.6): the keys descend together, each as far as the
//! nodes in memory take it; the nodes they then wait for — whatever their level — are read
//! together ([`NodeSource::stream`]: all in flight at once), and as each arrives its keys go
//! on at once, their next reads starting while the others are still in flight. A key whose
//! path misses at two levels waits for two reads, not for two rounds of everyone's.

use arbor_format::{ChildPtr, OverflowRef};

use crate::mvcc::modlog::ItemValue;
use crate::store::{decode, Wanted};
use crate::tree::read::{check_child, owned_leaf_value, value_bytes, NodeSource};
use crate::{Error, Result};

/// A node to visit: its pointer, the level its parent expects, and the keys (indexes into
/// the caller's slice, in key order) that descend through it.
struct Visit {
    ptr: ChildPtr,
    expect_level: Option<u8>,
    keys: Vec<usize>,
}

/// The value of every key in `keys` (in their order; `None` where absent) in the tree at
/// `root`.
pub(crate) fn get_many<S: NodeSource + ?Sized>(
    src: &S,
    root: ChildPtr,
    keys: &[&[u8]],
) -> Result<Vec<Option<Vec<u8>>>> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(keys[b]));
    let mut found: Vec<Option<ItemValue>> = vec![None; keys.len()];
    // The visits waiting for their node's read, by tag.
    let mut waiting: Vec<Option<Visit>> = Vec::new();
    let mut reads = Vec::new();
    let root = Visit { ptr: root, expect_level: None, keys: order };
    walk(src, vec![root], keys, &mut found, &mut waiting, &mut reads)?;
    // Each node that arrives sends its keys on at once: down through the nodes in memory,
    // and into reads of the nodes they wait for, started while the others are in flight.
    src.stream(reads, &mut |tag, buf| {
        let visit = waiting[tag].take().expect("a node arrives once");
        let mut below = Vec::new();
        descend(&visit, &buf, keys, &mut found, &mut below)?;
        drop(buf);
        let mut reads = Vec::new();
        walk(src, below, keys, &mut found, &mut waiting, &mut reads)?;
        Ok(reads)
    })?;
    values(src, found)
}

/// Takes every visit of `pending` down through the nodes in memory; the visits that wait for
/// a node's read are filed in `waiting`, and the read (pointer, tag) in `reads`.
fn walk<S: NodeSource + ?Sized>(
    src: &S,
    mut pending: Vec<Visit>,
    keys: &[&[u8]],
    found: &mut [Option<ItemValue>],
    waiting: &mut Vec<Option<Visit>>,
    reads: &mut Vec<Wanted>,
) -> Result<()> {
    while let Some(visit) = pending.pop() {
        match src.cached(visit.ptr) {
            Some(buf) => descend(&visit, &buf?, keys, found, &mut pending)?,
            None => {
                // Internal nodes (and a root of unknown level) lead to further reads.
                let urgent = visit.expect_level != Some(0);
                reads.push(Wanted { ptr: visit.ptr, tag: waiting.len(), urgent });
                waiting.push(Some(visit));
            }
        }
    }
    Ok(())
}

/// The value bytes of every found item: inline ones copied, overflow ones read together.
fn values<S: NodeSource + ?Sized>(
    src: &S,
    found: Vec<Option<ItemValue>>,
) -> Result<Vec<Option<Vec<u8>>>> {
    let refs: Vec<OverflowRef> = found
        .iter()
        .filter_map(|v| match v {
            Some(ItemValue::Overflow(r)) => Some(*r),
            _ => None,
        })
        .collect();
    let mut overflow = src.overflows(&refs)?.into_iter();
    let mut next_overflow = || overflow.next().expect("one value per overflow extent");
    let values = found.into_iter().map(|v| match v {
        Some(ItemValue::Overflow(_)) => Ok(Some(next_overflow())),
        Some(v) => value_bytes(src, v).map(Some),
        None => Ok(None),
    });
    values.collect()
}

/// Visits one node: a leaf fills in the values of its keys; an internal node sends each
/// run of its keys that shares a child to that child.
fn descend(
    visit: &Visit,
    buf: &[u8],
    keys: &[&[u8]],
    found: &mut [Option<ItemValue>],
    next: &mut Vec<Visit>,
) -> Result<()> {
    let addr = visit.ptr.address();
    let node = decode(buf, addr)?;
    check_child(&node, addr, visit.expect_level)?;
    if node.level() == 0 {
        for &k in &visit.keys {
            if let Ok(i) = node.search(keys[k]) {
                found[k] = Some(owned_leaf_value(&node, i));
            }
        }
        return Ok(());
    }
    if node.is_empty() {
        return Err(Error::corrupt(addr, "empty internal node"));
    }
    let below = Some(node.level() - 1);
    let mut run: Option<(usize, Vec<usize>)> = None;
    for &k in &visit.keys {
        let child = node.child_index(keys[k]);
        match &mut run {
            Some((c, ks)) if *c == child => ks.push(k),
            _ => {
                if let Some((c, ks)) = run.replace((child, vec![k])) {
                    next.push(Visit { ptr: node.child(c), expect_level: below, keys: ks });
                }
            }
        }
    }
    if let Some((c, ks)) = run {
        next.push(Visit { ptr: node.child(c), expect_level: below, keys: ks });
    }
    Ok(())
}
