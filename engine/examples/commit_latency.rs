//! Latency of single-insert `Durability::Immediate` commits on a file (median, p99) and the
//! device flushes each one issued. Usage: `commit_latency DIR [COMMITS]`.

use std::time::Instant;

use arbor::{Db, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let commits: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let path = std::path::Path::new(&dir).join("commit-latency.arbor");
    let _ = std::fs::remove_file(&path);
    let db = Db::create(&path, Options::default())?;
    let mut lat_us = Vec::with_capacity(commits);
    let flushes_before = db.stats().flushes;
    let blocks_before = db.stats().blocks_written;
    let mut key = [0u8; 24];
    for i in 0..commits as u64 {
        key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        let start = Instant::now();
        let tx = db.begin_write()?;
        tx.tree("t")?.insert(key, [0x5A; 150])?;
        tx.commit()?;
        lat_us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let flushes = db.stats().flushes - flushes_before;
    let blocks = db.stats().blocks_written - blocks_before;
    lat_us.sort_by(f64::total_cmp);
    let pct = |p: f64| lat_us[((lat_us.len() - 1) as f64 * p) as usize];
    println!(
        "{commits} single-insert Immediate commits: median {:.1} µs, p99 {:.1} µs, \
         {:.2} flushes/commit, {:.1} blocks/commit (+2 superblock copies)",
        pct(0.5),
        pct(0.99),
        flushes as f64 / commits as f64,
        blocks as f64 / commits as f64
    );
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(())
}
