//! The clients' operations: the write transaction's (insert, remove, get, range, delete_tree,
//! tree_names, commit, abort, drop) and the snapshot readers' (take, read, drop), each
//! checked against the model.

use std::ops::Bound;
use std::rc::Rc;

use arbor::Error;
use arbor_format::constants::{key_bytes_max, value_inline_bytes_max, VALUE_BYTES_MAX};

use crate::ev;
use crate::model::{range_items, show_key, State, Val};
use crate::session::{Allow, Held, Session, SNAPSHOTS_HELD_MAX};

/// Items one range read takes at most.
const RANGE_ITEMS_MAX: u64 = 40;

/// A generated key and whether the engine must refuse it (`KeyTooLarge`).
struct Key {
    bytes: Vec<u8>,
    too_large: bool,
}

impl Session<'_> {
    fn key_max(&self) -> usize {
        key_bytes_max(self.sim.cfg.opts.block_bytes)
    }

    fn key(&mut self) -> Key {
        let max = self.key_max();
        let rng = &mut self.sim.rng;
        let bytes = match rng.below(1000) {
            0..=4 => Vec::new(),
            5..=19 => {
                // A few distinct keys of the maximum length.
                let mut k = vec![b'M'; max];
                k[max - 1] = b'0' + rng.below(4) as u8;
                k
            }
            20..=24 => vec![b'X'; max + 1 + rng.below(64) as usize],
            _ => {
                let n = rng.below(self.sim.cfg.key_space);
                let mut k = format!("{n:06}").into_bytes();
                k.resize(6 + (n % 7) as usize * 3, b'k');
                k
            }
        };
        Key { too_large: bytes.len() > max, bytes }
    }

    fn value(&mut self) -> Vec<u8> {
        let block = self.sim.cfg.opts.block_bytes as u64;
        let inline = value_inline_bytes_max(self.sim.cfg.opts.block_bytes) as u64;
        let big = self.sim.cfg.big_values;
        let rng = &mut self.sim.rng;
        let len = match rng.below(100) {
            0..=4 => 0,
            5..=59 => 1 + rng.below(100),
            60..=79 => rng.below(inline + 1),
            80..=84 => inline + rng.below(2),
            85..=98 => inline + 1 + rng.below(3 * block),
            _ if big => 4 * block + rng.below(12 * block),
            _ => inline + 1 + rng.below(block),
        };
        fill(rng.next_u64(), len as usize)
    }

    fn tree_name(&mut self) -> (String, bool) {
        let names = &self.sim.cfg.tree_names;
        let max = self.key_max();
        match self.sim.rng.below(200) {
            0 => ("N".repeat(max), false),
            1 => ("N".repeat(max + 1), true),
            _ => (names[self.sim.rng.below(names.len() as u64) as usize].clone(), false),
        }
    }

    fn bounds(&mut self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let one = |s: &mut Self| match s.sim.rng.below(3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(s.key().bytes),
            _ => Bound::Excluded(s.key().bytes),
        };
        let lo = one(self);
        (lo, one(self))
    }

    /// One operation of the client that owns the write transaction.
    pub fn txn_step(&mut self) {
        self.txn_step_inner();
        if self.sim.flags.paranoid && self.sim.failure.is_none() {
            self.txn_scan_all();
        }
    }

    /// `--paranoid`: every tree as the transaction sees it must equal the working model.
    fn txn_scan_all(&mut self) {
        let Some(o) = self.open.as_mut() else { return };
        self.dev.pause_random_faults(true);
        let names: Vec<String> = o.working.trees.keys().cloned().collect();
        for name in names {
            let got: arbor::Result<Vec<(Vec<u8>, Vec<u8>)>> =
                o.tx.tree(&name).and_then(|t| t.iter()?.collect());
            let want = range_items(
                o.working.tree(&name),
                &Bound::Unbounded,
                &Bound::Unbounded,
                false,
                usize::MAX,
            );
            match got {
                Ok(got) if same_items(&got, &want) => {}
                Ok(_) => {
                    let detail = format!("paranoid scan of {name}");
                    self.sim.fail("wrong-data", detail);
                    break;
                }
                Err(e) => {
                    let before = self.dev.fault_counts();
                    self.judge("paranoid scan", &e, before, Allow::default());
                    break;
                }
            }
        }
        self.dev.pause_random_faults(false);
    }

    fn txn_step_inner(&mut self) {
        match self.sim.rng.below(100) {
            0..=39 => self.txn_insert(),
            40..=53 => self.txn_remove(),
            54..=63 => self.txn_get(),
            64..=71 => self.txn_range(),
            72..=73 => self.txn_delete_tree(),
            74..=75 => self.txn_names(),
            76..=88 => self.txn_commit(),
            89..=91 => self.txn_end(true),
            92..=94 => self.txn_end(false),
            95..=96 => self.txn_bulk_insert(),
            97 => self.txn_bulk_remove(),
            _ => self.txn_value_too_large(),
        }
    }

    /// Many inserts in one turn (splits, deeper trees, early write-back, full devices).
    fn txn_bulk_insert(&mut self) {
        let n = 10 + self.sim.rng.below(300);
        for _ in 0..n {
            self.txn_insert();
            if self.open.is_none() || self.sim.failure.is_some() {
                return;
            }
        }
    }

    /// Removes most keys of one tree in one turn (merges, emptied trees).
    fn txn_bulk_remove(&mut self) {
        let (name, _) = self.tree_name();
        let o = self.open.as_ref().expect("open");
        let keys: Vec<Vec<u8>> = match o.working.tree(&name) {
            Some(t) => t.keys().cloned().collect(),
            None => return,
        };
        let keep_one_in = 1 + self.sim.rng.below(8);
        for (i, k) in keys.into_iter().enumerate() {
            if keep_one_in > 1 && (i as u64).is_multiple_of(keep_one_in) {
                continue;
            }
            self.sim.counters.ops += 1;
            let before = self.dev.fault_counts();
            let o = self.open.as_mut().expect("open");
            let r = o.tx.tree(&name).and_then(|mut t| t.remove(&k));
            match r {
                Ok(old) => {
                    let want = o.working.tree_mut(&name).remove(&k);
                    if old.as_deref() != want.as_deref() {
                        let detail = format!("bulk remove {name} {}", show_key(&k));
                        return self.sim.fail("wrong-data", detail);
                    }
                }
                Err(e) => return self.txn_failed("bulk remove", &e, before),
            }
        }
        ev!(self.sim.trace, "bulk remove {name} (kept one in {keep_one_in})");
    }

    /// Opens tree `name` in the transaction; `None` (and the transaction dropped) on error.
    fn with_tree<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut arbor::WriteTree<'_, '_>) -> arbor::Result<T>,
    ) -> Option<(String, arbor::Result<T>)> {
        let (name, too_large) = self.tree_name();
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        let o = self.open.as_mut().expect("a transaction is open");
        let r = match o.tx.tree(&name) {
            Ok(mut t) => Ok(f(&mut t)),
            Err(e) => Err(e),
        };
        match r {
            Ok(r) => {
                o.working.tree_mut(&name);
                Some((name, r))
            }
            Err(Error::KeyTooLarge { .. }) if too_large => {
                ev!(self.sim.trace, "{what}: tree name too long refused");
                None
            }
            Err(e) => {
                self.txn_failed(&format!("{what}: open tree"), &e, before);
                None
            }
        }
    }

    fn txn_insert(&mut self) {
        let key = self.key();
        let value = self.value();
        let before = self.dev.fault_counts();
        let Some((name, r)) = self.with_tree("insert", |t| t.insert(&key.bytes, &value)) else {
            return;
        };
        let o = self.open.as_mut().expect("open");
        match r {
            Ok(old) => {
                let want = o.working.tree_mut(&name).insert(key.bytes.clone(), Val::from(value));
                let ok = !key.too_large && old.as_deref() == want.as_deref();
                ev!(self.sim.trace, "insert {name} {} ok", show_key(&key.bytes));
                if !ok {
                    let detail =
                        format!("insert {name} {}: old value differs", show_key(&key.bytes));
                    self.sim.fail("wrong-data", detail);
                }
                self.no_write_error_swallowed("insert", before);
            }
            Err(Error::KeyTooLarge { .. }) if key.too_large => {
                ev!(self.sim.trace, "insert {name}: key too large refused");
            }
            Err(e) => self.txn_failed("insert", &e, before),
        }
    }

    fn txn_value_too_large(&mut self) {
        if self.sim.rng.below(20) != 0 {
            return self.txn_insert();
        }
        // Zeroed memory from the allocator is mapped lazily: this costs no 4 GiB of RAM.
        let huge = vec![0u8; VALUE_BYTES_MAX as usize + 1];
        let before = self.dev.fault_counts();
        let Some((name, r)) = self.with_tree("insert huge", |t| t.insert(b"huge", &huge)) else {
            return;
        };
        match r {
            Err(Error::ValueTooLarge { .. }) => {
                ev!(self.sim.trace, "insert {name}: value too large refused");
            }
            Err(e) => self.txn_failed("insert huge", &e, before),
            Ok(_) => self.sim.fail("wrong-data", "a 4 GiB value was accepted".into()),
        }
    }

    fn txn_remove(&mut self) {
        let key = self.key();
        let before = self.dev.fault_counts();
        let Some((name, r)) = self.with_tree("remove", |t| t.remove(&key.bytes)) else {
            return;
        };
        let o = self.open.as_mut().expect("open");
        match r {
            Ok(old) => {
                let want = o.working.tree_mut(&name).remove(&key.bytes);
                ev!(self.sim.trace, "remove {name} {} -> {}", show_key(&key.bytes), old.is_some());
                if key.too_large || old.as_deref() != want.as_deref() {
                    let detail =
                        format!("remove {name} {}: old value differs", show_key(&key.bytes));
                    self.sim.fail("wrong-data", detail);
                }
                self.no_write_error_swallowed("remove", before);
            }
            Err(Error::KeyTooLarge { .. }) if key.too_large => {}
            Err(e) => self.txn_failed("remove", &e, before),
        }
    }

    fn txn_get(&mut self) {
        let key = self.key();
        let before = self.dev.fault_counts();
        let Some((name, r)) = self.with_tree("get", |t| t.get(&key.bytes)) else { return };
        let o = self.open.as_mut().expect("open");
        let want = o.working.tree(&name).and_then(|t| t.get(&key.bytes)).cloned();
        match r {
            Ok(got) => {
                ev!(self.sim.trace, "get {name} {} -> {}", show_key(&key.bytes), got.is_some());
                if got.as_deref() != want.as_deref() {
                    let detail = format!("txn get {name} {}", show_key(&key.bytes));
                    self.sim.fail("wrong-data", detail);
                }
            }
            Err(e) => {
                self.judge("txn get", &e, before, Allow::default());
            }
        }
    }

    fn txn_range(&mut self) {
        let (lo, hi) = self.bounds();
        let rev = self.sim.rng.chance(50);
        let limit = 1 + self.sim.rng.below(RANGE_ITEMS_MAX) as usize;
        let before = self.dev.fault_counts();
        let bounds = (lo.clone(), hi.clone());
        let read = |t: &mut arbor::WriteTree<'_, '_>| {
            let (a, b) = (as_slice(&bounds.0), as_slice(&bounds.1));
            collect(t.range((a, b))?, rev, limit)
        };
        let Some((name, r)) = self.with_tree("range", read) else { return };
        let o = self.open.as_ref().expect("open");
        let want = range_items(o.working.tree(&name), &lo, &hi, rev, limit);
        match r {
            Ok(got) => {
                ev!(self.sim.trace, "range {name} rev {rev} -> {} items", got.len());
                if !same_items(&got, &want) {
                    self.sim.fail("wrong-data", format!("txn range {name} rev {rev}"));
                }
            }
            Err(e) => {
                self.judge("txn range", &e, before, Allow::default());
            }
        }
    }

    fn txn_delete_tree(&mut self) {
        let (name, _) = self.tree_name();
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        let o = self.open.as_mut().expect("open");
        match o.tx.delete_tree(&name) {
            Ok(existed) => {
                let want = o.working.trees.remove(&name).is_some();
                ev!(self.sim.trace, "delete_tree {name} -> {existed}");
                if existed != want {
                    self.sim.fail("wrong-data", format!("delete_tree {name}: {existed}"));
                }
            }
            Err(e) => self.txn_failed("delete_tree", &e, before),
        }
    }

    fn txn_names(&mut self) {
        self.sim.counters.ops += 1;
        let o = self.open.as_mut().expect("open");
        let want: Vec<String> = o.working.trees.keys().cloned().collect();
        let before = self.dev.fault_counts();
        match o.tx.tree_names() {
            Ok(got) if got == want => ev!(self.sim.trace, "tree_names {}", got.len()),
            Ok(got) => self.sim.fail("wrong-data", format!("tree_names {got:?} vs {want:?}")),
            Err(e) => {
                self.judge("tree_names", &e, before, Allow::default());
            }
        }
    }

    /// A changing call of the transaction failed: judge the error, then go on. `NoSpace`
    /// leaves nothing behind, so the transaction may carry on; after any other error it
    /// can only be aborted, so either it is, or a commit is tried, which must be refused.
    fn txn_failed(&mut self, what: &str, e: &Error, before: arbor::io::FaultCounts) {
        let small_undo = self.sim.cfg.small_undo_cap;
        let allow = Allow { no_space: true, too_large_txn: small_undo, ..Allow::default() };
        self.judge(what, e, before, allow);
        let untouched = matches!(e, Error::NoSpace);
        if untouched && self.sim.rng.chance(50) {
            ev!(self.sim.trace, "{what}: carry on after NoSpace");
            return;
        }
        if !untouched && self.sim.rng.chance(50) {
            return self.commit_failed_txn();
        }
        self.txn_end(false);
    }

    /// Commits a transaction one of whose changes failed: refused, and rolled back.
    fn commit_failed_txn(&mut self) {
        let Some(o) = self.open.take() else { return };
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        match o.tx.commit() {
            Ok(info) => {
                let detail =
                    format!("commit seq {} of a transaction with a failed change", info.seq);
                self.sim.fail("failed-change-committed", detail);
            }
            Err(Error::InvalidInput(_)) => {
                ev!(self.sim.trace, "commit after a failed change refused")
            }
            Err(e) => {
                self.judge("commit after a failed change", &e, before, Allow::default());
            }
        }
    }

    /// Ends the transaction without committing: `abort()` or a plain drop.
    fn txn_end(&mut self, explicit: bool) {
        let Some(o) = self.open.take() else { return };
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        if explicit {
            if let Err(e) = o.tx.abort() {
                self.judge("abort", &e, before, Allow::default());
                self.failstop = true;
            }
        } else {
            drop(o.tx);
        }
        ev!(self.sim.trace, "c{} {}", o.owner, if explicit { "abort" } else { "drop txn" });
    }

    pub fn txn_commit(&mut self) {
        let Some(o) = self.open.take() else { return };
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        match o.tx.commit() {
            Ok(info) => {
                self.sim.counters.commits += 1;
                ev!(
                    self.sim.trace,
                    "c{} commit seq {} durable {}",
                    o.owner,
                    info.seq,
                    info.durable
                );
                if info.seq <= self.last_seq {
                    let detail = format!("commit seq {} after {}", info.seq, self.last_seq);
                    self.sim.fail("seq", detail);
                }
                self.last_seq = info.seq;
                self.sim.history.push(o.working);
                if info.durable {
                    self.sim.history.ack_all();
                }
                self.no_write_error_swallowed("commit", before);
            }
            Err(e) => {
                self.judge("commit", &e, before, Allow { no_space: true, ..Allow::default() });
                self.after_failed_commit(o.working);
            }
        }
    }

    /// A failed commit either published nothing (an error before publication: rolled back,
    /// nothing reached the journal) or published and failed to make itself durable (the
    /// handle is then fail-stop, and its record may have reached the journal, so a recovery
    /// may find it: both states stay possible). A fresh snapshot's seq tells which; its
    /// contents must then be that state, or fail to read with an error the injected faults
    /// explain.
    fn after_failed_commit(&mut self, working: State) {
        self.dev.pause_random_faults(true);
        let snap = self.db.snapshot().expect("snapshot");
        let published = snap.seq() != self.last_seq;
        let got = crate::session::dump_snapshot(&snap);
        drop(snap);
        self.dev.pause_random_faults(false);
        let expected = if published { &working } else { &**self.sim.history.last() };
        match got {
            Ok(got) if got == *expected => {}
            Ok(got) => {
                let diff = expected.diff(&got);
                let what = if published { "published" } else { "rolled back" };
                self.sim.fail("wrong-state", format!("after a failed commit ({what}): {diff}"));
            }
            Err(e) => {
                let before = self.dev.fault_counts();
                self.judge("read after failed commit", &e, before, Allow::default());
            }
        }
        if published {
            ev!(self.sim.trace, "failed commit was published");
            self.sim.history.push(working);
            self.failstop = true;
        } else {
            ev!(self.sim.trace, "failed commit was rolled back");
        }
    }

    pub fn snap_take(&mut self, client: u64) {
        if self.snaps.len() >= SNAPSHOTS_HELD_MAX {
            return self.snap_drop(client);
        }
        self.sim.counters.ops += 1;
        match self.db.snapshot() {
            Ok(snap) => {
                if snap.seq() != self.last_seq {
                    let detail =
                        format!("snapshot seq {} but last commit {}", snap.seq(), self.last_seq);
                    self.sim.fail("seq", detail);
                }
                ev!(self.sim.trace, "c{client} snapshot seq {}", snap.seq());
                let state = Rc::clone(self.sim.history.last());
                self.snaps.push(Held { client, snap, state });
            }
            Err(e) => self.sim.fail("snapshot", format!("snapshot failed: {e}")),
        }
    }

    pub fn snap_drop(&mut self, client: u64) {
        if let Some(i) = self.snaps.iter().position(|h| h.client == client) {
            self.sim.counters.ops += 1;
            let h = self.snaps.remove(i);
            ev!(self.sim.trace, "c{client} drop snapshot seq {}", h.snap.seq());
        }
    }

    pub fn snap_read(&mut self, client: u64) {
        let mine: Vec<usize> =
            (0..self.snaps.len()).filter(|&i| self.snaps[i].client == client).collect();
        if mine.is_empty() {
            return self.snap_take(client);
        }
        let i = mine[self.sim.rng.below(mine.len() as u64) as usize];
        self.sim.counters.ops += 1;
        let before = self.dev.fault_counts();
        let r = match self.sim.rng.below(100) {
            0..=44 => self.snap_get(i),
            45..=84 => self.snap_range(i),
            85..=92 => self.snap_names(i),
            _ => self.snap_dump(i),
        };
        if let Err(e) = r {
            let allow = Allow { expired: self.snaps[i].snap.is_expired(), ..Allow::default() };
            self.judge("snapshot read", &e, before, allow);
        }
    }

    fn snap_get(&mut self, i: usize) -> arbor::Result<()> {
        let key = self.key();
        let (name, _) = self.tree_name();
        let h = &self.snaps[i];
        let want = h.state.tree(&name).map(|t| t.get(&key.bytes).cloned());
        let got = match h.snap.tree(&name)? {
            Some(t) => Some(t.get(&key.bytes)?),
            None => None,
        };
        ev!(self.sim.trace, "snap {} get {name} {}", h.snap.seq(), show_key(&key.bytes));
        let same = match (&got, &want) {
            (Some(g), Some(w)) => g.as_deref() == w.as_deref(),
            (None, None) => true,
            _ => false,
        };
        if !same {
            let detail =
                format!("snapshot seq {} get {name} {}", h.snap.seq(), show_key(&key.bytes));
            self.sim.fail("wrong-data", detail);
        }
        Ok(())
    }

    fn snap_range(&mut self, i: usize) -> arbor::Result<()> {
        let (lo, hi) = self.bounds();
        let rev = self.sim.rng.chance(50);
        let limit = 1 + self.sim.rng.below(RANGE_ITEMS_MAX) as usize;
        let (name, _) = self.tree_name();
        let h = &self.snaps[i];
        let want = range_items(h.state.tree(&name), &lo, &hi, rev, limit);
        let got = match h.snap.tree(&name)? {
            Some(t) => collect(t.range((as_slice(&lo), as_slice(&hi)))?, rev, limit)?,
            None => Vec::new(),
        };
        ev!(self.sim.trace, "snap {} range {name} rev {rev} -> {}", h.snap.seq(), got.len());
        if !same_items(&got, &want) || (h.state.tree(&name).is_none() && !got.is_empty()) {
            let detail = format!("snapshot seq {} range {name} rev {rev}", h.snap.seq());
            self.sim.fail("wrong-data", detail);
        }
        Ok(())
    }

    fn snap_names(&mut self, i: usize) -> arbor::Result<()> {
        let h = &self.snaps[i];
        let got = h.snap.tree_names()?;
        let want: Vec<String> = h.state.trees.keys().cloned().collect();
        if got != want {
            let detail = format!("snapshot seq {} tree_names {got:?} vs {want:?}", h.snap.seq());
            self.sim.fail("wrong-data", detail);
        }
        Ok(())
    }

    fn snap_dump(&mut self, i: usize) -> arbor::Result<()> {
        let h = &self.snaps[i];
        let got = crate::session::dump_snapshot(&h.snap)?;
        ev!(self.sim.trace, "snap {} dump {} entries", h.snap.seq(), got.entries());
        if got != *h.state {
            let detail = format!("snapshot seq {} dump: {}", h.snap.seq(), h.state.diff(&got));
            self.sim.fail("wrong-data", detail);
        }
        Ok(())
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn collect<I, A, B>(range: I, rev: bool, limit: usize) -> arbor::Result<Vec<(Vec<u8>, Vec<u8>)>>
where
    I: DoubleEndedIterator<Item = arbor::Result<(A, B)>>,
    A: Into<Vec<u8>>,
    B: Into<Vec<u8>>,
{
    let owned = |r: arbor::Result<(A, B)>| r.map(|(k, v)| (k.into(), v.into()));
    if rev {
        range.rev().take(limit).map(owned).collect()
    } else {
        range.take(limit).map(owned).collect()
    }
}

fn same_items(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Val)]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.0 == w.0 && *g.1 == *w.1)
}

/// `len` bytes drawn from `seed` (one number per 8 bytes, so large values are cheap).
pub fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = arbor::io::SplitMix64(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}
