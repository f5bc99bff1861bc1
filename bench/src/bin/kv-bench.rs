//! `kv-bench`: Arbor against redb and LMDB on the redb benchmark's workloads.
//!
//! With no arguments it runs the quick default suite on fresh temporary files and prints a
//! table; `--quick-smoke` runs tiny sizes in a few seconds (CI).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arbor_bench::data::{Dataset, Sizes};
use arbor_bench::engines;
use arbor_bench::report::{self, Context};
use arbor_bench::run::run_engine;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "kv-bench", about = "Arbor vs redb vs LMDB: load, durable writes, reads, scans")]
struct Args {
    /// Keys bulk-loaded in one transaction (the other sizes stay fixed).
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Comma-separated engines to run, in column order.
    #[arg(long, value_delimiter = ',', default_values_t = engines::known().iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    engines: Vec<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Tiny sizes (2,000 keys, 50 durable commits): an end-to-end check in a few seconds.
    #[arg(long)]
    quick_smoke: bool,
    /// Directory for the temporary stores (must be a real disk: Arbor uses O_DIRECT).
    /// Default: ./target if it exists, else /var/tmp.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// Seed of the key and value generator.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
}

fn base_dir(args: &Args) -> PathBuf {
    if let Some(p) = &args.path {
        return p.clone();
    }
    let target = Path::new("target");
    if target.is_dir() {
        return target.to_path_buf();
    }
    PathBuf::from("/var/tmp")
}

fn main() -> ExitCode {
    let args = Args::parse();
    let known = engines::known();
    if let Some(bad) = args.engines.iter().find(|e| !known.contains(&e.as_str())) {
        eprintln!("kv-bench: unknown engine {bad:?}; this build knows: {}", known.join(", "));
        return ExitCode::from(2);
    }
    let sizes = if args.quick_smoke { Sizes::smoke() } else { Sizes::default_suite(args.keys) };
    if sizes.keys < 2 {
        eprintln!("kv-bench: --keys must be at least 2");
        return ExitCode::from(2);
    }

    let base = base_dir(&args);
    if let Err(e) = std::fs::create_dir_all(&base) {
        eprintln!("kv-bench: cannot create {}: {e}", base.display());
        return ExitCode::from(2);
    }
    let root = match tempfile::Builder::new().prefix("kv-bench-").tempdir_in(&base) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kv-bench: cannot make a temporary directory in {}: {e}", base.display());
            return ExitCode::from(2);
        }
    };
    let dir_shown = std::fs::canonicalize(root.path()).unwrap_or_else(|_| root.path().into());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = Context::gather(command, dir_shown.display().to_string(), args.seed);

    eprintln!(
        "kv-bench: generating {} keys (+{} fresh) with seed {:#x}",
        sizes.keys,
        sizes.durable_commits + sizes.batches * sizes.batch_size,
        args.seed
    );
    let data = Dataset::generate(&sizes, args.seed);
    let mut results = Vec::new();
    for name in &args.engines {
        let dir = root.path().join(name);
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("kv-bench: cannot create {}: {e}", dir.display());
            return ExitCode::from(2);
        }
        eprintln!("kv-bench: {name} in {}", dir.display());
        results.push(run_engine(name, &dir, &sizes, &data));
        // Free the engine's disk space before the next one runs.
        let _ = std::fs::remove_dir_all(&dir);
    }

    print!("{}", report::table(&ctx, &sizes, &results));
    if let Some(out) = &args.json {
        let doc = report::json(&ctx, &sizes, &results);
        let text = serde_json::to_string_pretty(&doc).expect("JSON of plain values");
        if let Err(e) = std::fs::write(out, text + "\n") {
            eprintln!("kv-bench: cannot write {}: {e}", out.display());
            return ExitCode::from(2);
        }
    }
    let failed = results.iter().any(|r| r.cells.iter().any(|(_, c)| c.is_err()));
    if failed {
        eprintln!("kv-bench: some workloads failed (see Errors above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
