//! How Rust values become key and value bytes: [`KeyRange`] for the byte API's ranges, and
//! the codecs of typed trees ([`TreeDef`], [`Key`], [`Value`]).
//!
//! Typed keys sort as their values do, because every key encoding is order-preserving:
//! unsigned integers big-endian, signed ones big-endian with the sign bit flipped, strings
//! and byte strings as they are, fixed arrays as they are, and tuples element by element —
//! every element but the last in a self-delimiting form (fixed-width types as they are;
//! strings and byte strings with each `0x00` written `0x00 0xff` and a `0x00 0x00` end), so
//! that `("a", 2)` sorts before `("ab", 1)`. The bytes are the same as the byte API would
//! store for `n.to_be_bytes()` or `s.as_bytes()`: a typed tree and a byte handle on the same
//! tree agree.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use crate::{Error, Result};

type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A key range of the byte API: `..`, `a..b`, `a..`, `..b`, `a..=b`, `..=b` and
/// `(Bound, Bound)`, over any byte form (`&[u8]`, `b"…"`, `Vec<u8>`, `&str`, `String`).
/// Both ends of a Rust range have one type, so `b"a"..b"zz"` (arrays of two lengths) does
/// not compile; write `"a".."zz"` or `&b"a"[..]..&b"zz"[..]`.
pub trait KeyRange {
    /// The range's bounds as owned bytes.
    fn into_bounds(self) -> Bounds;
}

fn own<K: AsRef<[u8]>>(b: Bound<K>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl KeyRange for RangeFull {
    fn into_bounds(self) -> Bounds {
        (Bound::Unbounded, Bound::Unbounded)
    }
}

impl<K: AsRef<[u8]>> KeyRange for Range<K> {
    fn into_bounds(self) -> Bounds {
        (own(Bound::Included(self.start)), own(Bound::Excluded(self.end)))
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeFrom<K> {
    fn into_bounds(self) -> Bounds {
        (own(Bound::Included(self.start)), Bound::Unbounded)
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeTo<K> {
    fn into_bounds(self) -> Bounds {
        (Bound::Unbounded, own(Bound::Excluded(self.end)))
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeInclusive<K> {
    fn into_bounds(self) -> Bounds {
        let (start, end) = self.into_inner();
        (own(Bound::Included(start)), own(Bound::Included(end)))
    }
}

impl<K: AsRef<[u8]>> KeyRange for RangeToInclusive<K> {
    fn into_bounds(self) -> Bounds {
        (Bound::Unbounded, own(Bound::Included(self.end)))
    }
}

impl<K: AsRef<[u8]>> KeyRange for (Bound<K>, Bound<K>) {
    fn into_bounds(self) -> Bounds {
        (own(self.0), own(self.1))
    }
}

/// A key range of a typed tree with keys `K`: the same range forms as [`KeyRange`], over
/// anything that borrows as `K` (`5u64..10`, `"a".."m"` for `str` keys, `..`).
pub trait TypedBounds<K: Key + ?Sized> {
    /// The range's bounds as encoded keys.
    fn into_bounds(self) -> Bounds;
}

fn enc<K: Key + ?Sized, B: Borrow<K>>(b: Bound<B>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(encode(k.borrow())),
        Bound::Excluded(k) => Bound::Excluded(encode(k.borrow())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<K: Key + ?Sized> TypedBounds<K> for RangeFull {
    fn into_bounds(self) -> Bounds {
        (Bound::Unbounded, Bound::Unbounded)
    }
}

impl<K: Key + ?Sized, B: Borrow<K>> TypedBounds<K> for Range<B> {
    fn into_bounds(self) -> Bounds {
        (enc(Bound::Included(self.start)), enc(Bound::Excluded(self.end)))
    }
}

impl<K: Key + ?Sized, B: Borrow<K>> TypedBounds<K> for RangeFrom<B> {
    fn into_bounds(self) -> Bounds {
        (enc(Bound::Included(self.start)), Bound::Unbounded)
    }
}

impl<K: Key + ?Sized, B: Borrow<K>> TypedBounds<K> for RangeTo<B> {
    fn into_bounds(self) -> Bounds {
        (Bound::Unbounded, enc(Bound::Excluded(self.end)))
    }
}

impl<K: Key + ?Sized, B: Borrow<K>> TypedBounds<K> for RangeInclusive<B> {
    fn into_bounds(self) -> Bounds {
        let (start, end) = self.into_inner();
        (enc(Bound::Included(start)), enc(Bound::Included(end)))
    }
}

impl<K: Key + ?Sized, B: Borrow<K>> TypedBounds<K> for RangeToInclusive<B> {
    fn into_bounds(self) -> Bounds {
        (Bound::Unbounded, enc(Bound::Included(self.end)))
    }
}

impl<K: Key + ?Sized, B: Borrow<K>> TypedBounds<K> for (Bound<B>, Bound<B>) {
    fn into_bounds(self) -> Bounds {
        (enc(self.0), enc(self.1))
    }
}

/// A type stored as a typed tree's value (or key: see [`Key`]).
pub trait Value {
    /// What reads return (`String` for `str`, `Vec<u8>` for `[u8]`, the type itself else).
    type Owned;
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes bytes `encode` wrote; `Error::Decode` for bytes it cannot have written.
    fn decode(bytes: &[u8]) -> Result<Self::Owned>;
}

/// A type usable as a key: its encoding sorts as its values do (see the module comment).
pub trait Key: Value {
    /// Appends a self-delimiting, order-preserving encoding (a tuple element that is not the
    /// last).
    fn encode_nested(&self, out: &mut Vec<u8>);
    /// Decodes `encode_nested`'s bytes from the start of `bytes`: the value and the bytes
    /// it took.
    fn decode_nested(bytes: &[u8]) -> Result<(Self::Owned, usize)>;
}

/// `value`'s bytes.
pub(crate) fn encode<T: Value + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

fn bad(type_name: &'static str, reason: impl Into<String>) -> Error {
    Error::Decode { type_name, reason: reason.into() }
}

/// `Key` for a fixed-width integer: its nested form is its encoding, `size_of` bytes long.
macro_rules! fixed_width_key {
    ($t:ty) => {
        impl Key for $t {
            fn encode_nested(&self, out: &mut Vec<u8>) {
                self.encode(out);
            }
            fn decode_nested(bytes: &[u8]) -> Result<($t, usize)> {
                let n = size_of::<$t>();
                let head = bytes.get(..n).ok_or_else(|| bad(stringify!($t), "too short"))?;
                Ok((<$t>::decode(head)?, n))
            }
        }
    };
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Value for $t {
            type Owned = $t;
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<$t> {
                let arr = bytes.try_into().map_err(|_| {
                    bad(stringify!($t), format!("{} bytes, not {}", bytes.len(), size_of::<$t>()))
                })?;
                Ok(<$t>::from_be_bytes(arr))
            }
        }
        fixed_width_key!($t);
    )*};
}

unsigned!(u8, u16, u32, u64, u128);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        /// Big-endian with the sign bit flipped, so negative numbers sort first.
        impl Value for $t {
            type Owned = $t;
            fn encode(&self, out: &mut Vec<u8>) {
                (*self as $u ^ (1 << (<$u>::BITS - 1))).encode(out);
            }
            fn decode(bytes: &[u8]) -> Result<$t> {
                let u = <$u>::decode(bytes).map_err(|_| bad(stringify!($t), "wrong length"))?;
                Ok((u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
        fixed_width_key!($t);
    )*};
}

signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

/// The nested form of a byte string: `0x00` escaped as `0x00 0xff`, ended by `0x00 0x00`.
fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn unescape(type_name: &'static str, bytes: &[u8]) -> Result<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(0) => return Ok((out, i + 2)),
            Some(0xff) => {
                out.push(0);
                i += 2;
            }
            _ => return Err(bad(type_name, "bad escape in a tuple element")),
        }
    }
    Err(bad(type_name, "tuple element without its end mark"))
}

impl Value for [u8] {
    type Owned = Vec<u8>;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

impl Key for [u8] {
    fn encode_nested(&self, out: &mut Vec<u8>) {
        escape(self, out);
    }
    fn decode_nested(bytes: &[u8]) -> Result<(Vec<u8>, usize)> {
        unescape("[u8]", bytes)
    }
}

impl Value for str {
    type Owned = String;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| bad("str", e.to_string()))
    }
}

impl Key for str {
    fn encode_nested(&self, out: &mut Vec<u8>) {
        escape(self.as_bytes(), out);
    }
    fn decode_nested(bytes: &[u8]) -> Result<(String, usize)> {
        let (raw, used) = unescape("str", bytes)?;
        Ok((String::from_utf8(raw).map_err(|e| bad("str", e.to_string()))?, used))
    }
}

macro_rules! owned_as {
    ($($t:ty => $b:ty),*) => {$(
        impl Value for $t {
            type Owned = <$b as Value>::Owned;
            fn encode(&self, out: &mut Vec<u8>) {
                <$b as Value>::encode(self, out);
            }
            fn decode(bytes: &[u8]) -> Result<Self::Owned> {
                <$b as Value>::decode(bytes)
            }
        }
        impl Key for $t {
            fn encode_nested(&self, out: &mut Vec<u8>) {
                <$b as Key>::encode_nested(self, out);
            }
            fn decode_nested(bytes: &[u8]) -> Result<(Self::Owned, usize)> {
                <$b as Key>::decode_nested(bytes)
            }
        }
    )*};
}

owned_as!(String => str, Vec<u8> => [u8]);

impl<const N: usize> Value for [u8; N] {
    type Owned = [u8; N];
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<[u8; N]> {
        bytes.try_into().map_err(|_| bad("[u8; N]", format!("{} bytes, not {N}", bytes.len())))
    }
}

impl<const N: usize> Key for [u8; N] {
    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.encode(out);
    }
    fn decode_nested(bytes: &[u8]) -> Result<([u8; N], usize)> {
        let head = bytes.get(..N).ok_or_else(|| bad("[u8; N]", "too short"))?;
        Ok((Self::decode(head)?, N))
    }
}

/// The empty value, for trees that are sets (a secondary index, say).
impl Value for () {
    type Owned = ();
    fn encode(&self, _: &mut Vec<u8>) {}
    fn decode(bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(bad("()", format!("{} bytes, not 0", bytes.len())))
        }
    }
}

macro_rules! tuple {
    ($($name:ident)+ ; $last:ident) => {
        /// Element by element; all but the last in the nested form.
        #[allow(non_snake_case)]
        impl<$($name: Key,)+ $last: Key> Value for ($($name,)+ $last,) {
            type Owned = ($($name::Owned,)+ $last::Owned,);
            fn encode(&self, out: &mut Vec<u8>) {
                let ($($name,)+ $last,) = self;
                $($name.encode_nested(out);)+
                $last.encode(out);
            }
            fn decode(bytes: &[u8]) -> Result<Self::Owned> {
                let mut at = 0;
                $(
                    let ($name, used) = $name::decode_nested(&bytes[at..])?;
                    at += used;
                )+
                Ok(($($name,)+ $last::decode(&bytes[at..])?,))
            }
        }
        #[allow(non_snake_case)]
        impl<$($name: Key,)+ $last: Key> Key for ($($name,)+ $last,) {
            fn encode_nested(&self, out: &mut Vec<u8>) {
                let ($($name,)+ $last,) = self;
                $($name.encode_nested(out);)+
                $last.encode_nested(out);
            }
            fn decode_nested(bytes: &[u8]) -> Result<(Self::Owned, usize)> {
                let mut at = 0;
                $(
                    let ($name, used) = $name::decode_nested(&bytes[at..])?;
                    at += used;
                )+
                let (l, used) = $last::decode_nested(&bytes[at..])?;
                Ok((($($name,)+ l,), at + used))
            }
        }
    };
}

tuple!(A; B);
tuple!(A B; C);
tuple!(A B C; D);

/// A named tree with typed keys `K` and values `V`: a constant naming the tree and its
/// types, opened with [`crate::WriteTxn::open`] and [`crate::Snapshot::open`]. `K` is
/// any [`Key`] (integers, `str`, `String`, `[u8]`, `Vec<u8>`, `[u8; N]`, tuples of these),
/// `V` any [`Value`] (the same, and `()`).
///
/// ```
/// use arbor::TreeDef;
/// const USERS: TreeDef<u64, str> = TreeDef::new("users");
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = arbor::Db::create(dir.path().join("s"), arbor::Options::default())?;
/// let tx = db.begin_write()?;
/// let mut users = tx.open(USERS)?;
/// users.insert(10, "ada")?;
/// users.insert(9, "grace")?; // sorts before 10: integer keys are big-endian
/// assert_eq!(users.first()?, Some((9, "grace".to_string())));
/// tx.commit()?;
/// let users = db.snapshot()?.open(USERS)?.expect("committed");
/// assert_eq!(users.get(10)?.as_deref(), Some("ada"));
/// # Ok::<(), arbor::Error>(())
/// ```
pub struct TreeDef<K: Key + ?Sized, V: Value + ?Sized> {
    name: &'static str,
    types: PhantomData<fn(&K, &V)>,
}

impl<K: Key + ?Sized, V: Value + ?Sized> TreeDef<K, V> {
    /// A tree definition: the tree's name; `K` and `V` are its key and value types.
    pub const fn new(name: &'static str) -> TreeDef<K, V> {
        TreeDef { name, types: PhantomData }
    }

    /// The tree's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<K: Key + ?Sized, V: Value + ?Sized> Clone for TreeDef<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Key + ?Sized, V: Value + ?Sized> Copy for TreeDef<K, V> {}

impl<K: Key + ?Sized, V: Value + ?Sized> fmt::Debug for TreeDef<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeDef")
            .field("name", &self.name)
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<V>())
            .finish()
    }
}
