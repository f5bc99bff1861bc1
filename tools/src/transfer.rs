//! `arbor dump`, `arbor load`, `arbor compact` and `arbor backup`: moving every entry in
//! and out.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use arbor::{Db, Options};
use indicatif::ProgressBar;
use serde_json::json;

use crate::device::{is_block_device, lock_held, open_db_readonly, ReadOnlyDevice};
use crate::dumpfmt::{DumpReader, DumpWriter, Record};
use crate::dumptext::{DumpFormat, DumpSink, ReadableWriter};
use crate::error::{CliError, Result};
use crate::output::Staged;
use crate::util::{bytes_bar, entries_bar, human};

/// I/O buffer for dump streams.
const STREAM_BUFFER_BYTES: usize = 1 << 20;
/// New `compact` destinations start small and grow in these steps, so the copy's file is
/// about as large as its contents.
const COMPACT_GROW_BYTES: u64 = 4 << 20;

/// One item of a store walk.
pub enum Item<'a> {
    Tree(&'a str),
    Entry(&'a [u8], &'a [u8]),
}

/// The trees `dump` or `compact` copies (every tree, or `only`) and their entries in total.
fn selected_trees(
    path: &Path,
    snap: &arbor::Snapshot,
    only: Option<&str>,
) -> Result<(Vec<String>, u64)> {
    let damaged = |e| CliError::store(path, e);
    let mut names = snap.tree_names().map_err(damaged)?;
    if let Some(name) = only {
        if !names.iter().any(|n| n == name) {
            return Err(CliError::new(format!("the store has no tree named {name:?}")));
        }
        names = vec![name.to_string()];
    }
    let mut entries = 0u64;
    for name in &names {
        if let Some(t) = snap.tree(name).map_err(damaged)? {
            entries += t.len().map_err(damaged)?;
        }
    }
    Ok((names, entries))
}

/// The read side of `dump` and `compact`: every tree (or `only`), then its entries in key
/// order, from one snapshot (docs/design.md §2), so the copy is consistent even with a
/// writer in the same process. This is the one place that reads a store. The bar counts
/// entries against the snapshot's total. A read that finds damage names the block and
/// `arbor check` (`CliError::store`).
pub fn read_store(
    path: &Path,
    db: &Db,
    only: Option<&str>,
    what: &str,
    sink: &mut dyn FnMut(Item<'_>) -> Result<()>,
) -> Result<()> {
    let snap = db.snapshot().map_err(|e| CliError::store(path, e))?;
    let (names, total) = selected_trees(path, &snap, only)?;
    let bar = entries_bar(total, what);
    let result = walk_trees(path, &snap, &names, &bar, sink);
    bar.finish_and_clear();
    result
}

fn walk_trees(
    path: &Path,
    snap: &arbor::Snapshot,
    names: &[String],
    bar: &ProgressBar,
    sink: &mut dyn FnMut(Item<'_>) -> Result<()>,
) -> Result<()> {
    let damaged = |e| CliError::store(path, e);
    for name in names {
        let tree = snap
            .tree(name)
            .map_err(damaged)?
            .ok_or_else(|| CliError::new(format!("tree {name:?} vanished from the snapshot")))?;
        sink(Item::Tree(name))?;
        for item in tree.iter().map_err(damaged)? {
            let (k, v) = item.map_err(damaged)?;
            sink(Item::Entry(&k, &v))?;
            bar.inc(1);
        }
    }
    Ok(())
}

/// Where a dump goes: stdout, or a file staged under a temporary name.
fn dump_output(output: Option<&Path>, format: DumpFormat) -> Result<Option<Staged>> {
    match output {
        Some(p) => Ok(Some(Staged::new(p)?)),
        None if format == DumpFormat::Binary && std::io::stdout().is_terminal() => {
            Err(CliError::new(
                "refusing to write a binary dump to a terminal: redirect stdout, use -o FILE, \
                 or --format text",
            ))
        }
        None => Ok(None),
    }
}

/// Dumps the store; the output file (if any) is created only after the store opened, and
/// appears under its name only when the whole dump was written.
pub fn dump(
    path: &Path,
    only: Option<&str>,
    output: Option<PathBuf>,
    fmt: DumpFormat,
) -> Result<()> {
    let staged = dump_output(output.as_deref(), fmt)?;
    let db = open_db_readonly(path)?;
    let out: Box<dyn Write> = match &staged {
        Some(st) => Box::new(st.create_file()?),
        None => Box::new(std::io::stdout().lock()),
    };
    let out = BufWriter::with_capacity(STREAM_BUFFER_BYTES, out);
    let mut w: Box<dyn DumpSink> = match fmt {
        DumpFormat::Binary => Box::new(DumpWriter::new(out)?),
        DumpFormat::Text => Box::new(ReadableWriter::new(out, false)),
        DumpFormat::Jsonl => Box::new(ReadableWriter::new(out, true)),
    };
    read_store(path, &db, only, "dump", &mut |item| {
        match item {
            Item::Tree(name) => w.tree(name)?,
            Item::Entry(k, v) => w.entry(k, v)?,
        }
        Ok(())
    })?;
    let (trees, entries) = w.finish()?;
    if let Some(st) = staged {
        st.commit()?;
    }
    eprintln!("dumped {trees} tree(s), {entries} entries from {}", path.display());
    Ok(())
}

/// The input's length when it is known (a file, or stdin redirected from one).
fn input_len(input: Option<&Path>) -> Option<u64> {
    let meta = match input {
        Some(p) => std::fs::metadata(p),
        None => std::fs::metadata("/dev/stdin"),
    };
    meta.ok().filter(|m| m.is_file()).map(|m| m.len())
}

pub fn load(path: &Path, input: Option<PathBuf>, batch: Option<u64>) -> Result<()> {
    let src: Box<dyn Read> = match &input {
        Some(p) => Box::new(File::open(p).map_err(|e| CliError::io(p, e))?),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut reader = DumpReader::new(BufReader::with_capacity(STREAM_BUFFER_BYTES, src))?;
    let db = Db::open(path, Options::default()).map_err(|e| CliError::store(path, e))?;
    let mut committed = 0u64;
    let bar = bytes_bar(input_len(input.as_deref()), "load");
    let result = load_records(&db, &mut reader, batch, &mut committed, &bar);
    bar.finish_and_clear();
    match result {
        Ok((trees, entries)) => {
            eprintln!("loaded {trees} tree(s), {entries} entries into {}", path.display());
            Ok(())
        }
        Err(e) if committed > 0 => Err(CliError::new(format!(
            "{e} (the {committed} entries of earlier batches stay committed)"
        ))),
        Err(e) => Err(CliError::new(format!("{e} (nothing was committed)"))),
    }
}

/// Applies the records in one transaction, or one per `batch` entries. The last transaction
/// commits only after the trailer verified, so without `--batch` a damaged dump changes
/// nothing.
fn load_records(
    db: &Db,
    reader: &mut DumpReader<impl Read>,
    batch: Option<u64>,
    committed: &mut u64,
    bar: &ProgressBar,
) -> Result<(u64, u64)> {
    let mut tx = db.begin_write()?;
    let mut current: Option<String> = None;
    let mut in_batch = 0u64;
    loop {
        let record = reader.next_record()?;
        bar.set_position(reader.offset());
        match record {
            Record::Tree(name) => {
                tx.tree(&name)?;
                current = Some(name);
            }
            Record::Entry(k, v) => {
                let name = current.as_deref().unwrap_or_default();
                tx.tree(name)?.insert(&k, &v)?;
                in_batch += 1;
                if batch.is_some_and(|b| in_batch >= b) {
                    tx.commit()?;
                    *committed += in_batch;
                    in_batch = 0;
                    tx = db.begin_write()?;
                }
            }
            Record::End(trees, entries) => {
                tx.commit()?;
                return Ok((trees, entries));
            }
        }
    }
}

fn target_bytes(path: &Path) -> u64 {
    if is_block_device(path) {
        return File::open(path)
            .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
            .unwrap_or(0);
    }
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Blocks in use outside the superblock area.
fn used_bytes(db: &Db) -> u64 {
    let st = db.stats();
    let reserved = st.blocks_reserved;
    st.blocks_total.saturating_sub(st.blocks_free).saturating_sub(reserved)
        * u64::from(st.block_bytes)
}

/// Refuses a destination `compact` must not replace: the source itself, a store another
/// process has open, or (without `--force`) a file that holds data. A block device is
/// checked by the engine's `create` itself (it writes in place).
fn check_destination(src: &Path, dst: &Path, force: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(d) = std::fs::metadata(dst) else { return Ok(()) };
    if std::fs::metadata(src).is_ok_and(|s| (s.dev(), s.ino()) == (d.dev(), d.ino())) {
        return Err(CliError::new(format!(
            "{} is the source store: copy into a new file or another device",
            dst.display()
        )));
    }
    if !d.is_file() {
        return Ok(());
    }
    if lock_held(dst) {
        return Err(CliError::new(format!(
            "{} is open by another process (it holds the store's lock); stop it first",
            dst.display()
        )));
    }
    if !force {
        let dev = ReadOnlyDevice::open(dst, false)?.zero_past_end();
        if let Some(what) =
            arbor::io::probe_existing_data(&dev).map_err(|e| CliError::io(dst, e))?
        {
            return Err(CliError::create(dst, arbor::Error::ExistingData { what }));
        }
    }
    Ok(())
}

/// `arbor compact`: [`copy_store`], reporting sizes.
pub fn compact(src: &Path, dst: &Path, force: bool, as_json: bool) -> Result<()> {
    copy_store(src, dst, force, as_json, false)
}

/// `arbor backup`: [`copy_store`], reporting what the copy holds.
pub fn backup(src: &Path, dst: &Path, force: bool, as_json: bool) -> Result<()> {
    copy_store(src, dst, force, as_json, true)
}

/// Copies `src` into a new store at `dst` with the engine's backup
/// (`Db::backup_snapshot_to`: one snapshot copied in key order, so the copy is consistent
/// and compact). A file destination is built under a temporary name and renamed over `dst`
/// only when the copy is complete and durable.
fn copy_store(src: &Path, dst: &Path, force: bool, as_json: bool, backup: bool) -> Result<()> {
    check_destination(src, dst, force)?;
    let src_db = open_db_readonly(src)?;
    let staged = Staged::new(dst)?;
    let opts = Options {
        block_bytes: src_db.stats().block_bytes,
        overwrite_existing: force,
        file_initial_bytes: COMPACT_GROW_BYTES,
        file_grow_step_bytes: COMPACT_GROW_BYTES,
        ..Options::default()
    };
    let snap = src_db.snapshot()?;
    let info = Db::backup_snapshot_to(&snap, staged.path(), opts.clone())
        .map_err(|e| CliError::create(dst, e))?;
    drop(snap);
    // Opened for its statistics only: no warming.
    let dst_opts = Options { warm_on_open: false, ..opts };
    let dst_db = Db::open(staged.path(), dst_opts).map_err(|e| CliError::store(dst, e))?;
    let (src_used, dst_used) = (used_bytes(&src_db), used_bytes(&dst_db));
    let entries = info.entries;
    drop(dst_db);
    drop(src_db);
    staged.commit()?;
    if backup && !as_json {
        println!(
            "backed up {entries} entries in {} tree(s) as of seq {} into {}",
            info.trees,
            info.seq,
            dst.display()
        );
        return Ok(());
    }
    let (src_size, dst_size) = (target_bytes(src), target_bytes(dst));
    if as_json {
        let out = json!({
            "entries": entries,
            "trees": info.trees,
            "seq": info.seq,
            "src": {
                "path": src.display().to_string(),
                "used_bytes": src_used,
                "size_bytes": src_size,
            },
            "dst": {
                "path": dst.display().to_string(),
                "used_bytes": dst_used,
                "size_bytes": dst_size,
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("copied {entries} entries");
    println!("before: {} in use, {} on disk ({})", human(src_used), human(src_size), src.display());
    println!("after:  {} in use, {} on disk ({})", human(dst_used), human(dst_size), dst.display());
    Ok(())
}
