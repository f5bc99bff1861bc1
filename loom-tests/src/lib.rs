//! loom models of the engine's concurrency core; run with `RUSTFLAGS="--cfg loom"`.
