//! The one public error type (design.md §2), with hand-written `Display`.

use std::fmt;
use std::io;

/// Everything that can go wrong in Arbor. Marked `#[non_exhaustive]`: match with a `_` arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The device returned an error. After a write or flush error the handle is fail-stop:
    /// every later write returns [`Error::PreviousIo`] until the store is reopened.
    Io(io::Error),
    /// A block failed verification (checksum, address, generation, structure).
    Corrupt { addr: u64, reason: String },
    /// The device (or the file's configured maximum size) is full.
    NoSpace,
    /// A key is longer than the store's limit (`len` bytes given, `max` allowed).
    KeyTooLarge { len: usize, max: usize },
    /// A value is longer than the limit (4 GiB − 1).
    ValueTooLarge { len: u64, max: u64 },
    /// A snapshot was expired by the memory/disk bound; it can no longer be read. `what`
    /// names the bound that was reached (`Options::modlog_max_bytes` or
    /// `Options::pinned_max_blocks`), its value and what was held.
    SnapshotExpired { what: String },
    /// Another handle, in this or another process, has the store open.
    Locked,
    /// The target holds no Arbor superblock (wrong device, wrong file).
    NotAnArborStore,
    /// `create` found data on the target (an Arbor store, a filesystem, or any non-zero
    /// byte in its first or last MiB) and was not told to overwrite it.
    ExistingData { what: String },
    /// The store was written by a newer format version.
    UnsupportedVersion { found: u16, supported: u16 },
    /// An invalid argument or configuration (block size not a power of two, and so on).
    InvalidInput(String),
    /// An earlier write or flush failed; the handle refuses writes until it is reopened.
    PreviousIo { original: String },
    /// A panic unwound through the engine while it held state a panic can leave half
    /// changed (`what`: "inside the engine while it held the writer", …). The handle is
    /// fail-stop, as after an I/O error, and stricter: writes, `flush` and `Db::check` return
    /// this error until the store is reopened. Nothing is flushed after the panic, so the
    /// next open recovers as after a crash. Snapshots keep reading what was published before
    /// the panic. A panic in the caller's own code while a `WriteTxn` is open does not count:
    /// it aborts the transaction like a drop, and the handle stays writable.
    Poisoned { what: String },
    /// The write transaction's own undo log passed its cap (design.md §10.8).
    TransactionTooLarge { undo_bytes: u64, max: u64 },
    /// `SnapshotPolicy::WriterWaits`: snapshots kept holding more history than the bound
    /// allows until the timeout (or every one of them belongs to the waiting thread).
    SnapshotBoundReached { what: String },
    /// Every `Db` handle of the store was dropped: a snapshot, tree or range that outlived
    /// them can no longer read (the store's device and lock were released).
    Closed,
    /// Bytes in a typed tree do not decode as its key or value type (`type_name`): the tree
    /// was written with other types, or through the byte API.
    Decode { type_name: &'static str, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(addr: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { addr, reason: reason.into() }
    }
}

/// Maps a decoder's reason for rejecting bytes that came from the device to the public
/// error, naming the block.
pub(crate) fn corrupt(addr: u64, e: arbor_format::FormatError) -> Error {
    Error::corrupt(addr, e.to_string())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
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
            Error::Locked => write!(f, "the store is already open in another handle or process"),
            Error::NotAnArborStore => write!(f, "the target does not hold an Arbor store"),
            Error::ExistingData { what } => {
                write!(
                    f,
                    "the target holds existing data ({what}); set overwrite_existing to \
                     overwrite it"
                )
            }
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "store format version {found} is newer than this build supports ({supported})"
            ),
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
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}
