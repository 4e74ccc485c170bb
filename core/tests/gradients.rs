//! Backprop gradients of the actor-critic loss against central finite differences of a loss
//! computed independently from forward passes only, and the learner's step against its
//! definitions (trust region, momentum, error paths).
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::{
    Activation, ActorCritic, Config, Ending, Forward, HeadKind, Learner, Optimizer, Rollout, Step,
};
use common::Rng;

const N: usize = 6;

fn batch<const OBS: usize, const P: usize>(rng: &mut Rng, head: HeadKind) -> Rollout<OBS, P, 1, N> {
    let mut r = Rollout::new();
    for _ in 0..N {
        let mut obs = [0.0; OBS];
        obs.iter_mut().for_each(|v| *v = 2.0 * rng.sym());
        let mut a = [0.0; P];
        match head {
            HeadKind::Categorical => a[(rng.0 % P as u64) as usize] = 1.0,
            HeadKind::Gaussian => a.iter_mut().for_each(|v| *v = rng.sym()),
        }
        let _ = rng.sym();
        let mut s = Step::new(obs, a, 0.0, 0.0, Ending::Continues);
        s.advantage = 2.0 * rng.sym();
        s.ret = 3.0 * rng.sym();
        r.push([s]).unwrap();
    }
    r
}

/// The loss from its definition, in f64 over f32 forward passes.
fn loss<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    net: &ActorCritic<OBS, H, P, T>,
    r: &Rollout<OBS, P, 1, N>,
    cfg: &Config,
) -> f64 {
    let mut f = Forward::zeros();
    let mut total = 0.0f64;
    for s in r.samples() {
        net.forward(&s.obs, &mut f);
        let (logp, ent) = net.head.log_prob_entropy(&f.z, &net.log_std, &s.action);
        let e = (s.ret - f.v) as f64;
        total += -(s.advantage as f64) * logp as f64 + cfg.value_coef as f64 * e * e
            - cfg.entropy_coef as f64 * ent as f64;
    }
    total / N as f64
}

fn first_order() -> Config {
    Config {
        optimizer: Optimizer::Sgd,
        max_grad_norm: 0.0,
        momentum: 0.0,
        entropy_coef: 0.05,
        ..Config::default()
    }
}

fn check_fd<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    head: HeadKind,
    seed: u64,
) {
    let mut rng = Rng(seed);
    let mut net = ActorCritic::<OBS, H, P, T>::new(Activation::Tanh, head, &mut rng);
    // Larger head weights than the initialisation so every term matters.
    net.pi.w.iter_mut().flatten().for_each(|w| *w = rng.sym());
    net.log_std.iter_mut().for_each(|l| *l = 0.3 * rng.sym());
    let r = batch::<OBS, P>(&mut rng, head);
    let cfg = first_order();
    let mut learner = Learner::new(cfg, net).unwrap();
    learner.update(&r, &mut rng).unwrap();
    let grad = *learner.direction();

    let h = 1e-2f32;
    let mut probe = net;
    let n_slices = probe.param_slices().len();
    let mut checked = 0;
    for si in 0..n_slices {
        let len = probe.param_slices()[si].len();
        for k in 0..len {
            let orig = probe.param_slices()[si][k];
            probe.param_slices_mut()[si][k] = orig + h;
            let lp = loss(&probe, &r, &cfg);
            probe.param_slices_mut()[si][k] = orig - h;
            let lm = loss(&probe, &r, &cfg);
            probe.param_slices_mut()[si][k] = orig;
            let fd = (lp - lm) / (2.0 * h as f64);
            let bp = grad.param_slices()[si][k] as f64;
            if head == HeadKind::Categorical && si == n_slices - 1 {
                assert_eq!(bp, 0.0, "categorical log-std has no gradient");
                continue;
            }
            assert!(
                (fd - bp).abs() <= 2e-3 + 1e-2 * fd.abs(),
                "{head:?} T={T} slice {si} index {k}: backprop {bp} vs finite difference {fd}"
            );
            checked += 1;
        }
    }
    assert!(checked > ActorCritic::<OBS, H, P, T>::num_params() / 2);
}

#[test]
fn categorical_shared_gradients_match_finite_differences() {
    check_fd::<3, 5, 3, 1>(HeadKind::Categorical, 11);
}

#[test]
fn categorical_separate_gradients_match_finite_differences() {
    check_fd::<3, 4, 2, 2>(HeadKind::Categorical, 12);
}

#[test]
fn gaussian_shared_gradients_match_finite_differences() {
    check_fd::<4, 5, 2, 1>(HeadKind::Gaussian, 13);
}

#[test]
fn gaussian_separate_gradients_match_finite_differences() {
    check_fd::<2, 4, 1, 2>(HeadKind::Gaussian, 14);
}

fn natural<const T: usize>(head: HeadKind, seed: u64) {
    let mut rng = Rng(seed);
    let net = ActorCritic::<3, 6, 2, T>::new(Activation::Tanh, head, &mut rng);
    let r = batch::<3, 2>(&mut rng, head);
    let cfg = Config {
        cold_iters: 0,
        inverse_every: 1,
        kl_clip: 1e-4,
        eta_max: 10.0,
        ..Config::default()
    };
    let mut acktr = Learner::new(cfg, net).unwrap();
    let stats = acktr.update(&r, &mut Rng(seed + 100)).unwrap();
    assert!(stats.natural);

    // The gradient itself, from a first-order learner on the same net and batch.
    let mut sgd = Learner::new(
        Config {
            entropy_coef: cfg.entropy_coef,
            ..first_order()
        },
        net,
    )
    .unwrap();
    sgd.update(&r, &mut rng).unwrap();
    let g = sgd.direction();
    let v = acktr.direction();
    // q = gᵀ F̂⁻¹ g = Σ v·g.
    let vg = v.fold_with(g, |a, b| a * b);
    assert!(
        (stats.quadratic_form - vg).abs() <= 1e-4 * vg.abs(),
        "q {} vs v·g {}",
        stats.quadratic_form,
        vg
    );
    // Trust region: ½η²q ≤ δ, and the bound is active here (η < η_max).
    assert!(stats.step_size < cfg.eta_max);
    assert!(stats.predicted_kl <= cfg.kl_clip * (1.0 + 1e-5));
    assert!(
        (0.5 * stats.step_size * stats.step_size * stats.quadratic_form - cfg.kl_clip).abs() < 1e-6
    );
    // First step from zero momentum: θ' = θ − (1−m) η v.
    let c = (1.0 - cfg.momentum) * stats.step_size;
    let mut expect = net;
    expect.zip_mut(v, |p, d| *p -= c * d);
    let diff = acktr.net.fold_with(&expect, |a, b| (a - b).abs().max(0.0));
    assert!(
        diff < 1e-4,
        "weights moved by something else than (1−m)ηv: {diff}"
    );
}

#[test]
fn natural_step_respects_the_trust_region_shared() {
    natural::<1>(HeadKind::Categorical, 21);
    natural::<1>(HeadKind::Gaussian, 22);
}

#[test]
fn natural_step_respects_the_trust_region_separate() {
    natural::<2>(HeadKind::Categorical, 23);
    natural::<2>(HeadKind::Gaussian, 24);
}

#[test]
fn bad_batches_give_errors_and_leave_weights_alone() {
    let mut rng = Rng(5);
    let net = ActorCritic::<3, 4, 2, 1>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let cfg = Config {
        cold_iters: 0,
        ..Config::default()
    };
    let mut l = Learner::new(cfg, net).unwrap();

    let mut r = batch::<3, 2>(&mut rng, HeadKind::Categorical);
    let empty = Rollout::<3, 2, 1, N>::new();
    assert_eq!(
        l.update(&empty, &mut rng),
        Err(acktr_core::Error::UpdateEmptyRollout)
    );

    let mut nan = r.clone();
    let mut steps: Vec<_> = nan.steps().to_vec();
    steps[2][0].reward = f32::NAN;
    nan.clear();
    steps.iter().for_each(|s| nan.push(*s).unwrap());
    assert_eq!(
        l.update(&nan, &mut rng),
        Err(acktr_core::Error::UpdateNonFiniteInput)
    );
    assert_eq!(l.net, net);

    // Finite but huge observations (they would overflow the input factor's statistics) are
    // refused before anything changes.
    let mut steps: Vec<_> = r.steps().to_vec();
    steps[1][0].obs = [1e30, -1e30, 1e30];
    r.clear();
    steps.iter().for_each(|s| r.push(*s).unwrap());
    assert_eq!(
        l.update(&r, &mut rng),
        Err(acktr_core::Error::UpdateInputOutOfRange)
    );
    assert_eq!(l.net, net);
    assert_eq!(l.updates(), 0);

    // Recovery: a good batch updates normally afterwards.
    let good = batch::<3, 2>(&mut rng, HeadKind::Categorical);
    assert!(l.update(&good, &mut rng).is_ok());
    assert_ne!(l.net, net);

    assert!(Learner::new(
        Config {
            damping: -1.0,
            ..cfg
        },
        net
    )
    .is_err());
    assert!(Learner::new(
        Config {
            momentum: 1.0,
            ..cfg
        },
        net
    )
    .is_err());
}
