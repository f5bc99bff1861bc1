//! The table's rows, the cells one run produces, and their JSON form (a child process prints
//! its cells as one JSON document; the parent reads them back).

use serde_json::{json, Map, Value};

use crate::data::Sizes;

/// How a row's number reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Operations per second: higher is better.
    Rate,
    /// Seconds: lower is better.
    Latency,
    /// Bytes: lower is better.
    Size,
    /// A dimensionless factor: higher is better.
    Factor,
    /// Device blocks written per commit: lower is better.
    BlocksPerCommit,
    /// Bytes written per commit: lower is better.
    BytesPerCommit,
}

impl Kind {
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Rate => "ops_per_second",
            Kind::Latency => "seconds",
            Kind::Size => "bytes",
            Kind::Factor => "factor",
            Kind::BlocksPerCommit => "blocks_per_commit",
            Kind::BytesPerCommit => "bytes_per_commit",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Kind::Rate | Kind::Factor)
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct RowSpec {
    pub id: &'static str,
    pub label: String,
    pub kind: Kind,
}

/// Every row, in table order. Ids are stable (the JSON, `--workloads` and the README use them).
///
/// The write-count rows follow the durable-writes row and cover the same commits: the window
/// starts after an untimed `Engine::settle` (nothing earlier is counted) and ends after
/// another, so writes an engine defers (Arbor's checkpoint: tree and allocator blocks, both
/// superblock copies) are amortized over the commits. `durable_blocks` and `durable_bytes`
/// are the engine's own count (`Engine::writes`; Arbor: `Db::stats`, journal blocks with both
/// copies), n/a where the engine keeps none; `durable_io_bytes` is the child process's
/// `write_bytes` from /proc/self/io for every engine (the bytes it sent to the block layer,
/// O_DIRECT and io_uring writes included; not the filesystem's own journal or metadata).
///
/// The cold-read rows run last (each reopens the store; see `workloads::COLD_ROWS`) but sit
/// after the warm reads. The device rows are the store's disk, measured in the engine that
/// reads with O_DIRECT (Arbor) while its store is closed; other engines have no cell.
pub fn rows(s: &Sizes) -> Vec<RowSpec> {
    let r = |id, label: String, kind| RowSpec { id, label, kind };
    let w = s.writers;
    let (n, b, t) = (s.cold_reads, s.cold_batch, s.threads);
    vec![
        r("bulk_load", format!("bulk load: {} inserts, 1 txn", s.keys), Kind::Rate),
        r(
            "durable_single",
            format!("durable writes: {} txns x 1 insert", s.durable_commits),
            Kind::Rate,
        ),
        r("durable_p50", "  commit latency p50".into(), Kind::Latency),
        r("durable_p99", "  commit latency p99".into(), Kind::Latency),
        r(
            "durable_blocks",
            "  blocks written per commit, incl. checkpoints".into(),
            Kind::BlocksPerCommit,
        ),
        r(
            "durable_bytes",
            "  bytes written per commit, incl. checkpoints".into(),
            Kind::BytesPerCommit,
        ),
        r("durable_io_bytes", "  same, by /proc/self/io write_bytes".into(), Kind::BytesPerCommit),
        r(
            "batch",
            format!("batch writes: {} txns x {} inserts", s.batches, s.batch_size),
            Kind::Rate,
        ),
        r("reads_1t", format!("random reads (warm): {} gets, 1 thread", s.reads), Kind::Rate),
        r("reads_2t", format!("random reads (warm): {} gets, 2 threads", s.reads), Kind::Rate),
        r("reads_scaling", "  2 threads / 1 thread".into(), Kind::Factor),
        r(
            "reads_nt",
            format!("random reads (warm): {} gets, {} threads", s.reads, s.threads),
            Kind::Rate,
        ),
        r("cold_get_1t", format!("cold random reads: {n} gets, 1 thread"), Kind::Rate),
        r("cold_get_many", format!("cold random reads: {n} keys, get_many x {b}"), Kind::Rate),
        r("cold_get_nt", format!("cold random reads: {n} gets, {t} threads"), Kind::Rate),
        r("device_qd1_iops", "  device: random 4 KiB reads/s, QD1".into(), Kind::Rate),
        r("device_qd32_iops", "  device: random 4 KiB reads/s, QD32".into(), Kind::Rate),
        r(
            "range_reads",
            format!("range reads: {} scans x {} entries", s.scans, s.scan_len),
            Kind::Rate,
        ),
        r("ycsb_a", format!("YCSB A (50% update, zipf): {} ops, 1 thread", s.ycsb_ops), Kind::Rate),
        r("ycsb_b", format!("YCSB B (5% update, zipf): {} ops, 1 thread", s.ycsb_ops), Kind::Rate),
        r(
            "commits_1w",
            format!("durable 1-insert commits, 1 writer ({})", s.concurrent_commits),
            Kind::Rate,
        ),
        r("commits_nw", format!("durable 1-insert commits, {w} writers"), Kind::Rate),
        r("commits_scaling", format!("  {w} writers / 1 writer (group commit)"), Kind::Factor),
        r(
            "growth_free",
            format!("file growth: {} txns x {} overwrites", s.overwrite_txns, s.overwrite_keys),
            Kind::Size,
        ),
        r("growth_held", "  same, 1 reader held open throughout".into(), Kind::Size),
        r("removals", format!("removals: {} keys, 1 txn", s.keys / 2), Kind::Rate),
        r("size_after_load", "file size after load".into(), Kind::Size),
        r("disk_after_load", "  disk blocks allocated after load".into(), Kind::Size),
        r("size_at_end", "file size at end".into(), Kind::Size),
        r("peak_rss", "peak RSS of the engine's process, less the data set".into(), Kind::Size),
    ]
}

/// One measurement: a number in the row's unit, not applicable (with why), or an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Value(f64),
    Na(String),
    Error(String),
}

impl Cell {
    pub fn from_result(r: Result<f64, String>) -> Cell {
        r.map_or_else(Cell::Error, Cell::Value)
    }

    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(*v),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Cell::Value(v) => json!({ "value": v }),
            Cell::Na(why) => json!({ "na": why }),
            Cell::Error(e) => json!({ "error": e }),
        }
    }

    pub fn from_json(v: &Value) -> Cell {
        if let Some(x) = v.get("value").and_then(Value::as_f64) {
            return Cell::Value(x);
        }
        if let Some(why) = v.get("na").and_then(Value::as_str) {
            return Cell::Na(why.into());
        }
        let e = v.get("error").and_then(Value::as_str).unwrap_or("malformed cell");
        Cell::Error(e.into())
    }
}

/// What one run of one engine produced.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    pub cells: Vec<(String, Cell)>,
    pub notes: Vec<String>,
}

impl RunResult {
    pub fn push(&mut self, id: &str, cell: Cell) {
        self.cells.push((id.to_string(), cell));
    }

    pub fn get(&self, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }

    pub fn to_json(&self) -> Value {
        let cells: Map<String, Value> =
            self.cells.iter().map(|(id, c)| (id.clone(), c.to_json())).collect();
        json!({ "cells": cells, "notes": self.notes })
    }

    pub fn from_json(v: &Value) -> Result<RunResult, String> {
        let cells = v.get("cells").and_then(Value::as_object).ok_or("no cells in result")?;
        let notes = v.get("notes").and_then(Value::as_array).ok_or("no notes in result")?;
        Ok(RunResult {
            cells: cells.iter().map(|(id, c)| (id.clone(), Cell::from_json(c))).collect(),
            notes: notes.iter().filter_map(|n| n.as_str().map(String::from)).collect(),
        })
    }
}

/// The cell every repeat agrees on: the median of the values, or the first error or n/a.
pub fn median_cell(cells: &[&Cell]) -> Cell {
    if let Some(bad) = cells.iter().find(|c| matches!(c, Cell::Error(_))) {
        return (*bad).clone();
    }
    if let Some(na) = cells.iter().find(|c| matches!(c, Cell::Na(_))) {
        return (*na).clone();
    }
    let mut v: Vec<f64> = cells.iter().filter_map(|c| c.value()).collect();
    if v.is_empty() {
        return Cell::Error("no runs".into());
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Cell::Value(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_round_trip() {
        let (a, b, c) = (Cell::Value(3.0), Cell::Value(1.0), Cell::Value(2.0));
        assert_eq!(median_cell(&[&a, &b, &c]), Cell::Value(2.0));
        assert_eq!(median_cell(&[&a, &b]), Cell::Value(2.0));
        let na = Cell::Na("x".into());
        assert_eq!(median_cell(&[&a, &na]), na);
        let mut r = RunResult::default();
        r.push("bulk_load", a);
        r.push("reads_nt", na);
        r.notes.push("n".into());
        let back = RunResult::from_json(&r.to_json()).unwrap();
        assert_eq!(back.cells, r.cells);
        assert_eq!(back.notes, r.notes);
    }
}
