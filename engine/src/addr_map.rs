//! `AddrMap`: a `HashMap` keyed by block address with a multiplicative hash instead of
//! SipHash. Addresses are not attacker-chosen keys (the engine allocates them), and the maps
//! sit on every block access (cache, writer, readers' table), where SipHash showed up at
//! ~8% of a read-heavy profile.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; hashbrown uses the top bits for its control bytes and the low
        // bits for the bucket, so fold the high half down as well.
        let h = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

pub(crate) type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;
