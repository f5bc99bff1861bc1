//! Helpers shared by the workspace's tests (a dev-dependency only, never shipped): the one
//! random generator, temporary directories on a disk-backed filesystem, and the option
//! presets tests build small stores with.

use std::path::Path;

use arbor::Options;

/// SplitMix64: deterministic, so every failure names a reproducible seed. The engine's own
/// generator (its simulated device draws from it), so there is exactly one.
pub use arbor::io::SplitMix64 as Rng;

/// A temporary directory under `parent` (pass `env!("CARGO_TARGET_TMPDIR")`, or use
/// [`temp_dir!`]): on the target's disk, because the engine needs O_DIRECT, which tmpfs
/// refuses.
pub fn temp_dir_in(parent: impl AsRef<Path>, prefix: &str) -> tempfile::TempDir {
    let parent = parent.as_ref();
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
