//! Benchmarks for Arbor: the `kv-bench` binary (Arbor against redb and LMDB on the redb
//! benchmark's workloads, plus `kv-bench device`) and the criterion micro-benchmarks in
//! `benches/`.

pub mod config;
pub mod data;
pub mod device;
pub mod engines;
pub mod plot;
pub mod progress;
pub mod report;
pub mod rng;
pub mod rows;
pub mod suite;
pub mod versions;
pub mod workloads;
pub mod zipf;

/// Errors of the benchmark are reported as text, next to the row they broke.
pub type BenchResult<T> = Result<T, String>;

/// Turns any displayable error into the benchmark's error text, with a context.
pub fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}
