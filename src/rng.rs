//! The per-worker random numbers behind `--status-mix`, `--fault` and `--delay`:
//! a small, fast generator with no shared state, seeded from `--seed` and the
//! worker index so that a run can be reproduced.

/// SplitMix64: spreads a seed (and a worker index) into a well-mixed state.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// xorshift64*: one multiply and three shifts per draw, never zero.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The generator of worker `worker` for the run seeded with `seed`.
    pub(crate) fn for_worker(seed: u64, worker: usize) -> Rng {
        let s = splitmix64(seed ^ splitmix64(worker as u64 + 1));
        Rng(if s == 0 { 0x853C_49E6_748F_EA9B } else { s })
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform number in `[0, 1)`, with 53 bits.
    #[inline]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A seed from the clock, for runs without `--seed` (it is logged).
pub(crate) fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix64(nanos ^ u64::from(std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_different_reproducible_streams() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_worker(7, 0).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed, same stream");
        let mut w0 = Rng::for_worker(7, 0);
        let mut w1 = Rng::for_worker(7, 1);
        assert_ne!(w0.next_u64(), w1.next_u64());
        let mut r = Rng::for_worker(1, 0);
        let mean = (0..100_000).map(|_| r.unit()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
