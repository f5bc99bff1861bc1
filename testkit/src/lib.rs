//! Helpers shared by the workspace's tests (a dev-dependency only, never shipped): the one
//! random generator, temporary directories (on the target's disk, or where
//! [`TEST_DIR_ENV`] says), test stores on files or in memory ([`store`], chosen by
//! [`store::STORE_ENV`]), the option presets tests build small stores with, and loop
//! devices for the block-device tests.

pub mod store;

use std::path::{Path, PathBuf};
use std::process::Command;

use arbor::{Db, Options, WriteTxn};

/// SplitMix64: deterministic, so every failure names a reproducible seed. The engine's own
/// generator (its simulated device draws from it), so there is exactly one.
pub use arbor::io::SplitMix64 as Rng;

/// The environment variable that moves every test's temporary directory: `scripts/test.sh`
/// sets it to a directory on `/dev/shm` for a second pass of the engine's tests, so that
/// they run on tmpfs, where files are buffered (no `O_DIRECT`).
pub const TEST_DIR_ENV: &str = "ARBOR_TEST_DIR";

/// A temporary directory, deleted on drop with the files in it and the memory stores
/// ([`store`]) named under it.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        store::forget_under(self.dir.path());
    }
}

/// A temporary directory under `parent` (pass `env!("CARGO_TARGET_TMPDIR")`, or use
/// [`temp_dir!`]), or under `$ARBOR_TEST_DIR` when that is set ([`TEST_DIR_ENV`]). The
/// default is the target's disk, so that stores use O_DIRECT as in production.
pub fn temp_dir_in(parent: impl AsRef<Path>, prefix: &str) -> TestDir {
    let from_env = std::env::var_os(TEST_DIR_ENV).filter(|dir| !dir.is_empty());
    let parent = from_env.as_deref().map(Path::new).unwrap_or(parent.as_ref());
    std::fs::create_dir_all(parent).expect("create the temporary directories' parent");
    let dir =
        tempfile::Builder::new().prefix(prefix).tempdir_in(parent).expect("temporary directory");
    TestDir { dir }
}

/// A temporary directory in the calling test crate's `CARGO_TARGET_TMPDIR`.
#[macro_export]
macro_rules! temp_dir {
    () => {
        $crate::temp_dir_in(env!("CARGO_TARGET_TMPDIR"), "arbor-test-")
    };
    ($prefix:expr) => {
        $crate::temp_dir_in(env!("CARGO_TARGET_TMPDIR"), $prefix)
    };
}

/// Options for small, split-heavy test stores. A small dirty budget makes every test that
/// uses them exercise early write-back (design.md §4). No background checkpoint thread:
/// checkpoints run in committing threads when due (design.md §11.6), so what a test counts
/// does not depend on timing; tests with `Options::default()` run the thread.
pub fn small_opts() -> Options {
    Options {
        cache_bytes: 1 << 20,
        file_initial_bytes: 16 << 20,
        dirty_max_bytes: 256 << 10,
        checkpoint_interval: None,
        ..Options::default()
    }
}

/// Options for small test stores with the default dirty budget (no early write-back in
/// small transactions): what the tools' tests build stores with.
pub fn roomy_opts() -> Options {
    Options { cache_bytes: 4 << 20, file_initial_bytes: 16 << 20, ..Options::default() }
}

/// Adds a tree `big` of 60,000 entries to `tx` and commits it, then deletes the tree in a
/// second commit: its subtrees are left orphaned, owned until later commits free them a
/// bounded number at a time. Returns how many are waiting (asserted above zero).
pub fn orphan_a_big_tree(db: &Db, tx: WriteTxn<'_>) -> usize {
    let mut big = tx.tree("big").unwrap();
    for i in 0..60_000u32 {
        big.insert(i.to_be_bytes(), [5u8; 100]).unwrap();
    }
    tx.commit().unwrap();
    let tx = db.begin_write().unwrap();
    assert!(tx.delete_tree("big").unwrap());
    tx.commit().unwrap();
    let orphans = db.stats().orphan_subtrees;
    assert!(orphans > 0, "the deleted tree left orphaned subtrees");
    orphans
}

/// A loop device (`losetup -f --show --direct-io=on`) over a backing file, detached on drop
/// (also when the test fails).
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `file`, or says why not (no `losetup`, or it refused: no root, no free device).
    pub fn attach(file: &Path) -> Result<LoopDevice, String> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(file)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!("losetup failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(LoopDevice { path })
    }

    /// Attaches `file`, or prints `SKIPPED <test>: <why>` and returns `None`, for the
    /// calling test to return early where loop devices are not available.
    pub fn attach_or_skip(file: &Path, test: &str) -> Option<LoopDevice> {
        match LoopDevice::attach(file) {
            Ok(lo) => Some(lo),
            Err(reason) => {
                println!("SKIPPED {test}: {reason}");
                None
            }
        }
    }

    /// The device's path (`/dev/loopN`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}
