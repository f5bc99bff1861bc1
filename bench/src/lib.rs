//! Benchmarks for Arbor: the `kv-bench` binary and criterion micro-benchmarks.
