//! The trust-region step of a whole network against its explicit Fisher.
//!
//! After an update, the test assembles the damped block-diagonal Kronecker Fisher `F̂` of every
//! parameter as a dense f64 matrix from the learner's statistics, following the documented form
//! (`docs/algorithm.md`, `kfac.rs`):
//! - one block `(Ā + π√λ I) ⊗ (S + √λ/π I)` per dense layer, `π = sqrt((tr Ā/dim Ā)/(tr S/dim S))`
//!   (computed here, not by `damping_split`); layers that read the same input (every trunk's first
//!   layer; both heads on a shared trunk) share `Ā` and one `π` from the traces of all their
//!   `S` blocks;
//! - `2 + λ` per Gaussian log-std (its exact Fisher, damped).
//!
//! The input factors `Ā` are checked against `E[ā āᵀ]` over the batch from forward passes; the
//! output factors come from the sampled Fisher pass and are taken from the learner. Then, with
//! `g` the loss gradient plus `wd·θ` (from a first-order learner without decay):
//! `F̂ v = g` for the learner's direction `v`; `q = vᵀ F̂ v` equals the reported quadratic form;
//! `η = min(η_max, sqrt(2δ/q))` is the reported step; and the step taken, `Δθ = θ − θ'`,
//! has predicted KL `½ Δθᵀ F̂ Δθ ≤ δ` (`= (1−m)² ½η²q` from zero momentum).
//!
//! Tolerances: 1e-5 relative for `v` (of its largest entry), the quadratic forms and η; the
//! core's f32 arithmetic lands within ~3e-7 here (measured). The KL of the step taken allows
//! 1e-3: `Δθ` is a difference of f32 weights of order 1, so it carries their rounding.
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::{
    Activation, ActorCritic, Config, Curvature, Ending, Forward, HeadKind, Learner, Optimizer,
    Rollout, Step,
};
use common::Rng;
use nalgebra::{DMatrix, DVector};

const N: usize = 16;

fn batch<const OBS: usize, const P: usize>(rng: &mut Rng, head: HeadKind) -> Rollout<OBS, P, 1, N> {
    let mut r = Rollout::new();
    for _ in 0..N {
        let obs: [f32; OBS] = core::array::from_fn(|i| 1.5 * rng.sym() + 0.2 * i as f32);
        let mut a = [0.0; P];
        match head {
            HeadKind::Categorical => a[(rng.0 % P as u64) as usize] = 1.0,
            HeadKind::Gaussian => a.iter_mut().for_each(|v| *v = rng.sym()),
        }
        let mut s = Step::new(obs, a, 0.0, 0.0, Ending::Continues);
        s.advantage = 2.0 * rng.sym();
        s.ret = 3.0 * rng.sym();
        r.push([s]).unwrap();
    }
    r
}

fn flat<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    n: &ActorCritic<OBS, H, P, T>,
) -> DVector<f64> {
    DVector::from_iterator(
        ActorCritic::<OBS, H, P, T>::num_params(),
        n.param_slices()
            .iter()
            .flat_map(|s| s.iter().map(|&v| v as f64)),
    )
}

fn to_f64(n: usize, buf: &[f32]) -> DMatrix<f64> {
    DMatrix::from_row_slice(n, n, &buf.iter().map(|&v| v as f64).collect::<Vec<_>>())
}

fn input<const I: usize>(a: &acktr_core::InputFactor<I>) -> DMatrix<f64> {
    let mut buf = vec![0.0f32; (I + 1) * (I + 1)];
    a.write_dense(&mut buf);
    to_f64(I + 1, &buf)
}

fn output<const O: usize>(s: &acktr_core::OutputFactor<O>) -> DMatrix<f64> {
    let mut buf = vec![0.0f32; O * O];
    s.write_dense(&mut buf);
    to_f64(O, &buf)
}

/// `E[ā āᵀ]`, `ā = [x; 1]`, over `xs`.
fn second_moment(xs: &[Vec<f32>]) -> DMatrix<f64> {
    let n = xs[0].len() + 1;
    let mut m = DMatrix::zeros(n, n);
    for x in xs {
        let a = DVector::from_iterator(n, x.iter().map(|&v| v as f64).chain([1.0]));
        m += &a * a.transpose() / xs.len() as f64;
    }
    m
}

/// Damps a group of layers sharing `a` (one `π` from all the `s` blocks' traces): returns the
/// damped `Ā_d` and each `S_d`.
fn damp(a: &DMatrix<f64>, s: &[DMatrix<f64>], lambda: f64) -> (DMatrix<f64>, Vec<DMatrix<f64>>) {
    let dim_s: usize = s.iter().map(|m| m.nrows()).sum();
    let tr_s: f64 = s.iter().map(|m| m.trace()).sum();
    let pi = ((a.trace() / a.nrows() as f64) / (tr_s / dim_s as f64)).sqrt();
    let sl = lambda.sqrt();
    let ad = a + DMatrix::identity(a.nrows(), a.nrows()) * (pi * sl);
    let sd = s
        .iter()
        .map(|m| m + DMatrix::identity(m.nrows(), m.nrows()) * (sl / pi))
        .collect();
    (ad, sd)
}

/// Writes the block `Ā_d ⊗ S_d` of a layer `W: O×I`, `b: O` whose parameters start at `off`
/// (`W` row-major, then `b`, as `param_slices` orders them). Returns the next offset.
fn put(f: &mut DMatrix<f64>, off: usize, ad: &DMatrix<f64>, sd: &DMatrix<f64>) -> usize {
    let (i_in, o_out) = (ad.nrows() - 1, sd.nrows());
    let idx = |o: usize, j: usize| {
        if j < i_in {
            off + o * i_in + j
        } else {
            off + o_out * i_in + o
        }
    };
    for o in 0..o_out {
        for j in 0..=i_in {
            for o2 in 0..o_out {
                for j2 in 0..=i_in {
                    f[(idx(o, j), idx(o2, j2))] = ad[(j, j2)] * sd[(o, o2)];
                }
            }
        }
    }
    off + o_out * (i_in + 1)
}

/// The damped block-diagonal Kronecker Fisher of every parameter, in `param_slices` order.
fn explicit_fisher<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    c: &Curvature<OBS, H, P, T>,
    head: HeadKind,
    lambda: f64,
) -> DMatrix<f64> {
    let n = ActorCritic::<OBS, H, P, T>::num_params();
    let mut f = DMatrix::zeros(n, n);
    let s1: Vec<_> = (0..T).map(|t| output(c.s_hidden(t, 0).unwrap())).collect();
    let (a1d, s1d) = damp(&input(c.a_obs()), &s1, lambda);
    let mut off = 0;
    for t in 0..T {
        off = put(&mut f, off, &a1d, &s1d[t]);
        let (a2d, s2d) = damp(
            &input(c.a_h1(t).unwrap()),
            &[output(c.s_hidden(t, 1).unwrap())],
            lambda,
        );
        off = put(&mut f, off, &a2d, &s2d[0]);
    }
    let (s_pi, s_v) = (output(c.s_pi()), output(c.s_v()));
    if T == 1 {
        let (ad, sd) = damp(&input(c.a_h2(0).unwrap()), &[s_pi, s_v], lambda);
        off = put(&mut f, off, &ad, &sd[0]);
        off = put(&mut f, off, &ad, &sd[1]);
    } else {
        let (ad, sd) = damp(&input(c.a_h2(0).unwrap()), &[s_pi], lambda);
        off = put(&mut f, off, &ad, &sd[0]);
        let (ad, sd) = damp(&input(c.a_h2(T - 1).unwrap()), &[s_v], lambda);
        off = put(&mut f, off, &ad, &sd[0]);
    }
    // Log-std: exact Fisher 2 per dimension (the categorical head has no gradient there; 1
    // keeps F̂ regular).
    for i in 0..P {
        f[(off + i, off + i)] = if head == HeadKind::Gaussian {
            2.0 + lambda
        } else {
            1.0
        };
    }
    assert_eq!(off + P, n);
    f
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

fn check<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    head: HeadKind,
    seed: u64,
    cfg: Config,
    trust_region_binds: bool,
) {
    let mut rng = Rng(seed);
    let mut net = ActorCritic::<OBS, H, P, T>::new(Activation::Tanh, head, &mut rng);
    net.pi
        .w
        .iter_mut()
        .flatten()
        .for_each(|w| *w = 0.5 * rng.sym());
    if head == HeadKind::Gaussian {
        net.log_std.iter_mut().for_each(|l| *l = 0.3 * rng.sym());
    }
    let cfg = Config {
        cold_iters: 0,
        inverse_every: 1,
        ..cfg
    };
    let (lambda, wd, m) = (
        cfg.damping as f64,
        cfg.weight_decay as f64,
        cfg.momentum as f64,
    );
    let mut l = Learner::new(cfg, net).unwrap();
    let mut fisher_rng = Rng(seed + 100);
    for k in 0..3 {
        let r = batch::<OBS, P>(&mut rng, head);
        let theta = flat(&l.net);
        // g = ∇L + wd·θ, ∇L from a first-order learner without decay or clipping.
        let mut plain = Learner::new(
            Config {
                optimizer: Optimizer::Sgd,
                max_grad_norm: 0.0,
                momentum: 0.0,
                weight_decay: 0.0,
                ..cfg
            },
            l.net,
        )
        .unwrap();
        plain.update(&r, &mut Rng(0)).unwrap();
        let g = flat(plain.direction()) + &theta * wd;

        // Layer inputs of this batch, for the first update's Ā (ρ₀ = 0: the batch alone).
        let mut inputs = vec![Vec::new(); 1 + 2 * T];
        let mut fw = Forward::zeros();
        for s in r.samples() {
            l.net.forward(&s.obs, &mut fw);
            inputs[0].push(fw.x.to_vec());
            for t in 0..T {
                inputs[1 + t].push(fw.h1[t].to_vec());
                inputs[1 + T + t].push(fw.h2[t].to_vec());
            }
        }

        let stats = l.update(&r, &mut fisher_rng).unwrap();
        assert!(stats.natural);
        let c = l.curvature();
        if k == 0 {
            let mut got = vec![input(c.a_obs())];
            got.extend((0..T).map(|t| input(c.a_h1(t).unwrap())));
            got.extend((0..T).map(|t| input(c.a_h2(t).unwrap())));
            for (i, (a, xs)) in got.iter().zip(&inputs).enumerate() {
                let want = second_moment(xs);
                assert!((a - &want).amax() <= 1e-5 * want.amax(), "Ā #{i}");
            }
        }

        let f = explicit_fisher(c, head, lambda);
        let v = flat(l.direction());
        let x = f
            .clone()
            .cholesky()
            .expect("damped Fisher is positive definite")
            .solve(&g);
        let err = (&v - &x).amax();
        assert!(
            err <= 1e-5 * x.amax(),
            "{head:?} T={T} update {k}: v vs F̂⁻¹g: max err {err}, scale {}",
            x.amax()
        );

        let q = v.dot(&(&f * &v));
        assert!(
            rel(stats.quadratic_form as f64, q) <= 1e-5,
            "{head:?} T={T} update {k}: reported q {} vs vᵀF̂v {q}",
            stats.quadratic_form
        );
        assert!(
            rel(g.dot(&x), q) <= 1e-5,
            "gᵀF̂⁻¹g {} vs vᵀF̂v {q}",
            g.dot(&x)
        );

        let (eta_max, delta) = (cfg.eta_max as f64, cfg.kl_clip as f64);
        let eta = eta_max.min((2.0 * delta / q).sqrt());
        assert_eq!(eta < eta_max, trust_region_binds, "regime at update {k}");
        assert!(
            rel(stats.step_size as f64, eta) <= 1e-5,
            "η {} vs {eta}",
            stats.step_size
        );
        let step = stats.step_size as f64;
        assert!(0.5 * step * step * q <= delta * (1.0 + 1e-5));
        assert!(rel(stats.predicted_kl as f64, 0.5 * step * step * q) <= 1e-5);

        // The step taken. From zero momentum it is (1−m)ηv; without momentum every step is.
        let dtheta = &theta - flat(&l.net);
        let kl = 0.5 * dtheta.dot(&(&f * &dtheta));
        if k == 0 || m == 0.0 {
            let want = (1.0 - m) * (1.0 - m) * 0.5 * step * step * q;
            assert!(rel(kl, want) <= 1e-3, "step KL {kl} vs (1−m)²½η²q {want}");
            assert!(kl <= delta * (1.0 + 1e-3));
        }
    }
}

#[test]
fn shared_categorical_step_matches_the_explicit_fisher() {
    let cfg = Config {
        kl_clip: 1e-4,
        eta_max: 10.0,
        momentum: 0.0,
        weight_decay: 0.05,
        ..Config::default()
    };
    check::<4, 8, 3, 1>(HeadKind::Categorical, 1, cfg, true);
    // A wide trust region: η = η_max.
    let cfg = Config {
        kl_clip: 10.0,
        eta_max: 0.05,
        momentum: 0.9,
        ..Config::default()
    };
    check::<4, 8, 3, 1>(HeadKind::Categorical, 2, cfg, false);
}

#[test]
fn separate_gaussian_step_matches_the_explicit_fisher() {
    let cfg = Config {
        kl_clip: 1e-4,
        eta_max: 10.0,
        momentum: 0.9,
        weight_decay: 0.05,
        ..Config::default()
    };
    check::<3, 5, 2, 2>(HeadKind::Gaussian, 3, cfg, true);
    let cfg = Config {
        kl_clip: 10.0,
        eta_max: 0.05,
        momentum: 0.0,
        ..Config::default()
    };
    check::<3, 5, 2, 2>(HeadKind::Gaussian, 4, cfg, false);
}

/// `vf_kl_clip`: the actor (trunk 0, policy head, log-std) and the critic (trunk 1, value head)
/// each take the step of their own trust region, `η_π = min(η_max, sqrt(2δ/q_π))` and
/// `η_v = min(η_max, sqrt(2δ_v/q_v))`, with `q` each part's `xᵀF̂x` of `x = F̂⁻¹g` from the
/// explicit Fisher (block diagonal, so the parts' solves are independent). From zero momentum
/// and with none, the step taken is `η_π x_π` on the actor and `η_v x_v` on the critic.
#[test]
fn separate_trust_regions_match_the_explicit_fisher() {
    const OBS: usize = 3;
    const H: usize = 5;
    const P: usize = 2;
    let mut rng = Rng(11);
    let mut net = ActorCritic::<OBS, H, P, 2>::new(Activation::Tanh, HeadKind::Gaussian, &mut rng);
    net.log_std.iter_mut().for_each(|l| *l = 0.3 * rng.sym());
    let cfg = Config {
        kl_clip: 1e-4,
        vf_kl_clip: 3e-3,
        eta_max: 10.0,
        momentum: 0.0,
        cold_iters: 0,
        inverse_every: 1,
        ..Config::default()
    };
    // Parameter indices in `param_slices` order: trunk 0, trunk 1, policy head, value head,
    // log-std.
    let trunk = H * OBS + H + H * H + H;
    let (pi, v) = (P * H + P, H + 1);
    let n = ActorCritic::<OBS, H, P, 2>::num_params();
    let critic: Vec<bool> = (0..n)
        .map(|i| {
            (trunk..2 * trunk).contains(&i) || (2 * trunk + pi..2 * trunk + pi + v).contains(&i)
        })
        .collect();
    let mut l = Learner::new(cfg, net).unwrap();
    let mut fisher_rng = Rng(12);
    for k in 0..3 {
        let r = batch::<OBS, P>(&mut rng, HeadKind::Gaussian);
        let theta = flat(&l.net);
        let mut plain = Learner::new(
            Config {
                optimizer: Optimizer::Sgd,
                max_grad_norm: 0.0,
                vf_kl_clip: 0.0,
                ..cfg
            },
            l.net,
        )
        .unwrap();
        plain.update(&r, &mut Rng(0)).unwrap();
        let g = flat(plain.direction());
        let stats = l.update(&r, &mut fisher_rng).unwrap();
        let f = explicit_fisher(l.curvature(), HeadKind::Gaussian, cfg.damping as f64);
        let x = f.clone().cholesky().unwrap().solve(&g);
        let part = |c: bool| {
            DVector::from_iterator(n, (0..n).map(|i| if critic[i] == c { x[i] } else { 0.0 }))
        };
        let (xa, xc) = (part(false), part(true));
        let (qa, qc) = (xa.dot(&(&f * &xa)), xc.dot(&(&f * &xc)));
        let eta_a = (cfg.eta_max as f64).min((2.0 * cfg.kl_clip as f64 / qa).sqrt());
        let eta_c = (cfg.eta_max as f64).min((2.0 * cfg.vf_kl_clip as f64 / qc).sqrt());
        assert!(
            rel(stats.step_size as f64, eta_a) <= 1e-5,
            "update {k}: η_π"
        );
        assert!(
            rel(stats.vf_step_size as f64, eta_c) <= 1e-5,
            "update {k}: η_v"
        );
        assert!(
            rel(stats.quadratic_form as f64, qa) <= 1e-5,
            "update {k}: q_π"
        );
        assert!(rel(stats.predicted_kl as f64, 0.5 * eta_a * eta_a * qa) <= 1e-5);
        let want = &xa * eta_a + &xc * eta_c;
        let got = &theta - flat(&l.net);
        assert!(
            (&got - &want).amax() <= 1e-3 * want.amax(),
            "update {k}: step {got} vs {want}"
        );
        // The regions differ, so one joint step would not do.
        assert!(
            rel(eta_a, eta_c) > 0.1,
            "update {k}: both parts took one step size"
        );
    }
}
