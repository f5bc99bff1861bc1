//! Replay of the journal at open (design.md §11.7): each complete record with a seq past the
//! checkpoint's is applied through the normal write path, one transaction per record, so
//! the recovered state is the checkpoint plus a prefix of the commits after it, in order.
//!
//! Replay stops at a record that only marks a transaction committed by a checkpoint (too
//! large to journal, §11.5) when the checkpoint it opened from does not cover it: that
//! checkpoint never became durable, and no commit after it was acknowledged (the journal
//! acknowledges nothing past such a commit until its checkpoint is durable), so dropping
//! the rest loses nothing acknowledged.

use std::collections::HashMap;

use arbor_format::journal::{Op, Record};
use arbor_format::JournalRegion;

use crate::txn::write::WriteTxn;
use crate::txn::Shared;
use crate::{Error, Result};

/// What replay did.
pub(crate) struct Replayed {
    /// Records applied.
    pub applied: u64,
    /// Records past the checkpoint that were not applied (from a checkpointed marker on).
    pub skipped: u64,
}

/// Applies `records` past `checkpoint_seq` to the open store `db`, in order.
pub(crate) fn replay(
    db: &Shared,
    region: &JournalRegion,
    records: &[Record],
    checkpoint_seq: u64,
    end_lsn: u64,
) -> Result<Replayed> {
    let mut out = Replayed { applied: 0, skipped: 0 };
    let mut last_seq = checkpoint_seq;
    let past: Vec<&Record> = records.iter().filter(|r| r.seq > checkpoint_seq).collect();
    for (i, record) in past.iter().enumerate() {
        if record.seq <= last_seq {
            let at = region.address(record.lsn);
            let why = format!("journal record seq {} follows seq {last_seq}", record.seq);
            return Err(Error::corrupt(at, why));
        }
        last_seq = record.seq;
        if out.skipped > 0 || is_checkpointed_marker(region, record) {
            out.skipped += 1;
            continue;
        }
        // A checkpoint during replay (dirty bytes, space; inside the record's commit or on
        // the background thread) covers exactly what was applied: the cursor moves past
        // this record when its transaction publishes, not after `apply` returns.
        let next = past.get(i + 1).map_or(end_lsn, |r| r.lsn);
        db.journal.replay_next(next, record.seq);
        apply(db, region, record)?;
        out.applied += 1;
    }
    // Commits from here on take seqs past every record's, so records always grow.
    let mut w = db.lock_writer()?;
    w.seq = w.seq.max(last_seq);
    Ok(out)
}

/// Whether `record` is the marker of a transaction committed by a checkpoint.
pub(crate) fn is_checkpointed_marker(region: &JournalRegion, record: &Record) -> bool {
    record.ops(region).is_ok_and(|mut ops| matches!(ops.next(), Some(Ok(Op::Checkpointed))))
}

/// Applies one record as one transaction, which takes the record's seq.
fn apply(db: &Shared, region: &JournalRegion, record: &Record) -> Result<()> {
    let at = region.address(record.lsn);
    let bad = |why: String| Error::corrupt(at, format!("journal record seq {}: {why}", record.seq));
    let tx = WriteTxn::begin_replay(db)?;
    let mut names: HashMap<u64, String> = HashMap::new();
    for (name, meta) in tx.view()?.trees.map.iter() {
        names.insert(meta.id, String::from_utf8_lossy(name).into_owned());
    }
    let ops = record.ops(region).map_err(|e| bad(e.to_string()))?;
    for op in ops {
        let op = op.map_err(|e| bad(e.to_string()))?;
        let name_of = |tree: u64| {
            names.get(&tree).cloned().ok_or_else(|| bad(format!("no tree with id {tree}")))
        };
        match op {
            Op::Put { tree, key, value } => {
                tx.tree(&name_of(tree)?)?.insert(key, value)?;
            }
            Op::Remove { tree, key } => {
                tx.tree(&name_of(tree)?)?.remove(key)?;
            }
            Op::CreateTree { tree, name } => {
                let name = std::str::from_utf8(name)
                    .map_err(|_| bad(format!("tree {tree}: name is not UTF-8")))?;
                let next = tx.view()?.trees.next_id;
                if tree != next || names.values().any(|n| n == name) {
                    return Err(bad(format!("creates tree {tree} {name:?}; next id is {next}")));
                }
                tx.tree(name)?;
                names.insert(tree, name.to_string());
            }
            Op::DeleteTree { tree } => {
                let name = name_of(tree)?;
                tx.delete_tree(&name)?;
                names.remove(&tree);
            }
            Op::Checkpointed => return Err(bad("a checkpointed marker among other ops".into())),
        }
    }
    tx.commit()?;
    Ok(())
}
