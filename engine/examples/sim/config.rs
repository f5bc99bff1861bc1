//! What one seed draws before its first step: device, store options, clients, rates.

use std::time::Duration;

use arbor::io::SplitMix64;
use arbor::{Durability, Options, SnapshotPolicy};

/// Switches from the command line that every seed shares.
#[derive(Clone, Copy, Debug)]
pub struct Flags {
    /// Inject faults that change stored bytes behind the engine (bit rot at rest, lost and
    /// misdirected writes). They expose the known silent-fallback defect.
    pub known_faults: bool,
    /// Print every event of the trace.
    pub trace: bool,
    /// After every change inside a transaction, scan the whole transaction view and compare
    /// it with the model (slow; finds the first operation that goes wrong).
    pub paranoid: bool,
    /// Self-test: switch off the engine's pinned set (`Db::testing_disable_pinning`), so
    /// freed blocks are reused under live snapshots; the run must then report failures.
    pub break_pinning: bool,
}

/// One seed's parameters.
#[derive(Clone, Debug)]
pub struct Config {
    pub device_bytes: u64,
    pub sector_bytes: u32,
    pub opts: Options,
    /// Logical clients whose turns the seed picks.
    pub clients: u64,
    pub tree_names: Vec<String>,
    /// Distinct ordinary keys per tree.
    pub key_space: u64,
    /// Chance per step of a simulated power loss, in 1/1000.
    pub crash_per_mille: u64,
    /// Chance per step of injecting a fault, in 1/1000.
    pub fault_per_mille: u64,
    /// Values up to 16 blocks (fills small devices, exercises `NoSpace`).
    pub big_values: bool,
    /// The undo cap is small enough that `TransactionTooLarge` is an expected answer.
    pub small_undo_cap: bool,
    pub known_faults: bool,
    pub break_pinning: bool,
}

fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

impl Config {
    pub fn draw(rng: &mut SplitMix64, flags: Flags) -> Config {
        let block_bytes = if rng.chance(10) { 8192 } else { 4096 };
        let device_bytes: u64 = match rng.below(100) {
            0..=9 => (3 << 19) + rng.below(8) * 65536, // about 1.5 MiB: NoSpace is common
            10..=59 => 4 << 20,
            60..=84 => 8 << 20,
            _ => 16 << 20,
        };
        let sector_bytes = if rng.chance(30) { 4096 } else { 512 };
        let small_undo_cap = rng.chance(5);
        let policy = if rng.chance(10) {
            SnapshotPolicy::WriterWaits { timeout: Duration::ZERO }
        } else {
            SnapshotPolicy::ExpireOldest
        };
        let opts = Options {
            block_bytes,
            cache_bytes: pick(rng, &[128 << 10, 1 << 20]),
            dirty_max_bytes: pick(rng, &[32 << 10, 256 << 10, 1 << 20]),
            modlog_max_bytes: if rng.chance(40) {
                pick(rng, &[8 << 10, 32 << 10])
            } else {
                64 << 20
            },
            pinned_max_blocks: if rng.chance(30) { pick(rng, &[4, 16, 64]) } else { 65536 },
            snapshot_policy: policy,
            txn_undo_max_bytes: if small_undo_cap { 64 << 10 } else { 256 << 20 },
            durability: pick(rng, &[Durability::Immediate, Durability::Eventual, Durability::None]),
            // Never a wall-clock decision: either every Eventual commit is due, or none is.
            eventual_interval: if rng.chance(50) {
                Duration::ZERO
            } else {
                Duration::from_secs(86_400)
            },
            // Deterministic: no background thread; checkpoints run in committing threads.
            checkpoint_interval: None,
            // Small rings wrap often; large records go through checkpoints.
            journal_bytes: pick(rng, &[64 << 10, 256 << 10, 1 << 20]),
            journal_record_max: pick(rng, &[0, 0, 2048]),
            ..Options::default()
        };
        let trees = 1 + rng.below(6);
        let mut tree_names: Vec<String> = (0..trees).map(|i| format!("t{i}")).collect();
        if rng.chance(20) {
            tree_names.push(String::new());
        }
        Config {
            device_bytes,
            sector_bytes,
            opts,
            clients: 1 + rng.below(4),
            tree_names,
            key_space: pick(rng, &[16, 64, 256, 1024]),
            crash_per_mille: pick(rng, &[2, 10, 30, 60]),
            fault_per_mille: pick(rng, &[0, 10, 30]),
            big_values: rng.chance(30),
            small_undo_cap,
            known_faults: flags.known_faults,
            break_pinning: flags.break_pinning,
        }
    }
}
