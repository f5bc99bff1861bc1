//! Many lookups at once (design.md §12.6): the keys descend together, each as far as the
//! nodes in memory take it, and every node they then wait for — whatever its level — is
//! fetched in one call of [`NodeSource::nodes`] (one device batch), instead of one read per
//! key and level; a round of I/O per level only where a key's path misses at every level.

use arbor_format::{ChildPtr, OverflowRef};

use crate::mvcc::modlog::ItemValue;
use crate::store::decode;
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
    let mut pending = vec![Visit { ptr: root, expect_level: None, keys: order }];
    // Each round: walk down through the nodes in memory, then read every node the keys
    // wait for in one batch.
    while !pending.is_empty() {
        let mut waiting = Vec::new();
        while let Some(visit) = pending.pop() {
            match src.cached(visit.ptr) {
                Some(buf) => descend(&visit, &buf?, keys, &mut found, &mut pending)?,
                None => waiting.push(visit),
            }
        }
        let ptrs: Vec<ChildPtr> = waiting.iter().map(|v| v.ptr).collect();
        let bufs = src.nodes(&ptrs)?;
        assert_eq!(
            bufs.len(),
            ptrs.len(),
            "a node source returned {} of {}",
            bufs.len(),
            ptrs.len()
        );
        for (visit, buf) in waiting.into_iter().zip(bufs) {
            descend(&visit, &buf, keys, &mut found, &mut pending)?;
        }
    }
    values(src, found)
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
