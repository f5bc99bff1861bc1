//! What a run measures besides its sizes: which rows, the key and value sizes, the key
//! distribution and the commit durability. Like `Sizes`, every field is a flag the parent
//! hands to each engine's child process verbatim (`to_args`).

use std::fmt;

use crate::data::{KEY_BYTES, VALUE_BYTES, ZIPF_THETA};

/// Shortest key: 8 bytes keep random keys distinct and hold a sequential key's index.
pub const KEY_BYTES_MIN: usize = 8;
/// Longest key: Arbor's key limit at its default 4 KiB block (`key_bytes_max(4096)`).
pub const KEY_BYTES_MAX: usize = arbor_format::constants::key_bytes_max(4096);
/// Largest value: 16 MiB (every value of the data set is held in memory).
pub const VALUE_BYTES_MAX: usize = 16 << 20;

/// The `--workloads` help: every row name, grouped by the workload that produces it.
pub const WORKLOADS_HELP: &str = "Rows to run, comma-separated (default: all). A row runs its \
    workload, which also fills the workload's other rows. The bulk load always runs (the \
    other workloads use its keys). Rows: bulk_load, size_after_load, disk_after_load | \
    durable_single, durable_p50, durable_p99, durable_blocks, durable_bytes, \
    durable_io_bytes | batch | reads_1t, reads_2t, reads_scaling, reads_nt | \
    cold_get_1t, cold_get_many, cold_get_nt | device_qd1_iops, device_qd32_iops | range_reads | \
    ycsb_a, ycsb_b | commits_1w, commits_nw, commits_scaling | growth_free, growth_held | \
    removals | size_at_end | peak_rss";

/// Which loaded keys the reads, scans and overwrites pick, and the order of the keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Random keys; picks uniform at random.
    Uniform,
    /// Random keys; picks zipfian with this theta (scrambled, as YCSB), which also skews the
    /// YCSB rows.
    Zipf(f64),
    /// Keys in ascending order (the load appends); picks walk them in order.
    Sequential,
}

impl Distribution {
    pub fn parse(text: &str) -> Result<Distribution, String> {
        match text {
            "uniform" => Ok(Distribution::Uniform),
            "sequential" => Ok(Distribution::Sequential),
            "zipf" => Ok(Distribution::Zipf(ZIPF_THETA)),
            _ => {
                let theta = text.strip_prefix("zipf:").and_then(|t| t.parse::<f64>().ok());
                match theta {
                    Some(t) if t > 0.0 && t < 1.0 => Ok(Distribution::Zipf(t)),
                    _ => Err(format!(
                        "{text:?}: expected uniform, sequential, zipf or zipf:THETA (0 < THETA < 1)"
                    )),
                }
            }
        }
    }

    /// The YCSB rows' skew: this distribution's theta, else YCSB's default.
    pub fn ycsb_theta(self) -> f64 {
        match self {
            Distribution::Zipf(theta) => theta,
            _ => ZIPF_THETA,
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => f.write_str("uniform"),
            Distribution::Zipf(theta) => write!(f, "zipf:{theta}"),
            Distribution::Sequential => f.write_str("sequential"),
        }
    }
}

/// How every write transaction commits. Per engine (README "kv-bench"):
/// Arbor `Durability::{Immediate, Eventual, None}`; redb `Durability::Immediate`, and for
/// both `eventual` and `none` redb's `Durability::None` (redb 4 has no eventual level; a None
/// commit becomes durable with the next Immediate one); LMDB default flags (sync on commit),
/// `MDB_NOMETASYNC` (data synced, the meta page left to the next commit's sync or the OS:
/// the last commit may be lost, never the store) and `MDB_NOSYNC` (no sync at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    Immediate,
    Eventual,
    None,
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Immediate => "immediate",
            Durability::Eventual => "eventual",
            Durability::None => "none",
        }
    }
}

/// The run's shape: see the module comment.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct Config {
    #[arg(long, value_delimiter = ',', value_name = "ROWS", help = WORKLOADS_HELP)]
    pub workloads: Vec<String>,
    /// Bytes per key (8 to Arbor's 4 KiB-block key limit).
    #[arg(long, default_value_t = KEY_BYTES)]
    pub key_size: usize,
    /// Bytes per value (1 to 16 MiB).
    #[arg(long, default_value_t = VALUE_BYTES)]
    pub value_size: usize,
    /// uniform, zipf[:THETA] (default theta 0.99) or sequential: the key order and which
    /// loaded keys reads, scans and overwrites pick.
    #[arg(long, default_value = "uniform", value_parser = Distribution::parse)]
    pub distribution: Distribution,
    /// Commit durability of every write transaction (mapping per engine in the README).
    #[arg(long, value_enum, default_value_t = Durability::Immediate)]
    pub durability: Durability,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workloads: Vec::new(),
            key_size: KEY_BYTES,
            value_size: VALUE_BYTES,
            distribution: Distribution::Uniform,
            durability: Durability::Immediate,
        }
    }
}

impl Config {
    /// Whether any of `rows` was selected (all are when `--workloads` is not given).
    pub fn wants(&self, rows: &[&str]) -> bool {
        self.workloads.is_empty() || rows.iter().any(|r| self.workloads.iter().any(|w| w == r))
    }

    /// The flags that reproduce this configuration in a child process.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--key-size".to_string(),
            self.key_size.to_string(),
            "--value-size".into(),
            self.value_size.to_string(),
            "--distribution".into(),
            self.distribution.to_string(),
            "--durability".into(),
            self.durability.name().into(),
        ];
        if !self.workloads.is_empty() {
            args.push("--workloads".into());
            args.push(self.workloads.join(","));
        }
        args
    }

    /// Values the workloads cannot run with, as a message; `known` is every row name.
    pub fn check(&self, known: &[&str]) -> Result<(), String> {
        if let Some(bad) = self.workloads.iter().find(|w| !known.contains(&w.as_str())) {
            return Err(format!("unknown workload {bad:?}; rows: {}", known.join(", ")));
        }
        if !(KEY_BYTES_MIN..=KEY_BYTES_MAX).contains(&self.key_size) {
            return Err(format!("--key-size must be {KEY_BYTES_MIN} to {KEY_BYTES_MAX}"));
        }
        if !(1..=VALUE_BYTES_MAX).contains(&self.value_size) {
            return Err(format!("--value-size must be 1 to {VALUE_BYTES_MAX}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_and_help() {
        for text in ["uniform", "sequential", "zipf:0.5"] {
            assert_eq!(Distribution::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Distribution::parse("zipf").unwrap(), Distribution::Zipf(ZIPF_THETA));
        assert!(Distribution::parse("zipf:1.5").is_err());
        assert!(Distribution::parse("normal").is_err());
        let sizes = crate::data::Sizes::smoke();
        for spec in crate::rows::rows(&sizes) {
            assert!(WORKLOADS_HELP.contains(spec.id), "{} missing from --help", spec.id);
        }
    }
}
