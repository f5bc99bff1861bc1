//! `arbor format`: a new, empty store on a file or a block device.
//!
//! A file's size is checked before anything is created: at least the engine's minimum, at
//! most what the filesystem has free. If the command created the file and then fails, the
//! file is removed.

use std::path::Path;

use arbor::{Db, Options};
use arbor_format::constants::{is_valid_block_bytes, JOURNAL_BYTES_DEFAULT, SUPERBLOCK_AREA_BYTES};
use arbor_format::JournalRegion;

use crate::device::is_block_device;
use crate::error::{CliError, Result};
use crate::output::{parent_dir, CreatedGuard};
use crate::util::{free_bytes, human, parse_size, spinner};

/// The size of a new file when `--size` is not given.
pub const SIZE_DEFAULT: &str = "64M";
/// Blocks past the superblock area a new store needs: below this the engine's `Db::format`
/// (engine/src/db.rs) grows the file by a whole growth step (64 MiB) instead of using the
/// size asked for, which is how `--size 1` used to give 64 MiB.
const DATA_BLOCKS_MIN: u64 = 64;

/// The smallest store at `block_bytes`: the superblock area, the journal `create` plans for
/// that size (1/8 of it, at least 8 slots: design.md §11.1) and [`DATA_BLOCKS_MIN`] blocks.
pub fn size_min_bytes(block_bytes: u32) -> u64 {
    let block = u64::from(block_bytes);
    let mut size = SUPERBLOCK_AREA_BYTES + DATA_BLOCKS_MIN * block;
    // Bounded: the journal grows by 1/8 of each step, so a few dozen blocks settle it.
    loop {
        let journal = JournalRegion::plan(block_bytes, size, JOURNAL_BYTES_DEFAULT)
            .map_or(0, |r| r.block_count() * block);
        if SUPERBLOCK_AREA_BYTES + journal + DATA_BLOCKS_MIN * block <= size {
            return size;
        }
        size += block;
    }
}

/// The file size to create for `--size TEXT`: parsed, at least the minimum, rounded up to a
/// whole block, and no more than the filesystem holding `path` can still allocate.
fn file_size(path: &Path, text: &str, block_bytes: u32) -> Result<u64> {
    let asked = parse_size(text)?;
    let min = size_min_bytes(block_bytes);
    if asked < min {
        return Err(CliError::new(format!(
            "--size {text} is too small: a store of {block_bytes}-byte blocks needs at least {} \
             ({min} bytes: the {} superblock area and {DATA_BLOCKS_MIN} blocks)",
            human(min),
            human(SUPERBLOCK_AREA_BYTES)
        )));
    }
    let block = u64::from(block_bytes);
    let size = asked
        .checked_next_multiple_of(block)
        .ok_or_else(|| CliError::new(format!("--size {text} is too large")))?;
    let existing = std::fs::metadata(path).map_or(0, |m| m.len());
    let needed = size.saturating_sub(existing);
    let dir = parent_dir(path);
    let free = free_bytes(dir)?;
    if needed > free {
        return Err(CliError::new(format!(
            "--size {text} needs {} more on the filesystem of {}, which has {} free; nothing \
             was created",
            human(needed),
            dir.display(),
            human(free)
        )));
    }
    Ok(size)
}

pub fn format(path: &Path, block_bytes: u32, force: bool, size: Option<&str>) -> Result<()> {
    if !is_valid_block_bytes(block_bytes) {
        return Err(CliError::new(format!(
            "--block-size {block_bytes}: must be a power of two from 4096 to 65536"
        )));
    }
    let device = is_block_device(path);
    let mut opts = Options { block_bytes, overwrite_existing: force, ..Options::default() };
    if device {
        if size.is_some() {
            return Err(CliError::new(format!(
                "--size applies to files; {} is a block device, whose size is its own",
                path.display()
            )));
        }
    } else {
        let size = file_size(path, size.unwrap_or(SIZE_DEFAULT), block_bytes)?;
        opts.file_initial_bytes = size;
        // The engine caps a file at `file_max_bytes` (1 TiB by default): a larger --size is
        // what the user asked for, so the cap must not cut it silently.
        opts.file_max_bytes = opts.file_max_bytes.max(size);
    }
    let guard = CreatedGuard::new(path);
    let bar = spinner(&format!("formatting {}", path.display()));
    let created = Db::create(path, opts).map_err(|e| CliError::create(path, e));
    let db = created.inspect_err(|_| bar.finish_and_clear())?;
    let flushed = db.flush().map_err(|e| CliError::store(path, e));
    bar.finish_and_clear();
    flushed?;
    let st = db.stats();
    drop(db);
    guard.keep();
    println!(
        "formatted {}: block size {}, {} blocks ({}), generation {}",
        path.display(),
        st.block_bytes,
        st.blocks_total,
        human(st.blocks_total * u64::from(st.block_bytes)),
        st.generation_durable
    );
    Ok(())
}
