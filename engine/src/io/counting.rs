//! `CountingDevice`: a pass-through wrapper that counts flushes, writes and bytes, so tests
//! can prove properties such as "one flush per commit".

use std::io;

use super::{BlockDevice, ReadOp, StreamDone, StreamRead, WriteOp};
use crate::sync::{AtomicU64, Ordering};

/// Wraps any device and counts what goes through it (successful calls only).
pub struct CountingDevice<D> {
    inner: D,
    flushes: AtomicU64,
    write_batches: AtomicU64,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    reads: AtomicU64,
}

impl<D: super::BlockDevice> std::fmt::Debug for CountingDevice<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |c: &AtomicU64| c.load(crate::sync::Ordering::Relaxed);
        f.debug_struct("CountingDevice")
            .field("inner", &self.inner.describe())
            .field("flushes", &n(&self.flushes))
            .field("writes", &n(&self.writes))
            .field("reads", &n(&self.reads))
            .finish()
    }
}

impl<D: BlockDevice> CountingDevice<D> {
    /// Wraps `inner`, with the counts at 0.
    pub fn new(inner: D) -> CountingDevice<D> {
        CountingDevice {
            inner,
            flushes: AtomicU64::new(0),
            write_batches: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Successful `flush` calls.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Successful `write_batch` calls.
    pub fn write_batch_count(&self) -> u64 {
        self.write_batches.load(Ordering::Relaxed)
    }

    /// Write ops in successful batches.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Bytes in successful batches.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Read ops in successful batches.
    pub fn read_count(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        for c in
            [&self.flushes, &self.write_batches, &self.writes, &self.bytes_written, &self.reads]
        {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl<D: BlockDevice> BlockDevice for CountingDevice<D> {
    fn unlock(&self) {
        self.inner.unlock();
    }

    fn sector_bytes(&self) -> u32 {
        self.inner.sector_bytes()
    }

    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes()
    }

    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        self.inner.read_batch(ops)?;
        self.reads.fetch_add(ops.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn read_stream(&self, first: Vec<StreamRead>, done: &mut StreamDone<'_>) -> io::Result<()> {
        self.reads.fetch_add(first.len() as u64, Ordering::Relaxed);
        self.inner.read_stream(first, &mut |read| {
            let next = done(read);
            self.reads.fetch_add(next.len() as u64, Ordering::Relaxed);
            next
        })
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        self.inner.write_batch(ops)?;
        let bytes: u64 = ops.iter().map(|op| op.data.len() as u64).sum();
        self.write_batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(ops.len() as u64, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn grow(&self, min_len_bytes: u64) -> io::Result<u64> {
        self.inner.grow(min_len_bytes)
    }

    fn shrink(&self, len_bytes: u64) -> io::Result<u64> {
        self.inner.shrink(len_bytes)
    }

    fn max_len_bytes(&self) -> u64 {
        self.inner.max_len_bytes()
    }

    fn describe(&self) -> String {
        format!("counting({})", self.inner.describe())
    }

    fn path(&self) -> Option<&std::path::Path> {
        self.inner.path()
    }
}
