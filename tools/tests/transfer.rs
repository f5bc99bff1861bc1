//! `arbor format`, `load`, `dump`, `compact`, `stat`, end to end through the binary.

mod common;

use common::*;

/// Sorted trees with binary keys (empty, 0x00, 0xff, random), empty values, a 100 MiB value.
fn sample() -> Vec<(&'static str, Entries)> {
    let mut rng = Rng(7);
    let mut bin: Entries = vec![
        (vec![], b"empty key".to_vec()),
        (vec![0], vec![]),
        (vec![0, 0], vec![0; 3]),
        (vec![0xff; 40], vec![0xff]),
    ];
    for i in 0..3000u32 {
        let len = 1 + (rng.next_u64() % 60) as usize;
        let mut k = rng.bytes(len);
        k.extend_from_slice(&i.to_be_bytes());
        let vlen = (rng.next_u64() % 700) as usize;
        let v = if i % 3 == 0 { vec![] } else { rng.bytes(vlen) };
        bin.push((k, v));
    }
    // A value just over the inline limit and one of 100 MiB (overflow extents).
    bin.push((b"big-1k".to_vec(), rng.bytes(1000)));
    let mut huge = vec![0u8; 100 << 20];
    for (i, chunk) in huge.chunks_mut(4096).enumerate() {
        chunk[0] = i as u8;
        chunk[4095] = (i >> 8) as u8;
    }
    bin.push((b"big-100m".to_vec(), huge));
    bin.sort();
    bin.dedup_by(|a, b| a.0 == b.0);
    vec![("bin", bin), ("empty-tree", vec![]), ("t\u{e9}xt", vec![(b"k".to_vec(), b"v".to_vec())])]
}

#[test]
fn format_load_dump_round_trip_is_exact() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    let input = dir.path().join("in.adump");
    let output = dir.path().join("out.adump");
    let dump = encode_dump(&sample());
    std::fs::write(&input, &dump).unwrap();

    let s = store.to_str().unwrap();
    let o = arbor(&["format", s, "--size", "16M"]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = arbor(&["format", s]);
    assert_eq!(o.status.code(), Some(2), "format must refuse an existing store: {}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("existing data"), "{}", describe(&o));

    let o = arbor_stdin(&["load", s], &input);
    assert!(o.status.success(), "{}", describe(&o));
    let o = arbor(&["dump", s, "-o", output.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    let got = std::fs::read(&output).unwrap();
    assert_eq!(got.len(), dump.len());
    assert!(got == dump, "dump differs from the loaded input");

    // One tree only; a missing tree is an error and is not created.
    let one = dir.path().join("one.adump");
    let o = arbor(&["dump", s, "--tree", "t\u{e9}xt", "-o", one.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(
        std::fs::read(&one).unwrap(),
        encode_dump(&[("t\u{e9}xt", vec![(b"k".to_vec(), b"v".to_vec())])])
    );
    let o = arbor(&["dump", s, "--tree", "nope", "-o", one.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let o = arbor(&["check", s]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(stdout(&o).contains("3 trees"), "{}", describe(&o));
}

#[test]
fn load_is_atomic_and_rejects_damaged_dumps() {
    let dir = tempdir();
    let store = dir.path().join("s.arbor");
    let s = store.to_str().unwrap();
    build(&store, |_| {});
    let items: Vec<(Vec<u8>, Vec<u8>)> =
        (0..500u32).map(|i| (i.to_be_bytes().to_vec(), vec![1; 10])).collect();
    let good = encode_dump(&[("a", items)]);
    let bad_input = dir.path().join("bad.adump");
    // A flipped byte near the end: every record applies, then the checksum fails.
    let mut bad = good.clone();
    let at = bad.len() - 20;
    bad[at] ^= 0x40;
    std::fs::write(&bad_input, &bad).unwrap();
    let o = arbor_stdin(&["load", s], &bad_input);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing was committed"),
        "{}",
        describe(&o)
    );
    let empty = dir.path().join("empty.adump");
    let o = arbor(&["dump", s, "-o", empty.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(std::fs::read(&empty).unwrap(), encode_dump(&[]), "a failed load left data behind");

    // Truncated: an error naming the truncation.
    std::fs::write(&bad_input, &good[..good.len() / 2]).unwrap();
    let o = arbor_stdin(&["load", s], &bad_input);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"), "{}", describe(&o));

    // Batched load of the good dump commits and round-trips.
    let good_input = dir.path().join("good.adump");
    std::fs::write(&good_input, &good).unwrap();
    let o = arbor_stdin(&["load", s, "--batch", "64"], &good_input);
    assert!(o.status.success(), "{}", describe(&o));
    let out = dir.path().join("out.adump");
    let o = arbor(&["dump", s, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(std::fs::read(&out).unwrap(), good);
}

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", describe(o));
    serde_json::from_slice(&o.stdout).expect("JSON output")
}

#[test]
fn compact_is_smaller_with_the_same_dump_and_stat_reports_fill() {
    let dir = tempdir();
    let src = dir.path().join("src.arbor");
    let dst = dir.path().join("dst.arbor");
    // Random-order inserts split leaves in the middle; removing most keys leaves them sparse.
    build(&src, |db| {
        let mut rng = Rng(11);
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("data").unwrap();
        for _ in 0..6000 {
            t.insert(rng.bytes(16), rng.bytes(100)).unwrap();
        }
        tx.commit().unwrap();
        let tx = db.begin_write().unwrap();
        let mut t = tx.tree("data").unwrap();
        let keys: Vec<Vec<u8>> = t.iter().unwrap().map(|r| r.unwrap().0).collect();
        for k in keys.iter().filter(|k| k[0] % 3 != 0) {
            t.remove(k).unwrap();
        }
        tx.commit().unwrap();
    });
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let before = json(&arbor(&["stat", s, "--json"]));
    let report = json(&arbor(&["compact", s, d, "--json"]));
    let after = json(&arbor(&["stat", d, "--json"]));
    let used = |v: &serde_json::Value| v["space"]["used_blocks"].as_u64().unwrap();
    assert!(used(&after) < used(&before), "compact did not shrink: {before} -> {after}");
    assert!(
        report["dst"]["used_bytes"].as_u64() < report["src"]["used_bytes"].as_u64(),
        "{report}"
    );
    assert!(
        report["dst"]["size_bytes"].as_u64() < report["src"]["size_bytes"].as_u64(),
        "{report}"
    );
    let fill = |v: &serde_json::Value| v["trees"][1]["fill"].as_f64().unwrap();
    assert_eq!(after["trees"][1]["name"], "data");
    assert!(fill(&after) > 0.9, "compacted leaves are not full: {after}");
    assert!(fill(&before) < fill(&after), "{before} vs {after}");
    assert_eq!(before["trees"][1]["entries"], after["trees"][1]["entries"]);

    let (a, b) = (dir.path().join("a.adump"), dir.path().join("b.adump"));
    assert!(arbor(&["dump", s, "-o", a.to_str().unwrap()]).status.success());
    assert!(arbor(&["dump", d, "-o", b.to_str().unwrap()]).status.success());
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "compact changed the data");
    let o = arbor(&["check", d]);
    assert!(o.status.success(), "{}", describe(&o));
    // The destination exists now: compact refuses to overwrite it without --force.
    let o = arbor(&["compact", s, d]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[test]
fn bad_input_gives_errors_not_panics() {
    let dir = tempdir();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5a; 300 << 10]).unwrap();
    let j = junk.to_str().unwrap();
    for args in [
        vec!["info", j],
        vec!["check", j],
        vec!["stat", j],
        vec!["dump", j, "-o", "/dev/null"],
        vec!["info", "/nonexistent/x"],
        vec!["format", j, "--block-size", "1000"],
    ] {
        let o = arbor(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("arbor: ") && !err.contains("panicked"), "{args:?}: {err}");
    }
    let o = arbor(&["load", j, "--batch", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn backup_copies_one_snapshot_that_dumps_the_same_and_checks() {
    let dir = tempdir();
    let src = dir.path().join("src.arbor");
    let dst = dir.path().join("backup.arbor");
    build(&src, |db| {
        let mut rng = Rng(12);
        let tx = db.begin_write().unwrap();
        for name in ["a", "b"] {
            let mut t = tx.tree(name).unwrap();
            for _ in 0..2000 {
                t.insert(rng.bytes(12), rng.bytes(60)).unwrap();
            }
        }
        tx.commit().unwrap();
    });
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let report = json(&arbor(&["backup", s, d, "--json"]));
    assert_eq!(report["entries"], 4000, "{report}");
    assert_eq!(report["trees"], 2, "{report}");
    let (a, b) = (dir.path().join("a.adump"), dir.path().join("b.adump"));
    assert!(arbor(&["dump", s, "-o", a.to_str().unwrap()]).status.success());
    assert!(arbor(&["dump", d, "-o", b.to_str().unwrap()]).status.success());
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "backup changed the data");
    let o = arbor(&["check", d]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = arbor(&["backup", s, d]);
    assert_eq!(o.status.code(), Some(2), "refuses an existing destination: {}", describe(&o));
}
