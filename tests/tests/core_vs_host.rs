//! The host's libtorch update and acktr-core's update are the same algorithm: for the same MLP
//! weights, batch and Fisher samples (fed to the host, drawn by the core from a generator whose
//! draws the test replays), they agree factor by factor and step by step to 1e-4 relative,
//! through cold steps, amortised inverses and momentum.

use acktr_core::env::Pcg64;
use acktr_core::{
    log_softmax, standard_normal, uniform01, Activation, ActorCritic, Config, Ending, Forward,
    HeadKind, Learner, Optimizer, Rollout, Step,
};
use acktr_torch::learner::{Batch, FisherNoise, TorchLearner};
use acktr_torch::net::{Arch, TorchNet};
use tch::{Device, Kind, Tensor};

const OBS: usize = 4;
const H: usize = 8;
const P: usize = 3;
const N: usize = 16;

fn flat(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().chain(b).fold(1e-3f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max abs diff {err} (scale {scale})"
    );
}

/// Layer order of the host net: trunk by trunk (l1, l2), then π, then v.
fn core_layers<const T: usize>(net: &ActorCritic<OBS, H, P, T>) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut v = Vec::new();
    for t in &net.trunks {
        v.push((t.l1.w.as_flattened().to_vec(), t.l1.b.to_vec()));
        v.push((t.l2.w.as_flattened().to_vec(), t.l2.b.to_vec()));
    }
    v.push((net.pi.w.as_flattened().to_vec(), net.pi.b.to_vec()));
    v.push((net.v.w.as_flattened().to_vec(), net.v.b.to_vec()));
    v
}

fn copy_into_host<const T: usize>(core: &ActorCritic<OBS, H, P, T>, host: &mut TorchNet) {
    tch::no_grad(|| {
        for (l, (w, b)) in host.layers.iter_mut().zip(core_layers(core)) {
            l.w.copy_(&Tensor::from_slice(&w).view(l.w.size().as_slice()));
            l.b.copy_(&Tensor::from_slice(&b));
        }
        host.log_std.copy_(&Tensor::from_slice(&core.log_std));
    });
}

fn dense_a<const I: usize>(f: &acktr_core::InputFactor<I>) -> Vec<f32> {
    let mut v = vec![0.0; (I + 1) * (I + 1)];
    f.write_dense(&mut v);
    v
}
fn dense_s<const O: usize>(f: &acktr_core::OutputFactor<O>) -> Vec<f32> {
    let mut v = vec![0.0; O * O];
    f.write_dense(&mut v);
    v
}

fn run<const T: usize>(head: HeadKind, seed: u64, stat_stride: u32) {
    run_with::<T>(head, seed, stat_stride, Activation::Tanh);
}

fn run_with<const T: usize>(head: HeadKind, seed: u64, stat_stride: u32, activation: Activation) {
    let cfg = Config {
        cold_iters: 2,
        inverse_every: 2,
        stat_stride,
        ..Config::default()
    };
    run_cfg::<T>(head, seed, activation, cfg);
}

fn run_cfg<const T: usize>(head: HeadKind, seed: u64, activation: Activation, cfg: Config) {
    tch::manual_seed(0);
    let mut rng = Pcg64::from_seed(seed);
    let mut core_net = ActorCritic::<OBS, H, P, T>::new(activation, head, &mut rng);
    core_net.log_std = [0.1, -0.2, 0.3];
    let natural = matches!(cfg.optimizer, Optimizer::Acktr);
    let arch = Arch::Mlp {
        hidden: vec![H, H],
        separate: T == 2,
        activation,
    };
    let mut host_net = TorchNet::new(arch, &[OBS], head, P, Device::Cpu).unwrap();
    copy_into_host(&core_net, &mut host_net);
    let mut core = Learner::new(cfg, core_net).unwrap();
    let mut host = TorchLearner::new(cfg, host_net).unwrap();

    for update in 0..6 {
        // A batch.
        let mut r = Rollout::<OBS, P, 1, N>::new();
        let (mut obs, mut acts, mut idx, mut adv, mut ret) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..N {
            let o: [f32; OBS] = core::array::from_fn(|_| 2.0 * uniform01(&mut rng) - 1.0);
            let mut a = [0.0; P];
            let k = (rng.next_u64() % P as u64) as usize;
            match head {
                HeadKind::Categorical => a[k] = 1.0,
                HeadKind::Gaussian => a.iter_mut().for_each(|v| *v = standard_normal(&mut rng)),
            }
            let mut s = Step::new(o, a, 0.0, 0.0, Ending::Continues);
            s.advantage = standard_normal(&mut rng);
            s.ret = 2.0 * standard_normal(&mut rng);
            r.push([s]).unwrap();
            obs.extend_from_slice(&o);
            acts.extend_from_slice(&a);
            idx.push(k as i64);
            adv.push(s.advantage);
            ret.push(s.ret);
        }
        // Replay the core's Fisher draws (same generator, same order) for the host.
        let mut replay = rng.clone();
        let (mut f_act, mut f_eps, mut v_eps) = (vec![], vec![], vec![]);
        {
            let mut f = Forward::zeros();
            for (i, s) in r.samples().enumerate() {
                // Only every `stat_stride`-th sample has Fisher draws; the host's other rows
                // are never read, so they get placeholders.
                if i % cfg.stat_stride as usize != 0 {
                    match head {
                        HeadKind::Categorical => f_act.push(0),
                        HeadKind::Gaussian => f_eps.extend([0.0; P]),
                    }
                    v_eps.push(0.0);
                    continue;
                }
                core.net.forward(&s.obs, &mut f);
                match head {
                    HeadKind::Categorical => {
                        let mut lp = [0.0; P];
                        log_softmax(&f.z, &mut lp);
                        let u = uniform01(&mut replay);
                        let (mut c, mut k) = (0.0, P - 1);
                        for (i, l) in lp.iter().enumerate() {
                            c += libm_exp(*l);
                            if u < c {
                                k = i;
                                break;
                            }
                        }
                        f_act.push(k as i64);
                    }
                    HeadKind::Gaussian => {
                        (0..P).for_each(|_| f_eps.push(standard_normal(&mut replay)))
                    }
                }
                v_eps.push(standard_normal(&mut replay));
            }
        }
        let batch = Batch {
            obs: Tensor::from_slice(&obs).view([N as i64, OBS as i64]),
            actions: match head {
                HeadKind::Categorical => Tensor::from_slice(&idx),
                HeadKind::Gaussian => Tensor::from_slice(&acts).view([N as i64, P as i64]),
            },
            advantages: Tensor::from_slice(&adv),
            returns: Tensor::from_slice(&ret),
        };
        let fisher_actions = match head {
            HeadKind::Categorical => Tensor::from_slice(&f_act),
            HeadKind::Gaussian => Tensor::from_slice(&f_eps).view([N as i64, P as i64]),
        };
        let value_noise = Tensor::from_slice(&v_eps);

        let cs = core.update(&r, &mut rng).unwrap();
        let hs = host
            .update(
                &batch,
                FisherNoise::Given {
                    actions: &fisher_actions,
                    value_noise: &value_noise,
                },
            )
            .unwrap();
        let tag = format!(
            "{head:?} T={T} {:?} stride {} update {update}",
            cfg.optimizer, cfg.stat_stride
        );

        // Factor by factor.
        if natural {
            let curv = core.curvature();
            let host_a = |g: usize| flat(host.kfac.a(g).unwrap());
            let host_s = |l: usize| flat(host.kfac.s(l).unwrap());
            close(&format!("{tag}: A obs"), &dense_a(curv.a_obs()), &host_a(0));
            let (mut g, mut l) = (1, 0);
            for t in 0..T {
                close(
                    &format!("{tag}: S trunk {t} layer 1"),
                    &dense_s(curv.s_hidden(t, 0).unwrap()),
                    &host_s(l),
                );
                close(
                    &format!("{tag}: A trunk {t} h1"),
                    &dense_a(curv.a_h1(t).unwrap()),
                    &host_a(g),
                );
                close(
                    &format!("{tag}: S trunk {t} layer 2"),
                    &dense_s(curv.s_hidden(t, 1).unwrap()),
                    &host_s(l + 1),
                );
                close(
                    &format!("{tag}: A trunk {t} h2"),
                    &dense_a(curv.a_h2(t).unwrap()),
                    &host_a(g + 1),
                );
                g += 2;
                l += 2;
            }
            close(&format!("{tag}: S pi"), &dense_s(curv.s_pi()), &host_s(l));
            close(&format!("{tag}: S v"), &dense_s(curv.s_v()), &host_s(l + 1));
        }

        // Step by step: the step's statistics and the new weights.
        assert_eq!(cs.natural, hs.natural, "{tag}");
        close(
            &format!("{tag}: q, eta, |g|"),
            &[cs.quadratic_form, cs.step_size, cs.grad_norm],
            &[hs.quadratic_form, hs.step_size, hs.grad_norm],
        );
        for (i, ((cw, cb), hl)) in core_layers(&core.net)
            .iter()
            .zip(host.net.layers.iter())
            .enumerate()
        {
            close(&format!("{tag}: layer {i} W"), cw, &flat(&hl.w));
            close(&format!("{tag}: layer {i} b"), cb, &flat(&hl.b));
        }
        close(
            &format!("{tag}: log_std"),
            &core.net.log_std,
            &flat(&host.net.log_std),
        );
    }
}

fn libm_exp(x: f32) -> f32 {
    // The core's sampler accumulates `libm::expf`; f32 `exp` from std can differ in the last bit,
    // which only matters exactly at a category boundary.
    x.exp()
}

#[test]
fn shared_categorical_updates_agree() {
    run::<1>(HeadKind::Categorical, 1, 1);
}

#[test]
fn separate_categorical_updates_agree() {
    run::<2>(HeadKind::Categorical, 2, 1);
}

#[test]
fn shared_gaussian_updates_agree() {
    run::<1>(HeadKind::Gaussian, 3, 1);
}

#[test]
fn separate_gaussian_updates_agree() {
    run::<2>(HeadKind::Gaussian, 4, 1);
}

/// Statistics from every third sample (`stat_stride` 3): the same subset on both sides.
#[test]
fn strided_statistics_agree() {
    run::<1>(HeadKind::Categorical, 5, 3);
    run::<2>(HeadKind::Gaussian, 6, 3);
}

/// The Pendulum preset's layout: separate ReLU trunks, a Gaussian head, strided statistics.
#[test]
fn relu_updates_agree() {
    run_with::<2>(HeadKind::Gaussian, 7, 4, Activation::Relu);
    run_with::<1>(HeadKind::Categorical, 8, 1, Activation::Relu);
}

/// A2C's step (RMSprop on the clipped gradient), both heads: the same weights step by step.
#[test]
fn rmsprop_updates_agree() {
    let cfg = Config {
        max_grad_norm: 0.5,
        ..Config::a2c()
    };
    run_cfg::<1>(HeadKind::Categorical, 9, Activation::Tanh, cfg);
    run_cfg::<2>(HeadKind::Gaussian, 10, Activation::Tanh, cfg);
}

/// L2 weight decay (`g ← g + wd·θ` before the step) on both sides, ACKTR and A2C. At 0.05 a
/// side that dropped it would move the weights by far more than the 1e-4 tolerance.
#[test]
fn weight_decay_updates_agree() {
    let acktr = Config {
        cold_iters: 2,
        inverse_every: 2,
        weight_decay: 0.05,
        ..Config::default()
    };
    run_cfg::<1>(HeadKind::Categorical, 11, Activation::Tanh, acktr);
    run_cfg::<2>(HeadKind::Gaussian, 12, Activation::Tanh, acktr);
    let a2c = Config {
        max_grad_norm: 0.5,
        weight_decay: 0.05,
        ..Config::a2c()
    };
    run_cfg::<1>(HeadKind::Categorical, 13, Activation::Tanh, a2c);
}
