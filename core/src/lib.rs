//! # acktr-core
//!
//! ACKTR (Wu et al. 2017) for fixed-size MLP actor-critics: `no_std`, no allocator, no
//! `unsafe`. Sizes are const generics; every buffer is inline, so a [`Learner`] can live in a
//! `static` on a microcontroller.
//!
//! Data flows through the modules in this order:
//! [`Runner`] (rollout) → [`Rollout`] (returns) → [`ActorCritic`] (forward/backward) →
//! [`Curvature`] (K-FAC factors) → [`trust_region`] (step size) → [`Learner`] (weights) →
//! `format` (the policy file).
//!
//! ```
//! use acktr_core::{env::CartPole, Activation, Config, HeadKind, Learner, Rollout, Runner,
//!                  SharedActorCritic};
//! # use rand_core::SeedableRng;
//! let mut rng = acktr_core::env::Pcg64::from_seed(0);
//! let net = SharedActorCritic::<4, 32, 2>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
//! let mut learner = Learner::new(Config::default(), net).unwrap();
//! let mut envs = [CartPole::default(), CartPole::default()];
//! let mut runner = Runner::new(&mut envs, 0);
//! let mut rollout = Rollout::<4, 2, 2, 16>::new();
//! let (g, l) = (learner.config().gamma, learner.config().gae_lambda);
//! runner.collect(&learner.net, &mut envs, &mut rollout, g, l, &mut rng, |_| {}).unwrap();
//! let stats = learner.update(&rollout, &mut rng).unwrap();
//! assert_eq!(stats.samples, 32);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Index loops mirror the maths (`W[o][i]`, `L[i][k]`) and keep several arrays in step.
#![allow(clippy::needless_range_loop)]

#[cfg(feature = "std")]
extern crate std;

mod collective;
mod config;
mod dense;
mod error;
mod format;
mod head;
mod kfac;
mod learner;
mod policy;
mod rollout;
mod runner;

pub mod env;
pub mod trust_region;

pub use collective::{Collective, Parts, SingleProcess};
pub use config::{Config, Optimizer};
pub use dense::{Activation, Dense};
pub use error::Error;
pub use format::{
    crc32c, encoded_len, encoded_len_parts, file_len, read_header, read_policy, read_policy_into,
    write_policy, write_policy_parts, ObsNorm, PolicyArch, PolicyHeader, MAGIC, MAX_HIDDEN_LAYERS,
    VERSION,
};
pub use head::{log_softmax, standard_normal, uniform01, HeadKind};
pub use kfac::{damping_split, precondition, Curvature, InputFactor, OutputFactor};
pub use learner::{Learner, UpdateStats};
pub use policy::{
    ActorCritic, Backward, BackwardBlock, Forward, ForwardBlock, SeparateActorCritic,
    SharedActorCritic, Trunk,
};
pub use rollout::{Ending, Gae, Rollout, Step};
pub use runner::{env_action, evaluate, Episode, Runner};
