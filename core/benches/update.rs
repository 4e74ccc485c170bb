//! `cargo bench -p acktr-core --features std`: the pieces of one ACKTR update for 4-H-H actor-critics
//! (shared trunk, 2 actions, 32-sample batch): factor statistics (in chunks, as the learner
//! adds them, and one sample at a time), decomposition (the "inverse"), preconditioning, and
//! the whole update.
#![allow(clippy::needless_range_loop)]

use std::hint::black_box;

use acktr_core::env::Pcg64;
use acktr_core::{
    Activation, ActorCritic, Backward, Config, Curvature, Ending, Forward, HeadKind, Learner,
    Rollout, Step,
};
use criterion::{criterion_group, criterion_main, Criterion};

const B: usize = 32;

fn rollout(rng: &mut Pcg64) -> Rollout<4, 2, 1, B> {
    let mut r = Rollout::new();
    for t in 0..B {
        let u = |rng: &mut Pcg64| acktr_core::uniform01(rng) * 2.0 - 1.0;
        let obs = [u(rng), u(rng), u(rng), u(rng)];
        let mut s = Step::new(
            obs,
            [(t % 2) as f32, ((t + 1) % 2) as f32],
            1.0,
            0.0,
            Ending::Continues,
        );
        s.advantage = u(rng);
        s.ret = u(rng);
        r.push([s]).unwrap();
    }
    r
}

fn bench_size<const H: usize>(c: &mut Criterion) {
    let mut rng = Pcg64::from_seed(7);
    let net = ActorCritic::<4, H, 2, 1>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let r = rollout(&mut rng);
    let mut g = c.benchmark_group(format!("4-{H}-{H}"));

    // Per-sample forward + Fisher backward outputs for the statistics benchmark.
    let mut fw = Vec::new();
    for s in r.samples() {
        let mut f = Forward::zeros();
        net.forward(&s.obs, &mut f);
        let mut b = Backward::zeros();
        net.backward(&f, &[0.3, -0.3], 0.5, &mut b);
        fw.push((f, b));
    }
    // As `Learner::update` adds them: rank-`BLOCK` updates of blocks of samples.
    const C: usize = Learner::<4, 32, 2, 1>::BLOCK;
    let chunks: Vec<([Forward<4, H, 2, 1>; C], [Backward<H, 2, 1>; C])> = fw
        .chunks_exact(C)
        .map(|c| {
            (
                core::array::from_fn(|i| c[i].0),
                core::array::from_fn(|i| c[i].1),
            )
        })
        .collect();
    let mut curv = Curvature::<4, H, 2, 1>::new();
    g.bench_function("factor update (32 samples)", |bch| {
        bch.iter(|| {
            curv.scale(0.99);
            for (f, b) in &chunks {
                curv.observe_chunk(f, b, 0.01 / 32.0);
            }
        })
    });
    g.bench_function("factor update (32 samples, one at a time)", |bch| {
        bch.iter(|| {
            curv.scale(0.99);
            for (f, b) in &fw {
                curv.observe(f, b, 0.01 / 32.0);
            }
        })
    });
    g.bench_function("inverse (LDLt of all factors)", |bch| {
        bch.iter(|| black_box(&mut curv).factorize(0.01).unwrap())
    });
    let mut grad = net;
    g.bench_function("precondition", |bch| {
        bch.iter(|| {
            grad = net;
            black_box(curv.precondition(&mut grad).unwrap())
        })
    });
    for every in [1u32, 10] {
        let cfg = Config {
            cold_iters: 0,
            inverse_every: every,
            ..Config::default()
        };
        let mut l = Learner::new(cfg, net).unwrap();
        g.bench_function(
            format!("whole ACKTR update (inverse_every {every})"),
            |bch| bch.iter(|| l.update(&r, &mut rng).unwrap()),
        );
    }
    let mut l = Learner::new(Config::a2c(), net).unwrap();
    g.bench_function("whole A2C update (RMSprop)", |bch| {
        bch.iter(|| l.update(&r, &mut rng).unwrap())
    });
    g.finish();
}

/// The decomposition choice: nalgebra's symmetric eigendecomposition (what the reference
/// implementations use, exact Kronecker damping) against our `LDLᵀ` (factored damping), on the
/// same 33×33 input factor of a 32-wide layer.
fn bench_decomposition(c: &mut Criterion) {
    let mut rng = Pcg64::from_seed(3);
    let mut a = acktr_core::InputFactor::<32>::new();
    for _ in 0..64 {
        let x: [f32; 32] = core::array::from_fn(|_| acktr_core::uniform01(&mut rng) - 0.3);
        a.add(&x, 1.0 / 64.0);
    }
    let mut dense = vec![0.0f32; 33 * 33];
    a.write_dense(&mut dense);
    let m = nalgebra::SMatrix::<f32, 33, 33>::from_row_slice(&dense)
        + nalgebra::SMatrix::<f32, 33, 33>::identity() * 0.1;
    let mut g = c.benchmark_group("33x33 factor");
    g.bench_function("nalgebra SymmetricEigen", |b| {
        b.iter(|| black_box(nalgebra::SymmetricEigen::try_new(black_box(m), 1e-7, 1000)))
    });
    g.bench_function("nalgebra Cholesky", |b| {
        b.iter(|| black_box(black_box(m).cholesky()))
    });
    g.bench_function("acktr LDLt (InputFactor::factorize)", |b| {
        b.iter(|| black_box(&mut a).factorize(0.1).unwrap())
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_decomposition(c);
    bench_size::<32>(c);
    bench_size::<64>(c);
}

criterion_group!(name = group; config = Criterion::default().sample_size(30); targets = benches);
criterion_main!(group);
