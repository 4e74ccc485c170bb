//! The tch backend's side of `acktr_host::train::make_agent`.

use acktr_core::HeadKind;
use acktr_host::agent::Agent;
use acktr_host::envs::VecEnv;
use acktr_host::error::{HostError, Result};
use acktr_host::settings::{ArchArg, Backend, Settings};

use crate::agent::TorchAgent;
use crate::net::Arch;

/// Whether libtorch sees a CUDA device.
pub fn cuda_available() -> bool {
    tch::Cuda::is_available()
}

/// A libtorch agent for `env` (head and outputs from its action space), on CUDA device 0 when
/// `cuda`; sets `s.backend` to tch and `s.device` to the device used.
pub fn tch_agent(
    s: &mut Settings,
    env: &dyn VecEnv,
    head: HeadKind,
    outputs: usize,
    cuda: bool,
) -> Result<Box<dyn Agent>> {
    if cuda && !tch::Cuda::is_available() {
        return Err(HostError::InvalidSetting(
            "--device cuda: no CUDA device is available".into(),
        ));
    }
    let device = if cuda {
        tch::Device::Cuda(0)
    } else {
        tch::Device::Cpu
    };
    let arch = match s.arch {
        ArchArg::Mlp => Arch::Mlp {
            hidden: s.hidden.clone(),
            separate: s.separate,
            activation: s.activation.core(),
        },
        ArchArg::Minatar => Arch::MinAtar,
        ArchArg::Nature => Arch::Nature,
    };
    s.backend = Backend::Tch;
    s.device = format!("{device:?}").to_lowercase();
    let agent = TorchAgent::new(
        s.config,
        arch,
        env.obs_shape(),
        head,
        outputs,
        device,
        s.seed,
    )?;
    Ok(Box::new(agent))
}
