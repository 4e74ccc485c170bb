//! The tch backend's side of `acktr_host::train::make_agent`.

use acktr_core::HeadKind;
use acktr_host::agent::Agent;
use acktr_host::envs::VecEnv;
use acktr_host::error::{HostError, Result};
use acktr_host::settings::{Algo, ArchArg, Backend, KfacInverseArg, KfacThreadArg, Settings};

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
    let arch =
        match s.arch {
            ArchArg::Mlp => Arch::Mlp {
                hidden: s.hidden.clone(),
                separate: s.separate,
                activation: s.activation.core(),
            },
            ArchArg::Minatar => Arch::MinAtar,
            ArchArg::MinatarSmall => Arch::MinAtarSmall,
            ArchArg::MinatarMedium => return Err(HostError::InvalidSetting(
                "--arch minatar-medium runs on the native backend only (--backend native or auto)"
                    .into(),
            )),
            ArchArg::Nature => Arch::Nature,
        };
    s.backend = Backend::Tch;
    s.device = format!("{device:?}").to_lowercase();
    if device == tch::Device::Cpu
        && matches!(arch, Arch::Mlp { .. })
        && std::env::var_os("OMP_NUM_THREADS").is_none()
    {
        // An MLP's operators are too small to split: with libtorch's default of one intra-op
        // thread per core, CartPole A2C took 1.42 s per 100k env steps against 0.97 s on one.
        tch::set_num_threads(1);
    }
    let mut agent = TorchAgent::new(
        s.config,
        arch,
        env.obs_shape(),
        head,
        outputs,
        device,
        s.seed,
    )?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let on = s.algo == Algo::Acktr // A2C has no curvature work to overlap
        && match s.kfac_thread {
            KfacThreadArg::On => true,
            KfacThreadArg::Off => false,
            // A core beside the intra-op threads, or the two threads slow each other down
            // (2.3 ms against 0.85 ms an MLP update with 2 intra-op threads on 2 cores).
            KfacThreadArg::Auto => cores > tch::get_num_threads().max(1) as usize,
        };
    agent.learner.set_worker(on)?;
    agent.learner.set_inverse_method(match s.kfac_inverse {
        KfacInverseArg::Cholesky => crate::kfac::InverseMethod::Cholesky,
        KfacInverseArg::Eigh => crate::kfac::InverseMethod::Eigh,
    });
    s.kfac_thread = if on {
        KfacThreadArg::On
    } else {
        KfacThreadArg::Off
    };
    Ok(Box::new(agent))
}
