//! numpy-exact seeding: `np.random.default_rng(seed)`, i.e.
//! `Generator(PCG64(SeedSequence(seed)))`, which is what Gymnasium's `reset(seed=…)` builds.
//!
//! # `SeedSequence(seed)` (numpy `bit_generator.pyx`)
//!
//! * The seed becomes 32-bit words, least significant first (`0` is the single word `[0]`).
//! * Entropy pool of 4 `u32` words. With `hashmix(v, h)`: `v ^= h; h *= 0x931E8875; v *= h;
//!   v ^= v >> 16` (all mod 2³², `h` starts at `0x43B0D7E5` and carries over between calls), the
//!   pool is `pool[i] = hashmix(word[i] or 0)`, then for every ordered pair `src ≠ dst`
//!   `pool[dst] = mix(pool[dst], hashmix(pool[src]))` with
//!   `mix(x, y) = r ^ (r >> 16)`, `r = 0xCA01F9DD·x − 0x4973F715·y`.
//! * `generate_state(4, uint64)` draws 8 words `w[i] = t ^ (t >> 16)`,
//!   `t = (pool[i mod 4] ^ h)·h'` where `h' = h·0x58F38DED` (h starts at `0x8B51F9DD`, `h ← h'`),
//!   and pairs them little-endian into 4 `u64`s `v[0..4]`.
//!
//! # `PCG64` (numpy `pcg64.h`, the PCG-XSL-RR 128/64 generator)
//!
//! * Seeding (`pcg64_set_seed`): `initstate = v[0]·2⁶⁴ + v[1]`, `initseq = v[2]·2⁶⁴ + v[3]`;
//!   `inc = 2·initseq + 1`, `state = 0`, step, `state += initstate`, step.
//! * Step: `state = state·0x2360ED051FC65DA44385DF649FCCF645 + inc (mod 2¹²⁸)`.
//! * Output (after stepping): `rotr64(hi ^ lo, hi >> 58)`.
//! * `next_double`: `(next_u64 >> 11)·2⁻⁵³`; `uniform(lo, hi) = lo + (hi − lo)·next_double`.
//! * `next_uint32` hands out the low half of a fresh `u64` and buffers the high half for the next
//!   call (only 32-bit draws use the buffer; 64-bit and double draws never touch it).

/// The PCG64 multiplier (`PCG_DEFAULT_MULTIPLIER_128`).
const MULTIPLIER: u128 = 0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645;

const INIT_A: u32 = 0x43B0_D7E5;
const MULT_A: u32 = 0x931E_8875;
const INIT_B: u32 = 0x8B51_F9DD;
const MULT_B: u32 = 0x58F3_8DED;
const MIX_MULT_L: u32 = 0xCA01_F9DD;
const MIX_MULT_R: u32 = 0x4973_F715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// numpy's `hashmix`: hashes `value` with the running constant `hash_const` (updated in place).
#[inline]
fn hashmix(mut value: u32, hash_const: &mut u32) -> u32 {
    value ^= *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

/// numpy's `mix`.
#[inline]
fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

/// `SeedSequence(seed).generate_state(4, np.uint64)`.
fn seed_sequence_state(seed: u64) -> [u64; 4] {
    // `_int_to_uint32_array`: least significant word first; 0 → [0].
    let lo = seed as u32;
    let hi = (seed >> 32) as u32;
    let entropy: [u32; 2] = [lo, hi];
    let n_entropy = if hi != 0 { 2 } else { 1 };

    // mix_entropy
    let mut pool = [0u32; POOL_SIZE];
    let mut hc = INIT_A;
    for (i, slot) in pool.iter_mut().enumerate() {
        let v = if i < n_entropy { entropy[i] } else { 0 };
        *slot = hashmix(v, &mut hc);
    }
    for src in 0..POOL_SIZE {
        for dst in 0..POOL_SIZE {
            if src != dst {
                let h = hashmix(pool[src], &mut hc);
                pool[dst] = mix(pool[dst], h);
            }
        }
    }
    // (entropy never exceeds the pool size for a u64 seed: no third loop.)

    // generate_state(8 words of u32), viewed as 4 little-endian u64.
    let mut hc = INIT_B;
    let mut words = [0u32; 8];
    for (i, w) in words.iter_mut().enumerate() {
        let mut d = pool[i % POOL_SIZE];
        d ^= hc;
        hc = hc.wrapping_mul(MULT_B);
        d = d.wrapping_mul(hc);
        *w = d ^ (d >> XSHIFT);
    }
    let mut out = [0u64; 4];
    for (k, o) in out.iter_mut().enumerate() {
        *o = u64::from(words[2 * k]) | (u64::from(words[2 * k + 1]) << 32);
    }
    out
}

/// numpy's `PCG64` bit generator together with the `Generator` methods the environments use.
///
/// `Pcg64::from_seed(s)` produces exactly the stream of `np.random.default_rng(s)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
    /// numpy's `has_uint32` / `uinteger`: the buffered high half for [`Pcg64::next_u32`].
    buffered_u32: Option<u32>,
}

impl Pcg64 {
    /// `np.random.default_rng(seed)` (= Gymnasium's `np_random(seed)`).
    pub fn from_seed(seed: u64) -> Self {
        let v = seed_sequence_state(seed);
        let initstate = (u128::from(v[0]) << 64) | u128::from(v[1]);
        let initseq = (u128::from(v[2]) << 64) | u128::from(v[3]);
        Self::from_state_seq(initstate, initseq)
    }

    /// numpy's `pcg64_set_seed(initstate, initseq)` (the raw PCG seeding, after `SeedSequence`).
    pub fn from_state_seq(initstate: u128, initseq: u128) -> Self {
        let mut g = Pcg64 {
            state: 0,
            inc: (initseq << 1) | 1,
            buffered_u32: None,
        };
        g.step();
        g.state = g.state.wrapping_add(initstate);
        g.step();
        g
    }

    /// The raw 128-bit `(state, inc)`, as numpy's `bit_generator.state["state"]` reports them.
    pub fn raw_state(&self) -> (u128, u128) {
        (self.state, self.inc)
    }

    /// Restore a generator from [`Pcg64::raw_state`] (for checkpoints; a buffered 32-bit half
    /// is not carried over, so the next `next_u32` draws a fresh 64-bit word).
    pub fn from_raw_state(state: u128, inc: u128) -> Self {
        Pcg64 {
            state,
            inc,
            buffered_u32: None,
        }
    }

    #[inline(always)]
    fn step(&mut self) {
        self.state = self.state.wrapping_mul(MULTIPLIER).wrapping_add(self.inc);
    }

    /// Next 64-bit output (numpy `random_raw()` / `next_uint64`): step, then XSL-RR.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let hi = (self.state >> 64) as u64;
        let lo = self.state as u64;
        (hi ^ lo).rotate_right((hi >> 58) as u32)
    }

    /// Next 32-bit output exactly as numpy's `pcg64_next32`: the low half of a fresh `u64`, with
    /// the high half buffered and returned by the following call.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if let Some(v) = self.buffered_u32.take() {
            return v;
        }
        let next = self.next_u64();
        self.buffered_u32 = Some((next >> 32) as u32);
        next as u32
    }

    /// numpy `next_double` / `Generator.random()`: `(next_u64 >> 11)·2⁻⁵³`, in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        const TWO_POW_MINUS_53: f64 = 1.0 / 9_007_199_254_740_992.0;
        (self.next_u64() >> 11) as f64 * TWO_POW_MINUS_53
    }

    /// numpy `Generator.uniform(lo, hi)`: `lo + (hi − lo)·next_double` (in that order of
    /// operations, `hi − lo` rounded first).
    #[inline]
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let scale = hi - lo;
        lo + scale * self.next_f64()
    }
}

impl rand_core::RngCore for Pcg64 {
    /// numpy's buffered `next_uint32` (see [`Pcg64::next_u32`]).
    fn next_u32(&mut self) -> u32 {
        Pcg64::next_u32(self)
    }

    /// numpy's `next_uint64`.
    fn next_u64(&mut self) -> u64 {
        Pcg64::next_u64(self)
    }

    /// numpy's `Generator.bytes(len)`: successive `next_uint32` values written little-endian,
    /// the last one cut to length.
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(4) {
            let v = Pcg64::next_u32(self).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

impl rand_core::SeedableRng for Pcg64 {
    /// The seed as a little-endian `u64`.
    type Seed = [u8; 8];

    /// `np.random.default_rng(u64::from_le_bytes(seed))`.
    fn from_seed(seed: Self::Seed) -> Self {
        Pcg64::from_seed(u64::from_le_bytes(seed))
    }

    /// `np.random.default_rng(state)` (overrides `rand_core`'s default expansion so that both
    /// constructors agree with numpy).
    fn seed_from_u64(state: u64) -> Self {
        Pcg64::from_seed(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn seed_state_matches_numpy() {
        // python -c "import numpy as np; [print(s, hex(np.random.PCG64(s).state['state']['state']), hex(np.random.PCG64(s).state['state']['inc'])) for s in (0, 42, 2**32+7, 2**64-1)]"
        // (numpy 2.4.6)
        let cases: [(u64, u128, u128); 4] = [
            (
                0,
                0x1aa1b5345996452d09585eb7a69561e3,
                0x418ddadb3af71a82588133bc447873a9,
            ),
            (
                42,
                0xcea44f6798798f2aacbc7c9d68860ac8,
                0xfa505436c9a8416e66caf2e28d25abff,
            ),
            (
                4294967303,
                0xa7fba21d06b674676f08c81beaaf7439,
                0xe7d395c78920f81fbb2b12601339041f,
            ),
            (
                u64::MAX,
                0xddc419442aebde794d8b0a3b048acdb0,
                0x37762aacb3cc854f4ed623c7d18951ed,
            ),
        ];
        for (seed, state, inc) in cases {
            assert_eq!(
                Pcg64::from_seed(seed).raw_state(),
                (state, inc),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn raw_and_double_streams_match_numpy() {
        // python -c "import numpy as np; print([hex(x) for x in np.random.PCG64(42).random_raw(3)])"
        let mut g = Pcg64::from_seed(42);
        for want in [
            0xc621fbcd16d92688u64,
            0x705a5661a791ffc1,
            0xdbcd12c26eda1624,
        ] {
            assert_eq!(g.next_u64(), want);
        }
        // python -c "import numpy as np; print([x.hex() for x in np.random.default_rng(42).random(3)])"
        let mut g = Pcg64::from_seed(42);
        for want in [
            0x3FE8C43F79A2DB24_u64, // 0x1.8c43f79a2db24p-1
            0x3FDC16959869E47E,     // 0x1.c16959869e47ep-2
            0x3FEB79A2584DDB42,     // 0x1.b79a2584ddb42p-1
        ] {
            assert_eq!(g.next_f64().to_bits(), want);
        }
        // python -c "import numpy as np; print([x.hex() for x in np.random.default_rng(7).uniform(-0.05, 0.05, 4)])"
        let mut g = Pcg64::from_seed(7);
        for want in [
            0x3F899E9AEE5B1DD0_u64, // 0x1.99e9aee5b1dd0p-7
            0x3FA4565C58EFD47C,     // 0x1.4565c58efd47cp-5
            0x3F9C3AEF596E6ACC,     // 0x1.c3aef596e6accp-6
            0xBF9C238754DDD58D,     // -0x1.c238754ddd58dp-6
        ] {
            assert_eq!(g.uniform(-0.05, 0.05).to_bits(), want);
        }
    }

    #[test]
    fn u32_and_bytes_match_numpy() {
        // python -c "import numpy as np; print([hex(x) for x in np.random.default_rng(3).integers(0, 2**32, size=5, dtype=np.uint32)])"
        let mut g = Pcg64::from_seed(3);
        for want in [
            0xcfbec2f8u32,
            0x15ed1a93,
            0x2defd3f5,
            0x3c9f9d05,
            0x2e6dec36,
        ] {
            assert_eq!(RngCore::next_u32(&mut g), want);
        }
        // python -c "import numpy as np; print(np.random.default_rng(3).bytes(7).hex())"
        let mut g = Pcg64::from_seed(3);
        let mut bytes = [0u8; 7];
        g.fill_bytes(&mut bytes);
        assert_eq!(bytes, [0xf8, 0xc2, 0xbe, 0xcf, 0x93, 0x1a, 0xed]);
        // A 64-bit draw between two 32-bit draws leaves the buffered high half in place:
        // python -c "import numpy as np; g=np.random.default_rng(9); print(hex(g.integers(0,2**32,dtype=np.uint32)), hex(g.bit_generator.random_raw()), hex(g.integers(0,2**32,dtype=np.uint32)))"
        let mut g = Pcg64::from_seed(9);
        assert_eq!(g.next_u32(), 0x6bea8721);
        assert_eq!(g.next_u64(), 0x496cda44f6070420);
        assert_eq!(g.next_u32(), 0xdec8a6de);
    }

    #[test]
    fn seedable_rng_agrees() {
        use rand_core::SeedableRng;
        let a = <Pcg64 as SeedableRng>::from_seed(77u64.to_le_bytes());
        let b = Pcg64::seed_from_u64(77);
        assert_eq!(a, Pcg64::from_seed(77));
        assert_eq!(b, Pcg64::from_seed(77));
    }

    #[test]
    fn uniform_in_range() {
        let mut g = Pcg64::from_seed(1);
        for _ in 0..10_000 {
            let u = g.uniform(-0.05, 0.05);
            assert!((-0.05..0.05).contains(&u));
        }
    }
}
