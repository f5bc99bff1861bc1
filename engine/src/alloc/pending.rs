//! Pending frees: runs freed in generation G that a durable (or in-flight) superblock may
//! still reference. They stay allocated in the bitmap until G+1 is durable (design.md §4,
//! §10.13). Per generation the runs are kept sorted by start and merged when adjacent, so
//! the persisted lists stay short.

use std::collections::BTreeMap;

/// A run of blocks: `[start, start + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub start: u64,
    pub count: u64,
}

impl Run {
    pub(super) fn end(&self) -> u64 {
        self.start + self.count
    }
}

/// `freed_gen → sorted, merged, disjoint runs`.
#[derive(Debug, Default, Clone)]
pub(super) struct PendingMap {
    map: BTreeMap<u64, Vec<Run>>,
    /// Blocks in all runs (they are disjoint).
    blocks: u64,
}

impl PendingMap {
    /// Adds a run to pending(`freed_gen`), merging with its neighbours. The caller has
    /// checked that the run is allocated and not pending already.
    pub(super) fn insert(&mut self, freed_gen: u64, run: Run) {
        debug_assert!(run.count > 0);
        insert_merged(self.map.entry(freed_gen).or_default(), run);
        self.blocks += run.count;
    }

    /// Blocks in every pending run.
    pub(super) fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Removes and returns every generation `< gen` (they are reusable now).
    pub(super) fn take_below(&mut self, gen: u64) -> Vec<(u64, Vec<Run>)> {
        let kept = self.map.split_off(&gen);
        let taken: Vec<(u64, Vec<Run>)> =
            std::mem::replace(&mut self.map, kept).into_iter().collect();
        let count: u64 = taken.iter().flat_map(|(_, runs)| runs).map(|r| r.count).sum();
        assert!(count <= self.blocks, "took {count} pending blocks of {}", self.blocks);
        self.blocks -= count;
        taken
    }

    /// The generations and their runs, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &[Run])> + '_ {
        self.map.iter().map(|(g, runs)| (*g, runs.as_slice()))
    }

    /// The runs of one generation (empty if none).
    pub(super) fn runs(&self, freed_gen: u64) -> &[Run] {
        self.map.get(&freed_gen).map_or(&[], |r| r.as_slice())
    }

    /// Whether any block of `run` is in a pending run.
    pub(super) fn overlaps(&self, run: Run) -> bool {
        self.map.values().any(|runs| {
            let i = runs.partition_point(|r| r.end() <= run.start);
            runs.get(i).is_some_and(|r| r.start < run.end())
        })
    }
}

/// Inserts `run` into sorted, disjoint, merged `runs`, merging with adjacent neighbours.
pub(super) fn insert_merged(runs: &mut Vec<Run>, run: Run) {
    // First run that ends at or after our start: the only candidate to merge on the left.
    let i = runs.partition_point(|r| r.end() < run.start);
    let mut merged = run;
    let mut j = i;
    while let Some(r) = runs.get(j) {
        if r.start > merged.end() {
            break;
        }
        debug_assert!(r.end() == merged.start || r.start == merged.end(), "overlapping frees");
        let start = r.start.min(merged.start);
        let end = r.end().max(merged.end());
        merged = Run { start, count: end - start };
        j += 1;
    }
    runs.splice(i..j, [merged]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_neighbours() {
        let mut runs = Vec::new();
        insert_merged(&mut runs, Run { start: 10, count: 5 });
        insert_merged(&mut runs, Run { start: 20, count: 5 });
        insert_merged(&mut runs, Run { start: 0, count: 3 });
        assert_eq!(runs.len(), 3);
        insert_merged(&mut runs, Run { start: 15, count: 5 });
        assert_eq!(runs, vec![Run { start: 0, count: 3 }, Run { start: 10, count: 15 }]);
        insert_merged(&mut runs, Run { start: 3, count: 7 });
        assert_eq!(runs, vec![Run { start: 0, count: 25 }]);
    }

    #[test]
    fn take_below_and_overlaps() {
        let mut p = PendingMap::default();
        p.insert(5, Run { start: 100, count: 2 });
        p.insert(6, Run { start: 200, count: 1 });
        p.insert(7, Run { start: 300, count: 1 });
        let one = |start| Run { start, count: 1 };
        assert!(p.overlaps(one(101)) && !p.overlaps(one(102)) && p.overlaps(one(300)));
        assert!(
            p.overlaps(Run { start: 90, count: 11 }) && !p.overlaps(Run { start: 90, count: 10 })
        );
        assert_eq!(p.blocks(), 4);
        let taken = p.take_below(7);
        assert_eq!(taken.len(), 2);
        assert_eq!(p.blocks(), 1);
        assert_eq!(p.iter().count(), 1);
        assert_eq!(p.runs(7), &[Run { start: 300, count: 1 }]);
    }
}
