//! The workloads, run in order against one engine on a fresh store (inside that engine's own
//! child process, so its peak RSS is its own).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::data::{Dataset, Key, Op, Sizes};
use crate::engines::{store_bytes, Engine, Writes};
use crate::progress::{self, CHUNK};
use crate::rows::{Cell, RunResult};
use crate::suite::{io_read_bytes, io_write_bytes, rss_bytes};
use crate::BenchResult;

/// One engine's run: the engine, its store path, and the cells so far.
pub struct Run<'a> {
    pub name: &'a str,
    pub engine: &'a mut dyn Engine,
    pub store: &'a Path,
    pub sizes: &'a Sizes,
    pub cfg: &'a Config,
    pub data: &'a Dataset,
    pub out: RunResult,
}

fn rate(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64().max(1e-9)
}

fn percentile(sorted: &[Duration], pct: usize) -> f64 {
    let i = (sorted.len() * pct / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, Duration::as_secs_f64)
}

fn timed<T>(f: impl FnOnce() -> BenchResult<T>) -> BenchResult<(Duration, T)> {
    let t0 = Instant::now();
    f().map(|v| (t0.elapsed(), v))
}

/// Checks a count the workload can predict exactly.
fn expect(what: &str, got: u64, want: u64) -> BenchResult<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got}, expected {want}"))
    }
}

/// The store's `(apparent, allocated)` bytes for the size rows: a file's (or directory's)
/// size and disk blocks; on a raw block device, which has no file size, the bytes the engine
/// has in use, for both; `None` (n/a) when the engine cannot say.
fn footprint(store: &Path, engine: &dyn Engine) -> BenchResult<Option<(u64, u64)>> {
    match store_bytes(store)? {
        Some(bytes) => Ok(Some(bytes)),
        None => Ok(engine.used_bytes().map(|used| (used, used))),
    }
}

/// The cell of a size row whose store may have no measurable size.
const NA_BLOCK_DEVICE: &str = "n/a on a block device";

fn size_cell(r: BenchResult<Option<f64>>) -> Cell {
    match r {
        Ok(Some(bytes)) => Cell::Value(bytes),
        Ok(None) => Cell::Na(NA_BLOCK_DEVICE.into()),
        Err(e) => Cell::Error(e),
    }
}

/// The rows of the durable-writes workload.
const DURABLE_ROWS: [&str; 6] = [
    "durable_single",
    "durable_p50",
    "durable_p99",
    "durable_blocks",
    "durable_bytes",
    "durable_io_bytes",
];

/// The rows of the cold-read workload: reads on a store just closed and reopened.
pub const COLD_ROWS: [&str; 3] = ["cold_get_1t", "cold_get_many", "cold_get_nt"];

/// The device's own random-read limits, measured on the engine's store while it is closed
/// (only by an engine that reads with O_DIRECT, Arbor: the other columns have no cell).
pub const DEVICE_ROWS: [&str; 2] = ["device_qd1_iops", "device_qd32_iops"];

/// Empties the kernel's page cache: `sync`, then `1` into /proc/sys/vm/drop_caches (root
/// only; it drops every clean cached page of the machine, not only the store's).
fn drop_page_cache() -> BenchResult<()> {
    // SAFETY: sync(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "1")
        .map_err(|e| format!("cannot drop the page cache: /proc/sys/vm/drop_caches: {e}"))
}

/// Where a write-count window starts or ends: the engine's own count (or why it has none)
/// and the process's `write_bytes`.
struct WriteMark {
    own: Result<Writes, String>,
    io: Option<u64>,
}

impl WriteMark {
    fn now(engine: &dyn Engine) -> WriteMark {
        WriteMark { own: engine.writes(), io: io_write_bytes() }
    }
}

/// The `durable_io_bytes` cell: `write_bytes` per commit, n/a where it cannot be trusted:
/// no /proc/self/io, no change at all (a store on tmpfs), or less than the engine's own
/// count (writes the kernel did not attribute to the process).
fn io_cell(before: &WriteMark, after: &WriteMark, own: Option<Writes>, commits: usize) -> Cell {
    let Some(io) = before.io.zip(after.io).map(|(b, a)| a.saturating_sub(b)) else {
        return Cell::Na("n/a (no /proc/self/io)".into());
    };
    if io == 0 {
        return Cell::Na("n/a (write_bytes unchanged: tmpfs?)".into());
    }
    if own.is_some_and(|w| io < w.bytes) {
        return Cell::Na("n/a (write_bytes below own count)".into());
    }
    Cell::Value(io as f64 / commits as f64)
}

impl Run<'_> {
    /// Runs every workload; the order matters (reads see the loaded keys, removals come last).
    pub fn all(mut self) -> RunResult {
        if matches!(store_bytes(self.store), Ok(None)) && self.engine.used_bytes().is_some() {
            self.out.notes.push(format!(
                "{}: on a raw block device, so the size and growth rows count the space it has \
                 in use (blocks in use x block size), not a file size",
                self.name
            ));
        }
        let cfg = self.cfg;
        self.bulk_load();
        if cfg.wants(&["size_after_load", "disk_after_load"]) {
            self.sizes("size_after_load", Some("disk_after_load"));
        }
        if cfg.wants(&DURABLE_ROWS) {
            self.durable_single();
        }
        if cfg.wants(&["batch"]) {
            self.batch();
        }
        if cfg.wants(&["reads_1t", "reads_2t", "reads_scaling", "reads_nt"]) {
            self.reads();
        }
        if cfg.wants(&["range_reads"]) {
            self.range_reads();
        }
        if cfg.wants(&["ycsb_a", "ycsb_b"]) {
            self.ycsb();
        }
        if cfg.wants(&["commits_1w", "commits_nw", "commits_scaling"]) {
            self.concurrent_commits();
        }
        if cfg.wants(&["growth_free", "growth_held"]) {
            self.long_reader();
        }
        if cfg.wants(&["removals"]) {
            self.removals();
        }
        if cfg.wants(&["size_at_end"]) {
            self.sizes("size_at_end", None);
        }
        if let Some(n) = self.engine.note() {
            self.out.notes.push(format!("{}: at end, {n}", self.name));
        }
        // Last: each cold row closes and reopens the store, which would leave the rows after
        // it a cold cache. Its keys are in the half of the load the removals keep.
        if cfg.wants(&COLD_ROWS) {
            self.cold_reads();
        }
        if cfg.wants(&DEVICE_ROWS) && !self.engine.page_cache() {
            self.device_rows();
        }
        self.out
    }

    fn push(&mut self, id: &str, r: BenchResult<f64>) {
        self.out.push(id, Cell::from_result(r));
    }

    fn bulk_load(&mut self) {
        let pb = progress::spinner(self.name, "bulk load");
        let d = self.data;
        let r = timed(|| self.engine.insert_txn(&d.load_keys, &d.load_values));
        pb.finish_and_clear();
        self.push("bulk_load", r.map(|(t, ())| rate(d.load_keys.len(), t)));
        if let Some(n) = self.engine.note() {
            self.out.notes.push(format!("{}: after load, {n}", self.name));
        }
        if let (Some(now), Some(peak)) = (rss_bytes("VmRSS:"), rss_bytes("VmHWM:")) {
            self.out.notes.push(format!(
                "{}: process RSS after load {:.0} MB, peak so far {:.0} MB (data set {:.0} MB)",
                self.name,
                now as f64 / 1e6,
                peak as f64 / 1e6,
                d.bytes() as f64 / 1e6
            ));
        }
    }

    fn sizes(&mut self, apparent_id: &str, allocated_id: Option<&str>) {
        let (apparent, allocated) = match footprint(self.store, self.engine) {
            Ok(Some((a, b))) => (Cell::Value(a as f64), Cell::Value(b as f64)),
            Ok(None) => (Cell::Na(NA_BLOCK_DEVICE.into()), Cell::Na(NA_BLOCK_DEVICE.into())),
            Err(e) => (Cell::Error(e.clone()), Cell::Error(e)),
        };
        self.out.push(apparent_id, apparent);
        if let Some(id) = allocated_id {
            self.out.push(id, allocated);
        }
    }

    /// Single-insert durable transactions, each timed; then the writes they caused.
    fn durable_single(&mut self) {
        let d = self.data;
        let before = self.engine.settle().map(|()| WriteMark::now(self.engine));
        let flushes_before = self.engine.flushes();
        let pb = progress::bar(self.name, "durable writes", d.single_keys.len() as u64);
        let mut lat = Vec::with_capacity(d.single_keys.len());
        let r = timed(|| {
            for (k, v) in d.single_keys.iter().zip(&d.single_values) {
                let t0 = Instant::now();
                self.engine.insert_txn(std::slice::from_ref(k), std::slice::from_ref(v))?;
                lat.push(t0.elapsed());
                pb.inc(1);
            }
            Ok(())
        });
        pb.finish_and_clear();
        lat.sort();
        let r = r.map_err(|e| format!("after {} commits: {e}", lat.len()));
        let before = before.and_then(|b| r.as_ref().map(|_| b).map_err(Clone::clone));
        self.push(
            "durable_single",
            r.as_ref().map(|(t, ())| rate(lat.len(), *t)).map_err(Clone::clone),
        );
        self.push("durable_p50", r.as_ref().map(|_| percentile(&lat, 50)).map_err(Clone::clone));
        self.push("durable_p99", r.map(|_| percentile(&lat, 99)));
        if let (Some(a), Some(b)) = (flushes_before, self.engine.flushes()) {
            self.out.notes.push(format!(
                "{}: {} device flushes for {} durable single-insert commits",
                self.name,
                b - a,
                d.single_keys.len()
            ));
        }
        self.write_rows(before, lat.len());
    }

    /// The write-count rows of the `commits` durable commits since `before` (or the error
    /// that ended them): the engine is settled first (untimed), so writes it deferred
    /// (Arbor's checkpoint) count too.
    fn write_rows(&mut self, before: BenchResult<WriteMark>, commits: usize) {
        let window =
            before.and_then(|b| self.engine.settle().map(|()| (WriteMark::now(self.engine), b)));
        let (after, before) = match window {
            Ok(marks) => marks,
            Err(e) => {
                for id in ["durable_blocks", "durable_bytes", "durable_io_bytes"] {
                    self.out.push(id, Cell::Error(e.clone()));
                }
                return;
            }
        };
        let per_commit = |x: u64| Cell::Value(x as f64 / commits.max(1) as f64);
        let (own, blocks, bytes) = match (&before.own, &after.own) {
            (Ok(b), Ok(a)) => {
                let w = a.since(*b);
                (Some(w), per_commit(w.blocks), per_commit(w.bytes))
            }
            (Err(why), _) | (_, Err(why)) => (None, Cell::Na(why.clone()), Cell::Na(why.clone())),
        };
        self.out.push("durable_blocks", blocks);
        self.out.push("durable_bytes", bytes);
        self.out.push("durable_io_bytes", io_cell(&before, &after, own, commits.max(1)));
        if let Some(w) = own.filter(|w| w.journal_batches + w.checkpoints > 0) {
            self.out.notes.push(format!(
                "{}: durable writes ({commits} commits, then a final settle): journal batches \
                 {}, journal records {}, checkpoints {}; written {} blocks = {} bytes by its own \
                 count, {} bytes by /proc/self/io write_bytes",
                self.name,
                w.journal_batches,
                w.journal_records,
                w.checkpoints,
                w.blocks,
                w.bytes,
                before.io.zip(after.io).map_or("n/a".into(), |(b, a)| (a - b).to_string()),
            ));
        }
    }

    fn batch(&mut self) {
        let (d, s) = (self.data, self.sizes);
        let pb = progress::bar(self.name, "batch writes", s.batches as u64);
        let r = timed(|| {
            for (ks, vs) in
                d.batch_keys.chunks(s.batch_size).zip(d.batch_values.chunks(s.batch_size))
            {
                self.engine.insert_txn(ks, vs)?;
                pb.inc(1);
            }
            Ok(())
        });
        pb.finish_and_clear();
        self.push("batch", r.map(|(t, ())| rate(d.batch_keys.len(), t)));
    }

    /// Point reads of `keys` in chunks (one read transaction each); returns value bytes.
    fn get_chunks(&self, keys: &[Key], pb: &indicatif::ProgressBar) -> BenchResult<u64> {
        let mut bytes = 0;
        for chunk in keys.chunks(CHUNK) {
            bytes += self.engine.get_many(chunk)?;
            pb.inc(chunk.len() as u64);
        }
        Ok(bytes)
    }

    /// Point reads of `keys` split over `--threads` threads, each in chunks (`get_chunks`);
    /// returns value bytes.
    fn get_threads(&self, keys: &[Key], pb: &indicatif::ProgressBar) -> BenchResult<u64> {
        self.get_on(self.sizes.threads, keys, pb)
    }

    /// `keys` split over `threads` threads, each reading its part with `get_chunks`.
    fn get_on(
        &self,
        threads: usize,
        keys: &[Key],
        pb: &indicatif::ProgressBar,
    ) -> BenchResult<u64> {
        let per_thread = keys.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> =
                keys.chunks(per_thread).map(|part| s.spawn(|| self.get_chunks(part, pb))).collect();
            let mut bytes = 0;
            for h in handles {
                bytes += h.join().map_err(|_| "reader thread panicked".to_string())??;
            }
            Ok(bytes)
        })
    }

    /// Warm random reads: one untimed pass over the read keys, then 1 thread, then 2 threads
    /// (how reads scale: the 2-thread target), then T threads.
    fn reads(&mut self) {
        let keys = &self.data.read_keys;
        let want = (keys.len() * self.cfg.value_size) as u64;
        let pb = progress::bar(self.name, "reads: warm-up", keys.len() as u64);
        let warm = self.get_chunks(keys, &pb);
        pb.finish_and_clear();
        let pb = progress::bar(self.name, "reads: 1 thread", keys.len() as u64);
        let r = warm.and_then(|_| timed(|| self.get_chunks(keys, &pb)));
        pb.finish_and_clear();
        let one = r.and_then(|(t, bytes)| {
            expect("value bytes read", bytes, want).map(|()| rate(keys.len(), t))
        });
        self.push("reads_1t", one.clone());

        if let Err(why) = self.engine.concurrent_reads() {
            for id in ["reads_2t", "reads_scaling", "reads_nt"] {
                self.out.push(id, Cell::Na(why.clone()));
            }
            return;
        }
        let on = |threads: usize| {
            let pb = progress::bar(self.name, "reads: threads", keys.len() as u64);
            let r = timed(|| self.get_on(threads, keys, &pb));
            pb.finish_and_clear();
            r.and_then(|(t, bytes)| {
                expect("value bytes read", bytes, want).map(|()| rate(keys.len(), t))
            })
        };
        let two = on(2);
        let many = on(self.sizes.threads);
        let scaling = match (&one, &two) {
            (Ok(a), Ok(b)) => Ok(b / a),
            _ => Err("needs both read rows".to_string()),
        };
        self.push("reads_2t", two);
        self.push("reads_scaling", scaling);
        self.push("reads_nt", many);
    }

    fn range_reads(&mut self) {
        let (d, s) = (self.data, self.sizes);
        let pb = progress::bar(self.name, "range reads", d.scan_starts.len() as u64);
        let r = timed(|| {
            let mut seen = 0;
            for chunk in d.scan_starts.chunks(CHUNK) {
                seen += self.engine.scan_many(chunk, s.scan_len)?;
                pb.inc(chunk.len() as u64);
            }
            Ok(seen)
        });
        pb.finish_and_clear();
        self.push(
            "range_reads",
            r.and_then(|(t, seen)| {
                // Scans that start near the end of the key space see fewer entries.
                let max = (d.scan_starts.len() * s.scan_len) as u64;
                if seen * 10 >= max * 9 && seen <= max {
                    Ok(rate(d.scan_starts.len(), t))
                } else {
                    Err(format!("visited {seen} entries, expected about {max}"))
                }
            }),
        );
    }

    /// YCSB A and B: each read in its own read transaction, each update a durable commit.
    fn ycsb(&mut self) {
        let d = self.data;
        for (id, ops) in [("ycsb_a", &d.ycsb_a), ("ycsb_b", &d.ycsb_b)] {
            let pb = progress::bar(self.name, id, ops.len() as u64);
            let r = timed(|| {
                for (i, op) in ops.iter().enumerate() {
                    match *op {
                        Op::Read(k) => {
                            let bytes = self
                                .engine
                                .get_many(std::slice::from_ref(&d.load_keys[k as usize]))?;
                            expect("YCSB read bytes", bytes, d.update_value.len() as u64)?;
                        }
                        Op::Update(k) => {
                            let key = std::slice::from_ref(&d.load_keys[k as usize]);
                            self.engine.insert_txn(key, std::slice::from_ref(&d.update_value))?;
                        }
                    }
                    if i % 64 == 63 {
                        pb.inc(64);
                    }
                }
                Ok(())
            });
            pb.finish_and_clear();
            self.push(id, r.map(|(t, ())| rate(ops.len(), t)));
        }
    }

    /// Durable single-insert commits from 1 writer, then the same number split over N writers
    /// (each writer opens its own transactions; concurrent commits may share a flush).
    fn concurrent_commits(&mut self) {
        let d = self.data;
        let (n, writers) = (self.sizes.concurrent_commits, self.sizes.writers);
        let (keys_1, keys_n) = d.concurrent_keys.split_at(n);
        let (values_1, values_n) = d.concurrent_values.split_at(n);
        let commit_all = |keys: &[Key], values: &[crate::data::Value]| -> BenchResult<()> {
            for (k, v) in keys.iter().zip(values) {
                self.engine.insert_txn(std::slice::from_ref(k), std::slice::from_ref(v))?;
            }
            Ok(())
        };
        let pb = progress::spinner(self.name, "commits: writers");
        let one = timed(|| commit_all(keys_1, values_1)).map(|(t, ())| rate(n, t));
        let flushes_before = self.engine.flushes();
        let per_writer = n.div_ceil(writers).max(1);
        let many = timed(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = keys_n
                    .chunks(per_writer)
                    .zip(values_n.chunks(per_writer))
                    .map(|(ks, vs)| s.spawn(move || commit_all(ks, vs)))
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().map_err(|_| "writer thread panicked".to_string())?)
            })
        })
        .map(|(t, ())| rate(n, t));
        pb.finish_and_clear();
        if let (Some(a), Some(b)) = (flushes_before, self.engine.flushes()) {
            self.out.notes.push(format!(
                "{}: {} device flushes for {n} durable commits from {writers} writers",
                self.name,
                b - a
            ));
        }
        let scaling = match (&one, &many) {
            (Ok(a), Ok(b)) => Ok(b / a),
            _ => Err("needs both commit rows".to_string()),
        };
        self.push("commits_1w", one);
        self.push("commits_nw", many);
        self.push("commits_scaling", scaling);
    }

    /// Overwrite transactions, without and then with a read transaction held open from before
    /// the first: how much the file grows while old versions must stay readable.
    fn long_reader(&mut self) {
        let d = self.data;
        // `None`: the store's size cannot be measured (n/a on a block device).
        let overwrite_all = |phase: &str, value: &crate::data::Value| -> BenchResult<Option<f64>> {
            let before = footprint(self.store, self.engine)?;
            let pb = progress::bar(self.name, phase, d.overwrites.len() as u64);
            for indexes in &d.overwrites {
                let keys: Vec<Key> =
                    indexes.iter().map(|&i| d.load_keys[i as usize].clone()).collect();
                self.engine.insert_txn(&keys, &vec![value.clone(); keys.len()])?;
                pb.inc(1);
            }
            pb.finish_and_clear();
            let after = footprint(self.store, self.engine)?;
            Ok(before.zip(after).map(|(b, a)| a.0.saturating_sub(b.0) as f64))
        };
        self.out.push("growth_free", size_cell(overwrite_all("overwrites", &d.update_value)));

        let reader = match self.engine.hold_reader() {
            Ok(r) => r,
            Err(why) => return self.out.push("growth_held", Cell::Na(why)),
        };
        // The held reader must keep returning a key's old value while the overwrites change it.
        let mut value = d.update_value.clone();
        value[0] ^= 0xFF;
        let r = d.overwrites.first().and_then(|o| o.first()).ok_or("no overwrites".to_string());
        let r = r.and_then(|&probe| {
            let key = &d.load_keys[probe as usize];
            let old = reader.get(key)?.ok_or("probe key missing")?;
            let grown = overwrite_all("overwrites, reader", &value)?;
            match reader.get(key)? {
                Some(v) if v == old => Ok(grown),
                _ => Err("held reader saw a later write".to_string()),
            }
        });
        drop(reader);
        self.out.push("growth_held", size_cell(r));
    }

    fn removals(&mut self) {
        let d = self.data;
        let pb = progress::spinner(self.name, "removals");
        let r = timed(|| self.engine.remove_txn(&d.load_keys[..d.remove_count]));
        pb.finish_and_clear();
        let r = r.and_then(|(t, n)| {
            expect("keys removed", n, d.remove_count as u64).map(|()| rate(d.remove_count, t))
        });
        self.push("removals", r);
    }
}

/// How one cold-read row reads the cold keys: returns the value bytes found.
type ColdRead = fn(&Run<'_>, &[Key], &indicatif::ProgressBar) -> BenchResult<u64>;

impl Run<'_> {
    /// Cold reads: each row on a store just closed and reopened (the page cache dropped
    /// while it was closed), the same distinct keys.
    fn cold_reads(&mut self) {
        let mut read_per_key = Vec::new();
        let one: ColdRead = |run, keys, pb| run.get_chunks(keys, pb);
        self.cold_row("cold_get_1t", "1 thread", one, &mut read_per_key);
        match self.engine.batched_reads() {
            Ok(()) => {
                let many: ColdRead = |run, keys, pb| {
                    let mut bytes = 0;
                    for chunk in keys.chunks(CHUNK) {
                        bytes += run.engine.get_batched(chunk, run.sizes.cold_batch)?;
                        pb.inc(chunk.len() as u64);
                    }
                    Ok(bytes)
                };
                self.cold_row("cold_get_many", "get_many", many, &mut read_per_key);
            }
            Err(why) => self.out.push("cold_get_many", Cell::Na(why)),
        }
        match self.engine.concurrent_reads() {
            Ok(()) => {
                let threads: ColdRead = |run, keys, pb| run.get_threads(keys, pb);
                let what = format!("{} threads", self.sizes.threads);
                self.cold_row("cold_get_nt", &what, threads, &mut read_per_key);
            }
            Err(why) => self.out.push("cold_get_nt", Cell::Na(why)),
        }
        if !read_per_key.is_empty() {
            self.out.notes.push(format!(
                "{}: cold reads, bytes read from the device per key (/proc/self/io \
                 read_bytes), and those bytes in 4 KiB reads per second: {}",
                self.name,
                read_per_key.join(", ")
            ));
        }
    }

    /// Closes and reopens the store, dropping the page cache while it is closed when the
    /// engine reads through it (an engine that reads with O_DIRECT is cold in a new handle).
    /// `Err(cell)`: what the row shows instead of a number.
    fn make_cold(&mut self) -> Result<(), Cell> {
        let buffered = self.engine.page_cache();
        let mut dropped = Ok(());
        let reopened = self.engine.reopen(&mut || {
            if buffered {
                dropped = drop_page_cache();
            }
            Ok(())
        });
        reopened.map_err(|e| Cell::Error(format!("reopen: {e}")))?;
        dropped.map_err(|e| Cell::Na(format!("n/a ({e})")))
    }

    /// One cold-read row: a cold store, then `read` of every cold key, timed, and the
    /// device bytes read per key for the note (`what` names the row there).
    fn cold_row(&mut self, id: &str, what: &str, read: ColdRead, notes: &mut Vec<String>) {
        if let Err(cell) = self.make_cold() {
            return self.out.push(id, cell);
        }
        let keys = &self.data.cold_keys;
        let pb = progress::bar(self.name, id, keys.len() as u64);
        let before = io_read_bytes();
        let r = timed(|| read(self, keys, &pb));
        let after = io_read_bytes();
        pb.finish_and_clear();
        let want = (keys.len() * self.cfg.value_size) as u64;
        let r = r.and_then(|(t, bytes)| expect("value bytes read", bytes, want).map(|()| t));
        if let (Ok(t), Some(b), Some(a)) = (&r, before, after) {
            let read = a.saturating_sub(b);
            notes.push(format!(
                "{what} {:.1} kB ({:.1}k 4 KiB reads/s)",
                read as f64 / keys.len().max(1) as f64 / 1e3,
                rate((read / 4096) as usize, *t) / 1e3
            ));
        }
        self.push(id, r.map(|t| rate(keys.len(), t)));
    }

    /// The device's own random 4 KiB read IOPS at QD 1 and 32 on the engine's store, read
    /// the way Arbor reads it (O_DIRECT, io_uring) while the engine has it closed.
    fn device_rows(&mut self) {
        let (store, secs) = (self.store, self.sizes.device_ms as f64 / 1e3);
        let mut measured = Err("not measured".to_string());
        let r = self.engine.reopen(&mut || {
            measured = crate::device::store_iops(store, secs);
            Ok(())
        });
        match r.and(measured) {
            Ok(iops) => {
                self.out.push("device_qd1_iops", Cell::Value(iops.qd1));
                self.out.push("device_qd32_iops", Cell::Value(iops.qd32));
                self.out.notes.push(format!(
                    "{}: device rows: random 4 KiB O_DIRECT reads through io_uring \
                     (UringDevice) over its closed store ({}, {:.0} MB), {} ms per queue depth",
                    self.name,
                    store.display(),
                    iops.bytes as f64 / 1e6,
                    self.sizes.device_ms
                ));
            }
            Err(e) => {
                self.out.push("device_qd1_iops", Cell::Error(e.clone()));
                self.out.push("device_qd32_iops", Cell::Error(e));
            }
        }
    }
}
