//! `SyncDevice`: pread/pwrite, fdatasync for flush. The fallback when io_uring is
//! unavailable, the backend of buffered files (no `O_DIRECT`: tmpfs, some FUSE filesystems,
//! see `file.rs`), and a reference the io_uring backend is checked against.
//!
//! Each op is one positioned read or write (std's `read_exact_at`/`write_all_at`, which
//! retry `EINTR` and continue short transfers); ops are not coalesced — this backend favours
//! simplicity over throughput. Concurrent readers need no lock: pread is thread-safe.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::args::{check_reads, check_writes};
use super::file::DevFile;
use super::open::DeviceOptions;
use super::{BlockDevice, ReadOp, WriteOp};
use crate::Error;

/// Retries of one call that fails with `EAGAIN` (not expected on a blocking descriptor).
const RETRIES_MAX: u32 = 16;

/// pread/pwrite device: `O_DIRECT` where the filesystem has it, buffered where it does not.
pub struct SyncDevice {
    file: DevFile,
}

impl std::fmt::Debug for SyncDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::BlockDevice;
        f.debug_struct("SyncDevice").field("device", &self.describe()).finish()
    }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut retries = 0;
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && retries < RETRIES_MAX => {
                retries += 1
            }
            other => return other,
        }
    }
}

impl SyncDevice {
    /// Opens `path` (see [`super::open_path`] for the rules) with pread/pwrite.
    pub fn open(path: &Path, create: bool, opts: &DeviceOptions) -> Result<SyncDevice, Error> {
        Ok(SyncDevice::from_file(DevFile::open(path, create, opts)?))
    }

    pub(crate) fn from_file(file: DevFile) -> SyncDevice {
        SyncDevice { file }
    }
}

impl BlockDevice for SyncDevice {
    fn unlock(&self) {
        self.file.unlock();
    }

    fn sector_bytes(&self) -> u32 {
        self.file.sector_bytes()
    }

    fn len_bytes(&self) -> u64 {
        self.file.len()
    }

    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        check_reads(ops, self.sector_bytes(), self.len_bytes())?;
        for op in ops.iter_mut() {
            let offset = op.offset;
            retry(|| self.file.file().read_exact_at(op.buf, offset))
                .map_err(|e| io::Error::new(e.kind(), format!("pread at offset {offset}: {e}")))?;
        }
        Ok(())
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        check_writes(ops, self.sector_bytes(), self.len_bytes())?;
        let fill = self.file.zero_fill(ops);
        let zeros = fill.ops();
        for op in ops.iter().chain(&zeros) {
            let offset = op.offset;
            retry(|| self.file.file().write_all_at(op.data, offset))
                .map_err(|e| io::Error::new(e.kind(), format!("pwrite at offset {offset}: {e}")))?;
        }
        drop(zeros);
        fill.written();
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        retry(|| self.file.file().sync_data())
            .map_err(|e| io::Error::new(e.kind(), format!("fdatasync: {e}")))
    }

    fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        self.file.grow(min_len_bytes)
    }

    fn shrink(&self, len_bytes: u64) -> io::Result<u64> {
        self.file.shrink(len_bytes)
    }

    fn max_len_bytes(&self) -> u64 {
        self.file.max_len()
    }

    fn describe(&self) -> String {
        format!(
            "pread/pwrite {} {} (sector {})",
            self.file.kind_name(),
            self.file.path().display(),
            self.sector_bytes()
        )
    }

    fn path(&self) -> Option<&Path> {
        Some(self.file.path())
    }
}
