//! Raft snapshots: built from an Arbor snapshot while the state machine keeps applying,
//! installed into a fresh tree set that one transaction swaps in.
//!
//! A node's current Raft snapshot is the file `current.snap` in its snapshot directory (the
//! stream of `snapshot_file.rs`, whose header carries openraft's metadata). Building one
//! iterates the state machine's trees as of an Arbor snapshot taken between two applies and
//! writes them record by record to a temporary file, which is synced and renamed over
//! `current.snap`. Installing one reads the stream record by record into `sm.<n+1>.*` in
//! bounded transactions, then one durable transaction records `last_applied` and the
//! membership in the new set, points `sm.active` at it and deletes set `n`: a crash before
//! that transaction leaves set `n` live and an unused set that the next open deletes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arbor::{Db, Durability};
use openraft::{RaftSnapshotBuilder, Snapshot};

use crate::codec::{applied_tree, blocking, encode, kv_tree, Subject};
use crate::codec::{KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_SET, TREE_SM_ACTIVE};
use crate::snapshot_file::{Record, StreamReader, StreamWriter, Tee};
use crate::state_machine::{active_set, applied_state};
use crate::{StorageError, TypeConfig};

pub(crate) use crate::snapshot_file::Meta;

/// The name of the state machine's map inside a snapshot stream.
const STREAM_TREE_KV: &str = "kv";
/// The current snapshot's file name in the snapshot directory.
const CURRENT_FILE: &str = "current.snap";
/// Suffix of files being written; the next open deletes any it finds.
const TEMP_SUFFIX: &str = ".tmp";
/// Attempts at a build whose Arbor snapshot the mod-log bound expired (each with a fresh
/// snapshot, so a later state).
const BUILD_ATTEMPTS_MAX: u32 = 3;
/// Bytes of keys and values an install writes per transaction.
const INSTALL_TXN_BYTES_MAX: usize = 8 << 20;
/// Buffer of the snapshot files' readers and writers.
const FILE_BUFFER_BYTES: usize = 1 << 20;

/// The snapshot directory and the metadata of its current snapshot.
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    current: Mutex<Option<Meta>>,
    next_temp: AtomicU64,
}

impl SnapshotFiles {
    /// Opens `dir` (created if missing): deletes unfinished files and reads the current
    /// snapshot's header. A current snapshot that does not read back whole is deleted: the
    /// state machine, not the file, holds the node's state, and the next build replaces it.
    pub(crate) fn open(dir: &Path) -> io::Result<SnapshotFiles> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(TEMP_SUFFIX) {
                fs::remove_file(&path)?;
            }
        }
        let path = dir.join(CURRENT_FILE);
        let current = match File::open(&path) {
            Ok(f) => match read_whole(f) {
                Ok(meta) => Some(meta),
                Err(_) => {
                    fs::remove_file(&path)?;
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(SnapshotFiles {
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
            next_temp: 0.into(),
        })
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{what}-{n}{TEMP_SUFFIX}"))
    }

    /// An anonymous read-write file for openraft to write a received snapshot into (unlinked
    /// at once: nothing is left behind if the transfer stops).
    pub(crate) fn receiving_file(&self) -> io::Result<File> {
        let path = self.temp_path("receive");
        let file = File::options().read(true).write(true).create_new(true).open(&path)?;
        fs::remove_file(&path)?;
        Ok(file)
    }

    /// Makes the synced file at `temp` the current snapshot, unless the current one is newer
    /// (a build that finished after an install of a later state); then `temp` is deleted.
    fn publish(&self, temp: &Path, meta: &Meta) -> io::Result<()> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let newer_exists = current.as_ref().is_some_and(|c| c.last_log_id > meta.last_log_id);
        if newer_exists {
            return fs::remove_file(temp);
        }
        fs::rename(temp, self.dir.join(CURRENT_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        *current = Some(meta.clone());
        Ok(())
    }

    /// The current snapshot's metadata and a handle to read it from its start.
    pub(crate) fn open_current(&self) -> io::Result<Option<(Meta, File)>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let Some(meta) = current.clone() else { return Ok(None) };
        Ok(Some((meta, File::open(self.dir.join(CURRENT_FILE))?)))
    }
}

/// Reads a whole stream, checking its trailer; returns its metadata.
fn read_whole(file: File) -> io::Result<Meta> {
    let (mut r, meta) = StreamReader::new(BufReader::with_capacity(FILE_BUFFER_BYTES, file))?;
    while r.next_record()?.is_some() {}
    Ok(meta)
}

/// Builds a Raft snapshot from the Arbor snapshot taken when openraft asked for a builder.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    snap: Option<arbor::Snapshot>,
    files: Arc<SnapshotFiles>,
}

impl SnapshotBuilder {
    pub(crate) fn new(db: Arc<Db>, files: Arc<SnapshotFiles>) -> SnapshotBuilder {
        // Failing here only means the build takes its own snapshot later.
        let snap = db.snapshot().ok();
        SnapshotBuilder { db, snap, files }
    }
}

/// Streams the state machine as of `snap` into a new temporary file; returns its metadata,
/// its path and a handle to read it.
fn write_stream(
    snap: &arbor::Snapshot,
    files: &SnapshotFiles,
) -> arbor::Result<(Meta, PathBuf, File)> {
    let set = active_set(snap)?;
    let (last_log_id, last_membership) = applied_state(snap, set)?;
    let snapshot_id = match &last_log_id {
        Some(l) => format!("{}-{}-{}", l.leader_id, l.index, snap.seq()),
        None => format!("none-{}", snap.seq()),
    };
    let meta = Meta { last_log_id, last_membership, snapshot_id };
    let path = files.temp_path("build");
    let result = (|| {
        let file = File::options().read(true).write(true).create_new(true).open(&path)?;
        let out = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
        let mut w = StreamWriter::new(out, &meta)?;
        w.tree(STREAM_TREE_KV)?;
        if let Some(kv) = snap.tree(&kv_tree(set))? {
            for item in kv.iter()? {
                let (k, v) = item?;
                w.pair(&k, &v)?;
            }
        }
        let (out, _pairs) = w.finish()?;
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    })();
    match result {
        Ok(file) => Ok((meta, path, file)),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Builds the snapshot file and makes it current; retries with a fresh Arbor snapshot if
/// the bound expired the one in use (a heavy writer outran the build).
fn build(
    db: &Db,
    first: Option<arbor::Snapshot>,
    files: &SnapshotFiles,
) -> arbor::Result<(Meta, File)> {
    let mut snap = first;
    let mut last_error = None;
    for _ in 0..BUILD_ATTEMPTS_MAX {
        let s = match snap.take() {
            Some(s) => s,
            None => db.snapshot()?,
        };
        match write_stream(&s, files) {
            Ok((meta, path, file)) => {
                files.publish(&path, &meta)?;
                return Ok((meta, file));
            }
            Err(e @ arbor::Error::SnapshotExpired { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| arbor::Error::SnapshotExpired { what: String::new() }))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (db, files, snap) = (Arc::clone(&self.db), Arc::clone(&self.files), self.snap.take());
        let (meta, file) =
            blocking(Subject::WriteSnapshot, move || build(&db, snap, &files)).await?;
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) })
    }
}

/// Deletes every tree of set `set` (left by an install that a crash interrupted).
fn delete_set(tx: &mut arbor::WriteTxn<'_>, set: u64) -> arbor::Result<()> {
    tx.delete_tree(&kv_tree(set))?;
    tx.delete_tree(&applied_tree(set))?;
    Ok(())
}

/// Loads the stream's pairs into tree `kv`, a bounded number of bytes per transaction.
fn load_pairs<R: io::Read>(db: &Db, reader: &mut StreamReader<R>, kv: &str) -> arbor::Result<()> {
    let mut in_kv = false;
    // Each round reads at least one record; the stream's length bounds the rounds.
    loop {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::None);
        let mut done = false;
        {
            let mut tree = tx.tree(kv)?;
            let mut bytes = 0usize;
            while bytes < INSTALL_TXN_BYTES_MAX {
                match reader.next_record()? {
                    Some(Record::Tree(name)) if name == STREAM_TREE_KV => in_kv = true,
                    Some(Record::Tree(name)) => return Err(stream_error(format!("tree {name}"))),
                    Some(Record::Pair(..)) if !in_kv => {
                        return Err(stream_error("pair before tree"))
                    }
                    Some(Record::Pair(k, v)) => {
                        bytes += k.len() + v.len();
                        tree.insert(&k, &v)?;
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
        }
        tx.commit()?;
        if done {
            return Ok(());
        }
    }
}

fn stream_error(what: impl Into<String>) -> arbor::Error {
    arbor::Error::Io {
        op: "read a raft snapshot",
        path: None,
        source: io::Error::new(io::ErrorKind::InvalidData, what.into()),
    }
}

/// Installs the snapshot in `data` over tree set `set`; returns the new live set.
pub(crate) fn install(
    db: &Db,
    files: &SnapshotFiles,
    set: u64,
    meta: &Meta,
    mut data: File,
) -> arbor::Result<u64> {
    let new = set + 1;
    let mut tx = db.begin_write()?;
    // Durable with the swap, which commits after it.
    tx.set_durability(Durability::None);
    delete_set(&mut tx, new)?;
    tx.commit()?;
    data.seek(SeekFrom::Start(0))?;
    let copy_path = files.temp_path("install");
    let copy = File::options().write(true).create_new(true).open(&copy_path)?;
    let result = (|| {
        let tee = Tee {
            input: BufReader::with_capacity(FILE_BUFFER_BYTES, data),
            copy: BufWriter::with_capacity(FILE_BUFFER_BYTES, copy),
        };
        let (mut reader, header) = StreamReader::new(tee)?;
        if header != *meta {
            return Err(stream_error(format!("header {header} is not the snapshot {meta}")));
        }
        load_pairs(db, &mut reader, &kv_tree(new))?;
        let mut copy = reader.into_inner().copy.into_inner().map_err(|e| e.into_error())?;
        copy.flush()?;
        copy.sync_all()?;
        swap_in(db, set, new, meta)?;
        files.publish(&copy_path, meta)?;
        Ok(new)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&copy_path);
    }
    result
}

/// One durable transaction: set `new` gets the snapshot's `last_applied` and membership and
/// becomes live; set `old` is deleted.
fn swap_in(db: &Db, old: u64, new: u64, meta: &Meta) -> arbor::Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    {
        let mut applied = tx.tree(&applied_tree(new))?;
        applied.insert(KEY_LAST_APPLIED, &encode(&meta.last_log_id)?)?;
        applied.insert(KEY_MEMBERSHIP, &encode(&meta.last_membership)?)?;
    }
    tx.tree(TREE_SM_ACTIVE)?.insert(KEY_SET, &encode(&new)?)?;
    delete_set(&mut tx, old)?;
    tx.commit()?;
    Ok(())
}
