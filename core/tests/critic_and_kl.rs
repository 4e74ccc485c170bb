//! The continuous-control options of `Learner::update` and its failure guarantee, each against
//! a truth computed here another way:
//! - `normalize_advantage`: the same update as a learner fed advantages standardised in f64 by
//!   the test (`(Â − mean)/(std + 1e-8)`, population std);
//! - `vf_iters`: the critic-only passes leave every actor parameter (with and without momentum)
//!   bit for bit as one pass does,
//!   and lower the batch's value loss, recomputed here in f64 from forward passes;
//! - `target_kl`: the reported measured KL equals `mean KL(π_old ‖ π_new)` over the batch,
//!   computed in f64 from the policies before and after (closed forms written out here), and the
//!   scale on `η_max` moves by 1.5 the documented way;
//! - a failed update (out-of-range input, a step that would overflow) leaves the weights,
//!   momentum, statistics and counters as they were, and the next clean batch gives bit for bit
//!   the update of a learner that never saw the bad one.
//!
//! Tolerances: 1e-5 of the largest magnitude for f32-vs-f64 comparisons.

mod common;

use acktr_core::{
    Activation, ActorCritic, Config, Ending, Error, Forward, HeadKind, Learner, Optimizer, Rollout,
    Step,
};
use common::Rng;

const N: usize = 24;
const OBS: usize = 3;
const H: usize = 6;
const P: usize = 2;

type Net = ActorCritic<OBS, H, P, 2>;

fn batch(rng: &mut Rng, head: HeadKind, adv_offset: f32) -> Rollout<OBS, P, 1, N> {
    let mut r = Rollout::new();
    for _ in 0..N {
        let obs = [2.0 * rng.sym(), 2.0 * rng.sym(), 0.5 + rng.sym()];
        let mut a = [0.0; P];
        match head {
            HeadKind::Categorical => a[(rng.0 % P as u64) as usize] = 1.0,
            HeadKind::Gaussian => a.iter_mut().for_each(|v| *v = rng.sym()),
        }
        let mut s = Step::new(obs, a, 0.0, 0.0, Ending::Continues);
        s.advantage = adv_offset + 3.0 * rng.sym();
        s.ret = 5.0 + 4.0 * rng.sym();
        r.push([s]).unwrap();
    }
    r
}

fn net(head: HeadKind, seed: u64) -> Net {
    let mut rng = Rng(seed);
    let mut n = Net::new(Activation::Tanh, head, &mut rng);
    n.pi.w.iter_mut().flatten().for_each(|w| *w = rng.sym());
    if head == HeadKind::Gaussian {
        n.log_std.iter_mut().for_each(|l| *l = 0.4 * rng.sym());
    }
    n
}

fn params(n: &Net) -> Vec<f32> {
    n.param_slices().iter().flat_map(|s| s.to_vec()).collect()
}

/// The actor's parameters (trunk 0, policy head, log-std).
fn actor(n: &Net) -> Vec<f32> {
    let t = &n.trunks[0];
    [
        t.l1.w.as_flattened(),
        &t.l1.b,
        t.l2.w.as_flattened(),
        &t.l2.b,
    ]
    .into_iter()
    .chain([n.pi.w.as_flattened(), &n.pi.b[..], &n.log_std[..]])
    .flat_map(|s| s.to_vec())
    .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn natural() -> Config {
    Config {
        cold_iters: 0,
        inverse_every: 1,
        kl_clip: 1e-3,
        ..Config::default()
    }
}

#[test]
fn normalized_advantages_are_standardised_advantages() {
    for head in [HeadKind::Categorical, HeadKind::Gaussian] {
        for cfg in [
            natural(),
            Config {
                optimizer: Optimizer::Sgd,
                eta_max: 0.05,
                ..Config::default()
            },
        ] {
            let r = batch(&mut Rng(1), head, 7.0);
            let n = r.samples().count() as f64;
            let mean = r.samples().map(|s| s.advantage as f64).sum::<f64>() / n;
            let var = r
                .samples()
                .map(|s| (s.advantage as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let mut standardised = Rollout::<OBS, P, 1, N>::new();
            for s in r.samples() {
                let mut s = *s;
                s.advantage = ((s.advantage as f64 - mean) / (var.sqrt() + 1e-8)) as f32;
                standardised.push([s]).unwrap();
            }
            let on = Config {
                normalize_advantage: true,
                ..cfg
            };
            let mut a = Learner::new(on, net(head, 2)).unwrap();
            let mut b = Learner::new(cfg, net(head, 2)).unwrap();
            let sa = a.update(&r, &mut Rng(3)).unwrap();
            let sb = b.update(&standardised, &mut Rng(3)).unwrap();
            let (pa, pb) = (params(&a.net), params(&b.net));
            let scale = pb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max_abs_diff(&pa, &pb) <= 1e-5 * scale, "{head:?} {cfg:?}");
            assert!(
                (sa.policy_loss - sb.policy_loss).abs() <= 1e-5 * sb.policy_loss.abs().max(1.0)
            );
            // And it changes the update: the raw advantages have mean 7.
            let mut c = Learner::new(cfg, net(head, 2)).unwrap();
            c.update(&r, &mut Rng(3)).unwrap();
            assert!(max_abs_diff(&params(&c.net), &pb) > 1e-4);
        }
    }
}

/// `mean((R − V)²)` over the batch, in f64 from forward passes.
fn value_loss(n: &Net, r: &Rollout<OBS, P, 1, N>) -> f64 {
    let mut f = Forward::zeros();
    r.samples()
        .map(|s| {
            n.forward(&s.obs, &mut f);
            (s.ret as f64 - f.v as f64).powi(2)
        })
        .sum::<f64>()
        / N as f64
}

#[test]
fn critic_passes_leave_the_actor_and_fit_the_critic() {
    // With momentum the actor's velocity must not be spent again by each critic pass.
    for momentum in [0.0, 0.9] {
        critic_passes_with(momentum);
    }
}

fn critic_passes_with(momentum: f32) {
    let cfg = Config {
        vf_kl_clip: 0.05,
        eta_max: 1.0,
        momentum,
        ..natural()
    };
    let mut many = Learner::new(Config { vf_iters: 8, ..cfg }, net(HeadKind::Gaussian, 4)).unwrap();
    let mut rng = Rng(5);
    for k in 0..4 {
        // From the same state, one pass and eight move the actor alike. (Later updates differ:
        // the first layers' damping split reads the critic's factor too.)
        let mut one = many.clone();
        one.set_config(cfg).unwrap();
        let r = batch(&mut rng, HeadKind::Gaussian, 0.0);
        let before = value_loss(&many.net, &r);
        one.update(&r, &mut Rng(6 + k)).unwrap();
        let s = many.update(&r, &mut Rng(6 + k)).unwrap();
        assert_eq!(
            actor(&one.net),
            actor(&many.net),
            "update {k}, momentum {momentum}: the critic passes moved the actor"
        );
        let (after_one, after) = (value_loss(&one.net, &r), value_loss(&many.net, &r));
        assert!(
            after < after_one && after < 0.9 * before,
            "update {k}: value loss {before} -> {after_one} (1 pass), {after} (8 passes)"
        );
        assert!(s.value_loss_after > 0.0 && (s.value_loss_after as f64) < before);
    }
    // Eight passes fit the batch better than one from the same start.
    let r = batch(&mut rng, HeadKind::Gaussian, 0.0);
    let mut a = Learner::new(cfg, net(HeadKind::Gaussian, 7)).unwrap();
    let mut b = Learner::new(Config { vf_iters: 8, ..cfg }, net(HeadKind::Gaussian, 7)).unwrap();
    a.update(&r, &mut Rng(9)).unwrap();
    b.update(&r, &mut Rng(9)).unwrap();
    assert!(value_loss(&b.net, &r) < value_loss(&a.net, &r));
    // More than one pass without a critic trust region is refused.
    assert_eq!(
        Config {
            vf_iters: 2,
            vf_kl_clip: 0.0,
            ..cfg
        }
        .validate(),
        Err(Error::ConfigInvalid(
            "vf_iters must be >= 1, and more than 1 needs vf_kl_clip > 0"
        ))
    );
    // A critic trust region needs separate trunks.
    let shared =
        ActorCritic::<OBS, H, P, 1>::new(Activation::Tanh, HeadKind::Gaussian, &mut Rng(10));
    let mut l = Learner::new(cfg, shared).unwrap();
    let mut r1 = Rollout::<OBS, P, 1, N>::new();
    for s in r.samples() {
        r1.push([*s]).unwrap();
    }
    assert!(matches!(
        l.update(&r1, &mut Rng(0)),
        Err(Error::ConfigInvalid(_))
    ));
}

/// `KL(π_old ‖ π_new)` of one state in f64: categorical from f64 softmaxes, Gaussian from the
/// closed form `log(σ₁/σ₀) + (σ₀² + (μ₀ − μ₁)²)/(2σ₁²) − ½` per dimension.
fn kl64(head: HeadKind, z0: &[f32; P], ls0: &[f32; P], z1: &[f32; P], ls1: &[f32; P]) -> f64 {
    match head {
        HeadKind::Categorical => {
            let soft = |z: &[f32; P]| {
                let m = z.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
                let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|v| v / s).collect::<Vec<_>>()
            };
            let (p, q) = (soft(z0), soft(z1));
            p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum()
        }
        HeadKind::Gaussian => (0..P)
            .map(|i| {
                let (s0, s1) = ((ls0[i] as f64).exp(), (ls1[i] as f64).exp());
                let d = z0[i] as f64 - z1[i] as f64;
                (s1 / s0).ln() + (s0 * s0 + d * d) / (2.0 * s1 * s1) - 0.5
            })
            .sum(),
    }
}

#[test]
fn measured_kl_is_the_kl_of_the_step_and_adapts_the_scale() {
    for head in [HeadKind::Categorical, HeadKind::Gaussian] {
        for optimizer in [Optimizer::Acktr, Optimizer::Sgd] {
            let cfg = Config {
                optimizer,
                eta_max: if optimizer == Optimizer::Sgd {
                    0.3
                } else {
                    0.25
                },
                target_kl: 1e-3,
                ..natural()
            };
            let mut l = Learner::new(cfg, net(head, 11)).unwrap();
            let mut rng = Rng(12);
            let mut scale = 1.0f64;
            for k in 0..6 {
                let r = batch(&mut rng, head, 0.0);
                let old = l.net;
                let s = l.update(&r, &mut Rng(13 + k)).unwrap();
                let (mut f0, mut f1) = (Forward::zeros(), Forward::zeros());
                let want = r
                    .samples()
                    .map(|st| {
                        old.forward(&st.obs, &mut f0);
                        l.net.forward(&st.obs, &mut f1);
                        kl64(head, &f0.z, &old.log_std, &f1.z, &l.net.log_std)
                    })
                    .sum::<f64>()
                    / N as f64;
                let got = s.measured_kl as f64;
                assert!(
                    (got - want).abs() <= 1e-4 * want.max(1e-6) + 1e-7,
                    "{head:?} {optimizer:?} update {k}: measured KL {got} vs {want}"
                );
                // The documented rule, from the KL just checked.
                if want > 2e-3 * (1.0 + 1e-4) {
                    scale /= 1.5;
                } else if want < 0.5e-3 * (1.0 - 1e-4) {
                    scale *= 1.5;
                }
                assert!(
                    (s.eta_scale as f64 - scale).abs() <= 1e-6 * scale,
                    "{head:?} {optimizer:?} update {k}: scale {} vs {scale}",
                    s.eta_scale
                );
            }
        }
    }
    // The scale multiplies η_max: an SGD step with scale s is s times as long.
    let cfg = Config {
        optimizer: Optimizer::Sgd,
        eta_max: 0.01,
        momentum: 0.0,
        max_grad_norm: 0.0,
        target_kl: 1e3, // any step is "too small": ×1.5
        ..Config::default()
    };
    let r = batch(&mut Rng(20), HeadKind::Gaussian, 0.0);
    let mut l = Learner::new(cfg, net(HeadKind::Gaussian, 21)).unwrap();
    assert_eq!(l.update(&r, &mut Rng(0)).unwrap().eta_scale, 1.5);
    assert_eq!(l.update(&r, &mut Rng(0)).unwrap().step_size, 0.01 * 1.5);
}

/// Every number of the training state except the direction buffer (scratch).
fn state(l: &mut Learner<OBS, H, P, 2>) -> Vec<f32> {
    let n = Net::num_params();
    let mut v = Vec::new();
    l.visit_state_mut(|s| v.extend_from_slice(s));
    v.drain(n..2 * n);
    v
}

#[test]
fn a_failed_update_changes_nothing_and_the_next_batch_learns() {
    for cfg in [
        natural(),
        Config {
            vf_kl_clip: 0.01,
            vf_iters: 3,
            target_kl: 1e-3,
            normalize_advantage: true,
            ..natural()
        },
    ] {
        let mut rng = Rng(30);
        let warm: Vec<_> = (0..3)
            .map(|_| batch(&mut rng, HeadKind::Gaussian, 0.0))
            .collect();
        let clean = batch(&mut rng, HeadKind::Gaussian, 0.0);
        let mut l = Learner::new(cfg, net(HeadKind::Gaussian, 31)).unwrap();
        for (k, r) in warm.iter().enumerate() {
            l.update(r, &mut Rng(32 + k as u64)).unwrap();
        }
        let mut twin = l.clone();
        let before = state(&mut l);
        let updates = l.updates();

        // One observation of −1e20 (finite): refused, nothing changed.
        let mut bad = Rollout::<OBS, P, 1, N>::new();
        for (i, s) in clean.samples().enumerate() {
            let mut s = *s;
            if i == 5 {
                s.obs[1] = -1e20;
            }
            bad.push([s]).unwrap();
        }
        assert_eq!(
            l.update(&bad, &mut Rng(40)).unwrap_err(),
            Error::UpdateInputOutOfRange
        );
        // A return beyond 1e9 too.
        let mut bad = Rollout::<OBS, P, 1, N>::new();
        for (i, s) in clean.samples().enumerate() {
            let mut s = *s;
            if i == 7 {
                s.ret = 3e9;
            }
            bad.push([s]).unwrap();
        }
        assert_eq!(
            l.update(&bad, &mut Rng(40)).unwrap_err(),
            Error::UpdateInputOutOfRange
        );
        assert_eq!(state(&mut l), before);
        assert_eq!(l.updates(), updates);

        // The next clean batch: bit for bit the twin that never saw the bad ones.
        let a = l.update(&clean, &mut Rng(41)).unwrap();
        let b = twin.update(&clean, &mut Rng(41)).unwrap();
        assert_eq!(a, b);
        assert_eq!(state(&mut l), state(&mut twin));
        assert!(params(&l.net).iter().all(|v| v.is_finite()));
    }

    // A first-order step that would overflow the weights is refused before it is taken.
    let cfg = Config {
        optimizer: Optimizer::Sgd,
        eta_max: f32::MAX,
        momentum: 0.0,
        max_grad_norm: 0.0,
        ..Config::default()
    };
    let r = batch(&mut Rng(50), HeadKind::Categorical, 0.0);
    let mut l = Learner::new(cfg, net(HeadKind::Categorical, 51)).unwrap();
    let before = state(&mut l);
    assert_eq!(
        l.update(&r, &mut Rng(0)).unwrap_err(),
        Error::UpdateNonFiniteGradient
    );
    assert_eq!(state(&mut l), before);
    assert_eq!(l.updates(), 0);
}

/// The critic's parameters (trunk 1, value head).
fn critic(n: &Net) -> Vec<f32> {
    let t = &n.trunks[1];
    [
        t.l1.w.as_flattened(),
        &t.l1.b,
        t.l2.w.as_flattened(),
        &t.l2.b,
        n.v.w.as_flattened(),
        &n.v.b,
    ]
    .into_iter()
    .flat_map(|s| s.to_vec())
    .collect()
}

/// `vf_euclidean`: the critic steps along its plain gradient, `Δθ_v = −η_v g_v` with
/// `η_v = min(η_max, sqrt(2δ_v/g_vᵀg_v))` computed here in f64 (the gradient read off an SGD
/// learner's step of size 1), and the actor takes the same step as under the Gauss–Newton
/// critic.
#[test]
fn euclidean_critic_steps_along_its_gradient() {
    for (head, delta_v) in [(HeadKind::Gaussian, 0.05), (HeadKind::Categorical, 1e-6)] {
        let cfg = Config {
            vf_kl_clip: delta_v,
            momentum: 0.0,
            ..natural()
        };
        let r = batch(&mut Rng(11), head, 0.0);
        let mut sgd = Learner::new(
            Config {
                optimizer: Optimizer::Sgd,
                eta_max: 1.0,
                max_grad_norm: 0.0,
                ..cfg
            },
            net(head, 12),
        )
        .unwrap();
        let before = critic(&sgd.net);
        sgd.update(&r, &mut Rng(13)).unwrap();
        let g: Vec<f64> = before
            .iter()
            .zip(critic(&sgd.net))
            .map(|(b, a)| *b as f64 - a as f64)
            .collect();
        let gg: f64 = g.iter().map(|x| x * x).sum();
        let eta_v = (cfg.eta_max as f64).min((2.0 * delta_v as f64 / gg).sqrt());

        let euclid = Config {
            vf_euclidean: true,
            ..cfg
        };
        let mut e = Learner::new(euclid, net(head, 12)).unwrap();
        let mut gn = Learner::new(cfg, net(head, 12)).unwrap();
        let s = e.update(&r, &mut Rng(13)).unwrap();
        gn.update(&r, &mut Rng(13)).unwrap();
        assert!(
            ((s.vf_step_size as f64) - eta_v).abs() <= 1e-4 * eta_v,
            "{head:?}: η_v {} against {eta_v}",
            s.vf_step_size
        );
        let want: Vec<f32> = before
            .iter()
            .zip(&g)
            .map(|(b, g)| (*b as f64 - eta_v * g) as f32)
            .collect();
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs())) * eta_v;
        let err = max_abs_diff(&critic(&e.net), &want) as f64;
        assert!(
            err <= 1e-4 * scale + 1e-7,
            "{head:?}: critic off by {err} (step {scale})"
        );
        assert_eq!(
            actor(&e.net),
            actor(&gn.net),
            "{head:?}: the actor's step changed"
        );
        assert!(max_abs_diff(&critic(&e.net), &critic(&gn.net)) > 1e-6);
    }
    assert!(Config {
        vf_euclidean: true,
        ..natural()
    }
    .validate()
    .is_err());
}
