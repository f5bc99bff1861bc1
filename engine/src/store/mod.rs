//! The block read path: the device, the images of a generation being written, the clean
//! cache, and verification of every block read from the device against the pointer that
//! led to it.

#[doc(hidden)]
pub mod cache;
mod node;
mod read;

pub(crate) use node::*;
pub(crate) use read::*;
