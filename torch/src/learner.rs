//! One update on tensors, step for step the same as `acktr_core::Learner::update` (same
//! `Config`, losses, sampled Fisher, K-FAC, trust region, momentum, RMSprop), for networks of
//! any size and for conv nets.

use acktr_core::{Activation, Collective, Config, HeadKind, Optimizer, SingleProcess, UpdateStats};
use acktr_host::error::{HostError, Result};
use tch::{Kind, Tensor};

use crate::kfac::{InverseMethod, TorchKfac};
use crate::net::{Forward, TorchNet};
use crate::worker::Worker;

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
    /// Waiting for the worker thread (when K-FAC's work runs there, `factors` and `inverse`
    /// are its times, overlapped with `backward`).
    pub wait: std::time::Duration,
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
    /// The thread K-FAC's work runs on while the loss backpropagates (see
    /// [`TorchLearner::set_worker`]); `None`: all in sequence.
    worker: Option<Worker>,
    /// How the damped factors are inverted (kept here: the factors are replaced wholesale on a
    /// checkpoint's restore or a lost worker).
    inverse_method: InverseMethod,
}

/// The sampled Fisher's per-sample pre-activation gradients of an MLP, by hand instead of
/// through the autograd engine (whose per-call overhead is the cost at this size: the Fisher
/// pass of a 64-64 net at `stat_stride 8` took 0.34 ms of a 1.1 ms update). Takes every
/// `stat_stride`-th row of the loss pass's group inputs and policy outputs `z` (strided views:
/// no forward and no copy of its own), then: `g_z = ∂(−log π(ã))/∂z` (`softmax(z) − onehot(ã)`,
/// or `−ε/σ` for a Gaussian with `ã = μ + σε`), `g_v = −c_f ε_v`, and down each trunk
/// `g_l = f'(h_l) ⊙ (g_{l+1} W_{l+1})` with `f'` from the layer's output (`1 − h²`, `h > 0`).
/// Returns the rows' layer inputs and `g` per layer, as [`TorchKfac::batch_stats`] takes them.
/// The same numbers as the autograd pass up to rounding (the cross-crate test holds both
/// backends to the core).
fn mlp_fisher(
    net: &TorchNet,
    inputs: &[Tensor],
    z: &Tensor,
    noise: Option<&(Tensor, Tensor)>,
    cfg: &Config,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let device = z.device();
    let b = z.size()[0];
    let stride = i64::from(cfg.stat_stride);
    let rows = |t: &Tensor| t.slice(0, 0, b, stride);
    let inputs: Vec<Tensor> = inputs.iter().map(rows).collect();
    let z = rows(z);
    let n = z.size()[0];
    let given = noise.map(|(actions, value_noise)| {
        (
            rows(actions).to_device(device),
            rows(value_noise).to_device(device),
        )
    });
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

/// Where the Fisher pass takes its layer inputs from.
enum FisherInput<'a> {
    /// Tensors of its own (what a job on another thread can take).
    Owned(FisherSource),
    /// A conv net without a stride: the loss pass's own forward (its graph).
    Forward(&'a Forward),
}

/// The Fisher pass's own inputs.
enum FisherSource {
    /// An MLP: the loss pass's group inputs and detached policy outputs (every
    /// `stat_stride`-th row is used; the pass is by hand, see [`mlp_fisher`]).
    Mlp { inputs: Vec<Tensor>, z: Tensor },
    /// A conv net with a stride: the strided observations, forwarded again.
    Obs(Tensor),
}

/// K-FAC's work before the step: the sampled Fisher's `g`, the batch statistics, the running
/// averages and their finiteness check, and the damped inverses when `factorize`.
struct CurvatureJob {
    /// Given Fisher noise (actions or Gaussian `ε`, critic `ε`) for the whole batch; `None`:
    /// drawn here.
    noise: Option<(Tensor, Tensor)>,
    cfg: Config,
    rho: f64,
    factorize: bool,
    /// Stop at the statistics' sums (a data-parallel update sums them over the ranks first).
    sums_only: bool,
}

/// What a [`CurvatureJob`] did.
struct JobDone {
    /// Time of the statistics.
    stats: std::time::Duration,
    /// Time of the inverses.
    inverse: std::time::Duration,
    /// With `sums_only`: each factor's divisor ([`TorchKfac::batch_sums`]); else empty.
    divisors: Vec<f64>,
}

impl CurvatureJob {
    /// Run it; returns the time of the statistics and of the inverses. On non-finite
    /// statistics the factors are forgotten (as the core does) and the error returned.
    fn run(self, net: &TorchNet, kfac: &mut TorchKfac, input: FisherInput<'_>) -> Result<JobDone> {
        let start = std::time::Instant::now();
        let divisors = match input {
            FisherInput::Owned(FisherSource::Mlp { inputs, z }) => {
                let (inputs, g) =
                    tch::no_grad(|| mlp_fisher(net, &inputs, &z, self.noise.as_ref(), &self.cfg))?;
                kfac.batch_sums(net, &inputs, &g)
            }
            FisherInput::Owned(FisherSource::Obs(obs)) => {
                let fw = net.forward(&obs);
                let noise = match &self.noise {
                    Some((actions, value_noise)) => {
                        let idx = Tensor::arange_start_step(
                            0,
                            actions.size()[0],
                            i64::from(self.cfg.stat_stride),
                            (Kind::Int64, actions.device()),
                        );
                        Some((
                            actions.index_select(0, &idx),
                            value_noise.index_select(0, &idx),
                        ))
                    }
                    None => None,
                };
                let g = autograd_fisher(net, &fw, noise.as_ref(), &self.cfg);
                kfac.batch_sums(net, &fw.inputs, &g)
            }
            FisherInput::Forward(fw) => {
                let g = autograd_fisher(net, fw, self.noise.as_ref(), &self.cfg);
                kfac.batch_sums(net, &fw.inputs, &g)
            }
        };
        if self.sums_only {
            return Ok(JobDone {
                stats: start.elapsed(),
                inverse: std::time::Duration::ZERO,
                divisors,
            });
        }
        kfac.divide_batch(&divisors);
        kfac.accumulate(self.rho);
        if !kfac.is_finite() {
            kfac.reset();
            return Err(acktr_core::Error::UpdateNonFiniteCurvature.into());
        }
        let stats = start.elapsed();
        if self.factorize {
            kfac.factorize(net, self.cfg.damping)?;
        }
        Ok(JobDone {
            stats,
            inverse: start.elapsed() - stats,
            divisors: Vec::new(),
        })
    }
}

/// The sampled Fisher's per-layer pre-activation gradients `g` through autograd (conv nets):
/// the gradient of `−log π(ã) − c_f ε_v v` summed over the forward `fw`'s samples, with `ã`
/// and `ε_v` given (`noise`) or drawn.
fn autograd_fisher(
    net: &TorchNet,
    fw: &Forward,
    noise: Option<&(Tensor, Tensor)>,
    cfg: &Config,
) -> Vec<Tensor> {
    let (fisher_pg, value_noise) = match (noise, net.head) {
        (Some((actions, value_noise)), HeadKind::Categorical) => {
            let lp = fw.z.log_softmax(-1, Kind::Float);
            (
                -lp.gather(1, &actions.unsqueeze(1), false).sum(Kind::Float),
                value_noise.shallow_clone(),
            )
        }
        (None, HeadKind::Categorical) => {
            let lp = fw.z.log_softmax(-1, Kind::Float);
            let a = lp.detach().exp().multinomial(1, true);
            (
                -lp.gather(1, &a, false).sum(Kind::Float),
                fw.v.randn_like().detach(),
            )
        }
        (given, HeadKind::Gaussian) => {
            let (eps, vn) = match given {
                Some((actions, value_noise)) => {
                    (actions.shallow_clone(), value_noise.shallow_clone())
                }
                None => (fw.z.randn_like().detach(), fw.v.randn_like().detach()),
            };
            // −log π(ã) with ã = μ + σε, differentiated with respect to μ only (the log-std
            // block is handled in closed form).
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
    Tensor::run_backward(&[&fisher], &pre, true, false)
}

/// The logged loss means all finite.
fn losses_finite(s: &UpdateStats) -> bool {
    s.policy_loss.is_finite() && s.value_loss.is_finite() && s.entropy.is_finite()
}

/// Add the weight decay to the loss gradient; its norm `‖∇θ‖₂`, refused when not finite.
fn decay_and_norm(grads: &mut [Tensor], params: &[&Tensor], cfg: &Config) -> Result<f32> {
    if cfg.weight_decay != 0.0 {
        for (g, p) in grads.iter_mut().zip(params.iter()) {
            *g = &*g + p.detach() * cfg.weight_decay as f64;
        }
    }
    let mut sq = 0.0;
    for g in grads.iter() {
        sq += scalar(&g.square().sum(Kind::Double))?;
    }
    let norm = sq.sqrt() as f32;
    if !norm.is_finite() {
        return Err(acktr_core::Error::UpdateNonFiniteGradient.into());
    }
    Ok(norm)
}

/// A tensor's numbers as `f32`s on the CPU, flat.
pub(crate) fn to_cpu_vec(t: &Tensor) -> Result<Vec<f32>> {
    Vec::<f32>::try_from(
        t.detach()
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .reshape([-1]),
    )
    .map_err(|e| HostError::InvalidSetting(format!("tensor copy: {e}")))
}

fn scalar(t: &Tensor) -> Result<f64> {
    f64::try_from(t).map_err(|e| HostError::InvalidSetting(format!("tensor to scalar: {e}")))
}

/// Refuse the settings only acktr-core implements (the critic's own trust region and passes,
/// the adaptive step, standardised advantages), rather than ignore them.
pub fn check_supported(config: &Config) -> Result<()> {
    let native_only = [
        (config.normalize_advantage, "--normalize-advantage"),
        (config.vf_kl_clip > 0.0, "--vf-kl-clip"),
        (config.vf_iters > 1, "--vf-iters"),
        (config.vf_stride > 1, "--vf-stride"),
        (config.target_kl > 0.0, "--target-kl"),
        (config.vf_euclidean, "--vf-euclidean"),
    ];
    match native_only.iter().find(|(on, _)| *on) {
        Some((_, flag)) => Err(HostError::InvalidSetting(format!(
            "{flag} is implemented by the native backend only (--backend native, MLPs with \
             two equal hidden layers of a built-in width); the tch backend does not have it: \
             pass --preset fast, or leave {flag} out"
        ))),
        None => Ok(()),
    }
}

impl TorchLearner {
    /// A learner for `net`.
    pub fn new(config: Config, net: TorchNet) -> Result<Self> {
        config.validate()?;
        check_supported(&config)?;
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
            worker: None,
            inverse_method: InverseMethod::default(),
        })
    }

    /// How the damped Kronecker factors are inverted from the next inverse on (Cholesky by
    /// default; the update is the same up to rounding either way).
    pub fn set_inverse_method(&mut self, method: InverseMethod) {
        self.inverse_method = method;
        self.kfac.set_inverse_method(method);
    }

    /// Run K-FAC's work (Fisher pass, statistics, inverses) on a thread of its own, overlapped
    /// with the loss backward (`true`), or in sequence (`false`, the default). The numbers are
    /// the same either way when the training thread also runs one intra-op thread (the worker
    /// always does; with more, a conv Fisher pass may round differently); the overlap needs a
    /// second core to pay. Conv nets at
    /// `stat_stride 1` share the loss pass's graph and always run in sequence.
    pub fn set_worker(&mut self, on: bool) -> Result<()> {
        match (on, self.worker.is_some()) {
            (true, false) => {
                self.worker = Some(Worker::start().map_err(|e| {
                    HostError::InvalidSetting(format!("cannot start the K-FAC thread: {e}"))
                })?)
            }
            (false, true) => self.worker = None,
            _ => {}
        }
        Ok(())
    }

    /// Whether K-FAC's work runs on its own thread.
    pub fn has_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// One update; on error the weights are unchanged.
    pub fn update(&mut self, batch: &Batch, noise: FisherNoise<'_>) -> Result<UpdateStats> {
        self.update_data_parallel(batch, noise, &mut SingleProcess)
    }

    /// A data-parallel [`TorchLearner::update`]: `batch` is this rank's share of the samples,
    /// and `coll` sums over the ranks what the update needs (acktr-core's [`Collective`]), so
    /// that every rank takes the step one process would take from all ranks' samples
    /// concatenated (up to the order of the sums) and all ranks end with the same state:
    ///
    /// - the loss gradient: each rank's per-sample sums divided by the whole batch's `B`;
    /// - the K-FAC batch statistics, as sums before their division (by all ranks' rows), so
    ///   that the running averages take the concatenated batch's statistics;
    /// - the loss sums (logged), in the same message as the two above: one all-reduce of
    ///   `f32`s an update, plus one of three `f64` counts before it.
    ///
    /// The damped inverses, the trust region and the step are then computed on every rank from
    /// identical numbers. Every rank must call it with the same state and settings; a batch
    /// that fails (empty, non-finite) fails on every rank alike. `noise` draws (or gives) this
    /// rank's Fisher targets. With one rank it is [`TorchLearner::update`], bit for bit.
    pub fn update_data_parallel(
        &mut self,
        batch: &Batch,
        noise: FisherNoise<'_>,
        coll: &mut dyn Collective,
    ) -> Result<UpdateStats> {
        let cfg = self.config;
        let dp = coll.ranks() > 1;
        // Factors replaced wholesale (a checkpoint's, a lost worker's) start at the default.
        self.kfac.set_inverse_method(self.inverse_method);
        let net = &self.net;
        let b = batch.obs.size()[0];
        // All ranks' samples, the rows that feed the factors (every `stat_stride`-th), and
        // whether any rank's batch is empty.
        let stat_rows = (b + i64::from(cfg.stat_stride) - 1) / i64::from(cfg.stat_stride);
        let mut counts = [b as f64, stat_rows as f64, f64::from(u8::from(b == 0))];
        if dp {
            coll.all_reduce_sum_f64(&mut counts)?;
        }
        let [n_all, stat_rows_all, empty] = counts;
        if empty > 0.0 {
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

        // Losses: means over the batch; across ranks, this rank's sums over all ranks' `B`.
        let mean = |t: Tensor| {
            if dp {
                t.sum(Kind::Float) / n_all
            } else {
                t.mean(Kind::Float)
            }
        };
        let (logp, ent) = match net.head {
            HeadKind::Categorical => {
                let lp = fw.z.log_softmax(-1, Kind::Float);
                let logp = lp
                    .gather(1, &batch.actions.unsqueeze(1), false)
                    .squeeze_dim(1);
                let ent = -(lp.exp() * &lp).sum_dim_intlist(-1, false, Kind::Float);
                (logp, ent)
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
                (logp, ent)
            }
        };
        let pg_loss = -mean(&batch.advantages * &logp);
        let v_loss = mean((&batch.returns - &fw.v).square());
        let entropy = mean(ent);
        let loss = &pg_loss + &v_loss * cfg.value_coef as f64 - &entropy * cfg.entropy_coef as f64;
        let mut stats = UpdateStats {
            samples: n_all as u32,
            policy_loss: scalar(&pg_loss)? as f32,
            value_loss: scalar(&v_loss)? as f32,
            entropy: scalar(&entropy)? as f32,
            ..UpdateStats::default()
        };
        // Across ranks the sums are checked once summed (every rank alike).
        if !dp && !losses_finite(&stats) {
            return Err(acktr_core::Error::UpdateNonFiniteGradient.into());
        }

        lap(&mut timings.forward);
        // K-FAC's work before the step (Fisher pass, statistics, inverses when due), on the
        // worker thread while this one backpropagates the loss where it can. Across ranks the
        // job stops at the statistics' sums: their division, the running averages and the
        // inverses follow the all-reduce, on this thread.
        let k = self.updates as f64;
        let rho = (cfg.stat_decay as f64).min(k / (k + 1.0));
        let factorize = natural
            && !cold
            && (!self.kfac.is_factorized()
                || (self.updates - cfg.cold_iters) % cfg.inverse_every == 0);
        // Across ranks: each factor's divisor of this rank's statistics (from the job).
        let mut divisors: Vec<f64> = Vec::new();
        let pending = if natural {
            let job = CurvatureJob {
                noise: match noise {
                    FisherNoise::Given {
                        actions,
                        value_noise,
                    } => Some((actions.shallow_clone(), value_noise.shallow_clone())),
                    FisherNoise::Draw => None,
                },
                cfg,
                rho,
                factorize: factorize && !dp,
                sums_only: dp,
            };
            let source = if net.is_mlp() {
                FisherInput::Owned(FisherSource::Mlp {
                    inputs: fw.inputs.iter().map(Tensor::shallow_clone).collect(),
                    z: fw.z.detach(),
                })
            } else if cfg.stat_stride > 1 {
                // Only every `stat_stride`-th sample feeds the factors, as in the core, and
                // those samples get a forward pass of their own so that the Fisher backward
                // runs on them alone (on the Nature CNN the full batch's Fisher backward cost
                // as much as the loss backward, whatever the stride).
                let idx = Tensor::arange_start_step(
                    0,
                    b,
                    i64::from(cfg.stat_stride),
                    (Kind::Int64, batch.obs.device()),
                );
                FisherInput::Owned(FisherSource::Obs(batch.obs.index_select(0, &idx)))
            } else {
                FisherInput::Forward(&fw)
            };
            match (&self.worker, source) {
                (Some(worker), FisherInput::Owned(source)) => {
                    let mut kfac = std::mem::replace(&mut self.kfac, TorchKfac::placeholder());
                    let net = net.shallow_clone();
                    Some(worker.spawn(move || {
                        let r = job.run(&net, &mut kfac, FisherInput::Owned(source));
                        (kfac, r)
                    }))
                }
                (_, source) => {
                    let done = job.run(net, &mut self.kfac, source)?;
                    (timings.factors, timings.inverse) = (done.stats, done.inverse);
                    divisors = done.divisors;
                    None
                }
            }
        } else {
            None
        };
        let mut spawned = std::time::Duration::ZERO;
        lap(&mut spawned);

        // Loss gradient.
        let params = net.params();
        let loss_grads = (|| -> Result<Vec<Tensor>> {
            let mut grads = Tensor::run_backward(&[&loss], &params, false, false);
            // Parameters outside the graph (the categorical head's log-std) get no gradient.
            for (g, p) in grads.iter_mut().zip(params.iter()) {
                if !g.defined() {
                    *g = p.zeros_like().detach();
                }
            }
            if !dp {
                stats.grad_norm = decay_and_norm(&mut grads, &params, &cfg)?;
            }
            Ok(grads)
        })();
        drop(fw);
        lap(&mut timings.backward);
        // The curvature first: its statistics are kept even when the loss gradient is refused.
        if let Some(pending) = pending {
            match pending.wait() {
                Ok((kfac, r)) => {
                    self.kfac = kfac;
                    let done = r?;
                    (timings.factors, timings.inverse) = (done.stats, done.inverse);
                    divisors = done.divisors;
                }
                Err(e) => {
                    self.kfac = TorchKfac::new(net);
                    return Err(HostError::InvalidSetting(e.to_string()));
                }
            }
        }
        let mut grads = loss_grads?;
        lap(&mut timings.wait);

        if dp {
            // Every rank's gradient sums, factor statistics and loss sums, in one message.
            let shapes: Vec<Vec<i64>> = grads.iter().map(Tensor::size).collect();
            let flat: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
            let mut buf = to_cpu_vec(&Tensor::cat(&flat, 0))?;
            let n_grad = buf.len();
            if natural {
                buf.extend(to_cpu_vec(self.kfac.batch_flat())?);
            }
            let n_kfac = buf.len() - n_grad;
            buf.extend_from_slice(&[stats.policy_loss, stats.value_loss, stats.entropy]);
            let t = std::time::Instant::now();
            coll.all_reduce_sum(&mut |f: &mut dyn FnMut(&mut [f32])| f(&mut buf))?;
            timings.wait += t.elapsed();
            let device = net.device();
            let mut at = 0;
            for (g, shape) in grads.iter_mut().zip(&shapes) {
                let len = shape.iter().product::<i64>() as usize;
                *g = Tensor::from_slice(&buf[at..at + len])
                    .view(shape.as_slice())
                    .to_device(device);
                at += len;
            }
            [stats.policy_loss, stats.value_loss, stats.entropy] =
                [buf[at + n_kfac], buf[at + n_kfac + 1], buf[at + n_kfac + 2]];
            if natural {
                let start = std::time::Instant::now();
                self.kfac.set_batch_flat(&buf[at..at + n_kfac])?;
                // Each factor's divisor over all ranks: per stat row the same on every rank
                // (1, or a conv layer's positions), times all ranks' rows.
                let total: Vec<f64> = divisors
                    .iter()
                    .map(|&d| d / stat_rows as f64 * stat_rows_all)
                    .collect();
                self.kfac.divide_batch(&total);
                self.kfac.accumulate(rho);
                if !self.kfac.is_finite() {
                    self.kfac.reset();
                    return Err(acktr_core::Error::UpdateNonFiniteCurvature.into());
                }
                timings.factors += start.elapsed();
                if factorize {
                    let start = std::time::Instant::now();
                    self.kfac.factorize(net, cfg.damping)?;
                    timings.inverse += start.elapsed();
                }
            }
            if !losses_finite(&stats) {
                return Err(acktr_core::Error::UpdateNonFiniteGradient.into());
            }
            stats.grad_norm = decay_and_norm(&mut grads, &params, &cfg)?;
        }

        let eta = if natural && !cold {
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
