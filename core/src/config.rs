//! Every setting of the learner, with the paper's names.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The update rule applied to the gradient.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    /// ACKTR: K-FAC natural gradient with the trust-region step (after `cold_iters` plain steps).
    Acktr,
    /// First-order momentum SGD on the clipped gradient (the same loop, no curvature).
    Sgd,
    /// RMSprop on the clipped gradient (A2C's optimizer): `s ← αs + (1−α)g²`,
    /// `θ ← θ − η g / (√s + ε)`.
    RmsProp {
        /// Square-average decay `α` (A2C: 0.99).
        alpha: f32,
        /// `ε` added to `√s` (A2C: 1e-5).
        eps: f32,
    },
}

/// Learner settings. Defaults are the ACKTR paper's Atari setting (Wu et al. 2017, and the
/// paper's code where the text is silent); see each field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Update rule. Default: [`Optimizer::Acktr`].
    pub optimizer: Optimizer,
    /// `η_max`, the largest step (ACKTR) or the learning rate (first-order). Paper: 0.25.
    pub eta_max: f32,
    /// `δ`, the trust-region KL bound: `½η²Δθᵀ F̂ Δθ ≤ δ`. Paper: 0.001.
    pub kl_clip: f32,
    /// `λ`, Tikhonov damping, split between the factors by π (see `kfac`). Paper: 0.01.
    pub damping: f32,
    /// Momentum `m`: `u ← m u + (1−m) step`, `θ ← θ − u` (the paper's code uses SGD with
    /// learning rate `η(1−m)`, the same thing). Paper: 0.9.
    pub momentum: f32,
    /// `ρ` of the running averages `F ← ρF + (1−ρ)E[·]`, debiased as `min(ρ, k/(k+1))` on
    /// update `k`. Paper: 0.99.
    pub stat_decay: f32,
    /// `L2` weight decay added to the gradient. Paper (Atari): 0.
    pub weight_decay: f32,
    /// Re-decompose the damped factors every this many updates. The paper's code: 10 (for an
    /// eigendecomposition); an `LDLᵀ` is cheap enough for 1 on small nets.
    pub inverse_every: u32,
    /// Every `stat_stride`-th sample of a batch (samples `0, k, 2k, …`) feeds the Kronecker
    /// factors; the loss gradient always uses every sample. The factors are running averages
    /// over many updates, so a fraction of each batch estimates them almost as well (K-FAC,
    /// Martens & Grosse 2015, estimates its statistics on a subset of the mini-batch) for
    /// `1/k` of the Fisher backward pass and the statistics. Paper's code: 1 (every sample).
    pub stat_stride: u32,
    /// Plain gradient steps (`cold_lr`, clipped) before the natural gradient starts, while the
    /// statistics warm up. Paper's code: 10.
    pub cold_iters: u32,
    /// Learning rate of the cold steps.
    pub cold_lr: f32,
    /// Global gradient-norm clip for first-order and cold steps (`≤ 0`: none). Paper: 0.5.
    pub max_grad_norm: f32,
    /// Discount `γ`. Paper: 0.99.
    pub gamma: f32,
    /// GAE `λ`; 1 gives the paper's k-step returns. Paper: 1.
    pub gae_lambda: f32,
    /// Value-loss coefficient: loss `c_v · mean((R − V)²)`. Paper: 0.5.
    pub value_coef: f32,
    /// Entropy bonus coefficient. Paper: 0.01.
    pub entropy_coef: f32,
    /// Scale of the critic's Gaussian log-likelihood in the Fisher (`σ = 1` Gauss–Newton).
    /// Paper's code: 1.
    pub vf_fisher_coef: f32,
    /// Standardise the batch's advantages, `Â ← (Â − mean Â) / (std Â + 1e-8)`, before the
    /// policy gradient (the paper's continuous-control code does). Paper (Atari): false.
    #[serde(default)]
    pub normalize_advantage: bool,
    /// `δ_v`, the critic's own trust region (separate trunks only): the actor's step is
    /// `η_π = min(η_max, sqrt(2δ/q_π))` from its own quadratic form `q_π` and the critic's
    /// `η_v = min(η_max, sqrt(2δ_v/q_v))`, where `½η_v²q_v` is the predicted mean squared
    /// change of `V` (the critic's Gauss–Newton Fisher has `σ = 1`). `0`: one joint trust
    /// region over both nets (the Atari paper's). Paper's MuJoCo code: its value network has a
    /// K-FAC optimizer of its own with a KL clip of 0.3.
    #[serde(default)]
    pub vf_kl_clip: f32,
    /// Natural-gradient steps of the critic per batch (`≥ 1`; more than 1 needs `vf_kl_clip`):
    /// after the joint update, `vf_iters − 1` further critic-only steps on the same batch, each
    /// from the value loss's gradient at the new weights, the same factors and `δ_v`. The
    /// paper's MuJoCo code fits its value network with several passes per batch.
    #[serde(default = "one")]
    pub vf_iters: u32,
    /// Each further critic step reads every `vf_stride`-th sample of the batch, starting at
    /// sample `(j − 1) mod vf_stride` for step `j` (`1`: every sample): `vf_stride` steps
    /// together read the batch once, at the cost of one pass.
    #[serde(default = "one")]
    pub vf_stride: u32,
    /// Target of the measured KL `E[KL(π_old ‖ π_new)]` of each policy step (`0`: off). When
    /// on, `η_max` is multiplied by a scale `s` that is divided by 1.5 after a step whose
    /// measured KL exceeds `2·target_kl` and multiplied by 1.5 after one below `target_kl/2`
    /// (`s ∈ [1/1024, 1024]`), the paper's MuJoCo rule (target 0.002).
    #[serde(default)]
    pub target_kl: f32,
    /// The critic's steps in the Euclidean norm instead of the Gauss–Newton norm (the paper's
    /// ablation; needs `vf_kl_clip`): direction the plain gradient `g_v`, size
    /// `η_v = min(η_max, sqrt(2δ_v / g_vᵀg_v))`. The actor's step is unchanged.
    #[serde(default)]
    pub vf_euclidean: bool,
}

fn one() -> u32 {
    1
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Config {
    /// The defaults as a constant, for `const` and `static` settings on a device
    /// (`Config { kl_clip: 3e-5, ..Config::DEFAULT }`).
    pub const DEFAULT: Config = Config {
        optimizer: Optimizer::Acktr,
        eta_max: 0.25,
        kl_clip: 0.001,
        damping: 0.01,
        momentum: 0.9,
        stat_decay: 0.99,
        weight_decay: 0.0,
        inverse_every: 10,
        stat_stride: 1,
        cold_iters: 10,
        cold_lr: 0.01,
        max_grad_norm: 0.5,
        gamma: 0.99,
        gae_lambda: 1.0,
        value_coef: 0.5,
        entropy_coef: 0.01,
        vf_fisher_coef: 1.0,
        normalize_advantage: false,
        vf_kl_clip: 0.0,
        vf_iters: 1,
        vf_stride: 1,
        target_kl: 0.0,
        vf_euclidean: false,
    };

    /// A2C's usual settings (RMSprop, lr 7e-4, α 0.99, ε 1e-5, clip 0.5, no momentum).
    pub fn a2c() -> Self {
        Self {
            optimizer: Optimizer::RmsProp {
                alpha: 0.99,
                eps: 1e-5,
            },
            eta_max: 7e-4,
            momentum: 0.0,
            ..Self::default()
        }
    }

    /// Check every value's range; names the first bad field.
    pub fn validate(&self) -> Result<(), Error> {
        let pos = |v: f32| v.is_finite() && v > 0.0;
        let unit = |v: f32| v.is_finite() && (0.0..1.0).contains(&v);
        let nonneg = |v: f32| v.is_finite() && v >= 0.0;
        if !pos(self.eta_max) {
            return Err(Error::ConfigInvalid("eta_max must be > 0"));
        }
        if !pos(self.kl_clip) {
            return Err(Error::ConfigInvalid("kl_clip must be > 0"));
        }
        if !pos(self.damping) {
            return Err(Error::ConfigInvalid("damping must be > 0"));
        }
        if !unit(self.momentum) {
            return Err(Error::ConfigInvalid("momentum must be in [0, 1)"));
        }
        if !unit(self.stat_decay) {
            return Err(Error::ConfigInvalid("stat_decay must be in [0, 1)"));
        }
        if !nonneg(self.weight_decay) {
            return Err(Error::ConfigInvalid("weight_decay must be >= 0"));
        }
        if self.inverse_every == 0 {
            return Err(Error::ConfigInvalid("inverse_every must be >= 1"));
        }
        if self.stat_stride == 0 {
            return Err(Error::ConfigInvalid("stat_stride must be >= 1"));
        }
        if !nonneg(self.cold_lr) {
            return Err(Error::ConfigInvalid("cold_lr must be >= 0"));
        }
        if !self.max_grad_norm.is_finite() {
            return Err(Error::ConfigInvalid("max_grad_norm must be finite"));
        }
        if !(self.gamma.is_finite() && (0.0..=1.0).contains(&self.gamma)) {
            return Err(Error::ConfigInvalid("gamma must be in [0, 1]"));
        }
        if !(self.gae_lambda.is_finite() && (0.0..=1.0).contains(&self.gae_lambda)) {
            return Err(Error::ConfigInvalid("gae_lambda must be in [0, 1]"));
        }
        if !nonneg(self.value_coef) || !nonneg(self.entropy_coef) || !nonneg(self.vf_fisher_coef) {
            return Err(Error::ConfigInvalid("loss coefficients must be >= 0"));
        }
        if !nonneg(self.vf_kl_clip) {
            return Err(Error::ConfigInvalid("vf_kl_clip must be >= 0"));
        }
        if self.vf_iters == 0 || (self.vf_iters > 1 && self.vf_kl_clip == 0.0) {
            return Err(Error::ConfigInvalid(
                "vf_iters must be >= 1, and more than 1 needs vf_kl_clip > 0",
            ));
        }
        if self.vf_euclidean && self.vf_kl_clip == 0.0 {
            return Err(Error::ConfigInvalid(
                "vf_euclidean needs the critic's own trust region (vf_kl_clip > 0)",
            ));
        }
        if self.vf_stride == 0 {
            return Err(Error::ConfigInvalid("vf_stride must be >= 1"));
        }
        if !nonneg(self.target_kl) {
            return Err(Error::ConfigInvalid("target_kl must be >= 0"));
        }
        if self.target_kl > 0.0 && matches!(self.optimizer, Optimizer::RmsProp { .. }) {
            return Err(Error::ConfigInvalid(
                "target_kl needs ACKTR or SGD, not RMSprop",
            ));
        }
        if let Optimizer::RmsProp { alpha, eps } = self.optimizer {
            if !unit(alpha) || !pos(eps) {
                return Err(Error::ConfigInvalid(
                    "RMSprop needs alpha in [0, 1) and eps > 0",
                ));
            }
        }
        Ok(())
    }
}
