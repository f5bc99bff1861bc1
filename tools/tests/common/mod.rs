//! Helpers for the `arbor` end-to-end tests: running the binary, building stores through
//! the library, and editing a closed store's bytes the way a failing disk or a buggy engine
//! would (re-sealing what a real corruption would leave consistent).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use arbor::Db;
use arbor_format::constants::{SUPERBLOCK_BYTES, SUPERBLOCK_SLOT_COUNT};
use arbor_format::superblock::{alternation_slots, slot_offset};
use arbor_format::{seal_block, CatalogEntry, ChildPtr, Node, Superblock};

pub const BLOCK: u64 = 4096;

/// Sorted (key, value) pairs of one tree.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;
/// A catalog item: tree name, root pointer, byte range of its value in the catalog leaf.
pub type CatalogItem = (Vec<u8>, ChildPtr, std::ops::Range<usize>);

/// Held while a test has a store open through the library and while a child is spawned: a
/// child forked while a store is open holds its `flock` until it `exec`s, so a test that
/// closes a store and runs `arbor` on it at once could see the lock held by another test's
/// child (README, "Locks and child processes").
static SPAWN_VS_OPEN_STORE: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serialized() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_VS_OPEN_STORE.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(cmd: &mut Command) -> Output {
    let child = {
        let _serial = serialized();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run arbor")
    };
    child.wait_with_output().expect("wait for arbor")
}

/// Runs `arbor ARGS`, optionally feeding `stdin` from a file.
pub fn arbor(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_arbor")).args(args).stdin(Stdio::null()))
}

pub fn arbor_stdin(args: &[&str], input: &Path) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_arbor"))
        .args(args)
        .stdin(File::open(input).expect("open input")))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A temporary directory (see `arbor_testkit::temp_dir_in`).
pub fn tempdir() -> arbor_testkit::TestDir {
    arbor_testkit::temp_dir!("arbor-tools-")
}

pub use arbor_testkit::roomy_opts as small_opts;

/// Creates a store and fills it through `fill` (one transaction per call of `fill`'s closure).
pub fn build(path: &Path, fill: impl FnOnce(&Db)) {
    let _serial = serialized();
    let db = Db::create(path, small_opts()).expect("create");
    fill(&db);
    db.flush().expect("flush");
}

/// Opens an existing store and changes it through `fill`, then checkpoints and closes it.
pub fn build_on(path: &Path, fill: impl FnOnce(&Db)) {
    let _serial = serialized();
    let db = Db::open(path, small_opts()).expect("open");
    fill(&db);
    db.flush().expect("flush");
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    File::open(path).unwrap().read_exact_at(&mut buf, offset).unwrap();
    buf
}

pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

pub fn read_block(path: &Path, addr: u64) -> Vec<u8> {
    read_at(path, addr * BLOCK, BLOCK as usize)
}

pub fn write_block(path: &Path, addr: u64, bytes: &[u8]) {
    write_at(path, addr * BLOCK, bytes);
}

/// The newest valid superblock and the slot it was read from.
pub fn newest_superblock(path: &Path) -> (u8, Superblock) {
    (0..SUPERBLOCK_SLOT_COUNT)
        .filter_map(|s| {
            let bytes = read_at(path, slot_offset(s), SUPERBLOCK_BYTES);
            Superblock::decode_slot(&bytes, s).ok().map(|sb| (s, sb))
        })
        .max_by_key(|(_, sb)| sb.generation())
        .expect("a valid superblock")
}

/// Writes `sb` to both copies of the alternation of `slot` (as a commit would).
pub fn write_superblock(path: &Path, slot: u8, sb: &Superblock) {
    for s in alternation_slots(arbor_format::alternation(slot)) {
        let mut copy = *sb;
        copy.seal(s);
        write_at(path, slot_offset(s), copy.encode());
    }
}

/// Byte range of item `i`'s value inside a node image.
pub fn value_range(buf: &[u8], i: usize) -> std::ops::Range<usize> {
    let node = Node::decode(buf).expect("node");
    let v = node.value_bytes(i);
    let start = v.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + v.len()
}

/// The catalog leaf's address and every (name, root pointer, value range) in it. The test
/// stores are small enough for the catalog to be one leaf.
pub fn catalog(path: &Path) -> (u64, Vec<CatalogItem>) {
    let (_, sb) = newest_superblock(path);
    let addr = sb.catalog_root().address();
    let buf = read_block(path, addr);
    let node = Node::decode(&buf).expect("catalog");
    assert!(node.is_leaf(), "test stores keep the catalog in one leaf");
    let items = (0..node.len())
        .map(|i| {
            let range = value_range(&buf, i);
            let entry = CatalogEntry::decode(&buf[range.clone()]).expect("catalog entry");
            let root = entry.root();
            (node.key(i).to_vec(), root, range)
        })
        .collect();
    (addr, items)
}

pub fn bytemuck_read(bytes: &[u8]) -> ChildPtr {
    ChildPtr::from_bytes(bytes).expect("24 bytes")
}

/// Re-seals the catalog leaf after an edit and points the newest superblock at it.
pub fn reseal_catalog(path: &Path, addr: u64, mut buf: Vec<u8>) {
    let crc = seal_block(&mut buf);
    write_block(path, addr, &buf);
    let (slot, mut sb) = newest_superblock(path);
    let old = sb.catalog_root();
    sb.set_catalog_root(ChildPtr::new(addr, old.generation(), crc));
    write_superblock(path, slot, &sb);
}

/// Builds a dump in the documented format (docs/dump-format.md), independently of the
/// tool's own writer, so the tests check the tool against the document.
pub fn encode_dump(trees: &[(&str, Entries)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"ARBORDMP");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut entries = 0u64;
    for (name, items) in trees {
        out.push(b'T');
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        for (k, v) in items {
            out.push(b'K');
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(v);
            entries += 1;
        }
    }
    out.push(b'E');
    out.extend_from_slice(&(trees.len() as u64).to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// SplitMix64, so failures name a reproducible seed.
#[allow(unused_imports)] // not every test binary that shares this module draws numbers
pub use arbor_testkit::Rng;
