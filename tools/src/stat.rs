//! `arbor stat`: per-tree shape and size, free-space fragmentation.

use std::path::Path;

use arbor::check::{stat_device, StoreStat, TreeStat};
use serde_json::json;

use crate::device::ReadOnlyDevice;
use crate::error::{CliError, Result};
use crate::info::space_json;
use crate::util::{human, progress};

fn tree_json(t: &TreeStat) -> serde_json::Value {
    json!({
        "name": String::from_utf8_lossy(&t.name),
        "id": t.id,
        "depth": t.depth,
        "leaf_blocks": t.leaf_blocks,
        "internal_blocks": t.internal_blocks,
        "overflow_blocks": t.overflow_blocks,
        "overflow_values": t.overflow_values,
        "entries": t.entries,
        "key_bytes": t.key_bytes,
        "value_bytes": t.value_bytes,
        "fill": (t.fill() * 1000.0).round() / 1000.0,
    })
}

/// Prints the figures; exits non-zero (after printing them) when the walk met damage, naming
/// the first damaged block and `arbor check`, as it does when the store does not open.
pub fn stat(path: &Path, as_json: bool) -> Result<()> {
    let dev = ReadOnlyDevice::open(path, true)?;
    let bar = progress(arbor::BlockDevice::len_bytes(&dev) / 4096, "stat");
    let mut tick = |n: u64| bar.set_position(n.min(bar.length().unwrap_or(n)));
    let st: StoreStat =
        stat_device(Box::new(dev), &mut tick).map_err(|e| CliError::store(path, e))?;
    bar.finish_and_clear();
    if as_json {
        let out = json!({
            "generation": st.generation,
            "block_bytes": st.block_bytes,
            "device_bytes": st.device_bytes,
            "trees": st.trees.iter().map(tree_json).collect::<Vec<_>>(),
            "space": space_json(&st.space),
            "problems": st.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&st);
    }
    match st.problems.first() {
        None => Ok(()),
        Some(p) => {
            let more = st.problems.len() - 1;
            let more = if more > 0 { format!(" (and {more} more problem(s))") } else { "".into() };
            let what = format!("{}{more}; the figures above leave the damage out", p.detail);
            Err(CliError::damaged(path, p.addr, &what))
        }
    }
}

/// The human-readable report (everything but the warnings).
fn print_text(st: &StoreStat) {
    println!(
        "generation {}, block size {}, device {}",
        st.generation,
        st.block_bytes,
        human(st.device_bytes)
    );
    println!(
        "{:<16} {:>5} {:>8} {:>8} {:>8} {:>10} {:>10} {:>12} {:>5}",
        "tree",
        "depth",
        "leaves",
        "internal",
        "overflow",
        "entries",
        "key bytes",
        "value bytes",
        "fill"
    );
    for t in &st.trees {
        println!(
            "{:<16} {:>5} {:>8} {:>8} {:>8} {:>10} {:>10} {:>12} {:>4.0}%",
            String::from_utf8_lossy(&t.name),
            t.depth,
            t.leaf_blocks,
            t.internal_blocks,
            t.overflow_blocks,
            t.entries,
            t.key_bytes,
            t.value_bytes,
            t.fill() * 100.0
        );
    }
    let sp = &st.space;
    let bb = u64::from(sp.block_bytes);
    println!(
        "space: {} blocks, used {} ({}), free {} ({}), pending {}",
        sp.block_count,
        sp.used_blocks(),
        human(sp.used_blocks() * bb),
        sp.free_blocks,
        human(sp.free_blocks * bb),
        sp.pending_blocks
    );
    println!(
        "free-space fragmentation: {} free runs, largest {} blocks ({})",
        sp.free_runs,
        sp.largest_free_run,
        human(sp.largest_free_run * bb)
    );
}
