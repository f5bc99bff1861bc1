//! Arbor: a persistent embedded key-value store on a raw block device or a file.
//!
//! A copy-on-write B-tree of named trees with durable transactions, one writer beside any
//! number of snapshot readers, and `O_DIRECT` I/O through io_uring (Linux only).
//!
//! ```
//! use arbor::{Db, Options};
//!
//! // A file (created if missing, refused if it holds data) or a block device.
//! let path = std::env::temp_dir().join(format!("arbor-doc-{}.arbor", std::process::id()));
//! # let _ = std::fs::remove_file(&path);
//! let db = Db::create(&path, Options::default())?;
//! let mut tx = db.begin_write()?;
//! let mut users = tx.tree("users")?; // created if missing
//! users.insert(b"alice", b"admin")?;
//! users.insert(b"bob", b"reader")?;
//! tx.commit()?; // durable when it returns
//!
//! let snap = db.snapshot()?; // a consistent view, usable from any thread
//! let users = snap.tree("users")?.expect("committed above");
//! let bob = users.get(b"bob")?.expect("committed above"); // lent in place, no copy
//! assert_eq!(&bob[..], b"reader");
//! // Ranges lend keys and values as guards too.
//! let keys: Vec<Vec<u8>> =
//!     users.iter()?.map(|r| r.map(|(k, _)| k.to_vec())).collect::<Result<_, _>>()?;
//! assert_eq!(keys, [b"alice".to_vec(), b"bob".to_vec()]);
//! drop((users, snap, db));
//!
//! let db = Db::open(&path, Options::default())?; // recovers the newest durable state
//! # drop(db);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), arbor::Error>(())
//! ```
//!
//! # Concepts
//!
//! * **Stores.** [`Db::create`] formats a file or a block device, [`Db::open`] opens one;
//!   [`Db::create_on`] and [`Db::open_on`] take any [`BlockDevice`]. [`Db::memory`] makes a
//!   store in memory for tests. Files start small and grow in steps
//!   ([`Options::file_grow_step_bytes`]). Where the filesystem has no `O_DIRECT` (tmpfs, some
//!   FUSE filesystems) the file is used through the page cache with `fdatasync`, and a `log`
//!   warning says so. The library never prints: it reports through [`Error`] and the [`log`]
//!   crate.
//! * **Trees.** A store holds named trees of byte keys and byte values; keys compare as
//!   unsigned bytes. [`WriteTxn::tree`] creates a tree on first use; it exists, empty or not,
//!   until [`WriteTxn::delete_tree`].
//! * **Transactions.** One [`WriteTxn`] at a time ([`Db::begin_write`] waits for the
//!   previous one). Its changes are visible to itself at once and to others at
//!   [`WriteTxn::commit`]; [`WriteTxn::abort`], or dropping it, undoes them.
//! * **Durability.** Per transaction ([`WriteTxn::set_durability`], default
//!   [`Options::durability`]): [`Durability::Immediate`] returns after the device flush that
//!   covers the commit (concurrent commits share flushes), [`Durability::Eventual`] flushes
//!   at a later commit after [`Options::eventual_interval`], [`Durability::None`] only
//!   publishes. A crash recovers a prefix of the commit order that holds every acknowledged
//!   `Immediate` commit. After a failed write or flush the handle is fail-stop
//!   ([`Error::PreviousIo`]) until the store is reopened.
//! * **Snapshots.** [`Db::snapshot`] is a cheap, `Send + Sync + Clone` view of the last
//!   commit; its [`Tree`]s read (`get`, `range`, `iter`, `len`, `first`, `last`) while the
//!   writer goes on.
//! * **Bounds.** What snapshots hold back is bounded ([`Options::modlog_max_bytes`],
//!   [`Options::pinned_max_blocks`]); past a bound, [`SnapshotPolicy`] decides: the oldest
//!   snapshots expire ([`Error::SnapshotExpired`] on their next read, never wrong data), or
//!   the next writer waits. A transaction's undo log is capped too
//!   ([`Options::txn_undo_max_bytes`], [`Error::TransactionTooLarge`]). Keys are at most a
//!   quarter block ([`Error::KeyTooLarge`]), values 4 GiB − 1.
//! * **Checks.** [`Db::check`] verifies every reachable block; [`check`] has the offline
//!   check and repairs the `arbor` tool uses. [`io::SimDevice`] simulates crashes and faults,
//!   for testing code built on Arbor.
//!
//! The design (layers, commit protocol, snapshot rules, recovery) is `docs/design.md` in the
//! source repository, with the on-disk format in `docs/format.md`; comments in the code
//! cite its sections as "design.md §N"; its §1 maps the engine's layers to the source
//! folders.
//!
//! Internal invariants are assertions; [`Error::Corrupt`] is reserved for bytes that came
//! from the device.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod addr_map;
mod alloc;
pub mod check;
pub mod codec;
mod db;
#[allow(missing_debug_implementations)] // `commit` below: the loom models' pipeline
mod durable;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
#[doc(hidden)]
pub mod fault;
#[cfg(not(any(test, feature = "fault-injection")))]
mod fault;
pub mod io;
#[doc(hidden)]
#[allow(missing_debug_implementations)] // the loom models' concurrency core, not API
pub mod mvcc;
mod options;
#[allow(missing_debug_implementations)] // `pool` below: the loom models' buffer pool
mod store;
#[doc(hidden)]
pub mod sync;
mod tree;
mod txn;
mod writer;

// The concurrency core `loom-tests/` drives, at the paths it has always used.
#[doc(hidden)]
pub use durable::journal;
#[doc(hidden)]
pub use durable::pipeline as commit;
#[doc(hidden)]
pub use mvcc::modlog;
#[doc(hidden)]
pub use store::pool;

pub use check::CheckReport;
pub use codec::{Key, KeyRange, TreeDef, TypedBounds, Value};
pub use db::{Db, Stats};
pub use error::{Error, Result};
pub use io::{AlignedBuf, BlockDevice, ReadOp, WriteOp};
pub use options::{Durability, IoBackend, Options, SnapshotPolicy};
pub use txn::backup::BackupInfo;
pub use txn::guard::Guard;
pub use txn::snapshot::{Range, Snapshot, Tree};
pub use txn::typed::{TypedEntry, TypedIter, TypedTree, TypedWriteTree};
pub use txn::write::{CommitInfo, Savepoint, WriteTxn};
pub use txn::write_ops::{ExtractIf, WriteRange};
pub use txn::write_tree::{Entry, WriteTree};

/// What must not compile (`compile_fail` doctests).
#[cfg(doctest)]
mod compile_fail;

/// The README's usage example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}
