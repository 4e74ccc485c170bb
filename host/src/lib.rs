//! `acktr-host`: the workstation half of ACKTR — vectorised environments, the trainer (native
//! on acktr-core; the libtorch backend plugs in from the `acktr-torch` crate through
//! [`torch_hooks`]), run folders with logs and checkpoints, export, plots, the CLI.

// Index loops keep several per-environment arrays in step.
#![allow(clippy::needless_range_loop)]

pub mod agent;
pub mod bench;
pub mod benchmark;
pub mod cli;
pub mod dist;
pub mod envs;
pub mod error;
pub mod native;
pub mod plot;
pub mod run;
pub mod settings;
pub mod torch_hooks;
pub mod train;

pub use error::{HostError, Result};
