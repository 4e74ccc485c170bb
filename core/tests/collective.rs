//! `Learner::update_data_parallel` without MPI: two threads joined by an in-memory
//! [`Collective`] take the update one learner takes from both threads' samples concatenated
//! (the same check `acktr-mpi-selftest` makes across processes), and end bit-identical.
//!
//! Truth: the single-process update of the concatenated batch (the unchanged code path).
//! Tolerance `1e-5` in relative norm (the update's own change under a one-ulp nudge of its
//! inputs is ~2e-6 here: `acktr-mpi-selftest` prints it). The Fisher targets are made the same
//! with a counter-based generator: thread 1 starts at the draw where thread 0's samples end.

mod common;

use std::sync::{Arc, Barrier, Mutex};

use acktr_core::env::Pcg64;
use acktr_core::{Activation, ActorCritic, Config, Ending, HeadKind, Learner, SingleProcess, Step};
use common::{rel_diff, CounterRng, Threads};
use rand_core::SeedableRng;

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
