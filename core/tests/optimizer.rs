//! The optimizer parts of `Learner::update` against the documented formulas, recomputed here in
//! f64 from quantities the learner does not produce itself:
//! - weight decay: the step direction is `g + wd·θ` (the gradient of the loss plus
//!   `½ wd ‖θ‖²`), `g` the loss gradient of a first-order learner without decay;
//! - cold start: the first `cold_iters` updates are `θ ← θ − cold_lr · clip(g)` with
//!   `clip(g) = g · min(1, max_grad_norm / ‖g‖)`, then natural steps with
//!   `η = min(η_max, sqrt(2δ/q))`; the statistics are gathered during the cold steps;
//! - momentum: `u ← m u + (1−m) η d`, `θ ← θ − u` over cold and natural steps, `u` carried
//!   from one to the next.
//!
//! Tolerances: the learner runs in f32; every comparison allows a relative error of about
//! 1e-5 of the largest magnitude involved (f32 has 6e-8 unit roundoff, sums of ~150 terms).
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::{
    Activation, ActorCritic, Config, Ending, HeadKind, Learner, Optimizer, Rollout, Step,
};
use common::Rng;

const N: usize = 12;

type Net = ActorCritic<3, 6, 2, 1>;

fn batch(rng: &mut Rng, head: HeadKind) -> Rollout<3, 2, 1, N> {
    let mut r = Rollout::new();
    for _ in 0..N {
        let obs = [2.0 * rng.sym(), 2.0 * rng.sym(), 0.5 + rng.sym()];
        let mut a = [0.0; 2];
        match head {
            HeadKind::Categorical => a[(rng.0 % 2) as usize] = 1.0,
            HeadKind::Gaussian => a.iter_mut().for_each(|v| *v = rng.sym()),
        }
        let mut s = Step::new(obs, a, 0.0, 0.0, Ending::Continues);
        s.advantage = 2.0 * rng.sym();
        s.ret = 3.0 * rng.sym();
        r.push([s]).unwrap();
    }
    r
}

fn net(head: HeadKind, seed: u64) -> Net {
    let mut rng = Rng(seed);
    let mut n = Net::new(Activation::Tanh, head, &mut rng);
    // Policy weights and log-std away from their near-zero initialisation, so every term of
    // the gradient (and of the decay) is non-trivial.
    n.pi.w.iter_mut().flatten().for_each(|w| *w = rng.sym());
    if head == HeadKind::Gaussian {
        n.log_std.iter_mut().for_each(|l| *l = 0.4 * rng.sym());
    }
    n
}

/// Every parameter, in `param_slices` order, as f64.
fn flat(n: &Net) -> Vec<f64> {
    n.param_slices()
        .iter()
        .flat_map(|s| s.iter().map(|&v| v as f64))
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// `max |a − b| ≤ rel · max(1, max |b|)`, with a message naming the first offender.
fn assert_close(what: &str, a: &[f64], b: &[f64], rel: f64) {
    assert_eq!(a.len(), b.len());
    let tol = rel * max_abs(b).max(1.0);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "{what}: index {i}: {x} vs expected {y} (tolerance {tol})"
        );
    }
}

/// The plain loss gradient `g` (batch mean, no decay, no clipping): the direction of a
/// first-order learner with clipping off, whose step the gradient tests check against finite
/// differences.
fn loss_gradient(net: &Net, r: &Rollout<3, 2, 1, N>, cfg: &Config) -> Vec<f64> {
    let plain = Config {
        optimizer: Optimizer::Sgd,
        max_grad_norm: 0.0,
        momentum: 0.0,
        weight_decay: 0.0,
        ..*cfg
    };
    let mut l = Learner::new(plain, *net).unwrap();
    l.update(r, &mut Rng(0)).unwrap();
    let n = *l.direction();
    flat(&n)
}

#[test]
fn weight_decay_adds_wd_theta_to_the_gradient() {
    for (head, seed) in [(HeadKind::Categorical, 1), (HeadKind::Gaussian, 2)] {
        let n0 = net(head, seed);
        let r = batch(&mut Rng(seed + 10), head);
        let wd = 0.3;
        let cfg = Config {
            optimizer: Optimizer::Sgd,
            eta_max: 0.1,
            momentum: 0.0,
            max_grad_norm: 0.0,
            weight_decay: wd,
            ..Config::default()
        };
        let g = loss_gradient(&n0, &r, &cfg);
        let theta = flat(&n0);
        let expect: Vec<f64> = g
            .iter()
            .zip(&theta)
            .map(|(g, t)| g + wd as f64 * t)
            .collect();
        // The decay term is not negligible against the gradient here.
        let decay: Vec<f64> = theta.iter().map(|t| wd as f64 * t).collect();
        assert!(
            norm(&decay) > 0.1 * norm(&g),
            "{head:?}: decay too small to see"
        );

        let mut l = Learner::new(cfg, n0).unwrap();
        let stats = l.update(&r, &mut Rng(0)).unwrap();
        assert_close("direction", &flat(l.direction()), &expect, 1e-5);
        assert!((stats.grad_norm as f64 - norm(&expect)).abs() <= 1e-5 * norm(&expect));
        // θ' = θ − η (g + wd θ).
        let stepped: Vec<f64> = theta
            .iter()
            .zip(&expect)
            .map(|(t, d)| t - cfg.eta_max as f64 * d)
            .collect();
        assert_close("weights", &flat(&l.net), &stepped, 1e-5);
    }
}

#[test]
fn cold_start_takes_clipped_first_order_steps_then_natural_ones() {
    const COLD: u32 = 3;
    for (head, seed) in [(HeadKind::Categorical, 3), (HeadKind::Gaussian, 4)] {
        let n0 = net(head, seed);
        let r = batch(&mut Rng(seed + 10), head);
        let g_norm = norm(&loss_gradient(&n0, &r, &Config::default()));
        // One run that clips every cold step, one with a clip too loose to act.
        for clip in [0.3 * g_norm, 100.0 * g_norm] {
            let cfg = Config {
                cold_iters: COLD,
                cold_lr: 0.05,
                max_grad_norm: clip as f32,
                momentum: 0.0,
                eta_max: 0.25,
                kl_clip: 1e-3,
                ..Config::default()
            };
            let mut l = Learner::new(cfg, n0).unwrap();
            let mut rng = Rng(seed + 20);
            for k in 0..COLD {
                let theta = flat(&l.net);
                let g = loss_gradient(&l.net, &r, &cfg);
                let c = (clip / norm(&g)).min(1.0);
                let d: Vec<f64> = g.iter().map(|x| x * c).collect();
                let stats = l.update(&r, &mut rng).unwrap();
                assert!(!stats.natural, "{head:?} update {k} should be cold");
                assert_eq!(stats.step_size, cfg.cold_lr);
                assert_eq!(stats.quadratic_form, 0.0);
                assert_eq!(stats.predicted_kl, 0.0);
                assert!((stats.grad_norm as f64 - norm(&g)).abs() <= 1e-5 * norm(&g));
                assert_close("cold direction", &flat(l.direction()), &d, 1e-5);
                if c < 1.0 {
                    let dn = norm(&flat(l.direction()));
                    assert!(
                        (dn - clip).abs() <= 1e-5 * clip,
                        "clipped norm {dn} vs {clip}"
                    );
                }
                let stepped: Vec<f64> = theta
                    .iter()
                    .zip(&d)
                    .map(|(t, d)| t - cfg.cold_lr as f64 * d)
                    .collect();
                assert_close("cold weights", &flat(&l.net), &stepped, 1e-5);
            }
            // The statistics were gathered during the cold steps: the same batch three times
            // leaves Ā_obs = E[āāᵀ] of that batch (ρ_k = min(ρ, k/(k+1)) averages plainly).
            let mut got = vec![0.0f32; 16];
            l.curvature().a_obs().write_dense(&mut got);
            let mut want = [[0.0f64; 4]; 4];
            for s in r.samples() {
                let a = [s.obs[0] as f64, s.obs[1] as f64, s.obs[2] as f64, 1.0];
                for i in 0..4 {
                    for j in 0..4 {
                        want[i][j] += a[i] * a[j] / N as f64;
                    }
                }
            }
            let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
            assert_close("Ā_obs after cold steps", &got, want.as_flattened(), 1e-5);

            // Update `cold_iters` is the first natural step.
            let stats = l.update(&r, &mut rng).unwrap();
            assert!(stats.natural);
            let q = stats.quadratic_form as f64;
            assert!(q > 0.0);
            let eta = (cfg.eta_max as f64).min((2.0 * cfg.kl_clip as f64 / q).sqrt());
            assert!((stats.step_size as f64 - eta).abs() <= 1e-6 * eta);
            assert!(
                (stats.predicted_kl as f64 - 0.5 * eta * eta * q).abs() <= 1e-6 * eta * eta * q
            );
        }
    }
}

#[test]
fn momentum_follows_its_recurrence_across_cold_and_natural_steps() {
    for (head, seed) in [(HeadKind::Categorical, 5), (HeadKind::Gaussian, 6)] {
        let cfg = Config {
            cold_iters: 2,
            cold_lr: 0.05,
            max_grad_norm: 0.5,
            momentum: 0.9,
            eta_max: 0.5,
            // Tight enough that the trust region sets η on some natural steps.
            kl_clip: 2e-4,
            inverse_every: 1,
            ..Config::default()
        };
        let m = cfg.momentum as f64;
        let mut l = Learner::new(cfg, net(head, seed)).unwrap();
        let mut data = Rng(seed + 10);
        let mut rng = Rng(seed + 20);
        let mut theta = flat(&l.net);
        let mut u = vec![0.0f64; theta.len()];
        let (mut natural, mut clipped_by_region) = (0, 0);
        for k in 0..7 {
            let r = batch(&mut data, head);
            let stats = l.update(&r, &mut rng).unwrap();
            assert_eq!(stats.natural, k >= 2, "update {k}");
            if stats.natural {
                natural += 1;
                let q = stats.quadratic_form as f64;
                let eta = (cfg.eta_max as f64).min((2.0 * cfg.kl_clip as f64 / q).sqrt());
                assert!((stats.step_size as f64 - eta).abs() <= 1e-6 * eta);
                if eta < cfg.eta_max as f64 {
                    clipped_by_region += 1;
                }
            } else {
                assert_eq!(stats.step_size, cfg.cold_lr);
            }
            let eta = stats.step_size as f64;
            let d = flat(l.direction());
            for i in 0..u.len() {
                u[i] = m * u[i] + (1.0 - m) * eta * d[i];
                theta[i] -= u[i];
            }
            assert_close(
                &format!("{head:?} weights after update {k}"),
                &flat(&l.net),
                &theta,
                1e-5,
            );
            // The momentum actually carries: the last step is not just (1−m)ηd.
            if k == 6 {
                let fresh: f64 = d.iter().map(|x| ((1.0 - m) * eta * x).abs()).sum();
                let carried: f64 = u.iter().map(|x| x.abs()).sum();
                assert!(
                    carried > 1.5 * fresh,
                    "momentum should dominate: {carried} vs {fresh}"
                );
            }
        }
        assert_eq!(natural, 5);
        assert!(
            clipped_by_region >= 1,
            "{head:?}: the trust region never bound"
        );
    }
}
