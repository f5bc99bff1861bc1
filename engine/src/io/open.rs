//! Choosing and opening a backend: [`DeviceOptions`], [`open_path`], the automatic fallback
//! from io_uring to pread/pwrite, and [`probe_existing_data`] for `create`'s safety check.
//!
//! # What counts as existing data
//! `create` refuses a target with any non-zero byte in its first or last MiB, unless told to
//! overwrite: a store, a filesystem, a partition table or a text file alike. Known formats
//! (an Arbor store, ext2/3/4, XFS, btrfs, LUKS, GPT) are named in the error; anything else
//! is described by where its first non-zero byte is. New, empty and all-zero targets are
//! accepted. Data only in the middle of a large target is not looked for: every format we
//! know of keeps a header at one end, and reading a whole disk would make `create` take
//! minutes.

use std::io;
use std::path::Path;

use arbor_format::constants::SUPERBLOCK_SLOT_COUNT;
use arbor_format::superblock::{slot_offset, SUPERBLOCK_MAGIC};

use super::file::DevFile;
use super::sync_dev::SyncDevice;
use super::uring::{setup_ring, UringDevice};
use super::{AlignedBuf, BlockDevice};
use crate::Error;

/// Which I/O backend [`open_path`] uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring, falling back to pread/pwrite when io_uring cannot be set up (seccomp,
    /// `kernel.io_uring_disabled`, old kernel) or the file is buffered (no `O_DIRECT`, as on
    /// tmpfs); a fallback is reported in one `log` warning.
    #[default]
    Auto,
    /// io_uring only: a setup failure is an error.
    Uring,
    /// pread/pwrite.
    Sync,
}

/// How a device is opened. Sizes are in bytes; files grow in steps (see `grow_step_bytes`).
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// The backend (see [`IoBackend`]).
    pub backend: IoBackend,
    /// io_uring submission queue entries per ring (batches larger than this run in waves).
    pub queue_depth: u32,
    /// Largest growth step of a file: each step is as large as the file already is, up to
    /// this (design.md §10.16: steps written once).
    pub grow_step_bytes: u64,
    /// A file never grows past this.
    pub max_bytes: u64,
    /// A newly created (or shorter) file is grown to this at `create`; 0 leaves growth to
    /// the engine, which asks for what a new store needs.
    pub initial_bytes: u64,
    /// With `create`: go ahead even when the target holds data (see the module comment);
    /// otherwise that is [`Error::ExistingData`], and nothing has been written. Without
    /// `create` this is not consulted.
    pub overwrite_existing: bool,
}

impl Default for DeviceOptions {
    fn default() -> DeviceOptions {
        DeviceOptions {
            backend: IoBackend::Auto,
            queue_depth: 64,
            grow_step_bytes: 64 << 20,
            max_bytes: u64::MAX,
            initial_bytes: 0,
            overwrite_existing: false,
        }
    }
}

/// Opens a block device or a file (creating the file when `create`), exclusively, with the
/// backend `opts.backend` asks for: `O_DIRECT` where the filesystem supports it, buffered
/// with `fdatasync` where it does not (tmpfs, some FUSE filesystems). With `create`, a
/// target that holds data is refused before anything is written unless
/// `opts.overwrite_existing`.
///
/// Errors: [`Error::Locked`] when another handle in this or another process holds it;
/// [`Error::ExistingData`] as just said; [`Error::InvalidInput`] for a block device without
/// `O_DIRECT`; [`Error::Io`] else.
pub fn open_path(
    path: &Path,
    create: bool,
    opts: &DeviceOptions,
) -> Result<Box<dyn BlockDevice>, Error> {
    let file = DevFile::open(path, create, opts)?;
    let ring = |file: &DevFile| {
        setup_ring(opts.queue_depth).map_err(|e| file.error("set up an io_uring for", e))
    };
    match opts.backend {
        IoBackend::Sync => Ok(Box::new(SyncDevice::from_file(file))),
        IoBackend::Uring => {
            let ring = ring(&file)?;
            Ok(Box::new(UringDevice::with_ring(file, ring)))
        }
        // Buffered I/O is a copy through the page cache: io_uring would add a worker
        // thread's hand-off to each write and nothing else.
        IoBackend::Auto if !file.is_direct() => Ok(Box::new(SyncDevice::from_file(file))),
        IoBackend::Auto => match setup_ring(opts.queue_depth) {
            Ok(ring) => Ok(Box::new(UringDevice::with_ring(file, ring))),
            Err(e) => match uring_fallback_reason(&e) {
                Some(reason) => {
                    log::warn!(
                        "io_uring unavailable ({reason}); using pread/pwrite for {}",
                        path.display()
                    );
                    Ok(Box::new(SyncDevice::from_file(file)))
                }
                None => Err(file.error("set up an io_uring for", e)),
            },
        },
    }
}

/// The automatic-fallback decision: `Some(reason)` when an io_uring setup error means "this
/// process may not or cannot use io_uring" (use pread/pwrite), `None` when it is a real
/// error to report (out of descriptors, say).
pub fn uring_fallback_reason(err: &io::Error) -> Option<String> {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Some(match io_uring_disabled_sysctl() {
            Some(v) if v != 0 => {
                format!("io_uring_setup: permission denied; sysctl kernel.io_uring_disabled = {v}")
            }
            _ => "io_uring_setup: permission denied (seccomp filter or container policy)".into(),
        }),
        Some(libc::ENOSYS) => Some("io_uring_setup: the kernel has no io_uring (ENOSYS)".into()),
        Some(libc::ENOMEM) => {
            Some("io_uring_setup: out of locked memory (RLIMIT_MEMLOCK on kernels < 5.12)".into())
        }
        Some(libc::EOPNOTSUPP) => Some(format!("io_uring lacks a needed feature: {err}")),
        _ if err.kind() == io::ErrorKind::Unsupported => {
            Some(format!("io_uring lacks a needed opcode: {err}"))
        }
        _ => None,
    }
}

fn io_uring_disabled_sysctl() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    text.trim().parse().ok()
}

/// How much of each end of a target the probe reads (the first MiB covers every signature
/// [`recognise`] knows).
pub const PROBE_REGION_BYTES: u64 = 1 << 20;
/// Sector sizes a GPT's backup header may use: it sits in the device's last sector.
const GPT_SECTOR_BYTES: [usize; 2] = [512, 4096];

/// Reads `buf.len()` bytes at an aligned offset into an aligned buffer. Bytes past the end
/// of the target (a file's partial last sector) are left as they were: zero.
pub(crate) type ProbeRead<'a> = dyn FnMut(u64, &mut [u8]) -> io::Result<()> + 'a;

/// Reads the first and last MiB of `dev` and describes what they hold (see the module
/// comment): `Ok(None)` when both are all zeros. The engine's `create` turns `Some` into
/// `Error::ExistingData`.
pub fn probe_existing_data(dev: &dyn BlockDevice) -> io::Result<Option<String>> {
    let len = dev.len_bytes();
    probe_target(len, dev.sector_bytes(), &mut |offset, buf| dev.read_at(offset, buf))
}

/// [`probe_existing_data`] over any reader: `len_bytes` need not be a multiple of `align`
/// (the reader then gets whole sectors and leaves the bytes past the end zero).
pub(crate) fn probe_target(
    len_bytes: u64,
    align: u32,
    read: &mut ProbeRead<'_>,
) -> io::Result<Option<String>> {
    let first_end = len_bytes.min(PROBE_REGION_BYTES);
    let first = read_region(0, first_end, align, read)?;
    if let Some(what) = recognise(&first) {
        return Ok(Some(what));
    }
    if let Some(at) = first.iter().position(|&b| b != 0) {
        return Ok(Some(format!("non-zero data in the first MiB (at byte offset {at})")));
    }
    let last_start = len_bytes.saturating_sub(PROBE_REGION_BYTES).max(first_end);
    if last_start >= len_bytes {
        return Ok(None);
    }
    let last = read_region(last_start, len_bytes, align, read)?;
    if let Some(what) = recognise_end(&last) {
        return Ok(Some(what));
    }
    Ok(last.iter().position(|&b| b != 0).map(|i| {
        let at = last_start + i as u64;
        format!("non-zero data in the last MiB (at byte offset {at})")
    }))
}

/// Bytes `[from, to)` of the target (at most [`PROBE_REGION_BYTES`]), read in whole aligned
/// sectors.
fn read_region(from: u64, to: u64, align: u32, read: &mut ProbeRead<'_>) -> io::Result<Vec<u8>> {
    debug_assert!(from <= to && to - from <= PROBE_REGION_BYTES);
    let align = u64::from(align.max(1));
    let start = from - from % align;
    let end = to.div_ceil(align) * align;
    let len = usize::try_from(end - start).map_err(|_| io::ErrorKind::InvalidInput)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut buf = AlignedBuf::zeroed(len, (align as usize).max(4096));
    read(start, &mut buf)?;
    let skip = (from - start) as usize;
    Ok(buf[skip..skip + (to - from) as usize].to_vec())
}

fn bytes_at(buf: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    buf.get(at..at.checked_add(n)?)
}

/// Names a known format from the target's first bytes.
fn recognise(buf: &[u8]) -> Option<String> {
    for slot in 0..SUPERBLOCK_SLOT_COUNT {
        let at = usize::try_from(slot_offset(slot)).unwrap_or(usize::MAX);
        if bytes_at(buf, at, SUPERBLOCK_MAGIC.len()) == Some(&SUPERBLOCK_MAGIC[..]) {
            return Some(format!("an Arbor store (superblock at offset {at})"));
        }
    }
    let signatures: [(usize, &[u8], &str); 5] = [
        (1080, &[0x53, 0xEF], "an ext2/ext3/ext4 filesystem"),
        (0, b"XFSB", "an XFS filesystem"),
        (65600, b"_BHRfS_M", "a btrfs filesystem"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (512, b"EFI PART", "a GPT partition table"),
    ];
    signatures
        .iter()
        .find(|(at, magic, _)| bytes_at(buf, *at, magic.len()) == Some(*magic))
        .map(|(_, _, what)| (*what).to_string())
}

/// Names a known format from the target's last bytes: a GPT's backup header, which
/// outlives a wiped primary one.
fn recognise_end(buf: &[u8]) -> Option<String> {
    GPT_SECTOR_BYTES
        .iter()
        .filter_map(|&sector| buf.len().checked_sub(sector))
        .find(|&at| bytes_at(buf, at, 8) == Some(&b"EFI PART"[..]))
        .map(|_| "a GPT partition table (backup header in the last sector)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_decision() {
        for errno in [libc::EPERM, libc::ENOSYS] {
            let reason = uring_fallback_reason(&io::Error::from_raw_os_error(errno));
            assert!(reason.is_some(), "errno {errno} must fall back");
        }
        assert!(uring_fallback_reason(&io::Error::from_raw_os_error(libc::EMFILE)).is_none());
        let missing = io::Error::new(io::ErrorKind::Unsupported, "no IORING_OP_WRITEV");
        assert!(uring_fallback_reason(&missing).unwrap().contains("WRITEV"));
    }

    #[test]
    fn signatures() {
        let mut buf = vec![0u8; 256 * 1024];
        assert_eq!(recognise(&buf), None);
        buf[1080] = 0x53;
        buf[1081] = 0xEF;
        assert!(recognise(&buf).unwrap().contains("ext"));
        buf[131072..131080].copy_from_slice(&SUPERBLOCK_MAGIC);
        assert!(recognise(&buf).unwrap().contains("Arbor"));
        let mut btrfs = vec![0u8; 256 * 1024];
        btrfs[65600..65608].copy_from_slice(b"_BHRfS_M");
        assert!(recognise(&btrfs).unwrap().contains("btrfs"));
        assert_eq!(recognise(&btrfs[..4096]), None);
        let mut end = vec![0u8; 8192];
        end[8192 - 512..8192 - 504].copy_from_slice(b"EFI PART");
        assert!(recognise_end(&end).unwrap().contains("GPT"));
    }

    /// What the probe says about `data`, read in 4 KiB sectors from memory as a file of
    /// that length would be (bytes past the end stay zero).
    fn probe_bytes(data: &[u8]) -> Option<String> {
        let mut read = |offset: u64, buf: &mut [u8]| {
            assert_eq!(offset % 4096, 0);
            assert_eq!(buf.len() % 4096, 0);
            let from = usize::try_from(offset).unwrap().min(data.len());
            let n = (data.len() - from).min(buf.len());
            buf[..n].copy_from_slice(&data[from..from + n]);
            Ok(())
        };
        probe_target(data.len() as u64, 4096, &mut read).unwrap()
    }

    /// A target whose length is not a multiple of the alignment: the reader gets whole
    /// sectors, and the offsets reported are the target's own.
    #[test]
    fn probe_regions_and_offsets() {
        let mut data = vec![0u8; (3 << 20) + 100];
        assert_eq!(probe_bytes(&data), None);
        data[(2 << 20) + 50] = 1; // the middle: not looked at
        assert_eq!(probe_bytes(&data), None);
        let last = data.len() - 1;
        data[last] = 1;
        let what = probe_bytes(&data).unwrap();
        assert!(what.ends_with(&format!("last MiB (at byte offset {last})")), "{what}");
        data[4097] = 9;
        let what = probe_bytes(&data).unwrap();
        assert!(what.ends_with("first MiB (at byte offset 4097)"), "{what}");
        assert_eq!(probe_bytes(&data[..0]), None);
        assert!(probe_bytes(&data[..4098]).unwrap().contains("offset 4097"));
    }
}
