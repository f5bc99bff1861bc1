//! `kv-bench`: Arbor against redb and LMDB on the redb benchmark's workloads.
//!
//! With no arguments it runs the quick default suite on fresh temporary files (median of 3
//! runs per engine, each in its own process) and prints a table; `--quick-smoke` runs tiny
//! sizes once in a few seconds (CI). `kv-bench device TARGET` measures the raw device.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arbor_bench::config::Config;
use arbor_bench::data::Sizes;
use arbor_bench::device::{self, DeviceArgs};
use arbor_bench::engines::{self, Store};
use arbor_bench::report::{self, Context};
use arbor_bench::rows::rows;
use arbor_bench::suite::{self, Plan, Target};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kv-bench",
    about = "Arbor vs redb vs LMDB: load, durable writes, reads, scans, YCSB"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Comma-separated engines to run, in column order.
    #[arg(long, value_delimiter = ',', default_values_t = known_engines())]
    engines: Vec<String>,
    /// Runs per engine; the table shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Also draw ops/s per workload per engine as an SVG chart.
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
    /// Tiny sizes, one run: an end-to-end check in a few seconds.
    #[arg(long)]
    quick_smoke: bool,
    /// Arbor's store file (must not exist unless --i-know-this-erases); redb and LMDB go
    /// beside it. Removed after each run.
    #[arg(long, value_name = "FILE", conflicts_with = "device")]
    path: Option<PathBuf>,
    /// Run Arbor on this raw block device (ERASED; needs --i-know-this-erases). redb and
    /// LMDB run on files in --dir, which should be on the same disk.
    #[arg(long, value_name = "DEV")]
    device: Option<PathBuf>,
    /// Directory for temporary stores (a real disk: Arbor uses O_DIRECT; on tmpfs it would be
    /// buffered, which measures something else).
    /// Default: ./target if it exists, else /var/tmp.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Allow erasing --device or an existing --path file.
    #[arg(long)]
    i_know_this_erases: bool,
    /// Seed of the key, value and operation generators.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    #[command(flatten)]
    sizes: Sizes,
    #[command(flatten)]
    cfg: Config,
    /// Internal: run one engine's workloads and print its cells as JSON.
    #[arg(long, hide = true, requires = "child_store")]
    engine_child: Option<String>,
    #[arg(long, hide = true)]
    child_store: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// 4 KiB random-read IOPS (QD 1, QD 32) and write+flush latency of Arbor's UringDevice,
    /// with fio's equivalent command lines.
    Device(DeviceArgs),
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("kv-bench: {msg}");
    ExitCode::from(2)
}

fn default_dir() -> PathBuf {
    let target = Path::new("target");
    if target.is_dir() {
        return target.to_path_buf();
    }
    PathBuf::from("/var/tmp")
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Checks the target flags; returns the target and the temporary directory to keep alive.
fn target(args: &Args) -> Result<(Target, Option<tempfile::TempDir>), String> {
    let temp = |dir: &Path| {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        tempfile::Builder::new()
            .prefix("kv-bench-")
            .tempdir_in(dir)
            .map_err(|e| format!("cannot make a temporary directory in {}: {e}", dir.display()))
    };
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    if let Some(device) = &args.device {
        if !is_block_device(device) {
            return Err(format!(
                "{} is not a block device (use --path for files)",
                device.display()
            ));
        }
        if !args.i_know_this_erases {
            return Err(format!("--device erases {}; pass --i-know-this-erases", device.display()));
        }
        let t = temp(&dir)?;
        return Ok((Target::Device { device: device.clone(), dir: t.path().into() }, Some(t)));
    }
    if let Some(file) = &args.path {
        if file.exists() && !args.i_know_this_erases {
            return Err(format!(
                "{} exists; pass --i-know-this-erases to overwrite it",
                file.display()
            ));
        }
        return Ok((Target::File(file.clone()), None));
    }
    let t = temp(&dir)?;
    let shown = std::fs::canonicalize(t.path()).unwrap_or_else(|_| t.path().into());
    Ok((Target::Temp(shown), Some(t)))
}

fn child(args: &Args, name: &str) -> ExitCode {
    let Some(path) = args.child_store.clone() else {
        return fail("--engine-child needs --child-store");
    };
    let store = Store { path, erase: args.i_know_this_erases };
    let plan = Plan { sizes: &args.sizes, cfg: &args.cfg, seed: args.seed };
    let result = suite::child_main(name, &store, plan);
    println!("{}", result.to_json());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Cmd::Device(d)) = &args.command {
        return device::main(d).map_or_else(fail, |()| ExitCode::SUCCESS);
    }
    if let Some(name) = args.engine_child.clone() {
        return child(&args, &name);
    }
    let known = engines::known();
    if let Some(bad) = args.engines.iter().find(|e| !known.contains(&e.as_str())) {
        return fail(format!("unknown engine {bad:?}; this build knows: {}", known.join(", ")));
    }
    if let Err(e) = settle_args(&mut args) {
        return fail(e);
    }
    let (target, _temp) = match target(&args) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = Context::gather(command, target.describe(), args.seed, args.repeats, &args.cfg);
    eprintln!(
        "kv-bench: {} keys, {} run(s) of {} in {}",
        args.sizes.keys,
        args.repeats,
        args.engines.join(", "),
        target.describe()
    );
    let plan = Plan { sizes: &args.sizes, cfg: &args.cfg, seed: args.seed };
    let results =
        suite::run_suite(&args.engines, &target, args.i_know_this_erases, plan, args.repeats);

    print!("{}", report::table(&ctx, &args.sizes, &results));
    if let Some(out) = &args.json {
        let doc = report::json(&ctx, &args.sizes, &results);
        let text = serde_json::to_string_pretty(&doc).expect("JSON of plain values");
        if let Err(e) = std::fs::write(out, text + "\n") {
            return fail(format!("cannot write {}: {e}", out.display()));
        }
    }
    if let Some(out) = &args.plot {
        let title = format!("kv-bench, {} keys ({})", args.sizes.keys, ctx.date);
        // Only the rows that ran (--workloads).
        let specs: Vec<_> = rows(&args.sizes)
            .into_iter()
            .filter(|s| results.iter().any(|r| r.result.get(s.id).is_some()))
            .collect();
        if let Err(e) = arbor_bench::plot::svg(out, &title, &specs, &results) {
            return fail(e);
        }
    }
    let failed = results.iter().any(|r| {
        r.result.cells.iter().any(|(_, c)| matches!(c, arbor_bench::rows::Cell::Error(_)))
    });
    if failed {
        eprintln!("kv-bench: some workloads failed (see Errors above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Applies `--quick-smoke` and checks the sizes, the workload selection and `--repeats`.
fn settle_args(args: &mut Args) -> Result<(), String> {
    if args.quick_smoke {
        args.sizes = Sizes::smoke();
        args.repeats = 1;
    }
    args.sizes.check()?;
    let row_ids: Vec<&str> = rows(&args.sizes).iter().map(|r| r.id).collect();
    args.cfg.check(&row_ids)?;
    if args.repeats == 0 {
        return Err("--repeats must be at least 1".into());
    }
    Ok(())
}

/// Every engine this build knows, as `--engines` defaults to.
fn known_engines() -> Vec<String> {
    engines::known().iter().map(|s| s.to_string()).collect()
}
