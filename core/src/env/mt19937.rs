//! numpy's legacy `np.random.RandomState` (the MT19937 Mersenne Twister), exact, `no_std`.
//!
//! MinAtar draws all its randomness from a `RandomState`, so replaying its games bit for bit
//! needs this generator, not [`Pcg64`](super::Pcg64).
//!
//! # Seeding (numpy `_mt19937.pyx` `_legacy_seeding`, `mt19937.c`)
//!
//! * `RandomState(s)`, `0 ≤ s < 2³²` (`init_genrand`): `key[0] = s`,
//!   `key[i] = 1812433253·(key[i−1] ^ (key[i−1] >> 30)) + i` (mod 2³²), 624 words.
//! * `RandomState([w0, w1, …])` (`init_by_array`, Matsumoto and Nishimura's 2002 reference):
//!   `init_genrand(19650218)`, then two mixing passes over the key words, then `key[0] = 2³¹`.
//!
//! # Drawing
//!
//! * Every 624 outputs the whole key is regenerated (the "twist": `y` = upper bit of `key[i]`
//!   and lower 31 bits of `key[i+1]`; `key[i] = key[i+397] ^ (y >> 1) ^ (0x9908B0DF if y odd)`),
//!   then each output is `key[pos]` tempered: `y ^= y >> 11; y ^= (y << 7) & 0x9D2C5680;
//!   y ^= (y << 15) & 0xEFC60000; y ^= y >> 18`.
//! * `rand()` / `random_sample()`: `(a·2²⁶ + b)·2⁻⁵³` with `a = next_u32 >> 5`,
//!   `b = next_u32 >> 6` (two draws, in that order), in `[0, 1)`.
//! * `randint(n)` for `n ≤ 2³²` (the masked rejection sampler numpy keeps for `RandomState`):
//!   draw `next_u32 & mask` (mask = the smallest `2ᵏ − 1 ≥ n − 1`) until it is `< n`.

/// Number of 32-bit words of state.
const N: usize = 624;
/// The twist's middle offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_B0DF;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7FFF_FFFF;

/// numpy's `RandomState` generator: `Mt19937::from_seed(s)` produces exactly the stream of
/// `np.random.RandomState(s)`.
///
/// 2.5 KB of state (624 words), all inline: no allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mt19937 {
    key: [u32; N],
    /// Index of the next word to temper; `N` means "twist first".
    pos: usize,
}

impl Mt19937 {
    /// `np.random.RandomState(seed)` (numpy's `init_genrand`). numpy accepts only seeds below
    /// 2³², which is why the argument is a `u32`.
    pub fn from_seed(seed: u32) -> Self {
        let mut key = [0u32; N];
        let mut s = seed;
        for (i, k) in key.iter_mut().enumerate() {
            *k = s;
            // The word for i + 1; the last value computed is never stored.
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(i as u32 + 1);
        }
        Mt19937 { key, pos: N }
    }

    /// `np.random.RandomState(init_key)` for a non-empty list of 32-bit words (numpy's
    /// `init_by_array`). An empty key is treated as `[0]` (numpy rejects it).
    pub fn from_key(init_key: &[u32]) -> Self {
        let init_key: &[u32] = if init_key.is_empty() { &[0] } else { init_key };
        let mut g = Mt19937::from_seed(19_650_218);
        let mt = &mut g.key;
        let len = init_key.len();
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(len) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(init_key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= len {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        // The reference sets the top bit so that the state can never be all zeros.
        mt[0] = UPPER_MASK;
        g.pos = N;
        g
    }

    /// Regenerate all 624 words (numpy's `mt19937_gen`).
    fn twist(&mut self) {
        let mt = &mut self.key;
        for i in 0..N {
            let y = (mt[i] & UPPER_MASK) | (mt[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[i] = mt[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// Next 32-bit output (numpy `random_raw()` / `next_uint32`).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C_5680;
        y ^= (y << 15) & 0xEFC6_0000;
        y ^ (y >> 18)
    }

    /// `RandomState.rand()` / `random_sample()`: 53 random bits from two draws, in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// `RandomState.randint(n)` for `1 ≤ n ≤ 2³²` (numpy's masked rejection sampling, so the
    /// number of draws consumed matches too). `n = 0` returns 0 without drawing (numpy raises).
    #[inline]
    pub fn randint(&mut self, n: u64) -> u32 {
        if n <= 1 {
            return 0;
        }
        let max = (n - 1).min(u64::from(u32::MAX)) as u32;
        // Smallest all-ones mask covering `max`.
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_stream_matches_numpy() {
        // python -c "import numpy as np; mt=np.random.MT19937(); mt._legacy_seeding(0);
        //   w=mt.random_raw(1000); print([hex(int(x)) for x in w[[0,1,2,623,624,999]]])"
        // (numpy 2.4.6; `_legacy_seeding` is what `RandomState(0)` calls)
        let mut g = Mt19937::from_seed(0);
        let mut w = [0u32; 1000];
        for v in w.iter_mut() {
            *v = g.next_u32();
        }
        assert_eq!(
            [w[0], w[1], w[2], w[623], w[624], w[999]],
            [0x8c7f0aac, 0x97c4aa2f, 0xb716a675, 0xe2031ce4, 0x145b8f3a, 0xb5676398]
        );
        // python -c "import numpy as np; r=np.random.RandomState(4294967295);
        //   print([hex(int(x)) for x in r._bit_generator.random_raw(2)])"
        let mut g = Mt19937::from_seed(u32::MAX);
        assert_eq!([g.next_u32(), g.next_u32()], [0x18fe69a3, 0x1c924122]);
    }

    #[test]
    fn key_seeding_matches_numpy() {
        // python -c "import numpy as np; r=np.random.RandomState([7,1]);
        //   print([hex(int(x)) for x in r._bit_generator.random_raw(3)])"
        let mut g = Mt19937::from_key(&[7, 1]);
        assert_eq!(
            [g.next_u32(), g.next_u32(), g.next_u32()],
            [0x39baf354, 0xc3f83601, 0x5bcd45f8]
        );
        // python -c "import numpy as np; r=np.random.RandomState([7,1]); print(r.randint(2), r.rand().hex())"
        let mut g = Mt19937::from_key(&[7, 1]);
        assert_eq!(g.randint(2), 0);
        assert_eq!(g.next_f64(), f64::from_bits(0x3FE87F06C16F3517)); // 0x1.87f06c16f3517p-1
    }

    #[test]
    fn rand_and_randint_match_numpy() {
        // python -c "import numpy as np; r=np.random.RandomState(42); print([r.rand().hex() for _ in range(3)])"
        let mut g = Mt19937::from_seed(42);
        for want in [
            0x3FD7F8771E5F51EC_u64, // 0x1.7f8771e5f51ecp-2
            0x3FEE6C4068BBD654,     // 0x1.e6c4068bbd654p-1
            0x3FE76C7E8F1E6751,     // 0x1.76c7e8f1e6751p-1
        ] {
            assert_eq!(g.next_f64().to_bits(), want);
        }
        // python -c "import numpy as np; r=np.random.RandomState(5); print(r.rand().hex(), r.randint(2), r.rand().hex())"
        let mut g = Mt19937::from_seed(5);
        assert_eq!(g.next_f64(), f64::from_bits(0x3FCC6A45B0E2048C)); // 0x1.c6a45b0e2048cp-3
        assert_eq!(g.randint(2), 1);
        assert_eq!(g.next_f64(), f64::from_bits(0x3FEA9A3CD4D3AE2F)); // 0x1.a9a3cd4d3ae2fp-1
    }

    #[test]
    fn randint_rejects_like_numpy() {
        // python -c "import numpy as np; r=np.random.RandomState(3); print(r.randint(6, size=20).tolist(),
        //   r.randint(2**32, dtype=np.uint64))"
        // The 17th and 18th raw draws are 7 and 6 after masking (`random_raw(22)` & 7) and are
        // rejected: the 20 values and the final 2³² draw (the 23rd word) match only if both
        // were skipped.
        let mut g = Mt19937::from_seed(3);
        let got: [u32; 20] = core::array::from_fn(|_| g.randint(6));
        assert_eq!(
            got,
            [2, 0, 1, 3, 0, 0, 0, 5, 5, 3, 2, 3, 1, 1, 2, 5, 0, 4, 4, 5]
        );
        assert_eq!(g.randint(1 << 32), 1_962_083_751);
    }

    #[test]
    fn f64_in_unit_interval() {
        let mut g = Mt19937::from_seed(1);
        for _ in 0..10_000 {
            let u = g.next_f64();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
