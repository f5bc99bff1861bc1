//! Opening a store's target (a file or a raw block device) for the tool.
//!
//! Locking, decided here and documented in `--help` and the README:
//! * `info` takes no lock at all: it reads the superblock area (like `mdb_stat`, it works on a
//!   store another process has open, and on a damaged one). Each superblock copy carries its
//!   own crc, so a copy caught mid-write shows as invalid, never as wrong figures.
//! * `check`, `stat`, `dump` and the source of `compact` read through [`ReadOnlyDevice`],
//!   which holds a *shared* lock (a shared `flock` on files, `O_EXCL` on block devices): a
//!   writer cannot open the store while they walk it, so the blocks they read cannot be
//!   reused under them. They fail with a clear message while a writer has the store open.
//! * `format`, `load`, `check --repair` and the destination of `compact` open the store for
//!   writing through the engine, which takes the exclusive lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use arbor::{BlockDevice, ReadOp, WriteOp};

use crate::error::{CliError, Result};

/// Reads need no alignment (no `O_DIRECT`): any sector size works; report the smallest.
const READ_ONLY_SECTOR_BYTES: u32 = 512;

/// A read-only [`BlockDevice`] over `pread`: writes and flushes are refused.
pub struct ReadOnlyDevice {
    file: File,
    len_bytes: u64,
    describe: String,
    /// Reads past the end return zeros instead of failing (see [`Self::zero_past_end`]).
    zero_past_end: bool,
}

/// Whether `path` is a block device.
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

fn busy(path: &Path) -> CliError {
    CliError::new(format!(
        "{} is open by another process (it holds the store's lock); stop it first, or use \
         `arbor info`, which reads without a lock",
        path.display()
    ))
}

impl ReadOnlyDevice {
    /// Opens `path` read-only. With `lock`, takes the shared lock described in the module
    /// comment and fails if a writer holds the store.
    pub fn open(path: &Path, lock: bool) -> Result<ReadOnlyDevice> {
        let block = is_block_device(path);
        let mut opts = OpenOptions::new();
        opts.read(true);
        if block && lock {
            opts.custom_flags(libc::O_EXCL);
        }
        let mut file = opts.open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => busy(path),
            _ => CliError::io(path, e),
        })?;
        if !block && lock {
            match file.try_lock_shared() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(busy(path)),
                Err(std::fs::TryLockError::Error(e)) => return Err(CliError::io(path, e)),
            }
        }
        let len_bytes = if block {
            file.seek(SeekFrom::End(0)).map_err(|e| CliError::io(path, e))?
        } else {
            file.metadata().map_err(|e| CliError::io(path, e))?.len()
        };
        let kind = if block { "block device" } else { "file" };
        Ok(ReadOnlyDevice {
            file,
            len_bytes,
            describe: format!("read-only {kind} {}", path.display()),
            zero_past_end: false,
        })
    }

    /// Reads past the end return zeros: the engine's existing-data probe reads whole sectors
    /// of a file whose length need not be a multiple of one.
    pub fn zero_past_end(mut self) -> ReadOnlyDevice {
        self.zero_past_end = true;
        self
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Whether another process holds the store's lock (probed without keeping it).
pub fn lock_held(path: &Path) -> bool {
    if is_block_device(path) {
        let f = OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(path);
        return matches!(f, Err(e) if e.raw_os_error() == Some(libc::EBUSY));
    }
    match File::open(path) {
        Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "the tool opened this store read-only")
}

impl BlockDevice for ReadOnlyDevice {
    fn sector_bytes(&self) -> u32 {
        READ_ONLY_SECTOR_BYTES
    }

    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        for op in ops.iter_mut() {
            if self.zero_past_end {
                let avail = self.len_bytes.saturating_sub(op.offset).min(op.buf.len() as u64);
                let (head, tail) = op.buf.split_at_mut(avail as usize);
                self.file.read_exact_at(head, op.offset)?;
                tail.fill(0);
                continue;
            }
            let end = op.offset.checked_add(op.buf.len() as u64);
            if end.is_none_or(|end| end > self.len_bytes) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "read beyond the end"));
            }
            self.file.read_exact_at(op.buf, op.offset)?;
        }
        Ok(())
    }

    fn write_batch(&self, _ops: &[WriteOp<'_>]) -> io::Result<()> {
        Err(read_only())
    }

    fn flush(&self) -> io::Result<()> {
        Err(read_only())
    }

    fn is_read_only(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Shares one opened device between several engine calls (so `check --repair` holds the
/// exclusive lock from the first read to the last write).
#[derive(Clone)]
pub struct SharedDevice(pub Arc<dyn BlockDevice>);

impl BlockDevice for SharedDevice {
    /// The lock outlives each engine call on purpose (see the type): closing one store on
    /// this device does not release it.
    fn unlock(&self) {}
    fn sector_bytes(&self) -> u32 {
        self.0.sector_bytes()
    }
    fn len_bytes(&self) -> u64 {
        self.0.len_bytes()
    }
    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        self.0.read_batch(ops)
    }
    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        self.0.write_batch(ops)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
    fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        self.0.grow(min_len_bytes)
    }
    fn is_read_only(&self) -> bool {
        self.0.is_read_only()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// Opens `path` for writing through the engine's device layer (exclusive lock, O_DIRECT).
pub fn open_writable(path: &Path) -> Result<SharedDevice> {
    let dev = arbor::io::open_path(path, false, &arbor::io::DeviceOptions::default())
        .map_err(|e| CliError::store(path, e))?;
    Ok(SharedDevice(Arc::from(dev)))
}

/// Opens a store read-only (shared lock) through the engine: recovery picks the newest
/// durable generation exactly as `Db::open` does, and nothing is ever written. A command
/// reads what it needs once, so the pool is not warmed first (`warm_on_open`: a `get` would
/// otherwise read every internal node for the few blocks of its one lookup).
pub fn open_db_readonly(path: &Path) -> Result<arbor::Db> {
    let dev = ReadOnlyDevice::open(path, true)?;
    let opts = arbor::Options { warm_on_open: false, ..arbor::Options::default() };
    arbor::Db::open_on(Box::new(dev), opts).map_err(|e| CliError::store(path, e))
}
