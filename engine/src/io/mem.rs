//! `MemDevice`: a store in memory, for tests and scratch data (`Db::memory`).
//!
//! Why not [`super::SimDevice`] without faults: the simulated device keeps every unflushed
//! write apart so that it can model a crash, has a fixed length, and draws from a seeded
//! generator; a memory store needs none of that. `MemDevice` is the plain case: one byte
//! vector behind a reader-writer lock, writes visible (and "durable") at once, `flush` a
//! no-op. It grows like a file (design.md §10.16): from what `create` asks for, in steps as
//! large as the device already is, up to its maximum; new space reads as zeros.

use std::io;

use super::args::{check_reads, check_writes};
use super::file::grown_len;
use super::{BlockDevice, ReadOp, WriteOp};
use crate::sync::{self, Arc, RwLock};

/// The alignment a memory device asks for: that of files, so that code tested in memory
/// meets the same rules on disk.
const MEM_SECTOR_BYTES: u32 = 4096;
/// Largest growth step of a memory device.
const MEM_GROW_STEP_BYTES: u64 = 64 << 20;

/// An in-memory block device: starts empty and grows up to `max_bytes`. Clones share the
/// bytes, so a store can be closed and opened again on a clone (`Db::open_on`), as after a
/// clean close; nothing survives the process. Everything else behaves as on disk.
///
/// ```
/// use arbor::io::MemDevice;
/// use arbor::{Db, Options};
///
/// let db = Db::create_on(Box::new(MemDevice::new(64 << 20)), Options::default())?;
/// # Ok::<(), arbor::Error>(())
/// ```
#[derive(Clone)]
pub struct MemDevice {
    bytes: Arc<RwLock<Vec<u8>>>,
    max_bytes: u64,
}

impl std::fmt::Debug for MemDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::BlockDevice;
        f.debug_struct("MemDevice").field("device", &self.describe()).finish()
    }
}

impl MemDevice {
    /// A device that grows on demand up to `max_bytes` (rounded down to 4 KiB); memory is
    /// taken as it grows.
    pub fn new(max_bytes: u64) -> MemDevice {
        let sector = u64::from(MEM_SECTOR_BYTES);
        MemDevice {
            bytes: Arc::new(RwLock::new(Vec::new())),
            max_bytes: max_bytes - max_bytes % sector,
        }
    }
}

impl BlockDevice for MemDevice {
    fn sector_bytes(&self) -> u32 {
        MEM_SECTOR_BYTES
    }

    fn len_bytes(&self) -> u64 {
        sync::read(&self.bytes).len() as u64
    }

    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        let bytes = sync::read(&self.bytes);
        check_reads(ops, MEM_SECTOR_BYTES, bytes.len() as u64)?;
        for op in ops.iter_mut() {
            let from = op.offset as usize; // in range: checked above
            op.buf.copy_from_slice(&bytes[from..from + op.buf.len()]);
        }
        Ok(())
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        let mut bytes = sync::write(&self.bytes);
        check_writes(ops, MEM_SECTOR_BYTES, bytes.len() as u64)?;
        for op in ops {
            let from = op.offset as usize; // in range: checked above
            bytes[from..from + op.data.len()].copy_from_slice(op.data);
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn max_len_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        let mut bytes = sync::write(&self.bytes);
        let current = bytes.len() as u64;
        if min_len_bytes <= current || current >= self.max_bytes {
            return Ok(current);
        }
        let want = grown_len(current, min_len_bytes, MEM_GROW_STEP_BYTES, MEM_SECTOR_BYTES);
        let want = want.min(self.max_bytes);
        let want = usize::try_from(want).map_err(|_| io::ErrorKind::OutOfMemory)?;
        let more = want - bytes.len();
        bytes.try_reserve_exact(more).map_err(|_| io::ErrorKind::OutOfMemory)?;
        bytes.resize(want, 0);
        Ok(want as u64)
    }

    fn shrink(&self, len_bytes: u64) -> io::Result<u64> {
        let mut bytes = sync::write(&self.bytes);
        let target = len_bytes.next_multiple_of(u64::from(MEM_SECTOR_BYTES));
        if let Ok(target) = usize::try_from(target) {
            if target < bytes.len() {
                bytes.truncate(target);
                bytes.shrink_to_fit();
            }
        }
        Ok(bytes.len() as u64)
    }

    fn describe(&self) -> String {
        format!("memory (up to {} bytes)", self.max_bytes)
    }
}
