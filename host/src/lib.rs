//! `acktr-host`: the workstation half of ACKTR — vectorised environments, the trainers
//! (native on acktr-core, and libtorch), run folders with logs and checkpoints, export, plots.

// Index loops keep several per-environment arrays in step.
#![allow(clippy::needless_range_loop)]

pub mod agent;
pub mod bench;
pub mod envs;
pub mod error;
pub mod native;
pub mod plot;
pub mod run;
pub mod settings;
#[cfg(feature = "torch")]
pub mod torch;
pub mod train;

pub use error::{HostError, Result};
