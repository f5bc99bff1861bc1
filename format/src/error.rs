//! The one error of the format crate: a precise, human-readable reason why bytes are not a
//! valid block, plus a kind the engine maps to its own errors (`Corrupt`, `NotAnArborStore`,
//! `UnsupportedVersion`).

use core::fmt;

/// What kind of problem a [`FormatError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatErrorKind {
    /// A field is out of range or inconsistent with another field.
    Corrupt,
    /// The magic bytes are wrong: this is not an Arbor block or superblock at all.
    BadMagic,
    /// The version is newer than [`crate::FORMAT_VERSION`]: written by a newer Arbor.
    UnsupportedVersion {
        /// The version found on disk.
        found: u16,
    },
    /// The stored checksum does not match the bytes.
    ChecksumMismatch {
        /// The crc stored in the block (or expected by its parent).
        stored: u32,
        /// The crc computed over the bytes.
        computed: u32,
    },
    /// The block records a different address than the one it was read from.
    Misdirected {
        /// The address the block was read from.
        expected: u64,
        /// The address the block's header records.
        found: u64,
    },
}

/// Bytes that are not a valid block: the engine wraps it as `Error::Corrupt { addr, reason }`
/// (or `UnsupportedVersion` / `NotAnArborStore`, see [`FormatError::kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Which kind of problem.
    pub kind: FormatErrorKind,
    /// A full sentence with the facts needed to debug it (field, value, limit).
    pub reason: String,
}

impl FormatError {
    /// A field out of range or inconsistent.
    pub fn corrupt(reason: impl Into<String>) -> Self {
        Self { kind: FormatErrorKind::Corrupt, reason: reason.into() }
    }

    pub(crate) fn bad_magic(what: &str, found: &[u8]) -> Self {
        Self { kind: FormatErrorKind::BadMagic, reason: format!("{what}: bad magic {found:02x?}") }
    }

    pub(crate) fn unsupported_version(what: &str, found: u16) -> Self {
        Self {
            kind: FormatErrorKind::UnsupportedVersion { found },
            reason: format!(
                "{what}: format version {found} is newer than supported version {}",
                crate::FORMAT_VERSION
            ),
        }
    }

    pub(crate) fn checksum(what: &str, stored: u32, computed: u32) -> Self {
        Self {
            kind: FormatErrorKind::ChecksumMismatch { stored, computed },
            reason: format!(
                "{what}: crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }

    pub(crate) fn misdirected(what: &str, expected: u64, found: u64) -> Self {
        Self {
            kind: FormatErrorKind::Misdirected { expected, found },
            reason: format!("{what}: read from address {expected} but records address {found}"),
        }
    }

    /// True when the bytes were written by a newer format version (engine: `UnsupportedVersion`).
    pub fn is_unsupported_version(&self) -> bool {
        matches!(self.kind, FormatErrorKind::UnsupportedVersion { .. })
    }

    /// True when the magic is wrong (engine, for the superblock: `NotAnArborStore`).
    pub fn is_bad_magic(&self) -> bool {
        self.kind == FormatErrorKind::BadMagic
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for FormatError {}
