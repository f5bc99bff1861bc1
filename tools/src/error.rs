//! The tool's one error type: a message for the user and the exit code it maps to.

use std::fmt;
use std::path::Path;

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Exit code: the command could not run (bad input, I/O error, unreadable store).
pub const EXIT_ERROR: i32 = 2;
/// Exit code: `check` ran and found problems (left unrepaired).
pub const EXIT_PROBLEMS: i32 = 1;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into() }
    }

    pub fn io(path: &Path, e: std::io::Error) -> CliError {
        CliError::new(format!("{}: {e}", path.display()))
    }

    /// An engine error on the store at `path`. Damage (`Error::Corrupt`, from open or from a
    /// read) names its block and points at `arbor check`.
    pub fn store(path: &Path, e: arbor::Error) -> CliError {
        match e {
            arbor::Error::Corrupt { addr, reason } => CliError::damaged(path, addr, &reason),
            e => CliError::new(format!("{}: {}", path.display(), with_causes(&e))),
        }
    }

    /// The store at `path` has a damaged block `addr`.
    pub fn damaged(path: &Path, addr: u64, what: &str) -> CliError {
        let p = path.display();
        CliError::new(format!(
            "{p}: the store is damaged: block {addr}: {what}. Run `arbor check {p}` for a full \
             report (`arbor check {p} --repair` repairs what it can without losing data)"
        ))
    }

    /// A `create` error, in the tool's words: existing data is overwritten with `--force`.
    pub fn create(path: &Path, e: arbor::Error) -> CliError {
        match e {
            arbor::Error::ExistingData { what } => CliError::new(format!(
                "{}: holds existing data ({what}); nothing was written. Pass --force to \
                 overwrite it",
                path.display()
            )),
            e => CliError::store(path, e),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<arbor::Error> for CliError {
    fn from(e: arbor::Error) -> CliError {
        CliError::new(with_causes(&e))
    }
}

/// An error's message followed by its causes (`arbor::Error::Io` keeps the OS error as its
/// `source`, out of its own message).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::new(e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> CliError {
        CliError::new(format!("JSON output: {e}"))
    }
}
