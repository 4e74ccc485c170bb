//! Vectorised environments behind one trait, so every environment source (the core's native
//! environments, the Gymnasium bridge) plugs into the trainers without touching the algorithm.
//!
//! Semantics, the same for every source:
//! - observations are `f32`, flattened row-major per environment (`num_envs × obs_len`); image
//!   observations are channel-first `C×H×W`;
//! - **same-step autoreset**: when environment `i` ends on a step, `obs[i]` is already the first
//!   observation of its next episode and `final_obs[i]` holds the observation it ended in (the
//!   trainer bootstraps truncations from it);
//! - `episodes` reports finished episodes with their *raw* return and length (before any
//!   reward clipping or normalisation a source applies), as the monitor logs them.

#[cfg(feature = "gymnasium")]
pub mod gym;
pub mod native;

use crate::error::{HostError, Result};

/// An action or observation space, as far as the policy heads need it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Space {
    /// `n` discrete actions: categorical head.
    Discrete(usize),
    /// A box of `low.len()` dimensions: Gaussian head (the trainer clips the actions it sends
    /// to the bounds: `train::env_actions`).
    Box {
        /// Lower bounds.
        low: Vec<f32>,
        /// Upper bounds.
        high: Vec<f32>,
    },
}

impl Space {
    /// Number of policy outputs: actions (discrete) or dimensions (box).
    pub fn policy_outputs(&self) -> usize {
        match self {
            Space::Discrete(n) => *n,
            Space::Box { low, .. } => low.len(),
        }
    }
}

/// A batch of actions, one per environment.
#[derive(Clone, Debug, PartialEq)]
pub enum Actions {
    /// Indices.
    Discrete(Vec<usize>),
    /// `num_envs × dim`, row-major.
    Continuous(Vec<f32>),
}

/// A finished episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeInfo {
    /// Which environment.
    pub env: usize,
    /// Raw undiscounted return.
    pub ret: f64,
    /// Steps.
    pub len: u64,
}

/// The result of one vectorised step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepBatch {
    /// `num_envs × obs_len` observations after the step (reset observations where an episode
    /// ended).
    pub obs: Vec<f32>,
    /// Rewards used for training (after any clipping the source applies).
    pub rewards: Vec<f32>,
    /// Ended in a terminal state.
    pub terminated: Vec<bool>,
    /// Cut by a time limit.
    pub truncated: Vec<bool>,
    /// For environments that ended on this step: the observation they ended in.
    pub final_obs: Vec<Option<Vec<f32>>>,
    /// Episodes that finished on this step.
    pub episodes: Vec<EpisodeInfo>,
}

/// `num_envs` environments stepped together.
pub trait VecEnv {
    /// The environment id (`CartPole-v1`, `ALE/Breakout-v5`, …).
    fn id(&self) -> &str;
    /// How many environments.
    fn num_envs(&self) -> usize;
    /// Shape of one observation (`[4]`, `[4, 84, 84]`, …).
    fn obs_shape(&self) -> &[usize];
    /// The action space.
    fn action_space(&self) -> &Space;
    /// Reset every environment; environment `i` is seeded with `seed + i`. Returns the
    /// observations, `num_envs × obs_len`.
    fn reset(&mut self, seed: u64) -> Result<Vec<f32>>;
    /// Step every environment once (same-step autoreset).
    fn step(&mut self, actions: &Actions) -> Result<StepBatch>;
    /// A description of the preprocessing the source applies, saved in the run's config.
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id(), "source": "native" })
    }

    /// Length of one flattened observation.
    fn obs_len(&self) -> usize {
        self.obs_shape().iter().product()
    }

    /// The observation normaliser's running statistics (to save in a checkpoint); `None` when
    /// the source normalises nothing (every native environment).
    fn obs_norm_state(&self) -> Result<Option<ObsNormState>> {
        Ok(None)
    }

    /// Continue from saved normaliser statistics (a resumed run). Fails with
    /// [`HostError::InvalidSetting`] when the source has no normaliser or the sizes differ.
    fn set_obs_norm_state(&mut self, _state: &ObsNormState) -> Result<()> {
        Err(HostError::InvalidSetting(format!(
            "{} does not normalise observations",
            self.id()
        )))
    }
}

/// Running statistics of an observation normaliser (Gymnasium's `NormalizeObservation`): what
/// a policy trained on normalised observations needs to see the same inputs again. Saved in
/// checkpoints (`crate::run::checkpoint::OBS_NORM_BLOB`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObsNormState {
    /// Per-component mean μ.
    pub mean: Vec<f64>,
    /// Per-component (population) variance σ².
    pub var: Vec<f64>,
    /// Number of observations averaged (Gymnasium starts at 1e-4, so a fresh normaliser has
    /// `count = 1e-4`).
    pub count: f64,
    /// ε, added to the variance under the square root.
    pub epsilon: f64,
}

impl ObsNormState {
    /// `y = f32((f64(x) − μ) / √(σ² + ε))` for every row of `obs` (`n × mean.len()`), the
    /// statistics left unchanged: the arithmetic of the bridge's normaliser (numpy's, in float64
    /// then cast), so a float32 observation normalised here and there gives the same bits.
    /// Fails with [`HostError::InvalidSetting`] when `obs` is not a whole number of rows.
    pub fn normalize(&self, obs: &[f32]) -> Result<Vec<f32>> {
        let d = self.mean.len();
        if d == 0 || obs.len() % d != 0 || self.var.len() != d {
            return Err(HostError::InvalidSetting(format!(
                "observation normaliser of {d} components given {} numbers",
                obs.len()
            )));
        }
        Ok(obs
            .chunks(d)
            .flat_map(|row| {
                row.iter()
                    .zip(self.mean.iter().zip(&self.var))
                    .map(|(&x, (&m, &v))| ((f64::from(x) - m) / (v + self.epsilon).sqrt()) as f32)
            })
            .collect())
    }
}

/// Options of Gymnasium-bridged environments (native environments take none).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvOptions {
    /// Running mean/variance observation normalisation (MuJoCo-style vector observations).
    pub normalize_obs: bool,
    /// Scale rewards by the running std of the discounted return.
    pub normalize_reward: bool,
    /// Atari sticky-action probability (`None`: the id's own; 0 is the paper's setting).
    pub sticky_actions: Option<f32>,
}

impl EnvOptions {
    fn is_default(&self) -> bool {
        *self == EnvOptions::default()
    }
}

/// [`make`] with options for Gymnasium environments; options on a native id are an error.
/// `gamma` is the run's discount: the return whose spread `normalize_reward` tracks is
/// discounted with it, as in Gymnasium's `NormalizeReward(env, gamma=...)`.
pub fn make_with(
    id: &str,
    num_envs: usize,
    opts: &EnvOptions,
    gamma: f32,
) -> Result<Box<dyn VecEnv>> {
    if opts.is_default() {
        return make(id, num_envs);
    }
    if native::IDS.contains(&id) {
        return Err(HostError::InvalidSetting(format!(
            "{id} is a native environment: --normalize-obs, --normalize-reward and --sticky-actions apply to Gymnasium environments only"
        )));
    }
    #[cfg(feature = "gymnasium")]
    {
        let g = gym::GymOptions {
            normalize_obs: opts.normalize_obs,
            normalize_reward: opts.normalize_reward,
            gamma: f32_as_decimal_f64(gamma),
            repeat_action_probability: opts.sticky_actions,
            ..gym::GymOptions::default()
        };
        gym::make(id, num_envs, &g)
    }
    #[cfg(not(feature = "gymnasium"))]
    {
        let _ = gamma;
        Err(HostError::UnknownEnv {
            id: id.to_string(),
            known: native::IDS.join(", "),
        })
    }
}

/// The f64 nearest the shortest decimal that reads back as `x`: `--gamma 0.99` (stored as the
/// f32 0.9900000095…) reaches Gymnasium as the f64 0.99, the number a Python user would type.
#[cfg_attr(not(feature = "gymnasium"), allow(dead_code))]
fn f32_as_decimal_f64(x: f32) -> f64 {
    // Rust's `Display` of an f32 is the shortest decimal that round-trips, and every such
    // decimal parses as an f64; the fallback only guards the impossible.
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Make `num_envs` environments of `id`: the core's native environments first, then (with the
/// `gymnasium` feature) any registered Gymnasium id.
pub fn make(id: &str, num_envs: usize) -> Result<Box<dyn VecEnv>> {
    if num_envs == 0 {
        return Err(HostError::InvalidSetting(
            "--num-envs must be at least 1".into(),
        ));
    }
    if let Some(env) = native::make(id, num_envs) {
        return Ok(env);
    }
    #[cfg(feature = "gymnasium")]
    {
        gym::make(id, num_envs, &gym::GymOptions::default())
    }
    #[cfg(not(feature = "gymnasium"))]
    Err(HostError::UnknownEnv {
        id: id.to_string(),
        known: native::IDS.join(", "),
    })
}
