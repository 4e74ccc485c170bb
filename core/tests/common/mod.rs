//! Test helpers: a tiny seeded generator independent of the crate's own.
#![allow(dead_code)]

/// SplitMix64.
pub struct Rng(pub u64);

impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for c in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

impl Rng {
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f32 {
        use rand_core::RngCore;
        (self.next_u32() >> 8) as f32 / 8_388_608.0 - 1.0
    }
}
