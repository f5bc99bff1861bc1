//! Issue 18: `format --size` refusals, files left behind by failed commands, `get`, `scan`
//! and the readable dump formats, end to end through the binary.

mod common;

use std::path::Path;

use common::*;

/// Names in `dir` (temporary files included).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn format_refuses_bad_sizes_and_creates_nothing() {
    let dir = tempdir();
    let f = dir.path().join("s.arbor");
    let s = f.to_str().unwrap();
    for size in ["0", "1", "100K", "583K", "x", "12Q"] {
        let o = arbor(&["format", s, "--size", size]);
        assert_eq!(o.status.code(), Some(2), "--size {size}: {}", describe(&o));
        assert!(!f.exists(), "--size {size} left a file");
    }
    let o = arbor(&["format", s, "--size", "100K"]);
    assert!(
        stderr(&o).contains("too small") && stderr(&o).contains("584.0 KiB"),
        "{}",
        describe(&o)
    );
    // Far more than any test machine's free space: refused before anything is created.
    let o = arbor(&["format", s, "--size", "1024T"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("free"), "{}", describe(&o));
    assert!(!f.exists(), "a refused --size left a file");
    // 64 KiB blocks need more: the superblock area and 64 blocks of 64 KiB.
    let o = arbor(&["format", s, "--size", "1M", "--block-size", "65536"]);
    assert!(stderr(&o).contains("65536-byte blocks needs at least"), "{}", describe(&o));
    assert!(!f.exists());
    assert_eq!(names(dir.path()), Vec::<String>::new(), "temporary files left behind");
}

#[test]
fn format_honours_small_sizes() {
    let dir = tempdir();
    for (size, bytes) in [("584K", 584 << 10), ("585K", 588 << 10), ("1m", 1 << 20)] {
        let f = dir.path().join(format!("s{size}.arbor"));
        let o = arbor(&["format", f.to_str().unwrap(), "--size", size]);
        assert!(o.status.success(), "{}", describe(&o));
        assert_eq!(std::fs::metadata(&f).unwrap().len(), bytes, "--size {size}");
        let o = arbor(&["check", f.to_str().unwrap()]);
        assert!(o.status.success(), "{}", describe(&o));
    }
}

fn sample_store(path: &Path) {
    build(path, |db| {
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("users").unwrap();
        t.insert(b"alice", b"admin").unwrap();
        t.insert(b"bob", b"reader").unwrap();
        t.insert(b"bobby", b"").unwrap();
        t.insert([0, 0xff], b"tab\there").unwrap();
        t.insert(b"carol", b"0xnot hex").unwrap();
        tx.tree("empty").unwrap();
        tx.commit().unwrap();
    });
}

#[test]
fn get_prints_values_and_exits_1_for_a_missing_key() {
    let dir = tempdir();
    let f = dir.path().join("s.arbor");
    sample_store(&f);
    let s = f.to_str().unwrap();
    let o = arbor(&["get", s, "users", "alice"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(stdout(&o), "admin\n");
    let o = arbor(&["get", s, "users", "0x00ff", "--hex"]);
    assert_eq!(stdout(&o), "0x7461620968657265\n", "{}", describe(&o));
    let o = arbor(&["get", s, "users", "00FF", "--hex", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc, serde_json::json!({"key_hex": "00ff", "value_hex": "7461620968657265"}));
    let o = arbor(&["get", s, "users", "carol"]);
    assert_eq!(stdout(&o), "0x30786e6f7420686578\n", "text starting with 0x is shown as hex");
    let o = arbor(&["get", s, "users", "nobody"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(stdout(&o), "");
    let o = arbor(&["get", s, "nope", "alice"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("no tree named"), "{}", describe(&o));
    let o = arbor(&["get", s, "users", "zz", "--hex"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[test]
fn scan_bounds_limit_and_json() {
    let dir = tempdir();
    let f = dir.path().join("s.arbor");
    sample_store(&f);
    let s = f.to_str().unwrap();
    let o = arbor(&["scan", s, "users"]);
    assert!(o.status.success(), "{}", describe(&o));
    let all = "0x00ff\t0x7461620968657265\nalice\tadmin\nbob\treader\nbobby\t\n\
               carol\t0x30786e6f7420686578\n";
    assert_eq!(stdout(&o), all);
    let o = arbor(&["scan", s, "users", "--prefix", "bob"]);
    assert_eq!(stdout(&o), "bob\treader\nbobby\t\n");
    let o = arbor(&["scan", s, "users", "--from", "alice", "--to", "bobby"]);
    assert_eq!(stdout(&o), "alice\tadmin\nbob\treader\n");
    let o = arbor(&["scan", s, "users", "--prefix", "b", "--from", "bobby"]);
    assert_eq!(stdout(&o), "bobby\t\n");
    let o = arbor(&["scan", s, "users", "--from", "c", "--to", "a"]);
    assert!(o.status.success() && stdout(&o).is_empty(), "{}", describe(&o));
    let o = arbor(&["scan", s, "users", "--to", "0x01", "--hex"]);
    assert_eq!(stdout(&o), "0x00ff\t0x7461620968657265\n");
    let o = arbor(&["scan", s, "users", "--limit", "2", "--json"]);
    let lines: Vec<serde_json::Value> =
        stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"key_hex": "00ff", "value_hex": "7461620968657265"}),
            serde_json::json!({"key": "alice", "value": "admin"}),
        ]
    );
    let o = arbor(&["scan", s, "empty"]);
    assert!(o.status.success() && stdout(&o).is_empty(), "{}", describe(&o));
    let o = arbor(&["scan", s, "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[test]
fn dump_text_and_jsonl() {
    let dir = tempdir();
    let f = dir.path().join("s.arbor");
    sample_store(&f);
    let s = f.to_str().unwrap();
    let o = arbor(&["dump", s, "--format", "text"]);
    assert!(o.status.success(), "{}", describe(&o));
    let text = stdout(&o);
    assert!(text.starts_with("tree \"empty\"\ntree \"users\"\n0x00ff\t"), "{text}");
    assert!(text.contains("\nbobby\t\n"), "{text}");
    let out = dir.path().join("d.jsonl");
    let o = arbor(&["dump", s, "--format", "jsonl", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0], serde_json::json!({"tree": "empty"}));
    assert_eq!(lines[3], serde_json::json!({"tree": "users", "key": "alice", "value": "admin"}));
}

#[test]
fn failed_dumps_leave_no_file_and_keep_an_old_one() {
    let dir = tempdir();
    let f = dir.path().join("s.arbor");
    sample_store(&f);
    let out = dir.path().join("out.adump");
    let o = arbor(&["dump", "/nonexistent/store", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(!out.exists(), "dump created its output before opening the store");
    std::fs::write(&out, b"old backup").unwrap();
    let o = arbor(&["dump", f.to_str().unwrap(), "--tree", "nope", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"old backup", "a failed dump replaced the file");
    let o = arbor(&["dump", f.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(std::fs::read(&out).unwrap().starts_with(b"ARBORDMP"));
    assert_eq!(names(dir.path()), vec!["out.adump", "s.arbor"], "temporary files left behind");
}

#[test]
fn compact_refusals_leave_the_destination_alone() {
    let dir = tempdir();
    let f = dir.path().join("s.arbor");
    sample_store(&f);
    let s = f.to_str().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"do not lose").unwrap();
    let o = arbor(&["compact", s, notes.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("--force"), "{}", describe(&o));
    assert_eq!(std::fs::read(&notes).unwrap(), b"do not lose");
    let o = arbor(&["compact", s, s]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("source"), "{}", describe(&o));
    let o = arbor(&["compact", dir.path().join("missing").to_str().unwrap(), "c.arbor"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert_eq!(names(dir.path()), vec!["notes.txt", "s.arbor"]);
    // --force replaces the file with the compacted store, atomically.
    let o = arbor(&["compact", s, notes.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = arbor(&["scan", notes.to_str().unwrap(), "users", "--prefix", "al"]);
    assert_eq!(stdout(&o), "alice\tadmin\n", "{}", describe(&o));
    assert_eq!(names(dir.path()), vec!["notes.txt", "s.arbor"]);
}
