//! The concurrency core of snapshots (design.md §5, §6, §8, §10.1–§10.7): the seq registry and
//! root publication, per-block images with their mod-log entries, and the table readers
//! consult. Exported `#[doc(hidden)]` so `loom-tests/` drives this exact code.

pub mod modlog;
pub mod registry;
pub mod slot;
pub mod table;

pub use registry::{ActiveGuard, RegInner, Registry, RootRecord, SnapState};
pub use slot::{Image, Slot, SlotState};
pub use table::SlotTable;
