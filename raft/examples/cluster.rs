//! A 3-node Arbor-backed Raft group in one process, over an in-memory network.
//!
//! ```sh
//! cargo run --release -p arbor-raft --example cluster                 # demo + measurement
//! cargo run --release -p arbor-raft --example cluster -- --seconds 5 --clients 64 --rounds 5
//! ```
//!
//! Puts and reads through the leader, kills a follower, writes on, compacts the leader's log
//! into a snapshot, restarts the follower (it installs the snapshot) and checks that all
//! three maps agree. Then measures durable writes per second: the group (each write
//! acknowledged once a majority has it on disk and the leader applied it) beside one Arbor
//! store doing the same `Immediate` commits, with the same number of concurrent clients.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor::{Db, Durability, Options};
use arbor_raft::mem_cluster::{local_config, BoxError, Cluster};
use arbor_raft::{LogSync, Request, StoreOptions};

const VALUE_BYTES: usize = 100;

struct Args {
    seconds: f64,
    clients: usize,
    rounds: usize,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args { seconds: 2.0, clients: 32, rounds: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse()?,
            "--clients" => a.clients = value.parse()?,
            "--rounds" => a.rounds = value.parse()?,
            _ => return Err(format!("unknown flag {flag} (--seconds, --clients, --rounds)").into()),
        }
    }
    if a.rounds == 0 || a.clients == 0 {
        return Err("--rounds and --clients must be at least 1".into());
    }
    Ok(a)
}

/// What one row of the table measures.
#[derive(Clone, Copy, Debug)]
enum Setup {
    Group(LogSync),
    Single,
}

impl Setup {
    fn label(self) -> String {
        match self {
            Setup::Group(sync) => format!("3-node group, appends {sync:?}"),
            Setup::Single => "single store, Immediate commits".into(),
        }
    }
}

fn main() -> Result<(), BoxError> {
    let args = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    println!("stores in {} (temporary)", dir.path().display());
    rt.block_on(demo(&dir.path().join("demo")))?;
    let setups =
        [Setup::Group(LogSync::Pipelined), Setup::Group(LogSync::Immediate), Setup::Single];
    let client_counts = [1, args.clients];
    // Rounds interleave the setups, so a burst of load from elsewhere on the machine lands
    // on one sample of each rather than on every sample of one; the table shows medians.
    let mut samples = vec![Vec::new(); setups.len() * client_counts.len()];
    for round in 0..args.rounds {
        for (i, setup) in setups.iter().enumerate() {
            for (j, &clients) in client_counts.iter().enumerate() {
                let path = dir.path().join(format!("r{round}-{i}-{j}"));
                let rate = match *setup {
                    Setup::Group(sync) => rt.block_on(group_rate(&path, sync, clients, &args))?,
                    Setup::Single => single_rate(&path.with_extension("arbor"), clients, &args)?,
                };
                samples[i * client_counts.len() + j].push(rate);
            }
        }
    }
    println!();
    println!(
        "durable writes/s, {VALUE_BYTES}-byte values, median of {} rounds of {:.0} s:",
        args.rounds, args.seconds
    );
    println!("{:<40} {:>10} {:>12}", "", "1 client", format!("{} clients", args.clients));
    for (i, setup) in setups.iter().enumerate() {
        let one = median(&mut samples[i * 2]);
        let many = median(&mut samples[i * 2 + 1]);
        println!("{:<40} {one:>10.0} {many:>12.0}", setup.label());
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn demo(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let config = openraft::Config { max_in_snapshot_log_to_keep: 0, ..local_config() };
    let mut c = Cluster::start(dir, &[1, 2, 3], config, StoreOptions::default()).await?;
    let leader = c.wait_for_leader(Duration::from_secs(10)).await?;
    println!("3 nodes up, leader {leader}");
    c.put(b"greeting", b"hello, replicated world").await?;
    let read = c.read(b"greeting").await?.unwrap_or_default();
    println!("put greeting, linearizable read: {:?}", String::from_utf8_lossy(&read));

    let follower = *c.running().iter().find(|&&id| id != leader).ok_or("no follower")?;
    c.kill(follower).await?;
    for i in 0..1000u32 {
        c.put(format!("key-{i:04}").as_bytes(), &[b'v'; VALUE_BYTES]).await?;
    }
    let raft = &c.node(leader)?.raft;
    let applied = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
    raft.trigger().snapshot().await?;
    raft.wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= applied), "snapshot and purge")
        .await?;
    println!("node {follower} killed; 1000 puts; leader snapshot at {applied}, log purged");

    c.start_node(follower).await?;
    c.wait_all_applied(Duration::from_secs(30)).await?;
    let snap = c.node(follower)?.raft.metrics().borrow().snapshot;
    println!("node {follower} restarted, installed snapshot {snap:?}");
    let dumps: Vec<_> =
        c.running().iter().map(|&id| c.node(id).and_then(|n| Ok(n.kv.dump()?.1))).collect();
    let first = dumps[0].as_ref().map_err(|e| e.to_string())?;
    for d in &dumps {
        if d.as_ref().map_err(|e| e.to_string())? != first {
            return Err("the nodes' maps differ".into());
        }
    }
    println!("all 3 nodes hold the same {} keys", first.len());
    c.shutdown().await
}

/// Writes per second through the leader of a fresh 3-node group, `clients` at a time.
async fn group_rate(
    dir: &Path,
    sync: LogSync,
    clients: usize,
    args: &Args,
) -> Result<f64, BoxError> {
    std::fs::create_dir_all(dir)?;
    let opts = StoreOptions { log_sync: sync, ..StoreOptions::default() };
    let c = Cluster::start(dir, &[1, 2, 3], local_config(), opts).await?;
    let raft = c.node(c.wait_for_leader(Duration::from_secs(10)).await?)?.raft.clone();
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (raft, done) = (raft.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let key = format!("c{client}-{n}").into_bytes();
                raft.client_write(Request::Put { key, value: vec![b'v'; VALUE_BYTES] }).await?;
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok::<(), BoxError>(())
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    c.shutdown().await?;
    Ok(rate)
}

/// Immediate commits per second of one put each on one store, `clients` threads at a time.
fn single_rate(path: &Path, clients: usize, args: &Args) -> Result<f64, BoxError> {
    let db = Db::create(path, Options::default())?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (db, done) = (&db, &done);
                s.spawn(move || -> Result<(), arbor::Error> {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let mut tx = db.begin_write()?;
                        tx.set_durability(Durability::Immediate);
                        let key = format!("c{client}-{n}").into_bytes();
                        tx.tree("kv")?.insert(&key, [b'v'; VALUE_BYTES])?;
                        tx.commit()?;
                        done.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a client panicked")?.map_err(|e| e.into()))
    })
    .map_err(|e: BoxError| e)?;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
