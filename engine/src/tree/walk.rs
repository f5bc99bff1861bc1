//! The one tree walker, and the one list of what a walk of a whole store starts from.
//!
//! Recovery (verifying the newest generations, loading the catalog), `check` and repair,
//! deleting a tree and freeing orphaned subtrees all walk with [`Walk`]: an explicit stack
//! (no recursion), every node decoded and checked against the level its parent expects, and
//! a bound on the nodes visited — a corrupt store can form a cycle through catalog entries,
//! and a walk that visits more nodes than the device has blocks has found one. What a walk
//! starts from is [`roots`]: the catalog, then each orphaned subtree; the named trees are
//! reached through the catalog's leaves ([`catalog_entries`]).

use arbor_format::constants::TREE_ID_CATALOG;
use arbor_format::node::{LeafValue, Node};
use arbor_format::ChildPtr;

use crate::store::{decode, NodeBuf};
use crate::tree::catalog;
use crate::tree::read::check_child;
use crate::writer::TreeMeta;
use crate::{Error, Result};

/// A pointer the walk follows: the level its node must have (`None` for a root, whose level
/// nothing records) and the caller's data for it (separator bounds, a tree's name…).
pub(crate) struct Edge<T> {
    pub ptr: ChildPtr,
    pub level: Option<u8>,
    pub data: T,
}

/// What a whole-store walk starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RootKind {
    /// The catalog: its leaves name every tree (reached through [`catalog_entries`]).
    Catalog,
    /// A subtree of a deleted tree, still to be freed (design.md §10.17).
    Orphan,
}

/// The roots of a whole-store walk, in walk order: the catalog, then the orphan list. Every
/// block the store uses is reachable from these (plus the allocator's own blocks).
pub(crate) fn roots(catalog: ChildPtr, orphans: &[ChildPtr]) -> Vec<(RootKind, ChildPtr)> {
    let mut out = Vec::with_capacity(1 + orphans.len());
    out.push((RootKind::Catalog, catalog));
    out.extend(orphans.iter().map(|&ptr| (RootKind::Orphan, ptr)));
    out
}

/// The entries of a catalog leaf: each tree's name and metadata. A catalog leaf holds only
/// inline values; anything else is a corrupt block.
pub(crate) fn catalog_entries<'n>(
    node: &'n Node<'_>,
    addr: u64,
) -> impl Iterator<Item = Result<(&'n [u8], TreeMeta)>> + 'n {
    debug_assert!(node.level() == 0, "catalog entries of internal node {addr}");
    (0..node.len()).map(move |i| match node.leaf_value(i) {
        LeafValue::Inline(v) => Ok((node.key(i), catalog::decode(v, addr)?)),
        LeafValue::Overflow(_) => Err(Error::corrupt(addr, "overflow value in the catalog")),
    })
}

/// Whether `node` is a leaf of the catalog (whose values are tree roots).
pub(crate) fn is_catalog_leaf(node: &Node<'_>) -> bool {
    node.level() == 0 && node.header().owner() == TREE_ID_CATALOG
}

/// A depth-first walk over tree nodes. The caller pops nodes with [`Walk::next`] and pushes
/// the edges it wants followed (all children, those of recent generations, tree roots found
/// in catalog leaves…), so one walker serves every traversal the engine makes.
pub(crate) struct Walk<T> {
    stack: Vec<Edge<T>>,
    visited: u64,
    visited_max: u64,
}

impl<T> Walk<T> {
    /// A walk that fails with `Corrupt` once it has visited more than `visited_max` nodes
    /// (pass the device's block count: no acyclic walk visits more).
    pub(crate) fn new(visited_max: u64) -> Walk<T> {
        Walk { stack: Vec::new(), visited: 0, visited_max }
    }

    /// Follows `ptr`, whose node must have `level` (`None`: any, for a root).
    pub(crate) fn push(&mut self, ptr: ChildPtr, level: Option<u8>, data: T) {
        self.stack.push(Edge { ptr, level, data });
    }

    /// The edges not walked yet, bottom of the stack first (a walk resumed later pushes them
    /// back in this order).
    pub(crate) fn into_edges(self) -> impl Iterator<Item = Edge<T>> {
        self.stack.into_iter()
    }

    /// The next node: read through `read`, decoded and checked against the level its parent
    /// expects. `None` when the walk is done; `Some((edge, Err(_)))` for a node that could
    /// not be read or is malformed (the caller stops or skips it; its subtree is not walked).
    pub(crate) fn next<'a>(
        &mut self,
        read: impl FnOnce(ChildPtr) -> Result<NodeBuf<'a>>,
    ) -> Option<(Edge<T>, Result<NodeBuf<'a>>)> {
        let edge = self.stack.pop()?;
        self.visited += 1;
        if self.visited > self.visited_max {
            let reason = format!("tree walk visits more than {} blocks: a cycle", self.visited_max);
            let e = Error::corrupt(edge.ptr.address(), reason);
            return Some((edge, Err(e)));
        }
        let addr = edge.ptr.address();
        let buf = read(edge.ptr).and_then(|buf| {
            check_child(&decode(&buf, addr)?, addr, edge.level)?;
            Ok(buf)
        });
        Some((edge, buf))
    }
}

impl Walk<()> {
    /// Walks every node under the pushed roots, following all children, and hands each leaf
    /// (with its pointer) to `leaf`; stops at the first error, from a read or from `leaf`.
    pub(crate) fn each_leaf<'a>(
        mut self,
        mut read: impl FnMut(ChildPtr) -> Result<NodeBuf<'a>>,
        mut leaf: impl FnMut(&Node<'_>, ChildPtr) -> Result<()>,
    ) -> Result<()> {
        while let Some((edge, buf)) = self.next(&mut read) {
            let buf = buf?;
            let node = node_of(&buf, edge.ptr)?;
            if node.level() == 0 {
                leaf(&node, edge.ptr)?;
                continue;
            }
            for i in 0..node.len() {
                self.push(node.child(i), Some(node.level() - 1), ());
            }
        }
        Ok(())
    }
}

/// Decodes a node [`Walk::next`] returned (already validated: only the header is re-read).
pub(crate) fn node_of<'b>(buf: &'b NodeBuf<'_>, ptr: ChildPtr) -> Result<Node<'b>> {
    decode(buf, ptr.address())
}
