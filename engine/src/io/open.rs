//! Choosing and opening a backend: [`DeviceOptions`], [`open_path`], the automatic fallback
//! from io_uring to pread/pwrite, and [`probe_existing_data`] for `create`'s safety check.

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
    /// `kernel.io_uring_disabled`, old kernel); the fallback prints one line to stderr.
    #[default]
    Auto,
    /// io_uring only: a setup failure is an error.
    Uring,
    /// pread/pwrite + O_DIRECT.
    Sync,
}

/// How a device is opened. Sizes are in bytes; files grow in `grow_step_bytes` steps.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    pub backend: IoBackend,
    /// io_uring submission queue entries per ring (batches larger than this run in waves).
    pub queue_depth: u32,
    /// Files grow by multiples of this (design.md §10.16: large steps, written once).
    pub grow_step_bytes: u64,
    /// A file never grows past this.
    pub max_bytes: u64,
    /// A newly created (or shorter) file is grown to this at `create`.
    pub initial_bytes: u64,
}

impl Default for DeviceOptions {
    fn default() -> DeviceOptions {
        DeviceOptions {
            backend: IoBackend::Auto,
            queue_depth: 64,
            grow_step_bytes: 64 << 20,
            max_bytes: u64::MAX,
            initial_bytes: 64 << 20,
        }
    }
}

/// Opens a block device or a file (creating the file when `create`), exclusively, for
/// O_DIRECT I/O, with the backend `opts.backend` asks for.
///
/// Errors: [`Error::Locked`] when another handle in this or another process holds it;
/// [`Error::InvalidInput`] when the filesystem has no O_DIRECT (tmpfs); [`Error::Io`] else.
pub fn open_path(
    path: &Path,
    create: bool,
    opts: &DeviceOptions,
) -> Result<Box<dyn BlockDevice>, Error> {
    let file = DevFile::open(path, create, opts)?;
    match opts.backend {
        IoBackend::Sync => Ok(Box::new(SyncDevice::from_file(file))),
        IoBackend::Uring => {
            let ring = setup_ring(opts.queue_depth).map_err(Error::Io)?;
            Ok(Box::new(UringDevice::with_ring(file, ring)))
        }
        IoBackend::Auto => match setup_ring(opts.queue_depth) {
            Ok(ring) => Ok(Box::new(UringDevice::with_ring(file, ring))),
            Err(e) => match uring_fallback_reason(&e) {
                Some(reason) => {
                    eprintln!(
                        "arbor: io_uring unavailable ({reason}); using pread/pwrite for {}",
                        path.display()
                    );
                    Ok(Box::new(SyncDevice::from_file(file)))
                }
                None => Err(Error::Io(e)),
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

/// How much of the device start the probe reads (covers every signature below).
const PROBE_BYTES: usize = 256 * 1024;

/// Reads the start of `dev` and names what it holds: an Arbor store, or a filesystem or
/// container signature (ext2/3/4, xfs, btrfs, LUKS, a GPT partition table). `Ok(None)` when
/// nothing is recognised. The engine's `create` turns `Some` into `Error::ExistingData`.
pub fn probe_existing_data(dev: &dyn BlockDevice) -> io::Result<Option<String>> {
    let sector = dev.sector_bytes() as usize;
    let len = usize::try_from(dev.len_bytes()).unwrap_or(usize::MAX).min(PROBE_BYTES);
    let len = len - len % sector;
    if len == 0 {
        return Ok(None);
    }
    let mut buf = AlignedBuf::zeroed(len, sector.max(4096));
    dev.read_at(0, &mut buf)?;
    Ok(recognise(&buf))
}

fn bytes_at(buf: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    buf.get(at..at.checked_add(n)?)
}

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
        let mut buf = vec![0u8; PROBE_BYTES];
        assert_eq!(recognise(&buf), None);
        buf[1080] = 0x53;
        buf[1081] = 0xEF;
        assert!(recognise(&buf).unwrap().contains("ext"));
        buf[131072..131080].copy_from_slice(&SUPERBLOCK_MAGIC);
        assert!(recognise(&buf).unwrap().contains("Arbor"));
        let mut btrfs = vec![0u8; PROBE_BYTES];
        btrfs[65600..65608].copy_from_slice(b"_BHRfS_M");
        assert!(recognise(&btrfs).unwrap().contains("btrfs"));
        assert_eq!(recognise(&btrfs[..4096]), None);
    }
}
