//! `kv-bench --quick-smoke` runs every workload on every engine end to end.

use std::process::Command;

#[test]
fn quick_smoke_runs_end_to_end() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kv-bench"))
        .arg("--quick-smoke")
        .arg("--path")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run kv-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kv-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for row in ["bulk load", "durable writes", "random reads", "range reads", "removals"] {
        assert!(stdout.contains(row), "no {row:?} row in:\n{stdout}");
    }
    assert!(!stdout.contains("ERROR"), "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let arbor = &doc["engines"]["arbor"]["results"];
    assert!(arbor["bulk_load"]["value"].as_f64().is_some_and(|v| v > 0.0), "{doc}");
}
