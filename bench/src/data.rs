//! The seeded data set every engine sees: 24-byte random keys, 150-byte random values.

use crate::rng::SplitMix64;

pub const KEY_BYTES: usize = 24;
pub const VALUE_BYTES: usize = 150;
pub type Key = [u8; KEY_BYTES];
pub type Value = [u8; VALUE_BYTES];

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Keys bulk-loaded in one transaction.
    pub keys: usize,
    /// Durable transactions of one insert each.
    pub durable_commits: usize,
    /// Durable transactions of `batch_size` inserts each.
    pub batches: usize,
    pub batch_size: usize,
    /// Point reads of loaded keys.
    pub reads: usize,
    /// Range scans, each of `scan_len` entries.
    pub scans: usize,
    pub scan_len: usize,
}

impl Sizes {
    pub fn default_suite(keys: usize) -> Sizes {
        Sizes {
            keys,
            durable_commits: 500,
            batches: 20,
            batch_size: 1000,
            reads: 200_000,
            scans: 50_000,
            scan_len: 10,
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            keys: 2000,
            durable_commits: 50,
            batches: 2,
            batch_size: 100,
            reads: 2000,
            scans: 500,
            scan_len: 10,
        }
    }
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
    /// Loaded keys to read, in random order (with repeats).
    pub read_keys: Vec<Key>,
    /// Loaded keys to start range scans at.
    pub scan_starts: Vec<Key>,
    /// The keys removed in the removal transaction: the first half of the loaded keys.
    pub remove_count: usize,
}

fn gen_pairs(rng: &mut SplitMix64, n: usize) -> (Vec<Key>, Vec<Value>) {
    let mut keys = vec![[0u8; KEY_BYTES]; n];
    let mut values = vec![[0u8; VALUE_BYTES]; n];
    for (k, v) in keys.iter_mut().zip(values.iter_mut()) {
        rng.fill(k);
        rng.fill(v);
    }
    (keys, values)
}

impl Dataset {
    pub fn generate(sizes: &Sizes, seed: u64) -> Dataset {
        let mut rng = SplitMix64::new(seed);
        let (load_keys, load_values) = gen_pairs(&mut rng, sizes.keys);
        let (single_keys, single_values) = gen_pairs(&mut rng, sizes.durable_commits);
        let (batch_keys, batch_values) = gen_pairs(&mut rng, sizes.batches * sizes.batch_size);
        let pick = |rng: &mut SplitMix64, n: usize| -> Vec<Key> {
            (0..n).map(|_| load_keys[rng.below(load_keys.len())]).collect()
        };
        let read_keys = pick(&mut rng, sizes.reads);
        let scan_starts = pick(&mut rng, sizes.scans);
        Dataset {
            remove_count: load_keys.len() / 2,
            load_keys,
            load_values,
            single_keys,
            single_values,
            batch_keys,
            batch_values,
            read_keys,
            scan_starts,
        }
    }
}
