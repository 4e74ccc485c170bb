//! `Learner::update_data_parallel` without MPI: two threads joined by an in-memory
//! [`Collective`] take the update one learner takes from both threads' samples concatenated
//! (the same check `acktr-mpi-selftest` makes across processes), and end bit-identical.
//!
//! Truth: the single-process update of the concatenated batch (the unchanged code path).
//! Tolerance `1e-5` in relative norm (the update's own change under a one-ulp nudge of its
//! inputs is ~2e-6 here: `acktr-mpi-selftest` prints it). The Fisher targets are made the same
//! with a counter-based generator: thread 1 starts at the draw where thread 0's samples end.

use std::sync::{Arc, Barrier, Mutex};

use acktr_core::env::Pcg64;
use acktr_core::{
    Activation, ActorCritic, Collective, Config, Ending, Error, HeadKind, Learner, Parts,
    SingleProcess, Step,
};
use rand_core::{RngCore, SeedableRng};

/// Draw `k` of stream `key` is `splitmix64(key·2³² + k)`, whatever width is asked for.
#[derive(Clone)]
struct CounterRng {
    key: u64,
    next: u64,
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
struct Threads {
    rank: usize,
    slots: Arc<Mutex<Vec<Vec<f64>>>>,
    barrier: Arc<Barrier>,
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

type Net = Learner<3, 16, 1, 2>;
const PER_RANK: usize = 40;

fn batch(u: u64, n: usize) -> Vec<Step<3, 1>> {
    let mut rng = Pcg64::seed_from_u64(1000 + u);
    let mut x = move || acktr_core::uniform01(&mut rng) * 2.0 - 1.0;
    (0..n)
        .map(|_| {
            let mut s = Step::new(
                core::array::from_fn(|_| x()),
                [2.0 * x()],
                x(),
                x(),
                Ending::Continues,
            );
            s.advantage = 3.0 * x() + 0.5;
            s.ret = 2.0 * x();
            s
        })
        .collect()
}

fn state(l: &Net) -> Vec<Vec<f32>> {
    let mut l = l.clone();
    let mut out = Vec::new();
    l.visit_state_mut(|s| out.push(s.to_vec()));
    out
}

/// `max over slices of ‖a − b‖₂ / ‖b‖₂`.
fn rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
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

fn learner() -> Net {
    let config = Config {
        cold_iters: 1,
        inverse_every: 2,
        normalize_advantage: true,
        target_kl: 0.002,
        vf_iters: 3,
        vf_kl_clip: 0.002,
        weight_decay: 3e-4,
        ..Config::default()
    };
    let net = ActorCritic::new(
        Activation::Tanh,
        HeadKind::Gaussian,
        &mut Pcg64::seed_from_u64(7),
    );
    Learner::new(config, net).unwrap()
}

#[test]
fn two_threads_update_as_one_learner_on_the_concatenated_batch() {
    let slots = Arc::new(Mutex::new(vec![Vec::new(); 2]));
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|rank| {
            let mut coll = Threads {
                rank,
                slots: slots.clone(),
                barrier: barrier.clone(),
            };
            std::thread::spawn(move || {
                let mut single = learner();
                let mut out = Vec::new();
                for u in 0..4 {
                    let all = batch(u, 2 * PER_RANK);
                    let (first, mine) = (&all[..PER_RANK], &all[rank * PER_RANK..][..PER_RANK]);
                    // Thread 1's Fisher targets start where thread 0's samples' end.
                    let mut start = 0;
                    if rank == 1 {
                        let mut rng = CounterRng { key: u, next: 0 };
                        let mut probe = single.clone();
                        probe
                            .update_data_parallel::<16>(first, None, &mut rng, &mut SingleProcess)
                            .unwrap();
                        start = rng.next;
                    }
                    let mut dp = single.clone();
                    let mut rng = CounterRng {
                        key: u,
                        next: start,
                    };
                    dp.update_data_parallel::<16>(mine, None, &mut rng, &mut coll)
                        .unwrap();
                    let mut rng = CounterRng { key: u, next: 0 };
                    single.update_steps_in_blocks::<16>(&all, &mut rng).unwrap();
                    out.push((state(&dp), state(&single)));
                }
                out
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    for (u, ((dp0, one), (dp1, _))) in results[0].iter().zip(&results[1]).enumerate() {
        assert_eq!(dp0, dp1, "update {u}: the threads' states differ");
        let d = rel_diff(dp0, one);
        assert!(
            d <= 1e-5,
            "update {u}: data-parallel vs one learner: {d:.2e}"
        );
    }
    // The comparison has teeth: thread 0's half alone gives another update.
    let mut alone = learner();
    let all = batch(0, 2 * PER_RANK);
    alone
        .update_steps_in_blocks::<16>(&all[..PER_RANK], &mut CounterRng { key: 0, next: 0 })
        .unwrap();
    assert!(rel_diff(&state(&alone), &results[0][0].1) > 1e-3);
}
