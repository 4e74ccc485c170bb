//! One update on tensors, step for step the same as `acktr_core::Learner::update` (same
//! `Config`, losses, sampled Fisher, K-FAC, trust region, momentum, RMSprop), for networks of
//! any size and for conv nets.

use acktr_core::{Activation, Config, HeadKind, Optimizer, UpdateStats};
use acktr_host::error::{HostError, Result};
use tch::{Kind, Tensor};

use crate::kfac::TorchKfac;
use crate::net::{Forward, TorchNet};

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// A training batch of `B` samples (flattened `steps × envs`), on the net's device.
pub struct Batch {
    /// `[B, obs...]`.
    pub obs: Tensor,
    /// `[B]` int64 indices (categorical) or `[B, P]` f32 (Gaussian).
    pub actions: Tensor,
    /// `[B]`.
    pub advantages: Tensor,
    /// `[B]`.
    pub returns: Tensor,
}

/// Where the Fisher samples come from.
pub enum FisherNoise<'a> {
    /// Drawn here from libtorch's generator.
    Draw,
    /// Given: sampled actions `ã` (`[B]` int64 or, for a Gaussian, the standard normals `ε`
    /// with `ã = μ + σε`, `[B, P]`) and the critic's `ε` (`[B]`). Used to compare with the core.
    Given {
        /// Sampled actions or Gaussian noise.
        actions: &'a Tensor,
        /// Critic noise.
        value_noise: &'a Tensor,
    },
}

/// Where the last update's time went (for `acktr bench`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Forward pass and losses.
    pub forward: std::time::Duration,
    /// Fisher backward and factor statistics (K-FAC's extra work before the step).
    pub factors: std::time::Duration,
    /// Loss backward.
    pub backward: std::time::Duration,
    /// Damped inverses (only on updates that recompute them).
    pub inverse: std::time::Duration,
    /// Natural gradient and quadratic form.
    pub precondition: std::time::Duration,
    /// Momentum / RMSprop step on the weights.
    pub step: std::time::Duration,
}

/// The policy, its optimizer state and its curvature.
pub struct TorchLearner {
    /// Settings (the core's).
    pub config: Config,
    /// The network.
    pub net: TorchNet,
    /// Momentum (ACKTR, SGD) or square averages (RMSprop), one per parameter.
    pub velocity: Vec<Tensor>,
    /// K-FAC statistics.
    pub kfac: TorchKfac,
    /// Completed updates.
    pub updates: u32,
    /// After an update: the step direction per parameter (natural gradient or clipped
    /// gradient), before `η` and momentum.
    pub direction: Vec<Tensor>,
    /// Time per phase of the last update.
    pub timings: Timings,
}

/// The sampled Fisher's per-sample pre-activation gradients of an MLP, by hand instead of
/// through the autograd engine (whose per-call overhead is the cost at this size: the Fisher
/// pass of a 64-64 net at `stat_stride 8` took 0.34 ms of a 1.1 ms update). Takes every
/// `stat_stride`-th row of the loss pass's forward `fw` (strided views: no forward and no copy
/// of its own), then: `g_z = ∂(−log π(ã))/∂z` (`softmax(z) − onehot(ã)`, or `−ε/σ` for a
/// Gaussian with `ã = μ + σε`), `g_v = −c_f ε_v`, and down each trunk
/// `g_l = f'(h_l) ⊙ (g_{l+1} W_{l+1})` with `f'` from the layer's output (`1 − h²`, `h > 0`).
/// Returns the rows' layer inputs and `g` per layer, as [`TorchKfac::batch_stats`] takes them. The same numbers as the autograd pass up to rounding
/// (the cross-crate test holds both backends to the core).
fn mlp_fisher(
    net: &TorchNet,
    fw: &Forward,
    noise: &FisherNoise<'_>,
    cfg: &Config,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let device = fw.z.device();
    let b = fw.z.size()[0];
    let stride = i64::from(cfg.stat_stride);
    let rows = |t: &Tensor| t.slice(0, 0, b, stride);
    let inputs: Vec<Tensor> = fw.inputs.iter().map(rows).collect();
    let z = rows(&fw.z);
    let n = z.size()[0];
    let given = match noise {
        FisherNoise::Given {
            actions,
            value_noise,
        } => Some((
            rows(actions).to_device(device),
            rows(value_noise).to_device(device),
        )),
        FisherNoise::Draw => None,
    };
    let gz = match net.head {
        HeadKind::Categorical => {
            let mut p = z.softmax(-1, Kind::Float);
            let a = match &given {
                Some((a, _)) => a.unsqueeze(1),
                None => sample_categorical(&p),
            };
            let minus_one = Tensor::full([n, 1], -1.0, (Kind::Float, device));
            let _ = p.scatter_add_(1, &a, &minus_one);
            p
        }
        HeadKind::Gaussian => {
            let eps = match &given {
                Some((e, _)) => e.shallow_clone(),
                None => z.randn_like(),
            };
            -(eps * (-&net.log_std).exp())
        }
    };
    let gv = match &given {
        Some((_, e)) => e.unsqueeze(1) * -(cfg.vf_fisher_coef as f64),
        None => Tensor::randn([n, 1], (Kind::Float, device)) * -(cfg.vf_fisher_coef as f64),
    };
    let (pi, vi) = (net.pi_index(), net.v_index());
    let mut g: Vec<Option<Tensor>> = (0..net.layers.len()).map(|_| None).collect();
    let last = net.trunks.len() - 1;
    for (t, range) in net.trunks.iter().enumerate() {
        let mut dh = match (t == 0, t == last) {
            (true, true) => gv.mm(&net.layers[vi].w).addmm(&gz, &net.layers[pi].w),
            (true, false) => gz.mm(&net.layers[pi].w),
            (false, _) => gv.mm(&net.layers[vi].w),
        };
        let out_group = net.layers[if t == 0 { pi } else { vi }].group;
        for li in range.clone().rev() {
            let h = match range.contains(&(li + 1)) {
                true => &inputs[net.layers[li + 1].group],
                false => &inputs[out_group],
            };
            let gl = match net.activation() {
                Activation::Tanh => Tensor::tanh_backward(&dh, h),
                Activation::Relu => h.threshold_backward(&dh, 0.0),
                Activation::Identity => dh.shallow_clone(),
            };
            if li > range.start {
                dh = gl.mm(&net.layers[li].w);
            }
            g[li] = Some(gl);
        }
    }
    g[pi] = Some(gz);
    g[vi] = Some(gv);
    let g = g
        .into_iter()
        .map(|t| t.ok_or_else(|| HostError::InvalidSetting("MLP layer outside the trunks".into())))
        .collect::<Result<Vec<_>>>()?;
    Ok((inputs, g))
}

/// One draw from each row of the probabilities `p` (`[n, K]`), as `[n, 1]` indices, by inverse
/// CDF: the number of the first `K − 1` cumulative probabilities below `u ~ U[0, 1)` (always a
/// valid index, whatever the rounding of the last sum; a third of `multinomial`'s cost at this
/// size, where each libtorch call's overhead is the cost).
pub(crate) fn sample_categorical(p: &Tensor) -> Tensor {
    let (n, k) = (p.size()[0], p.size()[1]);
    let u = Tensor::rand([n, 1], (Kind::Float, p.device()));
    p.cumsum(1, Kind::Float)
        .narrow(1, 0, k - 1)
        .lt_tensor(&u)
        .sum_dim_intlist(1, true, Kind::Int64)
}

fn scalar(t: &Tensor) -> Result<f64> {
    f64::try_from(t).map_err(|e| HostError::InvalidSetting(format!("tensor to scalar: {e}")))
}

impl TorchLearner {
    /// A learner for `net`.
    pub fn new(config: Config, net: TorchNet) -> Result<Self> {
        config.validate()?;
        let velocity = net
            .params()
            .iter()
            .map(|p| p.zeros_like().detach())
            .collect();
        let kfac = TorchKfac::new(&net);
        Ok(Self {
            config,
            net,
            velocity,
            kfac,
            updates: 0,
            direction: Vec::new(),
            timings: Timings::default(),
        })
    }

    /// One update; on error the weights are unchanged.
    pub fn update(&mut self, batch: &Batch, noise: FisherNoise<'_>) -> Result<UpdateStats> {
        let cfg = self.config;
        let net = &self.net;
        let b = batch.obs.size()[0];
        if b == 0 {
            return Err(acktr_core::Error::UpdateEmptyRollout.into());
        }
        let natural = matches!(cfg.optimizer, Optimizer::Acktr);
        let cold = natural && self.updates < cfg.cold_iters;
        let mut timings = Timings::default();
        let mut clock = std::time::Instant::now();
        let mut lap = |slot: &mut std::time::Duration| {
            let now = std::time::Instant::now();
            *slot = now - clock;
            clock = now;
        };
        let fw = net.forward(&batch.obs);

        // Losses.
        let (logp, ent, logp_all) = match net.head {
            HeadKind::Categorical => {
                let lp = fw.z.log_softmax(-1, Kind::Float);
                let logp = lp
                    .gather(1, &batch.actions.unsqueeze(1), false)
                    .squeeze_dim(1);
                let ent = -(lp.exp() * &lp).sum_dim_intlist(-1, false, Kind::Float);
                (logp, ent, Some(lp))
            }
            HeadKind::Gaussian => {
                let e = (&batch.actions - &fw.z) * (-&net.log_std).exp();
                let logp = (e.square() * -0.5 - &net.log_std - HALF_LN_2PI).sum_dim_intlist(
                    -1,
                    false,
                    Kind::Float,
                );
                let ent = (&net.log_std + 0.5 + HALF_LN_2PI)
                    .sum(Kind::Float)
                    .expand([b], false);
                (logp, ent, None)
            }
        };
        let pg_loss = -(&batch.advantages * &logp).mean(Kind::Float);
        let v_loss = (&batch.returns - &fw.v).square().mean(Kind::Float);
        let entropy = ent.mean(Kind::Float);
        let loss = &pg_loss + &v_loss * cfg.value_coef as f64 - &entropy * cfg.entropy_coef as f64;
        let mut stats = UpdateStats {
            samples: b as u32,
            policy_loss: scalar(&pg_loss)? as f32,
            value_loss: scalar(&v_loss)? as f32,
            entropy: scalar(&entropy)? as f32,
            ..UpdateStats::default()
        };
        if !(stats.policy_loss.is_finite()
            && stats.value_loss.is_finite()
            && stats.entropy.is_finite())
        {
            return Err(acktr_core::Error::UpdateNonFiniteGradient.into());
        }

        lap(&mut timings.forward);
        // Sampled Fisher → per-sample pre-activation gradients → factor statistics.
        let params = net.params();
        let have_batch = if natural && net.is_mlp() {
            let (inputs, g) = tch::no_grad(|| mlp_fisher(net, &fw, &noise, &cfg))?;
            self.kfac.batch_stats(net, &inputs, &g);
            true
        } else if natural {
            // With a stride only every `stat_stride`-th sample feeds the factors, as in the
            // core. Those samples get a forward pass of their own, so that the Fisher backward
            // runs on them alone (on the Nature CNN the full batch's Fisher backward cost as
            // much as the loss backward, whatever the stride).
            let strided = (cfg.stat_stride > 1).then(|| {
                let idx = Tensor::arange_start_step(
                    0,
                    b,
                    i64::from(cfg.stat_stride),
                    (Kind::Int64, fw.z.device()),
                );
                let sub = net.forward(&batch.obs.index_select(0, &idx));
                let lp =
                    (net.head == HeadKind::Categorical).then(|| sub.z.log_softmax(-1, Kind::Float));
                let noise = match &noise {
                    FisherNoise::Given {
                        actions,
                        value_noise,
                    } => Some((
                        actions.index_select(0, &idx.to_device(actions.device())),
                        value_noise.index_select(0, &idx.to_device(value_noise.device())),
                    )),
                    FisherNoise::Draw => None,
                };
                (sub, lp, noise)
            });
            let (fw, logp_all, noise) = match &strided {
                Some((sub, lp, Some((actions, value_noise)))) => (
                    sub,
                    lp,
                    FisherNoise::Given {
                        actions,
                        value_noise,
                    },
                ),
                Some((sub, lp, None)) => (sub, lp, FisherNoise::Draw),
                None => (&fw, &logp_all, noise),
            };
            let (fisher_pg, value_noise) = match (&noise, net.head) {
                (
                    FisherNoise::Given {
                        actions,
                        value_noise,
                    },
                    HeadKind::Categorical,
                ) => {
                    let lp = logp_all
                        .as_ref()
                        .ok_or_else(|| HostError::InvalidSetting("no log-probs".into()))?;
                    (
                        -lp.gather(1, &actions.unsqueeze(1), false).sum(Kind::Float),
                        value_noise.shallow_clone(),
                    )
                }
                (FisherNoise::Draw, HeadKind::Categorical) => {
                    let lp = logp_all
                        .as_ref()
                        .ok_or_else(|| HostError::InvalidSetting("no log-probs".into()))?;
                    let a = lp.detach().exp().multinomial(1, true);
                    (
                        -lp.gather(1, &a, false).sum(Kind::Float),
                        fw.v.randn_like().detach(),
                    )
                }
                (given_or_draw, HeadKind::Gaussian) => {
                    let (eps, vn) = match given_or_draw {
                        FisherNoise::Given {
                            actions,
                            value_noise,
                        } => (actions.shallow_clone(), value_noise.shallow_clone()),
                        FisherNoise::Draw => {
                            (fw.z.randn_like().detach(), fw.v.randn_like().detach())
                        }
                    };
                    // −log π(ã) with ã = μ + σε, differentiated with respect to μ only (the
                    // log-std block is handled in closed form).
                    let sigma = net.log_std.detach().exp();
                    let a = fw.z.detach() + &sigma * &eps;
                    let e = (a - &fw.z) / &sigma;
                    ((e.square() * 0.5).sum(Kind::Float), vn)
                }
            };
            // Critic: ∂/∂v = −c_f ε per sample, as the core.
            let fisher_v = -(&fw.v * &value_noise.to_device(fw.v.device())).sum(Kind::Float)
                * cfg.vf_fisher_coef as f64;
            let fisher = fisher_pg + fisher_v;
            let pre: Vec<&Tensor> = fw.pre.iter().collect();
            let g = Tensor::run_backward(&[&fisher], &pre, true, false);
            self.kfac.batch_stats(net, &fw.inputs, &g);
            true
        } else {
            false
        };
        if have_batch {
            let k = self.updates as f64;
            let rho = (cfg.stat_decay as f64).min(k / (k + 1.0));
            self.kfac.accumulate(rho);
            if !self.kfac.is_finite() {
                self.kfac.reset();
                return Err(acktr_core::Error::UpdateNonFiniteCurvature.into());
            }
        }

        lap(&mut timings.factors);
        // Loss gradient.
        let mut grads = Tensor::run_backward(&[&loss], &params, false, false);
        // Parameters outside the graph (the categorical head's log-std) get no gradient.
        for (g, p) in grads.iter_mut().zip(params.iter()) {
            if !g.defined() {
                *g = p.zeros_like().detach();
            }
        }
        drop(fw);
        if cfg.weight_decay != 0.0 {
            for (g, p) in grads.iter_mut().zip(params.iter()) {
                *g = &*g + p.detach() * cfg.weight_decay as f64;
            }
        }
        let mut sq = 0.0;
        for g in &grads {
            sq += scalar(&g.square().sum(Kind::Double))?;
        }
        stats.grad_norm = sq.sqrt() as f32;
        if !stats.grad_norm.is_finite() {
            return Err(acktr_core::Error::UpdateNonFiniteGradient.into());
        }

        lap(&mut timings.backward);
        let eta = if natural && !cold {
            let since = self.updates - cfg.cold_iters;
            if !self.kfac.is_factorized() || since % cfg.inverse_every == 0 {
                self.kfac.factorize(net, cfg.damping)?;
            }
            lap(&mut timings.inverse);
            let mut q = self.kfac.precondition(net, &mut grads)?;
            if net.head == HeadKind::Gaussian {
                let last = grads.len() - 1;
                let v = &grads[last] / (2.0 + cfg.damping as f64);
                q += scalar(&(&v * &grads[last]).sum(Kind::Double))?;
                grads[last] = v;
            }
            let q = q as f32;
            let eta = acktr_core::trust_region::step_size(q, cfg.eta_max, cfg.kl_clip)?;
            stats.natural = true;
            stats.quadratic_form = q;
            stats.predicted_kl = 0.5 * eta * eta * q;
            lap(&mut timings.precondition);
            eta
        } else {
            if cfg.max_grad_norm > 0.0 && stats.grad_norm > cfg.max_grad_norm {
                let c = (cfg.max_grad_norm / stats.grad_norm) as f64;
                grads.iter_mut().for_each(|g| *g = &*g * c);
            }
            if cold {
                cfg.cold_lr
            } else {
                cfg.eta_max
            }
        };
        stats.step_size = eta;

        tch::no_grad(|| {
            let m = cfg.momentum as f64;
            let eta = eta as f64;
            for ((p, d), u) in params
                .iter()
                .zip(grads.iter())
                .zip(self.velocity.iter_mut())
            {
                let mut p = p.shallow_clone();
                match cfg.optimizer {
                    Optimizer::RmsProp { alpha, eps } => {
                        // u ← α u + (1 − α) d², θ ← θ − η d / (√u + ε), in place.
                        let _ = u.lerp_(&d.square(), 1.0 - alpha as f64);
                        let mut den = u.sqrt();
                        let _ = den.g_add_scalar_(eps as f64);
                        let _ = p.addcdiv_(&(d * -eta), &den);
                    }
                    Optimizer::Acktr | Optimizer::Sgd => {
                        // u ← m u + (1 − m) η d, in place.
                        let _ = u.lerp_(&(d * eta), 1.0 - m);
                        let _ = p.g_sub_(&*u);
                    }
                }
            }
        });
        lap(&mut timings.step);
        self.timings = timings;
        self.direction = grads;
        self.updates += 1;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse-CDF sampler's frequencies against the probabilities it was given: 200,000
    /// draws per row, each within 5 standard errors (a wrong index shift or an off-by-one
    /// in the comparison moves a frequency by a whole class's mass).
    #[test]
    fn inverse_cdf_draws_follow_the_probabilities() {
        tch::manual_seed(11);
        let probs: [[f32; 4]; 3] = [
            [0.1, 0.2, 0.3, 0.4],
            [0.97, 0.01, 0.01, 0.01],
            [0.0, 0.5, 0.0, 0.5],
        ];
        let reps = 200_000i64;
        for row in probs {
            let p = Tensor::from_slice(&row)
                .view([1, 4])
                .expand([reps, 4], false);
            let a = Vec::<i64>::try_from(sample_categorical(&p).view([-1])).unwrap();
            let mut count = [0usize; 4];
            for i in a {
                count[i as usize] += 1;
            }
            for (k, &q) in row.iter().enumerate() {
                let f = count[k] as f64 / reps as f64;
                let se = (q as f64 * (1.0 - q as f64) / reps as f64).sqrt().max(1e-9);
                assert!(
                    (f - q as f64).abs() <= 5.0 * se,
                    "row {row:?}: class {k} drawn {f}, want {q}"
                );
            }
        }
    }
}
