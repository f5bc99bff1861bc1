//! The clean-block cache: verified, immutable block images keyed by address, under a byte
//! budget, evicted in CLOCK order.
//!
//! Only blocks of frozen or durable generations live here: they never change in place
//! (design.md §10.1), so a reader holding an `Arc` of one may use it with no lock while the
//! cache evicts the entry or the writer reuses the address for a new block — the reader's
//! image stays valid and unchanged (the race "cache eviction vs a reader holding a block").
//! Blocks of the open generation live with the writer, not here.

use crate::addr_map::{shard_of, AddrMap};
use crate::io::AlignedBuf;
use crate::sync::{read, write, Arc, AtomicBool, AtomicU64, Ordering, RwLock};

struct Entry {
    buf: Arc<AlignedBuf>,
    /// CLOCK's reference bit: set by lookups under the shard's read lock.
    referenced: AtomicBool,
}

/// One shard: lookups share its lock (a reader preempted while holding it never blocks
/// other readers); inserts and evictions take it exclusively.
struct Shard {
    inner: RwLock<Inner>,
}

/// Hit counters, one cache line each; a thread counts on the one its id picks, so a hit
/// writes no line that readers on other threads write (every lookup hits the root's shard:
/// one shared counter there made every reader bounce one line, design.md §12.4).
struct Hits([PaddedCounter; HIT_COUNTERS]);

#[repr(align(128))]
struct PaddedCounter(AtomicU64);

const HIT_COUNTERS: usize = 16;

thread_local! {
    /// This thread's hit counter: its id hashed, once.
    static HIT_COUNTER: usize = {
        use std::hash::{BuildHasher, RandomState};
        let hash = RandomState::new().hash_one(std::thread::current().id());
        (hash as usize) % HIT_COUNTERS
    };
}

struct Inner {
    map: AddrMap<Entry>,
    /// CLOCK ring of addresses; may hold addresses already removed (skipped lazily).
    ring: Vec<u64>,
    hand: usize,
    bytes: u64,
}

/// Cache of clean block images. All methods take `&self`; one short lock per call, on one
/// of `SHARDS` independent shards (by address), so readers on several threads rarely meet.
pub struct BlockCache {
    shards: Vec<Shard>,
    hits: Hits,
    /// Budget per shard.
    budget_bytes: u64,
}

/// Shards of the cache: a power of two. Each has `1/SHARDS` of the budget.
pub const SHARDS: usize = 16;

/// Evicting more than this many entries per insert would mean the budget is far too small
/// for one block; the bound keeps an insert's work constant.
const EVICT_SCAN_MAX: usize = 1 << 16;

impl BlockCache {
    pub fn new(budget_bytes: u64) -> BlockCache {
        let shard = || Shard {
            inner: RwLock::new(Inner {
                map: AddrMap::default(),
                ring: Vec::new(),
                hand: 0,
                bytes: 0,
            }),
        };
        BlockCache {
            shards: (0..SHARDS).map(|_| shard()).collect(),
            hits: Hits(std::array::from_fn(|_| PaddedCounter(AtomicU64::new(0)))),
            budget_bytes: budget_bytes / SHARDS as u64,
        }
    }

    /// The shard an address belongs to (tests that need addresses to compete for one
    /// shard's budget pick them with this).
    pub fn shard_index(addr: u64) -> usize {
        shard_of(addr, SHARDS)
    }

    fn shard(&self, addr: u64) -> &Shard {
        &self.shards[shard_of(addr, SHARDS)]
    }

    pub fn get(&self, addr: u64) -> Option<Arc<AlignedBuf>> {
        let shard = self.shard(addr);
        let inner = read(&shard.inner);
        let entry = inner.map.get(&addr)?;
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        let buf = Arc::clone(&entry.buf);
        drop(inner);
        let counter = HIT_COUNTER.with(|&i| i);
        self.hits.0[counter].0.fetch_add(1, Ordering::Relaxed);
        Some(buf)
    }

    /// Inserts (or replaces) the image at `addr` and evicts until under budget.
    pub fn insert(&self, addr: u64, buf: Arc<AlignedBuf>) {
        let mut inner = write(&self.shard(addr).inner);
        let len = buf.len() as u64;
        // New entries start unreferenced: a scan of cold blocks then evicts itself before
        // it evicts blocks that were hit again (root and upper nodes stay resident).
        let entry = Entry { buf, referenced: AtomicBool::new(false) };
        if let Some(old) = inner.map.insert(addr, entry) {
            debug_assert!(inner.bytes >= old.buf.len() as u64, "cache bytes below an entry");
            inner.bytes -= old.buf.len() as u64;
        } else {
            inner.ring.push(addr);
        }
        inner.bytes += len;
        self.evict(&mut inner);
        // Every entry's address is on the clock ring (the ring may also hold stale ones).
        debug_assert!(inner.ring.len() >= inner.map.len(), "a cache entry is off the ring");
    }

    /// Drops the entry at `addr` (its address is about to hold another image).
    pub fn remove(&self, addr: u64) {
        let mut inner = write(&self.shard(addr).inner);
        if let Some(old) = inner.map.remove(&addr) {
            debug_assert!(inner.bytes >= old.buf.len() as u64, "cache bytes below an entry");
            inner.bytes -= old.buf.len() as u64;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| read(&s.inner).bytes).sum()
    }

    /// Lookups that found an entry (whatever the caller then decided about it).
    pub(crate) fn hits(&self) -> u64 {
        self.hits.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(&s.inner).map.len()).sum()
    }

    fn evict(&self, inner: &mut Inner) {
        let mut scanned = 0usize;
        while inner.bytes > self.budget_bytes && !inner.ring.is_empty() && scanned < EVICT_SCAN_MAX
        {
            scanned += 1;
            if inner.hand >= inner.ring.len() {
                inner.hand = 0;
            }
            let addr = inner.ring[inner.hand];
            match inner.map.get_mut(&addr) {
                None => {
                    inner.ring.swap_remove(inner.hand);
                }
                Some(entry) if entry.referenced.load(Ordering::Relaxed) => {
                    entry.referenced.store(false, Ordering::Relaxed);
                    inner.hand += 1;
                }
                Some(_) => {
                    let old = inner.map.remove(&addr).map(|e| e.buf.len() as u64).unwrap_or(0);
                    inner.bytes -= old;
                    inner.ring.swap_remove(inner.hand);
                }
            }
        }
        // Keep the ring from accumulating stale addresses of removed entries.
        if inner.ring.len() > 2 * inner.map.len() + 1024 {
            let Inner { map, ring, .. } = inner;
            ring.retain(|a| map.contains_key(a));
            inner.hand = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fill: u8) -> Arc<AlignedBuf> {
        let mut b = AlignedBuf::zeroed(4096, 4096);
        b.fill(fill);
        Arc::new(b)
    }

    /// Addresses that land in the same shard as `first`.
    fn same_shard(first: u64, n: usize) -> Vec<u64> {
        let s = shard_of(first, SHARDS);
        (first..).filter(|a| shard_of(*a, SHARDS) == s).take(n).collect()
    }

    #[test]
    fn stays_under_budget_and_keeps_hot_entries() {
        let cache = BlockCache::new(SHARDS as u64 * 4 * 4096);
        let addrs = same_shard(0, 20);
        for &a in &addrs[..4] {
            cache.insert(a, block(a as u8));
        }
        assert_eq!(cache.len(), 4);
        for &a in &addrs[4..] {
            assert!(cache.get(addrs[0]).is_some(), "a hot entry survives eviction");
            cache.insert(a, block(a as u8));
            assert!(cache.bytes() <= 4 * 4096);
        }
        assert_eq!(cache.get(addrs[0]).map(|b| b[0]), Some(addrs[0] as u8));
    }

    #[test]
    fn a_held_image_outlives_eviction() {
        let cache = BlockCache::new(SHARDS as u64 * 4096);
        let addrs = same_shard(1, 2);
        cache.insert(addrs[0], block(7));
        let held = cache.get(addrs[0]).expect("present");
        cache.insert(addrs[1], block(9));
        assert!(held.iter().all(|&b| b == 7));
    }
}
