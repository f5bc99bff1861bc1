//! Opening rules: backend choice and fallback, exclusive locking (in this process and from
//! another one), tmpfs refusal, file growth limits, and the existing-data probe.

mod common;

use std::path::Path;
use std::process::Command;

use arbor::io::{
    open_path, probe_existing_data, uring_fallback_reason, BlockDevice, DeviceOptions, IoBackend,
    SimDevice, UringDevice,
};
use arbor::{AlignedBuf, Error};
use arbor_testkit::store::needs_real_file;
use arbor_testkit::LoopDevice;

fn small_opts(backend: IoBackend) -> DeviceOptions {
    DeviceOptions {
        backend,
        queue_depth: 8,
        grow_step_bytes: 1 << 20,
        max_bytes: 4 << 20,
        initial_bytes: 1 << 20,
        overwrite_existing: false,
    }
}

#[test]
fn forced_sync_backend() {
    if needs_real_file("forced_sync_backend", "the pread/pwrite backend on a file") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let dev = open_path(&dir.path().join("s"), true, &small_opts(IoBackend::Sync)).unwrap();
    // "file", or "buffered file" on tmpfs (ARBOR_TEST_DIR).
    let name = dev.describe();
    assert!(name.starts_with("pread/pwrite ") && name.contains("file /"), "{name}");
    let data = AlignedBuf::from_slice(&[7u8; 4096], 4096);
    dev.write_at(4096, &data).unwrap();
    dev.flush().unwrap();
    let mut back = AlignedBuf::zeroed(4096, 4096);
    dev.read_at(4096, &mut back).unwrap();
    assert_eq!(&back[..], &data[..]);
}

#[test]
fn fallback_decision() {
    for (errno, word) in [(1, "permission"), (38, "no io_uring")] {
        // EPERM (seccomp, io_uring_disabled) and ENOSYS (no io_uring in the kernel).
        let reason = uring_fallback_reason(&std::io::Error::from_raw_os_error(errno));
        let reason = reason.unwrap_or_else(|| panic!("errno {errno} must fall back"));
        assert!(reason.contains(word), "{reason}");
    }
    // EMFILE is a real error, not a reason to change backend.
    assert!(uring_fallback_reason(&std::io::Error::from_raw_os_error(24)).is_none());
}

#[test]
fn create_and_reopen_rules() {
    if needs_real_file("create_and_reopen_rules", "file creation, mode and growth") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("f");
    let missing = open_path(&path, false, &small_opts(IoBackend::Auto));
    let not_found = std::io::ErrorKind::NotFound;
    assert!(matches!(missing, Err(Error::Io { source: ref e, .. }) if e.kind() == not_found));
    // The message names the operation and the path; the OS error is only the source, so
    // a reporter that prints the chain prints it once.
    let missing = missing.err().unwrap();
    assert_eq!(missing.to_string(), format!("I/O error: open on {}", path.display()));
    let source = std::error::Error::source(&missing).unwrap().to_string();
    assert!(source.contains("No such file"), "{source}");
    let dev = open_path(&path, true, &small_opts(IoBackend::Auto)).unwrap();
    assert_eq!(dev.len_bytes(), 1 << 20, "initial size");
    drop(dev);
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dev = open_path(&path, false, &small_opts(IoBackend::Auto)).unwrap();
    assert_eq!(dev.len_bytes(), 1 << 20, "reopen keeps the length");
    // Growth goes in steps up to the maximum, then stays.
    assert_eq!(dev.grow((1 << 20) + 1).unwrap(), 2 << 20);
    assert_eq!(dev.grow(100 << 20).unwrap(), 4 << 20, "clamped to max_bytes");
    assert_eq!(dev.grow(100 << 20).unwrap(), 4 << 20, "at max: the old length");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 << 20);
}

#[test]
fn second_open_in_process_is_locked() {
    if needs_real_file("second_open_in_process_is_locked", "the flock of a file") {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("locked");
    let first = open_path(&path, true, &small_opts(IoBackend::Auto)).unwrap();
    for backend in [IoBackend::Auto, IoBackend::Uring, IoBackend::Sync] {
        let second = open_path(&path, true, &small_opts(backend));
        match second {
            Err(Error::Locked { path: ref p, ref holder }) => {
                assert_eq!(p, &path);
                assert_eq!(holder.as_deref(), Some("this process"));
                let msg = second.as_ref().err().unwrap().to_string();
                assert!(msg.contains("already open") && msg.contains("this process"), "{msg}");
            }
            _ => panic!("{backend:?}: {:?}", second.err()),
        }
    }
    drop(first);
    open_path(&path, false, &small_opts(IoBackend::Auto)).expect("free again after drop");
}

const PROBE_ENV: &str = "ARBOR_IO_LOCK_PROBE";

/// Child side of `second_open_from_another_process_is_locked`: run only when the parent
/// sets the environment variable, prints what `open_path` said.
#[test]
fn lock_probe_child() {
    let Some(path) = std::env::var_os(PROBE_ENV) else { return };
    let verdict = match open_path(Path::new(&path), false, &small_opts(IoBackend::Auto)) {
        Ok(_) => "opened".to_string(),
        Err(Error::Locked { holder: Some(h), .. }) if h.starts_with("process ") => {
            "locked".to_string()
        }
        Err(e) => format!("error {e}"),
    };
    println!("lock-probe-verdict: {verdict}");
}

fn probe_from_child(path: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("lock-probe-verdict: "));
    let line = line.unwrap_or_else(|| panic!("child printed no verdict: {stdout}"));
    line.split("lock-probe-verdict: ").nth(1).unwrap().trim().to_string()
}

#[test]
fn second_open_from_another_process_is_locked() {
    if needs_real_file("second_open_from_another_process_is_locked", "a lock across processes") {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("xlocked");
    let first = open_path(&path, true, &small_opts(IoBackend::Auto)).unwrap();
    assert_eq!(probe_from_child(&path), "locked");
    drop(first);
    assert_eq!(probe_from_child(&path), "opened");
}

fn dev_shm_is_tmpfs() -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/dev/shm" && f[2] == "tmpfs"
    })
}

/// Log records of this test binary, for the tests that check what the engine logs.
struct Captured(std::sync::Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

static CAPTURED: Captured = Captured(std::sync::Mutex::new(Vec::new()));

/// The log lines captured so far that mention `needle`.
fn logged(needle: &str) -> Vec<String> {
    let _ = log::set_logger(&CAPTURED);
    log::set_max_level(log::LevelFilter::Trace);
    CAPTURED.0.lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect()
}

/// On tmpfs the file is used buffered, with every backend, and says so in one log line.
#[test]
fn tmpfs_is_buffered() {
    if needs_real_file("tmpfs_is_buffered", "a file on tmpfs") {
        return;
    }
    if !dev_shm_is_tmpfs() {
        println!("SKIPPED tmpfs_is_buffered: /dev/shm is not a tmpfs mount");
        return;
    }
    let _ = logged("");
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    for (i, backend) in [IoBackend::Auto, IoBackend::Sync, IoBackend::Uring].into_iter().enumerate()
    {
        let path = dir.path().join(format!("t{i}"));
        let dev = match open_path(&path, true, &small_opts(backend)) {
            Err(Error::Io { op, .. }) if backend == IoBackend::Uring && op.contains("io_uring") => {
                continue; // no io_uring here: nothing to check for this backend
            }
            other => other.unwrap(),
        };
        assert!(dev.describe().contains("buffered file"), "{}", dev.describe());
        let mut data = AlignedBuf::zeroed(8192, 4096);
        data[100] = 7;
        dev.write_at(4096, &data).unwrap();
        dev.flush().unwrap();
        let mut back = AlignedBuf::zeroed(8192, 4096);
        dev.read_at(4096, &mut back).unwrap();
        assert_eq!(back[100], 7);
        let lines = logged(&path.display().to_string());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("WARN O_DIRECT is not supported"), "{lines:?}");
        assert!(lines[0].contains("tmpfs") && lines[0].contains("fdatasync"), "{lines:?}");
    }
}

#[test]
fn existing_data_probe() {
    let dev = SimDevice::new(1 << 20, 512, 0);
    assert_eq!(probe_existing_data(&dev).unwrap(), None);
    let mut block = AlignedBuf::zeroed(4096, 4096);
    block[1080 - 1024] = 0x53;
    block[1081 - 1024] = 0xEF;
    dev.write_at(1024 - 1024, &AlignedBuf::zeroed(4096, 4096)).unwrap();
    dev.write_at(1024, &block[..3072]).unwrap();
    assert!(probe_existing_data(&dev).unwrap().unwrap().contains("ext"));
    let dev = SimDevice::new(1 << 20, 512, 0);
    let mut sb = AlignedBuf::zeroed(4096, 4096);
    sb[..8].copy_from_slice(b"ARBORSB\0");
    dev.write_at(65536, &sb).unwrap();
    assert!(probe_existing_data(&dev).unwrap().unwrap().contains("Arbor"));
    let dev = SimDevice::new(1 << 20, 512, 0);
    let mut xfs = AlignedBuf::zeroed(4096, 4096);
    xfs[..4].copy_from_slice(b"XFSB");
    dev.write_at(0, &xfs).unwrap();
    assert!(probe_existing_data(&dev).unwrap().unwrap().contains("XFS"));
    let dev = SimDevice::new(1 << 20, 512, 0);
    let mut btrfs = AlignedBuf::zeroed(4096, 4096);
    btrfs[64..72].copy_from_slice(b"_BHRfS_M");
    dev.write_at(65536, &btrfs).unwrap();
    assert!(probe_existing_data(&dev).unwrap().unwrap().contains("btrfs"));
    // A tiny device is probed over what it has.
    assert_eq!(probe_existing_data(&SimDevice::new(4096, 512, 0)).unwrap(), None);
}

#[test]
fn uring_device_reports_itself() {
    if needs_real_file("uring_device_reports_itself", "io_uring on a file") {
        return;
    }
    let dir = arbor_testkit::temp_dir!();
    let dev = UringDevice::open(&dir.path().join("u"), true, &small_opts(IoBackend::Uring));
    let dev = dev.unwrap();
    assert_eq!(dev.queue_depth(), 8);
    let name = dev.describe();
    assert!(name.starts_with("io_uring ") && name.contains("file /"), "{name}");
}

#[test]
fn read_past_a_truncated_end_is_an_error_not_a_hang() {
    if needs_real_file(
        "read_past_a_truncated_end_is_an_error_not_a_hang",
        "a file truncated behind the store",
    ) {
        return;
    }
    // Someone truncates the file behind our back: reads there return 0 bytes, which both
    // backends must report (UnexpectedEof) after finishing the rest of the batch.
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("trunc");
    for backend in [IoBackend::Uring, IoBackend::Sync] {
        let dev = open_path(&path, true, &small_opts(backend)).unwrap();
        let data = AlignedBuf::from_slice(&[3u8; 8192], 4096);
        dev.write_at(0, &data).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(8192).unwrap();
        let mut a = AlignedBuf::zeroed(4096, 4096);
        let mut b = AlignedBuf::zeroed(4096, 4096);
        let mut ops = [
            arbor::io::ReadOp { offset: 0, buf: &mut a },
            arbor::io::ReadOp { offset: 65536, buf: &mut b },
        ];
        let err = dev.read_batch(&mut ops).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{backend:?}: {err}");
        assert!(a.iter().all(|&x| x == 3), "{backend:?}: the in-range read completed");
        drop(dev);
        std::fs::remove_file(&path).unwrap();
    }
}

const KILL_CHILD_ENV: &str = "ARBOR_IO_KILL_CHILD";
/// Kill/reopen cycles in a row: the lock must be free as soon as `wait()` returns, every time.
const KILL_CYCLES: usize = 50;
/// Bounds the child's commit loop (the parent kills it long before).
const KILL_CHILD_COMMITS_MAX: u64 = 1_000_000;

/// Child side of `reopen_after_kill_is_never_locked`: opens the store and commits
/// `Immediate` transactions until the parent kills it. Run only when the parent sets the
/// environment variable.
#[test]
fn kill_child_commits() {
    use std::io::Write;
    let Some(path) = std::env::var_os(KILL_CHILD_ENV) else { return };
    let db = arbor::Db::open(Path::new(&path), common::small_opts()).expect("child open");
    for i in 0..KILL_CHILD_COMMITS_MAX {
        let mut tx = db.begin_write().expect("begin");
        tx.set_durability(arbor::Durability::Immediate);
        tx.tree("t").expect("tree").insert(i.to_be_bytes(), [7u8; 100]).expect("insert");
        tx.commit().expect("commit");
        if i == 0 {
            println!("kill-child-committing");
            std::io::stdout().flush().expect("flush stdout");
        }
    }
}

/// Spawns the child, waits until it has committed once, lets it commit a little more, then
/// SIGKILLs it and reaps it.
fn commit_then_kill(path: &Path, cycle: usize) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_child_commits", "--nocapture", "--test-threads=1"])
        .env(KILL_CHILD_ENV, path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("kill-child-committing"));
    assert!(started, "cycle {cycle}: the child never committed");
    // Vary the moment of the kill so some land mid-commit.
    std::thread::sleep(std::time::Duration::from_millis((cycle % 5) as u64));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Runs [`KILL_CYCLES`] kill/reopen cycles on the store at `path`; returns the cycles whose
/// reopen right after `wait()` said `Locked`.
fn kill_reopen_cycles(path: &Path) -> Vec<usize> {
    let mut locked = Vec::new();
    for cycle in 0..KILL_CYCLES {
        commit_then_kill(path, cycle);
        match arbor::Db::open(path, common::small_opts()) {
            Ok(db) => drop(db),
            Err(Error::Locked { .. }) => {
                locked.push(cycle);
                // Let the old ring go so the next cycle's child can open the store.
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("cycle {cycle}: reopen failed: {e}"),
        }
    }
    locked
}

/// Issue 12: after `kill -9` of a process that had the store open and `wait()` for it, the
/// store must open at once. The lock used to live on the descriptor io_uring used, and the
/// kernel frees a dead process's rings asynchronously, after `wait()` returns.
#[test]
fn reopen_after_kill_is_never_locked() {
    if needs_real_file(
        "reopen_after_kill_is_never_locked",
        "kill -9 of a child process holding the lock",
    ) {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("killed");
    drop(arbor::Db::create(&path, common::small_opts()).unwrap());
    let locked = kill_reopen_cycles(&path);
    assert!(locked.is_empty(), "Locked right after wait() in cycles {locked:?} of {KILL_CYCLES}");
}

/// The same on a block device, whose lock is the kernel's `O_EXCL` claim.
#[test]
fn reopen_after_kill_is_never_locked_on_a_block_device() {
    if needs_real_file(
        "reopen_after_kill_is_never_locked_on_a_block_device",
        "a loop device and kill -9",
    ) {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let backing = dir.path().join("loop-backing");
    std::fs::File::create(&backing).unwrap().set_len(32 << 20).unwrap();
    let test = "reopen_after_kill_is_never_locked_on_a_block_device";
    let Some(lo) = LoopDevice::attach_or_skip(&backing, test) else { return };
    drop(arbor::Db::create(lo.path(), common::small_opts()).unwrap());
    let locked = kill_reopen_cycles(lo.path());
    assert!(locked.is_empty(), "Locked right after wait() in cycles {locked:?} of {KILL_CYCLES}");
}

const QUIET_ENV: &str = "ARBOR_QUIET_CHILD";

/// Child side of `library_never_writes_to_stderr`: create, reopen, a second opener, a
/// target that is no store, the pread/pwrite backend, a buffered file on tmpfs, a memory
/// store. Runs only when the parent sets the environment variable.
#[test]
fn quiet_child() {
    let Some(dir) = std::env::var_os(QUIET_ENV) else { return };
    let dir = Path::new(&dir);
    let path = dir.join("quiet");
    let db = arbor::Db::create(&path, arbor::Options::default()).unwrap();
    let tx = db.begin_write().unwrap();
    tx.tree("t").unwrap().insert(b"k", b"v").unwrap();
    tx.commit().unwrap();
    let second = arbor::Db::open(&path, arbor::Options::default());
    assert!(matches!(second, Err(Error::Locked { .. })));
    drop(db);
    let sync = arbor::Options { io_backend: IoBackend::Sync, ..arbor::Options::default() };
    drop(arbor::Db::open(&path, sync).unwrap());
    std::fs::write(dir.join("zeros"), vec![0u8; 1 << 20]).unwrap();
    let none = arbor::Db::open(dir.join("zeros"), arbor::Options::default());
    assert!(matches!(none, Err(Error::NotAnArborStore { .. })));
    if dev_shm_is_tmpfs() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let db = arbor::Db::create(shm.path().join("s"), arbor::Options::default()).unwrap();
        assert!(db.stats().device.contains("buffered"), "{}", db.stats().device);
    }
    let db = arbor::Db::memory(16 << 20).unwrap();
    db.begin_write().unwrap().commit().unwrap();
    println!("quiet-child-done");
}

/// The library reports through return values and the `log` crate, never by printing: a
/// child process that goes through the paths above writes nothing to stderr.
#[test]
fn library_never_writes_to_stderr() {
    if needs_real_file("library_never_writes_to_stderr", "a child process opening files") {
        return;
    }
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "quiet_child", "--nocapture", "--test-threads=1"])
        .env(QUIET_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("quiet-child-done"), "child: {stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "the library wrote to stderr");
}
