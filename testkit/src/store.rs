//! Test stores named by path, on files or in memory (design.md §7, "Test stores").
//!
//! Tests open their stores through [`create`], [`open`] and [`open_or_create`] instead of
//! `Db::create`, `Db::open` and `Db::open_or_create`. By default these are exactly the
//! library's calls on a file. With [`STORE_ENV`]`=memory` (the memory pass of
//! `scripts/test.sh`) every path names a [`MemDevice`] in a process-wide registry instead,
//! and the store is created and opened with `Db::create_on` / `Db::open_on` on a clone of
//! it: a reopen sees the same bytes, as it would see the same file. The registry plays the
//! part of the filesystem (RocksDB's `MemEnv` does the same for its tests); the library
//! itself only offers the device-level API (`create_on`, `open_on`, `MemDevice`), as redb
//! offers `InMemoryBackend` with `Builder::create_with_backend`.
//!
//! What a memory store does not have: a lock (a second open of a store still open gives a
//! second handle over the same bytes, not `Error::Locked`), `O_DIRECT`, file growth steps,
//! and another process. A test that needs any of these calls [`needs_real_file`], which
//! skips it in the memory pass (it has run on a file in the default pass).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use arbor::io::{BlockDevice, MemDevice};
use arbor::{AlignedBuf, Db, Error, Options, Result};

/// The environment variable that chooses where the stores of [`create`], [`open`] and
/// [`open_or_create`] live: unset, empty or `file` for files (the default), `memory` for
/// memory devices. Read by test code only, never by the library.
pub const STORE_ENV: &str = "ARBOR_TEST_STORE";

/// The sector of a memory device: raw contents written with [`write_bytes`] are a whole
/// number of them.
const MEM_SECTOR_BYTES: usize = 4096;

/// Where this run keeps its test stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Files (or block devices) at the paths the tests give.
    File,
    /// Memory devices named by those paths.
    Memory,
}

/// The backing [`STORE_ENV`] asks for. Panics on a value it does not know, so that a typo
/// cannot silently run the default pass twice.
pub fn backing() -> Backing {
    match std::env::var(STORE_ENV).as_deref() {
        Err(_) | Ok("") | Ok("file") => Backing::File,
        Ok("memory") => Backing::Memory,
        Ok(other) => panic!("{STORE_ENV} must be `file` or `memory`, not {other:?}"),
    }
}

/// Whether this is the memory pass.
pub fn in_memory() -> bool {
    backing() == Backing::Memory
}

/// Marks a test that needs a real file or block device (a lock across handles or
/// processes, `kill -9` of a child, `O_DIRECT`, tmpfs, loop devices, file sizes). In the
/// memory pass it prints `SKIPPED <test> in the memory pass: needs a real file (<why>)`
/// and returns true, and the caller returns; otherwise it returns false.
pub fn needs_real_file(test: &str, why: &str) -> bool {
    let skip = in_memory();
    if skip {
        println!("SKIPPED {test} in the memory pass: needs a real file ({why})");
    }
    skip
}

/// One memory store: its device (clones share the bytes) and the maximum it was made with.
struct Entry {
    dev: MemDevice,
    max_bytes: u64,
}

impl Entry {
    fn new(max_bytes: u64) -> Entry {
        Entry { dev: MemDevice::new(max_bytes), max_bytes }
    }
}

/// The memory stores of this process by path: the memory pass's filesystem.
static MEMORY: Mutex<BTreeMap<PathBuf, Entry>> = Mutex::new(BTreeMap::new());

fn registry() -> MutexGuard<'static, BTreeMap<PathBuf, Entry>> {
    MEMORY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A clone of the memory device named `path`, if there is one.
fn memory_device(path: &Path) -> Option<MemDevice> {
    registry().get(path).map(|entry| entry.dev.clone())
}

/// What `Db::open` says about a path that does not exist.
fn not_found(path: &Path) -> Error {
    Error::Io { op: "open", path: Some(path.to_path_buf()), source: ErrorKind::NotFound.into() }
}

/// `Db::create(path, opts)`, or in the memory pass `Db::create_on` on the memory device
/// named `path` (a new one, empty and growing up to `opts.file_max_bytes`, if the path names
/// none yet; else the existing one, which `create` refuses as it would refuse the file
/// unless `opts.overwrite_existing`).
pub fn create(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
    let path = path.as_ref();
    if !in_memory() {
        return Db::create(path, opts);
    }
    let dev = registry()
        .entry(path.to_path_buf())
        .or_insert_with(|| Entry::new(opts.file_max_bytes))
        .dev
        .clone();
    Db::create_on(Box::new(dev), opts)
}

/// `Db::open(path, opts)`, or in the memory pass `Db::open_on` on the memory device named
/// `path` (`Error::Io` with `NotFound` if there is none, as for a missing file).
pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
    let path = path.as_ref();
    if !in_memory() {
        return Db::open(path, opts);
    }
    let dev = memory_device(path).ok_or_else(|| not_found(path))?;
    Db::open_on(Box::new(dev), opts)
}

/// `Db::open_or_create(path, opts)`, or in the memory pass the same rule on the memory
/// device named `path`: open it, or create a store if there is none or it holds no store.
pub fn open_or_create(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
    let path = path.as_ref();
    if !in_memory() {
        return Db::open_or_create(path, opts);
    }
    match open(path, opts.clone()) {
        Err(Error::NotAnArborStore { .. }) => create(path, opts),
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => create(path, opts),
        other => other,
    }
}

/// Copies the store at `from` to a new store at `to` as a power cut would leave it if every
/// write that had completed reached the medium: the bytes as they are now, whether or not
/// they were flushed, and whatever the handles still open on `from` do next. Opening `to`
/// recovers as after a crash of the process (no clean close). For crashes that lose or tear
/// unflushed writes, use `SimDevice::crash`.
///
/// A file is copied (its completed writes are in the page cache even when they went
/// around it with `O_DIRECT`); a memory device is read whole under its lock, so the image
/// falls between two write batches.
pub fn crash_image(from: impl AsRef<Path>, to: impl AsRef<Path>) {
    let (from, to) = (from.as_ref(), to.as_ref());
    if !in_memory() {
        std::fs::copy(from, to).expect("copy the store's file");
        return;
    }
    let (dev, max_bytes) = {
        let map = registry();
        let entry = map.get(from).unwrap_or_else(|| panic!("no memory store {}", from.display()));
        (entry.dev.clone(), entry.max_bytes)
    };
    let image = Entry::new(max_bytes);
    copy_device(&dev, &image.dev);
    registry().insert(to.to_path_buf(), image);
}

/// Copies every byte of `from` onto the empty device `to`.
fn copy_device(from: &MemDevice, to: &MemDevice) {
    let bytes = read_device(from);
    let len = bytes.len() as u64;
    if len > 0 {
        assert_eq!(to.grow(len).expect("grow the image"), len, "the image's length");
        to.write_at(0, &bytes).expect("write the image");
    }
}

/// Puts `bytes` at `path` as raw contents, not a store: a file, or in the memory pass a
/// memory device of exactly that length (a whole number of 4 KiB sectors) growing up to
/// `Options::default().file_max_bytes`.
pub fn write_bytes(path: impl AsRef<Path>, bytes: &[u8]) {
    let path = path.as_ref();
    if !in_memory() {
        std::fs::write(path, bytes).expect("write the file");
        return;
    }
    assert!(
        bytes.len().is_multiple_of(MEM_SECTOR_BYTES),
        "a memory device holds whole 4 KiB sectors, not {} bytes",
        bytes.len()
    );
    let entry = Entry::new(Options::default().file_max_bytes);
    if !bytes.is_empty() {
        entry.dev.grow(bytes.len() as u64).expect("grow the memory device");
        let data = AlignedBuf::from_slice(bytes, MEM_SECTOR_BYTES);
        entry.dev.write_at(0, &data).expect("write the memory device");
    }
    registry().insert(path.to_path_buf(), entry);
}

/// The raw contents at `path`: the file's, or in the memory pass the memory device's.
pub fn read_bytes(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    if !in_memory() {
        return std::fs::read(path).expect("read the file");
    }
    let dev = memory_device(path).unwrap_or_else(|| panic!("no memory store {}", path.display()));
    read_device(&dev).to_vec()
}

/// Every byte of `dev`, in one read: it takes the device's lock once, so no write batch is
/// half in it. Read again if the device grew meanwhile (a store that grew may already have
/// written past the length read).
fn read_device(dev: &MemDevice) -> AlignedBuf {
    loop {
        let len = dev.len_bytes();
        let mut bytes = AlignedBuf::zeroed(len as usize, MEM_SECTOR_BYTES);
        if len > 0 {
            dev.read_at(0, &mut bytes).expect("read the memory device");
        }
        if dev.len_bytes() == len {
            return bytes;
        }
    }
}

/// Forgets the memory stores under `dir` (their memory is freed once no `Db` holds them):
/// what deleting the directory does to files. Called when a [`crate::TestDir`] is dropped.
pub(crate) fn forget_under(dir: &Path) {
    registry().retain(|path, _| !path.starts_with(dir));
}
