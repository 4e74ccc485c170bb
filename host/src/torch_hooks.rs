//! Where `acktr-torch` plugs the libtorch backend into the trainer.
//!
//! Linking libtorch costs every process that links it about 0.24 s of static initialisers
//! before `main`, whether or not the run uses it — more than half the whole-process time of a
//! native Pendulum training. So `acktr-host` (and its binary `acktr`) does not depend on `tch`:
//! the libtorch code lives in the `acktr-torch` crate, whose binary `acktr-torch` installs
//! these hooks and then runs the same CLI ([`crate::cli::main`]). Without hooks, work that
//! needs libtorch fails with [`HostError::NeedsTorch`](crate::HostError::NeedsTorch) before
//! anything is written, and the CLI hands the command over to `acktr-torch`.

use std::sync::OnceLock;

use acktr_core::HeadKind;

use crate::agent::Agent;
use crate::bench::BenchArgs;
use crate::envs::VecEnv;
use crate::error::Result;
use crate::settings::Settings;

/// Builds a libtorch agent: settings (the backend and device actually used are filled in),
/// environment, head, head outputs, whether to use CUDA.
pub type MakeAgent =
    fn(&mut Settings, &dyn VecEnv, HeadKind, usize, bool) -> Result<Box<dyn Agent>>;

/// The libtorch entry points the trainer calls, as plain function pointers.
#[derive(Clone, Copy, Debug)]
pub struct TorchHooks {
    /// Whether libtorch sees a CUDA device (`--device auto`).
    pub cuda_available: fn() -> bool,
    /// The tch backend's agent (`--backend tch`, and `auto` where no native network fits).
    pub make_agent: MakeAgent,
    /// `acktr bench`'s libtorch tables (appended after the native ones).
    pub bench_tables: fn(&BenchArgs) -> Result<String>,
}

static HOOKS: OnceLock<TorchHooks> = OnceLock::new();

/// Install the hooks for this process; the first installation wins (a later one is handed
/// back as the error).
pub fn install(hooks: TorchHooks) -> std::result::Result<(), TorchHooks> {
    HOOKS.set(hooks)
}

/// The installed hooks; `None` in the lean `acktr`, which has no libtorch.
pub fn get() -> Option<&'static TorchHooks> {
    HOOKS.get()
}
