//! The parent's side: where each engine's store goes, one child process per engine and repeat
//! (so peak RSS is per engine), and the medians over repeats. Also the child's side: generate
//! the data set, run the workloads, print the cells as JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::config::Config;
use crate::data::{Dataset, Sizes};
use crate::engines::{self, Store};
use crate::rows::{median_cell, rows, Cell, RunResult};
use crate::workloads::Run;
use crate::BenchResult;

/// Where the stores go.
#[derive(Clone, Debug)]
pub enum Target {
    /// Fresh files in a temporary directory, removed at the end.
    Temp(PathBuf),
    /// Arbor at this file; redb and LMDB beside it (`FILE.redb`, `FILE.lmdb/`).
    File(PathBuf),
    /// Arbor on this block device; redb and LMDB in a temporary directory in `dir`.
    Device { device: PathBuf, dir: PathBuf },
}

impl Target {
    /// The store engine `name` is created at.
    pub fn store(&self, name: &str, erase: bool) -> Store {
        let path = match (self, name) {
            (Target::Temp(dir), _) => dir.join(format!("{name}.db")),
            (Target::File(file), "arbor") => file.clone(),
            (Target::File(file), _) => PathBuf::from(format!("{}.{name}", file.display())),
            (Target::Device { device, .. }, "arbor") => device.clone(),
            (Target::Device { dir, .. }, _) => dir.join(format!("{name}.db")),
        };
        Store { path, erase: erase && name == "arbor" }
    }

    /// One line for the table's header.
    pub fn describe(&self) -> String {
        match self {
            Target::Temp(dir) => {
                format!("fresh files in {} (removed after each run)", dir.display())
            }
            Target::File(file) => {
                format!("arbor at {f}; redb at {f}.redb; lmdb in {f}.lmdb/", f = file.display())
            }
            Target::Device { device, dir } => format!(
                "arbor on raw device {} (erased); redb and lmdb cannot run on a raw device: they \
                 ran on files in {} ({})",
                device.display(),
                dir.display(),
                disk_of(dir)
            ),
        }
    }
}

/// The block device that holds `dir`'s filesystem, from its st_dev through /sys/dev/block.
pub fn disk_of(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else { return "disk unknown".into() };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"));
    match link.ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())) {
        Some(name) => format!("on /dev/{name}"),
        None => format!("on device {major}:{minor}"),
    }
}

/// Removes a store the benchmark made (a file or a directory; never a block device).
pub fn remove_store(store: &Store) {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(&store.path) {
        Ok(m) if m.file_type().is_block_device() => {}
        Ok(m) if m.is_dir() => drop(std::fs::remove_dir_all(&store.path)),
        Ok(_) => drop(std::fs::remove_file(&store.path)),
        Err(_) => {}
    }
}

/// The child's arguments: everything it needs to rebuild the same run.
pub fn child_args(
    name: &str,
    store: &Store,
    sizes: &Sizes,
    cfg: &Config,
    seed: u64,
) -> Vec<String> {
    let mut args = vec![
        "--engine-child".to_string(),
        name.to_string(),
        "--child-store".into(),
        store.path.display().to_string(),
        "--seed".into(),
        seed.to_string(),
    ];
    if store.erase {
        args.push("--i-know-this-erases".into());
    }
    args.extend(sizes.to_args());
    args.extend(cfg.to_args());
    args
}

/// What the parent asks of every child: sizes, configuration, seed.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub sizes: &'a Sizes,
    pub cfg: &'a Config,
    pub seed: u64,
}

/// Runs one engine in a child process (this executable, re-run with `--engine-child`);
/// its progress bars go to our stderr, its cells come back as JSON on its stdout.
pub fn run_child(name: &str, store: &Store, plan: Plan<'_>) -> BenchResult<RunResult> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .args(child_args(name, store, plan.sizes, plan.cfg, plan.seed))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("spawn child: {e}"))?;
    remove_store(store);
    if !out.status.success() {
        return Err(format!("child for {name} failed: {}", out.status));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("child for {name} printed no result: {e}"))?;
    RunResult::from_json(&doc)
}

/// The number after `field` in `/proc/self/FILE` (lines of `field value [unit]`).
fn proc_self(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `VmHWM` (peak) and `VmRSS` (current) of this process, in bytes.
pub fn rss_bytes(field: &str) -> Option<u64> {
    proc_self("status", field).map(|kb| kb * 1024)
}

/// `write_bytes` of /proc/self/io: bytes this process (every thread, io_uring's workers
/// included) has sent toward the block layer: O_DIRECT writes when submitted, buffered ones
/// when they dirty a page. Not the filesystem's own journal or metadata writes, and nothing
/// for files on tmpfs.
pub fn io_write_bytes() -> Option<u64> {
    proc_self("io", "write_bytes:")
}

/// `read_bytes` of /proc/self/io: bytes this process (every thread) caused to be fetched
/// from the block layer: O_DIRECT reads, page-cache misses and their readahead, mmap
/// faults.
pub fn io_read_bytes() -> Option<u64> {
    proc_self("io", "read_bytes:")
}

/// The child's whole job: every workload on a fresh store of engine `name`.
pub fn child_main(name: &str, store: &Store, plan: Plan<'_>) -> RunResult {
    let (sizes, cfg) = (plan.sizes, plan.cfg);
    let data = Dataset::generate(sizes, cfg, plan.seed);
    let rss_before = rss_bytes("VmRSS:");
    let mut engine = match engines::open(name, store, cfg.durability) {
        Ok(e) => e,
        Err(e) => {
            let mut out = RunResult::default();
            for spec in rows(sizes).iter().filter(|s| cfg.wants(&[s.id])) {
                out.push(spec.id, Cell::Error(format!("open: {e}")));
            }
            return out;
        }
    };
    let run = Run {
        name,
        engine: engine.as_mut(),
        store: &store.path,
        sizes,
        cfg,
        data: &data,
        out: RunResult::default(),
    };
    let mut out = run.all();
    drop(engine);
    if cfg.wants(&["peak_rss"]) {
        let peak = match (rss_bytes("VmHWM:"), rss_before) {
            (Some(peak), Some(before)) => Cell::Value(peak.saturating_sub(before) as f64),
            _ => Cell::Error("no /proc/self/status".into()),
        };
        out.push("peak_rss", peak);
    }
    out
}

/// One engine's medians over its repeats, with the first repeat's notes, and every run.
pub struct EngineResult {
    pub name: String,
    pub result: RunResult,
    pub runs: Vec<RunResult>,
}

/// Runs every engine `repeats` times, interleaved (engine A, B, C, A, B, C, ...) so slow
/// phases of a noisy machine spread over all of them, and takes medians.
pub fn run_suite(
    engines: &[String],
    target: &Target,
    erase: bool,
    plan: Plan<'_>,
    repeats: usize,
) -> Vec<EngineResult> {
    let sizes = plan.sizes;
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); engines.len()];
    for repeat in 0..repeats {
        for (i, name) in engines.iter().enumerate() {
            let store = target.store(name, erase);
            let t0 = Instant::now();
            let r = run_child(name, &store, plan);
            let secs = t0.elapsed().as_secs_f64();
            let status = r.as_ref().map_or_else(|e| format!("ERROR {e}"), |_| "ok".into());
            eprintln!("kv-bench: {name:>5} run {}/{repeats}: {secs:.1} s, {status}", repeat + 1);
            runs[i].push(r.unwrap_or_else(|e| {
                let mut out = RunResult::default();
                for spec in rows(sizes).iter().filter(|s| plan.cfg.wants(&[s.id])) {
                    out.push(spec.id, Cell::Error(e.clone()));
                }
                out
            }));
        }
    }
    engines
        .iter()
        .zip(runs)
        .map(|(name, runs)| {
            let mut result = RunResult::default();
            for spec in rows(sizes) {
                let cells: Vec<&Cell> = runs.iter().filter_map(|r| r.get(spec.id)).collect();
                // A row not selected with --workloads has no cells in any run.
                if !cells.is_empty() {
                    result.push(spec.id, median_cell(&cells));
                }
            }
            result.notes = runs.first().map(|r| r.notes.clone()).unwrap_or_default();
            EngineResult { name: name.clone(), result, runs }
        })
        .collect()
}
