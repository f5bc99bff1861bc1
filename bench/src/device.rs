//! `kv-bench device TARGET`: raw figures of Arbor's own `UringDevice`, to set beside fio's
//! (each figure prints fio's equivalent command line). Moved here from the engine's
//! `device_bench` example.
//!
//! TARGET is a file (created and written once up to `--size`, default 1 GiB, then removed
//! unless `--keep`) or a block device (DESTRUCTIVE: it is overwritten; needs
//! `--i-know-this-erases`, as does an existing file that holds data).
//! * default: 4 KiB random reads at QD 1 and QD 32 (one `read_batch` of 32 random blocks,
//!   repeated), sequential 1 MiB writes (batches of 8 adjacent 1 MiB writes), and the commit
//!   cycle (4 KiB write + flush, 1,000 times: median and p99), each with fio's equivalent.
//! * `--threads`: random 4 KiB reads at QD 1 per thread from 1 and 4 threads, through the
//!   ring pool and through one device behind a mutex (what a single shared ring would give).
//! * `--unwritten` (files): write+flush latency on fallocated-only space (unwritten extents)
//!   against space grown the design.md §10.16 way (zero-written).
//! * `--durable`: only the durable-write comparison (also part of the default run) for the
//!   journal (design.md §11.4): a 4 KiB and an 8 KiB (a twin journal block) write made durable
//!   by write + fdatasync (two waits, as `UringDevice` does), by write → fdatasync linked in
//!   one submission, and by one FUA write (`RWF_DSYNC` on O_DIRECT); p50, p99 and ops/s.
//!   It opens its own O_DIRECT descriptor and io_uring ring: `UringDevice` has no per-write
//!   flags.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arbor::io::{BlockDevice, DeviceOptions, IoBackend, ReadOp, UringDevice, WriteOp};
use arbor::AlignedBuf;

const BLOCK: usize = 4096;

/// `kv-bench device` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// A file (created, then removed unless --keep) or a block device (overwritten).
    pub target: PathBuf,
    /// Bytes of the target to use.
    #[arg(long, default_value_t = 1 << 30)]
    pub size: u64,
    /// Seconds per read measurement.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Ring-per-caller experiment instead: QD 1 reads from 1 and 4 threads.
    #[arg(long)]
    pub threads: bool,
    /// Write+flush on unwritten (fallocated) against zero-written space (files only).
    #[arg(long)]
    pub unwritten: bool,
    /// Only the durable-write comparison: write+fdatasync against FUA (RWF_DSYNC) writes.
    #[arg(long)]
    pub durable: bool,
    /// Keep the file afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Allow overwriting a block device.
    #[arg(long)]
    pub i_know_this_erases: bool,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn block(&mut self, blocks: u64) -> u64 {
        (self.next() % blocks) * BLOCK as u64
    }
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).map(|m| m.file_type().is_block_device()).unwrap_or(false)
}

/// Opens (creating a file) the target; one that holds data only with `erase`.
fn open(path: &Path, size: u64, qd: u32, erase: bool) -> Result<UringDevice, String> {
    let opts = DeviceOptions {
        backend: IoBackend::Uring,
        queue_depth: qd,
        grow_step_bytes: 64 << 20,
        max_bytes: size,
        initial_bytes: size,
        overwrite_existing: erase,
    };
    UringDevice::open(path, true, &opts).map_err(|e| match e {
        arbor::Error::ExistingData { what } => format!(
            "{} holds data ({what}): it would be overwritten; pass --i-know-this-erases",
            path.display()
        ),
        e => {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            format!("cannot open {}: {e}{cause}", path.display())
        }
    })
}

/// Runs `f` (which does `ops_per_call` ops) repeatedly for `secs`; returns ops per second.
fn rate(secs: f64, ops_per_call: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f();
        ops += ops_per_call;
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

/// Random 4 KiB reads over the whole of `dev`, `qd` at a time (one `read_batch` each), for
/// `secs`: IOPS.
pub fn random_reads(dev: &dyn BlockDevice, qd: usize, secs: f64, seed: u64) -> f64 {
    let blocks = dev.len_bytes() / BLOCK as u64;
    let mut rng = Rng(seed | 1);
    let mut bufs: Vec<AlignedBuf> = (0..qd).map(|_| AlignedBuf::zeroed(BLOCK, BLOCK)).collect();
    rate(secs, qd as u64, || {
        let mut ops: Vec<ReadOp> =
            bufs.iter_mut().map(|buf| ReadOp { offset: rng.block(blocks), buf }).collect();
        dev.read_batch(&mut ops).expect("read");
    })
}

fn sequential_writes(dev: &dyn BlockDevice) -> f64 {
    let chunk = 1usize << 20;
    let per_batch = 8usize;
    let bufs: Vec<AlignedBuf> =
        (0..per_batch).map(|i| AlignedBuf::from_slice(&vec![i as u8 + 1; chunk], BLOCK)).collect();
    let total = dev.len_bytes() - dev.len_bytes() % (chunk * per_batch) as u64;
    let start = Instant::now();
    let mut at = 0u64;
    while at < total {
        let ops: Vec<WriteOp> = bufs
            .iter()
            .enumerate()
            .map(|(i, data)| WriteOp { offset: at + (i * chunk) as u64, data })
            .collect();
        dev.write_batch(&ops).expect("write");
        at += (chunk * per_batch) as u64;
    }
    dev.flush().expect("flush");
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// `count` cycles of one 4 KiB write + flush at successive offsets from `from`.
fn commit_cycles(dev: &dyn BlockDevice, from: u64, count: usize) -> (f64, f64) {
    let data = AlignedBuf::from_slice(&[0x5A; BLOCK], BLOCK);
    let mut lat = Vec::with_capacity(count);
    for i in 0..count {
        let offset = from + (i * BLOCK) as u64;
        let t = Instant::now();
        dev.write_at(offset, &data).expect("write");
        dev.flush().expect("flush");
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn threads_experiment(dev: &UringDevice, secs: f64) {
    println!("ring-per-caller experiment: random 4 KiB reads, QD 1 per thread");
    let serialized = Mutex::new(());
    for threads in [1u64, 4] {
        for shared in [true, false] {
            let total: f64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let serialized = &serialized;
                        s.spawn(move || {
                            let blocks = dev.len_bytes() / BLOCK as u64;
                            let mut rng = Rng(0x9E37 + t * 7919);
                            let mut buf = AlignedBuf::zeroed(BLOCK, BLOCK);
                            rate(secs, 1, || {
                                let offset = rng.block(blocks);
                                let _guard = shared.then(|| serialized.lock().unwrap());
                                dev.read_at(offset, &mut buf).expect("read");
                            })
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            let mode = if shared { "one ring behind a mutex" } else { "ring pool" };
            println!("  {threads} thread(s), {mode:24}: {total:>9.0} IOPS");
        }
    }
}

fn unwritten_experiment(path: &Path) {
    let count = 1000usize;
    let region = (count * BLOCK) as u64 + (1 << 20);
    let base = 1u64 << 20;
    for zeroed in [false, true] {
        let p = path.with_extension(if zeroed { "zeroed" } else { "unwritten" });
        let _ = std::fs::remove_file(&p);
        let opts = DeviceOptions {
            backend: IoBackend::Uring,
            queue_depth: 8,
            grow_step_bytes: 1 << 20,
            max_bytes: base + region,
            initial_bytes: base,
            overwrite_existing: false,
        };
        let dev = UringDevice::open(&p, true, &opts).expect("open");
        if zeroed {
            dev.grow(base + region).expect("grow");
        } else {
            dev.grow_unwritten_for_bench(base + region).expect("fallocate");
        }
        let (p50, p99) = commit_cycles(&dev, base, count);
        let kind = if zeroed { "zero-written (§10.16)" } else { "fallocated, unwritten" };
        println!("  write+flush on {kind:24}: p50 {p50:7.1} µs  p99 {p99:7.1} µs");
        drop(dev);
        let _ = std::fs::remove_file(&p);
    }
}

/// How a durable write is made durable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Durable {
    /// Write, wait, fdatasync, wait: what `UringDevice::write_at` + `flush` do today.
    WriteThenFlush,
    /// Write → fdatasync as linked SQEs, one submission and one wait.
    WriteLinkedFlush,
    /// One O_DIRECT write with `RWF_DSYNC`: FUA where the device has it, else the kernel
    /// adds the flush itself.
    Fua,
}

impl Durable {
    const ALL: [Durable; 3] = [Durable::WriteThenFlush, Durable::WriteLinkedFlush, Durable::Fua];

    fn label(self) -> &'static str {
        match self {
            Durable::WriteThenFlush => "write + fdatasync (2 waits)",
            Durable::WriteLinkedFlush => "write -> fdatasync linked",
            Durable::Fua => "FUA write (RWF_DSYNC)",
        }
    }
}

/// A raw io_uring ring on an O_DIRECT descriptor of the target, for the durable-write
/// comparison.
struct RawRing {
    file: std::fs::File,
    ring: io_uring::IoUring,
}

impl RawRing {
    fn open(path: &Path) -> std::io::Result<RawRing> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        Ok(RawRing { file, ring: io_uring::IoUring::new(8)? })
    }

    /// Submits `entries` and waits for all of them; any failed or short completion is an error.
    fn run(&mut self, entries: &[io_uring::squeue::Entry], len: usize) -> std::io::Result<()> {
        for entry in entries {
            // SAFETY: every entry points at a buffer the caller keeps alive and unmoved until
            // this function returns, and we wait for every completion before returning.
            unsafe { self.ring.submission().push(entry) }
                .map_err(|_| std::io::Error::other("submission queue full"))?;
        }
        self.ring.submit_and_wait(entries.len())?;
        let mut seen = 0;
        for cqe in self.ring.completion() {
            seen += 1;
            let res = cqe.result();
            if res < 0 {
                return Err(std::io::Error::from_raw_os_error(-res));
            }
            if cqe.user_data() == 1 && res as usize != len {
                return Err(std::io::Error::other(format!("short write: {res} of {len}")));
            }
        }
        if seen != entries.len() {
            return Err(std::io::Error::other(format!("{seen} of {} completions", entries.len())));
        }
        Ok(())
    }

    /// One durable write of `data` at `offset`.
    fn durable_write(
        &mut self,
        data: &AlignedBuf,
        offset: u64,
        how: Durable,
    ) -> std::io::Result<()> {
        use io_uring::{opcode, squeue, types};
        use std::os::unix::io::AsRawFd;
        let fd = types::Fd(self.file.as_raw_fd());
        let len = data.len();
        let write = opcode::Write::new(fd, data.as_ptr(), len as u32).offset(offset);
        let fsync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(2);
        match how {
            Durable::WriteThenFlush => {
                self.run(&[write.build().user_data(1)], len)?;
                self.run(&[fsync], len)
            }
            Durable::WriteLinkedFlush => {
                let write = write.build().user_data(1).flags(squeue::Flags::IO_LINK);
                self.run(&[write, fsync], len)
            }
            Durable::Fua => {
                let write = write.rw_flags(libc::RWF_DSYNC).build().user_data(1);
                self.run(&[write], len)
            }
        }
    }
}

/// p50 and p99 (µs) and ops/s of `count` durable writes of `bytes` each, at successive
/// offsets through a 64 MiB window from 0 (a journal's ring), for each way of making them
/// durable. The ways run interleaved in rounds of 100 so drift in a shared VM hits all alike.
fn durable_writes(path: &Path, len_bytes: u64, count: usize) -> std::io::Result<()> {
    let mut raw = RawRing::open(path)?;
    let window = (64u64 << 20).min(len_bytes);
    println!("durable writes ({count} each; sequential offsets in a {} MiB window):", window >> 20);
    for bytes in [BLOCK, 2 * BLOCK] {
        let data = AlignedBuf::from_slice(&vec![0xA5; bytes], BLOCK);
        let mut lat: Vec<Vec<Duration>> = vec![Vec::with_capacity(count); Durable::ALL.len()];
        let mut total = [Duration::ZERO; 3];
        let mut offset = 0u64;
        for _round in 0..count.div_ceil(100) {
            for (i, how) in Durable::ALL.into_iter().enumerate() {
                for _ in 0..100 {
                    let t = Instant::now();
                    raw.durable_write(&data, offset, how)?;
                    let took = t.elapsed();
                    lat[i].push(took);
                    total[i] += took;
                    offset = (offset + bytes as u64) % (window - window % bytes as u64);
                }
            }
        }
        for (i, how) in Durable::ALL.into_iter().enumerate() {
            let lat = &mut lat[i];
            lat.sort_unstable();
            let ops = lat.len() as f64 / total[i].as_secs_f64();
            // ops/s is count over total time, so one stall (a shared VM) shows there and in
            // max; p50 is the robust figure.
            println!(
                "  {:>2} KiB {:28}: p50 {:7.1} µs  p99 {:7.1} µs  max {:8.1} µs  {ops:>8.0} ops/s",
                bytes / 1024,
                how.label(),
                percentile(lat, 0.5),
                percentile(lat, 0.99),
                percentile(lat, 1.0)
            );
        }
    }
    Ok(())
}

/// What the device rows of `kv-bench` measure on a store's own file or block device.
pub struct StoreIops {
    /// Bytes the random reads range over: the whole file or device.
    pub bytes: u64,
    pub qd1: f64,
    pub qd32: f64,
}

/// Random 4 KiB O_DIRECT reads through `UringDevice` over an existing store (a file or a
/// block device; opened without creating, growing or writing anything), at QD 1 and then
/// QD 32 (`random_reads`), `secs` each. The store must be closed: `UringDevice` locks it.
pub fn store_iops(path: &Path, secs: f64) -> Result<StoreIops, String> {
    let opts = DeviceOptions {
        backend: IoBackend::Uring,
        queue_depth: 32,
        grow_step_bytes: 64 << 20,
        max_bytes: u64::MAX,
        initial_bytes: 0,
        overwrite_existing: false,
    };
    let dev = UringDevice::open(path, false, &opts)
        .map_err(|e| format!("UringDevice::open {}: {e}", path.display()))?;
    if dev.len_bytes() < BLOCK as u64 {
        return Err(format!("{}: smaller than one 4 KiB block", path.display()));
    }
    let qd1 = random_reads(&dev, 1, secs, 1);
    let qd32 = random_reads(&dev, 32, secs, 2);
    Ok(StoreIops { bytes: dev.len_bytes(), qd1, qd32 })
}

/// fio's command line for the same measurement (`fio-baseline.sh` runs these).
fn fio_line(target: &Path, size: u64, secs: f64, job: &str) -> String {
    format!(
        "fio --name=r --filename={} --size={size} --direct=1 --ioengine=io_uring {job} \
         --time_based --runtime={} --randrepeat=0 --norandommap",
        target.display(),
        secs.ceil() as u64
    )
}

/// Runs `kv-bench device`; `Err` for a refused target.
pub fn main(args: &DeviceArgs) -> Result<(), String> {
    let block = is_block_device(&args.target);
    if block && !args.i_know_this_erases {
        return Err(format!(
            "{} is a block device: its contents will be overwritten; pass --i-know-this-erases",
            args.target.display()
        ));
    }
    if args.unwritten {
        println!("§10.16: 4 KiB write + flush, 1,000 cycles at fresh offsets");
        unwritten_experiment(&args.target);
        return Ok(());
    }
    let t = Instant::now();
    let dev = open(&args.target, args.size, 64, args.i_know_this_erases)?;
    println!(
        "{} ({} MiB), opened in {:.1} s",
        dev.describe(),
        dev.len_bytes() >> 20,
        t.elapsed().as_secs_f64()
    );
    let fio = |job: &str| fio_line(&args.target, args.size, args.secs, job);
    if args.durable {
        durable_writes(&args.target, dev.len_bytes(), 2000).map_err(|e| e.to_string())?;
    } else if args.threads {
        threads_experiment(&dev, args.secs);
    } else {
        let qd1 = random_reads(&dev, 1, args.secs, 1);
        println!("randread 4k qd1 : {qd1:>9.0} IOPS {:>8.1} MB/s", qd1 * BLOCK as f64 / 1e6);
        println!("  fio: {}", fio("--rw=randread --bs=4k --iodepth=1"));
        let qd32 = random_reads(&dev, 32, args.secs, 2);
        println!("randread 4k qd32: {qd32:>9.0} IOPS {:>8.1} MB/s", qd32 * BLOCK as f64 / 1e6);
        println!("  fio: {}", fio("--rw=randread --bs=4k --iodepth=32"));
        let mbs = sequential_writes(&dev);
        println!("seqwrite 1m (8 per batch): {mbs:.1} MB/s");
        println!("  fio: {}", fio("--rw=write --bs=1M --iodepth=8"));
        let (p50, p99) = commit_cycles(&dev, 0, 1000);
        println!("commit cycle 4k write+flush: p50 {p50:.1} µs  p99 {p99:.1} µs");
        println!("  fio: {}", fio("--rw=randwrite --bs=4k --iodepth=1 --fdatasync=1"));
        durable_writes(&args.target, dev.len_bytes(), 1000).map_err(|e| e.to_string())?;
        println!("  fio: {}", fio("--rw=write --bs=4k --iodepth=1 --sync=dsync"));
        println!("(each line above prints the fio command that measures the same thing)");
    }
    drop(dev);
    if !block && !args.keep {
        let _ = std::fs::remove_file(&args.target);
    }
    Ok(())
}
