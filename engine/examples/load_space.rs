//! Where the bytes of a file go after a bulk load (kv-bench's "file size after load" row):
//! `load_space DIR [KEYS] [ascending|fill]` loads KEYS (default 1,000,000) random 24-byte keys
//! with 150-byte values in one transaction, commits, and prints the file's size and disk
//! blocks, the journal region, the tree's leaves and internal nodes with their fill, the
//! allocator's blocks and the free (unused) blocks, and the load's time. `fill` turns on
//! `Options::fill_siblings`.

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use arbor::{Db, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let mode = args.next().unwrap_or_default();
    let ascending = mode == "ascending";
    let path = std::path::Path::new(&dir).join("load-space.arbor");
    let _ = std::fs::remove_file(&path);
    let mut keys = random_keys(n);
    if ascending {
        keys.sort();
    }
    let fill_siblings = mode == "fill";
    let opts = Options { cache_bytes: 1 << 30, fill_siblings, ..Options::default() };
    let db = Db::create(&path, opts)?;
    let start = Instant::now();
    let tx = db.begin_write()?;
    let mut t = tx.tree("t")?;
    for k in &keys {
        t.insert(k, [0x5A; 150])?;
    }
    drop(t);
    let inserted = start.elapsed().as_secs_f64();
    tx.commit()?;
    let secs = start.elapsed().as_secs_f64();
    let meta = std::fs::metadata(&path)?;
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "load: {n} keys in {secs:.2} s ({:.1}k/s; inserts {inserted:.2} s, commit {:.2} s)",
        n as f64 / secs / 1e3,
        secs - inserted
    );
    println!("file {:.1} MB, disk blocks {:.1} MB", mb(meta.len()), mb(meta.blocks() * 512));
    report(&db)?;
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// `n` random 24-byte keys (xorshift64).
fn random_keys(n: usize) -> Vec<[u8; 24]> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            let mut k = [0u8; 24];
            for c in k.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_be_bytes());
            }
            k
        })
        .collect()
}

/// The store's blocks by use, and the shape of its trees.
fn report(db: &Db) -> Result<(), Box<dyn std::error::Error>> {
    let mb = |b: u64| b as f64 / 1e6;
    let st = db.stats();
    let bb = u64::from(st.block_bytes);
    println!(
        "blocks: total {} ({:.1} MB), free {} ({:.1} MB), reserved (superblocks + journal) {} \
         ({:.1} MB)",
        st.blocks_total,
        mb(st.blocks_total * bb),
        st.blocks_free,
        mb(st.blocks_free * bb),
        st.blocks_reserved,
        mb(st.blocks_reserved * bb)
    );
    let report = db.check()?;
    if !report.is_ok() {
        println!("check found problems: {:?}", report.problems);
    }
    println!(
        "check: tree blocks {} ({:.1} MB), allocator {}, pending {}, free {}",
        report.tree_blocks,
        mb(report.tree_blocks * bb),
        report.allocator_blocks,
        report.pending_blocks,
        report.free_blocks
    );
    for s in &report.tree_stats {
        println!(
            "tree {:?}: depth {}, leaves {}, internal {}, entries {}, fill {:.3}",
            String::from_utf8_lossy(&s.name),
            s.depth,
            s.leaf_blocks,
            s.internal_blocks,
            s.entries,
            s.fill()
        );
    }
    Ok(())
}
