//! Early write-back (design.md §4): when the open generation's dirty blocks pass
//! `Options::dirty_max_bytes` in the middle of a transaction, private leaves are sealed and
//! written to their own fresh addresses — which no durable superblock references — and their
//! memory is released, so a transaction larger than RAM works.
//!
//! Only *private leaves* (not catalog leaves) are written back: a leaf has no child crcs to
//! fill in at the freeze, so the crc it was sealed with stays valid until it changes again,
//! and a private block is in no reader's table. A written-back block:
//! * stays readable from the clean cache (or the device) for the writer's lookups
//!   (`Writer::node`);
//! * is read back in by `make_writable` — where every edit path starts — before it changes;
//!   if it was published meanwhile (its transaction committed), it joins the readers' table
//!   then, before its first logged change;
//! * is not written again at the freeze (its crc goes into its parent as it is), and the
//!   freeze's flush covers its write, which completed before;
//! * after its transaction commits, is read by snapshots from the device like a frozen block
//!   (it is not in the table; the parent's pointer is marked crc-pending and the block's own
//!   header is checked).

use arbor_format::constants::TREE_ID_CATALOG;
use arbor_format::node::Node;
use arbor_format::ChildPtr;

use crate::io::{dev_error, WriteOp};
use crate::mvcc::Image;
use crate::store::Store;
use crate::sync::Arc;
use crate::writer::{Dirty, DirtySet};
use crate::Result;

impl DirtySet {
    /// Writes back private leaves until dirty bytes are at most `target`. `allocated` is
    /// the open transaction's allocations, oldest first; `cursor` how far earlier calls
    /// walked it.
    pub(crate) fn write_back(
        &mut self,
        s: &Store,
        allocated: &[(u64, u64)],
        cursor: &mut usize,
        target: u64,
    ) -> Result<()> {
        let (chosen, freed) = self.choose(u64::from(s.block_bytes), allocated, cursor, target);
        // Seal and take the images out (private slots: nobody else looks at them).
        let mut images = Vec::with_capacity(chosen.len());
        for &addr in &chosen {
            let slot = Arc::clone(&self.slot(addr).slot);
            let mut st = slot.write();
            let buf = st.buf_mut(addr)?;
            arbor_format::header::seal_block(buf);
            let crc = arbor_format::block_crc(buf);
            let buf = match std::mem::replace(&mut st.image, Image::OnDisk { crc }) {
                Image::Mutable(buf) => buf,
                other => {
                    // Chosen above as resident (`is_plain_leaf`), under the writer lock.
                    st.set_image(other);
                    panic!("write-back chose block {addr}, which is not a resident image");
                }
            };
            drop(st);
            images.push((addr, slot, buf, crc));
        }
        let ops: Vec<WriteOp<'_>> = images
            .iter()
            .map(|(addr, _, buf, _)| WriteOp { offset: s.block_offset(*addr), data: buf })
            .collect();
        if let Err(e) = s.dev.write_batch(&ops) {
            // Put the images back: nothing was lost; the caller turns the handle fail-stop.
            drop(ops);
            for (_, slot, buf, _) in images {
                slot.write().set_image(Image::Mutable(buf));
            }
            return Err(dev_error(&*s.dev, "write back")(e));
        }
        drop(ops);
        let n = images.len() as u64;
        s.counters.blocks_written.fetch_add(n, crate::sync::Ordering::Relaxed);
        s.counters.blocks_written_early.fetch_add(n, crate::sync::Ordering::Relaxed);
        let gen = self.gen;
        s.note_written_back(images.iter().map(|(addr, _, _, crc)| (*addr, gen, *crc)));
        for (addr, _, buf, _) in images {
            // The written image becomes a clean one in the pool (dirty memory is what the
            // budget bounds; the pool has its own). It replaces any older image at the
            // address (a freed block's), and is replaced again if the block is written back
            // or frozen after it changes; meanwhile readers find a changed published block in
            // their table first.
            s.pool.install(addr, &buf);
        }
        assert!(self.bytes >= freed, "wrote back {freed} bytes of {}", self.bytes);
        self.bytes -= freed;
        Ok(())
    }

    /// Private leaves to write back to bring dirty bytes to `target`, and the bytes that
    /// frees: the oldest allocations first (a sequential load's full leaves, which nothing
    /// touches again), from where the last write-back stopped; then, if that is not enough,
    /// any private leaf.
    fn choose(
        &self,
        block: u64,
        allocated: &[(u64, u64)],
        cursor: &mut usize,
        target: u64,
    ) -> (Vec<u64>, u64) {
        let mut chosen = Vec::new();
        let mut freed = 0u64;
        while *cursor < allocated.len() {
            if self.bytes.saturating_sub(freed) <= target {
                break;
            }
            let (addr, _) = allocated[*cursor];
            *cursor += 1;
            if self.map.get(&addr).is_some_and(|d| d.unlogged() && is_plain_leaf(d)) {
                chosen.push(addr);
                freed += block;
            }
        }
        if self.bytes.saturating_sub(freed) > target {
            let picked: std::collections::HashSet<u64> = chosen.iter().copied().collect();
            for (addr, d) in &self.map {
                if self.bytes.saturating_sub(freed) <= target {
                    break;
                }
                if d.unlogged() && is_plain_leaf(d) && !picked.contains(addr) {
                    chosen.push(*addr);
                    freed += block;
                }
            }
        }
        debug_assert_eq!(freed, chosen.len() as u64 * block, "freed bytes are whole blocks");
        (chosen, freed)
    }

    /// Reads a written-back block back in before it changes.
    pub(crate) fn make_resident(&mut self, s: &Store, addr: u64) -> Result<()> {
        let d = self.slot(addr);
        let Image::OnDisk { crc } = d.slot.read().image else { return Ok(()) };
        let (slot, private) = (Arc::clone(&d.slot), d.private);
        s.forget_written_back(addr);
        // Usually still in the clean cache (a copy); else read and verified from the device.
        let image = s.read_block(ChildPtr::new(addr, self.gen, crc))?;
        let buf = crate::io::AlignedBuf::from_slice(&image, s.align);
        slot.write().set_image(Image::Mutable(buf));
        self.bytes += u64::from(s.block_bytes);
        if !private {
            // Published while on disk: from its first logged change on, readers need it.
            s.table.insert(addr, slot);
        }
        Ok(())
    }
}

/// A resident leaf of a user tree.
fn is_plain_leaf(d: &Dirty) -> bool {
    let st = d.slot.read();
    let Image::Mutable(buf) = &st.image else { return false };
    Node::decode_trusted(buf).is_ok_and(|n| n.level() == 0 && n.header().owner() != TREE_ID_CATALOG)
}
