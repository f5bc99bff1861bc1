//! Little-endian integers as byte arrays, so on-disk structs have alignment 1, no padding and
//! no host-endian fields (zerocopy's `byteorder.rs`, gimli's `U32Bytes`).

use bytemuck::{Pod, Zeroable};
use core::fmt;

macro_rules! le_int {
    ($name:ident, $int:ty, $bytes:literal) => {
        #[doc = concat!("A little-endian `", stringify!($int), "` stored as `[u8; ", $bytes, "]`.")]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
        #[repr(transparent)]
        pub struct $name([u8; $bytes]);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self([0; $bytes]);

            /// Encodes `value`.
            pub const fn new(value: $int) -> Self {
                Self(value.to_le_bytes())
            }

            /// Decodes the value.
            pub const fn get(self) -> $int {
                <$int>::from_le_bytes(self.0)
            }

            /// Replaces the value.
            pub fn set(&mut self, value: $int) {
                self.0 = value.to_le_bytes();
            }

            /// The raw bytes.
            pub const fn to_bytes(self) -> [u8; $bytes] {
                self.0
            }
        }

        impl From<$int> for $name {
            fn from(value: $int) -> Self {
                Self::new(value)
            }
        }

        impl From<$name> for $int {
            fn from(value: $name) -> Self {
                value.get()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.get(), f)
            }
        }
    };
}

le_int!(U16Le, u16, 2);
le_int!(U32Le, u32, 4);
le_int!(U64Le, u64, 8);

const _: () = assert!(core::mem::size_of::<U16Le>() == 2 && core::mem::align_of::<U16Le>() == 1);
const _: () = assert!(core::mem::size_of::<U32Le>() == 4 && core::mem::align_of::<U32Le>() == 1);
const _: () = assert!(core::mem::size_of::<U64Le>() == 8 && core::mem::align_of::<U64Le>() == 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_byte_order() {
        let mut v = U32Le::new(0x0102_0304);
        assert_eq!(bytemuck::bytes_of(&v), &[4, 3, 2, 1]);
        assert_eq!(v.get(), 0x0102_0304);
        v.set(7);
        assert_eq!(v.get(), 7);
        assert_eq!(U64Le::new(u64::MAX).get(), u64::MAX);
        assert_eq!(bytemuck::bytes_of(&U16Le::new(0x0a0b)), &[0x0b, 0x0a]);
        assert_eq!(U16Le::ZERO.get(), 0);
        assert_eq!(format!("{:?}", U64Le::new(42)), "42");
    }
}
