//! Warming the buffer pool at open (design.md §12.8): the internal nodes of the trees given,
//! read from the device together ([`NodeSource::stream`]: all in flight at once, each
//! node's internal children started as it arrives), so that a cold lookup after a restart
//! reads one block — its leaf — instead of one per level it finds cold.

use std::collections::VecDeque;

use arbor_format::ChildPtr;

use crate::store::{decode, Wanted};
use crate::tree::read::{check_child, NodeSource};
use crate::Result;

/// Reads into memory every internal node under `roots` (the roots themselves whatever their
/// level), at most `max_reads` of them, upper levels first where the budget runs out.
/// Returns how many blocks it read.
pub(crate) fn internal_nodes<S: NodeSource + ?Sized>(
    src: &S,
    roots: &[ChildPtr],
    max_reads: usize,
) -> Result<usize> {
    let mut warm = Warm { src, left: max_reads, waiting: Vec::new() };
    let pending = roots.iter().map(|&ptr| (ptr, None)).collect();
    let reads = warm.walk(pending)?;
    src.stream(reads, &mut |tag, buf| {
        let expect = warm.waiting[tag];
        let mut below = Vec::new();
        children(&buf, expect, &mut below)?;
        drop(buf);
        warm.walk(below)
    })?;
    Ok(max_reads - warm.left)
}

struct Warm<'a, S: ?Sized> {
    src: &'a S,
    /// Reads the budget still allows.
    left: usize,
    /// The level each read's parent expects, by tag (a root's: none).
    waiting: Vec<(ChildPtr, Option<u8>)>,
}

impl<S: NodeSource + ?Sized> Warm<'_, S> {
    /// Goes down through the nodes of `pending` already in memory; returns the reads of the
    /// others (within the budget).
    fn walk(&mut self, pending: Vec<(ChildPtr, Option<u8>)>) -> Result<Vec<Wanted>> {
        let mut reads = Vec::new();
        // Breadth first: a budget that runs out leaves the lowest levels cold.
        let mut pending = VecDeque::from(pending);
        while let Some((ptr, expect)) = pending.pop_front() {
            match self.src.cached(ptr) {
                Some(buf) => children(&buf?, (ptr, expect), &mut pending)?,
                None if self.left > 0 => {
                    self.left -= 1;
                    reads.push(Wanted { ptr, tag: self.waiting.len(), urgent: true });
                    self.waiting.push((ptr, expect));
                }
                None => {}
            }
        }
        Ok(reads)
    }
}

/// The children of an internal node above level 1 (those are internal too); none for a
/// node of level 1 (its children are leaves) or a leaf.
fn children(
    buf: &[u8],
    (ptr, expect): (ChildPtr, Option<u8>),
    out: &mut impl Extend<(ChildPtr, Option<u8>)>,
) -> Result<()> {
    let node = decode(buf, ptr.address())?;
    check_child(&node, ptr.address(), expect)?;
    if node.level() >= 2 {
        let below = Some(node.level() - 1);
        out.extend((0..node.len()).map(|i| (node.child(i), below)));
    }
    Ok(())
}
