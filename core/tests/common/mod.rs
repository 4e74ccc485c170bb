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

use std::sync::{Arc, Barrier, Mutex};

use acktr_core::{Collective, Error, Parts};
use rand_core::RngCore;

/// Draw `k` of stream `key` is `splitmix64(key·2³² + k)`, whatever width is asked for.
#[derive(Clone)]
pub struct CounterRng {
    pub key: u64,
    pub next: u64,
}

impl RngCore for CounterRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        let mut z = (self.key << 32).wrapping_add(self.next);
        self.next += 1;
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Ranks as threads: each call packs its numbers into its slot, and after a barrier every rank
/// sums the slots in rank order (so every rank gets the same sums, bit for bit).
pub struct Threads {
    pub rank: usize,
    pub slots: Arc<Mutex<Vec<Vec<f64>>>>,
    pub barrier: Arc<Barrier>,
}

impl Threads {
    fn exchange(&mut self, mine: Vec<f64>) -> Vec<Vec<f64>> {
        self.slots.lock().unwrap()[self.rank] = mine;
        self.barrier.wait();
        let all = self.slots.lock().unwrap().clone();
        self.barrier.wait();
        all
    }
}

impl Collective for Threads {
    fn ranks(&self) -> u32 {
        self.slots.lock().unwrap().len() as u32
    }
    fn all_reduce_sum(&mut self, parts: &mut Parts<'_>) -> Result<(), Error> {
        let mut mine = Vec::new();
        parts(&mut |s| mine.extend(s.iter().map(|&x| f64::from(x))));
        let all = self.exchange(mine);
        let mut pos = 0;
        parts(&mut |s| {
            for x in s.iter_mut() {
                // f32 sums in rank order, as an f32 all-reduce makes them.
                *x = all.iter().fold(0.0f32, |acc, r| acc + r[pos] as f32);
                pos += 1;
            }
        });
        Ok(())
    }
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), Error> {
        let all = self.exchange(buf.to_vec());
        for (i, x) in buf.iter_mut().enumerate() {
            *x = all.iter().fold(0.0, |acc, r| acc + r[i]);
        }
        Ok(())
    }
    fn broadcast(&mut self, parts: &mut Parts<'_>) -> Result<(), Error> {
        let mut mine = Vec::new();
        parts(&mut |s| mine.extend(s.iter().map(|&x| f64::from(x))));
        let all = self.exchange(mine);
        let mut pos = 0;
        parts(&mut |s| {
            for x in s.iter_mut() {
                *x = all[0][pos] as f32;
                pos += 1;
            }
        });
        Ok(())
    }
}

/// `max over slices of ‖a − b‖₂ / ‖b‖₂`.
pub fn rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let n = b.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            let d = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum::<f64>()
                .sqrt();
            if d == 0.0 {
                0.0
            } else {
                d / n
            }
        })
        .fold(0.0, f64::max)
}
