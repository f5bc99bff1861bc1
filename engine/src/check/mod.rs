//! Checking a store: walk every tree, verify every block and the allocator against
//! reachability (`Db::check` on an open store, [`check_device`] offline on a device).
//!
//! One walker serves both: it reads nodes either through the writer (its dirty images and
//! the verified cache) or straight from the device (every read verified against the pointer
//! that led to it), claims every block it reaches for one owner, and then compares the set
//! of reached blocks with the allocator's bitmap. It also gathers the per-tree figures that
//! `arbor stat` prints ([`TreeStat`]), so the statistics and the check never disagree about
//! what a tree holds.
//!
//! Node fill is reported (`CheckReport::underfull_nodes`, `TreeStat::fill`), not counted as
//! a problem: the engine evens out a node under a quarter full with a sibling when a removal
//! leaves it so, but a node no removal touched (the last leaf of a sequential load, which
//! append splits leave short) may stay under-full, and a store written by another build may
//! have any fill.

mod device;
mod repair;
mod stat;

use std::collections::{HashMap, HashSet};
use std::fmt;

use arbor_format::node::{LeafValue, Node};
use arbor_format::ChildPtr;

use crate::alloc::Allocator;
use crate::store::Store;
use crate::store::{Block, NodeBuf};
use crate::sync::Arc;
use crate::tree::catalog;
use crate::tree::walk::{self, node_of, roots, RootKind};
use crate::writer::Writer;
use crate::{Error, Result};

pub use crate::durable::superblock::{decode_slot, SlotReport, SlotState};
pub use device::{check_device, DeviceCheck, GenerationCheck, JournalTail};
pub use repair::{
    plan_rollback, repair_free_space, repair_superblocks, roll_back, JournalLoss, RollbackPlan,
    SuperblockRepair, TreeCount, TreeLoss,
};
pub use stat::{space_at, stat_device, Space, StoreStat};

/// What kind of damage a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A superblock copy fails verification, is missing beside a valid twin, or the two
    /// copies of one alternation disagree.
    Superblock,
    /// A block fails verification: checksum, recorded address, generation, the crc its parent
    /// recorded, structure, level or kind.
    Block,
    /// A key lies outside the separator bounds its parents give it (keys out of order
    /// across nodes; order inside one node is part of `Block`).
    KeyOrder,
    /// The catalog's entry count for a tree differs from what the walk found.
    EntryCount,
    /// Allocated in the bitmap, reachable from nothing (space lost, no data at risk).
    Leaked,
    /// Reached twice: two owners share one block (one change would corrupt the other).
    DoubleUsed,
    /// Reachable but marked free (the next allocation may overwrite live data).
    UsedButFree,
    /// Listed as pending free but still reachable from a live tree.
    PendingInUse,
    /// The allocator's own structures (index, bitmap chunks, pending lists) cannot be loaded.
    Allocator,
    /// The commit journal past the newest checkpoint is damaged where acknowledged commits
    /// lie (design.md §11.7): open refuses the store.
    Journal,
}

impl ProblemKind {
    /// A short stable name (used in JSON output).
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Superblock => "superblock",
            ProblemKind::Block => "bad-block",
            ProblemKind::KeyOrder => "key-order",
            ProblemKind::EntryCount => "entry-count",
            ProblemKind::Leaked => "leaked",
            ProblemKind::DoubleUsed => "double-used",
            ProblemKind::UsedButFree => "used-but-free",
            ProblemKind::PendingInUse => "pending-in-use",
            ProblemKind::Allocator => "allocator",
            ProblemKind::Journal => "journal",
        }
    }

    /// Whether this damage is confined to free-space bookkeeping (no data lost or at risk
    /// once the free-space map is rebuilt).
    pub fn is_free_space_only(self) -> bool {
        matches!(self, ProblemKind::Leaked | ProblemKind::UsedButFree)
    }
}

/// One problem a check found, with the block it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// Block address (block number) of the damage; for superblock problems, the slot's byte
    /// offset divided by 4096.
    pub addr: u64,
    /// Human-readable detail, naming the tree or slot where it helps.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at block {}: {}", self.kind.name(), self.addr, self.detail)
    }
}

/// Shape and size of one tree, gathered by the walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeStat {
    /// The tree's name (`(catalog)` for the catalog).
    pub name: Vec<u8>,
    /// The tree's id (never reused).
    pub id: u64,
    /// Levels, counting the leaves (1 for a tree that is a single leaf).
    pub depth: u8,
    /// Leaf blocks.
    pub leaf_blocks: u64,
    /// Internal blocks.
    pub internal_blocks: u64,
    /// Blocks of overflow extents (values too large to store inline).
    pub overflow_blocks: u64,
    /// Values stored in overflow extents.
    pub overflow_values: u64,
    /// Key-value pairs.
    pub entries: u64,
    /// Key bytes.
    pub key_bytes: u64,
    /// Value bytes, overflow values included.
    pub value_bytes: u64,
    /// Bytes in use inside leaf and internal blocks (headers, slots, keys, values).
    pub node_used_bytes: u64,
    /// Leaf and internal blocks × block size.
    pub node_bytes: u64,
    /// Blocks of this tree (nodes, overflow extents) that failed to read or verify: the
    /// figures leave out what lies under them, so `entries` is then a lower bound.
    pub bad_blocks: u64,
    /// The entry count the catalog records for the tree (`None` for the catalog itself and
    /// orphaned subtrees).
    pub catalog_entries: Option<u64>,
}

impl TreeStat {
    /// Average fill of the tree's leaf and internal blocks, 0.0 ..= 1.0.
    pub fn fill(&self) -> f64 {
        if self.node_bytes == 0 {
            return 0.0;
        }
        self.node_used_bytes as f64 / self.node_bytes as f64
    }
}

/// What a check found. `problems` is empty for a healthy store.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CheckReport {
    /// Named trees.
    pub trees: u64,
    /// Key-value pairs in all trees.
    pub entries: u64,
    /// Leaf and internal blocks of every tree, the catalog included.
    pub tree_blocks: u64,
    /// Blocks of overflow extents.
    pub overflow_blocks: u64,
    /// Blocks of the allocator's own structures (bitmap chunks, index, pending lists).
    pub allocator_blocks: u64,
    /// Blocks freed by the newest generation, free once a later one is durable.
    pub pending_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Non-root leaf and internal blocks less than a quarter full (informational).
    pub underfull_nodes: u64,
    /// Every problem found, rendered as text (one per entry of `findings`).
    pub problems: Vec<String>,
    /// Every problem found, with its kind and block address.
    pub findings: Vec<Problem>,
    /// Per-tree figures, the catalog first (named `(catalog)`).
    pub tree_stats: Vec<TreeStat>,
}

impl CheckReport {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }

    fn add(&mut self, kind: ProblemKind, addr: u64, detail: impl Into<String>) {
        let p = Problem { kind, addr, detail: detail.into() };
        self.problems.push(p.to_string());
        self.findings.push(p);
    }
}

/// A node still to visit: (pointer, expected level, lower bound, upper bound, is root).
/// What the check carries along each edge: the separator bounds of the child's keys, and
/// whether it is a tree's root (a root may be underfull).
type Bounds = (Option<Vec<u8>>, Option<Vec<u8>>, bool);

/// Who a reached block belongs to (named in double-use reports).
#[derive(Clone, Debug)]
enum Owner {
    Tree(Vec<u8>),
    Overflow(Vec<u8>),
    Allocator,
    Pending,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Tree(n) => write!(f, "tree {:?}", lossy(n)),
            Owner::Overflow(n) => write!(f, "an overflow value of tree {:?}", lossy(n)),
            Owner::Allocator => write!(f, "the allocator"),
            Owner::Pending => write!(f, "the pending-free list"),
        }
    }
}

/// Where the walker reads nodes from.
enum Source<'a> {
    /// The open store's writer: dirty images of the open generation, else the cache.
    Writer(&'a Writer),
    /// The device, every read verified, nothing cached (offline checks).
    Device,
}

/// Called with the number of blocks visited so far (progress bars).
pub type Progress<'a> = dyn FnMut(u64) + 'a;

struct Walk<'a> {
    src: Source<'a>,
    s: &'a Store,
    alloc: Option<&'a Allocator>,
    used: HashMap<u64, Owner>,
    /// Pointers already verified in another generation's walk: their subtrees are skipped.
    skip: Option<&'a HashSet<ChildPtr>>,
    /// Every pointer this walk verified (for a later walk's `skip`).
    seen: HashSet<ChildPtr>,
    report: CheckReport,
    /// Runs found leaked and runs found in use but free (for `repair_free_space`).
    leaked: Vec<(u64, u64)>,
    used_but_free: Vec<(u64, u64)>,
    visited: u64,
    progress: &'a mut Progress<'a>,
}

impl<'a> Walk<'a> {
    fn new(src: Source<'a>, s: &'a Store, progress: &'a mut Progress<'a>) -> Walk<'a> {
        Walk {
            src,
            s,
            alloc: None,
            used: HashMap::new(),
            skip: None,
            seen: HashSet::new(),
            report: CheckReport::default(),
            leaked: Vec::new(),
            used_but_free: Vec::new(),
            visited: 0,
            progress,
        }
    }

    fn node(&self, ptr: ChildPtr) -> Result<NodeBuf<'a>> {
        match self.src {
            Source::Writer(writer) => writer.dirty.node(self.s, ptr),
            Source::Device => {
                Ok(NodeBuf::Clean(Block::Image(Arc::new(self.s.read_uncached(ptr)?))))
            }
        }
    }

    fn tick(&mut self, blocks: u64) {
        let before = self.visited / 256;
        self.visited += blocks;
        if self.visited / 256 != before {
            (self.progress)(self.visited);
        }
    }

    /// Claims `count` blocks from `addr` for `owner`, reporting double use and blocks the
    /// bitmap calls free (one problem per run, not per block).
    fn claim(&mut self, addr: u64, count: u64, owner: Owner) {
        let limit = self.alloc.map_or(u64::MAX, Allocator::block_count);
        let mut free_run: Option<(u64, u64)> = None;
        for a in addr..addr.saturating_add(count).min(limit) {
            if self.alloc.is_some_and(|al| !al.is_allocated(a)) {
                // `a` grows by one per step, so an open run is always contiguous with it.
                free_run.get_or_insert((a, 0)).1 += 1;
            } else {
                self.free_but_used(free_run.take(), &owner);
            }
            if let Some(prev) = self.used.get(&a) {
                let detail = format!("block {a} belongs to {prev} and to {owner}");
                self.report.add(ProblemKind::DoubleUsed, a, detail);
                continue;
            }
            self.used.insert(a, owner.clone());
        }
        self.free_but_used(free_run, &owner);
    }

    fn free_but_used(&mut self, run: Option<(u64, u64)>, owner: &Owner) {
        if let Some((start, n)) = run {
            let detail = format!("{n} block(s) of {owner} from {start} are marked free");
            self.report.add(ProblemKind::UsedButFree, start, detail);
            self.used_but_free.push((start, n));
        }
    }

    /// Walks one tree, checking every node, levels, key order and separator bounds. Returns
    /// the entries found and whether the walk saw the whole tree (nothing skipped).
    fn tree(
        &mut self,
        name: &[u8],
        id: u64,
        root: ChildPtr,
        is_catalog: bool,
    ) -> Result<(u64, bool)> {
        let mut st = TreeStat { name: name.to_vec(), id, ..TreeStat::default() };
        // The tree's figures go before those of the trees it names (the catalog first).
        let index = self.report.tree_stats.len();
        self.report.tree_stats.push(TreeStat::default());
        let mut walk: walk::Walk<Bounds> = walk::Walk::new(self.s.block_count());
        let mut whole = self.follow(&mut walk, root, None, (None, None, true));
        while let Some((edge, buf)) = walk.next(|ptr| self.node(ptr)) {
            let (ptr, addr) = (edge.ptr, edge.ptr.address());
            let (lo, hi, is_root) = edge.data;
            self.tick(1);
            let buf = match buf {
                Ok(b) => b,
                Err(e) => {
                    st.bad_blocks += 1;
                    self.bad_block(name, addr, e);
                    continue;
                }
            };
            let node = match node_of(&buf, ptr) {
                Ok(n) => n,
                Err(e) => {
                    st.bad_blocks += 1;
                    self.bad_block(name, addr, e);
                    continue;
                }
            };
            self.seen.insert(ptr);
            self.claim(addr, 1, Owner::Tree(name.to_vec()));
            self.node_figures(&mut st, &node, is_root);
            for i in 0..node.len() {
                self.check_bounds(name, &node, i, addr, (&lo, &hi));
                if node.level() > 0 {
                    let key = node.key(i);
                    let child_lo = if i == 0 { lo.clone() } else { Some(key.to_vec()) };
                    let child_hi = if i + 1 < node.len() {
                        Some(node.key(i + 1).to_vec())
                    } else {
                        hi.clone()
                    };
                    let level = Some(node.level() - 1);
                    whole &=
                        self.follow(&mut walk, node.child(i), level, (child_lo, child_hi, false));
                    continue;
                }
                self.leaf_item(&mut st, name, &node, i, is_catalog)?;
            }
        }
        let entries = st.entries;
        if let Some(slot) = self.report.tree_stats.get_mut(index) {
            *slot = st;
        }
        Ok((entries, whole))
    }

    /// Counts one node into its tree's figures and the report.
    fn node_figures(&mut self, st: &mut TreeStat, node: &Node<'_>, is_root: bool) {
        let block_bytes = u64::from(self.s.block_bytes);
        self.report.tree_blocks += 1;
        st.depth = st.depth.max(node.level() + 1);
        st.node_used_bytes += node.used_bytes() as u64;
        st.node_bytes += block_bytes;
        if !is_root && (node.used_bytes() as u64) * 4 < block_bytes {
            self.report.underfull_nodes += 1;
        }
        if node.level() > 0 {
            st.internal_blocks += 1;
        } else {
            st.leaf_blocks += 1;
        }
    }

    /// Reports key `i` of `node` if it lies outside the separator bounds its parent gave.
    fn check_bounds(
        &mut self,
        name: &[u8],
        node: &Node<'_>,
        i: usize,
        addr: u64,
        (lo, hi): (&Option<Vec<u8>>, &Option<Vec<u8>>),
    ) {
        let key = node.key(i);
        // Item 0 of an internal node carries the empty key (minus infinity).
        let below_lo = lo.as_deref().is_some_and(|l| key < l && !(i == 0 && node.level() > 0));
        let above_hi = hi.as_deref().is_some_and(|h| key >= h);
        if below_lo || above_hi {
            let detail = format!(
                "tree {:?}: key {i} ({}) outside its separator bounds",
                lossy(name),
                hex_prefix(key)
            );
            self.report.add(ProblemKind::KeyOrder, addr, detail);
        }
    }

    /// Checks and counts leaf item `i`: its overflow extent, or (in the catalog) the tree
    /// it names.
    fn leaf_item(
        &mut self,
        st: &mut TreeStat,
        name: &[u8],
        node: &Node<'_>,
        i: usize,
        is_catalog: bool,
    ) -> Result<()> {
        let key = node.key(i);
        st.entries += 1;
        st.key_bytes += key.len() as u64;
        match node.leaf_value(i) {
            LeafValue::Overflow(r) => {
                let blocks = u64::from(r.block_count());
                st.overflow_values += 1;
                st.overflow_blocks += blocks;
                st.value_bytes += r.value_len();
                self.report.overflow_blocks += blocks;
                self.tick(blocks);
                if let Err(e) = self.s.read_overflow(&r) {
                    st.bad_blocks += 1;
                    self.bad_block(name, r.address(), e);
                }
                self.claim(r.address(), blocks, Owner::Overflow(name.to_vec()));
            }
            LeafValue::Inline(v) if is_catalog => {
                st.value_bytes += v.len() as u64;
                self.catalog_entry(key, v, node.header().address())?;
            }
            LeafValue::Inline(v) => st.value_bytes += v.len() as u64,
        }
        Ok(())
    }

    /// Walks every tree of a store from its roots (`tree::walk::roots`: the catalog, whose
    /// leaves name the trees, then the orphaned subtrees still to be freed).
    fn store(&mut self, catalog: ChildPtr, orphans: &[ChildPtr]) {
        for (kind, root) in roots(catalog, orphans) {
            let (name, is_catalog): (&[u8], bool) = match kind {
                RootKind::Catalog => (b"(catalog)", true),
                RootKind::Orphan => (b"(orphan)", false),
            };
            if let Err(e) = self.tree(name, 0, root, is_catalog) {
                self.bad_block(name, root.address(), e);
            }
        }
    }

    /// Pushes `ptr` onto `walk` unless another generation's walk verified it already;
    /// returns whether it was pushed (the walk still sees the whole tree).
    fn follow(
        &self,
        walk: &mut walk::Walk<Bounds>,
        ptr: ChildPtr,
        level: Option<u8>,
        b: Bounds,
    ) -> bool {
        if self.skip.is_some_and(|s| s.contains(&ptr)) {
            return false;
        }
        walk.push(ptr, level, b);
        true
    }

    fn catalog_entry(&mut self, name: &[u8], value: &[u8], addr: u64) -> Result<()> {
        let meta = match catalog::decode(value, addr) {
            Ok(meta) => meta,
            Err(e) => {
                self.bad_block(b"(catalog)", addr, e);
                return Ok(());
            }
        };
        let index = self.report.tree_stats.len();
        let (found, whole) = self.tree(name, meta.id, meta.root, false)?;
        if let Some(st) = self.report.tree_stats.get_mut(index) {
            st.catalog_entries = Some(meta.entries);
        }
        self.report.trees += 1;
        self.report.entries += found;
        // A partial walk (subtrees verified in another generation) cannot count entries.
        if found != meta.entries && whole {
            let detail = format!(
                "tree {:?}: the catalog says {} entries, found {found}",
                lossy(name),
                meta.entries
            );
            self.report.add(ProblemKind::EntryCount, meta.root.address(), detail);
        }
        Ok(())
    }

    fn bad_block(&mut self, name: &[u8], addr: u64, e: Error) {
        let (addr, reason) = match e {
            Error::Corrupt { addr, reason } => (addr, reason),
            other => (addr, other.to_string()),
        };
        self.report.add(ProblemKind::Block, addr, format!("tree {:?}: {reason}", lossy(name)));
    }

    /// Claims the allocator's own blocks and its pending runs, then reports every block the
    /// bitmap calls allocated that nothing reached (one problem per run).
    fn cross_check(
        &mut self,
        alloc: &Allocator,
        dirty: Option<&crate::addr_map::AddrMap<crate::writer::Dirty>>,
    ) {
        for a in alloc.own_blocks() {
            self.claim(a, 1, Owner::Allocator);
            self.report.allocator_blocks += 1;
        }
        for (addr, count, _) in alloc.pending_blocks() {
            // Pending blocks may be claimed by nothing (freed) — but never by a live tree.
            for a in addr..addr.saturating_add(count) {
                if let Some(Owner::Tree(name) | Owner::Overflow(name)) = self.used.get(&a) {
                    let detail =
                        format!("block {a} is pending free but still in tree {:?}", lossy(name));
                    self.report.add(ProblemKind::PendingInUse, a, detail);
                }
                self.used.entry(a).or_insert(Owner::Pending);
            }
            self.report.pending_blocks += count;
        }
        let first = self.s.first_data();
        let mut leaked: Option<(u64, u64)> = None;
        for a in first..alloc.block_count() {
            let allocated = alloc.is_allocated(a);
            // Held blocks are allocated only because a live snapshot pins them.
            let lost = allocated
                && !self.used.contains_key(&a)
                && !dirty.is_some_and(|d| d.contains_key(&a))
                && !alloc.is_held(a);
            match (&mut leaked, lost) {
                (Some((start, n)), true) if *start + *n == a => *n += 1,
                (_, true) => {
                    self.report_leak(leaked.take());
                    leaked = Some((a, 1));
                }
                (_, false) => self.report_leak(leaked.take()),
            }
            if !allocated {
                self.report.free_blocks += 1;
            }
        }
        self.report_leak(leaked);
    }

    fn report_leak(&mut self, run: Option<(u64, u64)>) {
        if let Some((start, n)) = run {
            let last = start + n - 1;
            let detail = format!("blocks {start}..={last} ({n}) are allocated but unreachable");
            self.report.add(ProblemKind::Leaked, start, detail);
            self.leaked.push((start, n));
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first bytes of a key, in hex, for problem reports.
fn hex_prefix(key: &[u8]) -> String {
    let shown: String = key.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if key.len() > 16 {
        format!("0x{shown}…")
    } else {
        format!("0x{shown}")
    }
}

/// Checks the writer's current committed state (call outside a transaction).
pub(crate) fn check(writer: &Writer, s: &Store) -> Result<CheckReport> {
    let mut quiet = |_: u64| {};
    let mut walk = Walk::new(Source::Writer(writer), s, &mut quiet);
    walk.alloc = Some(&writer.alloc);
    walk.store(writer.trees.catalog, writer.alloc.orphans());
    walk.cross_check(&writer.alloc, Some(&writer.dirty.map));
    Ok(walk.report)
}

impl crate::Db {
    /// Walks the whole store and verifies it (see `CheckReport`). Waits for an open write
    /// transaction to end. A handle a panic made fail-stop returns `Error::Poisoned`: its
    /// in-memory state is in doubt (reopen the store, or check the device offline).
    pub fn check(&self) -> Result<CheckReport> {
        let writer = self.shared.lock_writer()?;
        check(&writer, &self.shared.store)
    }
}
