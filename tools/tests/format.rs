//! `arbor format` refuses a target that holds data unless `--force` (issue 12).

mod common;

use common::{arbor, describe, tempdir};

#[test]
fn format_refuses_a_file_with_data_unless_forced() {
    let dir = tempdir();
    let file = dir.path().join("notes.txt");
    let notes = b"meeting notes: do not lose these\n".repeat(100);
    std::fs::write(&file, &notes).unwrap();
    let f = file.to_str().unwrap();

    let o = arbor(&["format", f]);
    assert!(!o.status.success(), "format overwrote a file with data: {}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("non-zero data in the first MiB"), "{}", describe(&o));
    assert!(err.contains("--force"), "the error should say how to overwrite: {}", describe(&o));
    assert_eq!(std::fs::read(&file).unwrap(), notes, "the refused file changed");

    let o = arbor(&["format", f, "--force", "--size", "16M"]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = arbor(&["check", f]);
    assert!(o.status.success(), "{}", describe(&o));
}
