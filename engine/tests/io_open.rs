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
    let dir = arbor_testkit::temp_dir!();
    let dev = open_path(&dir.path().join("s"), true, &small_opts(IoBackend::Sync)).unwrap();
    assert!(dev.describe().starts_with("pread/pwrite file"), "{}", dev.describe());
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
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("f");
    let missing = open_path(&path, false, &small_opts(IoBackend::Auto));
    assert!(matches!(missing, Err(Error::Io(ref e)) if e.kind() == std::io::ErrorKind::NotFound));
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
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("locked");
    let first = open_path(&path, true, &small_opts(IoBackend::Auto)).unwrap();
    for backend in [IoBackend::Auto, IoBackend::Uring, IoBackend::Sync] {
        let second = open_path(&path, true, &small_opts(backend));
        assert!(matches!(second, Err(Error::Locked)), "{backend:?}: {:?}", second.err());
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
        Err(Error::Locked) => "locked".to_string(),
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

#[test]
fn tmpfs_is_refused_clearly() {
    if !dev_shm_is_tmpfs() {
        println!("SKIPPED tmpfs_is_refused_clearly: /dev/shm is not a tmpfs mount");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    for backend in [IoBackend::Auto, IoBackend::Sync] {
        let err = open_path(&dir.path().join("t"), true, &small_opts(backend)).err();
        match err {
            Some(Error::InvalidInput(msg)) => {
                assert!(msg.contains("O_DIRECT is not supported"), "{msg}");
                assert!(msg.contains("tmpfs"), "{msg}");
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
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
    let dir = arbor_testkit::temp_dir!();
    let dev = UringDevice::open(&dir.path().join("u"), true, &small_opts(IoBackend::Uring));
    let dev = dev.unwrap();
    assert_eq!(dev.queue_depth(), 8);
    assert!(dev.describe().starts_with("io_uring file"), "{}", dev.describe());
}

#[test]
fn read_past_a_truncated_end_is_an_error_not_a_hang() {
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
            Err(Error::Locked) => {
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
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let path = dir.path().join("killed");
    drop(arbor::Db::create(&path, common::small_opts()).unwrap());
    let locked = kill_reopen_cycles(&path);
    assert!(locked.is_empty(), "Locked right after wait() in cycles {locked:?} of {KILL_CYCLES}");
}

/// A loop device (`losetup --direct-io=on`) detached on drop.
struct LoopDevice(std::path::PathBuf);

impl LoopDevice {
    fn attach(file: &Path) -> Result<LoopDevice, String> {
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

/// The same on a block device, whose lock is the kernel's `O_EXCL` claim.
#[test]
fn reopen_after_kill_is_never_locked_on_a_block_device() {
    let _serial = common::serialized_with_spawns();
    let dir = arbor_testkit::temp_dir!();
    let backing = dir.path().join("loop-backing");
    std::fs::File::create(&backing).unwrap().set_len(32 << 20).unwrap();
    let lo = match LoopDevice::attach(&backing) {
        Ok(lo) => lo,
        Err(reason) => {
            println!("SKIPPED reopen_after_kill_is_never_locked_on_a_block_device: {reason}");
            return;
        }
    };
    drop(arbor::Db::create(&lo.0, common::small_opts()).unwrap());
    let locked = kill_reopen_cycles(&lo.0);
    assert!(locked.is_empty(), "Locked right after wait() in cycles {locked:?} of {KILL_CYCLES}");
}
