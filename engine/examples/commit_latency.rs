//! Latency of single-insert `Durability::Immediate` commits on a file (median, p99), and what
//! they wrote: journal blocks and batches, checkpoint blocks and checkpoints, device flushes.
//! The stats window ends after a final `Db::flush` (a checkpoint, outside the latency timing),
//! so checkpoint writes are amortized over the commits. Usage: `commit_latency DIR [COMMITS]`.

use std::time::Instant;

use arbor::{Db, Options, Stats};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let commits: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let path = std::path::Path::new(&dir).join("commit-latency.arbor");
    let _ = std::fs::remove_file(&path);
    let db = Db::create(&path, Options::default())?;
    let mut lat_us = Vec::with_capacity(commits);
    let before = db.stats();
    let mut key = [0u8; 24];
    for i in 0..commits as u64 {
        key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        let start = Instant::now();
        let tx = db.begin_write()?;
        tx.tree("t")?.insert(key, [0x5A; 150])?;
        tx.commit()?;
        lat_us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    db.flush()?;
    let after = db.stats();
    lat_us.sort_by(f64::total_cmp);
    let pct = |p: f64| lat_us[((lat_us.len() - 1) as f64 * p) as usize];
    println!(
        "{commits} single-insert Immediate commits: median {:.1} µs, p99 {:.1} µs",
        pct(0.5),
        pct(0.99)
    );
    report_writes(&before, &after, commits);
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// One line per figure of the window from `before` to `after` (the final flush included).
fn report_writes(before: &Stats, after: &Stats, commits: usize) {
    let delta = |f: fn(&Stats) -> u64| f(after) - f(before);
    let per_commit = |n: u64| n as f64 / commits.max(1) as f64;
    let journal_blocks = delta(|s| s.journal_blocks_written);
    let checkpoint_blocks = delta(|s| s.blocks_written);
    println!("journal blocks/commit:    {:.2} (both copies)", per_commit(journal_blocks));
    println!("journal batches:          {}", delta(|s| s.journal_batches));
    println!(
        "checkpoint blocks/commit: {:.2} (tree and allocator blocks; +2 superblock copies \
         per checkpoint)",
        per_commit(checkpoint_blocks)
    );
    println!("checkpoints:              {}", delta(|s| s.checkpoints));
    println!("flushes/commit:           {:.2}", per_commit(delta(|s| s.flushes)));
}
