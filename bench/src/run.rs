//! The workloads, in the redb benchmark's order, run against one engine.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::data::{Dataset, Sizes};
use crate::engines::{self, Engine};
use crate::BenchResult;

/// How a row's number reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Operations per second: higher is better.
    Rate,
    /// Seconds: lower is better.
    Latency,
    /// Bytes: lower is better.
    Size,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct RowSpec {
    pub id: &'static str,
    pub label: String,
    pub kind: Kind,
}

pub fn rows(s: &Sizes) -> Vec<RowSpec> {
    let r = |id, label: String, kind| RowSpec { id, label, kind };
    vec![
        r("bulk_load", format!("bulk load: {} inserts, 1 txn", s.keys), Kind::Rate),
        r(
            "durable_single",
            format!("durable writes: {} txns x 1 insert", s.durable_commits),
            Kind::Rate,
        ),
        r("durable_single_p50", "  commit latency p50".into(), Kind::Latency),
        r("durable_single_p99", "  commit latency p99".into(), Kind::Latency),
        r(
            "batch",
            format!("batch writes: {} txns x {} inserts", s.batches, s.batch_size),
            Kind::Rate,
        ),
        r("random_reads", format!("random reads: {} gets, 1 thread", s.reads), Kind::Rate),
        r(
            "range_reads",
            format!("range reads: {} scans x {} entries", s.scans, s.scan_len),
            Kind::Rate,
        ),
        r("removals", format!("removals: {} keys, 1 txn", s.keys / 2), Kind::Rate),
        r("size_after_load", "file size after load".into(), Kind::Size),
        r("disk_after_load", "disk blocks allocated after load".into(), Kind::Size),
        r("size_at_end", "file size at end".into(), Kind::Size),
    ]
}

/// What one engine produced: per row id, a number in the row's unit or an error.
#[derive(Debug)]
pub struct EngineResult {
    pub name: String,
    pub cells: Vec<(&'static str, BenchResult<f64>)>,
    pub notes: Vec<String>,
}

impl EngineResult {
    pub fn get(&self, id: &str) -> Option<&BenchResult<f64>> {
        self.cells.iter().find(|(i, _)| *i == id).map(|(_, r)| r)
    }
}

/// Apparent bytes and allocated bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> BenchResult<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))? {
        let meta = entry.and_then(|e| e.metadata()).map_err(|e| format!("metadata: {e}"))?;
        if meta.is_file() {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

fn rate(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64().max(1e-9)
}

fn percentile(sorted: &[Duration], pct: usize) -> f64 {
    let i = (sorted.len() * pct / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, Duration::as_secs_f64)
}

fn progress(engine: &str, what: &str, r: &BenchResult<Duration>) {
    match r {
        Ok(d) => eprintln!("  {engine:>6}: {what:<18} {:>9.3} s", d.as_secs_f64()),
        Err(e) => eprintln!("  {engine:>6}: {what:<18} ERROR {e}"),
    }
}

/// Times `f`, reporting progress on stderr.
fn timed<T>(
    engine: &str,
    what: &str,
    f: impl FnOnce() -> BenchResult<T>,
) -> BenchResult<(Duration, T)> {
    let t0 = Instant::now();
    let r = f().map(|v| (t0.elapsed(), v));
    progress(engine, what, &r.as_ref().map(|(d, _)| *d).map_err(Clone::clone));
    r
}

/// Runs every workload on engine `name` in the empty directory `dir`.
pub fn run_engine(name: &str, dir: &Path, s: &Sizes, data: &Dataset) -> EngineResult {
    let mut out = EngineResult { name: name.to_string(), cells: Vec::new(), notes: Vec::new() };
    let mut engine: Box<dyn Engine> = match engines::open(name, dir) {
        Ok(e) => e,
        Err(e) => {
            for spec in rows(s) {
                out.cells.push((spec.id, Err(format!("open: {e}"))));
            }
            return out;
        }
    };
    let e = engine.as_mut();

    // (1) Bulk load.
    let r = timed(name, "bulk load", || e.insert_txn(&data.load_keys, &data.load_values));
    out.cells.push(("bulk_load", r.map(|(d, ())| rate(s.keys, d))));

    // (7) File size right after the load.
    let sizes = dir_bytes(dir);
    out.cells.push(("size_after_load", sizes.clone().map(|(a, _)| a as f64)));
    out.cells.push(("disk_after_load", sizes.map(|(_, b)| b as f64)));
    if let Some(n) = e.note() {
        out.notes.push(format!("after load, {n}"));
    }

    // (2) Durable single-insert transactions, each timed.
    let flushes_before = e.flushes();
    let mut lat = Vec::with_capacity(s.durable_commits);
    let r = timed(name, "durable writes", || {
        for (k, v) in data.single_keys.iter().zip(&data.single_values) {
            let t0 = Instant::now();
            e.insert_txn(std::slice::from_ref(k), std::slice::from_ref(v))?;
            lat.push(t0.elapsed());
        }
        Ok(())
    });
    lat.sort();
    match r {
        Ok((d, ())) => {
            out.cells.push(("durable_single", Ok(rate(s.durable_commits, d))));
            out.cells.push(("durable_single_p50", Ok(percentile(&lat, 50))));
            out.cells.push(("durable_single_p99", Ok(percentile(&lat, 99))));
        }
        Err(err) => {
            let err = format!("after {} commits: {err}", lat.len());
            for id in ["durable_single", "durable_single_p50", "durable_single_p99"] {
                out.cells.push((id, Err(err.clone())));
            }
        }
    }
    if let (Some(a), Some(b)) = (flushes_before, e.flushes()) {
        out.notes.push(format!(
            "{name}: {} device flushes for {} durable single-insert commits",
            b - a,
            s.durable_commits
        ));
    }

    // (3) Batch transactions.
    let r = timed(name, "batch writes", || {
        for (ks, vs) in
            data.batch_keys.chunks(s.batch_size).zip(data.batch_values.chunks(s.batch_size))
        {
            e.insert_txn(ks, vs)?;
        }
        Ok(())
    });
    out.cells.push(("batch", r.map(|(d, ())| rate(s.batches * s.batch_size, d))));

    // (4) Random point reads of loaded keys.
    let r = timed(name, "random reads", || e.get_many(&data.read_keys));
    let want = (data.read_keys.len() * crate::data::VALUE_BYTES) as u64;
    out.cells.push((
        "random_reads",
        r.and_then(|(d, bytes)| {
            if bytes == want {
                Ok(rate(s.reads, d))
            } else {
                Err(format!("read {bytes} value bytes, expected {want}"))
            }
        }),
    ));

    // (5) Range scans from random loaded keys.
    let r = timed(name, "range reads", || e.scan_many(&data.scan_starts, s.scan_len));
    out.cells.push((
        "range_reads",
        r.and_then(|(d, seen)| {
            // Scans that start near the end of the key space see fewer entries.
            let max = (s.scans * s.scan_len) as u64;
            if seen * 10 >= max * 9 && seen <= max {
                Ok(rate(s.scans, d))
            } else {
                Err(format!("visited {seen} entries, expected about {max}"))
            }
        }),
    ));

    // (6) Remove half of the loaded keys in one transaction.
    let r = timed(name, "removals", || e.remove_txn(&data.load_keys[..data.remove_count]));
    out.cells.push((
        "removals",
        r.and_then(|(d, n)| {
            if n == data.remove_count as u64 {
                Ok(rate(data.remove_count, d))
            } else {
                Err(format!("removed {n} keys, expected {}", data.remove_count))
            }
        }),
    ));

    out.cells.push(("size_at_end", dir_bytes(dir).map(|(a, _)| a as f64)));
    if let Some(n) = e.note() {
        out.notes.push(format!("at end, {n}"));
    }
    out
}
