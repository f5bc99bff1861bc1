//! The opened target shared by the io_uring and the pread/pwrite backends: the descriptor,
//! how it was opened (block device or regular file), its sector size and length, and the
//! file growth rule (design.md §7, §10.16).
//!
//! Opening rules:
//! * block device (`S_ISBLK`): the kernel's exclusive claim is an `O_EXCL` open of its own
//!   (it also conflicts with a mounted filesystem; `EBUSY` becomes [`Error::Locked`]); I/O
//!   goes through a second, non-exclusive `O_DIRECT` open. Length from `BLKGETSIZE64`,
//!   sector from `BLKSSZGET`. A block device never grows.
//! * regular file: `flock(LOCK_EX | LOCK_NB)` (through `File::try_lock`) on an open of its
//!   own, created with mode 0600; I/O goes through a second, `O_DIRECT` open. flock locks
//!   belong to the open file description, so a second open in the same process conflicts
//!   exactly like one in another process. The sector is
//!   the direct-I/O alignment the kernel reports through `statx(STATX_DIOALIGN)` (the larger
//!   of the offset and memory alignments, at least 512); kernels before 6.1 do not report
//!   it, and then we assume 4096, which every Linux filesystem accepts for direct I/O on
//!   devices with logical sectors up to 4 KiB.
//! * buffered files: on tmpfs/ramfs (whose "direct" I/O goes through memory anyway), and on
//!   filesystems that report a zero direct-I/O alignment or refuse `O_DIRECT` with `EINVAL`
//!   (some FUSE ones), the file is used without `O_DIRECT`, through the page cache, with
//!   the same 4096-byte alignment and `fdatasync` for durability (design.md §7). One `log`
//!   warning says so. A block device that refuses `O_DIRECT` is an [`Error::InvalidInput`].
//!
//! # Why the lock has a descriptor of its own
//! A flock or an `O_EXCL` claim is released when the last reference to its open file
//! description goes. io_uring requests hold references to the file they target, and when a
//! process is killed the kernel frees its rings (and those references) asynchronously, after
//! the process has been reaped: with the lock on the I/O descriptor, a `Db::open` right
//! after `kill -9` and `wait()` saw [`Error::Locked`] for a few milliseconds. The lock
//! descriptor never reaches a ring, so it is closed with the process. The dying process's
//! in-flight requests are not what lingers: exit cancels them and waits for them to
//! complete before the process can be reaped.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::open::{probe_target, DeviceOptions};
use super::zero::{Claim, Zeroing, ZERO_WRITE_BYTES};
use super::{AlignedBuf, WriteOp};
use crate::sync::{self, AtomicU64, Mutex, Ordering};
use crate::Error;

/// `_IOR(0x12, 114, size_t)`: the block device's size in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
/// `_IO(0x12, 104)`: the block device's logical sector size.
const BLKSSZGET: libc::c_ulong = 0x1268;
/// Sector assumed for files when the kernel does not report its direct-I/O alignment.
const FILE_SECTOR_BYTES_DEFAULT: u32 = 4096;
/// Smallest and largest sector we accept from the kernel.
const SECTOR_BYTES_MIN: u32 = 512;
const SECTOR_BYTES_MAX: u32 = 64 * 1024;
/// Direct-I/O alignment assumed for files opened without `O_DIRECT` (buffered).
const BUFFERED_SECTOR_BYTES: u32 = 4096;
const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// `EINTR`s tolerated while the existing-data probe reads one region.
const READ_INTERRUPTS_MAX: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetKind {
    BlockDevice,
    File,
}

/// An opened, exclusively held target.
pub(crate) struct DevFile {
    /// The descriptor every read, write and flush goes through (io_uring's too).
    file: File,
    /// Holds the lock (flock, or the `O_EXCL` claim) and nothing else: never used for I/O,
    /// so no io_uring request ever references it (see the module comment). Declared after
    /// `file` so that it is closed last; `unlock` closes it when the store closes.
    lock: Mutex<Option<File>>,
    path: PathBuf,
    kind: TargetKind,
    /// Opened with `O_DIRECT`; false for a buffered file (see the module comment).
    direct: bool,
    sector_bytes: u32,
    /// Published with Release once the new space is allocated: the space a file grew by in
    /// `grow` is zeroed by the first write batch that reaches it (`zeroing`); the space of
    /// `create` is zeroed and synced first.
    len_bytes: AtomicU64,
    grow_step_bytes: u64,
    max_bytes: u64,
    /// Serialises growth (the writer's job; this only keeps two growers from interleaving).
    grow_lock: Mutex<()>,
    /// The part of the growth no write has reached yet (design.md §10.16).
    zeroing: Zeroing,
}

impl Drop for DevFile {
    /// A zero fill must not outlive the handle: a later open could have written data there.
    fn drop(&mut self) {
        self.zeroing.finish();
    }
}

fn unsupported_direct_io(path: &Path, why: &str) -> Error {
    Error::InvalidInput(format!(
        "O_DIRECT is not supported for {} ({why}); put the store on a disk-backed \
         filesystem such as ext4 or xfs, or on a block device",
        path.display()
    ))
}

impl DevFile {
    pub(crate) fn open(path: &Path, create: bool, opts: &DeviceOptions) -> Result<DevFile, Error> {
        let mut dev = match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_block_device() => DevFile::open_block(path)?,
            Ok(meta) if !meta.is_file() => {
                return Err(Error::InvalidInput(format!(
                    "{} is neither a regular file nor a block device",
                    path.display()
                )))
            }
            Ok(_) => DevFile::open_file(path, create, opts)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                DevFile::open_file(path, create, opts)?
            }
            Err(e) => return Err(Error::io("open", Some(path), e)),
        };
        // Refuse existing data before anything is written: growing a file zero-fills from
        // its last whole sector, which would destroy a short file's bytes.
        if create && !opts.overwrite_existing {
            dev.refuse_existing_data()?;
        }
        if create && dev.kind == TargetKind::File && dev.len() < opts.initial_bytes {
            // The first growth is exactly the requested initial size (rounded to the sector),
            // not a multiple of the step.
            let sector = u64::from(dev.sector_bytes);
            let want = opts.initial_bytes.div_ceil(sector) * sector;
            let grown = dev.grow_to(want.min(dev.max_bytes), false);
            grown.map_err(|e| Error::io("grow", Some(path), e))?;
        }
        if dev.kind == TargetKind::File {
            dev.check_first_read()?;
        }
        Ok(dev)
    }

    fn open_block(path: &Path) -> Result<DevFile, Error> {
        // The claim first: a busy device is `Locked` before anything else is tried.
        let lock = OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::EBUSY) => Error::Locked { path: path.to_owned(), holder: None },
                _ => Error::io("open", Some(path), e),
            },
        )?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => unsupported_direct_io(path, "open returned EINVAL"),
                _ => Error::io("open", Some(path), e),
            })?;
        check_same_target(&lock, &file, path)?;
        let fd = file.as_raw_fd();
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to `size`,
        // alive for the call; `fd` is open for the call's duration.
        if unsafe { libc::ioctl(fd, BLKGETSIZE64 as _, &mut size as *mut u64) } != 0 {
            return Err(Error::io("BLKGETSIZE64", Some(path), io::Error::last_os_error()));
        }
        let mut sector: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer, which points to `sector`.
        if unsafe { libc::ioctl(fd, BLKSSZGET as _, &mut sector as *mut libc::c_int) } != 0 {
            return Err(Error::io("BLKSSZGET", Some(path), io::Error::last_os_error()));
        }
        let sector_bytes = u32::try_from(sector).unwrap_or(0);
        if !sector_bytes.is_power_of_two()
            || !(SECTOR_BYTES_MIN..=SECTOR_BYTES_MAX).contains(&sector_bytes)
        {
            return Err(Error::InvalidInput(format!(
                "{}: unsupported logical sector size {sector}",
                path.display()
            )));
        }
        let len = size - size % u64::from(sector_bytes);
        Ok(DevFile {
            file,
            lock: Mutex::new(Some(lock)),
            path: path.to_owned(),
            kind: TargetKind::BlockDevice,
            direct: true,
            sector_bytes,
            len_bytes: AtomicU64::new(len),
            grow_step_bytes: 0,
            max_bytes: len,
            grow_lock: Mutex::new(()),
            zeroing: Zeroing::default(),
        })
    }

    fn open_file(path: &Path, create: bool, opts: &DeviceOptions) -> Result<DevFile, Error> {
        let lock = lock_file(path, create)?;
        let (file, mut buffered_why) = match open_direct(path) {
            Ok(file) => (file, None),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let file = OpenOptions::new().read(true).write(true).open(path);
                (file.map_err(|e| Error::io("open", Some(path), e))?, Some("open returned EINVAL"))
            }
            Err(e) => return Err(Error::io("open", Some(path), e)),
        };
        check_same_target(&lock, &file, path)?;
        if buffered_why.is_none() {
            buffered_why = direct_io_refusal(&file, path)?;
        }
        let sector_bytes = match buffered_why {
            Some(_) => BUFFERED_SECTOR_BYTES,
            None => file_sector_bytes(&file, path)?,
        };
        let size = file.metadata().map_err(|e| Error::io("stat", Some(path), e))?.len();
        let sector = u64::from(sector_bytes);
        let step = opts.grow_step_bytes.max(sector).div_ceil(sector) * sector;
        let mut dev = DevFile {
            file,
            lock: Mutex::new(Some(lock)),
            path: path.to_owned(),
            kind: TargetKind::File,
            direct: true,
            sector_bytes,
            len_bytes: AtomicU64::new(size - size % sector),
            grow_step_bytes: step,
            max_bytes: opts.max_bytes - opts.max_bytes % sector,
            grow_lock: Mutex::new(()),
            zeroing: Zeroing::default(),
        };
        if let Some(why) = buffered_why {
            dev.use_buffered(why)?;
        }
        Ok(dev)
    }

    /// Turns this file's I/O buffered (see the module comment), saying so in the log once.
    fn use_buffered(&mut self, why: &str) -> Result<(), Error> {
        debug_assert_eq!(self.kind, TargetKind::File);
        if !self.direct {
            return Ok(());
        }
        let fd = self.fd();
        // SAFETY: F_GETFL and F_SETFL take and return integers only; `fd` is open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            let e = io::Error::last_os_error();
            return Err(Error::io("clear O_DIRECT", Some(&self.path), e));
        }
        self.direct = false;
        log::warn!(
            "O_DIRECT is not supported for {} ({why}); using buffered I/O with fdatasync",
            self.path.display()
        );
        Ok(())
    }

    /// `create`'s safety check ([`probe_target`]) on the target's real bytes: a file's whole
    /// length, including a partial last sector that [`DevFile::len`] leaves out.
    fn refuse_existing_data(&mut self) -> Result<(), Error> {
        let len_bytes = match self.kind {
            TargetKind::BlockDevice => self.len(),
            TargetKind::File => {
                let meta = self.file.metadata().map_err(|e| self.error("stat", e))?;
                meta.len()
            }
        };
        let probe = |dev: &DevFile| {
            probe_target(len_bytes, dev.sector_bytes, &mut |offset, buf| {
                dev.read_to_end_of_file(offset, buf)
            })
        };
        let mut found = probe(self);
        if let Err(e) = &found {
            if self.refuses_direct_read(e) {
                self.use_buffered("an aligned read returned EINVAL")?;
                found = probe(self);
            }
        }
        match found {
            Ok(None) => Ok(()),
            Ok(Some(what)) => Err(Error::ExistingData { what }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Err(unsupported_direct_io(&self.path, "an aligned read returned EINVAL"))
            }
            Err(e) => Err(self.error("read", e)),
        }
    }

    /// Fills `buf` (aligned, whole sectors) from `offset`, stopping at the end of the file:
    /// the bytes past it are left as they were.
    fn read_to_end_of_file(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let sector = self.sector_bytes as usize;
        debug_assert!(offset.is_multiple_of(sector as u64));
        debug_assert!(buf.len().is_multiple_of(sector));
        let mut done = 0;
        // Each successful call reads at least one whole sector or ends the loop.
        let calls_max = buf.len() / sector + READ_INTERRUPTS_MAX;
        for _ in 0..calls_max {
            if done == buf.len() {
                break;
            }
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) if !n.is_multiple_of(sector) => break, // a partial sector: end of file
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Some filesystems accept `O_DIRECT` at open and fail the first aligned read with
    /// `EINVAL`; find out now rather than in the middle of a commit.
    fn check_first_read(&mut self) -> Result<(), Error> {
        if self.len() == 0 {
            return Ok(());
        }
        let sector = self.sector_bytes as usize;
        let mut buf = AlignedBuf::zeroed(sector, sector);
        match self.file.read_exact_at(&mut buf, 0) {
            Ok(()) => Ok(()),
            Err(e) if self.refuses_direct_read(&e) => {
                self.use_buffered("an aligned read returned EINVAL")?;
                self.file.read_exact_at(&mut buf, 0).map_err(|e| self.error("read", e))
            }
            Err(e) => Err(self.error("read", e)),
        }
    }

    /// An aligned read of a file opened with `O_DIRECT` failed with `EINVAL`: the
    /// filesystem accepted the flag at open but cannot do direct I/O.
    fn refuses_direct_read(&self, e: &io::Error) -> bool {
        self.kind == TargetKind::File && self.direct && e.raw_os_error() == Some(libc::EINVAL)
    }

    /// [`Error::Io`] of `op` on this target.
    pub(crate) fn error(&self, op: &'static str, source: io::Error) -> Error {
        Error::io(op, Some(&self.path), source)
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Releases the lock once the store is closed (see `BlockDevice::unlock`): a zero fill in
    /// flight finishes first, as at drop — a later open may write there.
    pub(crate) fn unlock(&self) {
        self.zeroing.finish();
        drop(sync::lock(&self.lock).take());
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match (self.kind, self.direct) {
            (TargetKind::BlockDevice, _) => "block device",
            (TargetKind::File, true) => "file",
            (TargetKind::File, false) => "buffered file",
        }
    }

    /// Whether I/O bypasses the page cache (`O_DIRECT`).
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    pub(crate) fn sector_bytes(&self) -> u32 {
        self.sector_bytes
    }

    pub(crate) fn len(&self) -> u64 {
        self.len_bytes.load(Ordering::Acquire)
    }

    /// The length `grow` can reach: a block device's own, a file's configured maximum.
    pub(crate) fn max_len(&self) -> u64 {
        match self.kind {
            TargetKind::BlockDevice => self.len(),
            _ => self.max_bytes.max(self.len()),
        }
    }

    /// `BlockDevice::grow` for both backends: files grow in whole steps up to `max_bytes`,
    /// each step as large as the file already is, at most `grow_step_bytes` (so a new store
    /// starts at what `create` needs and doubles up to the step, design.md §10.16); block
    /// devices keep their length.
    pub(crate) fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        let current = self.len();
        if self.kind == TargetKind::BlockDevice || min_len_bytes <= current {
            return Ok(current);
        }
        let want = grown_len(current, min_len_bytes, self.grow_step_bytes, self.sector_bytes);
        self.grow_to(want.min(self.max_bytes), self.direct)
    }

    /// `BlockDevice::shrink` for both backends: a file is cut to `len_bytes` (rounded up to
    /// a sector) once no zero fill of its growth is in flight (the bytes past the cut are
    /// not zeroed, and no zero write lands past the new end to extend it again);
    /// block devices keep their length. No sync: a
    /// crash may leave either length, and open accepts both (design.md §10.16).
    pub(crate) fn shrink(&self, len_bytes: u64) -> io::Result<u64> {
        let _guard = sync::lock(&self.grow_lock);
        let current = self.len();
        let target = len_bytes.next_multiple_of(u64::from(self.sector_bytes));
        if self.kind == TargetKind::BlockDevice || target >= current {
            return Ok(current);
        }
        self.zeroing.cut(target);
        self.file.set_len(target)?;
        self.len_bytes.store(target, Ordering::Release);
        Ok(target)
    }

    /// What a write batch `ops` must write besides its own blocks (design.md §10.16): when
    /// it reaches space of a growth step no write has reached yet, it claims that space from
    /// its start up to the batch's end (other writes there wait) and writes zeros in the gaps
    /// between its blocks, so the whole claimed range is written once (`io::zero`). The
    /// caller writes `ops` and [`ZeroFill::ops`] in one batch, then ends the fill with
    /// [`ZeroFill::written`]; dropped without it (a failed write), the range stays pending.
    pub(crate) fn zero_fill(&self, ops: &[WriteOp<'_>]) -> ZeroFill<'_> {
        let lo = ops.iter().map(|op| op.offset).min();
        let hi = ops.iter().map(|op| op.offset + op.data.len() as u64).max();
        let claim = match (lo, hi) {
            (Some(lo), Some(hi)) => self.zeroing.claim(lo, hi),
            _ => None,
        };
        let Some(claim) = claim else {
            return ZeroFill { zeroing: &self.zeroing, claim: None, gaps: Vec::new(), zeros: None };
        };
        let gaps = gaps(ops, claim.from, claim.to);
        let largest = gaps.iter().map(|&(_, len)| len).max().unwrap_or(0);
        let zeros = (largest > 0).then(|| {
            let align = (self.sector_bytes as usize).max(4096);
            AlignedBuf::zeroed(largest.min(ZERO_WRITE_BYTES as u64) as usize, align)
        });
        ZeroFill { zeroing: &self.zeroing, claim: Some(claim), gaps, zeros }
    }

    /// Grows to `target` (sector-aligned): `fallocate`, then one pass of large O_DIRECT zero
    /// writes so that later commits overwrite written extents and their fdatasync does not
    /// pay for unwritten-extent conversion (design.md §10.16), then fsync for the new size and
    /// extents. With `deferred`, the zero writes are left to the first write batch that
    /// reaches the new space (`io::zero`; its checkpoint's data sync makes them durable) once
    /// `fallocate` has succeeded. On ENOSPC the file is cut back and the old
    /// length returned (the caller's `NoSpace`).
    fn grow_to(&self, target: u64, deferred: bool) -> io::Result<u64> {
        let _guard = sync::lock(&self.grow_lock);
        let current = self.len();
        if target <= current {
            return Ok(current);
        }
        debug_assert_eq!(target % u64::from(self.sector_bytes), 0);
        match self.extend(current, target, deferred) {
            // The writes that fill the space are synced by their checkpoint.
            Ok(true) => {}
            Ok(false) => self.file.sync_all()?,
            Err(e) => {
                // Best effort: leave the file at its published length.
                let _ = self.file.set_len(current);
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    return Ok(current);
                }
                return Err(e);
            }
        }
        self.len_bytes.store(target, Ordering::Release);
        Ok(target)
    }

    /// Allocates and zeroes `[from, to)`; `Ok(true)` when the zeroing was left to the writes
    /// that reach the space.
    fn extend(&self, from: u64, to: u64, deferred: bool) -> io::Result<bool> {
        let off = i64::try_from(from).map_err(|_| io::ErrorKind::InvalidInput)?;
        let add = i64::try_from(to - from).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: fallocate only reads its integer arguments; `fd` is open.
        let rc = unsafe { libc::fallocate(self.fd(), 0, off, add) };
        if rc == 0 && deferred {
            // The space is the file's now.
            self.zeroing.defer(from, to);
            return Ok(true);
        }
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(e);
            }
            // No preallocation on this filesystem: the zero writes below allocate instead.
        }
        self.write_zeros(from, to).map(|()| false)
    }

    /// Writes zeros over `[from, to)` with large aligned writes.
    pub(crate) fn write_zeros(&self, from: u64, to: u64) -> io::Result<()> {
        let chunk = ZERO_WRITE_BYTES.min(usize::try_from(to - from).unwrap_or(usize::MAX));
        let zeros = AlignedBuf::zeroed(chunk, (self.sector_bytes as usize).max(4096));
        let mut at = from;
        while at < to {
            let n = usize::try_from(to - at).unwrap_or(usize::MAX).min(chunk);
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Test and benchmark hook: extends a file with `fallocate` only, leaving the new space as
    /// unwritten extents (what §10.16 avoids), to measure the difference.
    pub(crate) fn grow_unwritten(&self, target: u64) -> io::Result<u64> {
        let _guard = sync::lock(&self.grow_lock);
        let current = self.len();
        if self.kind == TargetKind::BlockDevice || target <= current {
            return Ok(current);
        }
        let target = target.min(self.max_bytes);
        let off = i64::try_from(current).map_err(|_| io::ErrorKind::InvalidInput)?;
        let add = i64::try_from(target - current).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: fallocate only reads its integer arguments; `fd` is open.
        if unsafe { libc::fallocate(self.fd(), 0, off, add) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.file.sync_all()?;
        self.len_bytes.store(target, Ordering::Release);
        Ok(target)
    }
}

/// The parts of `[from, to)` that no op of `ops` writes: `(offset, length)`, in order.
fn gaps(ops: &[WriteOp<'_>], from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = ops
        .iter()
        .map(|op| (op.offset, op.offset + op.data.len() as u64))
        .filter(|&(a, b)| b > from && a < to)
        .collect();
    spans.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = from;
    for (a, b) in spans {
        if a > at {
            gaps.push((at, a - at));
        }
        at = at.max(b);
    }
    if at < to {
        gaps.push((at, to - at));
    }
    gaps
}

/// The zeros a write batch adds to fill a growth step's claimed range (see
/// [`DevFile::zero_fill`]).
pub(crate) struct ZeroFill<'a> {
    zeroing: &'a Zeroing,
    claim: Option<Claim>,
    /// `(offset, length)` of each gap to fill.
    gaps: Vec<(u64, u64)>,
    /// Zeros as long as the largest write of a gap.
    zeros: Option<AlignedBuf>,
}

impl ZeroFill<'_> {
    /// The zero writes, each at most [`ZERO_WRITE_BYTES`] long.
    pub(crate) fn ops(&self) -> Vec<WriteOp<'_>> {
        let Some(zeros) = &self.zeros else { return Vec::new() };
        let chunk = zeros.len() as u64;
        let mut ops = Vec::new();
        for &(offset, len) in &self.gaps {
            let mut at = 0;
            while at < len {
                let n = (len - at).min(chunk);
                ops.push(WriteOp { offset: offset + at, data: &zeros[..n as usize] });
                at += n;
            }
        }
        ops
    }

    /// The batch, fill included, was written.
    pub(crate) fn written(mut self) {
        if let Some(claim) = self.claim.take() {
            self.zeroing.release(claim, true);
        }
    }
}

impl Drop for ZeroFill<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.zeroing.release(claim, false);
        }
    }
}

/// The lock protects the target only if both opens reached the same one: refuses a path that
/// was renamed or replaced between them.
fn check_same_target(lock: &File, file: &File, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let stat = |f: &File| f.metadata().map_err(|e| Error::io("stat", Some(path), e));
    let (a, b) = (stat(lock)?, stat(file)?);
    if (a.dev(), a.ino(), a.rdev()) != (b.dev(), b.ino(), b.rdev()) {
        return Err(Error::InvalidInput(format!(
            "{} was replaced while it was being opened",
            path.display()
        )));
    }
    Ok(())
}

/// Why `file` must be used buffered, if it must: tmpfs and ramfs accept `O_DIRECT` on
/// recent kernels but keep everything in memory anyway, and a filesystem that reports a zero
/// direct-I/O alignment has none.
fn direct_io_refusal(file: &File, path: &Path) -> Result<Option<&'static str>, Error> {
    // SAFETY: statfs is plain data; all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one `statfs` through the pointer, which points to `st`.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::io("fstatfs", Some(path), io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures.
    let fs_type = st.f_type as i64;
    #[allow(clippy::unnecessary_cast)] // TMPFS_MAGIC's type differs between libcs.
    let tmpfs = libc::TMPFS_MAGIC as i64;
    if fs_type == tmpfs {
        return Ok(Some("the file is on tmpfs"));
    }
    if fs_type == RAMFS_MAGIC {
        return Ok(Some("the file is on ramfs"));
    }
    match dio_align(file) {
        Some((0, _)) => Ok(Some("the filesystem reports no direct-I/O support")),
        _ => Ok(None),
    }
}

/// `statx(STATX_DIOALIGN)`'s (offset, memory) alignments, if the kernel reports them.
fn dio_align(file: &File) -> Option<(u32, u32)> {
    // SAFETY: statx is plain data; all-zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    // SAFETY: `empty` is a valid C string, `stx` is a valid statx buffer alive for the call;
    // AT_EMPTY_PATH makes statx describe `fd` itself.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    Some((stx.stx_dio_offset_align, stx.stx_dio_mem_align))
}

/// The file's direct-I/O alignment from `statx(STATX_DIOALIGN)`, or the documented default.
fn file_sector_bytes(file: &File, path: &Path) -> Result<u32, Error> {
    let Some((offset_align, mem_align)) = dio_align(file) else {
        return Ok(FILE_SECTOR_BYTES_DEFAULT);
    };
    debug_assert_ne!(offset_align, 0, "direct_io_refusal turns a zero alignment buffered");
    let align = offset_align.max(mem_align).max(SECTOR_BYTES_MIN);
    if !align.is_power_of_two() || align > SECTOR_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "{}: unsupported direct-I/O alignment {align}",
            path.display()
        )));
    }
    Ok(align)
}

/// The length a file of `current` bytes grows to for `min_len_bytes`: whole steps of
/// `current` bytes (at least a sector, at most `step_max_bytes`), enough to reach it.
pub(crate) fn grown_len(current: u64, min_len_bytes: u64, step_max_bytes: u64, sector: u32) -> u64 {
    let sector = u64::from(sector);
    debug_assert!(current.is_multiple_of(sector) && step_max_bytes.is_multiple_of(sector));
    let step = current.clamp(sector, step_max_bytes.max(sector));
    let steps = min_len_bytes.saturating_sub(current).div_ceil(step).max(1);
    current.saturating_add(steps.saturating_mul(step))
}

/// Takes the lock on a file (creating it, mode 0600, if asked) through a descriptor of its
/// own: nothing else is tried on a file that another handle holds. Write access only
/// because `create` needs it; no byte is ever written through this descriptor.
fn lock_file(path: &Path, create: bool) -> Result<File, Error> {
    let lock = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open", Some(path), e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::Locked { path: path.to_owned(), holder: flock_holder(&lock) })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", Some(path), e)),
    }
}

/// The I/O descriptor of a file, with `O_DIRECT`.
fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path)
}

/// Who holds the flock on `file`, from `/proc/locks` ("this process", "process 42
/// (name)"), or `None` when that cannot be told.
fn flock_holder(file: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
    let pid: u32 = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_flock = fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str());
        if is_flock {
            fields.get(4)?.parse().ok()
        } else {
            None
        }
    })?;
    if pid == std::process::id() {
        return Some("this process".into());
    }
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    Some(match name {
        Some(name) => format!("process {pid} ({})", name.trim()),
        None => format!("process {pid}"),
    })
}

#[cfg(test)]
mod tests {
    use super::{gaps, grown_len};
    use crate::io::WriteOp;

    /// The gaps a fill writes: what no op covers inside the claimed range, ops in any
    /// order, ops reaching outside it clipped.
    #[test]
    fn gaps_are_the_claimed_range_less_the_ops() {
        let b = [0u8; 8];
        let op = |offset| WriteOp { offset, data: &b };
        assert_eq!(gaps(&[op(40), op(8), op(16)], 0, 64), [(0, 8), (24, 16), (48, 16)]);
        assert_eq!(gaps(&[op(4), op(60)], 8, 64), [(12, 48)]);
        assert_eq!(gaps(&[op(8), op(16)], 8, 24), []);
        assert_eq!(gaps(&[], 8, 24), [(8, 16)]);
    }

    /// A new file grows to exactly what is asked; then each step doubles the file, up to
    /// the largest step (design.md §10.16).
    #[test]
    fn growth_steps_double_up_to_the_step() {
        const MIB: u64 = 1 << 20;
        assert_eq!(grown_len(0, 512 << 10, 64 * MIB, 4096), 512 << 10);
        assert_eq!(grown_len(512 << 10, (512 << 10) + 1, 64 * MIB, 4096), MIB);
        assert_eq!(grown_len(MIB, 10 * MIB, 64 * MIB, 4096), 10 * MIB);
        assert_eq!(grown_len(64 * MIB, 64 * MIB + 1, 64 * MIB, 4096), 128 * MIB);
        assert_eq!(grown_len(128 * MIB, 128 * MIB + 1, 64 * MIB, 4096), 192 * MIB);
        assert_eq!(grown_len(0, 1, 64 * MIB, 4096), 4096);
    }
}
