//! Arbor's on-disk format. Pure: no I/O, no threads. See `docs/format.md`.
#![forbid(unsafe_code)]
