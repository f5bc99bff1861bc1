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
/// `Db` handle, the store is closed (flushed, background checkpoints stopped), but its
/// device and lock are released only when the guard drops — drop guards (or copy them
/// with `to_vec`) before reopening the store elsewhere.
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
pub struct Guard(Lent);

enum Lent {
    /// In a pinned frame of the pool of `shared`'s store (which the guard keeps alive).
    Pinned { shared: Arc<Shared>, pin: Option<RawPin>, at: Range<usize> },
    /// In an immutable block image.
    Image { image: Arc<AlignedBuf>, at: Range<usize> },
    /// In a block another guard holds (a range's leaf: its items share one hold).
    InBlock { block: Arc<Guard>, at: Range<usize> },
    /// A buffer of its own (an overflow value).
    Owned(Vec<u8>),
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
    /// The value at `at` of `block`, which was read through `shared`'s store.
    pub(crate) fn lend(shared: Arc<Shared>, block: Detached, at: Range<usize>) -> Guard {
        match block {
            Detached::Pinned(pin) => {
                let len = shared.store.pool.raw_bytes(&pin).len();
                assert!(at.end <= len, "value {at:?} outside its block of {len}");
                Guard(Lent::Pinned { shared, pin: Some(pin), at })
            }
            Detached::Image(image) => Guard::in_image(image, at),
        }
    }

    /// The bytes at `at` of an immutable image.
    pub(crate) fn in_image(image: Arc<AlignedBuf>, at: Range<usize>) -> Guard {
        assert!(at.end <= image.len(), "value {at:?} outside a block of {}", image.len());
        Guard(Lent::Image { image, at })
    }

    /// The bytes at `at` of the block `block` holds.
    pub(crate) fn within(block: &Arc<Guard>, at: Range<usize>) -> Guard {
        assert!(at.end <= block.len(), "bytes {at:?} outside a block of {}", block.len());
        Guard(Lent::InBlock { block: Arc::clone(block), at })
    }

    /// A value in a buffer of its own.
    pub(crate) fn owned(value: Vec<u8>) -> Guard {
        Guard(Lent::Owned(value))
    }

    /// The value as an owned vector (no copy if it already owns one).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.0 {
            Lent::Owned(v) => std::mem::take(v),
            _ => self.to_vec(),
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Lent::Pinned { shared, pin, at } => {
                let pin = pin.as_ref().expect("a live guard holds its pin");
                &shared.store.pool.raw_bytes(pin)[at.clone()]
            }
            Lent::Image { image, at } => &image[at.clone()],
            Lent::InBlock { block, at } => &block[at.clone()],
            Lent::Owned(v) => v,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Lent::Pinned { shared, pin, .. } = &mut self.0 {
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
        match &self.0 {
            Lent::Pinned { shared, pin, at } => {
                let addr = pin.as_ref().expect("a live guard holds its pin").addr();
                match shared.store.pool.pin(addr) {
                    Some(again) => Guard(Lent::Pinned {
                        shared: Arc::clone(shared),
                        pin: Some(again.into_raw()),
                        at: at.clone(),
                    }),
                    None => Guard::owned(self.to_vec()),
                }
            }
            Lent::Image { image, at } => {
                Guard(Lent::Image { image: Arc::clone(image), at: at.clone() })
            }
            Lent::InBlock { block, at } => {
                Guard(Lent::InBlock { block: Arc::clone(block), at: at.clone() })
            }
            Lent::Owned(v) => Guard::owned(v.clone()),
        }
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
