//! One update: rollout → loss gradients → curvature → natural step → weights.
//!
//! Per sample `t` of a batch of `B`: the loss
//! `L = mean_t[−Â_t log π(a_t|s_t) + c_v (R_t − V(s_t))² − c_e H(π(·|s_t))]`
//! is backpropagated into the gradient `∇θ`; for ACKTR a second backward of the *sampled*
//! Fisher loss `−log π(ã|s) − c_f log N(v + ε | V(s), 1)` (`ã ~ π`, `ε ~ N(0,1)`) feeds the
//! Kronecker factors. Then the step: K-FAC natural gradient `Δθ = F̂⁻¹∇θ` scaled by the trust
//! region `η = min(η_max, sqrt(2δ/ΔθᵀF̂Δθ))` (ACKTR), or the clipped gradient (cold start,
//! SGD, RMSprop), smoothed by momentum `u ← m u + (1−m) η Δθ`, `θ ← θ − u`.

use rand_core::RngCore;

use crate::collective::{Collective, SingleProcess};
use crate::config::{Config, Optimizer};
use crate::dense::Activation;
use crate::encoder::{Encoder, Identity};
use crate::head::{standard_normal, HeadKind};
use crate::kfac::Curvature;
use crate::policy::{ActorCritic, Backward, BackwardBlock, Forward, ForwardBlock};
use crate::rollout::{Rollout, Step};
use crate::{trust_region, Error};

/// Samples per block in [`Learner::update_steps`] (see [`Learner::update_steps_in_blocks`]):
/// the block's forward passes and gradients wait on the stack (4-32-32: about 6.6 KiB).
const BLOCK: usize = 4;

/// What one update did (means over the batch).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdateStats {
    /// Samples in the batch.
    pub samples: u32,
    /// `−mean(Â log π(a|s))`.
    pub policy_loss: f32,
    /// `mean((R − V)²)`.
    pub value_loss: f32,
    /// `mean(H(π(·|s)))`.
    pub entropy: f32,
    /// `‖∇θ‖₂` of the loss gradient (before clipping or preconditioning).
    pub grad_norm: f32,
    /// The step size `η` used (trust region, or the learning rate of a first-order step).
    pub step_size: f32,
    /// `Δθᵀ F̂ Δθ` of the natural gradient (0 for first-order steps).
    pub quadratic_form: f32,
    /// Predicted KL of the step, `½ η² Δθᵀ F̂ Δθ` (0 for first-order steps).
    pub predicted_kl: f32,
    /// Whether this was a natural-gradient step (false: cold start or first-order).
    pub natural: bool,
    /// The critic's step size `η_v` of its own trust region (`vf_kl_clip > 0`), else 0.
    pub vf_step_size: f32,
    /// With `target_kl`: the measured `mean KL(π_old ‖ π_new)` of the step, else 0.
    pub measured_kl: f32,
    /// The scale on `η_max` after this update (1 unless `target_kl` adapts it).
    pub eta_scale: f32,
    /// With `vf_iters > 1`: `mean((R − V)²)` before the last critic-only step, else 0.
    pub value_loss_after: f32,
}

/// What one pass of [`Learner::gradient_and_statistics`] computes.
#[derive(Clone, Copy)]
struct Pass {
    /// Add the loss gradient.
    loss: bool,
    /// Add the Fisher statistics with this weight per sample.
    fisher: bool,
    w_stat: f32,
    /// The value loss alone, through the critic's trunk and head alone (separate trunks).
    critic_only: bool,
    /// Advantages enter the loss as `(Â − mean)·scale`.
    adv: (f32, f32),
}

/// `(mean, 1/(std + 1e-8))` of every rank's advantages (population std), in f64: `μ = ΣÂ/n`,
/// `σ² = Σ(Â − μ)²/n`, sums over all ranks' `n` samples; `sum` is this rank's `ΣÂ` already
/// summed over ranks.
fn advantage_standardiser<const OBS: usize, const P: usize>(
    steps: &[Step<OBS, P>],
    sum: f64,
    n: f64,
    coll: &mut dyn Collective,
) -> Result<(f32, f32), Error> {
    let mean = sum / n;
    let mut var = [steps
        .iter()
        .map(|s| (s.advantage as f64 - mean) * (s.advantage as f64 - mean))
        .sum::<f64>()];
    coll.all_reduce_sum_f64(&mut var)?;
    let var = var[0] / n;
    Ok((mean as f32, (1.0 / (libm::sqrt(var) + 1e-8)) as f32))
}

/// Whether `forwards` holds `⌈len/B⌉` blocks whose inputs are, bit for bit, the steps'
/// observations, or with a trainable encoder the encoder's outputs of them under `net`'s
/// weights (see [`Learner::update_steps_with_forwards`]).
fn forwards_match<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    Enc: Encoder<IN, OBS>,
    const B: usize,
>(
    net: &ActorCritic<OBS, H, P, T, IN, Enc>,
    steps: &[Step<IN, P>],
    forwards: &[ForwardBlock<OBS, H, P, T, B>],
) -> bool {
    B > 0
        && forwards.len() == steps.len().div_ceil(B)
        && if Enc::TRAINABLE {
            encoded_match(net, steps, forwards)
        } else {
            steps.iter().enumerate().all(|(i, s)| {
                let x = &forwards[i / B].x;
                x.iter()
                    .zip(&s.obs)
                    .all(|(row, o)| row[i % B].to_bits() == o.to_bits())
            })
        }
}

/// [`forwards_match`] for a trainable encoder: its outputs recomputed block by block.
#[inline(never)]
fn encoded_match<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    Enc: Encoder<IN, OBS>,
    const B: usize,
>(
    net: &ActorCritic<OBS, H, P, T, IN, Enc>,
    steps: &[Step<IN, P>],
    forwards: &[ForwardBlock<OBS, H, P, T, B>],
) -> bool {
    let mut lanes = Enc::lanes::<B>();
    let mut x = [[0.0f32; B]; OBS];
    steps.chunks(B).zip(forwards).all(|(chunk, f)| {
        for (b, s) in chunk.iter().enumerate() {
            Enc::load(&mut lanes, &mut x, b, &s.obs);
        }
        net.encode_block(&lanes, &mut x);
        (0..chunk.len()).all(|b| {
            x.iter()
                .zip(&f.x)
                .all(|(r, g)| r[b].to_bits() == g[b].to_bits())
        })
    })
}

/// Multiply the actor's parameters (trunk 0, the policy head, the log-std) or the critic's
/// (trunk `T − 1`, the value head) by `r`; for separate trunks
/// ([`ActorCritic::is_critic_slice`] draws the line).
fn scale_part<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    Enc: Encoder<IN, OBS>,
>(
    g: &mut ActorCritic<OBS, H, P, T, IN, Enc>,
    critic: bool,
    r: f32,
) {
    for (i, s) in g.param_slices_mut().into_iter().enumerate() {
        if ActorCritic::<OBS, H, P, T, IN, Enc>::is_critic_slice(i) == critic {
            s.iter_mut().for_each(|x| *x *= r);
        }
    }
}

/// `g_vᵀg_v` over the critic's parameters of `g` (the Euclidean critic's quadratic form).
fn critic_square_norm<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    Enc: Encoder<IN, OBS>,
>(
    g: &ActorCritic<OBS, H, P, T, IN, Enc>,
) -> f32 {
    g.param_slices()
        .iter()
        .enumerate()
        .filter(|(i, _)| ActorCritic::<OBS, H, P, T, IN, Enc>::is_critic_slice(*i))
        .map(|(_, s)| s.iter().map(|x| x * x).sum::<f32>())
        .sum()
}

/// Everything training needs: the policy, its gradient and momentum buffers, the curvature.
///
/// Generic over the network's [`Encoder`] `E` of the observation (`IN` numbers) into the
/// trunks' input (`OBS`); with the default [`Identity`] (`Learner<OBS, H, P, T>`) it is the MLP
/// learner. A trainable encoder ([`ConvEncoder`](crate::ConvEncoder)) is trained with the rest:
/// its gradient is backpropagated from the trunks, its Kronecker factors
/// ([`ConvCurvature`](crate::ConvCurvature)) take the same sampled Fisher loss, it is
/// preconditioned with them, its `ΔθᵀF̂Δθ` counts in the actor's part of the trust region, and
/// it moves with the same momentum step. Every entry point (per block, with stored forward
/// passes, data-parallel) supports it; `vf_kl_clip > 0` (and so `vf_iters > 1`) is refused
/// with it by [`Learner::new`], [`Learner::set_config`], [`Learner::reset`] and the update
/// ([`Error::ConfigInvalid`]; see the [`Encoder`] docs).
///
/// Every buffer is inline, so `size_of::<Learner<…>>()` is the whole training state, a
/// constant a firmware crate can check against its RAM at compile time:
/// ```
/// use acktr_core::{ConvEncoder, Learner};
/// // MinAtar Breakout (10×10×4, channel-last): 8 filters 4×4 at stride 2 → 8×4×4 = 128
/// // features, one 32-unit trunk, 3 actions.
/// type Learn = Learner<128, 32, 3, 1, 400, ConvEncoder<4, 8, 4, 2, 64, 10, 10, 4, 4, true>>;
/// const BYTES: usize = core::mem::size_of::<Learn>();
/// const _: () = assert!(BYTES <= 320 * 1024, "the learner does not fit the RAM budget");
/// ```
// `Clone` by hand: every field is `Copy`, so one copy each (a derived one would clone the
// nets and factors field by field).
#[derive(Debug)]
pub struct Learner<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize = OBS,
    E: Encoder<IN, OBS> = Identity,
> {
    config: Config,
    /// The policy being trained.
    pub net: ActorCritic<OBS, H, P, T, IN, E>,
    grad: ActorCritic<OBS, H, P, T, IN, E>,
    velocity: ActorCritic<OBS, H, P, T, IN, E>,
    curvature: Curvature<OBS, H, P, T, IN, E>,
    updates: u32,
    /// The scale on `η_max` that `target_kl` adapts (1 otherwise).
    eta_scale: f32,
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > Clone for Learner<OBS, H, P, T, IN, E>
{
    fn clone(&self) -> Self {
        Self {
            config: self.config,
            net: self.net,
            grad: self.grad,
            velocity: self.velocity,
            curvature: self.curvature,
            updates: self.updates,
            eta_scale: self.eta_scale,
        }
    }

    /// In place: no temporary learner (a host copies its learner before every update).
    fn clone_from(&mut self, source: &Self) {
        self.config = source.config;
        self.net = source.net;
        self.grad = source.grad;
        self.velocity = source.velocity;
        self.curvature = source.curvature;
        self.updates = source.updates;
        self.eta_scale = source.eta_scale;
    }
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        Enc: Encoder<IN, OBS>,
    > Learner<OBS, H, P, T, IN, Enc>
{
    /// Samples per block in [`Learner::update_steps`]: small, for a microcontroller's stack.
    pub const BLOCK: usize = BLOCK;

    /// A learner for `net`; fails if `config` is out of range.
    pub fn new(config: Config, net: ActorCritic<OBS, H, P, T, IN, Enc>) -> Result<Self, Error> {
        Self::validate(&config)?;
        let zeros = ActorCritic::zeros(net.activation, net.head);
        Ok(Self {
            config,
            net,
            grad: zeros,
            velocity: zeros,
            curvature: Curvature::new(),
            updates: 0,
            eta_scale: 1.0,
        })
    }

    /// A learner with all-zero weights, built at compile time: on a microcontroller this lets a
    /// `static` hold the learner (tens of KiB) with no stack temporaries. Load weights into
    /// [`Learner::net`] (e.g. `read_policy_into`) before training; `config` is checked by
    /// [`Learner::update`].
    pub const fn zeroed(config: Config, activation: Activation, head: HeadKind) -> Self {
        Self {
            config,
            net: ActorCritic::zeros(activation, head),
            grad: ActorCritic::zeros(activation, head),
            velocity: ActorCritic::zeros(activation, head),
            curvature: Curvature::new(),
            updates: 0,
            eta_scale: 1.0,
        }
    }

    /// Start training afresh from the current weights, in place: new settings, zero momentum,
    /// empty curvature statistics, update count 0.
    pub fn reset(&mut self, config: Config) -> Result<(), Error> {
        Self::validate(&config)?;
        self.config = config;
        self.grad.map_mut(|g| *g = 0.0);
        self.velocity.map_mut(|u| *u = 0.0);
        self.curvature
            .visit_mut(|s| s.iter_mut().for_each(|v| *v = 0.0));
        self.curvature.set_factorized(false);
        self.updates = 0;
        self.eta_scale = 1.0;
        Ok(())
    }

    /// [`Config::validate`], and no `vf_kl_clip` with a trainable encoder: it feeds the critic
    /// too, so a critic trust region apart from the actor's would not bound the value's change.
    fn validate(config: &Config) -> Result<(), Error> {
        config.validate()?;
        if Enc::TRAINABLE && config.vf_kl_clip > 0.0 {
            return Err(Error::ConfigInvalid(
                "vf_kl_clip must be 0 with a trainable encoder (it feeds the critic too)",
            ));
        }
        Ok(())
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Change the settings between updates (e.g. a learning-rate schedule on `eta_max`).
    pub fn set_config(&mut self, config: Config) -> Result<(), Error> {
        Self::validate(&config)?;
        self.config = config;
        Ok(())
    }

    /// Completed updates.
    pub fn updates(&self) -> u32 {
        self.updates
    }

    /// Visit every number of the training state in a fixed order: the policy's parameters,
    /// the direction buffer, the momentum/RMSprop state, the Kronecker factors, the scale on
    /// `η_max` (see [`Config::target_kl`]). With
    /// [`Learner::updates`], [`Learner::set_updates`] and the factors' `is_factorized` flag
    /// this is everything a checkpoint needs.
    pub fn visit_state_mut(&mut self, mut f: impl FnMut(&mut [f32])) {
        for net in [&mut self.net, &mut self.grad, &mut self.velocity] {
            for s in net.param_slices_mut() {
                f(s);
            }
        }
        self.curvature.visit_mut(&mut f);
        f(core::slice::from_mut(&mut self.eta_scale));
    }

    /// Restore the update counter and whether the factors' decompositions are valid.
    pub fn set_updates(&mut self, updates: u32, factorized: bool) {
        self.updates = updates;
        self.curvature.set_factorized(factorized);
    }

    /// The Kronecker factors.
    pub fn curvature(&self) -> &Curvature<OBS, H, P, T, IN, Enc> {
        &self.curvature
    }

    /// After an update: the direction that was stepped along (`Δθ` for a natural step, the
    /// clipped gradient for a first-order one), before `η` and momentum; with `vf_kl_clip` its
    /// critic part is scaled by `η_v/η`. Scratch: after an update with `target_kl` or
    /// `vf_iters > 1`, or a failed one, it holds other numbers.
    pub fn direction(&self) -> &ActorCritic<OBS, H, P, T, IN, Enc> {
        &self.grad
    }

    /// One update from a rollout whose returns are computed. On error the weights and
    /// momentum are unchanged, and so is everything else when the error was found before the
    /// statistics took the batch (see docs/algorithm.md, "What a failed update leaves").
    pub fn update<const E: usize, const N: usize>(
        &mut self,
        rollout: &Rollout<IN, P, E, N>,
        rng: &mut impl RngCore,
    ) -> Result<UpdateStats, Error> {
        self.update_steps(rollout.steps().as_flattened(), rng)
    }

    /// [`Learner::update`] from any slice of transitions whose advantages and returns are
    /// filled (e.g. a host's run-time sized rollout).
    pub fn update_steps(
        &mut self,
        steps: &[Step<IN, P>],
        rng: &mut impl RngCore,
    ) -> Result<UpdateStats, Error> {
        self.update_steps_in_blocks::<BLOCK>(steps, rng)
    }

    /// [`Learner::update_steps`], processing the samples `B` at a time (the samples are the
    /// SIMD lanes of the layer kernels; the host uses 16). The weights after the update are
    /// the same, bit for bit, for every `B ≥ 1`: only speed and stack use depend on it.
    pub fn update_steps_in_blocks<const B: usize>(
        &mut self,
        steps: &[Step<IN, P>],
        rng: &mut impl RngCore,
    ) -> Result<UpdateStats, Error> {
        self.update_from::<B>(steps, None, rng, &mut SingleProcess)
    }

    /// [`Learner::update_steps_in_blocks`] without its forward passes: `forwards[k]` holds
    /// [`ActorCritic::forward_block`] of `self.net` on `steps[kB..(k+1)B]` (lane `j` on step
    /// `kB + j`; a short last block leaves its other lanes unread; with a trainable encoder
    /// its inputs `x` are [`ActorCritic::encode_block`]'s outputs), computed since the last
    /// update — typically while acting in the rollout, with the same weights. The weights after
    /// the update are the same, bit for bit, as without them; the update skips one forward
    /// pass per sample (and the statistics' pass gathers its lanes instead of recomputing).
    ///
    /// Errors with [`Error::UpdateForwardMismatch`] (nothing changed) unless there are
    /// `⌈len/B⌉` blocks whose inputs are, bit for bit, the steps' observations (with a
    /// trainable encoder: its outputs of them, recomputed here). That the
    /// weights are those of the forward passes is the caller's promise.
    pub fn update_steps_with_forwards<const B: usize>(
        &mut self,
        steps: &[Step<IN, P>],
        forwards: &[ForwardBlock<OBS, H, P, T, B>],
        rng: &mut impl RngCore,
    ) -> Result<UpdateStats, Error> {
        self.update_from::<B>(steps, Some(forwards), rng, &mut SingleProcess)
    }

    /// A data-parallel [`Learner::update_steps_in_blocks`] (with `forwards`:
    /// [`Learner::update_steps_with_forwards`]): this process's `steps` are one rank's share of
    /// the batch, and `coll` sums what the update needs over the ranks (see
    /// [`crate::Collective`]), so that every rank takes the step one process would take from
    /// all ranks' samples concatenated (up to the order of the sums), and all ranks end with
    /// the same state. Every rank must call it with the same state and settings; ranks may
    /// hold different numbers of samples. `rng` draws this rank's Fisher targets.
    ///
    /// Errors as the single-process update, on every rank alike (a rank's bad input fails the
    /// update everywhere); with [`Error::UpdateCollectiveFailed`] when `coll` fails, after
    /// which the state is unspecified. With [`SingleProcess`] it is bit for bit the
    /// single-process update.
    pub fn update_data_parallel<const B: usize>(
        &mut self,
        steps: &[Step<IN, P>],
        forwards: Option<&[ForwardBlock<OBS, H, P, T, B>]>,
        rng: &mut impl RngCore,
        coll: &mut dyn Collective,
    ) -> Result<UpdateStats, Error> {
        self.update_from::<B>(steps, forwards, rng, coll)
    }

    fn update_from<const B: usize>(
        &mut self,
        steps: &[Step<IN, P>],
        forwards: Option<&[ForwardBlock<OBS, H, P, T, B>]>,
        rng: &mut impl RngCore,
        coll: &mut dyn Collective,
    ) -> Result<UpdateStats, Error> {
        let cfg = self.config;
        // What this rank's batch is, summed over ranks before anyone acts on it: a bad
        // batch on one rank fails the update on every rank, and no rank waits on a call the
        // others never make.
        let stride = cfg.stat_stride.max(1) as usize;
        let mut batch = [
            f64::from(u8::from(
                forwards.is_some_and(|f| !forwards_match(&self.net, steps, f)),
            )),
            f64::from(u8::from(steps.is_empty())),
            f64::from(u8::from(!steps.iter().all(|s| s.is_finite()))),
            f64::from(u8::from(!steps.iter().all(|s| s.in_range()))),
            steps.len() as f64,
            steps.len().div_ceil(stride) as f64,
            steps.iter().map(|s| s.advantage as f64).sum::<f64>(),
        ];
        coll.all_reduce_sum_f64(&mut batch)?;
        let [mismatch, empty, non_finite, out_of_range, n, n_strided, adv_sum] = batch;
        if mismatch > 0.0 {
            return Err(Error::UpdateForwardMismatch);
        }
        Self::validate(&cfg)?;
        if cfg.vf_kl_clip > 0.0 && T != 2 {
            return Err(Error::ConfigInvalid(
                "vf_kl_clip needs separate actor and critic trunks",
            ));
        }
        if empty > 0.0 {
            return Err(Error::UpdateEmptyRollout);
        }
        if non_finite > 0.0 {
            return Err(Error::UpdateNonFiniteInput);
        }
        if out_of_range > 0.0 {
            return Err(Error::UpdateInputOutOfRange);
        }
        let natural = matches!(cfg.optimizer, Optimizer::Acktr);
        let cold = natural && self.updates < cfg.cold_iters;
        // `B` of the whole batch, all ranks together.
        let inv_b = 1.0 / n as f32;
        let adv = if cfg.normalize_advantage {
            advantage_standardiser(steps, adv_sum, n, coll)?
        } else {
            (0.0, 1.0)
        };

        // Statistics weight: debiased running average, ρ_k = min(ρ, k/(k+1)). With `R` ranks
        // each scales its (equal) factors by `ρ/R`: the sum over ranks is then `ρ F` plus
        // every rank's new statistics.
        let k = self.updates as f32;
        let rho = cfg.stat_decay.min(k / (k + 1.0));
        if natural {
            self.curvature.scale(rho / coll.ranks() as f32);
        }
        let w_stat = (1.0 - rho) * inv_b;

        // Loss gradient and Fisher statistics, `B` samples at a time: no batch-sized buffers.
        // With a stride the statistics take a second pass over their samples.
        self.grad.map_mut(|g| *g = 0.0);
        let together = natural && stride == 1;
        let pass = Pass {
            loss: true,
            fisher: together,
            w_stat,
            critic_only: false,
            adv,
        };
        let mut stats = self.gradient_and_statistics::<B>(steps, 1, forwards, pass, rng);
        if natural && !together {
            let pass = Pass {
                loss: false,
                fisher: true,
                w_stat: (1.0 - rho) / n_strided as f32,
                critic_only: false,
                adv,
            };
            self.gradient_and_statistics::<B>(steps, stride, forwards, pass, rng);
        }
        // Every rank's loss-gradient sums, new statistics and loss sums, in one message.
        let mut losses = [stats.policy_loss, stats.value_loss, stats.entropy];
        let (grad, curvature) = (&mut self.grad, &mut self.curvature);
        coll.all_reduce_sum(&mut |f: &mut dyn FnMut(&mut [f32])| {
            for s in grad.param_slices_mut() {
                f(s);
            }
            if natural {
                curvature.visit_statistics_mut(&mut *f);
            }
            f(&mut losses);
        })?;
        [stats.policy_loss, stats.value_loss, stats.entropy] = losses;
        stats.samples = n as u32;
        stats.policy_loss *= inv_b;
        stats.value_loss *= inv_b;
        stats.entropy *= inv_b;
        let (wd, net) = (cfg.weight_decay, &self.net);
        self.grad.zip_mut(net, |g, p| *g = *g * inv_b + wd * p);

        if natural && !self.curvature.is_finite() {
            // Afresh in place, as `reset` does: `Curvature::new()` here would be a
            // curvature-sized temporary in this frame (tens of KiB of a device's stack).
            self.curvature
                .visit_mut(|s| s.iter_mut().for_each(|v| *v = 0.0));
            self.curvature.set_factorized(false);
            return Err(Error::UpdateNonFiniteCurvature);
        }
        if !self.grad.is_finite() {
            return Err(Error::UpdateNonFiniteGradient);
        }
        stats.grad_norm = libm::sqrtf(self.grad.fold_with(&self.grad, |a, _| a * a));

        // Step direction (in `grad`) and size: `η` for the actor, `η_v` for the critic's part.
        let split = cfg.vf_kl_clip > 0.0;
        if !(self.eta_scale.is_finite() && self.eta_scale > 0.0) {
            self.eta_scale = 1.0; // a restored state's scale out of range
        }
        let eta_max = cfg.eta_max * self.eta_scale;
        let (eta, eta_v) = if natural && !cold {
            let since = self.updates - cfg.cold_iters;
            if !self.curvature.is_factorized() || since % cfg.inverse_every == 0 {
                self.curvature.factorize(cfg.damping)?;
            }
            let euclid = cfg.vf_euclidean;
            let [mut qa, mut qc] = self
                .curvature
                .precondition_parts(&mut self.grad, [true, !euclid])?;
            if euclid {
                qc = critic_square_norm(&self.grad);
            }
            if self.net.head == HeadKind::Gaussian {
                // Exact Fisher of the log-std: 2 per dimension.
                for g in self.grad.log_std.iter_mut() {
                    let v = *g / (2.0 + cfg.damping);
                    qa += *g * v;
                    *g = v;
                }
            }
            if !self.grad.is_finite() {
                return Err(Error::UpdateNonFiniteGradient);
            }
            stats.natural = true;
            if split {
                let eta = trust_region::step_size(qa, eta_max, cfg.kl_clip)?;
                let eta_v = trust_region::step_size(qc, cfg.eta_max, cfg.vf_kl_clip)?;
                stats.quadratic_form = qa;
                stats.predicted_kl = 0.5 * eta * eta * qa;
                stats.vf_step_size = eta_v;
                (eta, eta_v)
            } else {
                let q = qa + qc;
                let eta = trust_region::step_size(q, eta_max, cfg.kl_clip)?;
                stats.quadratic_form = q;
                stats.predicted_kl = 0.5 * eta * eta * q;
                (eta, eta)
            }
        } else {
            if cfg.max_grad_norm > 0.0 && stats.grad_norm > cfg.max_grad_norm {
                let c = cfg.max_grad_norm / stats.grad_norm;
                self.grad.map_mut(|g| *g *= c);
            }
            let eta = if cold { cfg.cold_lr } else { eta_max };
            (eta, eta)
        };
        stats.step_size = eta;

        // Weights; with `target_kl` the policy before the step is kept in `grad` (the
        // direction is spent) to measure the step's KL.
        if eta_v != eta {
            scale_part(&mut self.grad, true, eta_v / eta);
        }
        self.step(eta, false)?;
        self.updates += 1;
        if cfg.target_kl > 0.0 {
            let mut kl = [self.measured_kl::<B>(steps, forwards) as f64];
            coll.all_reduce_sum_f64(&mut kl)?;
            // `mean_t KL` over all ranks' samples (a division in f64 rounded once to f32 is
            // the f32 division: the single-process numbers are unchanged).
            stats.measured_kl = (kl[0] / n) as f32;
            if stats.measured_kl > 2.0 * cfg.target_kl {
                self.eta_scale = (self.eta_scale / 1.5).max(1.0 / 1024.0);
            } else if stats.measured_kl < 0.5 * cfg.target_kl {
                self.eta_scale = (self.eta_scale * 1.5).min(1024.0);
            }
        }
        stats.eta_scale = self.eta_scale;

        // Further critic-only natural steps on the same batch, from the value loss at the new
        // weights (none during the cold start: no factors yet).
        let critic_steps = if stats.natural { cfg.vf_iters } else { 1 };
        let stride = cfg.vf_stride as usize;
        for pass in 1..critic_steps as usize {
            // Pass `j` reads samples `(j−1) mod k, … + k, …` (`k = vf_stride`).
            let sub = steps.get((pass - 1) % stride..).unwrap_or(&[]);
            self.grad.map_mut(|g| *g = 0.0);
            let pass = Pass {
                loss: true,
                fisher: false,
                w_stat: 0.0,
                critic_only: true,
                adv,
            };
            let s = self.gradient_and_statistics::<B>(sub, stride, None, pass, rng);
            // Every rank's gradient sums, value-loss sums and sample counts (whole numbers,
            // exact in f32 below 2²⁴).
            let mut sums = [s.value_loss, sub.len().div_ceil(stride) as f32];
            let grad = &mut self.grad;
            coll.all_reduce_sum(&mut |f: &mut dyn FnMut(&mut [f32])| {
                for g in grad.param_slices_mut() {
                    f(g);
                }
                f(&mut sums);
            })?;
            if sums[1] == 0.0 {
                break;
            }
            let inv_n = 1.0 / sums[1];
            let (wd, net) = (cfg.weight_decay, &self.net);
            self.grad.zip_mut(net, |g, p| *g = *g * inv_n + wd * p);
            scale_part(&mut self.grad, false, 0.0);
            // A pass that fails changes nothing (the step checks before it writes); the
            // update itself has succeeded, so the passes stop there.
            let euclid = cfg.vf_euclidean;
            let parts = [false, !euclid];
            let Ok([_, mut qc]) = self.curvature.precondition_parts(&mut self.grad, parts) else {
                break;
            };
            if euclid {
                qc = critic_square_norm(&self.grad);
            }
            let Ok(eta_v) = trust_region::step_size(qc, cfg.eta_max, cfg.vf_kl_clip) else {
                break;
            };
            if !self.grad.is_finite() || self.step(eta_v, true).is_err() {
                break;
            }
            stats.value_loss_after = sums[0] * inv_n;
        }
        Ok(stats)
    }

    /// `u ← m u + (1−m) η d`, `θ ← θ − u` (ACKTR, SGD), or RMSprop, with `d` in `grad`.
    /// A step that would leave a weight or the optimizer state non-finite is refused
    /// ([`Error::UpdateNonFiniteGradient`]) before anything is written. With `critic_only`
    /// the critic's weights and state alone move: the actor's momentum is the joint step's,
    /// not to be spent again by each critic pass.
    fn step(&mut self, eta: f32, critic_only: bool) -> Result<(), Error> {
        let m = self.config.momentum;
        let optimizer = self.config.optimizer;
        // `(new state, new weight)` of one parameter.
        let next = |p: f32, d: f32, u: f32| match optimizer {
            Optimizer::RmsProp { alpha, eps } => {
                let s = alpha * u + (1.0 - alpha) * d * d;
                (s, p - eta * d / (crate::dense::sqrt(s) + eps))
            }
            Optimizer::Acktr | Optimizer::Sgd => {
                let u = m * u + (1.0 - m) * eta * d;
                (u, p - u)
            }
        };
        let moves =
            |i: usize| !critic_only || ActorCritic::<OBS, H, P, T, IN, Enc>::is_critic_slice(i);
        let mut bad = 0usize;
        let (net, dir, state) = (&self.net, &self.grad, &self.velocity);
        for (i, ((p, d), u)) in net
            .param_slices()
            .into_iter()
            .zip(dir.param_slices())
            .zip(state.param_slices())
            .enumerate()
        {
            if !moves(i) {
                continue;
            }
            for ((&p, &d), &u) in p.iter().zip(d.iter()).zip(u.iter()) {
                let (u, p) = next(p, d, u);
                bad += usize::from(!(u.is_finite() && p.is_finite()));
            }
        }
        if bad > 0 {
            return Err(Error::UpdateNonFiniteGradient);
        }
        let (net, dir, state) = (&mut self.net, &self.grad, &mut self.velocity);
        for (i, ((p, d), u)) in net
            .param_slices_mut()
            .into_iter()
            .zip(dir.param_slices())
            .zip(state.param_slices_mut())
            .enumerate()
        {
            if !moves(i) {
                continue;
            }
            for ((p, &d), u) in p.iter_mut().zip(d.iter()).zip(u.iter_mut()) {
                (*u, *p) = next(*p, d, *u);
            }
        }
        Ok(())
    }

    /// `Σ_t KL(π_old(·|s_t) ‖ π(·|s_t))` over `steps`, with `π_old` the policy before the
    /// last step: its outputs from `forwards` when given, else recomputed from
    /// `θ_old = θ + u` (ACKTR, SGD: the step was `θ ← θ − u`) in `grad`.
    fn measured_kl<const B: usize>(
        &mut self,
        steps: &[Step<IN, P>],
        forwards: Option<&[ForwardBlock<OBS, H, P, T, B>]>,
    ) -> f32 {
        let old_log_std = {
            let (old, net, u) = (&mut self.grad, &self.net, &self.velocity);
            old.zip_mut(net, |o, p| *o = p);
            old.zip_mut(u, |o, u| *o += u);
            old.log_std
        };
        let head = self.net.head;
        let mut new = ForwardBlock::<OBS, H, P, T, B>::zeros();
        let mut old = ForwardBlock::<OBS, H, P, T, B>::zeros();
        let mut lanes = Enc::lanes::<B>();
        let mut kl = 0.0;
        for (k, chunk) in steps.chunks(B).enumerate() {
            for (b, s) in chunk.iter().enumerate() {
                Enc::load(&mut lanes, &mut new.x, b, &s.obs);
                Enc::load(&mut lanes, &mut old.x, b, &s.obs);
            }
            self.net.encode_block(&lanes, &mut new.x);
            self.net.forward_block(&mut new);
            let old = match forwards {
                Some(f) => &f[k],
                None => {
                    self.grad.encode_block(&lanes, &mut old.x);
                    self.grad.forward_block(&mut old);
                    &old
                }
            };
            for b in 0..chunk.len() {
                kl += head.kl(&old.z_of(b), &old_log_std, &new.z_of(b), &self.net.log_std);
            }
        }
        kl
    }

    /// The per-sample part of [`Learner::update_steps`], over every `stride`-th step: if
    /// `loss`, adds each sample's loss gradient to `grad` (not yet divided by the batch size)
    /// and returns the loss sums; if `fisher`, adds each sample's Fisher statistics (weight
    /// `w_stat`) to the curvature. Forward passes come from `forwards` when given (see
    /// [`Learner::update_steps_with_forwards`]), else are computed here.
    ///
    /// Samples go in blocks of `B`: one forward and up to two backward passes per block with
    /// the samples as SIMD lanes ([`ActorCritic::forward_block`]), then the loss gradient and
    /// the factor statistics each take one rank-`B` update ([`ActorCritic::accumulate_block`],
    /// [`Curvature::observe_chunk`]), every stored number read and written once per block. The
    /// sums run over the samples in order, so the result is the same for every `B`.
    ///
    /// Not inlined, so that the block buffers live in this frame only while the samples are
    /// processed, not beside the preconditioning's temporaries.
    #[inline(never)]
    fn gradient_and_statistics<const B: usize>(
        &mut self,
        steps: &[Step<IN, P>],
        stride: usize,
        forwards: Option<&[ForwardBlock<OBS, H, P, T, B>]>,
        pass: Pass,
        rng: &mut impl RngCore,
    ) -> UpdateStats {
        let cfg = self.config;
        let Pass {
            loss,
            fisher,
            w_stat,
            critic_only,
            adv: (adv_mean, adv_scale),
        } = pass;
        let mut stats = UpdateStats::default();
        let mut fb = ForwardBlock::<OBS, H, P, T, B>::zeros();
        let mut bb = BackwardBlock::<H, P, T, B>::zeros();
        let mut fs = [Forward::zeros(); B];
        let mut lgs = [Backward::zeros(); B];
        let mut fgs = [Backward::zeros(); B];
        let (mut gz_loss, mut gz_fisher) = ([[0.0f32; B]; P], [[0.0f32; B]; P]);
        let (mut gv_loss, mut gv_fisher) = ([0.0f32; B], [0.0f32; B]);
        let mut block: [Option<&Step<IN, P>>; B] = [None; B];
        // The encoder's observations and output gradient (nothing for `Identity`).
        let mut lanes = Enc::lanes::<B>();
        let act = self.net.activation;
        let mut indices = (0..steps.len()).step_by(stride);
        loop {
            let (mut n, mut first) = (0, 0);
            for slot in block.iter_mut() {
                *slot = None;
                let Some(i) = indices.next() else { continue };
                if n == 0 {
                    first = i;
                }
                let s = &steps[i];
                *slot = Some(s);
                match forwards {
                    Some(f) if stride > 1 => fb.copy_lane(n, &f[i / B], i % B),
                    Some(_) => {}
                    // `Identity` writes the trunk input `fb.x` itself.
                    None => Enc::load(&mut lanes, &mut fb.x, n, &s.obs),
                }
                if Enc::TRAINABLE && forwards.is_some() {
                    // The stored block holds the encoder's outputs; its backward needs the
                    // observations too (a trainable encoder's `load` writes `lanes` only).
                    Enc::load(&mut lanes, &mut fb.x, n, &s.obs);
                }
                n += 1;
            }
            if n == 0 {
                break;
            }
            stats.samples += n as u32;
            // With stride 1 the blocks are the stored ones (block `k` starts at step `kB`).
            let fb: &ForwardBlock<OBS, H, P, T, B> = match forwards {
                Some(f) if stride == 1 => &f[first / B],
                Some(_) => &fb,
                None => {
                    self.net.encode_block(&lanes, &mut fb.x);
                    self.net.forward_block_part(&mut fb, critic_only);
                    &fb
                }
            };
            for (b, s) in block.iter().take(n).enumerate() {
                let Some(s) = s else { break };
                let z = fb.z_of(b);
                let v = fb.v[0][b];
                let mut gz = [0.0; P];
                if loss && !critic_only {
                    let advantage = (s.advantage - adv_mean) * adv_scale;
                    let (logp, ent) = self.net.head.loss_grad(
                        &z,
                        &self.net.log_std,
                        &s.action,
                        advantage,
                        cfg.entropy_coef,
                        &mut gz,
                        &mut self.grad.log_std,
                    );
                    for (row, g) in gz_loss.iter_mut().zip(gz) {
                        row[b] = g;
                    }
                    stats.policy_loss -= advantage * logp;
                    stats.entropy += ent;
                }
                if loss {
                    gv_loss[b] = 2.0 * cfg.value_coef * (v - s.ret);
                    stats.value_loss += (s.ret - v) * (s.ret - v);
                }
                if fisher {
                    self.net
                        .head
                        .fisher_grad(&z, &self.net.log_std, rng, &mut gz);
                    for (row, g) in gz_fisher.iter_mut().zip(gz) {
                        row[b] = g;
                    }
                    gv_fisher[b] = -cfg.vf_fisher_coef * standard_normal(rng);
                }
            }
            // Lanes past the end of a short last block carry stale numbers that are never
            // summed.
            fb.unpack(&mut fs);
            // One backward block serves both passes: the Fisher pass's is unpacked first.
            // The encoder's share of each pass, from `∂L/∂x = Σ_t W1_tᵀ g1_t`: its statistics
            // from the Fisher pass, its gradient from the loss pass (not in critic-only passes:
            // the encoder is the actor's part, and those passes leave it as it is).
            if fisher {
                self.net.backward_block(fb, &gz_fisher, &gv_fisher, &mut bb);
                bb.unpack(&mut fgs);
                if let Some(dx) = Enc::output_grad(&mut lanes) {
                    self.net.backward_features_block(&bb, dx);
                    let kfac = self.curvature.encoder_mut();
                    self.net
                        .encoder
                        .observe(kfac, act, &lanes, &fb.x, n, w_stat);
                }
            }
            if loss {
                self.net
                    .backward_block_part(fb, &gz_loss, &gv_loss, &mut bb, critic_only);
                if n < B {
                    bb.unpack(&mut lgs);
                }
                if !critic_only {
                    if let Some(dx) = Enc::output_grad(&mut lanes) {
                        self.net.backward_features_block(&bb, dx);
                        self.grad.encoder.accumulate(act, &lanes, &fb.x, n);
                    }
                }
            }
            if n == B {
                if loss {
                    self.grad.accumulate_block_part(&fs, &bb, critic_only);
                }
                if fisher {
                    self.curvature.observe_chunk(&fs, &fgs, w_stat);
                }
            } else {
                // A short block (the stride's or the batch's last) in rank-8, 4, 2, 1 pieces:
                // one sample at a time costs ~3× per sample (each statistic re-read per sample).
                let mut o = 0;
                while o < n {
                    let (a, b) = (&fs[o..n], (&lgs[o..n], &fgs[o..n]));
                    o += match n - o {
                        8.. => self.add_chunk::<8>(a, b, pass),
                        4.. => self.add_chunk::<4>(a, b, pass),
                        2.. => self.add_chunk::<2>(a, b, pass),
                        _ => self.add_chunk::<1>(a, b, pass),
                    };
                }
            }
            if n < B {
                break;
            }
        }
        stats
    }

    /// The first `C` samples of `f`, `g = (loss gradients, Fisher gradients)` as one rank-`C`
    /// update of the loss gradient (if `loss`) and of the statistics (if `fisher`); returns `C`.
    fn add_chunk<const C: usize>(
        &mut self,
        f: &[Forward<OBS, H, P, T>],
        g: (&[Backward<H, P, T>], &[Backward<H, P, T>]),
        pass: Pass,
    ) -> usize {
        let (Some(f), Some(lg), Some(fg)) = (
            f.first_chunk::<C>(),
            g.0.first_chunk::<C>(),
            g.1.first_chunk::<C>(),
        ) else {
            return C;
        };
        if pass.loss {
            self.grad.accumulate_chunk_part(f, lg, pass.critic_only);
        }
        if pass.fisher {
            self.curvature.observe_chunk(f, fg, pass.w_stat);
        }
        C
    }
}
