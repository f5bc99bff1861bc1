//! YCSB's zipfian generator (Gray et al., "Quickly generating billion-record synthetic
//! databases", SIGMOD 1994), with YCSB's scrambling so hot items spread over the key space.

use crate::rng::SplitMix64;

/// Ranks `0..n` drawn with probability proportional to `1 / (rank + 1)^theta`.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

/// `sum_{i=1..=n} 1 / i^theta`: O(n) once per data set (about 10 ms per million items).
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n >= 2, "zipfian over {n} items");
        assert!(theta > 0.0 && theta < 1.0, "zipfian theta {theta} outside (0, 1)");
        let zeta_n = zeta(n, theta);
        let zeta_2 = zeta(2, theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipfian { n, theta, alpha: 1.0 / (1.0 - theta), zeta_n, eta }
    }

    /// A rank in `0..n`; rank 0 is the most popular.
    pub fn next_rank(&self, rng: &mut SplitMix64) -> u64 {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }

    /// An item in `0..n`: the rank hashed (YCSB's `ScrambledZipfianGenerator`), so the hot
    /// items are not neighbours in key order.
    pub fn next_scrambled(&self, rng: &mut SplitMix64) -> u64 {
        let rank = self.next_rank(rng);
        SplitMix64::new(rank).next_u64() % self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_and_in_range() {
        let z = Zipfian::new(1000, 0.99);
        let mut rng = SplitMix64::new(3);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            let r = z.next_rank(&mut rng);
            assert!(r < 1000);
            counts[r as usize] += 1;
        }
        // Rank 0 takes about 1/zeta(1000) = 13% of draws; the tail's ranks almost none.
        assert!(counts[0] > 10_000 && counts[0] < 16_000, "{}", counts[0]);
        assert!(counts[0] > 50 * counts[999].max(1));
        assert!(z.next_scrambled(&mut rng) < 1000);
    }
}
