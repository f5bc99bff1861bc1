//! `kv-bench --quick-smoke` runs every workload on every engine end to end, each engine in its
//! own child process, and writes the JSON and SVG outputs.

use std::path::Path;
use std::process::Command;

use arbor_testkit::LoopDevice;

/// Runs `cmd` (kv-bench), asserts that it succeeded, and returns its standard output.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run kv-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kv-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout.into_owned()
}

/// The JSON kv-bench wrote to `path`.
fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("json")
}

#[test]
fn quick_smoke_runs_end_to_end() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_kv-bench"))
            .arg("--quick-smoke")
            .arg("--dir")
            .arg(dir.path())
            .arg("--json")
            .arg(&json)
            .arg("--plot")
            .arg(&svg),
    );
    for row in [
        "bulk load",
        "durable writes",
        "commit latency p99",
        "batch writes",
        "random reads",
        "cold random reads",
        "get_many x 32",
        "device: random 4 KiB reads/s, QD32",
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
    let doc = read_json(&json);
    for engine in doc["engines"].as_object().expect("engines").values() {
        let cells = &engine["cells"];
        assert!(cells["bulk_load"]["value"].as_f64().is_some_and(|v| v > 0.0), "{doc}");
        assert!(cells["peak_rss"]["value"].as_f64().is_some(), "{doc}");
        // A number, or n/a with a reason: never an error.
        assert!(cells["durable_io_bytes"].get("error").is_none(), "{doc}");
    }
    write_counts(&doc, &stdout);
    cold_reads(&doc, &stdout);
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.starts_with("<svg") && plot.contains("bulk load"), "{plot}");
}

/// Issue 14: blocks and bytes written per durable commit, checkpoints amortized in. Arbor
/// counts its own (at least both copies of one journal block per commit); redb and LMDB keep
/// no count, so theirs are n/a with the reason.
fn write_counts(doc: &serde_json::Value, stdout: &str) {
    for row in ["blocks written per commit", "bytes written per commit", "journal batches"] {
        assert!(stdout.contains(row), "no {row:?} in:\n{stdout}");
    }
    let arbor = &doc["engines"]["arbor"]["cells"];
    let blocks = arbor["durable_blocks"]["value"].as_f64().expect("arbor durable_blocks");
    let bytes = arbor["durable_bytes"]["value"].as_f64().expect("arbor durable_bytes");
    assert!(blocks >= 2.0 && bytes >= 2.0 * 4096.0, "{arbor}");
    for other in ["redb", "lmdb"] {
        let Some(engine) = doc["engines"].get(other) else { continue };
        let na = engine["cells"]["durable_blocks"]["na"].as_str();
        assert!(na.is_some_and(|why| why.contains("counts no writes")), "{engine}");
    }
}

/// Issue 15: cold reads on a reopened store for every engine (n/a with the reason where the
/// page cache cannot be dropped, never an error), batched reads for Arbor alone, and the
/// device's own limits on Arbor's store, with the ratio in a note and in the JSON.
fn cold_reads(doc: &serde_json::Value, stdout: &str) {
    let ids: Vec<&str> =
        doc["rows"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    let at = ids.iter().position(|id| *id == "reads_nt").expect("reads_nt row");
    assert_eq!(
        ids[at + 1..at + 6],
        ["cold_get_1t", "cold_get_many", "cold_get_nt", "device_qd1_iops", "device_qd32_iops"]
    );
    let arbor = &doc["engines"]["arbor"]["cells"];
    for row in
        ["cold_get_1t", "cold_get_many", "cold_get_nt", "device_qd1_iops", "device_qd32_iops"]
    {
        assert!(arbor[row]["value"].as_f64().is_some_and(|v| v > 0.0), "arbor {row}: {arbor}");
    }
    let ratio = &doc["arbor_cold_over_device"]["cold_get_many_over_device_qd32"];
    assert!(ratio.as_f64().is_some_and(|r| r > 0.0), "{doc}");
    assert!(stdout.contains("of the device's QD32 reads/s"), "{stdout}");
    for other in ["redb", "lmdb"] {
        let Some(engine) = doc["engines"].get(other) else { continue };
        let cells = &engine["cells"];
        let na = cells["cold_get_many"]["na"].as_str();
        assert!(na.is_some_and(|why| why.contains("no batched read API")), "{engine}");
        for row in ["cold_get_1t", "cold_get_nt"] {
            assert!(cells[row].get("error").is_none(), "{other} {row}: {engine}");
        }
        assert!(cells.get("device_qd32_iops").is_none(), "{engine}");
    }
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

/// Issue 12: `--device` used to fail the file-growth rows ("raw device: no file size") and
/// exit non-zero. On a block device Arbor's size rows are its blocks in use.
#[test]
fn quick_smoke_on_a_block_device() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let backing = dir.path().join("loop-backing");
    std::fs::File::create(&backing).expect("create").set_len(256 << 20).expect("set_len");
    let Some(lo) = LoopDevice::attach_or_skip(&backing, "quick_smoke_on_a_block_device") else {
        return;
    };
    let json = dir.path().join("out.json");
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_kv-bench"))
            .args(["--quick-smoke", "--i-know-this-erases", "--device"])
            .arg(lo.path())
            .arg("--dir")
            .arg(dir.path())
            .arg("--json")
            .arg(&json),
    );
    assert!(!stdout.contains("ERROR"), "{stdout}");
    let doc = read_json(&json);
    let arbor = &doc["engines"]["arbor"]["cells"];
    for row in ["growth_free", "growth_held", "size_after_load", "disk_after_load", "size_at_end"] {
        assert!(arbor[row]["value"].as_f64().is_some(), "arbor {row}: {}", arbor[row]);
    }
    // Issue 15: the cold rows reopen the store on the device; the device rows read it raw.
    for row in
        ["cold_get_1t", "cold_get_many", "cold_get_nt", "device_qd1_iops", "device_qd32_iops"]
    {
        assert!(arbor[row]["value"].as_f64().is_some_and(|v| v > 0.0), "arbor {row}: {arbor}");
    }
    assert!(arbor["size_after_load"]["value"].as_f64().is_some_and(|v| v > 0.0), "{doc}");
}

/// Issue 18: `--workloads` runs only the rows asked for (and the load); key and value sizes,
/// the distribution and the durability reach every engine; the JSON holds every run, the
/// engines' versions and the git commit.
#[test]
fn selected_workloads_shapes_and_every_run_in_json() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let json = dir.path().join("out.json");
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_kv-bench"))
            .args([
                "--keys",
                "2000",
                "--durable-commits",
                "20",
                "--reads",
                "2000",
                "--repeats",
                "2",
            ])
            .args([
                "--workloads",
                "durable_p99,reads_1t",
                "--key-size",
                "16",
                "--value-size",
                "1000",
            ])
            .args(["--distribution", "zipf:0.8", "--durability", "none", "--dir"])
            .arg(dir.path())
            .arg("--json")
            .arg(&json),
    );
    assert!(!stdout.contains("ERROR") && !stdout.contains("YCSB A"), "{stdout}");
    assert!(stdout.contains("16-byte random keys, 1000-byte random values"), "{stdout}");
    let doc = read_json(&json);
    assert_eq!(doc["config"]["durability"], "none", "{doc}");
    assert_eq!(doc["config"]["distribution"], "zipf:0.8", "{doc}");
    assert!(doc["build"]["git_commit"].as_str().is_some_and(|c| !c.is_empty()), "{doc}");
    assert!(doc["build"]["engines"]["arbor"].as_str().is_some(), "{doc}");
    let ids: Vec<&str> =
        doc["rows"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "bulk_load",
            "durable_single",
            "durable_p50",
            "durable_p99",
            "durable_blocks",
            "durable_bytes",
            "durable_io_bytes",
            "reads_1t",
            "reads_2t",
            "reads_scaling",
            "reads_nt"
        ]
    );
    for engine in doc["engines"].as_object().expect("engines").values() {
        let runs = engine["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{engine}");
        for id in ["reads_1t", "reads_2t", "reads_scaling"] {
            assert!(runs.iter().all(|r| r[id]["value"].as_f64().is_some()), "{id}: {engine}");
        }
        assert!(engine["cells"].get("ycsb_a").is_none(), "{engine}");
    }
}

#[test]
fn refuses_unknown_workloads_and_bad_sizes() {
    for args in [["--workloads", "nope"], ["--key-size", "4"], ["--distribution", "zipf:2"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_kv-bench"))
            .args(["--quick-smoke"])
            .args(args)
            .output()
            .expect("run kv-bench");
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted");
    }
}
