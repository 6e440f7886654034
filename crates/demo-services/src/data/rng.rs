//! A tiny seeded generator, kept in-tree on purpose: the demo data must be the
//! same bytes for the same seed on every machine and for every future version
//! of our dependencies, which a general-purpose RNG crate does not promise.

use uuid::Uuid;

/// SplitMix64: small, fast, and statistically good enough for demo data.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator for one entity of one domain (`"user"`, 42), independent of
    /// every other entity, so adding a field to products never changes users.
    pub fn derive(seed: u64, domain: &str, index: u64) -> Self {
        // FNV-1a over the domain name keeps the derivation dependency-free.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in domain.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = SeededRng(seed ^ h ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Discard one output so nearby indexes do not start correlated.
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }

    /// A version-4 UUID drawn from this generator.
    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// `n` distinct indexes below `len` (or all of them when `n >= len`).
    pub fn sample_indexes(&mut self, len: usize, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n.min(len));
        while out.len() < n.min(len) {
            let i = self.range(0, len as u64 - 1) as usize;
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_domains_are_independent() {
        let a: Vec<u64> = (0..8)
            .map(|_| SeededRng::derive(7, "user", 1).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            SeededRng::derive(7, "user", 1).next_u64(),
            SeededRng::derive(7, "order", 1).next_u64()
        );
        assert_ne!(
            SeededRng::derive(7, "user", 1).next_u64(),
            SeededRng::derive(8, "user", 1).next_u64()
        );
    }

    #[test]
    fn range_stays_in_bounds_and_uuid_is_v4() {
        let mut r = SeededRng::derive(1, "t", 0);
        for _ in 0..10_000 {
            let v = r.range(3, 9);
            assert!((3..=9).contains(&v));
        }
        assert_eq!(r.uuid().get_version_num(), 4);
        let s = r.sample_indexes(10, 4);
        assert_eq!(s.len(), 4);
        let mut d = s.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 4);
    }
}
