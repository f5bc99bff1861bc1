//! One conformance suite over `&dyn BlockDevice`, run for every implementation: io_uring and
//! pread/pwrite on a file, both again on a loop block device, and the simulated device.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use arbor::io::{
    BlockDevice, DeviceOptions, IoBackend, ReadOp, SimDevice, StreamRead, SyncDevice, UringDevice,
    WriteOp,
};
use arbor::{AlignedBuf, Error};
use arbor_testkit::store::needs_real_file;
use arbor_testkit::LoopDevice;

/// Unit of the suite's accesses: a multiple of every sector size we meet.
const BLK: usize = 4096;

fn pattern(offset: u64, len: usize, salt: u8) -> AlignedBuf {
    let bytes: Vec<u8> = (0..len as u64)
        .map(|i| ((offset + i).wrapping_mul(0x9E37_79B9) >> 7) as u8 ^ salt)
        .collect();
    AlignedBuf::from_slice(&bytes, BLK)
}

fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len, BLK);
    dev.read_at(offset, &mut buf).expect("read");
    buf
}

fn assert_pattern(dev: &dyn BlockDevice, offset: u64, len: usize, salt: u8) {
    let got = read(dev, offset, len);
    assert!(got[..] == pattern(offset, len, salt)[..], "content at {offset} (+{len}) differs");
}

/// Every property of the `BlockDevice` contract that a device must show. `grows`: the device
/// is a file that can grow (the suite then checks growth).
pub fn conformance(dev: &dyn BlockDevice, grows: bool) {
    assert!(dev.len_bytes() >= 8 << 20, "the suite needs at least 8 MiB");
    read_after_write(dev);
    batches_and_coalescing(dev);
    alignment_errors(dev);
    out_of_range(dev);
    flush_ordering(dev);
    large_batches(dev);
    concurrent_readers(dev);
    streams(dev);
    if grows {
        grow(dev);
    }
}

/// `read_stream`: every read is handed back filled, once; the reads a completion returns
/// start in the same stream (chains of dependent reads, as `get_many` makes); urgent reads
/// are handed back no later than the others that complete with them; a refused read (out of
/// range) fails the stream without losing the ones in flight.
fn streams(dev: &dyn BlockDevice) {
    let base = 4 << 20;
    let blocks = 64u64;
    let data = pattern(base, blocks as usize * BLK, 0x5A);
    dev.write_at(base, &data).expect("write the stream's blocks");
    let read = |i: u64, urgent: bool| StreamRead {
        offset: base + i * BLK as u64,
        buf: Box::new(AlignedBuf::zeroed(BLK, BLK)),
        tag: i as usize,
        urgent,
    };
    // 8 chains of 8: block i leads to block i + 8.
    let first: Vec<StreamRead> = (0..8).map(|i| read(i, i.is_multiple_of(2))).collect();
    let mut seen = vec![0u32; blocks as usize];
    let mut order = Vec::new();
    dev.read_stream(first, &mut |mut r| {
        let i = r.tag as u64;
        let want = &data[i as usize * BLK..(i as usize + 1) * BLK];
        assert!(r.buf.bytes() == want, "stream read of block {i} differs");
        seen[i as usize] += 1;
        order.push((i, r.urgent));
        match i + 8 < blocks {
            true => vec![read(i + 8, (i + 8).is_multiple_of(2))],
            false => Vec::new(),
        }
    })
    .expect("stream");
    assert!(seen.iter().all(|&n| n == 1), "every block handed back once: {seen:?}");
    assert_eq!(order.len(), blocks as usize);
    // Out of range: an error, and the device still reads afterwards.
    let beyond = StreamRead {
        offset: dev.len_bytes(),
        buf: Box::new(AlignedBuf::zeroed(BLK, BLK)),
        tag: 0,
        urgent: false,
    };
    let mut handed = 0;
    let r = dev.read_stream(vec![read(0, false), beyond], &mut |_| {
        handed += 1;
        Vec::new()
    });
    assert!(r.is_err(), "a read past the end fails the stream");
    assert!(handed <= 1);
    assert_pattern(dev, base, BLK, 0x5A);
}

fn read_after_write(dev: &dyn BlockDevice) {
    let s = dev.sector_bytes() as usize;
    let one = pattern(0, s, 1);
    dev.write_at(0, &one).unwrap();
    assert_pattern(dev, 0, s, 1);
    let big = pattern(1 << 20, 256 * 1024, 2);
    dev.write_at(1 << 20, &big).unwrap();
    assert_pattern(dev, 1 << 20, 256 * 1024, 2);
    // Overwrite part of it: reads return the latest data.
    dev.write_at((1 << 20) + 4096, &pattern((1 << 20) + 4096, 4096, 3)).unwrap();
    assert_pattern(dev, (1 << 20) + 4096, 4096, 3);
    assert_pattern(dev, 1 << 20, 4096, 2);
}

fn batches_and_coalescing(dev: &dyn BlockDevice) {
    let base = 2u64 << 20;
    // Adjacent on the device, separate in memory, given out of order; plus far-away ops.
    let bufs: Vec<AlignedBuf> = (0..8).map(|i| pattern(base + (i * BLK) as u64, BLK, 4)).collect();
    let far = [pattern(base + (64 << 10), BLK, 4), pattern(base + (200 << 10), 2 * BLK, 4)];
    let mut ops: Vec<WriteOp> = bufs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, b)| WriteOp { offset: base + (i * BLK) as u64, data: b })
        .collect();
    ops.push(WriteOp { offset: base + (64 << 10), data: &far[0] });
    ops.push(WriteOp { offset: base + (200 << 10), data: &far[1] });
    dev.write_batch(&ops).unwrap();
    assert_pattern(dev, base, 8 * BLK, 4);
    assert_pattern(dev, base + (64 << 10), BLK, 4);
    assert_pattern(dev, base + (200 << 10), 2 * BLK, 4);
    // Adjacent both on the device and in memory: slices of one buffer.
    let whole = pattern(base + (300 << 10), 6 * BLK, 5);
    let ops: Vec<WriteOp> = whole
        .chunks(BLK)
        .enumerate()
        .map(|(i, c)| WriteOp { offset: base + (300 << 10) + (i * BLK) as u64, data: c })
        .collect();
    dev.write_batch(&ops).unwrap();
    assert_pattern(dev, base + (300 << 10), 6 * BLK, 5);
    // Batched reads: adjacent into separate buffers (one reversed), adjacent into one
    // buffer's slices, and a far one.
    let mut a = AlignedBuf::zeroed(BLK, BLK);
    let mut b = AlignedBuf::zeroed(BLK, BLK);
    let mut c = AlignedBuf::zeroed(3 * BLK, BLK);
    let mut d = AlignedBuf::zeroed(2 * BLK, BLK);
    {
        let (c0, c12) = c.split_at_mut(BLK);
        let mut ops = vec![
            ReadOp { offset: base + BLK as u64, buf: &mut b },
            ReadOp { offset: base, buf: &mut a },
            ReadOp { offset: base + (300 << 10), buf: c0 },
            ReadOp { offset: base + (300 << 10) + BLK as u64, buf: c12 },
            ReadOp { offset: base + (200 << 10), buf: &mut d },
        ];
        dev.read_batch(&mut ops).unwrap();
    }
    assert!(a[..] == pattern(base, BLK, 4)[..]);
    assert!(b[..] == pattern(base + BLK as u64, BLK, 4)[..]);
    assert!(c[..] == pattern(base + (300 << 10), 3 * BLK, 5)[..]);
    assert!(d[..] == pattern(base + (200 << 10), 2 * BLK, 4)[..]);
}

fn expect_invalid(result: std::io::Result<()>, what: &str) {
    match result {
        Err(e) if e.kind() == ErrorKind::InvalidInput => {}
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    }
}

fn alignment_errors(dev: &dyn BlockDevice) {
    let s = dev.sector_bytes() as usize;
    let at = 3u64 << 20;
    let before = pattern(at, 2 * BLK, 6);
    dev.write_at(at, &before).unwrap();
    let good = pattern(at, BLK, 7);
    let big = pattern(0, 2 * BLK + s, 7);
    let bad_offset = WriteOp { offset: at + BLK as u64 + (s / 2) as u64, data: &big[..s] };
    let bad_len = WriteOp { offset: at + BLK as u64, data: &big[..s / 2] };
    let bad_mem = WriteOp { offset: at + BLK as u64, data: &big[1..1 + s] };
    for (bad, name) in [(bad_offset, "offset"), (bad_len, "length"), (bad_mem, "memory")] {
        let ops = [WriteOp { offset: at, data: &good }, bad];
        expect_invalid(dev.write_batch(&ops), &format!("misaligned {name}"));
        // Nothing of the batch was written, not even its valid op.
        assert_pattern(dev, at, 2 * BLK, 6);
    }
    let mut buf = AlignedBuf::zeroed(2 * s, BLK);
    expect_invalid(dev.read_at(at + 1, &mut buf[..s]), "misaligned read offset");
    expect_invalid(dev.read_at(at, &mut buf[..s / 2]), "misaligned read length");
    expect_invalid(dev.read_at(at, &mut buf[1..1 + s]), "misaligned read memory");
    // Overlapping writes in one batch are refused too.
    let ops = [WriteOp { offset: at, data: &good }, WriteOp { offset: at, data: &good }];
    expect_invalid(dev.write_batch(&ops), "overlapping writes");
    assert_pattern(dev, at, 2 * BLK, 6);
}

fn out_of_range(dev: &dyn BlockDevice) {
    let len = dev.len_bytes();
    let buf = AlignedBuf::zeroed(2 * BLK, BLK);
    let mut rbuf = AlignedBuf::zeroed(2 * BLK, BLK);
    let last = len - BLK as u64;
    expect_invalid(dev.write_at(len, &buf[..BLK]), "write at the end");
    expect_invalid(dev.write_at(last, &buf), "write across the end");
    expect_invalid(dev.read_at(len, &mut rbuf[..BLK]), "read at the end");
    expect_invalid(dev.read_at(last, &mut rbuf), "read across the end");
    let huge = u64::MAX - (BLK as u64 - 1);
    expect_invalid(dev.read_at(huge, &mut rbuf), "read with offset overflow");
    assert_eq!(dev.len_bytes(), len, "an access past the end never extends the device");
    // The last block itself is usable.
    dev.write_at(last, &pattern(last, BLK, 8)).unwrap();
    assert_pattern(dev, last, BLK, 8);
}

fn flush_ordering(dev: &dyn BlockDevice) {
    let at = 4u64 << 20;
    dev.write_at(at, &pattern(at, BLK, 9)).unwrap();
    dev.flush().unwrap();
    let ops_data = [pattern(at + 8192, BLK, 10), pattern(at, BLK, 11)];
    let ops = [
        WriteOp { offset: at + 8192, data: &ops_data[0] },
        WriteOp { offset: at, data: &ops_data[1] },
    ];
    dev.write_batch(&ops).unwrap();
    dev.flush().unwrap();
    assert_pattern(dev, at, BLK, 11);
    assert_pattern(dev, at + 8192, BLK, 10);
    dev.flush().unwrap();
}

fn large_batches(dev: &dyn BlockDevice) {
    // 300 non-adjacent blocks: more than any queue depth the suite configures.
    let base = 5u64 << 20;
    let n = 300;
    let offsets: Vec<u64> = (0..n).map(|i| base + (i * 2 * BLK) as u64).collect();
    let bufs: Vec<AlignedBuf> = offsets.iter().map(|&o| pattern(o, BLK, 12)).collect();
    let ops: Vec<WriteOp> =
        offsets.iter().zip(&bufs).map(|(&offset, data)| WriteOp { offset, data }).collect();
    dev.write_batch(&ops).unwrap();
    let mut rbufs: Vec<AlignedBuf> = (0..n).map(|_| AlignedBuf::zeroed(BLK, BLK)).collect();
    let mut rops: Vec<ReadOp> =
        offsets.iter().zip(rbufs.iter_mut()).map(|(&offset, buf)| ReadOp { offset, buf }).collect();
    dev.read_batch(&mut rops).unwrap();
    for (o, b) in offsets.iter().zip(&rbufs) {
        assert!(b[..] == pattern(*o, BLK, 12)[..], "block at {o}");
    }
}

fn concurrent_readers(dev: &dyn BlockDevice) {
    let base = 6u64 << 20;
    let region = 1usize << 20;
    dev.write_at(base, &pattern(base, region, 13)).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            scope.spawn(move || {
                let mut x = 0x1234_5678u64 ^ t;
                let mut buf = AlignedBuf::zeroed(4 * BLK, BLK);
                for _ in 0..200 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let blocks = (x % 4 + 1) as usize;
                    let first = (x >> 8) % (region / BLK - blocks) as u64;
                    let offset = base + first * BLK as u64;
                    let len = blocks * BLK;
                    dev.read_at(offset, &mut buf[..len]).unwrap();
                    assert!(buf[..len] == pattern(offset, len, 13)[..], "thread {t} at {offset}");
                }
            });
        }
    });
}

fn grow(dev: &dyn BlockDevice) {
    let len = dev.len_bytes();
    assert_eq!(dev.grow(len / 2).unwrap(), len, "growing to less keeps the length");
    let new_len = dev.grow(len + 1).unwrap();
    assert!(new_len > len, "a file grows ({len} → {new_len})");
    assert_eq!(new_len % u64::from(dev.sector_bytes()), 0);
    assert_eq!(dev.len_bytes(), new_len);
    let fresh = read(dev, len, BLK);
    assert!(fresh.iter().all(|&b| b == 0), "new space reads as zeros");
    let last = new_len - BLK as u64;
    assert!(read(dev, last, BLK).iter().all(|&b| b == 0));
    dev.write_at(last, &pattern(last, BLK, 14)).unwrap();
    dev.flush().unwrap();
    assert_pattern(dev, last, BLK, 14);
    // Old contents are untouched.
    assert_pattern(dev, 6 << 20, BLK, 13);
}

fn file_opts(backend: IoBackend) -> DeviceOptions {
    DeviceOptions {
        backend,
        queue_depth: 16,
        grow_step_bytes: 4 << 20,
        max_bytes: 64 << 20,
        initial_bytes: 16 << 20,
        overwrite_existing: false,
    }
}

#[test]
fn uring_file() {
    if needs_real_file("uring_file", "io_uring and O_DIRECT on a file") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("store");
    let dev = UringDevice::open(&path, true, &file_opts(IoBackend::Uring)).unwrap();
    assert_eq!(dev.len_bytes(), 16 << 20);
    assert_eq!(dev.queue_depth(), 16);
    conformance(&dev, true);
}

#[test]
fn sync_file() {
    if needs_real_file("sync_file", "pread/pwrite and O_DIRECT on a file") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("store");
    let dev = SyncDevice::open(&path, true, &file_opts(IoBackend::Sync)).unwrap();
    conformance(&dev, true);
}

#[test]
fn open_path_backends() {
    if needs_real_file("open_path_backends", "open_path on files") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    for backend in [IoBackend::Auto, IoBackend::Uring, IoBackend::Sync] {
        let path = dir.path().join(format!("{backend:?}"));
        let dev = arbor::io::open_path(&path, true, &file_opts(backend)).unwrap();
        let name = dev.describe();
        // A buffered file (tmpfs under ARBOR_TEST_DIR) goes through pread/pwrite with Auto.
        let buffered = name.contains("buffered") && backend == IoBackend::Auto;
        let want = if backend == IoBackend::Sync || buffered { "pread/pwrite" } else { "io_uring" };
        assert!(name.starts_with(want), "{backend:?} gave {name}");
        conformance(&*dev, true);
    }
}

#[test]
fn mem_device() {
    let dev = arbor::io::MemDevice::new(64 << 20);
    assert_eq!(dev.len_bytes(), 0, "starts empty");
    assert_eq!(dev.grow(16 << 20).unwrap(), 16 << 20, "the first step is what is asked");
    conformance(&dev, true);
    assert_eq!(dev.grow(1 << 40).unwrap(), 64 << 20, "clamped to the maximum");
}

#[test]
fn sim_device() {
    for sector in [512, 4096] {
        let dev = SimDevice::new(16 << 20, sector, 7);
        conformance(&dev, false);
    }
    // Also through the counting wrapper.
    let dev = arbor::io::CountingDevice::new(SimDevice::new(16 << 20, 4096, 7));
    conformance(&dev, false);
    assert!(dev.flush_count() >= 3);
}

/// `blockdev ARG DEV` (util-linux), or `None` when the tool is missing.
fn blockdev(arg: &str, dev: &Path) -> Option<u64> {
    let out = Command::new("blockdev").arg(arg).arg(dev).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn loop_block_device() {
    if needs_real_file("loop_block_device", "a loop device") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let backing = dir.path().join("loop-backing");
    let file = std::fs::File::create(&backing).unwrap();
    file.set_len(64 << 20).unwrap();
    drop(file);
    let Some(lo) = LoopDevice::attach_or_skip(&backing, "loop_block_device") else { return };
    let opts = DeviceOptions { queue_depth: 16, ..DeviceOptions::default() };
    {
        let dev = UringDevice::open(lo.path(), false, &opts).unwrap();
        assert_eq!(dev.len_bytes(), 64 << 20, "BLKGETSIZE64");
        if let Some(size) = blockdev("--getsize64", lo.path()) {
            assert_eq!(dev.len_bytes(), size, "BLKGETSIZE64");
        }
        if let Some(sector) = blockdev("--getss", lo.path()) {
            assert_eq!(u64::from(dev.sector_bytes()), sector, "BLKSSZGET");
        }
        assert!(dev.describe().contains("block device"), "{}", dev.describe());
        // O_EXCL: a second opener is refused while this one holds the device.
        for backend in [IoBackend::Uring, IoBackend::Sync] {
            let second =
                arbor::io::open_path(lo.path(), false, &DeviceOptions { backend, ..opts.clone() });
            assert!(
                matches!(second, Err(Error::Locked { .. })),
                "second opener: {:?}",
                second.err()
            );
        }
        conformance(&dev, false);
        assert_eq!(dev.grow(128 << 20).unwrap(), 64 << 20, "block devices do not grow");
    }
    let dev = SyncDevice::open(lo.path(), false, &opts).unwrap();
    conformance(&dev, false);
}

/// Writes into a growth step right after `grow` returns, while its zero writes may still run
/// on the helper thread (design.md §10.16): none of them may be overwritten by zeros, on
/// either backend, and the data is there after a reopen.
#[test]
fn writes_right_after_growth_survive_the_background_zeroing() {
    let dir = arbor_testkit::temp_dir!();
    for backend in [IoBackend::Uring, IoBackend::Sync] {
        let path = dir.path().join(format!("{backend:?}"));
        let opts =
            DeviceOptions { grow_step_bytes: 64 << 20, max_bytes: 256 << 20, ..file_opts(backend) };
        let dev = arbor::io::open_path(&path, true, &opts).unwrap();
        for round in 0..3u8 {
            let len = dev.len_bytes();
            let new_len = dev.grow(len + 1).unwrap();
            assert_eq!(new_len, 2 * len, "{backend:?}: a step as large as the file");
            // The step's last block first (the zeroing's last chunk), then spread downwards.
            let offsets: Vec<u64> = (1..=16).map(|i| new_len - i * (new_len - len) / 16).collect();
            for (i, &at) in offsets.iter().rev().enumerate() {
                let at = at - at % BLK as u64;
                dev.write_at(at, &pattern(at, BLK, round.wrapping_mul(16) ^ i as u8)).unwrap();
            }
            dev.flush().unwrap();
            for (i, &at) in offsets.iter().rev().enumerate() {
                let at = at - at % BLK as u64;
                assert_pattern(&*dev, at, BLK, round.wrapping_mul(16) ^ i as u8);
            }
        }
        let len = dev.len_bytes();
        drop(dev);
        let dev = arbor::io::open_path(&path, false, &opts).unwrap();
        assert_eq!(dev.len_bytes(), len, "{backend:?}: the grown length after a reopen");
        let last = len - BLK as u64;
        assert!(read(&*dev, last - BLK as u64, BLK).iter().all(|&b| b == 0), "zeroed space");
    }
}
