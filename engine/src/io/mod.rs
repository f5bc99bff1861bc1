//! Block devices: the trait the engine writes through, and its implementations.
//!
//! * [`UringDevice`]: io_uring + O_DIRECT on a file or block device (the default).
//! * [`SyncDevice`]: pread/pwrite, chosen when io_uring is unavailable or the file is
//!   buffered (no `O_DIRECT`: tmpfs, some FUSE filesystems).
//! * [`MemDevice`]: in memory, growing on demand; behind `Db::memory`.
//! * [`SimDevice`]: in-memory, deterministic, fault-injecting; models a crash.
//!
//! Contract shared by every implementation (checked by the conformance suite):
//! * offsets and lengths are multiples of [`BlockDevice::sector_bytes`], buffers are aligned
//!   to it; anything else is `ErrorKind::InvalidInput`, never a partial operation;
//! * an access beyond [`BlockDevice::len_bytes`] is `ErrorKind::InvalidInput` (reads and writes
//!   never silently extend a block device; files grow only through [`BlockDevice::grow`]);
//! * `write_batch` returns only after every write in the batch has completed (its completion
//!   reaped), so a following `flush` covers all of them (design.md §10.10);
//! * the writes of one batch do not overlap (`ErrorKind::InvalidInput` otherwise): their
//!   landing order would be unspecified (design.md §10.14);
//! * a write or flush error is returned as is; the engine treats it as fatal (fail-stop).
//!
//! Opening: [`open_path`] with [`DeviceOptions`] (backend choice and automatic fallback,
//! locking, O_DIRECT checks, file growth); [`probe_existing_data`] for `create`'s check.
//! Testing: [`SimDevice`] for crashes and faults, [`CountingDevice`] to count flushes.

mod args;
mod buf;
mod counting;
mod file;
mod mem;
mod open;
mod pool;
#[cfg(all(test, not(loom)))]
pub(crate) use pool::resident_pages;
// `SplitMix64`'s methods (exported hidden, for the workspace's tests) have no docs yet;
// the rest of the module is documented.
#[allow(missing_docs)]
mod sim;
mod sync_dev;
mod uring;
mod zero;

pub use buf::{AlignedBuf, ReadBuf};
pub use counting::CountingDevice;
pub use mem::MemDevice;
pub use open::{open_path, probe_existing_data, uring_fallback_reason, DeviceOptions, IoBackend};
/// The seeded generator behind [`SimDevice`]; exported for the workspace's tests, which
/// share it (`arbor-testkit`). Not part of the supported API.
#[doc(hidden)]
pub use sim::SplitMix64;
pub use sim::{FaultCounts, RandomFaults, SimDevice};
pub use sync_dev::SyncDevice;
pub use uring::UringDevice;

use std::io;
use std::path::Path;

use crate::Error;

/// One read of a contiguous, aligned byte range into `buf` (its whole length).
pub struct ReadOp<'a> {
    /// Byte offset on the device (a multiple of the sector).
    pub offset: u64,
    /// Where the bytes go: aligned memory, a whole number of sectors.
    pub buf: &'a mut [u8],
}

impl std::fmt::Debug for ReadOp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOp")
            .field("offset", &self.offset)
            .field("len", &self.buf.len())
            .finish()
    }
}

/// One read of a completion-driven stream ([`BlockDevice::read_stream`]): its buffer goes to
/// the device with it and comes back filled; `tag` is the caller's.
pub struct StreamRead {
    /// Byte offset on the device (a multiple of the sector).
    pub offset: u64,
    /// Where the bytes go (the whole buffer: a whole number of sectors, aligned).
    pub buf: Box<dyn ReadBuf>,
    /// The caller's name for this read.
    pub tag: usize,
    /// Handed back before the other reads that complete with it: the reads it leads to
    /// start sooner (a tree's internal node, whose children wait for it).
    pub urgent: bool,
}

impl std::fmt::Debug for StreamRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRead").field("offset", &self.offset).field("tag", &self.tag).finish()
    }
}

/// What a stream's caller does with each read as it completes: the reads to start next.
pub type StreamDone<'a> = dyn FnMut(StreamRead) -> Vec<StreamRead> + 'a;

/// One write of `data` (aligned memory, aligned length) at `offset`.
pub struct WriteOp<'a> {
    /// Byte offset on the device (a multiple of the sector).
    pub offset: u64,
    /// The bytes: aligned memory, a whole number of sectors.
    pub data: &'a [u8],
}

impl std::fmt::Debug for WriteOp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOp")
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A store's backing device: a raw block device, a preallocated file, or a simulation.
///
/// Implementations are `Send + Sync`: readers on many threads call `read_batch` concurrently
/// with the writer's `write_batch` / `flush`. The engine never issues two writes to one
/// address at once and never reads a range while it is being written (design.md §10.14).
pub trait BlockDevice: Send + Sync {
    /// The logical sector size: the alignment unit for offsets, lengths and memory.
    fn sector_bytes(&self) -> u32;

    /// The current usable length in bytes.
    fn len_bytes(&self) -> u64;

    /// Reads every op's whole buffer. Submitted together where the backend can batch.
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()>;

    /// Reads driven by their completions (design.md §12.6): starts every read of `first`
    /// and hands each back to `done` as soon as it has completed, filled; the reads `done`
    /// returns start at once, while the others are still in flight. Returns when nothing is
    /// in flight and `done` returned no more. After a failed read no read starts; the error
    /// is returned once the reads in flight have completed (they are dropped, not handed
    /// back). Default: rounds of `read_batch`, each waiting for its slowest read.
    fn read_stream(&self, first: Vec<StreamRead>, done: &mut StreamDone<'_>) -> io::Result<()> {
        let mut round = first;
        while !round.is_empty() {
            let mut ops: Vec<ReadOp<'_>> =
                round.iter_mut().map(|r| ReadOp { offset: r.offset, buf: r.buf.bytes() }).collect();
            self.read_batch(&mut ops)?;
            drop(ops);
            round = round.into_iter().flat_map(&mut *done).collect();
        }
        Ok(())
    }

    /// Writes every op and waits for all completions. Adjacent ops may be coalesced.
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()>;

    /// Makes every completed write durable (fdatasync semantics / device cache flush).
    fn flush(&self) -> io::Result<()>;

    /// Grows the device to at least `min_len_bytes` if it can (files, up to their configured
    /// maximum; new space reads as zeros). Returns the new length. Devices that cannot grow
    /// return their current length unchanged; the caller turns that into `NoSpace`.
    fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        let _ = min_len_bytes;
        Ok(self.len_bytes())
    }

    /// Cuts the device back to `len_bytes` if it can (files: the unused tail of their growth,
    /// design.md §10.16). The engine cuts only bytes no block in use, pending or in flight
    /// occupies. Returns the new length; devices that cannot shrink return their length.
    fn shrink(&self, len_bytes: u64) -> io::Result<u64> {
        let _ = len_bytes;
        Ok(self.len_bytes())
    }

    /// Whether writes are refused by design (a tool's read-only view): open then writes
    /// nothing it can skip (design.md §11.7).
    fn is_read_only(&self) -> bool {
        false
    }

    /// The length `grow` can reach at most (files: their configured maximum); what `create`
    /// sizes the journal against (design.md §11.1).
    fn max_len_bytes(&self) -> u64 {
        self.len_bytes()
    }

    /// A short human-readable description for logs and `stats()` ("io_uring file /x").
    fn describe(&self) -> String;

    /// The file or block device behind this device, if it has one: named in errors.
    fn path(&self) -> Option<&Path> {
        None
    }

    /// Releases the device's exclusive claim (a file's flock, a block device's `O_EXCL`
    /// open) when the store closes: nothing is written through this handle after it, so the
    /// store can be opened again while readers of the closed one still hold its memory
    /// (value guards, snapshots). Default: nothing to release.
    fn unlock(&self) {}

    /// Convenience: one read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_batch(&mut [ReadOp { offset, buf }])
    }

    /// Convenience: one write.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_batch(&[WriteOp { offset, data }])
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Box<T> {
    fn sector_bytes(&self) -> u32 {
        (**self).sector_bytes()
    }
    fn len_bytes(&self) -> u64 {
        (**self).len_bytes()
    }
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        (**self).read_batch(ops)
    }
    fn read_stream(&self, first: Vec<StreamRead>, done: &mut StreamDone<'_>) -> io::Result<()> {
        (**self).read_stream(first, done)
    }
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        (**self).write_batch(ops)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        (**self).grow(min_len_bytes)
    }
    fn shrink(&self, len_bytes: u64) -> io::Result<u64> {
        (**self).shrink(len_bytes)
    }
    fn max_len_bytes(&self) -> u64 {
        (**self).max_len_bytes()
    }
    fn is_read_only(&self) -> bool {
        (**self).is_read_only()
    }
    fn unlock(&self) {
        (**self).unlock()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn path(&self) -> Option<&Path> {
        (**self).path()
    }
}

/// Turns an error of `op` on `dev` into [`Error::Io`] naming the device's path.
pub(crate) fn dev_error<'a>(
    dev: &'a dyn BlockDevice,
    op: &'static str,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::io(op, dev.path(), source)
}

/// How errors name `dev`: its path, or its description when it has none.
pub(crate) fn target_name(dev: &dyn BlockDevice) -> String {
    match dev.path() {
        Some(path) => path.display().to_string(),
        None => dev.describe(),
    }
}
