//! Environments with Gymnasium's exact dynamics, `no_std`.
//!
//! Every environment implements [`Env`]: `reset` (optionally reseeding, as Gymnasium's
//! `reset(seed=…)`), then `step` until `terminated` or `truncated`.
//!
//! | Environment | Gymnasium id | `OBS` | Actions | Time limit |
//! |---|---|---|---|---|
//! | `CartPole` | `CartPole-v1` | 4 | `Discrete(2)` | 500 |
//! | `Pendulum` | `Pendulum-v1` | 3 | `Continuous { dim: 1, low: -2, high: 2 }` | 200 |
//! | `Acrobot` | `Acrobot-v1` | 6 | `Discrete(3)` | 500 |
//! | `MountainCarContinuous` | `MountainCarContinuous-v0` | 2 | `Continuous { dim: 1, low: -1, high: 1 }` | 999 |
//! | `Breakout` | `MinAtar/Breakout-v1` (package `minatar`) | 400 (10×10×4) | `Discrete(3)` | none |
//!
//! Seeding is numpy's ([`Pcg64`] = `np.random.default_rng(seed)`), so `reset(Some(seed))`
//! gives Gymnasium's initial state for the same seed. The arithmetic follows Gymnasium's
//! source operation by operation (including numpy's float32/float64 promotion rules); only the
//! last bit of `sin`/`cos`/`pow` depends on the C library, which is why every environment is
//! generic over [`Math`] (default: the portable [`LibmMath`]). `docs/environments.md` says
//! what is bit-exact and how the recordings that prove it were made.
//!
//! MinAtar's Breakout is the exception to the seeding above: the package draws from numpy's
//! legacy `RandomState`, reproduced by [`Mt19937`]; it involves no floating-point maths besides
//! that generator's `rand()`, so it is bit-exact everywhere.

// The trait, numpy's generator and the maths are always there; the environments themselves
// come with the `envs` feature (on by default).
#[cfg(feature = "envs")]
mod acrobot;
#[cfg(feature = "envs")]
mod breakout;
#[cfg(feature = "envs")]
mod cartpole;
pub mod math;
#[cfg(feature = "envs")]
mod mountain_car;
pub mod mt19937;
#[cfg(feature = "envs")]
mod pendulum;
pub mod seeding;

#[cfg(feature = "envs")]
pub use acrobot::Acrobot;
#[cfg(feature = "envs")]
pub use breakout::{Breakout, BreakoutParams, BreakoutState, BREAKOUT_OBS};
#[cfg(feature = "envs")]
pub use cartpole::{CartPole, CartPoleParams};
pub use math::{LibmMath, Math};
#[cfg(feature = "envs")]
pub use mountain_car::{MountainCarContinuous, MountainCarState};
pub use mt19937::Mt19937;
#[cfg(feature = "envs")]
pub use pendulum::{Pendulum, PendulumParams};
pub use seeding::Pcg64;

/// What an action is for an environment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActionSpace {
    /// `n` discrete actions `0..n` (Gymnasium `Discrete(n)`); the policy uses a categorical head.
    Discrete(usize),
    /// A box `[low, high]` in every one of `dim` dimensions (Gymnasium `Box`); Gaussian head.
    Continuous {
        /// Number of action dimensions.
        dim: usize,
        /// Lower bound, the same for every dimension.
        low: f32,
        /// Upper bound, the same for every dimension.
        high: f32,
    },
}

/// An action handed to [`Env::step`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action<'a> {
    /// Index into a `Discrete` space.
    Discrete(usize),
    /// One value per dimension of a `Continuous` space (environments clip as Gymnasium does).
    Continuous(&'a [f32]),
}

/// The result of one [`Env::step`] (Gymnasium's `(obs, reward, terminated, truncated, info)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition<const OBS: usize> {
    /// Observation after the step (f32 cast of the f64 state, as Gymnasium returns it).
    pub obs: [f32; OBS],
    /// Reward of the step.
    pub reward: f32,
    /// The episode ended in a terminal state: do not bootstrap.
    pub terminated: bool,
    /// The episode was cut by the time limit: bootstrap from `obs`.
    pub truncated: bool,
}

/// Errors an environment returns instead of panicking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvError {
    /// The action does not belong to the action space (wrong kind, index or dimension).
    InvalidAction,
    /// `step` called before `reset` or after the episode ended.
    NeedsReset,
}

impl core::fmt::Display for EnvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EnvError::InvalidAction => f.write_str("action does not belong to the action space"),
            EnvError::NeedsReset => {
                f.write_str("step called before reset or after the episode ended")
            }
        }
    }
}

/// A single environment with an `OBS`-dimensional observation.
pub trait Env<const OBS: usize> {
    /// The action space (fixed for the environment's lifetime).
    fn action_space(&self) -> ActionSpace;
    /// Start an episode. `Some(seed)` reseeds the environment's generator exactly as
    /// Gymnasium's `reset(seed=seed)`; `None` continues the current stream.
    fn reset(&mut self, seed: Option<u64>) -> [f32; OBS];
    /// Advance one step.
    fn step(&mut self, action: Action<'_>) -> Result<Transition<OBS>, EnvError>;
}
