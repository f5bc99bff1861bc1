//! Helpers shared by the workspace's tests (a dev-dependency only, never shipped): the one
//! random generator, temporary directories (on the target's disk, or where
//! [`TEST_DIR_ENV`] says), and the option presets tests build small stores with.

use std::path::Path;

use arbor::Options;

/// SplitMix64: deterministic, so every failure names a reproducible seed. The engine's own
/// generator (its simulated device draws from it), so there is exactly one.
pub use arbor::io::SplitMix64 as Rng;

/// The environment variable that moves every test's temporary directory: `scripts/test.sh`
/// sets it to a directory on `/dev/shm` for a second pass of the engine's tests, so that
/// they run on tmpfs, where files are buffered (no `O_DIRECT`).
pub const TEST_DIR_ENV: &str = "ARBOR_TEST_DIR";

/// A temporary directory under `parent` (pass `env!("CARGO_TARGET_TMPDIR")`, or use
/// [`temp_dir!`]), or under `$ARBOR_TEST_DIR` when that is set ([`TEST_DIR_ENV`]). The
/// default is the target's disk, so that stores use O_DIRECT as in production.
pub fn temp_dir_in(parent: impl AsRef<Path>, prefix: &str) -> tempfile::TempDir {
    let from_env = std::env::var_os(TEST_DIR_ENV).filter(|dir| !dir.is_empty());
    let parent = from_env.as_deref().map(Path::new).unwrap_or(parent.as_ref());
    std::fs::create_dir_all(parent).expect("create the temporary directories' parent");
    tempfile::Builder::new().prefix(prefix).tempdir_in(parent).expect("temporary directory")
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
/// uses them exercise early write-back (design.md §4).
pub fn small_opts() -> Options {
    Options {
        cache_bytes: 1 << 20,
        file_initial_bytes: 16 << 20,
        dirty_max_bytes: 256 << 10,
        ..Options::default()
    }
}

/// Options for small test stores with the default dirty budget (no early write-back in
/// small transactions): what the tools' tests build stores with.
pub fn roomy_opts() -> Options {
    Options { cache_bytes: 4 << 20, file_initial_bytes: 16 << 20, ..Options::default() }
}
