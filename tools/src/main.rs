//! `arbor`: the command-line tool for Arbor stores on files and raw block devices.
//!
//! Exit codes: 0 success; 1 `check` found problems (still there after `--repair`, if given)
//! or `get` found no such key; 2 the command could not run (bad arguments, I/O error,
//! unreadable store).

mod check;
mod create;
mod device;
mod dumpfmt;
mod dumptext;
mod error;
mod info;
mod output;
mod query;
mod rollback;
mod show;
mod stat;
mod transfer;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use dumptext::DumpFormat;
use error::{CliError, Result, EXIT_ERROR};
use query::{ScanArgs, Style};

const EXAMPLES: &str = "\
Examples:
  arbor format /var/lib/app/store.arbor --size 256M
  arbor info /dev/nvme0n1p3
  arbor check store.arbor            (exit 1 when it finds problems)
  arbor stat store.arbor --json
  arbor get store.arbor users alice
  arbor scan store.arbor users --prefix a --limit 10 --json
  arbor dump store.arbor > backup.adump
  arbor dump store.arbor --format jsonl | jq .
  arbor load new.arbor < backup.adump
  arbor compact store.arbor compacted.arbor

PATH is a regular file or a raw block device. `info` reads without any lock (it works on a
store another process has open, and on a damaged one); `check`, `stat`, `get`, `scan` and
`dump` take a shared lock and refuse while a writer has the store open; `format`, `load`,
`compact`'s destination and `check --repair` open the store exclusively.

Keys and values are given as UTF-8 text (hexadecimal with --hex) and shown as text when they
are UTF-8 without control characters and do not start with `0x`, otherwise as 0x and hex.
Files the tool writes (dumps, compact destinations) appear under their name only when
complete; a file a failed command created is removed. Progress bars show on a terminal.";

#[derive(Parser)]
#[command(name = "arbor", version, about = "Create, inspect, check and copy Arbor stores")]
#[command(after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new, empty store on a file (created if missing) or a block device.
    #[command(after_help = "Examples:\n  arbor format store.arbor\n  arbor format /dev/loop0 \
                            --block-size 16384 --force")]
    Format {
        path: PathBuf,
        /// Block size in bytes: a power of two from 4096 to 65536.
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
        /// Overwrite a target that holds data. Without it, format refuses a file or device
        /// with any non-zero byte in its first or last MiB (a store, a filesystem, a text
        /// file) and writes nothing.
        #[arg(long)]
        force: bool,
        /// Initial size of a new file (suffixes K, M, G, T; binary units; default 64M), at
        /// least 584K (4 KiB blocks: the superblock area, a journal of 1/8, 64 blocks), at
        /// most the free space of its filesystem; the journal takes 1/8 of it (at most 64M).
        /// Files grow later. Not for block devices.
        #[arg(long)]
        size: Option<String>,
    },
    /// Show every superblock slot, the block size, device size and space in use. Reads no
    /// lock and works on a damaged store.
    #[command(after_help = "Examples:\n  arbor info store.arbor\n  arbor info /dev/sdb --json")]
    Info {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Verify every block, key order, both superblock alternations and the allocator; exit 1
    /// when problems are found.
    #[command(after_help = "Examples:\n  arbor check store.arbor\n  arbor check store.arbor \
                            --repair\n  arbor check store.arbor --repair --rollback\n\n\
                            --repair only restores superblock copies or rebuilds the free-space \
                            map: it never invents data and never discards a commit. When the \
                            newest checkpoint's data is damaged it says what --rollback would \
                            lose, changes nothing and exits 1.")]
    Check {
        path: PathBuf,
        /// Restore superblock copies from their verified twins and rebuild the free-space
        /// map. Needs exclusive access.
        #[arg(long)]
        repair: bool,
        /// With --repair, when the newest checkpoint's data is damaged: print what would be
        /// lost (each tree's entries, the journal's commits after it), then roll back to the
        /// older intact checkpoint, discarding the newest and those commits.
        #[arg(long, requires = "repair")]
        rollback: bool,
        #[arg(long)]
        json: bool,
    },
    /// Per-tree depth, block counts, entries, bytes and fill; free-space fragmentation.
    #[command(after_help = "Examples:\n  arbor stat store.arbor\n  arbor stat store.arbor --json")]
    Stat {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the value of KEY in TREE; exit 1 when there is no such key.
    #[command(after_help = "Examples:\n  arbor get store.arbor users alice\n  arbor get \
                            store.arbor bin 00ff --hex --json")]
    Get {
        path: PathBuf,
        tree: String,
        key: String,
        /// KEY is hexadecimal (`00ff` or `0x00ff`).
        #[arg(long)]
        hex: bool,
        /// Print {"key": ..., "value": ...} (`key_hex`/`value_hex` for binary bytes).
        #[arg(long)]
        json: bool,
    },
    /// Print the entries of TREE in key order, `key<TAB>value` per line (or JSON lines).
    #[command(after_help = "Examples:\n  arbor scan store.arbor users --prefix a\n  arbor \
                            scan store.arbor users --from b --to d --limit 100 --json")]
    Scan {
        path: PathBuf,
        tree: String,
        /// Only keys that start with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only keys >= this.
        #[arg(long)]
        from: Option<String>,
        /// Only keys < this.
        #[arg(long)]
        to: Option<String>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u64>,
        /// --prefix, --from and --to are hexadecimal.
        #[arg(long)]
        hex: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Write every tree (or one) to stdout or a file: the binary dump format
    /// (docs/dump-format.md, what `load` reads), or text or JSON lines to read.
    #[command(after_help = "Examples:\n  arbor dump store.arbor > all.adump\n  arbor dump \
                            store.arbor --tree users -o users.adump\n  arbor dump store.arbor \
                            --format text | less")]
    Dump {
        path: PathBuf,
        /// Dump only this tree.
        #[arg(long)]
        tree: Option<String>,
        /// Write to this file instead of stdout (it appears only when the dump is complete).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = DumpFormat::Binary)]
        format: DumpFormat,
    },
    /// Read a dump from stdin (or a file) into an existing store: one transaction, or a commit
    /// every N entries with --batch.
    #[command(after_help = "Examples:\n  arbor format new.arbor && arbor load new.arbor < \
                            all.adump\n  arbor load big.arbor -i all.adump --batch 100000")]
    Load {
        path: PathBuf,
        /// Read from this file instead of stdin.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Commit every N entries (bounded memory; a failure keeps the batches committed).
        #[arg(long)]
        batch: Option<u64>,
    },
    /// Copy a store into a new one as of one snapshot (`Db::backup_to`): consistent and
    /// compact; a store another process has open must be backed up by that process.
    #[command(after_help = "Examples:\n  arbor backup store.arbor backup.arbor\n  arbor \
                            backup store.arbor /dev/sdc --force --json")]
    Backup(CopyArgs),
    /// Copy a store into a new, compacted one (full nodes, no free holes); report sizes.
    #[command(after_help = "Examples:\n  arbor compact store.arbor compacted.arbor\n  arbor \
                            compact store.arbor /dev/sdc --force")]
    Compact(CopyArgs),
}

// The arguments of `backup` and `compact`: a store copied into a new one. (A `//` comment:
// a doc comment here would become their `about`.)
#[derive(Args)]
struct CopyArgs {
    src: PathBuf,
    dst: PathBuf,
    /// Overwrite DST even if it holds data (see `format --force`).
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Format { path, block_size, force, size } => {
            create::format(&path, block_size, force, size.as_deref())?;
        }
        Cmd::Info { path, json } => info::info(&path, json)?,
        Cmd::Check { path, repair, rollback, json } => {
            return check::check(&path, repair, rollback, json);
        }
        Cmd::Stat { path, json } => stat::stat(&path, json)?,
        Cmd::Get { path, tree, key, hex, json } => {
            return query::get(&path, &tree, &key, Style { hex, json });
        }
        Cmd::Scan { path, tree, prefix, from, to, limit, hex, json } => {
            let args = ScanArgs { prefix, from, to, limit };
            query::scan(&path, &tree, &args, Style { hex, json })?;
        }
        Cmd::Dump { path, tree, output, format } => {
            transfer::dump(&path, tree.as_deref(), output, format)?;
        }
        Cmd::Load { path, input, batch } => {
            if batch == Some(0) {
                return Err(CliError::new("--batch must be at least 1"));
            }
            transfer::load(&path, input, batch)?;
        }
        Cmd::Compact(a) => transfer::compact(&a.src, &a.dst, a.force, a.json)?,
        Cmd::Backup(a) => transfer::backup(&a.src, &a.dst, a.force, a.json)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("arbor: {e}");
            ExitCode::from(EXIT_ERROR as u8)
        }
    }
}
