//! Snapshot figures for the closing notes (kv-bench has the side-by-side versions).
//!
//! `snapshot_bench reads DIR [KEYS] [THREADS]`: random gets per second through snapshots,
//! with no old snapshot outstanding and with one old snapshot held while a writer churns
//! (so the reader path meets retained history and pinned blocks), median of 5 rounds.
//!
//! `snapshot_bench growth DIR [TXNS] [PER_TXN] [KEYS]`: the long-reader experiment — one
//! snapshot held while TXNS durable transactions overwrite PER_TXN random keys each: file
//! bytes and used blocks before and after, without a bound and with a 1,000-block bound.

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

fn load(db: &Db, keys: u64) -> arbor::Result<()> {
    let tx = db.begin_write()?;
    let mut t = tx.tree("t")?;
    for i in 0..keys {
        t.insert(key(i), [0x5A; 150])?;
    }
    tx.commit()?;
    Ok(())
}

fn overwrite(db: &Db, rng: &mut Rng, keys: u64, n: u64, d: Durability) -> arbor::Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(d);
    let mut t = tx.tree("t")?;
    for _ in 0..n {
        t.insert(key(rng.next_u64() % keys), [rng.next_u64() as u8; 150])?;
    }
    tx.commit()?;
    Ok(())
}

fn gets_per_sec(db: &Arc<Db>, keys: u64, threads: usize) -> f64 {
    const GETS: u64 = 200_000;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = Arc::clone(db);
            std::thread::spawn(move || {
                let mut rng = Rng(t as u64 + 99);
                let mut found = 0u64;
                let mut tree = db.snapshot().unwrap().tree("t").unwrap().unwrap();
                for i in 0..GETS {
                    if i % 1000 == 0 {
                        // A fresh snapshot every 1,000 gets, as a reader serving requests would.
                        tree = db.snapshot().unwrap().tree("t").unwrap().unwrap();
                    }
                    found += u64::from(tree.get(key(rng.next_u64() % keys)).unwrap().is_some());
                }
                assert_eq!(found, GETS);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (GETS * threads as u64) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn reads(dir: &str, keys: u64, threads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let path = std::path::Path::new(dir).join("snapshot-reads.arbor");
    let _ = std::fs::remove_file(&path);
    // Bounds high enough that the old snapshot stays outstanding for the whole measurement.
    let opts =
        Options { modlog_max_bytes: 2 << 30, pinned_max_blocks: u64::MAX, ..Options::default() };
    let db = Arc::new(Db::create(&path, opts)?);
    load(&db, keys)?;
    for old in [false, true] {
        let held = if old { Some(db.snapshot()?) } else { None };
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut rng = Rng(7);
                let mut n = 0u64;
                let quiet = std::env::var_os("ARBOR_BENCH_NO_WRITER").is_some();
                while !quiet && !stop.load(Ordering::Relaxed) {
                    overwrite(&db, &mut rng, keys, 100, Durability::None).unwrap();
                    n += 1;
                }
                n
            })
        };
        let rounds: Vec<f64> = (0..5).map(|_| gets_per_sec(&db, keys, threads)).collect();
        stop.store(true, Ordering::Relaxed);
        let commits = writer.join().unwrap();
        let s = db.stats();
        println!(
            "{} old snapshot: {:.0} gets/s median over 5 rounds ({threads} reader thread(s), \
             {keys} keys; writer {commits} commits alongside; pinned {} blocks, history {} KiB, \
             expirations {})",
            if old { "1" } else { "0" },
            median(rounds),
            s.pinned_blocks,
            (s.modlog_bytes + s.retained_bytes) >> 10,
            s.snapshot_expirations
        );
        drop(held);
    }
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(())
}

fn growth(dir: &str, txns: u64, per: u64, keys: u64) -> Result<(), Box<dyn std::error::Error>> {
    for bounded in [false, true] {
        let path = std::path::Path::new(dir).join("snapshot-growth.arbor");
        let _ = std::fs::remove_file(&path);
        let mut opts = Options::default();
        if bounded {
            opts.pinned_max_blocks = 1000;
        } else {
            opts.pinned_max_blocks = u64::MAX;
            opts.modlog_max_bytes = u64::MAX;
        }
        let db = Db::create(&path, opts)?;
        load(&db, keys)?;
        let used = |db: &Db| {
            let s = db.stats();
            (s.blocks_total - s.blocks_free) * u64::from(s.block_bytes)
        };
        let (file0, used0) = (std::fs::metadata(&path)?.len(), used(&db));
        let snap = db.snapshot()?;
        let mut rng = Rng(1);
        let mut peak_used = used0;
        for n in 0..txns {
            if let Err(e) = overwrite(&db, &mut rng, keys, per, Durability::Immediate) {
                eprintln!("txn {n}: {e}; {:?}", db.stats());
                return Err(e.into());
            }
            peak_used = peak_used.max(used(&db));
        }
        let s = db.stats();
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "{}: file {:.1} → {:.1} MiB, used {:.1} → peak {:.1} MiB; pinned {} blocks, \
             snapshot expired: {}, expirations {}",
            if bounded { "bound 1,000 blocks" } else { "unbounded" },
            mib(file0),
            mib(std::fs::metadata(&path)?.len()),
            mib(used0),
            mib(peak_used),
            s.pinned_blocks,
            snap.is_expired(),
            s.snapshot_expirations
        );
        drop(snap);
        drop(db);
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let dir = args.get(1).cloned().unwrap_or_else(|| ".".into());
    match args.first().map(String::as_str) {
        Some("reads") => reads(&dir, arg(2, 1_000_000), arg(3, 1) as usize),
        Some("growth") => growth(&dir, arg(2, 2000), arg(3, 1000), arg(4, 1_000_000)),
        _ => Err(
            "usage: snapshot_bench reads DIR [KEYS] [THREADS] | growth DIR [TXNS] [PER_TXN] [KEYS]"
                .into(),
        ),
    }
}
