//! The read side shared by the writer and snapshot readers: the device, the buffer
//! pool, and verification of every block read from the device against the pointer that
//! led to it (address, generation, crc — design.md §3, §10.12).

use arbor_format::{header, overflow, BlockKind, ChildPtr, Node, OverflowRef};

use crate::addr_map::AddrMap;
use crate::error::corrupt;
use crate::io::{dev_error, AlignedBuf, BlockDevice, ReadBuf, ReadOp, StreamRead};
use crate::mvcc::SlotTable;
use crate::store::pool::{BufferPool, Loading, Pin};
use crate::sync::{lock, Arc, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::{Error, Result};

/// Counters reported by `Db::stats` (relaxed: they are statistics, not synchronisation).
#[derive(Default)]
pub(crate) struct IoCounters {
    pub block_reads: AtomicU64,
    pub blocks_written: AtomicU64,
    /// Of those, written back early (before their generation's write-out).
    pub blocks_written_early: AtomicU64,
    pub flushes: AtomicU64,
    /// Checkpoints whose superblock flush completed since open.
    pub checkpoints: AtomicU64,
}

pub(crate) struct Store {
    pub dev: Box<dyn BlockDevice>,
    /// Images of a frozen generation whose writes have not completed yet.
    in_flight: Mutex<AddrMap<Arc<AlignedBuf>>>,
    /// `in_flight.len()`, published with Release after every change, so reads skip the lock
    /// when nothing is in flight (the common case for readers).
    in_flight_len: AtomicUsize,
    pub block_bytes: u32,
    /// Memory alignment for O_DIRECT buffers: max(block size, logical sector).
    pub align: usize,
    /// Clean block images (design.md §12).
    pub pool: BufferPool,
    pub counters: IoCounters,
    /// Blocks snapshot readers must take from memory (see `mvcc::table`).
    pub table: SlotTable,
    /// Crcs of the open generation's blocks written back early and unchanged since (see
    /// `writeback`). Until the freeze seals them, the pointers to these blocks are
    /// crc-pending, and a snapshot reads them from the cache or the device: it checks them
    /// against this crc, else after a lost write of a block's latest write-back the older
    /// image of the same address and generation (an earlier write-back) would pass as
    /// current data.
    written_back: Mutex<AddrMap<(u64, u32)>>,
    /// The first block a tree may use: after the superblock area and the journal region
    /// (set once the superblock is read; pointers below it are corrupt).
    first_data: AtomicU64,
}

impl Store {
    pub(crate) fn new(dev: Box<dyn BlockDevice>, block_bytes: u32, cache_bytes: u64) -> Store {
        let align = (block_bytes as usize).max(dev.sector_bytes() as usize);
        let pool =
            BufferPool::new(block_bytes, cache_bytes, dev.len_bytes() / u64::from(block_bytes));
        Store {
            dev,
            in_flight: Mutex::new(AddrMap::default()),
            in_flight_len: AtomicUsize::new(0),
            block_bytes,
            align,
            pool,
            counters: IoCounters::default(),
            table: SlotTable::default(),
            written_back: Mutex::new(AddrMap::default()),
            first_data: AtomicU64::new(arbor_format::constants::first_data_block(block_bytes)),
        }
    }

    /// Sets the first block trees may use: the end of the journal region.
    pub(crate) fn set_first_data(&self, block: u64) {
        self.first_data.store(block, Ordering::Relaxed);
    }

    pub(crate) fn first_data(&self) -> u64 {
        self.first_data.load(Ordering::Relaxed)
    }

    /// Records (address, generation, crc) of blocks just written back early.
    pub(crate) fn note_written_back(&self, blocks: impl Iterator<Item = (u64, u64, u32)>) {
        lock(&self.written_back).extend(blocks.map(|(addr, gen, crc)| (addr, (gen, crc))));
    }

    /// The block at `addr` is about to change in memory, or is freed.
    pub(crate) fn forget_written_back(&self, addr: u64) {
        lock(&self.written_back).remove(&addr);
    }

    /// The open generation froze: its pointers carry their children's crcs from now on.
    pub(crate) fn clear_written_back(&self) {
        lock(&self.written_back).clear();
    }

    /// `ptr` with the crc of its block filled in, if it is crc-pending and names a block
    /// written back early (see `written_back`).
    pub(crate) fn with_written_back_crc(&self, ptr: ChildPtr) -> ChildPtr {
        if !ptr.is_crc_pending() {
            return ptr;
        }
        match lock(&self.written_back).get(&ptr.address()) {
            Some(&(gen, crc)) if gen == ptr.generation() => ChildPtr::new(ptr.address(), gen, crc),
            _ => ptr,
        }
    }

    /// Blocks the device holds now.
    pub(crate) fn block_count(&self) -> u64 {
        self.dev.len_bytes() / u64::from(self.block_bytes)
    }

    pub(crate) fn block_offset(&self, addr: u64) -> u64 {
        addr * u64::from(self.block_bytes)
    }

    pub(crate) fn new_block(&self) -> AlignedBuf {
        AlignedBuf::zeroed(self.block_bytes as usize, self.align)
    }

    /// Reads the block `ptr` names, from memory or the device. A device read is verified
    /// against the pointer before it enters the pool: its own header (magic, version, self
    /// crc, address), the generation, and the crc the parent recorded — unless the parent
    /// marked that crc not yet valid (§10.12), when the self-checks stand alone.
    #[inline]
    pub(crate) fn read_block(&self, ptr: ChildPtr) -> Result<Block<'_>> {
        if let Some(block) = self.hit(ptr) {
            return Ok(block);
        }
        let loaded = self.pool.load(ptr.address(), |frame| {
            self.read_into(ptr.address(), frame)?;
            verify_read(frame, ptr)
        })?;
        if let Some(pin) = loaded {
            if header_generation(&pin) == Some(ptr.generation()) {
                return Ok(Block::Pinned(pin));
            }
        }
        // The frame is unusable (another identity pinned in it, or no room): read around it.
        let buf = self.read_uncached(ptr)?;
        Ok(Block::Image(Arc::new(buf)))
    }

    /// As `read_block`, but never waits for another thread's load of the block's frame
    /// (it reads around the pool instead): for a streamed read, which holds frames of its
    /// own in loading (`stream_blocks`).
    pub(crate) fn read_block_now(&self, ptr: ChildPtr) -> Result<Block<'_>> {
        match self.hit(ptr) {
            Some(block) => Ok(block),
            None => Ok(Block::Image(Arc::new(self.read_uncached(ptr)?))),
        }
    }

    /// The image of `ptr` if it is in flight or resident (and of `ptr`'s generation), without
    /// I/O and without waiting: a frame another thread is loading is `None` (the caller
    /// reads, or waits in `BufferPool::load`). A resident frame of another generation is
    /// discarded: its address was reused.
    #[inline]
    pub(crate) fn hit(&self, ptr: ChildPtr) -> Option<Block<'_>> {
        let addr = ptr.address();
        if self.in_flight_len.load(Ordering::Acquire) > 0 {
            if let Some(buf) = lock(&self.in_flight).get(&addr).cloned() {
                // The cache is keyed by address; an address names one block identity at a
                // time, but a stale pointer must not be served another identity's image.
                return (header_generation(&buf) == Some(ptr.generation()))
                    .then_some(Block::Image(buf));
            }
        }
        let pin = self.pool.pin_now(addr)?;
        if header_generation(&pin) == Some(ptr.generation()) {
            return Some(Block::Pinned(pin));
        }
        drop(pin);
        self.pool.discard(addr);
        None
    }

    /// Registers a frozen generation's images as the source for reads of their addresses
    /// until `end_in_flight`.
    pub(crate) fn start_in_flight(&self, blocks: &[(u64, Arc<AlignedBuf>)]) {
        let mut map = lock(&self.in_flight);
        for (addr, buf) in blocks {
            debug_assert_eq!(buf.len(), self.block_bytes as usize, "in-flight image of {addr}");
            let old = map.insert(*addr, Arc::clone(buf));
            // One write in flight per address (design.md §10.14).
            assert!(old.is_none(), "block {addr} is already being written");
        }
        self.in_flight_len.store(map.len(), Ordering::Release);
    }

    /// Blocks of a frozen generation (ascending) whose writes completed: their images go
    /// into the pool, a run of addresses at a time, each run's frames populated in bulk
    /// first (`BufferPool::populate`). Runs bound the memory populated ahead of the installs:
    /// under a small `cache_bytes` the installs evict as they go, and populating a whole
    /// large generation first would hold all of it at once. The blocks stay in flight —
    /// reads are served their images — until [`Store::end_in_flight`], so a checkpoint may
    /// install blocks before its flush and, if the flush fails, no read of them goes to a
    /// device that may not hold them.
    pub(crate) fn install_written(&self, blocks: &[(u64, Arc<AlignedBuf>)]) {
        /// Addresses per run (2 MiB of 4 KiB frames).
        const RUN: usize = 512;
        for run in blocks.chunks(RUN) {
            let addrs: Vec<u64> = run.iter().map(|(addr, _)| *addr).collect();
            self.pool.populate(&addrs);
            for (addr, buf) in run {
                self.pool.install(*addr, buf);
            }
        }
    }

    /// The checkpoint of these blocks is durable and `install_written` installed them: reads
    /// go to the pool from now on.
    pub(crate) fn end_in_flight(&self, addrs: impl Iterator<Item = u64>) {
        let mut map = lock(&self.in_flight);
        for addr in addrs {
            map.remove(&addr);
        }
        self.in_flight_len.store(map.len(), Ordering::Release);
    }

    /// Reads block `addr` from the device into `buf` (one block), counting it.
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.check_in_range(addr, 1)?;
        self.read_ops(&mut [ReadOp { offset: self.block_offset(addr), buf }], 1)
    }

    /// Reads `ops` in one device batch and counts the `blocks` they hold: every device read
    /// of the block read path goes through here.
    fn read_ops(&self, ops: &mut [ReadOp<'_>], blocks: u64) -> Result<()> {
        if !ops.is_empty() {
            self.dev.read_batch(ops).map_err(dev_error(&*self.dev, "read"))?;
        }
        self.counters.block_reads.fetch_add(blocks, Ordering::Relaxed);
        Ok(())
    }

    /// As `read_block`, bypassing and not filling the pool (recovery and `check`).
    pub(crate) fn read_uncached(&self, ptr: ChildPtr) -> Result<AlignedBuf> {
        let mut buf = self.new_block();
        self.read_into(ptr.address(), &mut buf)?;
        verify_read(&buf, ptr)?;
        Ok(buf)
    }

    /// Reads blocks as their turn comes (design.md §12.6): every block of `first` is read,
    /// all at once, and each is verified and handed to `arrived` with its tag as soon as its
    /// read completes (urgent ones before the others that complete with them); the blocks
    /// `arrived` returns are read at once too, while the others are still in flight. The
    /// caller passes blocks it found neither resident nor in flight (`hit`). A read lands in
    /// the block's pool frame when the frame can be claimed as the read starts (it is lent
    /// to the read and published when the block has been verified), else in a buffer of its
    /// own that becomes a private image. The first error (the device's, a block's
    /// verification, or `arrived`'s) is returned once the reads in flight have completed; no
    /// block is handed over after it.
    pub(crate) fn stream_blocks<'s>(
        &'s self,
        first: Vec<Wanted>,
        arrived: &mut dyn FnMut(usize, Block<'s>) -> Result<Vec<Wanted>>,
    ) -> Result<()> {
        // The blocks by stream tag, and the frame claimed for each (if it could be).
        let mut wanted: Vec<(Wanted, Option<Loading<'s>>)> = Vec::new();
        let mut failed: Option<Error> = None;
        let start = |reads: &mut Vec<StreamRead>, wanted: &mut Vec<_>, w: Wanted| {
            let addr = w.ptr.address();
            self.check_in_range(addr, 1)?;
            // Straight into the block's frame when it can be claimed (single flight: other
            // readers of the block wait for this load), else into a buffer of its own.
            let mut loading = self.pool.start_load(addr);
            let buf: Box<dyn ReadBuf> = match &mut loading {
                Some(loading) => Box::new(loading.lend()),
                None => Box::new(self.new_block()),
            };
            let (offset, tag) = (self.block_offset(addr), wanted.len());
            reads.push(StreamRead { offset, buf, tag, urgent: w.urgent });
            wanted.push((w, loading));
            Ok::<(), Error>(())
        };
        let mut reads = Vec::with_capacity(first.len());
        for w in first {
            start(&mut reads, &mut wanted, w)?;
        }
        let streamed = self.dev.read_stream(reads, &mut |mut read| {
            self.counters.block_reads.fetch_add(1, Ordering::Relaxed);
            let (Wanted { ptr, tag, .. }, loading) = &mut wanted[read.tag];
            let (ptr, tag, loading) = (*ptr, *tag, loading.take());
            let verified = verify_read(read.buf.bytes(), ptr);
            // The buffer back: a lent frame is dropped here, before its load ends.
            let own = read.buf.into_aligned();
            let mut reads = Vec::new();
            if failed.is_some() {
                return reads;
            }
            let block = verified.map(|()| match (loading, own) {
                (Some(loading), _) => Block::Pinned(loading.finish()),
                (None, Some(buf)) => Block::Image(Arc::new(buf)),
                (None, None) => unreachable!("a lent frame without its load"),
            });
            let next = block.and_then(|block| arrived(tag, block)).and_then(|next| {
                next.into_iter().try_for_each(|w| start(&mut reads, &mut wanted, w))
            });
            if let Err(e) = next {
                failed = Some(e);
                return Vec::new();
            }
            reads
        });
        streamed.map_err(dev_error(&*self.dev, "read"))?;
        failed.map_or(Ok(()), Err)
    }

    /// Reads and verifies an overflow extent, returning the value bytes.
    pub(crate) fn read_overflow(&self, r: &OverflowRef) -> Result<Vec<u8>> {
        let mut values = self.read_overflows(std::slice::from_ref(r))?;
        Ok(values.pop().expect("one value per extent"))
    }

    /// `read_overflow` of every extent, in one device batch.
    pub(crate) fn read_overflows(&self, refs: &[OverflowRef]) -> Result<Vec<Vec<u8>>> {
        let extents: Vec<(u64, u64)> =
            refs.iter().map(|r| (r.address(), u64::from(r.block_count()))).collect();
        let bufs = self.read_extents(&extents)?;
        let values = refs.iter().zip(&bufs).map(|(r, buf)| {
            let addr = r.address();
            let value = overflow::overflow_read(buf, r, addr).map_err(|e| corrupt(addr, e))?;
            debug_assert_eq!(value.len() as u64, r.value_len(), "overflow value of {addr}");
            Ok(value.to_vec())
        });
        values.collect()
    }

    /// Reads every `(first block, block count)` extent in one device batch, each checked
    /// to lie inside the store first; counts the blocks read. Verifying them is the caller's.
    fn read_extents(&self, extents: &[(u64, u64)]) -> Result<Vec<AlignedBuf>> {
        let mut bufs = Vec::with_capacity(extents.len());
        for &(addr, blocks) in extents {
            self.check_in_range(addr, blocks)?;
            let len = usize::try_from(blocks * u64::from(self.block_bytes))
                .map_err(|_| Error::corrupt(addr, "extent larger than memory"))?;
            bufs.push(AlignedBuf::zeroed(len, self.align));
        }
        let mut ops: Vec<ReadOp<'_>> = extents
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&(addr, _), buf)| ReadOp { offset: self.block_offset(addr), buf })
            .collect();
        self.read_ops(&mut ops, extents.iter().map(|&(_, n)| n).sum())?;
        drop(ops);
        Ok(bufs)
    }

    fn check_in_range(&self, addr: u64, count: u64) -> Result<()> {
        let first = self.first_data();
        let end =
            addr.checked_add(count).ok_or_else(|| Error::corrupt(addr, "address overflow"))?;
        let limit = self.dev.len_bytes() / u64::from(self.block_bytes);
        if addr < first || end > limit || count == 0 {
            return Err(Error::corrupt(addr, format!("address outside the store (0..{limit})")));
        }
        Ok(())
    }
}

/// A block a streamed read wants (`Store::stream_blocks`): its pointer, the caller's tag,
/// and whether its completion is handled before others' (it leads to further reads).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted {
    pub ptr: ChildPtr,
    pub tag: usize,
    pub urgent: bool,
}

/// A verified block image: pinned in the pool, or a shared image (in flight, or read
/// around the pool).
pub(crate) enum Block<'a> {
    Pinned(Pin<'a>),
    Image(Arc<AlignedBuf>),
}

impl Block<'_> {
    /// An owned image of the block (a copy if it is pinned in the pool).
    pub(crate) fn into_image(self, align: usize) -> Arc<AlignedBuf> {
        match self {
            Block::Pinned(pin) => Arc::new(AlignedBuf::from_slice(&pin, align)),
            Block::Image(buf) => buf,
        }
    }
}

impl std::ops::Deref for Block<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Block::Pinned(pin) => pin,
            Block::Image(buf) => buf,
        }
    }
}

/// Verifies a block just read from the device against the pointer that names it; tree
/// nodes are validated in full once, here, and later accesses trust the image.
fn verify_read(buf: &[u8], ptr: ChildPtr) -> Result<()> {
    let addr = ptr.address();
    verify_against(buf, ptr)?;
    let kind = header::parse_header(buf).and_then(|h| h.kind()).map_err(|e| corrupt(addr, e))?;
    if matches!(kind, BlockKind::Leaf | BlockKind::Internal) {
        Node::decode(buf).map_err(|e| corrupt(addr, e))?;
    }
    Ok(())
}

/// Verifies a block image against the pointer that names it.
pub(crate) fn verify_against(buf: &[u8], ptr: ChildPtr) -> Result<()> {
    let addr = ptr.address();
    let hdr = header::verify_block(buf, addr).map_err(|e| corrupt(addr, e))?;
    if hdr.generation() != ptr.generation() {
        return Err(Error::corrupt(
            addr,
            format!(
                "generation {} where the parent expects {}",
                hdr.generation(),
                ptr.generation()
            ),
        ));
    }
    if !ptr.is_crc_pending() && hdr.crc() != ptr.crc() {
        return Err(Error::corrupt(
            addr,
            format!("crc {:#010x} where the parent expects {:#010x}", hdr.crc(), ptr.crc()),
        ));
    }
    Ok(())
}

/// The generation field of a block image already verified when it entered memory (no crc).
pub(crate) fn header_generation(buf: &[u8]) -> Option<u64> {
    let bytes = buf.get(..arbor_format::constants::HEADER_BYTES)?;
    let hdr: &arbor_format::BlockHeader = bytemuck::try_from_bytes(bytes).ok()?;
    Some(hdr.generation())
}
