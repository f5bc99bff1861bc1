//! Benchmarks for Arbor: the `kv-bench` binary (a comparison with redb and LMDB in the shape
//! of the redb benchmark) and, later, criterion micro-benchmarks.

pub mod data;
pub mod engines;
pub mod report;
pub mod rng;
pub mod run;

/// Errors of the benchmark are reported as text, next to the row they broke.
pub type BenchResult<T> = Result<T, String>;

/// Turns any displayable error into the benchmark's error text, with a context.
pub fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}
