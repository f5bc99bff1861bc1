//! What `arbor check --repair [--rollback]` says a rollback loses (design.md §11.8: nothing
//! rolls back silently). The figures are the engine's (`arbor::check::plan_rollback`).

use arbor::check::{RollbackPlan, TreeLoss};
use serde_json::json;

/// The loss report, one line each; `done` tells whether the rollback is being carried out
/// (`--rollback`) or only proposed.
pub fn plan_lines(p: &RollbackPlan, done: bool) -> Vec<String> {
    let (n, m) = (p.discarded, p.target);
    let head = if done {
        format!("rolling back: discarding generation {n} and returning to generation {m}; lost:")
    } else {
        format!("--rollback would discard generation {n} and return to generation {m}, losing:")
    };
    let mut out = vec![head];
    out.extend(p.trees.iter().map(|t| format!("  {}", tree_line(t, n))));
    if p.catalog_bad_blocks > 0 {
        out.push(format!(
            "  the catalog of generation {n} has {} unreadable block(s): trees named only there \
             are not listed",
            p.catalog_bad_blocks
        ));
    }
    let j = &p.journal;
    out.push(match (&j.error, j.seqs) {
        (Some(e), _) => format!("  journal after generation {n}: unreadable ({e})"),
        (None, Some((a, b))) => format!(
            "  journal: {} commit(s) after generation {n} (seq {a}..={b}), not replayed",
            j.records
        ),
        (None, None) => format!("  journal: no commit after generation {n}"),
    });
    out.push(format!(
        "  the new superblock (generation {}) starts journal replay at lsn {}, the journal's \
         end: no record written before the rollback is replayed",
        p.new_generation, p.replay_lsn
    ));
    out
}

fn tree_line(t: &TreeLoss, discarded: u64) -> String {
    let name = format!("tree {:?}", String::from_utf8_lossy(&t.name));
    let kept =
        t.kept.map_or("absent after the rollback".into(), |k| format!("{k} after the rollback"));
    let Some(d) = &t.discarded else {
        return format!("{name}: absent in generation {discarded}, {kept}");
    };
    let lost = t.kept.filter(|_| d.bad_blocks == 0).and_then(|k| d.recorded.checked_sub(k));
    let lost = lost.filter(|&l| l > 0).map(|l| format!(" ({l} fewer)")).unwrap_or_default();
    if d.bad_blocks == 0 {
        return format!("{name}: {} entries in generation {discarded}, {kept}{lost}", d.recorded);
    }
    format!(
        "{name}: unreadable in generation {discarded} (the catalog says {} entries; {} in \
         readable blocks, {} damaged block(s)), {kept}",
        d.recorded, d.readable, d.bad_blocks
    )
}

pub fn plan_json(p: &RollbackPlan, done: bool) -> serde_json::Value {
    let trees: Vec<_> = p
        .trees
        .iter()
        .map(|t| {
            let discarded = t.discarded.as_ref().map(|d| {
                json!({"entries": d.recorded, "readable_entries": d.readable,
                       "bad_blocks": d.bad_blocks})
            });
            json!({"name": String::from_utf8_lossy(&t.name), "discarded": discarded,
                   "kept": t.kept})
        })
        .collect();
    let j = &p.journal;
    json!({
        "rolled_back": done,
        "discarded_generation": p.discarded,
        "target_generation": p.target,
        "new_generation": p.new_generation,
        "replay_lsn": p.replay_lsn,
        "trees": trees,
        "catalog_bad_blocks": p.catalog_bad_blocks,
        "journal": {
            "records": j.records,
            "first_seq": j.seqs.map(|s| s.0),
            "last_seq": j.seqs.map(|s| s.1),
            "error": j.error,
        },
    })
}
