//! `kv-bench --quick-smoke` runs every workload on every engine end to end, each engine in its
//! own child process, and writes the JSON and SVG outputs.

use std::process::Command;

#[test]
fn quick_smoke_runs_end_to_end() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_kv-bench"))
        .arg("--quick-smoke")
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("run kv-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kv-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "bulk load",
        "durable writes",
        "commit latency p99",
        "batch writes",
        "random reads",
        "range reads",
        "YCSB A",
        "YCSB B",
        "writers",
        "file growth",
        "removals",
        "file size after load",
        "peak RSS",
    ] {
        assert!(stdout.contains(row), "no {row:?} row in:\n{stdout}");
    }
    assert!(!stdout.contains("ERROR"), "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    for engine in doc["engines"].as_object().expect("engines").values() {
        let cells = &engine["cells"];
        assert!(cells["bulk_load"]["value"].as_f64().is_some_and(|v| v > 0.0), "{doc}");
        assert!(cells["peak_rss"]["value"].as_f64().is_some(), "{doc}");
    }
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.starts_with("<svg") && plot.contains("bulk load"), "{plot}");
}

#[test]
fn refuses_to_erase_without_the_flag() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let file = dir.path().join("existing.arbor");
    std::fs::write(&file, b"precious").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kv-bench"))
        .args(["--quick-smoke", "--path"])
        .arg(&file)
        .output()
        .expect("run kv-bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--i-know-this-erases"));
    assert_eq!(std::fs::read(&file).expect("still there"), b"precious");
}

/// A loop device (`losetup --direct-io=on`) over a sparse file, detached on drop.
struct LoopDevice(std::path::PathBuf);

impl LoopDevice {
    fn attach(file: &std::path::Path) -> Result<LoopDevice, String> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(file)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!("losetup failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(LoopDevice(String::from_utf8_lossy(&out.stdout).trim().into()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Issue 12: `--device` used to fail the file-growth rows ("raw device: no file size") and
/// exit non-zero. On a block device Arbor's size rows are its blocks in use.
#[test]
fn quick_smoke_on_a_block_device() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let backing = dir.path().join("loop-backing");
    std::fs::File::create(&backing).expect("create").set_len(256 << 20).expect("set_len");
    let lo = match LoopDevice::attach(&backing) {
        Ok(lo) => lo,
        Err(reason) => {
            println!("SKIPPED quick_smoke_on_a_block_device: {reason}");
            return;
        }
    };
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kv-bench"))
        .args(["--quick-smoke", "--i-know-this-erases", "--device"])
        .arg(&lo.0)
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run kv-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kv-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("ERROR"), "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let arbor = &doc["engines"]["arbor"]["cells"];
    for row in ["growth_free", "growth_held", "size_after_load", "disk_after_load", "size_at_end"] {
        assert!(arbor[row]["value"].as_f64().is_some(), "arbor {row}: {}", arbor[row]);
    }
    assert!(arbor["size_after_load"]["value"].as_f64().is_some_and(|v| v > 0.0), "{doc}");
}
