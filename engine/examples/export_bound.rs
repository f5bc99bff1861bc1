//! The measurement behind the snapshot-bound defaults (`Options::modlog_max_bytes`,
//! `Options::pinned_max_blocks`; issue 17): an export of a KEYS-key tree through one
//! snapshot while a steady writer overwrites PER_TXN random keys per commit, with the bounds
//! off. Prints the export's time and the peak history (mod log plus retained images) and
//! pinned blocks it held, per writer durability.
//!
//! `cargo run --release -p arbor --example export_bound DIR [KEYS] [PER_TXN]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arbor::io::SplitMix64 as Rng;
use arbor::{Db, Durability, Options};

fn key(i: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..16].copy_from_slice(&i.to_le_bytes());
    k
}

/// With `bounded`, the default bounds apply and the export is slowed to about 4 s (a
/// consumer that does work per item), so the writer rewrites the tree several times.
fn run(dir: &str, keys: u64, per_txn: u64, d: Durability, bounded: bool) -> arbor::Result<()> {
    let path = std::path::Path::new(dir).join("export_bound.arbor");
    let _ = std::fs::remove_file(&path);
    let mut opts = Options::default();
    if !bounded {
        opts.modlog_max_bytes = u64::MAX;
        opts.pinned_max_blocks = u64::MAX;
    }
    let db = Arc::new(Db::create(&path, opts)?);
    let tx = db.begin_write()?;
    let mut t = tx.tree("t")?;
    for i in 0..keys {
        t.insert(key(i), [0x5A; 150])?;
    }
    tx.commit()?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        std::thread::spawn(move || -> arbor::Result<u64> {
            let mut rng = Rng(1);
            let mut commits = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut tx = db.begin_write()?;
                tx.set_durability(d);
                let mut t = tx.tree("t")?;
                for _ in 0..per_txn {
                    t.insert(key(rng.next_u64() % keys), [rng.next_u64() as u8; 150])?;
                }
                tx.commit()?;
                commits += 1;
            }
            Ok(commits)
        })
    };
    let start = Instant::now();
    let (mut n, mut peak_hist, mut peak_pinned) = (0u64, 0u64, 0u64);
    let tree = db.snapshot()?.tree("t")?.expect("loaded");
    for item in tree.iter()? {
        item?;
        n += 1;
        if bounded && n % (keys / 4000).max(1) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if n % 10_000 == 0 {
            let s = db.stats();
            peak_hist = peak_hist.max(s.modlog_bytes + s.retained_bytes);
            peak_pinned = peak_pinned.max(s.pinned_blocks);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().expect("writer")?;
    println!(
        "{d:?} (bounds {}): exported {n} in {secs:.1} s while {commits} commits x {per_txn} \
         ran; peak history {:.1} MiB, peak pinned {peak_pinned} blocks ({:.1} MiB); \
         store {} blocks",
        if bounded { "default" } else { "off" },
        peak_hist as f64 / 1048576.0,
        peak_pinned as f64 * 4096.0 / 1048576.0,
        db.stats().blocks_total
    );
    Ok(())
}

fn main() -> arbor::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("target", String::as_str);
    let keys = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let per_txn = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    for bounded in [false, true] {
        for d in [Durability::Immediate, Durability::None] {
            run(dir, keys, per_txn, d, bounded)?;
        }
    }
    Ok(())
}
