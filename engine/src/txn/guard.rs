//! Values lent by snapshot reads without a copy (design.md §12.5): a [`Guard`] derefs to
//! the value's bytes where they lie — in the block's frame of the buffer pool (pinned for as
//! long as the guard lives), in an immutable block image, or, for values stored outside the
//! leaf (overflow extents), in a buffer of its own.

use std::fmt;
use std::ops::Range;

use crate::io::AlignedBuf;
use crate::store::pool::RawPin;
use crate::store::Block;
use crate::sync::Arc;
use crate::txn::Shared;

/// A value read from a snapshot, lent without a copy: deref it to `&[u8]`; `to_vec()` (or
/// `Vec::from`) makes an owned copy. Like redb's `AccessGuard`, it holds the bytes in
/// place: a block it pins stays in memory, unchanged, until the guard drops — across later
/// commits, evictions and the expiry of its snapshot. `Send + Sync`.
///
/// A guard lent from the buffer pool holds the store's memory: if it outlives the last
/// `Db` handle, the store is closed (flushed, background checkpoints stopped, its lock
/// released, so it can be opened again) and the guard keeps its bytes until it drops.
///
/// ```
/// # let db = arbor::Db::memory(16 << 20)?;
/// # let tx = db.begin_write()?;
/// # tx.tree("t")?.insert(b"k", b"value")?;
/// # tx.commit()?;
/// let t = db.snapshot()?.tree("t")?.expect("exists");
/// let v = t.get(b"k")?.expect("present");
/// assert_eq!(&v[..], b"value");
/// assert_eq!(v.len(), 5);
/// let owned: Vec<u8> = v.to_vec();
/// # assert_eq!(owned, b"value");
/// # Ok::<(), arbor::Error>(())
/// ```
pub struct Guard {
    /// The value's bytes, resolved once from `hold` (a guard is read far more often than
    /// made: deref is two loads, not a walk through the hold).
    ptr: *const u8,
    len: usize,
    hold: Lent,
}

// SAFETY: `ptr..ptr + len` lies in memory `hold` keeps alive and unchanged (a pinned frame,
// an immutable image, another guard's block, or the guard's own buffer, whose heap bytes do
// not move with it) and is only read; `Lent` itself is `Send` and `Sync`.
unsafe impl Send for Guard {}
// SAFETY: as above: shared reads only.
unsafe impl Sync for Guard {}

/// The store's memory, held for a snapshot and what it lends: one count per snapshot, so
/// reads on many threads do not all write the store's own count.
pub(crate) type StoreRef = Arc<Arc<Shared>>;

enum Lent {
    /// In a pinned frame of the pool of `shared`'s store (which the guard keeps alive).
    Pinned { shared: StoreRef, pin: Option<RawPin> },
    /// In an immutable block image.
    Image(Arc<AlignedBuf>),
    /// In a block another guard holds (a range's leaf: its items share one hold).
    InBlock(Arc<Guard>),
    /// A buffer of its own (an overflow value).
    Owned(Vec<u8>),
}

impl Lent {
    /// The bytes held (a whole block, or an owned value).
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Lent::Pinned { shared, pin } => {
                let pin = pin.as_ref().expect("a live guard holds its pin");
                shared.store.pool.raw_bytes(pin)
            }
            Lent::Image(image) => image,
            Lent::InBlock(block) => block,
            Lent::Owned(v) => v,
        }
    }
}

/// A block a value lies in, detached from the borrow of the store it was read through.
pub(crate) enum Detached {
    Pinned(RawPin),
    Image(Arc<AlignedBuf>),
}

impl Detached {
    pub(crate) fn new(block: Block<'_>) -> Detached {
        match block {
            Block::Pinned(pin) => Detached::Pinned(pin.into_raw()),
            Block::Image(image) => Detached::Image(image),
        }
    }
}

impl Guard {
    /// The bytes at `at` of what `hold` holds.
    #[inline]
    fn new(hold: Lent, at: Range<usize>) -> Guard {
        let bytes = hold.bytes();
        assert!(at.start <= at.end, "bytes {at:?}");
        assert!(at.end <= bytes.len(), "bytes {at:?} outside a block of {}", bytes.len());
        let ptr = bytes[at.clone()].as_ptr();
        Guard { ptr, len: at.len(), hold }
    }

    /// The value at `at` of `block`, which was read through `shared`'s store.
    pub(crate) fn lend(shared: StoreRef, block: Detached, at: Range<usize>) -> Guard {
        match block {
            Detached::Pinned(pin) => Guard::new(Lent::Pinned { shared, pin: Some(pin) }, at),
            Detached::Image(image) => Guard::in_image(image, at),
        }
    }

    /// The bytes at `at` of an immutable image.
    pub(crate) fn in_image(image: Arc<AlignedBuf>, at: Range<usize>) -> Guard {
        Guard::new(Lent::Image(image), at)
    }

    /// The bytes at `at` of the block `block` holds.
    #[inline]
    pub(crate) fn within(block: &Arc<Guard>, at: Range<usize>) -> Guard {
        Guard::new(Lent::InBlock(Arc::clone(block)), at)
    }

    /// A value in a buffer of its own.
    pub(crate) fn owned(value: Vec<u8>) -> Guard {
        let len = value.len();
        Guard::new(Lent::Owned(value), 0..len)
    }

    /// The value as an owned vector (no copy if it already owns one).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.hold {
            Lent::Owned(v) => {
                self.len = 0;
                std::mem::take(v)
            }
            _ => self.to_vec(),
        }
    }

    /// Where the value lies in what the guard holds.
    fn at(&self) -> Range<usize> {
        crate::tree::read::span(self.hold.bytes(), self)
    }
}

impl std::ops::Deref for Guard {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` was a slice of `hold`'s bytes when the guard was made,
        // and `hold` keeps those bytes alive and unchanged for as long as the guard lives
        // (see the `Send` impl); `into_vec` zeroes `len` before it takes an owned buffer.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        if let Lent::Pinned { shared, pin } = &mut self.hold {
            if let Some(pin) = pin.take() {
                shared.store.pool.release(pin);
            }
        }
    }
}

/// Another hold on the same bytes: a pinned frame is pinned again (or, if its block was
/// retired meanwhile, copied); shared images are shared.
impl Clone for Guard {
    fn clone(&self) -> Guard {
        let hold = match &self.hold {
            Lent::Pinned { shared, pin } => {
                let addr = pin.as_ref().expect("a live guard holds its pin").addr();
                match shared.store.pool.pin(addr) {
                    Some(again) => {
                        Lent::Pinned { shared: Arc::clone(shared), pin: Some(again.into_raw()) }
                    }
                    None => return Guard::owned(self.to_vec()),
                }
            }
            Lent::Image(image) => Lent::Image(Arc::clone(image)),
            Lent::InBlock(block) => Lent::InBlock(Arc::clone(block)),
            Lent::Owned(v) => return Guard::owned(v.clone()),
        };
        Guard::new(hold, self.at())
    }
}

impl AsRef<[u8]> for Guard {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::borrow::Borrow<[u8]> for Guard {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl From<Guard> for Vec<u8> {
    fn from(g: Guard) -> Vec<u8> {
        g.into_vec()
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for Guard {
    fn eq(&self, other: &Guard) -> bool {
        **self == **other
    }
}

impl Eq for Guard {}

impl PartialEq<[u8]> for Guard {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Guard {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Guard {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Guard {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Vec<u8>> for Guard {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Guard> for Vec<u8> {
    fn eq(&self, other: &Guard) -> bool {
        self[..] == **other
    }
}

impl PartialEq<Guard> for &[u8] {
    fn eq(&self, other: &Guard) -> bool {
        **self == **other
    }
}
