//! The reference model: named trees as `BTreeMap`s, and the committed states in commit order
//! since the last recovery, with the newest one acknowledged as durable.
//!
//! States share structure: a tree is an `Rc` cloned on first change (`Rc::make_mut`) and
//! values are `Rc<[u8]>`, so keeping one state per commit costs a few pointers per tree.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

pub type Val = Rc<[u8]>;
pub type Tree = BTreeMap<Vec<u8>, Val>;

/// Every named tree (a tree exists, empty or not, until it is deleted).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct State {
    pub trees: BTreeMap<String, Rc<Tree>>,
}

impl State {
    /// The tree `name`, created empty if missing (as `WriteTxn::tree` does).
    pub fn tree_mut(&mut self, name: &str) -> &mut Tree {
        Rc::make_mut(self.trees.entry(name.to_string()).or_default())
    }

    pub fn tree(&self, name: &str) -> Option<&Tree> {
        self.trees.get(name).map(|t| &**t)
    }

    pub fn entries(&self) -> usize {
        self.trees.values().map(|t| t.len()).sum()
    }

    /// A short description of how `self` differs from `other`, for failure reports.
    pub fn diff(&self, other: &State) -> String {
        let names = |s: &State| s.trees.keys().cloned().collect::<Vec<_>>();
        if names(self) != names(other) {
            let show = |s: &State| s.trees.keys().map(|n| show_name(n)).collect::<Vec<_>>();
            return format!("trees {:?} vs {:?}", show(self), show(other));
        }
        for (name, tree) in &self.trees {
            let theirs = &other.trees[name];
            if tree == theirs {
                continue;
            }
            let first = tree
                .iter()
                .zip(theirs.iter())
                .find(|(a, b)| a != b)
                .map(|((k, a), (_, b))| {
                    format!("{} ({} vs {} bytes)", show_key(k), a.len(), b.len())
                })
                .unwrap_or_else(|| "a missing tail".to_string());
            return format!(
                "tree {}: {} vs {} entries, first difference at {first}",
                show_name(name),
                tree.len(),
                theirs.len()
            );
        }
        "no difference".to_string()
    }
}

/// A key for reports: printable ASCII as is, else hex, cut to 40 characters.
pub fn show_key(k: &[u8]) -> String {
    let s = if k.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(k).into_owned()
    } else {
        k.iter().map(|b| format!("{b:02x}")).collect()
    };
    let cut: String = s.chars().take(40).collect();
    format!("{cut}({} bytes)", k.len())
}

/// A tree name for reports, cut to 40 characters.
pub fn show_name(name: &str) -> String {
    if name.len() <= 40 {
        return name.to_string();
    }
    format!("{}…({} bytes)", &name[..40], name.len())
}

/// Items of `tree` in `(lo, hi)`, forward or backward, at most `limit`.
pub fn range_items(
    tree: Option<&Tree>,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    rev: bool,
    limit: usize,
) -> Vec<(Vec<u8>, Val)> {
    let Some(tree) = tree else { return Vec::new() };
    if bounds_empty(lo, hi) {
        return Vec::new();
    }
    let range = tree.range::<Vec<u8>, _>((lo.as_ref(), hi.as_ref()));
    let clone = |(k, v): (&Vec<u8>, &Val)| (k.clone(), Rc::clone(v));
    if rev {
        range.rev().take(limit).map(clone).collect()
    } else {
        range.take(limit).map(clone).collect()
    }
}

/// Whether `(lo, hi)` holds no key; `BTreeMap::range` panics on such bounds when they
/// are inverted, the engine's iterator just yields nothing.
pub fn bounds_empty(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

/// Committed states of one store in commit order, oldest first (the empty store first).
/// `acked` indexes the newest state acknowledged durable. A recovery to state `i` drops
/// the states after it (they never became durable and the next commit replaces them) and
/// makes `i` the acknowledged one; states before it stay, so a later recovery that goes
/// back past them is told apart from one that finds no committed state at all.
pub struct History {
    pub states: Vec<Rc<State>>,
    pub acked: usize,
}

impl History {
    pub fn new(start: State) -> History {
        History { states: vec![Rc::new(start)], acked: 0 }
    }

    pub fn last(&self) -> &Rc<State> {
        self.states.last().expect("the history is never empty")
    }

    pub fn push(&mut self, state: State) {
        self.states.push(Rc::new(state));
    }

    /// Every state so far is durable (an Immediate commit or a flush returned).
    pub fn ack_all(&mut self) {
        self.acked = self.states.len() - 1;
    }

    /// The store recovered to state `i`.
    pub fn recovered(&mut self, i: usize) {
        self.states.truncate(i + 1);
        self.acked = i;
    }

    /// Where `got` sits in commit order, newest match first.
    pub fn position(&self, got: &State) -> Option<usize> {
        self.states.iter().rposition(|s| **s == *got)
    }
}
