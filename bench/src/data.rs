//! The seeded data set every engine sees: keys and values (24 and 150 random bytes unless
//! `--key-size`, `--value-size`, `--distribution` say otherwise), and the precomputed
//! operation streams (read keys, scan starts, YCSB mixes, overwrites).
//!
//! Every child process regenerates the same data set from `Sizes` and the seed, so each engine
//! gets identical work without passing megabytes between processes.

use crate::config::{Config, Distribution};
use crate::rng::SplitMix64;
use crate::zipf::Zipfian;

/// Default key and value sizes (the redb benchmark's).
pub const KEY_BYTES: usize = 24;
pub const VALUE_BYTES: usize = 150;
pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

/// YCSB's default skew (`zipfian_constant`).
pub const ZIPF_THETA: f64 = 0.99;

/// Sizes of one run. Every field is a command-line flag (`--keys`, `--durable-commits`, ...),
/// so the parent hands them to each engine's child process verbatim.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct Sizes {
    /// Keys bulk-loaded in one transaction.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Durable transactions of one insert each (latency median and p99 come from these).
    #[arg(long, default_value_t = 1000)]
    pub durable_commits: usize,
    /// Durable transactions of `--batch-size` inserts each.
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Point reads of loaded keys (1 thread, then split over `--threads`).
    #[arg(long, default_value_t = 200_000)]
    pub reads: usize,
    /// Reader threads of the multi-threaded read row.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Range scans of `--scan-len` entries each.
    #[arg(long, default_value_t = 50_000)]
    pub scans: usize,
    #[arg(long, default_value_t = 10)]
    pub scan_len: usize,
    /// Operations of each YCSB mix (A: 50% updates, B: 5%); every update is a durable commit.
    #[arg(long, default_value_t = 4000)]
    pub ycsb_ops: usize,
    /// Durable single-insert commits in the concurrent-writers rows (split over the writers).
    #[arg(long, default_value_t = 800)]
    pub concurrent_commits: usize,
    /// Writer threads of the group-commit row (compared with one writer).
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Long-reader experiment: durable transactions that overwrite keys while a reader is held.
    #[arg(long, default_value_t = 50)]
    pub overwrite_txns: usize,
    /// Long-reader experiment: random loaded keys overwritten by each of those transactions.
    #[arg(long, default_value_t = 200)]
    pub overwrite_keys: usize,
    /// Cold-read rows: distinct loaded keys read on a store just closed and reopened (page
    /// cache dropped), once per row.
    #[arg(long, default_value_t = 5000)]
    pub cold_reads: usize,
    /// Cold-read rows: keys per batched read call (`arbor::Tree::get_many`).
    #[arg(long, default_value_t = 32)]
    pub cold_batch: usize,
    /// Device rows: milliseconds of random 4 KiB reads at each queue depth (QD1, QD32).
    #[arg(long, default_value_t = 200)]
    pub device_ms: usize,
}

impl Sizes {
    /// Tiny sizes for `--quick-smoke`: every workload end to end in a few seconds.
    pub fn smoke() -> Sizes {
        Sizes {
            keys: 2000,
            durable_commits: 50,
            batches: 2,
            batch_size: 100,
            reads: 2000,
            threads: 2,
            scans: 500,
            scan_len: 10,
            ycsb_ops: 200,
            concurrent_commits: 32,
            writers: 4,
            overwrite_txns: 5,
            overwrite_keys: 50,
            cold_reads: 200,
            cold_batch: 32,
            device_ms: 50,
        }
    }

    /// The flags that reproduce these sizes in a child process.
    pub fn to_args(&self) -> Vec<String> {
        let pairs = [
            ("--keys", self.keys),
            ("--durable-commits", self.durable_commits),
            ("--batches", self.batches),
            ("--batch-size", self.batch_size),
            ("--reads", self.reads),
            ("--threads", self.threads),
            ("--scans", self.scans),
            ("--scan-len", self.scan_len),
            ("--ycsb-ops", self.ycsb_ops),
            ("--concurrent-commits", self.concurrent_commits),
            ("--writers", self.writers),
            ("--overwrite-txns", self.overwrite_txns),
            ("--overwrite-keys", self.overwrite_keys),
            ("--cold-reads", self.cold_reads),
            ("--cold-batch", self.cold_batch),
            ("--device-ms", self.device_ms),
        ];
        pairs.iter().flat_map(|(flag, v)| [flag.to_string(), v.to_string()]).collect()
    }

    /// Sizes the workloads cannot run with, as a message.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("--keys", self.keys),
            ("--threads", self.threads),
            ("--writers", self.writers),
            ("--scan-len", self.scan_len),
            ("--batch-size", self.batch_size),
            ("--cold-batch", self.cold_batch),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.keys < 2 {
            return Err("--keys must be at least 2".into());
        }
        Ok(())
    }
}

/// One YCSB operation on a loaded key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read(u32),
    Update(u32),
}

/// Keys and values, generated once from a seed so every engine gets identical work.
pub struct Dataset {
    pub load_keys: Vec<Key>,
    pub load_values: Vec<Value>,
    /// Fresh keys for the durable single-insert transactions.
    pub single_keys: Vec<Key>,
    pub single_values: Vec<Value>,
    /// Fresh keys for the batch transactions, `batches * batch_size` of them.
    pub batch_keys: Vec<Key>,
    pub batch_values: Vec<Value>,
    /// Fresh keys for the concurrent-writer rows: one half for 1 writer, one for N writers.
    pub concurrent_keys: Vec<Key>,
    pub concurrent_values: Vec<Value>,
    /// Loaded keys to read, in random order (with repeats).
    pub read_keys: Vec<Key>,
    /// Loaded keys to start range scans at.
    pub scan_starts: Vec<Key>,
    /// YCSB A and B: indexes into `load_keys`, zipfian (scrambled, hot keys spread out).
    pub ycsb_a: Vec<Op>,
    pub ycsb_b: Vec<Op>,
    /// New values written by YCSB updates and the overwrite transactions.
    pub update_value: Value,
    /// Long-reader experiment: per transaction, indexes into `load_keys` to overwrite.
    pub overwrites: Vec<Vec<u32>>,
    /// The keys removed in the removal transaction: the first half of the loaded keys.
    pub remove_count: usize,
    /// Distinct loaded keys for the cold-read rows, in random order, all from the half the
    /// removals keep (those rows run last).
    pub cold_keys: Vec<Key>,
}

/// Makes keys and values: random keys, or with `Distribution::Sequential` ascending ones (the
/// running index big-endian in the first 8 bytes, zeros after), so fresh keys follow the
/// loaded ones.
struct Generator<'a> {
    rng: SplitMix64,
    cfg: &'a Config,
    next_index: u64,
}

impl Generator<'_> {
    fn pairs(&mut self, n: usize) -> (Vec<Key>, Vec<Value>) {
        let mut keys = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let mut k = vec![0u8; self.cfg.key_size];
            if self.cfg.distribution == Distribution::Sequential {
                k[..8].copy_from_slice(&self.next_index.to_be_bytes());
                self.next_index += 1;
            } else {
                self.rng.fill(&mut k);
            }
            let mut v = vec![0u8; self.cfg.value_size];
            self.rng.fill(&mut v);
            keys.push(k);
            values.push(v);
        }
        (keys, values)
    }
}

/// Picks loaded keys (by index) as `--distribution` says.
struct Picker {
    dist: Distribution,
    zipf: Option<Zipfian>,
    n: usize,
    cursor: usize,
}

impl Picker {
    fn new(dist: Distribution, n: usize) -> Picker {
        let zipf = match dist {
            Distribution::Zipf(theta) => Some(Zipfian::new(n as u64, theta)),
            _ => None,
        };
        Picker { dist, zipf, n, cursor: 0 }
    }

    fn next(&mut self, rng: &mut SplitMix64) -> usize {
        match (&self.zipf, self.dist) {
            (Some(z), _) => z.next_scrambled(rng) as usize,
            (None, Distribution::Sequential) => {
                self.cursor = (self.cursor + 1) % self.n;
                self.cursor
            }
            (None, _) => rng.below(self.n),
        }
    }
}

fn ycsb(rng: &mut SplitMix64, zipf: &Zipfian, ops: usize, update_pct: u64) -> Vec<Op> {
    (0..ops)
        .map(|_| {
            let index = zipf.next_scrambled(rng) as u32;
            if rng.next_u64() % 100 < update_pct {
                Op::Update(index)
            } else {
                Op::Read(index)
            }
        })
        .collect()
}

/// `n` distinct keys of `keys` (all of them if fewer), in random order: a partial
/// Fisher-Yates shuffle of the indexes.
fn cold_keys(rng: &mut SplitMix64, keys: &[Key], n: usize) -> Vec<Key> {
    let mut index: Vec<u32> = (0..keys.len() as u32).collect();
    let n = n.min(keys.len());
    for i in 0..n {
        let j = i + rng.below(keys.len() - i);
        index.swap(i, j);
    }
    index[..n].iter().map(|&i| keys[i as usize].clone()).collect()
}

impl Dataset {
    pub fn generate(sizes: &Sizes, cfg: &Config, seed: u64) -> Dataset {
        assert!(sizes.keys >= 2 && u32::try_from(sizes.keys).is_ok(), "keys out of range");
        let mut gen = Generator { rng: SplitMix64::new(seed), cfg, next_index: 0 };
        let (load_keys, load_values) = gen.pairs(sizes.keys);
        let (single_keys, single_values) = gen.pairs(sizes.durable_commits);
        let (batch_keys, batch_values) = gen.pairs(sizes.batches * sizes.batch_size);
        let (concurrent_keys, concurrent_values) = gen.pairs(2 * sizes.concurrent_commits);
        let mut rng = gen.rng;
        let mut picker = Picker::new(cfg.distribution, load_keys.len());
        let mut pick = |rng: &mut SplitMix64, n: usize| -> Vec<Key> {
            (0..n).map(|_| load_keys[picker.next(rng)].clone()).collect()
        };
        let read_keys = pick(&mut rng, sizes.reads);
        let scan_starts = pick(&mut rng, sizes.scans);
        let zipf = Zipfian::new(sizes.keys as u64, cfg.distribution.ycsb_theta());
        let ycsb_a = ycsb(&mut rng, &zipf, sizes.ycsb_ops, 50);
        let ycsb_b = ycsb(&mut rng, &zipf, sizes.ycsb_ops, 5);
        let mut update_value = vec![0u8; cfg.value_size];
        rng.fill(&mut update_value);
        let mut picker = Picker::new(cfg.distribution, load_keys.len());
        let overwrites = (0..sizes.overwrite_txns)
            .map(|_| (0..sizes.overwrite_keys).map(|_| picker.next(&mut rng) as u32).collect())
            .collect();
        let remove_count = load_keys.len() / 2;
        let cold_keys = cold_keys(&mut rng, &load_keys[remove_count..], sizes.cold_reads);
        Dataset {
            remove_count,
            cold_keys,
            load_keys,
            load_values,
            single_keys,
            single_values,
            batch_keys,
            batch_values,
            concurrent_keys,
            concurrent_values,
            read_keys,
            scan_starts,
            ycsb_a,
            ycsb_b,
            update_value,
            overwrites,
        }
    }

    /// Bytes of the data set itself, part of every engine's peak RSS.
    pub fn bytes(&self) -> usize {
        let key = self.load_keys.first().map_or(0, Vec::len);
        let kv = key + self.update_value.len();
        (self.load_keys.len() + self.single_keys.len() + self.batch_keys.len()) * kv
            + self.concurrent_keys.len() * kv
            + (self.read_keys.len() + self.scan_starts.len() + self.cold_keys.len()) * key
            + (self.ycsb_a.len() + self.ycsb_b.len()) * std::mem::size_of::<Op>()
            + self.overwrites.iter().map(|o| o.len() * 4).sum::<usize>()
    }
}
