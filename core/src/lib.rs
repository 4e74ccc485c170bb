//! # acktr-core
//!
//! ACKTR (Actor-Critic using Kronecker-Factored Trust Region; Wu, Mansimov, Liao, Grosse, Ba,
//! 2017) for fixed-size MLP actor-critics, optionally on a conv encoder: `no_std`, no
//! allocator, no `unsafe`. Sizes are const generics and every buffer is inline, so a
//! [`Learner`] can live in a `static` on a microcontroller; the same code trains on a
//! workstation (the `acktr` CLI's native backend).
//!
//! ## Train, then export
//!
//! A 4-32-32 tanh actor-critic with a categorical head learns CartPole-v1 from two
//! environments × 16 steps per update; its policy is then written as a policy file (the
//! format the firmware loads, `docs/format.md`) and read back:
//!
//! ```
//! use acktr_core::{env::CartPole, encoded_len, read_policy, write_policy, Activation, Config,
//!                  HeadKind, Learner, Rollout, Runner, SharedActorCritic};
//! # use rand_core::SeedableRng;
//! let mut rng = acktr_core::env::Pcg64::from_seed(0);
//! let net = SharedActorCritic::<4, 32, 2>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
//! let mut learner = Learner::new(Config::default(), net).unwrap();
//! let mut envs = [CartPole::default(), CartPole::default()];
//! let mut runner = Runner::new(&mut envs, 0);
//! let mut rollout = Rollout::<4, 2, 2, 16>::new();
//! let (gamma, lambda) = (learner.config().gamma, learner.config().gae_lambda);
//! for _ in 0..20 {
//!     // Rollout → returns, then one natural-gradient step under the trust region.
//!     runner.collect(&learner.net, &mut envs, &mut rollout, gamma, lambda, &mut rng, |_| {})
//!         .unwrap();
//!     let stats = learner.update(&rollout, &mut rng).unwrap();
//!     assert_eq!(stats.samples, 32);
//! }
//!
//! // Export: 5,283 bytes with its CRC; no observation normaliser.
//! assert_eq!(encoded_len(&learner.net, None), 5283);
//! let mut file = [0u8; 5283];
//! let len = write_policy(&learner.net, None, &mut file).unwrap();
//! let (policy, norm) = read_policy::<4, 32, 2, 1>(&file[..len]).unwrap();
//! assert_eq!((policy, norm), (learner.net, None));
//! ```
//!
//! ## The API, in the order data flows
//!
//! [`Runner`] (rollout of `E` environments × `N` steps) → [`Rollout`] (k-step or GAE returns)
//! → [`ActorCritic`] (forward and backward passes; [`SharedActorCritic`] or
//! [`SeparateActorCritic`] trunks of [`Dense`] layers, a [`HeadKind`] head) → [`Curvature`]
//! (the K-FAC factors and their damped `LDLᵀ`) → [`trust_region`] (the step size) →
//! [`Learner`] (the weights; [`Config`] holds every setting under the paper's names) →
//! [`write_policy`] / [`read_policy`] / [`read_policy_into`] (the policy file). [`env`](mod@env) has
//! Gymnasium-exact environments (feature `envs`, on by default).
//!
//! For grid sensors, a [`ConvEncoder`] (one [`Conv2d`] layer with its KFC factors,
//! [`ConvCurvature`]) sits below the trunks: `Learner<OBS, H, P, T, IN, ConvEncoder<…>>`, its
//! policy file version 2 ([`write_conv_policy_parts`]). [`MinAtarSmall`] names the
//! microcontroller's MinAtar net and [`MINATAR_SMALL_LEARNER_BYTES`] its learner's size.
//!
//! Every fallible call returns [`Error`], whose variant names the phase that failed; an update
//! that fails leaves the weights and momentum as they were (see [`Learner::update`]).
//!
//! ## Features
//!
//! - `envs` (default): the environments of [`env`](mod@env); `no_std`, usable on a device.
//! - `std`: hosts only; vectorised square roots (the same numbers).
//!
//! The algorithm, its choices and its costs: `docs/algorithm.md` in the repository.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Index loops mirror the maths (`W[o][i]`, `L[i][k]`) and keep several arrays in step.
#![allow(clippy::needless_range_loop)]

#[cfg(feature = "std")]
extern crate std;

mod collective;
mod config;
mod conv;
mod dense;
mod encoder;
mod error;
mod format;
mod head;
mod kfac;
mod learner;
mod nets;
mod policy;
mod rollout;
mod runner;

pub mod env;
pub mod trust_region;

pub use collective::{Collective, Parts, SingleProcess};
pub use config::{Config, Optimizer};
pub use conv::{conv_out, Conv2d, ConvCurvature};
pub use dense::{Activation, Dense};
pub use encoder::{ConvEncoder, ConvLanes, Encoder, EncoderCurvature, Identity};
pub use error::Error;
pub use format::{
    crc32c, encoded_len, encoded_len_conv_parts, encoded_len_parts, file_len, read_header,
    read_policy, read_policy_into, write_conv_policy_parts, write_policy, write_policy_parts,
    ConvSpec, ObsNorm, PolicyArch, PolicyHeader, MAGIC, MAX_HIDDEN_LAYERS, VERSION,
};
pub use head::{log_softmax, standard_normal, uniform01, HeadKind};
pub use kfac::{damping_split, precondition, Curvature, InputFactor, OutputFactor};
pub use learner::{Learner, UpdateStats};
pub use nets::{
    MinAtarSmall, MinAtarSmallEncoder, MinAtarSmallLearner, MINATAR_SMALL_LEARNER_BYTES,
    MINATAR_SMALL_PARAMS,
};
pub use policy::{
    ActorCritic, Backward, BackwardBlock, Forward, ForwardBlock, SeparateActorCritic,
    SharedActorCritic, Trunk,
};
pub use rollout::{Ending, Gae, Rollout, Step};
pub use runner::{env_action, evaluate, Episode, Runner};
