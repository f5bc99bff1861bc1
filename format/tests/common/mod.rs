//! Shared test helpers: a seeded RNG (no dependency, reproducible from the printed seed).
#![allow(dead_code)]

/// SplitMix64: small, fast, and good enough to drive randomized tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

/// The base seed: `ARBOR_TEST_SEED` if set (to reproduce a failure), else a fixed value.
pub fn base_seed(default: u64) -> u64 {
    std::env::var("ARBOR_TEST_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(default)
}

/// Runs `case(seed)`; on panic, reports the seed that reproduces it.
pub fn with_seed(name: &str, seed: u64, case: impl FnOnce(u64) + std::panic::UnwindSafe) {
    if std::panic::catch_unwind(move || case(seed)).is_err() {
        panic!("{name} failed; reproduce with ARBOR_TEST_SEED={seed:#x}");
    }
}
