//! Arbor: a persistent embedded key-value store on raw disk.
//!
//! See `docs/format.md` for the on-disk layout and the repository README for usage.

#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod alloc;
pub mod error;
pub mod io;
pub mod sync;

pub use error::{Error, Result};
pub use io::{AlignedBuf, BlockDevice, ReadOp, WriteOp};
