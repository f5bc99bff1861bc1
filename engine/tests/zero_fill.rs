//! A write batch that first reaches a file's grown space writes that space once: its own
//! blocks plus zeros in the gaps between them, up to its end; the rest of the growth step
//! stays unwritten until a write reaches it (design.md §10.16). Checked through the file's
//! extents (FIEMAP), on both file backends.

use std::fs::File;
use std::os::fd::AsRawFd;

use arbor::io::{BlockDevice, DeviceOptions, IoBackend, SyncDevice, UringDevice, WriteOp};
use arbor::AlignedBuf;
use arbor_testkit::store::needs_real_file;

const BLK: usize = 4096;
const STEP: u64 = 4 << 20;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; 256],
}

const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;

/// Bytes of `[start, start + len)` in unwritten extents; `None` where the filesystem does
/// not report extents.
fn unwritten_bytes(file: &File, start: u64, len: u64) -> Option<u64> {
    let mut map = Fiemap {
        start,
        length: len,
        flags: FIEMAP_FLAG_SYNC,
        mapped_extents: 0,
        extent_count: 256,
        reserved: 0,
        extents: [FiemapExtent::default(); 256],
    };
    // SAFETY: FS_IOC_FIEMAP reads the header and writes at most `extent_count` extents into
    // the array that follows it, all inside `map`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map as *mut Fiemap) };
    if rc != 0 {
        return None;
    }
    let end = start + len;
    let extents = &map.extents[..map.mapped_extents as usize];
    let unwritten = extents.iter().filter(|e| e.flags & FIEMAP_EXTENT_UNWRITTEN != 0);
    let clipped = unwritten.map(|e| {
        let (a, b) = (e.logical.max(start), (e.logical + e.length).min(end));
        b.saturating_sub(a)
    });
    Some(clipped.sum())
}

fn opts(backend: IoBackend) -> DeviceOptions {
    DeviceOptions {
        backend,
        queue_depth: 16,
        grow_step_bytes: STEP,
        max_bytes: 64 << 20,
        initial_bytes: 16 << 20,
        overwrite_existing: false,
    }
}

fn block(salt: u8) -> AlignedBuf {
    AlignedBuf::from_slice(&[salt; BLK], BLK)
}

fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len, BLK);
    dev.read_at(offset, &mut buf).expect("read");
    buf
}

fn fills_once(dev: &dyn BlockDevice, file: &File) {
    let start = dev.len_bytes();
    let end = dev.grow(start + 1).unwrap();
    assert_eq!(end, start + STEP, "one growth step");
    // Only where the filesystem reports a fresh step as unwritten can the extents show
    // what was written (tmpfs, for one, reports none).
    let extents = unwritten_bytes(file, start, STEP) == Some(STEP);
    let (a, b, c) = (block(1), block(2), block(3));
    let ops = [
        WriteOp { offset: start + 2 * BLK as u64, data: &a },
        WriteOp { offset: start + 16 * BLK as u64, data: &b },
        WriteOp { offset: start + 17 * BLK as u64, data: &c },
        WriteOp { offset: start + (1 << 20), data: &a },
    ];
    dev.write_batch(&ops).unwrap();
    let hi = start + (1 << 20) + BLK as u64;
    for op in &ops {
        assert!(read(dev, op.offset, BLK)[..] == op.data[..], "block at {}", op.offset);
    }
    let gap = read(dev, start, 2 * BLK);
    assert!(gap.iter().all(|&x| x == 0), "the gap before the first block reads as zeros");
    let gap = read(dev, start + 18 * BLK as u64, (1 << 20) - 18 * BLK);
    assert!(gap.iter().all(|&x| x == 0), "the gaps between blocks read as zeros");
    if extents {
        assert_eq!(unwritten_bytes(file, start, hi - start), Some(0), "batch range filled");
        assert_eq!(
            unwritten_bytes(file, hi, end - hi),
            Some(end - hi),
            "past the batch's end nothing was written"
        );
    }
    // A later batch further in fills on from where the first ended; one below it is
    // written as is.
    let later = hi + 8 * BLK as u64;
    dev.write_batch(&[WriteOp { offset: later, data: &b }]).unwrap();
    dev.write_batch(&[WriteOp { offset: start, data: &c }]).unwrap();
    assert!(read(dev, later, BLK)[..] == b[..]);
    assert!(read(dev, start, BLK)[..] == c[..]);
    assert!(read(dev, start + 2 * BLK as u64, BLK)[..] == a[..], "earlier data kept");
    if extents {
        let filled = later + BLK as u64 - start;
        assert_eq!(unwritten_bytes(file, start, filled), Some(0));
        assert_eq!(unwritten_bytes(file, start + filled, STEP - filled), Some(STEP - filled));
    }
    dev.flush().unwrap();
}

#[test]
fn a_batch_into_grown_space_fills_it_up_to_its_end() {
    if needs_real_file("zero_fill", "O_DIRECT on a file, with its extents") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    for backend in [IoBackend::Uring, IoBackend::Sync] {
        let path = dir.path().join(format!("store-{backend:?}"));
        let dev: Box<dyn BlockDevice> = if backend == IoBackend::Uring {
            Box::new(UringDevice::open(&path, true, &opts(backend)).unwrap())
        } else {
            Box::new(SyncDevice::open(&path, true, &opts(backend)).unwrap())
        };
        let file = File::open(&path).unwrap();
        fills_once(&*dev, &file);
    }
}
