//! What the benchmark was built from: the git commit and the engines' versions (recorded by
//! `build.rs` from `git rev-parse HEAD` and Cargo.lock; "unknown" where they could not be
//! read, e.g. a build outside a git checkout).

use serde_json::{json, Value};

/// The commit kv-bench was built from.
pub const GIT_COMMIT: &str = env!("KV_BENCH_GIT_COMMIT");

/// `(engine, version)` for every engine this build knows, in table order.
pub fn engines() -> Vec<(&'static str, String)> {
    let mut v = vec![("arbor", env!("KV_BENCH_VERSION_ARBOR").to_string())];
    if cfg!(feature = "compare") {
        v.push(("redb", env!("KV_BENCH_VERSION_REDB").to_string()));
        v.push(("lmdb", lmdb()));
    }
    v
}

#[cfg(feature = "compare")]
fn lmdb() -> String {
    let v = heed::lmdb_version();
    format!(
        "LMDB {}.{}.{} (heed {}, lmdb-master-sys {})",
        v.major,
        v.minor,
        v.patch,
        env!("KV_BENCH_VERSION_HEED"),
        env!("KV_BENCH_VERSION_LMDB_SYS")
    )
}

#[cfg(not(feature = "compare"))]
fn lmdb() -> String {
    "not built".into()
}

/// `{"git_commit": ..., "engines": {"arbor": "0.1.0", ...}}`.
pub fn json() -> Value {
    let engines: serde_json::Map<String, Value> =
        engines().into_iter().map(|(e, v)| (e.to_string(), Value::from(v))).collect();
    json!({ "git_commit": GIT_COMMIT, "engines": engines })
}
