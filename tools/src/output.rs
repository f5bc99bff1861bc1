//! Files the tool writes: never half-written under their final name, never left behind by a
//! command that failed.
//!
//! * [`Staged`]: a dump file or a `compact` destination is written under a temporary name in
//!   the same directory (`.NAME.arbor-tmp.PID`), synced, and renamed over NAME only when the
//!   command succeeded, then the directory is synced. On any error (or a panic) the temporary
//!   file is removed; an existing NAME is untouched. Targets that are not regular files (a
//!   block device, `/dev/null`, a FIFO) are written in place: renaming over them would
//!   replace the device node, not write to it.
//! * [`CreatedGuard`]: `format` creates the store's file in place (it is the store); if the
//!   command created it and then fails, the file is removed.
//!
//! A process killed mid-command (SIGKILL) can still leave a `.NAME.arbor-tmp.PID` file.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};

/// Where the bytes go and what to do with them on success.
pub struct Staged {
    /// The path written to: the temporary name, or the target itself (not a regular file).
    write_path: PathBuf,
    target: PathBuf,
    /// Renamed over `target` on commit; removed on drop before that.
    temporary: bool,
    committed: bool,
}

/// The directory that holds `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl Staged {
    /// Plans a write of `target`; creates nothing yet.
    pub fn new(target: &Path) -> Result<Staged> {
        let in_place = std::fs::metadata(target).is_ok_and(|m| !m.is_file());
        if in_place {
            return Ok(Staged {
                write_path: target.into(),
                target: target.into(),
                temporary: false,
                committed: false,
            });
        }
        let name = target
            .file_name()
            .ok_or_else(|| CliError::new(format!("{}: not a file name", target.display())))?;
        let tmp_name = format!(".{}.arbor-tmp.{}", name.to_string_lossy(), std::process::id());
        Ok(Staged {
            write_path: parent_dir(target).join(tmp_name),
            target: target.into(),
            temporary: true,
            committed: false,
        })
    }

    /// The path to write (for the engine's `Db::create`).
    pub fn path(&self) -> &Path {
        &self.write_path
    }

    /// Creates the file to write: a new temporary file, or the target opened for writing.
    pub fn create_file(&self) -> Result<File> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true);
        if self.temporary {
            opts.create_new(true);
        } else {
            opts.truncate(true);
        }
        opts.open(&self.write_path).map_err(|e| CliError::io(&self.write_path, e))
    }

    /// Syncs the written file, renames it over the target and syncs the directory, so that
    /// after a crash the target is either the old file or the whole new one.
    pub fn commit(mut self) -> Result<()> {
        if self.temporary {
            let f = File::open(&self.write_path).map_err(|e| CliError::io(&self.write_path, e))?;
            f.sync_all().map_err(|e| CliError::io(&self.write_path, e))?;
            std::fs::rename(&self.write_path, &self.target)
                .map_err(|e| CliError::io(&self.target, e))?;
            let dir = parent_dir(&self.target);
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| CliError::io(dir, e))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.temporary && !self.committed {
            // Best effort: the file may never have been created.
            let _ = std::fs::remove_file(&self.write_path);
        }
    }
}

/// Removes a file this command created unless the command reached [`CreatedGuard::keep`].
pub struct CreatedGuard {
    path: Option<PathBuf>,
}

impl CreatedGuard {
    /// Guards `path` if it does not exist yet (the command is about to create it).
    pub fn new(path: &Path) -> CreatedGuard {
        let exists = std::fs::symlink_metadata(path).is_ok();
        CreatedGuard { path: (!exists).then(|| path.to_path_buf()) }
    }

    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for CreatedGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
