//! `Db::check`: walk every tree, verify every block and the allocator against reachability.

use std::collections::HashMap;

use arbor_format::constants::TREE_DEPTH_MAX;
use arbor_format::node::LeafValue;
use arbor_format::ChildPtr;

use crate::btree::check_child;
use crate::catalog;
use crate::store::Store;
use crate::writer::{decode, Writer};
use crate::Result;

/// What `Db::check` found. `problems` is empty for a healthy store.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CheckReport {
    pub trees: u64,
    pub entries: u64,
    pub tree_blocks: u64,
    pub overflow_blocks: u64,
    pub allocator_blocks: u64,
    pub pending_blocks: u64,
    pub free_blocks: u64,
    /// Every problem found, each naming a block address.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A node still to visit: (pointer, expected level, lower bound, upper bound).
type Pending = (ChildPtr, Option<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

enum Owner {
    Tree(Vec<u8>),
    Overflow,
    Allocator,
    Pending,
}

struct Walk<'a> {
    w: &'a Writer,
    s: &'a Store,
    used: HashMap<u64, Owner>,
    report: CheckReport,
}

impl Walk<'_> {
    fn claim(&mut self, addr: u64, count: u64, owner: Owner) {
        for a in addr..addr.saturating_add(count) {
            if !self.w.alloc.is_allocated(a) {
                self.report.problems.push(format!("block {a} is in use but marked free"));
            }
            if self.used.contains_key(&a) {
                self.report.problems.push(format!("block {a} is used twice"));
                continue;
            }
            let o = match &owner {
                Owner::Tree(n) => Owner::Tree(n.clone()),
                Owner::Overflow => Owner::Overflow,
                Owner::Allocator => Owner::Allocator,
                Owner::Pending => Owner::Pending,
            };
            self.used.insert(a, o);
        }
    }

    /// Walks one tree, checking levels, key order and separator bounds.
    fn tree(&mut self, name: &[u8], root: ChildPtr, is_catalog: bool) -> Result<u64> {
        let mut entries = 0u64;
        let mut stack: Vec<Pending> = vec![(root, None, None, None)];
        while let Some((ptr, expect, lo, hi)) = stack.pop() {
            let addr = ptr.address();
            let buf = match self.w.node(self.s, ptr) {
                Ok(b) => b,
                Err(e) => {
                    self.report.problems.push(format!("tree {:?}: {e}", lossy(name)));
                    continue;
                }
            };
            let node =
                match decode(&buf, addr).and_then(|n| check_child(&n, addr, expect).map(|()| n)) {
                    Ok(n) => n,
                    Err(e) => {
                        self.report.problems.push(format!("tree {:?}: {e}", lossy(name)));
                        continue;
                    }
                };
            if node.level() > TREE_DEPTH_MAX {
                continue;
            }
            self.claim(addr, 1, Owner::Tree(name.to_vec()));
            self.report.tree_blocks += 1;
            for i in 0..node.len() {
                let key = node.key(i);
                let below_lo =
                    lo.as_deref().is_some_and(|l| key < l && !(i == 0 && node.level() > 0));
                let above_hi = hi.as_deref().is_some_and(|h| key >= h);
                if below_lo || above_hi {
                    self.report
                        .problems
                        .push(format!("block {addr}: key {i} outside its separator bounds"));
                }
                if node.level() > 0 {
                    let child_lo = if i == 0 { lo.clone() } else { Some(key.to_vec()) };
                    let child_hi = if i + 1 < node.len() {
                        Some(node.key(i + 1).to_vec())
                    } else {
                        hi.clone()
                    };
                    stack.push((node.child(i), Some(node.level() - 1), child_lo, child_hi));
                    continue;
                }
                entries += 1;
                match node.leaf_value(i) {
                    LeafValue::Overflow(r) => {
                        match self.s.read_overflow(&r) {
                            Ok(_) => {}
                            Err(e) => self.report.problems.push(e.to_string()),
                        }
                        self.claim(r.address(), u64::from(r.block_count()), Owner::Overflow);
                        self.report.overflow_blocks += u64::from(r.block_count());
                    }
                    LeafValue::Inline(v) if is_catalog => match catalog::decode(v, addr) {
                        Ok(meta) => {
                            let n = self.tree(key, meta.root, false)?;
                            self.report.trees += 1;
                            self.report.entries += n;
                            if n != meta.entries {
                                self.report.problems.push(format!(
                                    "tree {:?}: catalog says {} entries, found {n}",
                                    lossy(key),
                                    meta.entries
                                ));
                            }
                        }
                        Err(e) => self.report.problems.push(e.to_string()),
                    },
                    LeafValue::Inline(_) => {}
                }
            }
        }
        Ok(entries)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks the writer's current committed state (call outside a transaction).
pub(crate) fn check(w: &Writer, s: &Store) -> Result<CheckReport> {
    let mut walk = Walk { w, s, used: HashMap::new(), report: CheckReport::default() };
    walk.tree(b"(catalog)", w.catalog, true)?;
    for a in w.alloc.own_blocks() {
        walk.claim(a, 1, Owner::Allocator);
        walk.report.allocator_blocks += 1;
    }
    for (addr, count, _) in w.alloc.pending_blocks() {
        // Pending blocks may still be claimed by nothing (freed) — but never by a live tree.
        for a in addr..addr + count {
            if let Some(Owner::Tree(name)) = walk.used.get(&a) {
                walk.report
                    .problems
                    .push(format!("block {a} is pending free but still in tree {:?}", lossy(name)));
            }
            walk.used.entry(a).or_insert(Owner::Pending);
        }
        walk.report.pending_blocks += count;
    }
    let first = arbor_format::constants::first_data_block(s.block_bytes);
    for a in first..w.alloc.block_count() {
        let allocated = w.alloc.is_allocated(a);
        if allocated
            && !walk.used.contains_key(&a)
            && !w.dirty.contains_key(&a)
            && !w.alloc.is_held(a)
        {
            walk.report.problems.push(format!("block {a} is allocated but unreachable (leaked)"));
        }
        if !allocated {
            walk.report.free_blocks += 1;
        }
    }
    Ok(walk.report)
}
