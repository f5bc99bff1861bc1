//! loom models of the engine's concurrency core; run with `RUSTFLAGS="--cfg loom"`.
//!
//! The models live in `tests/` (one file per race of design.md §8, listed in the README) and
//! drive the engine's own `#[doc(hidden)]` exports — `arbor::mvcc`, `arbor::modlog`,
//! `arbor::pool`, `arbor::commit`, `arbor::journal` and the `arbor::sync` facade — so loom
//! checks the code that ships, not a copy. This library holds only the helpers they share:
//! building small leaf blocks and reading them back. Without `--cfg loom` it is empty and
//! the test files compile to nothing.

#[cfg(loom)]
mod blocks {
    use arbor::mvcc::RootRecord;
    use arbor::AlignedBuf;
    use arbor_format::node::LeafValue;
    use arbor_format::{BlockKind, ChildPtr, Node, NodeMut, ValueRef, BLOCK_BYTES_MIN};

    /// Every model block is the smallest valid block: loom's cost is in the number of
    /// synchronisation points, not the bytes, but there is no reason to copy more.
    pub const BLOCK_BYTES: usize = BLOCK_BYTES_MIN as usize;

    /// The key every model leaf holds at slot 0.
    pub const KEY: &[u8] = b"k";

    /// A leaf at `addr` of generation `gen` owned by tree `owner`, holding `items` in order.
    pub fn leaf(addr: u64, gen: u64, owner: u64, items: &[(&[u8], &[u8])]) -> AlignedBuf {
        let mut buf = AlignedBuf::zeroed(BLOCK_BYTES, BLOCK_BYTES);
        let mut node = NodeMut::init(&mut buf, BlockKind::Leaf, 0, addr, gen, owner);
        for (i, (k, v)) in items.iter().enumerate() {
            node.insert(i, k, ValueRef::Inline(v)).expect("a model item fits");
        }
        buf
    }

    /// A leaf holding only `KEY` → `value`.
    pub fn leaf_kv(addr: u64, gen: u64, owner: u64, value: &[u8]) -> AlignedBuf {
        leaf(addr, gen, owner, &[(KEY, value)])
    }

    /// What a reader sees in a block: its header's (address, owner) and its items. Decoded
    /// with the full `Node::decode` check, so a torn or half-rewound image fails loudly.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Seen {
        pub addr: u64,
        pub owner: u64,
        pub items: Vec<(Vec<u8>, Vec<u8>)>,
    }

    pub fn seen(buf: &[u8]) -> Seen {
        let node = Node::decode(buf).expect("a model block decodes");
        let header = node.header();
        let items = (0..node.len())
            .map(|i| match node.leaf_value(i) {
                LeafValue::Inline(v) => (node.key(i).to_vec(), v.to_vec()),
                LeafValue::Overflow(_) => panic!("model leaves hold inline values only"),
            })
            .collect();
        Seen { addr: header.address.get(), owner: header.owner.get(), items }
    }

    /// The `Seen` of `leaf(addr, _, owner, items)`.
    pub fn expect(addr: u64, owner: u64, items: &[(&[u8], &[u8])]) -> Seen {
        let items = items.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        Seen { addr, owner, items }
    }

    /// A root record whose catalog root is the block at `addr` of generation `gen`.
    pub fn record(seq: u64, gen: u64, addr: u64) -> RootRecord {
        RootRecord { seq, gen, catalog: ChildPtr::new(addr, gen, 0) }
    }
}

#[cfg(loom)]
pub use blocks::*;

/// The preemption bound when `LOOM_MAX_PREEMPTIONS` is unset: unbounded exploration of the
/// three-thread models takes far longer than the suite's budget (design.md §8: bound 2–3).
#[cfg(loom)]
pub const PREEMPTIONS_DEFAULT: usize = 2;

/// `loom::model`, with the preemption bound defaulting to [`PREEMPTIONS_DEFAULT`].
#[cfg(loom)]
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS_DEFAULT);
    }
    builder.check(f);
}

/// Which outcomes (small integers) the executions of one loom model reached, so a model
/// can assert that it is not vacuous: that loom explored each branch its invariant covers.
/// Plain std atomics on purpose: this bookkeeping sits outside the model.
pub struct Outcomes(std::sync::atomic::AtomicU64);

impl Outcomes {
    pub const fn new() -> Outcomes {
        Outcomes(std::sync::atomic::AtomicU64::new(0))
    }

    pub fn note(&self, outcome: usize) {
        assert!(outcome < 64, "outcome {outcome} out of range");
        self.0.fetch_or(1 << outcome, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn assert_seen(&self, expected: &[usize], what: &str) {
        let seen = self.0.load(std::sync::atomic::Ordering::Relaxed);
        for &o in expected {
            assert!(
                seen & (1 << o) != 0,
                "loom never reached outcome {o:#b} of {what} (reached {seen:#b})"
            );
        }
    }
}

impl Default for Outcomes {
    fn default() -> Outcomes {
        Outcomes::new()
    }
}
