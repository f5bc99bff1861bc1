//! The one public error type (design.md §2), with hand-written `Display`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in Arbor. Marked `#[non_exhaustive]`: match with a `_` arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system or the device returned an error. After a write or flush error
    /// the handle is fail-stop: every later write returns [`Error::PreviousIo`] until the
    /// store is reopened. `Display` names the operation and the path; the OS error is the
    /// [`source`](std::error::Error::source) (so error reporters print it once).
    Io {
        /// What was being done: "open", "lock", "read", "write", "flush", "grow", ….
        op: &'static str,
        /// The file or block device, when the error concerns one (`None` for a device
        /// given as a [`crate::BlockDevice`] that names no path).
        path: Option<PathBuf>,
        /// The error itself.
        source: io::Error,
    },
    /// A block failed verification (checksum, address, generation, structure).
    Corrupt {
        /// The block's address (its byte offset divided by the block size).
        addr: u64,
        /// What failed.
        reason: String,
    },
    /// The device (or the file's configured maximum size) is full.
    NoSpace,
    /// A key is longer than the store's limit (`len` bytes given, `max` allowed).
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The store's limit (a quarter block).
        max: usize,
    },
    /// A value is longer than the limit (4 GiB − 1).
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A snapshot was expired by the memory/disk bound; it can no longer be read. `what`
    /// names the bound that was reached (`Options::modlog_max_bytes` or
    /// `Options::pinned_max_blocks`), its value and what was held.
    SnapshotExpired {
        /// The bound that was reached, its value, and the option that raises it.
        what: String,
    },
    /// Another handle, in this or another process, has the store open.
    Locked {
        /// The file or block device.
        path: PathBuf,
        /// Who holds it, when that can be found out ("process 4242 (kv-bench)", "this
        /// process"; a block device's holder is not reported).
        holder: Option<String>,
    },
    /// The target holds no Arbor superblock (wrong device, wrong file).
    NotAnArborStore {
        /// The target: its path, or a device's description when it has none.
        target: String,
    },
    /// `create` found data on the target (an Arbor store, a filesystem, or any non-zero
    /// byte in its first or last MiB) and was not told to overwrite it.
    ExistingData {
        /// What was found, and where.
        what: String,
    },
    /// The store's format version is one this build does not read: a newer one, or version 1
    /// (before the commit journal, design.md §11.1), which has no journal region to commit
    /// through.
    UnsupportedVersion {
        /// The store's format version.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// An invalid argument or configuration (block size not a power of two, and so on).
    InvalidInput(String),
    /// An earlier write or flush failed; the handle refuses writes until it is reopened.
    PreviousIo {
        /// The first failure's message, with its causes.
        original: String,
    },
    /// A panic unwound through the engine while it held state a panic can leave half
    /// changed (`what`: "inside the engine while it held the writer", …). The handle is
    /// fail-stop, as after an I/O error, and stricter: writes, `flush` and `Db::check` return
    /// this error until the store is reopened. Nothing is flushed after the panic, so the
    /// next open recovers as after a crash. Snapshots keep reading what was published before
    /// the panic. A panic in the caller's own code while a `WriteTxn` is open does not count:
    /// it aborts the transaction like a drop, and the handle stays writable.
    Poisoned {
        /// Where the panic happened.
        what: String,
    },
    /// The write transaction's own undo log passed its cap (design.md §10.8).
    TransactionTooLarge {
        /// The undo log's size when the cap was passed.
        undo_bytes: u64,
        /// The cap (`Options::txn_undo_max_bytes`).
        max: u64,
    },
    /// `SnapshotPolicy::WriterWaits`: snapshots kept holding more history than the bound
    /// allows until the timeout (or every one of them belongs to the waiting thread).
    SnapshotBoundReached {
        /// Which bound, and by how much.
        what: String,
    },
    /// Every `Db` handle of the store was dropped: a snapshot, tree or range that outlived
    /// them can no longer read (the store's device and lock were released).
    Closed,
    /// Bytes in a typed tree do not decode as its key or value type (`type_name`): the tree
    /// was written with other types, or through the byte API.
    Decode {
        /// The Rust type the bytes were decoded as.
        type_name: &'static str,
        /// Why they do not decode.
        reason: String,
    },
}

/// `Result` with Arbor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(addr: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { addr, reason: reason.into() }
    }

    /// An [`Error::Io`] of `op` on `path`.
    pub(crate) fn io(op: &'static str, path: Option<&Path>, source: io::Error) -> Error {
        Error::Io { op, path: path.map(Path::to_path_buf), source }
    }

    /// `Display` followed by every `source()` in the chain: the whole story in one line,
    /// for messages that outlive the error (`PreviousIo`'s `original`).
    pub(crate) fn with_sources(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

/// Maps a decoder's reason for rejecting bytes that came from the device to the public
/// error, naming the block.
pub(crate) fn corrupt(addr: u64, e: arbor_format::FormatError) -> Error {
    Error::corrupt(addr, e.to_string())
}

/// `UnsupportedVersion`'s message: an older store needs copying, a newer one a newer build.
fn unsupported(f: &mut fmt::Formatter<'_>, found: u16, supported: u16) -> fmt::Result {
    if found < supported {
        return write!(
            f,
            "store format version {found} predates the commit journal of version {supported}, \
             which this build requires: copy its data into a new store with the build that \
             wrote it (`arbor dump`, then `arbor load` with this one)"
        );
    }
    write!(f, "store format version {found} is newer than this build supports ({supported})")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path: Some(path), .. } => {
                write!(f, "I/O error: {op} on {}", path.display())
            }
            Error::Io { op, path: None, .. } => write!(f, "I/O error: {op}"),
            Error::Corrupt { addr, reason } => {
                write!(f, "corrupt block at address {addr}: {reason}")
            }
            Error::NoSpace => write!(f, "no space left in the store"),
            Error::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes exceeds the maximum of {max} bytes")
            }
            Error::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds the maximum of {max} bytes")
            }
            Error::SnapshotExpired { what } if what.is_empty() => write!(
                f,
                "snapshot expired: snapshots held more history than Options::modlog_max_bytes \
                 or Options::pinned_max_blocks allow; raise them or drop snapshots sooner"
            ),
            Error::SnapshotExpired { what } => write!(f, "snapshot expired: {what}"),
            Error::Locked { path, holder } => {
                write!(f, "{} is already open in another handle", path.display())?;
                match holder {
                    Some(holder) => write!(f, " (held by {holder})"),
                    None => write!(f, " (in this or another process)"),
                }
            }
            Error::NotAnArborStore { target } => {
                write!(f, "{target} does not hold an Arbor store")
            }
            Error::ExistingData { what } => {
                write!(
                    f,
                    "the target holds existing data ({what}); set overwrite_existing to \
                     overwrite it"
                )
            }
            Error::UnsupportedVersion { found, supported } => unsupported(f, *found, *supported),
            Error::InvalidInput(msg) => write!(f, "invalid input: {msg}"),
            Error::PreviousIo { original } => write!(
                f,
                "an earlier write or flush failed ({original}); reopen the store to recover"
            ),
            Error::Poisoned { what } => write!(
                f,
                "a panic {what} may have left this handle inconsistent; it refuses writes \
                 until the store is reopened"
            ),
            Error::TransactionTooLarge { undo_bytes, max } => write!(
                f,
                "transaction undo log of {undo_bytes} bytes exceeds its cap of {max} bytes"
            ),
            Error::SnapshotBoundReached { what } => {
                write!(f, "snapshots hold more history than the bound allows: {what}")
            }
            Error::Closed => write!(f, "the store was closed: every Db handle was dropped"),
            Error::Decode { type_name, reason } => {
                write!(f, "stored bytes do not decode as {type_name}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An error from a device the engine was handed, with no path: [`Error::Io`] of "device
/// I/O". The engine's own calls name the operation and path instead.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io { op: "device I/O", path: None, source: e }
    }
}
