//! Durability: the group-commit pipeline, freezing a generation into sealed images and
//! superblocks, writing it out, and recovery at open.

pub(crate) mod freeze;
pub(crate) mod gather;
#[doc(hidden)]
pub mod journal;
pub(crate) mod journal_scan;
#[doc(hidden)]
pub mod pipeline;
pub(crate) mod recovery;
pub(crate) mod superblock;
