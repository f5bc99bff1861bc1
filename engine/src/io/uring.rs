//! `UringDevice`: io_uring + O_DIRECT on a regular file or a block device.
//!
//! # One batch, one wait
//! A batch is turned into *segments*: ops sorted by offset, runs of device-adjacent ops
//! coalesced into one `Readv`/`Writev` (or one `Read`/`Write` when the buffers are also
//! adjacent in memory). Up to a ring's worth of segments is pushed and submitted with one
//! `submit_and_wait` that waits for all of them; batches larger than the ring run in
//! ring-sized waves, refilled as completions arrive. A short transfer is resubmitted for its
//! remainder, `EINTR`/`EAGAIN` completions are retried up to [`RETRIES_MAX`] times, and
//! `-ECANCELED`, a 0-byte transfer before the end, or any other error is returned as an
//! `io::Error` — but only after every submitted operation has completed, so no buffer is
//! released (nor the batch reported done) while the kernel may still touch it. That is also
//! what makes a following flush cover exactly the batch's writes (design.md §10.10).
//! `flush` is fdatasync(2) on the calling thread, for files and block devices alike
//! (design.md §10.16): io_uring runs a blocking fsync on an io-wq worker thread instead,
//! which costs two more context switches per flush (measured: ~11 % of the single-writer
//! durable commit rate, design.md §11.4).
//!
//! # Rings: a pool, one ring per concurrent caller
//! A ring is not shareable by two threads without a completion dispatcher, and one ring
//! behind a mutex held for the whole I/O serialises every reader. We keep a small pool of
//! rings per device: a call pops a ring (creating one when the pool is empty), runs its batch
//! on it, and pushes it back; the pool's mutex is held only for the pop and the push. This is
//! the "ring per thread" design without thread-locals: the number of rings is the peak number
//! of concurrent callers (idle ones beyond [`RINGS_IDLE_MAX`] are closed), and all of them
//! are closed with the device, so nothing outlives it in other threads' storage.
//!
//! Measured with `bench/src/device.rs (kv-bench device) TARGET --threads` (random 4 KiB
//! reads, QD 1 per thread, 3 s per run, on the 2-core development VM whose cores other
//! builds shared; IOPS):
//!
//! | target                         | readers | one ring behind a mutex | ring pool |
//! |--------------------------------|---------|-------------------------|-----------|
//! | 1 GiB file, ext4 on virtio     | 1       | 17.7 k                  | 15.8 k    |
//! | 1 GiB file, ext4 on virtio     | 4       | 14.6 k (no gain)        | 42.5 k (×2.7) |
//! | 1 GiB loop device (direct I/O) | 1       | 11.2 k                  | 12.7 k    |
//! | 1 GiB loop device (direct I/O) | 4       | 13.1 k (no gain)        | 20.3 k (×1.6) |
//!
//! One thread is the same either way (within noise); four threads serialise on a shared
//! ring and scale with the pool. So: the pool. A shared ring with a completion dispatcher
//! would scale too, but adds a thread hand-off per completion and a dispatcher to get right.

use std::io;
use std::path::Path;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::args::{check_reads, check_writes};
use super::file::DevFile;
use super::open::DeviceOptions;
use super::{BlockDevice, ReadOp, StreamDone, StreamRead, WriteOp};
use crate::sync::{self, Mutex};
use crate::Error;

/// Retries of one operation whose completion says `EINTR` or `EAGAIN`.
pub const RETRIES_MAX: u32 = 16;
/// Consecutive `io_uring_enter` failures with `EINTR`/`EAGAIN`/`EBUSY` tolerated per wait.
const ENTER_RETRIES_MAX: u32 = 10_000;
/// Idle rings kept per device; more concurrent callers get rings that are closed after use.
pub const RINGS_IDLE_MAX: usize = 32;
/// How often a ring that cannot be entered is checked for its last completions.
const DRAIN_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);
/// A stream submits its reads in groups of this many (see `Queue::push`).
const STREAM_SUBMIT_EVERY: usize = 8;
/// Largest ring we ask for (the kernel caps at 32768 entries).
const QUEUE_DEPTH_MAX: u32 = 4096;
/// Most ops coalesced into one vectored operation (the kernel's IOV_MAX is 1024).
const COALESCE_IOVECS_MAX: usize = 256;
/// Most bytes in one segment: bounds the latency of one SQE and stays far below the
/// kernel's per-call limit (`MAX_RW_COUNT`, about 2 GiB).
const SEGMENT_BYTES_MAX: usize = 8 << 20;

/// Creates a ring of `queue_depth` entries and checks that the kernel implements every
/// opcode this backend uses (`ErrorKind::Unsupported` naming the first missing one).
pub(crate) fn setup_ring(queue_depth: u32) -> io::Result<IoUring> {
    let ring = IoUring::builder().setup_clamp().build(queue_depth.clamp(1, QUEUE_DEPTH_MAX))?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let needed = [
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::Readv::CODE, "IORING_OP_READV"),
        (opcode::Write::CODE, "IORING_OP_WRITE"),
        (opcode::Writev::CODE, "IORING_OP_WRITEV"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel's io_uring does not support {name}"),
            ));
        }
    }
    Ok(ring)
}

/// io_uring + O_DIRECT device. See the module documentation for the batching and ring rules.
pub struct UringDevice {
    /// Declared before `file`: the rings close before the target's descriptors and lock.
    rings: Mutex<Vec<IoUring>>,
    file: DevFile,
    queue_depth: u32,
}

impl std::fmt::Debug for UringDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::BlockDevice;
        f.debug_struct("UringDevice").field("device", &self.describe()).finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// A run of device-adjacent ops submitted as one SQE (resubmitted for its remainder after a
/// short transfer).
struct Segment {
    offset: u64,
    /// The whole run's memory, in device order.
    iovs: Vec<libc::iovec>,
    total_bytes: usize,
    done_bytes: usize,
    retries: u32,
    /// The not-yet-transferred part, which the in-flight SQE points at. Rebuilt only after
    /// the previous SQE's completion has been reaped.
    remaining: Vec<libc::iovec>,
    /// A stream read whose completion is handled before the others' (`StreamRead::urgent`).
    urgent: bool,
}

impl Segment {
    fn new(offset: u64, ptr: *mut u8, len: usize) -> Segment {
        Segment {
            offset,
            iovs: vec![libc::iovec { iov_base: ptr.cast(), iov_len: len }],
            total_bytes: len,
            done_bytes: 0,
            retries: 0,
            remaining: Vec::new(),
            urgent: false,
        }
    }

    fn end(&self) -> u64 {
        self.offset + self.total_bytes as u64
    }

    /// Appends the next device-adjacent op, merging it with the last iovec when the memory
    /// is adjacent too.
    fn push(&mut self, ptr: *mut u8, len: usize) {
        let last = self.iovs.last_mut().expect("a segment starts with one iovec");
        if (last.iov_base as usize).wrapping_add(last.iov_len) == ptr as usize {
            last.iov_len += len;
        } else {
            self.iovs.push(libc::iovec { iov_base: ptr.cast(), iov_len: len });
        }
        self.total_bytes += len;
    }

    /// Builds the SQE for the remaining bytes. The entry points into `self.remaining` and
    /// into the caller's buffers.
    fn entry(&mut self, fd: types::Fd, dir: Dir, user_data: u64) -> squeue::Entry {
        debug_assert!(self.done_bytes < self.total_bytes);
        self.remaining.clear();
        let mut skip = self.done_bytes;
        for iov in &self.iovs {
            if skip >= iov.iov_len {
                skip -= iov.iov_len;
                continue;
            }
            let base = (iov.iov_base as usize + skip) as *mut libc::c_void;
            self.remaining.push(libc::iovec { iov_base: base, iov_len: iov.iov_len - skip });
            skip = 0;
        }
        let offset = self.offset + self.done_bytes as u64;
        let entry = match (dir, self.remaining.as_slice()) {
            (Dir::Read, [one]) => opcode::Read::new(fd, one.iov_base.cast(), one.iov_len as u32)
                .offset(offset)
                .build(),
            (Dir::Write, [one]) => {
                opcode::Write::new(fd, one.iov_base.cast_const().cast(), one.iov_len as u32)
                    .offset(offset)
                    .build()
            }
            (Dir::Read, many) => {
                opcode::Readv::new(fd, many.as_ptr(), many.len() as u32).offset(offset).build()
            }
            (Dir::Write, many) => {
                opcode::Writev::new(fd, many.as_ptr(), many.len() as u32).offset(offset).build()
            }
        };
        entry.user_data(user_data)
    }
}

/// Sorts `(offset, ptr, len)` by offset and groups device-adjacent runs into segments.
fn build_segments(mut ops: Vec<(u64, *mut u8, usize)>) -> Vec<Segment> {
    ops.retain(|op| op.2 > 0);
    ops.sort_unstable_by_key(|op| op.0);
    let mut segments: Vec<Segment> = Vec::with_capacity(ops.len());
    for (offset, ptr, len) in ops {
        // Ops larger than a segment are cut into segment-sized pieces.
        let mut at = 0usize;
        while at < len {
            let n = (len - at).min(SEGMENT_BYTES_MAX);
            let piece = ptr.wrapping_add(at);
            let piece_offset = offset + at as u64;
            match segments.last_mut() {
                Some(seg)
                    if seg.end() == piece_offset
                        && seg.iovs.len() < COALESCE_IOVECS_MAX
                        && seg.total_bytes + n <= SEGMENT_BYTES_MAX =>
                {
                    seg.push(piece, n)
                }
                _ => segments.push(Segment::new(piece_offset, piece, n)),
            }
            at += n;
        }
    }
    segments
}

fn is_retryable(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}

fn op_error(dir: Dir, offset: u64, errno: i32) -> io::Error {
    let what = if dir == Dir::Read { "read" } else { "write" };
    let os = io::Error::from_raw_os_error(errno);
    let cause = if errno == libc::ECANCELED {
        "operation canceled (ECANCELED)".into()
    } else {
        os.to_string()
    };
    io::Error::new(os.kind(), format!("io_uring {what} at offset {offset}: {cause}"))
}

/// A ring taken from the pool; goes back on drop unless it was discarded after an
/// `io_uring_enter` failure.
struct PooledRing<'a> {
    pool: &'a Mutex<Vec<IoUring>>,
    ring: Option<IoUring>,
}

impl Drop for PooledRing<'_> {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            let mut pool = sync::lock(self.pool);
            if pool.len() < RINGS_IDLE_MAX {
                pool.push(ring);
            }
        }
    }
}

impl UringDevice {
    /// Opens `path` (see [`super::open_path`] for the rules) with io_uring, failing if
    /// io_uring is unavailable.
    pub fn open(path: &Path, create: bool, opts: &DeviceOptions) -> Result<UringDevice, Error> {
        let file = DevFile::open(path, create, opts)?;
        let ring =
            setup_ring(opts.queue_depth).map_err(|e| file.error("set up an io_uring for", e))?;
        Ok(UringDevice::with_ring(file, ring))
    }

    pub(crate) fn with_ring(file: DevFile, ring: IoUring) -> UringDevice {
        let queue_depth = ring.params().sq_entries();
        UringDevice { rings: Mutex::new(vec![ring]), file, queue_depth }
    }

    /// The ring size in use (the requested depth, rounded up to a power of two).
    pub fn queue_depth(&self) -> u32 {
        self.queue_depth
    }

    /// Benchmark hook: grows a file with `fallocate` alone, leaving unwritten extents (the
    /// slow case design.md §10.16 avoids). Not for production use.
    #[doc(hidden)]
    pub fn grow_unwritten_for_bench(&self, target_bytes: u64) -> io::Result<u64> {
        self.file.grow_unwritten(target_bytes)
    }

    fn take_ring(&self) -> io::Result<PooledRing<'_>> {
        let pooled = sync::lock(&self.rings).pop();
        let ring = match pooled {
            Some(ring) => ring,
            None => setup_ring(self.queue_depth)?,
        };
        Ok(PooledRing { pool: &self.rings, ring: Some(ring) })
    }

    /// Runs every segment to completion. Returns the first error, after every submitted
    /// SQE's completion has been reaped. With `done` (a stream), each segment is handed to
    /// it as soon as it has completed, and the segments it appends start at once.
    fn run(
        &self,
        segments: &mut Vec<Segment>,
        dir: Dir,
        mut done: Option<&mut SegmentDone<'_>>,
    ) -> io::Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        let mut pooled = self.take_ring()?;
        let ring = pooled.ring.as_mut().expect("a pooled ring is present until drop");
        let fd = types::Fd(self.file.fd());
        let capacity = ring.params().sq_entries() as usize;
        let mut first_error: Option<io::Error> = None;
        let submit_every = done.is_some().then_some(STREAM_SUBMIT_EVERY);
        let mut queue = Queue { next: 0, again: Vec::new(), in_flight: 0, capacity, submit_every };
        let mut completed: Vec<(usize, i32)> = Vec::new();
        loop {
            if first_error.is_none() {
                queue.push(ring, segments, fd, dir);
            }
            if queue.in_flight == 0 {
                break;
            }
            // A batch with everything pushed (or after an error) waits for all; while more
            // remain, or for a stream, it waits for one and refills the freed slots.
            let all_pushed = first_error.is_some() || queue.all_pushed(segments);
            let want = if all_pushed && done.is_none() { queue.in_flight } else { 1 };
            if let Err(e) = wait(ring, want, queue.in_flight) {
                // The kernel consumed none of the SQEs still in the ring: discard the ring so
                // they are never submitted, and return with nothing in flight.
                pooled.ring = None;
                return Err(e);
            }
            completed.clear();
            completed.extend(ring.completion().map(|cqe| (cqe.user_data() as usize, cqe.result())));
            if done.is_some() {
                // A stream's urgent reads first: the reads they lead to start before the
                // others' completions are handled (design.md §12.6).
                completed.sort_by_key(|&(index, _)| !segments[index].urgent);
            }
            for &(index, result) in &completed {
                queue.in_flight -= 1;
                let seg = &mut segments[index];
                if let Err(e) = complete(seg, dir, result) {
                    first_error.get_or_insert(e);
                } else if seg.done_bytes < seg.total_bytes {
                    queue.again.push(index);
                } else if let (Some(done), None) = (done.as_mut(), &first_error) {
                    let before = segments.len();
                    done(index, segments);
                    if segments.len() > before {
                        queue.push(ring, segments, fd, dir);
                        // Started now; a failed submit leaves them queued for the next wait.
                        let _ = ring.submit();
                    }
                }
            }
        }
        debug_assert_eq!(queue.in_flight, 0);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// What a stream does with a completed segment (its index): may append segments to start.
type SegmentDone<'a> = dyn FnMut(usize, &mut Vec<Segment>) + 'a;

/// Which segments `run` has yet to push: new ones from `next` on, and ones to resubmit for
/// their remainder; and how many SQEs are in flight.
struct Queue {
    next: usize,
    again: Vec<usize>,
    in_flight: usize,
    capacity: usize,
    /// A stream's: submit after every this many pushes.
    submit_every: Option<usize>,
}

impl Queue {
    fn all_pushed(&self, segments: &[Segment]) -> bool {
        self.again.is_empty() && self.next == segments.len()
    }

    /// Pushes SQEs for waiting segments while the ring has room.
    fn push(&mut self, ring: &mut IoUring, segments: &mut [Segment], fd: types::Fd, dir: Dir) {
        while self.in_flight < self.capacity {
            let index = match self.again.pop() {
                Some(index) => index,
                None if self.next < segments.len() => {
                    self.next += 1;
                    self.next - 1
                }
                None => break,
            };
            let entry = segments[index].entry(fd, dir, index as u64);
            // SAFETY: the entry points into `segments[index].remaining` (a vector's heap
            // buffer, which stays put when `segments` grows and moves the `Segment`) and into
            // the caller's buffers (validated: aligned, in range, `len` bytes long). Neither
            // is freed or rebuilt until this SQE's completion is reaped: `run` returns only
            // when `in_flight == 0` (every pushed SQE reaped) or after `wait` discarded a ring
            // whose unreaped SQEs the kernel never consumed; `remaining` is rebuilt only in
            // `entry`, after the completion. Reads write into buffers lent to us for the
            // whole call (a stream's own buffers are handed back only once their reads have
            // completed).
            let pushed = unsafe { ring.submission().push(&entry) };
            pushed.expect("in_flight < ring capacity, so the SQ has room");
            self.in_flight += 1;
            // A stream starts its reads a few at a time: the device works on the first
            // while the kernel prepares the rest (its plug holds a submission's reads back
            // until the whole submission is prepared).
            if let Some(every) = self.submit_every {
                if self.in_flight.is_multiple_of(every) {
                    // A failed submit leaves them queued for the next wait.
                    let _ = ring.submit();
                }
            }
        }
    }
}

/// A stream's reads by segment index (one segment per read, never coalesced: a stream's
/// reads start at different times).
struct Stream {
    reads: Vec<Option<StreamRead>>,
    /// A read `check_reads` refused: no read starts after it.
    refused: Option<io::Error>,
    sector: u32,
    len: u64,
}

impl Stream {
    fn start(&mut self, mut read: StreamRead, segments: &mut Vec<Segment>) {
        if self.refused.is_some() {
            return;
        }
        let op = ReadOp { offset: read.offset, buf: read.buf.bytes() };
        let checked = match op.buf.is_empty() {
            true => Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty stream read")),
            false => check_reads(std::slice::from_ref(&op), self.sector, self.len),
        };
        if let Err(e) = checked {
            self.refused = Some(e);
            return;
        }
        assert_eq!(segments.len(), self.reads.len(), "one segment per stream read");
        let mut segment = Segment::new(op.offset, op.buf.as_mut_ptr(), op.buf.len());
        segment.urgent = read.urgent;
        segments.push(segment);
        self.reads.push(Some(read));
    }
}

/// Applies one completion to its segment: progress, or an error.
fn complete(seg: &mut Segment, dir: Dir, result: i32) -> io::Result<()> {
    let at = seg.offset + seg.done_bytes as u64;
    if result < 0 {
        if is_retryable(-result) && seg.retries < RETRIES_MAX {
            seg.retries += 1;
            return Ok(());
        }
        return Err(op_error(dir, at, -result));
    }
    if result == 0 {
        let (kind, what) = match dir {
            Dir::Read => (io::ErrorKind::UnexpectedEof, "read returned 0 bytes before the end"),
            Dir::Write => (io::ErrorKind::WriteZero, "write wrote 0 bytes"),
        };
        return Err(io::Error::new(kind, format!("io_uring at offset {at}: {what}")));
    }
    let n = result as usize;
    if n > seg.total_bytes - seg.done_bytes {
        return Err(io::Error::other(format!(
            "io_uring at offset {at}: kernel reported {n} bytes, more than asked"
        )));
    }
    seg.done_bytes += n;
    Ok(())
}

/// Submits whatever is queued and waits for `want` completions, retrying `EINTR`, `EAGAIN`
/// and `EBUSY` (bounded). On a hard failure it returns the error, but only once the kernel
/// holds none of our SQEs (each is either unconsumed in the SQ or has its completion in the
/// CQ): returning earlier would let the kernel write into memory the caller frees. See
/// [`drain_after_failure`].
fn wait(ring: &mut IoUring, want: usize, in_flight: usize) -> io::Result<()> {
    let mut failures = 0u32;
    loop {
        let err = match ring.submit_and_wait(want) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let transient = matches!(
            err.raw_os_error(),
            Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
        );
        // EAGAIN/EBUSY can mean "reap first": stop waiting once completions are there.
        if transient && ring.completion().len() >= want {
            return Ok(());
        }
        failures += 1;
        if transient && failures < ENTER_RETRIES_MAX {
            if err.raw_os_error() != Some(libc::EINTR) {
                std::thread::yield_now();
            }
            continue;
        }
        if in_kernel(ring, in_flight) > 0 {
            drain_after_failure(ring, in_flight, &err);
        }
        return Err(io::Error::new(err.kind(), format!("io_uring_enter: {err}")));
    }
}

/// Operations the kernel has consumed from the SQ and not yet completed into the CQ.
fn in_kernel(ring: &mut IoUring, in_flight: usize) -> usize {
    let unconsumed = ring.submission().len();
    in_flight.saturating_sub(unconsumed + ring.completion().len())
}

/// `io_uring_enter` keeps failing while the kernel holds some of our operations: the ring
/// is unusable, but its buffers are not ours to free yet. Waits, without entering the ring,
/// until the kernel has posted a completion for every operation it consumed (a block
/// request always ends, in completion or a timeout; completions reach the CQ on the return
/// from any system call, the sleep's included). The caller then returns the error and
/// discards the ring; the engine treats the failed write or flush as fatal (fail-stop).
fn drain_after_failure(ring: &mut IoUring, in_flight: usize, err: &io::Error) {
    log::error!(
        "io_uring_enter keeps failing ({err}) with {} operations in flight; waiting for the \
         kernel to complete them, then failing the call",
        in_kernel(ring, in_flight)
    );
    while in_kernel(ring, in_flight) > 0 {
        std::thread::sleep(DRAIN_POLL_INTERVAL);
    }
}

impl BlockDevice for UringDevice {
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
        let raw = ops.iter_mut().map(|op| (op.offset, op.buf.as_mut_ptr(), op.buf.len())).collect();
        self.run(&mut build_segments(raw), Dir::Read, None)
    }

    fn read_stream(&self, first: Vec<StreamRead>, done: &mut StreamDone<'_>) -> io::Result<()> {
        let (sector, len) = (self.sector_bytes(), self.len_bytes());
        let mut stream = Stream { reads: Vec::new(), refused: None, sector, len };
        let mut segments = Vec::with_capacity(first.len());
        for read in first {
            stream.start(read, &mut segments);
        }
        let ran = self.run(
            &mut segments,
            Dir::Read,
            Some(&mut |index, segments| {
                let read = stream.reads[index].take().expect("a read completes once");
                for next in done(read) {
                    stream.start(next, segments);
                }
            }),
        );
        ran?;
        stream.refused.map_or(Ok(()), Err)
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        check_writes(ops, self.sector_bytes(), self.len_bytes())?;
        let fill = self.file.zero_fill(ops);
        let zeros = fill.ops();
        // The kernel only reads through these pointers (IORING_OP_WRITE/WRITEV); `iovec`
        // merely spells them `*mut`.
        let raw = ops
            .iter()
            .chain(&zeros)
            .map(|op| (op.offset, op.data.as_ptr().cast_mut(), op.data.len()))
            .collect();
        self.run(&mut build_segments(raw), Dir::Write, None)?;
        drop(zeros);
        fill.written();
        Ok(())
    }

    /// fdatasync(2) on the calling thread. io_uring's `IORING_OP_FSYNC` blocks, so the ring
    /// hands it to an io-wq worker thread: two more context switches per flush, which cost
    /// ~11 % of the single-writer durable commit rate here (design.md §11.4).
    fn flush(&self) -> io::Result<()> {
        self.file
            .file()
            .sync_data()
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
            "io_uring {} {} (qd {}, sector {})",
            self.file.kind_name(),
            self.file.path().display(),
            self.queue_depth,
            self.sector_bytes()
        )
    }

    fn path(&self) -> Option<&Path> {
        Some(self.file.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_coalesce_device_and_memory_adjacency() {
        let mut mem = vec![0u8; 4 * 4096];
        let base = mem.as_mut_ptr();
        let at = |n: usize| base.wrapping_add(n * 4096);
        // Device-adjacent and memory-adjacent: one iovec. Then a gap on the device.
        let segs = build_segments(vec![
            (8192, at(1), 4096),
            (0, at(0), 4096),
            (4096, at(3), 4096),
            (65536, at(2), 4096),
        ]);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].offset, 0);
        assert_eq!(segs[0].total_bytes, 3 * 4096);
        // 0 → mem 0, 4096 → mem 3, 8192 → mem 1: three iovecs.
        assert_eq!(segs[0].iovs.len(), 3);
        assert_eq!(segs[1].iovs.len(), 1);
        let segs = build_segments(vec![(0, at(0), 4096), (4096, at(1), 8192)]);
        assert_eq!((segs.len(), segs[0].iovs.len()), (1, 1));
    }

    #[test]
    fn remainder_after_short_transfer() {
        let mut mem = vec![0u8; 3 * 4096];
        let base = mem.as_mut_ptr();
        let segs = build_segments(vec![(0, base, 4096), (4096, base.wrapping_add(8192), 4096)]);
        let mut seg = segs.into_iter().next().unwrap();
        complete(&mut seg, Dir::Read, 1024).unwrap();
        let _ = seg.entry(types::Fd(0), Dir::Read, 0);
        assert_eq!(seg.remaining.len(), 2);
        assert_eq!(seg.remaining[0].iov_len, 3072);
        assert!(complete(&mut seg, Dir::Write, 0).is_err());
        assert!(complete(&mut seg, Dir::Read, -libc::ECANCELED).is_err());
        assert!(complete(&mut seg, Dir::Read, -libc::EINTR).is_ok());
    }
}
