//! The write rows of kv-bench, timed phase by phase: `write_phases DIR [KEYS]` loads KEYS
//! (default 1,000,000) random 24-byte keys with random 150-byte values in one transaction
//! (inserts, then the commit), runs 20 durable transactions of 1,000 new random inserts
//! each, then removes half the loaded keys in one transaction (removals, then its commit).
//! Per phase: wall time, process CPU time (user and system) and minor page faults, and on
//! stderr the phase's CLOCK_MONOTONIC bounds (for `perf record -k CLOCK_MONOTONIC` and
//! `perf report --time`). Each phase is a function of its own, so `valgrind
//! --tool=callgrind --toggle-collect='*phase_*'` counts one at a time.

use std::time::Instant;

use arbor::{Db, Durability, Options};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let path = std::path::Path::new(&dir).join("write-phases.arbor");
    let _ = std::fs::remove_file(&path);
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let keys = random_bytes::<24>(&mut rng, n);
    let values = random_bytes::<150>(&mut rng, n);
    let batch_keys = random_bytes::<24>(&mut rng, 20_000);
    let opts = Options { cache_bytes: 1 << 30, ..Options::default() };
    let db = Db::create(&path, opts)?;
    let tx = measure("inserts", n, || phase_inserts(&db, &keys, &values))?;
    measure("commit", n, || phase_commit(tx))?;
    measure("batch", batch_keys.len(), || phase_batch(&db, &batch_keys, &values))?;
    let (tx, removed) = measure("removals", n / 2, || phase_removals(&db, &keys[..n / 2]))?;
    assert_eq!(removed, n / 2, "removed keys");
    measure("rcommit", n / 2, || phase_commit(tx))?;
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Runs `f`, printing its wall time, CPU time and minor faults (per op: `ops`).
fn measure<T>(name: &str, ops: usize, f: impl FnOnce() -> Res<T>) -> Res<T> {
    let (user0, sys0, flt0) = usage();
    let (mono0, start) = (monotonic(), Instant::now());
    let out = f()?;
    let wall = start.elapsed().as_secs_f64();
    let (user1, sys1, flt1) = usage();
    // For `perf record -k CLOCK_MONOTONIC` and `perf report --time START,END`.
    eprintln!("{name}: monotonic {mono0:.6},{:.6}", monotonic());
    let per = |s: f64| s * 1e9 / ops.max(1) as f64;
    let (user, sys) = (user1 - user0, sys1 - sys0);
    println!(
        "{name:9} wall {wall:6.3} s {:5.0} ns/op, cpu {:5.0} ns/op (user {:5.0}, sys {:5.0}), \
         minflt {}",
        per(wall),
        per(user + sys),
        per(user),
        per(sys),
        flt1 - flt0
    );
    Ok(out)
}

/// CLOCK_MONOTONIC in seconds.
fn monotonic() -> f64 {
    // SAFETY: clock_gettime fills the struct it is given.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Process CPU seconds (user, system) and minor faults so far.
fn usage() -> (f64, f64, i64) {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime), ru.ru_minflt)
}

#[inline(never)]
fn phase_inserts<'d>(
    db: &'d Db,
    keys: &[[u8; 24]],
    values: &[[u8; 150]],
) -> Res<arbor::WriteTxn<'d>> {
    let tx = db.begin_write()?;
    let mut t = tx.tree("t")?;
    for (k, v) in keys.iter().zip(values) {
        t.insert(k, v)?;
    }
    drop(t);
    Ok(tx)
}

#[inline(never)]
fn phase_commit(mut tx: arbor::WriteTxn<'_>) -> Res<()> {
    tx.set_durability(Durability::Immediate);
    tx.commit()?;
    Ok(())
}

#[inline(never)]
fn phase_batch(db: &Db, keys: &[[u8; 24]], values: &[[u8; 150]]) -> Res<()> {
    for (ks, vs) in keys.chunks(1000).zip(values.chunks(1000)) {
        let mut tx = db.begin_write()?;
        let mut t = tx.tree("t")?;
        for (k, v) in ks.iter().zip(vs) {
            t.insert(k, v)?;
        }
        drop(t);
        tx.set_durability(Durability::Immediate);
        tx.commit()?;
    }
    Ok(())
}

#[inline(never)]
fn phase_removals<'d>(db: &'d Db, keys: &[[u8; 24]]) -> Res<(arbor::WriteTxn<'d>, usize)> {
    let tx = db.begin_write()?;
    let mut t = tx.tree("t")?;
    let mut removed = 0;
    for k in keys {
        removed += usize::from(t.remove(k)?.is_some());
    }
    drop(t);
    Ok((tx, removed))
}

/// `n` random byte arrays (xorshift64).
fn random_bytes<const N: usize>(x: &mut u64, n: usize) -> Vec<[u8; N]> {
    (0..n)
        .map(|_| {
            let mut k = [0u8; N];
            for c in k.chunks_mut(8) {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                c.copy_from_slice(&x.to_be_bytes()[..c.len()]);
            }
            k
        })
        .collect()
}
