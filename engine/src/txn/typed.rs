//! Typed trees: handles that encode keys and values with the codecs of `codec.rs` around the
//! byte API (`WriteTree`, `Tree`), opened from a [`TreeDef`].

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

use crate::codec::{encode, Key, TreeDef, TypedBounds, Value};
use crate::txn::snapshot::{Snapshot, Tree};
use crate::txn::write::WriteTxn;
use crate::txn::write_tree::WriteTree;
use crate::Result;

/// A typed tree inside the write transaction, from [`WriteTxn::open`].
pub struct TypedWriteTree<'t, 'db, K: Key + ?Sized, V: Value + ?Sized> {
    tree: WriteTree<'t, 'db>,
    types: PhantomData<fn(&K, &V)>,
}

/// A typed tree as of a snapshot, from [`Snapshot::open`]. `Send + Sync`, like [`Tree`].
pub struct TypedTree<K: Key + ?Sized, V: Value + ?Sized> {
    tree: Tree,
    types: PhantomData<fn(&K, &V)>,
}

/// A typed key and value, as reads return them.
pub type TypedEntry<K, V> = (<K as Value>::Owned, <V as Value>::Owned);

/// Decodes the entries of a byte iterator ([`crate::WriteRange`] or [`crate::Range`]).
pub struct TypedIter<I, K: Key + ?Sized, V: Value + ?Sized> {
    inner: I,
    types: PhantomData<fn(&K, &V)>,
}

fn decode_entry<K: Key + ?Sized, V: Value + ?Sized, A: AsRef<[u8]>, B: AsRef<[u8]>>(
    e: (A, B),
) -> Result<TypedEntry<K, V>> {
    Ok((K::decode(e.0.as_ref())?, V::decode(e.1.as_ref())?))
}

fn decode_opt<V: Value + ?Sized, B: AsRef<[u8]>>(v: Option<B>) -> Result<Option<V::Owned>> {
    v.map(|b| V::decode(b.as_ref())).transpose()
}

impl<I, A, B, K, V> Iterator for TypedIter<I, K, V>
where
    I: Iterator<Item = Result<(A, B)>>,
    A: AsRef<[u8]>,
    B: AsRef<[u8]>,
    K: Key + ?Sized,
    V: Value + ?Sized,
{
    type Item = Result<TypedEntry<K, V>>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.inner.next()?.and_then(decode_entry::<K, V, A, B>))
    }
}

impl<I, A, B, K, V> DoubleEndedIterator for TypedIter<I, K, V>
where
    I: DoubleEndedIterator<Item = Result<(A, B)>>,
    A: AsRef<[u8]>,
    B: AsRef<[u8]>,
    K: Key + ?Sized,
    V: Value + ?Sized,
{
    fn next_back(&mut self) -> Option<Self::Item> {
        Some(self.inner.next_back()?.and_then(decode_entry::<K, V, A, B>))
    }
}

impl<I: fmt::Debug, K: Key + ?Sized, V: Value + ?Sized> fmt::Debug for TypedIter<I, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedIter").field("inner", &self.inner).finish()
    }
}

fn typed<I, K: Key + ?Sized, V: Value + ?Sized>(inner: I) -> TypedIter<I, K, V> {
    TypedIter { inner, types: PhantomData }
}

/// The read methods both typed handles share, over their byte handle `self.tree`: `$iter` is
/// its iterator type, `$range_doc` the documentation of `range`.
macro_rules! typed_reads {
    ($iter:ty, $range_doc:literal) => {
        /// The value of `key`, or `None`.
        pub fn get(&self, key: impl Borrow<K>) -> Result<Option<V::Owned>> {
            decode_opt::<V, _>(self.tree.get(encode(key.borrow()))?)
        }

        /// Whether `key` is present.
        pub fn contains_key(&self, key: impl Borrow<K>) -> Result<bool> {
            self.tree.contains_key(encode(key.borrow()))
        }

        #[doc = $range_doc]
        pub fn range(&self, range: impl TypedBounds<K>) -> Result<TypedIter<$iter, K, V>> {
            Ok(typed(self.tree.range(range.into_bounds())?))
        }

        /// Iterates the whole tree in key order.
        pub fn iter(&self) -> Result<TypedIter<$iter, K, V>> {
            Ok(typed(self.tree.iter()?))
        }

        /// Number of entries.
        pub fn len(&self) -> Result<u64> {
            self.tree.len()
        }

        /// Whether the tree has no entry.
        pub fn is_empty(&self) -> Result<bool> {
            self.tree.is_empty()
        }

        /// The entry with the smallest key, or `None` for an empty tree.
        pub fn first(&self) -> Result<Option<TypedEntry<K, V>>> {
            self.tree.first()?.map(decode_entry::<K, V, _, _>).transpose()
        }

        /// The entry with the largest key, or `None` for an empty tree.
        pub fn last(&self) -> Result<Option<TypedEntry<K, V>>> {
            self.tree.last()?.map(decode_entry::<K, V, _, _>).transpose()
        }
    };
}

impl<'db> WriteTxn<'db> {
    /// The typed tree `def` names, created (empty) if it does not exist. Like
    /// [`WriteTxn::tree`], from `&self`.
    pub fn open<K: Key + ?Sized, V: Value + ?Sized>(
        &self,
        def: TreeDef<K, V>,
    ) -> Result<TypedWriteTree<'_, 'db, K, V>> {
        Ok(TypedWriteTree { tree: self.tree(def.name())?, types: PhantomData })
    }
}

impl Snapshot {
    /// The typed tree `def` names as of this snapshot, or `None` if it did not exist.
    pub fn open<K: Key + ?Sized, V: Value + ?Sized>(
        &self,
        def: TreeDef<K, V>,
    ) -> Result<Option<TypedTree<K, V>>> {
        Ok(self.tree(def.name())?.map(|tree| TypedTree { tree, types: PhantomData }))
    }
}

impl<'t, 'db, K: Key + ?Sized, V: Value + ?Sized> TypedWriteTree<'t, 'db, K, V> {
    /// Inserts or replaces; returns the old value.
    pub fn insert(
        &mut self,
        key: impl Borrow<K>,
        value: impl Borrow<V>,
    ) -> Result<Option<V::Owned>> {
        decode_opt::<V, _>(self.tree.insert(encode(key.borrow()), encode(value.borrow()))?)
    }

    /// Removes a key; returns its value.
    pub fn remove(&mut self, key: impl Borrow<K>) -> Result<Option<V::Owned>> {
        decode_opt::<V, _>(self.tree.remove(encode(key.borrow()))?)
    }

    /// Removes every key in `range` (`5u64..10`, `"a"..`, `..`); returns how many it removed.
    /// Whole subtrees inside the range are freed at once; see [`WriteTree::remove_range`].
    pub fn remove_range(&mut self, range: impl TypedBounds<K>) -> Result<u64> {
        self.tree.remove_range(range.into_bounds())
    }

    typed_reads!(
        crate::WriteRange<'t, 'db>,
        "Iterates a key range in key order (`5u64..10`, `\"a\"..`, `..`); see \
         [`crate::WriteRange`] for changes made while it is open."
    );

    /// Removes and returns the entry with the smallest key.
    pub fn pop_first(&mut self) -> Result<Option<TypedEntry<K, V>>> {
        self.tree.pop_first()?.map(decode_entry::<K, V, _, _>).transpose()
    }

    /// Removes and returns the entry with the largest key.
    pub fn pop_last(&mut self) -> Result<Option<TypedEntry<K, V>>> {
        self.tree.pop_last()?.map(decode_entry::<K, V, _, _>).transpose()
    }

    /// Keeps the entries `keep` accepts; returns how many it removed. An entry that does not
    /// decode ends it with `Error::Decode` (entries removed before stay removed).
    pub fn retain(&mut self, mut keep: impl FnMut(&K::Owned, &V::Owned) -> bool) -> Result<u64> {
        let mut failed = None;
        let removed = self.tree.retain(|k, v| match (K::decode(k), V::decode(v)) {
            (Ok(k), Ok(v)) => keep(&k, &v),
            (Err(e), _) | (_, Err(e)) => {
                failed.get_or_insert(e);
                true
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// The byte handle of the same tree (prefix scans, `extract_if`, compare-and-swap).
    pub fn bytes(&mut self) -> &mut WriteTree<'t, 'db> {
        &mut self.tree
    }
}

impl<K: Key + ?Sized, V: Value + ?Sized> TypedTree<K, V> {
    typed_reads!(
        crate::Range,
        "Iterates a key range in key order; `Send`, so it can move to another thread."
    );

    /// The byte handle of the same tree.
    pub fn bytes(&self) -> &Tree {
        &self.tree
    }
}

impl<K: Key + ?Sized, V: Value + ?Sized> Clone for TypedTree<K, V> {
    fn clone(&self) -> Self {
        TypedTree { tree: self.tree.clone(), types: PhantomData }
    }
}

impl<K: Key + ?Sized, V: Value + ?Sized> fmt::Debug for TypedWriteTree<'_, '_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedWriteTree").field("tree", &self.tree).finish()
    }
}

impl<K: Key + ?Sized, V: Value + ?Sized> fmt::Debug for TypedTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedTree").field("tree", &self.tree).finish()
    }
}
