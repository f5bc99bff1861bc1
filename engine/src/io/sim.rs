//! `SimDevice`: an in-memory device for crash and fault testing, deterministic from a seed.
//!
//! The model: a write completes at once and is visible to later reads, but it is
//! *durable* only once a later `flush` succeeds. Until then it is pending, and a crash keeps
//! any subset of the pending writes — decided per sector with a seeded generator, so a
//! pending write may survive whole, vanish, or tear at sector boundaries; each sector is
//! wholly old or wholly new. This stands for a device that completes writes out of order
//! and caches them volatile until a flush.
//!
//! Faults, all deterministic: bits flipped at rest, EIO on chosen byte ranges, an EIO
//! countdown for writes and flushes, a failed next flush, one misdirected write, random
//! faults drawn per operation from their own seeded generator ([`RandomFaults`]: read EIO,
//! lost writes, misdirected writes), and a power cut at a chosen device operation (the
//! crash image is taken at that exact point while the device carries on, so a test can
//! cut power in the middle of a commit without the engine seeing an error).
//!
//! Every fault that changes stored bytes behind the engine's back (a flipped bit, a lost
//! write, a misdirected write) records the byte ranges it touched ([`SimDevice::damage`]),
//! and crash images inherit that record: a test can tell an `Error::Corrupt` the faults
//! explain from one they do not.
//!
//! Storage is sparse: pages of `max(4096, sector)` bytes in hash maps, so a 1 GiB simulated
//! device costs what was written (twice for pages written since the last flush).

use std::collections::HashMap;
use std::io;
use std::ops::Range;

use super::args::{check_reads, check_writes};
use super::{BlockDevice, ReadOp, WriteOp};
use crate::sync::{self, Arc, Mutex};

const PAGE_BYTES_MIN: usize = 4096;

/// In-memory simulated device. `Clone` shares the same image (and faults and counters).
#[derive(Clone)]
pub struct SimDevice {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::BlockDevice;
        f.debug_struct("SimDevice").field("device", &self.describe()).finish()
    }
}

struct Inner {
    len_bytes: u64,
    sector_bytes: u32,
    page_bytes: usize,
    state: Mutex<State>,
}

type Pages = HashMap<u64, Box<[u8]>>;

#[derive(Default)]
struct State {
    /// Contents as of the last successful flush.
    durable: Pages,
    /// Latest contents of every page written since the last flush.
    overlay: Pages,
    /// Writes since the last flush, in completion order: what a crash may keep or lose.
    pending: Vec<(u64, Vec<u8>)>,
    rng: SplitMix64,
    faults: Faults,
    /// Byte ranges whose stored contents a fault changed (never shrinks; crash images
    /// inherit it).
    damage: Vec<Range<u64>>,
    /// The crash image taken by an armed power cut, until `take_power_cut`.
    cut: Option<SimDevice>,
    injected: FaultCounts,
    flush_count: u64,
    write_count: u64,
    bytes_written: u64,
}

#[derive(Default)]
struct Faults {
    read_ranges: Vec<Range<u64>>,
    write_ranges: Vec<Range<u64>>,
    /// Write ops and flushes still allowed before every later one fails.
    ops_left: Option<u64>,
    misdirect_to: Option<u64>,
    fail_next_flush: bool,
    /// Write ops and flushes before the power cut (see `power_cut_after`).
    cut_after: Option<u64>,
    random: RandomFaults,
    /// Random faults are switched off for now, their generator left where it is.
    random_paused: bool,
    /// Draws the random faults; apart from the crash generator, so switching faults on
    /// does not change which sectors a crash keeps.
    random_rng: SplitMix64,
}

impl Faults {
    fn active_random(&self) -> RandomFaults {
        if self.random_paused {
            RandomFaults::default()
        } else {
            self.random
        }
    }
}

/// Faults drawn at random per device operation, each rate in parts per million of the ops
/// of its kind (each `ReadOp` / `WriteOp` of a batch counts one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandomFaults {
    /// A read op fails with EIO (the data is intact; a retry may succeed).
    pub read_eio_ppm: u32,
    /// A write op reports success but stores nothing (the old contents stay).
    pub write_lost_ppm: u32,
    /// A write op reports success but lands at another, random, page-aligned offset.
    pub write_misdirected_ppm: u32,
}

/// How many faults the device injected since it was created (or since the crash that
/// made it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub read_errors: u64,
    pub write_errors: u64,
    pub flush_errors: u64,
    pub lost_writes: u64,
    pub misdirected_writes: u64,
    pub bit_flips: u64,
}

/// A small, seedable, portable generator (splitmix64), so crash images are reproducible.
/// Public so tests and examples that drive the simulated device share one generator.
#[derive(Default, Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for tests (`n` = 0 is treated as 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Injected failures are plain `EIO` (`raw_os_error() == Some(libc::EIO)`), as a device
/// would return them.
fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn overlaps(ranges: &[Range<u64>], offset: u64, len: usize) -> bool {
    let end = offset + len as u64;
    len > 0 && ranges.iter().any(|r| r.start < end && offset < r.end)
}

impl Inner {
    fn read_into(&self, pages: &[&Pages], offset: u64, out: &mut [u8]) {
        let page = self.page_bytes as u64;
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let (index, within) = (at / page, (at % page) as usize);
            let n = (self.page_bytes - within).min(out.len() - done);
            let src = pages.iter().find_map(|p| p.get(&index));
            match src {
                Some(bytes) => out[done..done + n].copy_from_slice(&bytes[within..within + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Writes `data` at `offset` into `target`, copying missing pages from `base` first.
    fn write_into(&self, target: &mut Pages, base: Option<&Pages>, offset: u64, data: &[u8]) {
        let page = self.page_bytes as u64;
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / page, (at % page) as usize);
            let n = (self.page_bytes - within).min(data.len() - done);
            let bytes = target.entry(index).or_insert_with(|| {
                base.and_then(|b| b.get(&index))
                    .cloned()
                    .unwrap_or_else(|| vec![0u8; self.page_bytes].into_boxed_slice())
            });
            bytes[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }
}

impl SimDevice {
    /// A zero-filled device of `len_bytes` (a multiple of `sector_bytes`, a power of two
    /// from 512 to 64 KiB), its crash choices seeded by `seed`.
    pub fn new(len_bytes: u64, sector_bytes: u32, seed: u64) -> SimDevice {
        SimDevice::with_pages(len_bytes, sector_bytes, seed, Pages::new(), Vec::new())
    }

    fn with_pages(
        len_bytes: u64,
        sector_bytes: u32,
        seed: u64,
        durable: Pages,
        damage: Vec<Range<u64>>,
    ) -> SimDevice {
        assert!(sector_bytes.is_power_of_two(), "sector size must be a power of two");
        assert!((512..=65536).contains(&sector_bytes), "sector size must be 512..=65536");
        assert_eq!(len_bytes % u64::from(sector_bytes), 0, "length must be whole sectors");
        let state = State { durable, damage, rng: SplitMix64(seed), ..State::default() };
        let inner = Inner {
            len_bytes,
            sector_bytes,
            page_bytes: (sector_bytes as usize).max(PAGE_BYTES_MIN),
            state: Mutex::new(state),
        };
        SimDevice { inner: Arc::new(inner) }
    }

    /// The device as found after power loss: every write covered by a completed flush, and
    /// for each later write, per sector, a seeded choice of its new or its previous bytes
    /// (replayed in completion order). Faults and counters start clean, the damage record
    /// carries over; `self` is unchanged.
    pub fn crash(&self) -> SimDevice {
        let mut st = sync::lock(&self.inner.state);
        self.crash_locked(&mut st)
    }

    fn crash_locked(&self, st: &mut State) -> SimDevice {
        let inner = &self.inner;
        let mut image = st.durable.clone();
        let sector = inner.sector_bytes as usize;
        let mut rng = SplitMix64(st.rng.next_u64());
        for (offset, data) in &st.pending {
            for (i, chunk) in data.chunks(sector).enumerate() {
                if rng.next_u64() & 1 == 1 {
                    let at = offset + (i * sector) as u64;
                    inner.write_into(&mut image, None, at, chunk);
                }
            }
        }
        let seed = st.rng.next_u64();
        let damage = st.damage.clone();
        SimDevice::with_pages(inner.len_bytes, inner.sector_bytes, seed, image, damage)
    }

    /// Arms a power cut: after `n_ops` more write ops and flushes, the crash image (as
    /// `crash` would make it) is taken just before the next one, and kept for
    /// [`SimDevice::take_power_cut`]. The device itself carries on as if nothing happened,
    /// so the engine sees no error; whatever it does after the cut is not in the image.
    pub fn power_cut_after(&self, n_ops: u64) {
        let mut st = sync::lock(&self.inner.state);
        st.faults.cut_after = Some(n_ops);
        st.cut = None;
    }

    /// The crash image an armed power cut took, if the cut has happened.
    pub fn take_power_cut(&self) -> Option<SimDevice> {
        sync::lock(&self.inner.state).cut.take()
    }

    /// Counts one write op or flush toward an armed power cut; takes the image at the cut.
    fn note_op_for_cut(&self, st: &mut State) {
        match st.faults.cut_after {
            Some(0) => {
                st.faults.cut_after = None;
                let image = self.crash_locked(st);
                st.cut = Some(image);
            }
            Some(n) => st.faults.cut_after = Some(n - 1),
            None => {}
        }
    }

    /// Flips bit `bit` (0..8) of the byte at `byte_offset`, at rest: in the durable image and
    /// in the latest contents.
    pub fn flip_bit(&self, byte_offset: u64, bit: u8) {
        assert!(byte_offset < self.inner.len_bytes && bit < 8, "flip_bit outside the device");
        let mut st = sync::lock(&self.inner.state);
        let st = &mut *st;
        st.damage.push(byte_offset..byte_offset + 1);
        st.injected.bit_flips += 1;
        let mut byte = [0u8];
        self.inner.read_into(&[&st.durable], byte_offset, &mut byte);
        byte[0] ^= 1 << bit;
        self.inner.write_into(&mut st.durable, None, byte_offset, &byte);
        let page = byte_offset / self.inner.page_bytes as u64;
        if st.overlay.contains_key(&page) {
            self.inner.read_into(&[&st.overlay], byte_offset, &mut byte);
            byte[0] ^= 1 << bit;
            self.inner.write_into(&mut st.overlay, None, byte_offset, &byte);
        }
    }

    /// Every read op overlapping `range` (bytes) fails with EIO from now on.
    pub fn fail_reads_at(&self, range: Range<u64>) {
        sync::lock(&self.inner.state).faults.read_ranges.push(range);
    }

    /// Every write op overlapping `range` (bytes) fails with EIO and writes nothing.
    pub fn fail_writes_at(&self, range: Range<u64>) {
        sync::lock(&self.inner.state).faults.write_ranges.push(range);
    }

    /// The next `n_ops` write ops (each `WriteOp` counts one) and flushes succeed; every
    /// later one fails with EIO and changes nothing.
    pub fn fail_after(&self, n_ops: u64) {
        sync::lock(&self.inner.state).faults.ops_left = Some(n_ops);
    }

    /// The next write op's data lands at `to_offset` instead of its own offset (which keeps
    /// its old contents); the write reports success. Bytes past the device end are lost.
    pub fn misdirect_next_write(&self, to_offset: u64) {
        assert_eq!(to_offset % u64::from(self.inner.sector_bytes), 0, "misaligned target");
        sync::lock(&self.inner.state).faults.misdirect_to = Some(to_offset);
    }

    /// The next flush fails with EIO (and makes nothing durable).
    pub fn fail_next_flush(&self) {
        sync::lock(&self.inner.state).faults.fail_next_flush = true;
    }

    /// Draws faults at random from now on (see [`RandomFaults`]), from a generator seeded
    /// with `seed`. `RandomFaults::default()` switches them off.
    pub fn set_random_faults(&self, faults: RandomFaults, seed: u64) {
        let mut st = sync::lock(&self.inner.state);
        st.faults.random = faults;
        st.faults.random_rng = SplitMix64(seed);
    }

    /// Pauses (or resumes) the random faults without touching their generator, so a test
    /// can read without faults and then carry on exactly as if it had not.
    pub fn pause_random_faults(&self, paused: bool) {
        sync::lock(&self.inner.state).faults.random_paused = paused;
    }

    /// Byte ranges whose stored contents a fault changed: flipped bits, lost writes (the
    /// range that kept its old contents), misdirected writes (both the range that kept its
    /// old contents and the range overwritten). Inherited by crash images; never shrinks.
    pub fn damage(&self) -> Vec<Range<u64>> {
        sync::lock(&self.inner.state).damage.clone()
    }

    /// Faults injected so far (counters start clean in a crash image).
    pub fn fault_counts(&self) -> FaultCounts {
        sync::lock(&self.inner.state).injected
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        sync::lock(&self.inner.state).faults = Faults::default();
    }

    /// Successful flushes so far.
    pub fn flush_count(&self) -> u64 {
        sync::lock(&self.inner.state).flush_count
    }

    /// Successful write ops so far (each `WriteOp` of a batch counts one).
    pub fn write_count(&self) -> u64 {
        sync::lock(&self.inner.state).write_count
    }

    /// Bytes written by successful write ops so far.
    pub fn bytes_written(&self) -> u64 {
        sync::lock(&self.inner.state).bytes_written
    }

    /// Write ops not yet covered by a flush (what a crash may lose).
    pub fn pending_write_count(&self) -> usize {
        sync::lock(&self.inner.state).pending.len()
    }

    /// Takes one unit of the `fail_after` countdown; `Err` once it is exhausted.
    fn take_op(faults: &mut Faults) -> io::Result<()> {
        match &mut faults.ops_left {
            Some(0) => Err(eio()),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn write_one(&self, st: &mut State, op: &WriteOp<'_>) -> io::Result<()> {
        self.note_op_for_cut(st);
        if overlaps(&st.faults.write_ranges, op.offset, op.data.len()) {
            st.injected.write_errors += 1;
            return Err(eio());
        }
        if let Err(e) = SimDevice::take_op(&mut st.faults) {
            st.injected.write_errors += 1;
            return Err(e);
        }
        st.write_count += 1;
        st.bytes_written += op.data.len() as u64;
        let mut offset = op.offset;
        let mut data = op.data;
        let len = op.data.len() as u64;
        let random = st.faults.active_random();
        if random_hit(&mut st.faults.random_rng, random.write_lost_ppm) && len > 0 {
            st.injected.lost_writes += 1;
            st.damage.push(op.offset..op.offset + len);
            return Ok(());
        }
        let mut to = st.faults.misdirect_to.take();
        if to.is_none() && random_hit(&mut st.faults.random_rng, random.write_misdirected_ppm) {
            let pages = self.inner.len_bytes / self.inner.page_bytes as u64;
            to = Some(st.faults.random_rng.below(pages) * self.inner.page_bytes as u64);
        }
        if let Some(to) = to {
            offset = to;
            let room = self.inner.len_bytes.saturating_sub(to);
            data = &data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
            st.injected.misdirected_writes += 1;
            st.damage.push(op.offset..op.offset + len);
            st.damage.push(to..to + data.len() as u64);
        }
        if data.is_empty() {
            return Ok(());
        }
        let (overlay, durable) = (&mut st.overlay, &st.durable);
        self.inner.write_into(overlay, Some(durable), offset, data);
        st.pending.push((offset, data.to_vec()));
        Ok(())
    }
}

/// True with probability `ppm` / 1,000,000; draws nothing when `ppm` is 0, so a device
/// without random faults consumes no numbers.
fn random_hit(rng: &mut SplitMix64, ppm: u32) -> bool {
    ppm > 0 && rng.below(1_000_000) < u64::from(ppm)
}

impl BlockDevice for SimDevice {
    fn sector_bytes(&self) -> u32 {
        self.inner.sector_bytes
    }

    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes
    }

    fn read_batch(&self, ops: &mut [ReadOp<'_>]) -> io::Result<()> {
        check_reads(ops, self.inner.sector_bytes, self.inner.len_bytes)?;
        let mut st = sync::lock(&self.inner.state);
        let st = &mut *st;
        let mut first_error = None;
        for op in ops.iter_mut() {
            let ppm = st.faults.active_random().read_eio_ppm;
            if overlaps(&st.faults.read_ranges, op.offset, op.buf.len())
                || random_hit(&mut st.faults.random_rng, ppm)
            {
                st.injected.read_errors += 1;
                first_error.get_or_insert_with(eio);
                continue;
            }
            self.inner.read_into(&[&st.overlay, &st.durable], op.offset, op.buf);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn write_batch(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        check_writes(ops, self.inner.sector_bytes, self.inner.len_bytes)?;
        let mut st = sync::lock(&self.inner.state);
        let mut first_error = None;
        for op in ops {
            if let Err(e) = self.write_one(&mut st, op) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn flush(&self) -> io::Result<()> {
        let mut st = sync::lock(&self.inner.state);
        self.note_op_for_cut(&mut st);
        let failed = std::mem::take(&mut st.faults.fail_next_flush);
        if failed || SimDevice::take_op(&mut st.faults).is_err() {
            st.injected.flush_errors += 1;
            return Err(eio());
        }
        let overlay = std::mem::take(&mut st.overlay);
        st.durable.extend(overlay);
        st.pending.clear();
        st.flush_count += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "simulated device ({} bytes, sector {})",
            self.inner.len_bytes, self.inner.sector_bytes
        )
    }
}
