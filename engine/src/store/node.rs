//! Node images as the tree code reads them: from a writer's dirty block or an immutable
//! image, decoded with only the header re-checked.

use arbor_format::node::Node;

use crate::error::corrupt;
use crate::mvcc::SlotState;
use crate::store::Block;
use crate::sync::RwLockReadGuard;
use crate::Result;

/// A node image to read: the writer's dirty block (under its slot's read lock, which
/// readers share; the writer's own edits need `&mut Writer`, so borrowck guarantees the
/// writer never waits on a guard it holds) or a clean block.
pub(crate) enum NodeBuf<'a> {
    Dirty(RwLockReadGuard<'a, SlotState>),
    Clean(Block<'a>),
}

impl std::ops::Deref for NodeBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            NodeBuf::Dirty(g) => g.image.bytes(),
            NodeBuf::Clean(b) => b,
        }
    }
}

/// A view of a node image already validated in full: when it was read from the device
/// (`Store::read_uncached`) or because the writer built it. Only the header is re-checked,
/// so a lookup costs a binary search, not a validation of the whole block. Debug builds
/// (every test) re-validate in full to catch writer bugs.
#[inline]
pub(crate) fn decode(buf: &[u8], addr: u64) -> Result<Node<'_>> {
    debug_assert!(Node::decode(buf).is_ok(), "block {addr} fails full validation");
    Node::decode_trusted(buf).map_err(|e| corrupt(addr, e))
}
