//! The `Learner` training a conv actor-critic (`ActorCritic<…, ConvEncoder>`), against truth
//! computed another way in each test:
//! - the loss gradient (conv weights and biases included) against central finite differences
//!   of the loss `mean[−Â log π(a|s) + c_v (R − V)² − c_e H]` evaluated here from the forward
//!   outputs (f32 network, f64 sums; h = 1e-2, tolerance 2e-3 of the largest entry);
//! - one ACKTR update against a step assembled here: the conv block's KFC factors from patches
//!   extracted here and its direction from the dense damped system
//!   `(Ā + π√λ I) ⊗ (S + √λ/π I)` solved by nalgebra's LU (1e-4 relative, f32 in the core), the
//!   dense blocks from an MLP `Curvature` fed the encoder's features, then
//!   `η = min(η_max, √(2δ/q))` with `q` summed over all blocks and `θ ← θ − (1−m)ηΔθ`;
//! - the MLP learner (the default `Identity` encoder) against hashes of its numbers printed by
//!   the code before the encoder existed (bit for bit);
//! - the KL that `target_kl` measures against the KL of the networks before and after, in f64;
//! - two ranks (threads) against one learner on the whole batch;
//! - checkpoints, blocks and stored forward passes bit for bit, the refusals, and learning
//!   MinAtar Breakout against a uniformly random policy measured in the same test.
//!
//! Mutations tried, each failing a test here: one output gradient ×1.1 in the `S` statistics,
//! one patch pixel ×1.1 in the `Ā` statistics, the encoder's damping ×1.01, its `q` left out of
//! `η`, one output gradient ×1.1 in the loss gradient, `∂L/∂x` from trunk 0 only, the
//! channel-last index transposed, its factors left out of the checkpoint or not declared
//! factorized on restore, stored forward passes of other encoder weights accepted or without
//! the observations, the old encoder recomputed from the new weights in the KL, its statistics
//! left out of the ranks' sums, its weights unchecked for overflow, `vf_kl_clip` accepted, the
//! MLP's statistics weight rounded differently, the encoder's gradient negated or its step
//! dropped (learning).
#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::{Arc, Barrier, Mutex};

use acktr_core::env::{Breakout, CartPole, Env, Pcg64, BREAKOUT_OBS};
use acktr_core::{
    log_softmax, standard_normal, Activation, ActorCritic, Backward, Config, Conv2d, ConvCurvature,
    ConvEncoder, Curvature, Encoder, Ending, Error, Forward, ForwardBlock, HeadKind, Learner,
    Optimizer, Rollout, Runner, SingleProcess, Step, UpdateStats,
};
use common::{rel_diff, CounterRng, Rng, Threads};
use nalgebra::{DMatrix, DVector};
use rand_core::{RngCore, SeedableRng};

// A small conv net: 2 channels 5×5, 3 filters 3×3 at stride 1 → 3×3, 27 features.
const C: usize = 2;
const HI: usize = 5;
const F: usize = 3;
const K: usize = 3;
const N: usize = C * K * K;
const HO: usize = 3;
const OBS: usize = F * HO * HO;
const IN: usize = C * HI * HI;
const HID: usize = 8;
const P: usize = 3;
type Enc = ConvEncoder<C, F, K, 1, N, HI, HI, HO, HO>;
type Net<const T: usize> = ActorCritic<OBS, HID, P, T, IN, Enc>;
type Learn<const T: usize> = Learner<OBS, HID, P, T, IN, Enc>;

/// A random network (tanh, categorical) with weights large enough that every part of the
/// gradient matters (the reference init's 0.01 policy head would hide the trunk's share).
fn network<const T: usize>(seed: u64) -> Net<T> {
    let mut rng = Rng(seed);
    let mut net = Net::<T>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    for s in net.param_slices_mut() {
        for v in s.iter_mut() {
            *v = 0.6 * rng.sym();
        }
    }
    net.log_std = [0.0; P];
    net
}

/// `n` transitions with random observations, actions, advantages and returns.
fn batch(seed: u64, n: usize) -> Vec<Step<IN, P>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let obs = core::array::from_fn(|_| rng.sym());
            let mut action = [0.0; P];
            action[(rng.next_u32() % P as u32) as usize] = 1.0;
            let mut s = Step::new(obs, action, 0.0, 0.0, Ending::Continues);
            s.advantage = 2.0 * rng.sym();
            s.ret = 2.0 * rng.sym();
            s
        })
        .collect()
}

/// Settings whose step is the plain mean loss gradient (no clipping, decay, normalisation).
fn sgd() -> Config {
    Config {
        optimizer: Optimizer::Sgd,
        max_grad_norm: 0.0,
        momentum: 0.0,
        eta_max: 0.1,
        ..Config::default()
    }
}

/// The loss of the module docs, in f64 from the network's f32 outputs.
fn loss<const T: usize>(net: &Net<T>, steps: &[Step<IN, P>], cfg: &Config) -> f64 {
    let mut sum = 0.0f64;
    for s in steps {
        let mut f = Forward::zeros();
        net.forward(&s.obs, &mut f);
        let mut lp = [0.0f32; P];
        let h = log_softmax(&f.z, &mut lp) as f64;
        let logp: f64 = (0..P).map(|i| s.action[i] as f64 * lp[i] as f64).sum();
        let d = s.ret as f64 - f.v as f64;
        sum += -(s.advantage as f64) * logp + cfg.value_coef as f64 * d * d
            - cfg.entropy_coef as f64 * h;
    }
    sum / steps.len() as f64
}

fn check_gradient<const T: usize>(seed: u64) {
    let cfg = sgd();
    let net = network::<T>(seed);
    let steps = batch(seed + 1, 7);
    let mut learner = Learn::<T>::new(cfg, net).unwrap();
    learner.update_steps(&steps, &mut Rng(0)).unwrap();
    let grad = *learner.direction();

    // Central differences of every parameter, the encoder's last (two slices: W, b).
    let h = 1e-2f32;
    let mut probe = net;
    let n_slices = net.param_slices().len();
    let mut worst = (0.0f64, 0usize, 0usize);
    let scale = grad
        .param_slices()
        .iter()
        .flat_map(|s| s.iter())
        .fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    let mut conv_entries = 0;
    for i in 0..n_slices {
        for j in 0..net.param_slices()[i].len() {
            let x0 = net.param_slices()[i][j];
            probe.param_slices_mut()[i][j] = x0 + h;
            let up = loss(&probe, &steps, &cfg);
            probe.param_slices_mut()[i][j] = x0 - h;
            let down = loss(&probe, &steps, &cfg);
            probe.param_slices_mut()[i][j] = x0;
            let fd = (up - down) / (2.0 * h as f64);
            let got = grad.param_slices()[i][j] as f64;
            let err = (fd - got).abs();
            if err > worst.0 {
                worst = (err, i, j);
            }
            if i >= n_slices - 2 {
                conv_entries += 1;
            }
        }
    }
    assert_eq!(conv_entries, F * (N + 1));
    assert!(
        worst.0 <= 2e-3 * scale,
        "T={T}: slice {} entry {}: error {} (scale {scale})",
        worst.1,
        worst.2,
        worst.0
    );
    // The encoder's gradient is not negligible (the check above sees it).
    let conv_max = grad
        .encoder
        .conv
        .w
        .as_flattened()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        conv_max as f64 > 0.05 * scale,
        "conv gradient {conv_max} vs {scale}"
    );
}

#[test]
fn loss_gradient_matches_finite_differences() {
    check_gradient::<1>(11);
    check_gradient::<2>(12);
}

#[test]
fn features_are_the_activated_convolution_flattened_channel_major() {
    let net = network::<1>(3);
    let obs: [f32; IN] = core::array::from_fn(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0);
    let mut f = Forward::zeros();
    net.forward(&obs, &mut f);
    // The conv of the CHW image, by the layer alone, then tanh, then `(f·Ho + p)·Wo + q`.
    let x: [[[f32; HI]; HI]; C] = core::array::from_fn(|c| {
        core::array::from_fn(|r| core::array::from_fn(|q| obs[(c * HI + r) * HI + q]))
    });
    let mut y = [[[0.0f32; HO]; HO]; F];
    net.encoder.conv.forward(&x, &mut y);
    for fi in 0..F {
        for p in 0..HO {
            for q in 0..HO {
                assert_eq!(
                    f.x[(fi * HO + p) * HO + q],
                    Activation::Tanh.apply(y[fi][p][q])
                );
            }
        }
    }
    // Channel-last input: the same numbers from the HWC layout of the same image.
    let mut last =
        ActorCritic::<OBS, HID, P, 1, IN, ConvEncoder<C, F, K, 1, N, HI, HI, HO, HO, true>>::zeros(
            Activation::Tanh,
            HeadKind::Categorical,
        );
    last.encoder.conv = net.encoder.conv;
    let hwc: [f32; IN] = core::array::from_fn(|i| {
        let (r, q, c) = (i / (HI * C), i / C % HI, i % C);
        obs[(c * HI + r) * HI + q]
    });
    let mut g = Forward::zeros();
    last.forward(&hwc, &mut g);
    assert_eq!(g.x, f.x);
}

/// The conv block's factors, from patches and Fisher output gradients computed here.
struct ConvFactors {
    a: DMatrix<f64>,
    s: DMatrix<f64>,
}

#[test]
fn one_update_is_the_kronecker_step_computed_another_way() {
    let seed = 5;
    let cfg = Config {
        cold_iters: 0,
        momentum: 0.5,
        kl_clip: 1e-4,
        eta_max: 0.5,
        damping: 0.01,
        ..Config::default()
    };
    let net = network::<1>(seed);
    let steps = batch(seed + 1, 9);
    let b = steps.len() as f64;

    // The loss gradient, by a first-order learner with the same weights (checked above).
    let mut first = Learn::<1>::new(sgd(), net).unwrap();
    first.update_steps(&steps, &mut Rng(0)).unwrap();
    let g = *first.direction();

    let rng_seed = 99;
    let mut learner = Learn::<1>::new(cfg, net).unwrap();
    let stats = learner.update_steps(&steps, &mut Rng(rng_seed)).unwrap();
    assert!(stats.natural);

    // The Fisher pass's draws, in the learner's order: per sample, the sampled action's
    // gradient, then the value target's normal draw.
    let mut rng = Rng(rng_seed);
    let t = (HO * HO) as f64;
    let mut conv = ConvFactors {
        a: DMatrix::zeros(N + 1, N + 1),
        s: DMatrix::zeros(F, F),
    };
    let mut dense = Curvature::<OBS, HID, P, 1>::new();
    for s in &steps {
        let mut f = Forward::zeros();
        net.forward(&s.obs, &mut f);
        let mut gz = [0.0f32; P];
        net.head.fisher_grad(&f.z, &net.log_std, &mut rng, &mut gz);
        let gv = -cfg.vf_fisher_coef * standard_normal(&mut rng);
        let mut bw = Backward::zeros();
        net.backward(&f, &gz, gv, &mut bw);
        dense.observe(&f, &bw, 1.0 / b as f32);
        let mut dx = [0.0f32; OBS];
        net.backward_obs(&bw, &mut dx);
        for p in 0..HO {
            for q in 0..HO {
                let mut ab = DVector::<f64>::zeros(N + 1);
                for c in 0..C {
                    for i in 0..K {
                        for j in 0..K {
                            ab[(c * K + i) * K + j] = s.obs[(c * HI + p + i) * HI + q + j] as f64;
                        }
                    }
                }
                ab[N] = 1.0;
                conv.a += &ab * ab.transpose() / (b * t);
                let gpq = DVector::<f64>::from_fn(F, |fi, _| {
                    let k = (fi * HO + p) * HO + q;
                    let y = f.x[k] as f64;
                    dx[k] as f64 * (1.0 - y * y)
                });
                conv.s += &gpq * gpq.transpose() / b;
            }
        }
    }

    // The learner's conv factors are these.
    let kfac: &ConvCurvature<N, F> = learner.curvature().encoder();
    let mut buf = vec![0.0f32; (N + 1) * (N + 1)];
    kfac.a().write_dense(&mut buf);
    let core_a = DMatrix::from_row_slice(N + 1, N + 1, &buf).map(|v| v as f64);
    let mut buf = vec![0.0f32; F * F];
    kfac.s().write_dense(&mut buf);
    let core_s = DMatrix::from_row_slice(F, F, &buf).map(|v| v as f64);
    assert!((&core_a - &conv.a).amax() <= 1e-5 * conv.a.amax());
    assert!((&core_s - &conv.s).amax() <= 1e-5 * conv.s.amax());

    // The conv block's direction: the damped Kronecker system, vec column-major over [∇W | ∇b].
    let lambda = cfg.damping as f64;
    let pi = ((conv.a.trace() / (N + 1) as f64) / (conv.s.trace() / F as f64)).sqrt();
    let ad = &conv.a + DMatrix::identity(N + 1, N + 1) * (pi * lambda.sqrt());
    let sd = &conv.s + DMatrix::identity(F, F) * (lambda.sqrt() / pi);
    let mut gv = DVector::<f64>::zeros(F * (N + 1));
    let gc = g.encoder.conv;
    for j in 0..=N {
        for fi in 0..F {
            gv[j * F + fi] = if j < N { gc.w[fi][j] } else { gc.b[fi] } as f64;
        }
    }
    let v = ad
        .kronecker(&sd)
        .lu()
        .solve(&gv)
        .expect("the damped system is regular");
    let dir = learner.direction();
    let vmax = v.amax();
    for j in 0..=N {
        for fi in 0..F {
            let got = if j < N {
                dir.encoder.conv.w[fi][j]
            } else {
                dir.encoder.conv.b[fi]
            };
            let want = v[j * F + fi];
            assert!(
                (got as f64 - want).abs() <= 1e-4 * vmax,
                "conv ({fi},{j}): {got} vs {want}"
            );
        }
    }
    let q_conv = gv.dot(&v);

    // The dense blocks: the MLP curvature on the encoder's features.
    dense.factorize(cfg.damping).unwrap();
    let mut gd = ActorCritic::<OBS, HID, P, 1>::zeros(Activation::Tanh, HeadKind::Categorical);
    for (d, s) in gd.param_slices_mut().into_iter().zip(g.param_slices()) {
        d.copy_from_slice(&s[..d.len()]);
    }
    let q_dense = dense.precondition(&mut gd).unwrap() as f64;
    for (i, (want, got)) in gd.param_slices().iter().zip(dir.param_slices()).enumerate() {
        let m = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (w, g) in want.iter().zip(got.iter()) {
            assert!((w - g).abs() <= 1e-4 * m, "dense slice {i}: {g} vs {w}");
        }
    }

    // The step size over all blocks, and the weights.
    let q = q_dense + q_conv;
    assert!(
        q_conv > 0.05 * q,
        "the conv block's share of q is {q_conv} of {q}"
    );
    let eta = (cfg.eta_max as f64).min((2.0 * cfg.kl_clip as f64 / q).sqrt());
    assert!(eta < cfg.eta_max as f64, "the trust region binds here");
    assert!(
        ((stats.quadratic_form as f64) - q).abs() <= 1e-4 * q,
        "q {} vs {q}",
        stats.quadratic_form
    );
    assert!(
        ((stats.step_size as f64) - eta).abs() <= 1e-4 * eta,
        "η {} vs {eta}",
        stats.step_size
    );
    let c = (1.0 - cfg.momentum as f64) * eta;
    for ((new, old), d) in learner
        .net
        .param_slices()
        .iter()
        .zip(net.param_slices())
        .zip(dir.param_slices())
    {
        for ((&n, &o), &d) in new.iter().zip(old.iter()).zip(d.iter()) {
            let want = o as f64 - c * d as f64;
            assert!(
                (n as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{n} vs {want}"
            );
        }
    }
    // And the conv weights moved along the test's own direction.
    for j in 0..N {
        for fi in 0..F {
            let want = net.encoder.conv.w[fi][j] as f64 - c * v[j * F + fi];
            let got = learner.net.encoder.conv.w[fi][j] as f64;
            assert!(
                (got - want).abs() <= 1e-4 * c * vmax + 1e-6,
                "conv w ({fi},{j})"
            );
        }
    }
}

/// Every number of the training state, in `visit_state_mut`'s order.
fn state<const T: usize>(l: &mut Learn<T>) -> Vec<f32> {
    let mut v = Vec::new();
    l.visit_state_mut(|s| v.extend_from_slice(s));
    v
}

#[test]
fn checkpoint_round_trip_gives_the_same_next_update_bit_for_bit() {
    let cfg = Config {
        cold_iters: 1,
        inverse_every: 2,
        ..Config::default()
    };
    let mut learner = Learn::<2>::new(cfg, network::<2>(7)).unwrap();
    let mut rng = Rng(1);
    for k in 0..4 {
        learner.update_steps(&batch(100 + k, 10), &mut rng).unwrap();
    }
    // The next update reuses the stored decomposition (4 − 1 = 3 is odd).
    let saved = state(&mut learner);
    let mut fresh = Learn::<2>::new(
        cfg,
        Net::<2>::zeros(Activation::Tanh, HeadKind::Categorical),
    )
    .unwrap();
    let mut it = saved.iter();
    fresh.visit_state_mut(|s| s.iter_mut().for_each(|v| *v = *it.next().unwrap()));
    assert!(it.next().is_none());
    fresh.set_updates(learner.updates(), learner.curvature().is_factorized());
    assert_eq!(fresh.net.encoder, learner.net.encoder);

    // The state holds the encoder: 3 copies of its parameters and its factors.
    let mut conv_factors = 0;
    ConvCurvature::<N, F>::new().visit_mut(|s| conv_factors += s.len());
    let mut mlp = Learner::<OBS, HID, P, 2>::new(
        cfg,
        ActorCritic::zeros(Activation::Tanh, HeadKind::Categorical),
    )
    .unwrap();
    let mut mlp_len = 0;
    mlp.visit_state_mut(|s| mlp_len += s.len());
    assert_eq!(saved.len(), mlp_len + 3 * F * (N + 1) + conv_factors);

    let next = batch(200, 10);
    learner.update_steps(&next, &mut Rng(9)).unwrap();
    fresh.update_steps(&next, &mut Rng(9)).unwrap();
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(state(&mut learner)), bits(state(&mut fresh)));
    assert_ne!(bits(state(&mut learner)), bits(saved));
}

#[test]
fn blocks_and_stored_forwards_give_the_same_weights_bit_for_bit() {
    let cfg = Config {
        cold_iters: 1,
        ..Config::default()
    };
    let net = network::<1>(8);
    let batches: Vec<_> = (0..3).map(|k| batch(300 + k, 11)).collect();
    let run = |blocks: usize| {
        let mut l = Learn::<1>::new(cfg, net).unwrap();
        let mut rng = Rng(4);
        for steps in &batches {
            match blocks {
                1 => l.update_steps_in_blocks::<1>(steps, &mut rng),
                4 => l.update_steps_in_blocks::<4>(steps, &mut rng),
                _ => l.update_steps_in_blocks::<16>(steps, &mut rng),
            }
            .unwrap();
        }
        l.net
    };
    let reference = run(4);
    assert_eq!(run(1), reference);
    assert_eq!(run(16), reference);

    // Stored forward passes (the encoder's outputs in `x`), as a rollout would keep them.
    const B: usize = 4;
    let forwards = |net: &Net<1>, steps: &[Step<IN, P>]| {
        steps
            .chunks(B)
            .map(|chunk| {
                let mut fb = ForwardBlock::<OBS, HID, P, 1, B>::zeros();
                let mut lanes = <Enc as Encoder<IN, OBS>>::lanes::<B>();
                for (b, s) in chunk.iter().enumerate() {
                    <Enc as Encoder<IN, OBS>>::load(&mut lanes, &mut fb.x, b, &s.obs);
                }
                net.encode_block(&lanes, &mut fb.x);
                net.forward_block(&mut fb);
                fb
            })
            .collect::<Vec<_>>()
    };
    let mut l = Learn::<1>::new(cfg, net).unwrap();
    let mut rng = Rng(4);
    for steps in &batches {
        // Blocks of other weights (the encoder's alone differ) are refused, nothing changed.
        let mut other = l.net;
        other.encoder.conv.b[0] += 0.01;
        let before = l.net;
        assert_eq!(
            l.update_steps_with_forwards(steps, &forwards(&other, steps), &mut rng),
            Err(Error::UpdateForwardMismatch)
        );
        assert_eq!(l.net, before);
        l.update_steps_with_forwards(steps, &forwards(&l.net, steps), &mut rng)
            .unwrap();
    }
    assert_eq!(l.net, reference);
}

#[test]
fn a_separate_critic_trust_region_is_refused() {
    // `vf_kl_clip` alone, and with what needs it (critic-only passes, a Euclidean critic).
    let clip = Config {
        vf_kl_clip: 0.01,
        ..Config::default()
    };
    let refused = [
        clip,
        Config {
            vf_iters: 3,
            ..clip
        },
        Config {
            vf_euclidean: true,
            ..clip
        },
    ];
    let want = Err(Error::ConfigInvalid(
        "vf_kl_clip must be 0 with a trainable encoder (it feeds the critic too)",
    ));
    let mut l = Learn::<2>::new(Config::default(), network::<2>(1)).unwrap();
    l.update_steps(&batch(1, 5), &mut Rng(1)).unwrap();
    let before = state(&mut l);
    for cfg in refused {
        assert_eq!(Learn::<2>::new(cfg, network::<2>(1)).map(|_| ()), want);
        assert_eq!(l.set_config(cfg), want);
        assert_eq!(l.reset(cfg), want);
        // Nothing changed: settings, weights, momentum, statistics, update count.
        assert_eq!(l.config(), &Config::default());
        assert_eq!(l.updates(), 1);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&state(&mut l)), bits(&before));
        // The MLP learner with separate trunks takes it.
        let mlp = ActorCritic::<OBS, HID, P, 2>::zeros(Activation::Tanh, HeadKind::Categorical);
        assert!(Learner::new(cfg, mlp).is_ok());
    }
}

#[test]
fn a_step_that_would_overflow_the_encoder_changes_no_weight_or_momentum() {
    let cfg = Config {
        momentum: 0.9,
        ..sgd()
    };
    let mut l = Learn::<1>::new(cfg, network::<1>(2)).unwrap();
    l.update_steps(&batch(1, 6), &mut Rng(1)).unwrap();
    // One conv weight and its momentum at the edge of f32: the next step overflows there only.
    let np = Net::<1>::num_params();
    let conv_w0 = np - F * (N + 1);
    let mut k = 0;
    l.visit_state_mut(|s| {
        for v in s.iter_mut() {
            if k == conv_w0 {
                *v = -f32::MAX;
            }
            if k == 2 * np + conv_w0 {
                *v = f32::MAX;
            }
            k += 1;
        }
    });
    let before = state(&mut l);
    assert_eq!(
        l.update_steps(&batch(2, 6), &mut Rng(2)),
        Err(Error::UpdateNonFiniteGradient)
    );
    let after = state(&mut l);
    // Weights and momentum (the first and third copies) as they were, bit for bit.
    for range in [0..np, 2 * np..3 * np] {
        let b: Vec<u32> = before[range.clone()].iter().map(|v| v.to_bits()).collect();
        let a: Vec<u32> = after[range].iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
}

/// Non-finite factor statistics: the update fails and the statistics start afresh, in place
/// (no curvature-sized temporary, which a microcontroller's stack could not hold): the same
/// state as a new learner's factors, not factorized, weights and momentum untouched; the next
/// update succeeds.
#[test]
fn non_finite_statistics_start_afresh() {
    let mut l = Learn::<1>::new(Config::default(), network::<1>(4)).unwrap();
    l.update_steps(&batch(1, 6), &mut Rng(1)).unwrap();
    let np = Net::<1>::num_params();
    let total = state(&mut l).len();
    let mut k = 0;
    l.visit_state_mut(|s| {
        for v in s.iter_mut() {
            // Every number of the factors (after the three nets, before the η scale).
            if (3 * np..total - 1).contains(&k) {
                *v = f32::INFINITY;
            }
            k += 1;
        }
    });
    let before = state(&mut l);
    assert_eq!(
        l.update_steps(&batch(2, 6), &mut Rng(2)),
        Err(Error::UpdateNonFiniteCurvature)
    );
    assert_eq!(*l.curvature(), Curvature::new());
    assert!(!l.curvature().is_factorized());
    let after = state(&mut l);
    for range in [0..np, 2 * np..3 * np] {
        let b: Vec<u32> = before[range.clone()].iter().map(|v| v.to_bits()).collect();
        let a: Vec<u32> = after[range].iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
    l.update_steps(&batch(3, 6), &mut Rng(3)).unwrap();
    assert!(l.net.is_finite());
}

#[test]
fn memory_of_the_breakout_learner_is_a_constant() {
    // A constant (a `const` item compiles), and the MLP learner's bytes plus the encoder's
    // training bytes (weights, gradient, momentum, factors: `Conv2d::TRAIN_BYTES`) and nothing
    // else. `docs/conv.md` gives the `thumbv7em-none-eabihf` figure (no explicit inverses).
    const BYTES: usize = core::mem::size_of::<BreakoutLearner>();
    let mlp = core::mem::size_of::<Learner<BF, BH, 3, 1>>();
    let conv = Conv2d::<4, 8, 4, 2, 64>::TRAIN_BYTES;
    assert_eq!(BYTES, mlp + conv);
    println!(
        "Breakout conv learner: {BYTES} bytes on this host ({} parameters; conv layer {conv})",
        BreakoutNet::num_params()
    );
}

// MinAtar Breakout: 10×10×4 channel-last; 8 filters 4×4 at stride 2 → 8×4×4 = 128 features.
type BreakoutEnc = ConvEncoder<4, 8, 4, 2, 64, 10, 10, 4, 4, true>;
const BF: usize = 128;
const BH: usize = 32;
type BreakoutNet = ActorCritic<BF, BH, 3, 1, BREAKOUT_OBS, BreakoutEnc>;
type BreakoutLearner = Learner<BF, BH, 3, 1, BREAKOUT_OBS, BreakoutEnc>;

/// Mean return of `episodes` episodes of `policy` (from the observation to an action index).
fn mean_return(
    episodes: u32,
    seed: u64,
    mut policy: impl FnMut(&[f32; BREAKOUT_OBS]) -> usize,
) -> f32 {
    let mut env = Breakout::default();
    let mut total = 0.0;
    for e in 0..episodes {
        let mut obs = env.reset(Some(seed + e as u64));
        loop {
            let a = policy(&obs);
            let tr = env.step(acktr_core::env::Action::Discrete(a)).unwrap();
            total += tr.reward;
            obs = tr.obs;
            if tr.terminated || tr.truncated {
                break;
            }
        }
    }
    total / episodes as f32
}

/// ACKTR trains the conv net on MinAtar Breakout (the core's bit-exact port) from scratch in
/// 300k env steps (16 envs × 5 steps per update): 100 sampled episodes of the trained policy
/// against 100 of a uniformly random one, both measured here. Seed 0 reaches 6.1 against 0.34
/// (4–8 s of training in release on a shared 2-core x86-64); the threshold leaves room for
/// float differences between machines. The kernel 4 at stride 2 reads every cell
/// (`(10 − 4) mod 2 = 0`); a kernel 3 at stride 2 never reads row 9, the paddle's, and stays
/// near 1. The return alone does not
/// show that the encoder learns (its random ReLU features serve a trained trunk well: put back
/// to its initial weights after every update it reaches 4.9–5.5 on seeds 0–3, against
/// 5.6–9.0 trained); the filters must have moved too, and the gradient and Kronecker tests
/// above check the encoder's own step.
#[test]
fn a_conv_policy_learns_breakout() {
    const E: usize = 16;
    const STEPS: usize = 5;
    const ENV_STEPS: u64 = 300_000;
    let seed = 0;
    let mut rng = Pcg64::seed_from_u64(seed);
    let net = BreakoutNet::new(Activation::Relu, HeadKind::Categorical, &mut rng);
    let cfg = Config::default();
    let init = net.encoder.conv;
    let mut learner = BreakoutLearner::new(cfg, net).unwrap();
    let mut envs: [Breakout; E] = core::array::from_fn(|_| Breakout::default());
    let mut runner = Runner::new(&mut envs, seed);
    let mut rollout = Rollout::<BREAKOUT_OBS, 3, E, STEPS>::new();
    let start = std::time::Instant::now();
    while runner.env_steps() < ENV_STEPS {
        runner
            .collect(
                &learner.net,
                &mut envs,
                &mut rollout,
                cfg.gamma,
                cfg.gae_lambda,
                &mut rng,
                |_| {},
            )
            .unwrap();
        learner.update(&rollout, &mut rng).unwrap();
    }
    let train = start.elapsed();

    let mut r = Pcg64::seed_from_u64(1);
    let random = mean_return(100, 1000, |_| (r.next_u32() % 3) as usize);
    let mut r = Pcg64::seed_from_u64(2);
    let trained = mean_return(100, 1000, |o| {
        let (a, _, _) = learner.net.act(o, &mut r);
        a.iter().position(|&v| v == 1.0).unwrap_or(0)
    });
    // How far the conv filters moved from their initialisation, relative to their size.
    let conv = learner.net.encoder.conv;
    let norm = |w: &[[f32; 64]; 8]| w.as_flattened().iter().map(|v| v * v).sum::<f32>().sqrt();
    let mut delta = conv.w;
    for (d, w0) in delta
        .as_flattened_mut()
        .iter_mut()
        .zip(init.w.as_flattened())
    {
        *d -= w0;
    }
    let moved = norm(&delta) / norm(&init.w);
    println!(
        "Breakout: random {random:.2}, trained {trained:.2} after {ENV_STEPS} env steps \
         ({} updates, {:.1} s training); conv filters moved by {moved:.3} of their norm",
        learner.updates(),
        train.as_secs_f32()
    );
    assert!(
        trained >= 4.0 && trained >= 5.0 * random,
        "random {random}, trained {trained}"
    );
    assert!(
        moved > 0.2,
        "the conv filters moved by {moved} of their norm"
    );
    // The time bound holds for optimised builds (a debug build is ~30× slower).
    if !cfg!(debug_assertions) {
        assert!(train.as_secs() < 60, "training took {train:?}");
    }
}

/// FNV-1a over the bits of every number given.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, v: f32) {
        for b in v.to_bits().to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn stats(&mut self, s: &UpdateStats) {
        for v in [
            s.policy_loss,
            s.value_loss,
            s.entropy,
            s.grad_norm,
            s.step_size,
            s.quadratic_form,
            s.predicted_kl,
            s.vf_step_size,
            s.measured_kl,
            s.eta_scale,
            s.value_loss_after,
        ] {
            self.add(v);
        }
    }
}

/// `n` random transitions of a 6-number observation (categorical or Gaussian actions).
fn mlp_batch(seed: u64, n: usize, categorical: bool) -> Vec<Step<6, 3>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let obs = core::array::from_fn(|_| rng.sym());
            let mut a = [0.0; 3];
            if categorical {
                a[(rng.next_u32() % 3) as usize] = 1.0;
            } else {
                a = core::array::from_fn(|_| rng.sym());
            }
            let mut s = Step::new(obs, a, 0.0, 0.0, Ending::Continues);
            s.advantage = 2.0 * rng.sym();
            s.ret = 2.0 * rng.sym();
            s
        })
        .collect()
}

/// Five updates of an MLP learner (the default `Identity` encoder) through entry point `mode`
/// (0 per block of the default size, 1 blocks of 4, 2 stored forward passes, 3 data-parallel
/// on one rank); the hash of every statistic, a value and an action after each, and the whole
/// training state at the end.
fn mlp_hash<const T: usize>(head: HeadKind, act: Activation, cfg: Config, mode: u8) -> u64 {
    const O: usize = 6;
    const H: usize = 8;
    let mut rng = Rng(3);
    let net = ActorCritic::<O, H, 3, T>::new(act, head, &mut rng);
    let mut l = Learner::new(cfg, net).unwrap();
    let mut h = Fnv::new();
    for k in 0..5 {
        let st = mlp_batch(10 + k, 13 + k as usize, head == HeadKind::Categorical);
        let s = match mode {
            0 => l.update_steps(&st, &mut rng),
            1 => l.update_steps_in_blocks::<4>(&st, &mut rng),
            2 => {
                let f: Vec<_> = st
                    .chunks(4)
                    .map(|c| {
                        let mut fb = ForwardBlock::<O, H, 3, T, 4>::zeros();
                        for (b, s) in c.iter().enumerate() {
                            fb.set_obs(b, &s.obs);
                        }
                        l.net.forward_block(&mut fb);
                        fb
                    })
                    .collect();
                l.update_steps_with_forwards(&st, &f, &mut rng)
            }
            _ => l.update_data_parallel::<4>(&st, None, &mut rng, &mut SingleProcess),
        }
        .unwrap();
        h.stats(&s);
        h.add(l.net.value(&st[0].obs));
        l.net
            .act_deterministic(&st[0].obs)
            .iter()
            .for_each(|&v| h.add(v));
    }
    l.visit_state_mut(|s| s.iter().for_each(|&v| h.add(v)));
    h.0
}

/// 30 updates of CartPole through the runner (episode returns hashed too).
fn cartpole_hash() -> u64 {
    const E: usize = 4;
    let mut rng = Pcg64::seed_from_u64(5);
    let net = ActorCritic::<4, 16, 2, 1>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let cfg = Config {
        cold_iters: 2,
        ..Config::default()
    };
    let mut l = Learner::new(cfg, net).unwrap();
    let mut envs: [CartPole; E] = core::array::from_fn(|_| CartPole::default());
    let mut runner = Runner::new(&mut envs, 7);
    let mut ro = Rollout::<4, 2, E, 5>::new();
    let mut h = Fnv::new();
    for _ in 0..30 {
        runner
            .collect(
                &l.net,
                &mut envs,
                &mut ro,
                cfg.gamma,
                cfg.gae_lambda,
                &mut rng,
                |e| h.add(e.ret),
            )
            .unwrap();
        let s = l.update(&ro, &mut rng).unwrap();
        h.stats(&s);
    }
    l.visit_state_mut(|s| s.iter().for_each(|&v| h.add(v)));
    h.0
}

/// The MLP learner (every existing user: the `Identity` encoder by default) computes, bit for
/// bit, what it computed before the encoder existed: the hashes below were printed by this
/// same code built against the branch point, commit 29a2d7f, and cover both trunk layouts,
/// both heads, ReLU and tanh, every entry point, `target_kl`, `stat_stride`,
/// `normalize_advantage`, `vf_kl_clip` with critic-only passes (`vf_iters`, `vf_stride`),
/// `vf_euclidean`, SGD, RMSprop and the runner.
#[test]
fn the_identity_encoder_leaves_every_mlp_update_bit_for_bit_as_before() {
    let base = Config {
        cold_iters: 1,
        inverse_every: 2,
        ..Config::default()
    };
    let sep = Config {
        vf_kl_clip: 0.01,
        vf_iters: 3,
        vf_stride: 2,
        stat_stride: 2,
        normalize_advantage: true,
        ..base
    };
    let (cat, gauss, tanh, relu) = (
        HeadKind::Categorical,
        HeadKind::Gaussian,
        Activation::Tanh,
        Activation::Relu,
    );
    let sgd = Config {
        optimizer: Optimizer::Sgd,
        ..base
    };
    let hashes = [
        mlp_hash::<1>(
            cat,
            tanh,
            Config {
                target_kl: 0.01,
                ..base
            },
            0,
        ),
        mlp_hash::<1>(cat, relu, base, 1),
        mlp_hash::<1>(cat, tanh, base, 2),
        mlp_hash::<2>(gauss, tanh, sep, 0),
        mlp_hash::<2>(
            gauss,
            tanh,
            Config {
                vf_euclidean: true,
                ..sep
            },
            3,
        ),
        mlp_hash::<2>(gauss, tanh, sgd, 0),
        mlp_hash::<1>(cat, tanh, Config::a2c(), 0),
        cartpole_hash(),
    ];
    assert_eq!(
        hashes,
        [
            0x2d2f_14ac_5874_4afe,
            0xee84_ea4b_ff67_0b11,
            0xda01_fe4c_d827_d053,
            0x0d60_14de_575b_f1a3,
            0xcad7_6e18_d86c_429d,
            0x5336_67ca_da9a_bae8,
            0x96d8_62ef_e7eb_6ff3,
            0x523c_d4d9_16d4_3a49,
        ]
    );
}

/// `KL(π_old ‖ π_new)` of the categorical policies of two networks on one observation, in f64
/// from their logits (log-softmax computed here).
fn categorical_kl<const T: usize>(old: &Net<T>, new: &Net<T>, obs: &[f32; IN]) -> f64 {
    let log_softmax = |net: &Net<T>| {
        let mut f = Forward::zeros();
        net.forward(obs, &mut f);
        let z = f.z.map(f64::from);
        let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        z.map(|v| v - lse)
    };
    let (lo, ln) = (log_softmax(old), log_softmax(new));
    (0..P).map(|i| lo[i].exp() * (lo[i] - ln[i])).sum()
}

/// With `target_kl` the update measures the KL of its own step, recomputing the policy before
/// it (encoder included) from `θ + u`: the mean KL between the networks before and after,
/// computed here from the two networks' outputs.
#[test]
fn the_measured_kl_is_the_kl_between_the_policies_before_and_after() {
    let cfg = Config {
        cold_iters: 0,
        kl_clip: 0.01,
        target_kl: 1e-3,
        ..Config::default()
    };
    let mut l = Learn::<1>::new(cfg, network::<1>(21)).unwrap();
    for k in 0..3 {
        let steps = batch(400 + k, 12);
        let before = l.net;
        let stats = l.update_steps(&steps, &mut Rng(k)).unwrap();
        let want = steps
            .iter()
            .map(|s| categorical_kl(&before, &l.net, &s.obs))
            .sum::<f64>()
            / steps.len() as f64;
        let got = f64::from(stats.measured_kl);
        assert!(
            want > 1e-5,
            "update {k}: the step moved the policy by {want}"
        );
        assert!(
            (got - want).abs() <= 2e-3 * want + 1e-7,
            "update {k}: measured {got} vs {want}"
        );
        // The encoder's share is in it: the same step with the encoder held still differs.
        let mut held = l.net;
        held.encoder = before.encoder;
        let without = steps
            .iter()
            .map(|s| categorical_kl(&before, &held, &s.obs))
            .sum::<f64>()
            / steps.len() as f64;
        assert!(
            (without - want).abs() > 0.01 * want,
            "update {k}: {without} vs {want}"
        );
    }
}

/// `max over slices of ‖a − b‖₂ / ‖b‖₂` of two learners' states.
fn state_rel_diff(a: &mut Learn<2>, b: &mut Learn<2>) -> f64 {
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    a.visit_state_mut(|s| sa.push(s.to_vec()));
    b.visit_state_mut(|s| sb.push(s.to_vec()));
    rel_diff(&sa, &sb)
}

/// Two threads joined by an in-memory collective, each with half of every batch, take the
/// update one learner takes from the whole batch, and end bit-identical to each other. Up to
/// the order of the sums: 1e-4 in relative norm per state slice (the encoder's weights,
/// momentum and factors among them); most slices agree to 1e-6, the value bias's one-number
/// momentum drifts to 1.2e-5 by the fourth update. A rank that left out the encoder's
/// statistics or gradient from the sums would be off by ~1 (half the samples).
#[test]
fn two_ranks_update_the_encoder_as_one_learner_on_the_whole_batch() {
    const HALF: usize = 10;
    let cfg = Config {
        cold_iters: 1,
        inverse_every: 2,
        normalize_advantage: true,
        target_kl: 0.002,
        weight_decay: 3e-4,
        ..Config::default()
    };
    let start = Learn::<2>::new(cfg, network::<2>(31)).unwrap();
    let slots = Arc::new(Mutex::new(vec![Vec::new(); 2]));
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|rank| {
            let mut coll = Threads {
                rank,
                slots: slots.clone(),
                barrier: barrier.clone(),
            };
            let mut single = start.clone();
            std::thread::spawn(move || {
                let mut dp = single.clone();
                let mut out = Vec::new();
                for u in 0..4 {
                    let all = batch(500 + u, 2 * HALF);
                    let mine = &all[rank * HALF..][..HALF];
                    // Rank 1's Fisher targets start where rank 0's samples' end.
                    let mut first = 0;
                    if rank == 1 {
                        let mut rng = CounterRng { key: u, next: 0 };
                        let mut probe = dp.clone();
                        probe
                            .update_data_parallel::<4>(
                                &all[..HALF],
                                None,
                                &mut rng,
                                &mut SingleProcess,
                            )
                            .unwrap();
                        first = rng.next;
                    }
                    let mut rng = CounterRng {
                        key: u,
                        next: first,
                    };
                    dp.update_data_parallel::<4>(mine, None, &mut rng, &mut coll)
                        .unwrap();
                    let mut rng = CounterRng { key: u, next: 0 };
                    single.update_steps_in_blocks::<4>(&all, &mut rng).unwrap();
                    out.push((dp.clone(), single.clone()));
                }
                out
            })
        })
        .collect();
    let mut results: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    let r1 = results.pop().unwrap();
    for (u, ((mut dp0, mut one), (mut dp1, _))) in
        results.pop().unwrap().into_iter().zip(r1).enumerate()
    {
        assert_eq!(
            state(&mut dp0),
            state(&mut dp1),
            "update {u}: the ranks differ"
        );
        let d = state_rel_diff(&mut dp0, &mut one);
        assert!(
            d <= 1e-4,
            "update {u}: data-parallel vs one learner: {d:.2e}"
        );
        assert_ne!(dp0.net.encoder, start.net.encoder);
    }
}
