//! The block read path: the device, the images of a generation being written, the buffer
//! pool of clean blocks, and verification of every block read from the device against the
//! pointer that led to it.

mod node;
#[doc(hidden)]
pub mod pool;
mod read;

pub(crate) use node::*;
pub(crate) use read::*;
