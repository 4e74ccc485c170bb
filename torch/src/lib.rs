//! `acktr-torch`: the libtorch backend of the acktr trainer — networks (MLPs, the MinAtar net,
//! the Nature CNN), K-FAC on tensors, the update, CUDA when present — and the `acktr-torch`
//! binary: `acktr`'s CLI with this backend installed ([`hooks`]).
//!
//! It is a crate of its own because linking libtorch costs every process ~0.24 s of static
//! initialisers before `main`: the lean `acktr` (acktr-host) does not link it, and hands work
//! that needs libtorch to `acktr-torch` (see `acktr_host::torch_hooks`).

// Index loops keep several per-layer arrays in step.
#![allow(clippy::needless_range_loop)]

pub mod agent;
pub mod bench;
pub mod kfac;
pub mod learner;
pub mod net;
pub mod train;
pub mod worker;

use acktr_host::torch_hooks::TorchHooks;

/// The libtorch backend as the trainer's hooks (for [`acktr_host::cli::main`] or
/// [`acktr_host::torch_hooks::install`]).
pub fn hooks() -> TorchHooks {
    TorchHooks {
        cuda_available: train::cuda_available,
        make_agent: train::tch_agent,
        bench_tables: bench::tch_tables,
    }
}
