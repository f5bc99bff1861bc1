//! B-trees over node images: lookups and iteration over any [`read::NodeSource`],
//! copy-on-write inserts and removes with splits and merges, and the catalog of named trees.

pub(crate) mod catalog;
mod fill;
pub(crate) mod many;
pub(crate) mod read;
pub(crate) mod remove_range;
pub(crate) mod walk;
pub(crate) mod warm;
pub(crate) mod write;
