//! The trainer's settings: one clap struct (its doc lines are `acktr train --help`), resolved
//! against per-environment presets (like rl-zoo's) into a fully explicit [`Settings`] that
//! every run saves next to its logs.

use std::path::PathBuf;

use acktr_core::{Activation, Config};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::{HostError, Result};

/// The learning algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Algo {
    /// K-FAC natural gradient with a trust region.
    Acktr,
    /// First-order baseline: RMSprop on the same loss and rollout.
    A2c,
}

impl Algo {
    /// The name on the command line (`--algo`) and in run-folder names.
    pub fn cli_name(self) -> &'static str {
        match self {
            Algo::Acktr => "acktr",
            Algo::A2c => "a2c",
        }
    }

    /// The name in tables and reports.
    pub fn label(self) -> &'static str {
        match self {
            Algo::Acktr => "ACKTR",
            Algo::A2c => "A2C",
        }
    }
}

/// Which implementation trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Backend {
    /// Native for MLP policies on CPU when their sizes are compiled in, libtorch otherwise.
    Auto,
    /// acktr-core's fixed-size networks (the microcontroller's code), no libtorch.
    Native,
    /// libtorch through tch (conv nets, any size, CUDA).
    Tch,
}

/// Compute device for the libtorch backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum DeviceArg {
    /// CUDA when available, else CPU.
    Auto,
    /// CPU.
    Cpu,
    /// CUDA (error if unavailable).
    Cuda,
}

/// Where the tch backend runs K-FAC's curvature work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum KfacThreadArg {
    /// On a thread of its own when a core is left beside libtorch's intra-op threads.
    Auto,
    /// On a thread of its own, overlapped with the loss backward.
    On,
    /// In sequence on the training thread.
    Off,
}

/// How the tch backend inverts the damped Kronecker factors (the same update up to rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum KfacInverseArg {
    /// Cholesky factorisation of `F + d·I` (faster; docs/algorithm.md).
    Cholesky,
    /// Symmetric eigendecomposition `F = Q diag(λ) Qᵀ`, inverse `Q diag(1/(λ+d)) Qᵀ`.
    Eigh,
}

/// Which family of defaults fills the options left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum PresetName {
    /// Fewest env steps to the environment's threshold (the default).
    #[default]
    Sample,
    /// Most env steps per second (one shared trunk, one joint trust region, cheaper factor
    /// statistics): more env steps to the threshold; docs/results.md states the trade.
    Fast,
    /// Pendulum-v1 only: the settings the Cortex-M4F learns it with from scratch (16-16 nets;
    /// docs/embedded.md).
    Mcu,
}

/// Network family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ArchArg {
    /// Fully connected (`--hidden`, `--separate`, `--activation`).
    Mlp,
    /// MinAtar conv net (conv 16×3×3 → fc 128).
    Minatar,
    /// Small MinAtar conv net for microcontrollers (conv 4×4×4 stride 2 → 32-32, ReLU; acktr-core's
    /// `MinAtarSmall`): native on MinAtar/Breakout-v1, or `--backend tch`; `acktr export` writes
    /// it as a version-2 policy file.
    MinatarSmall,
    /// MinAtar conv net of the native backend (conv 8×4×4 stride 2 → 64-64, ReLU):
    /// the default of MinAtar Breakout, Asterix and SpaceInvaders; `acktr export` writes it as a
    /// version-2 policy file.
    MinatarMedium,
    /// Nature DQN CNN (84×84×4 Atari frames).
    Nature,
}

/// Hidden nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ActivationArg {
    /// tanh.
    Tanh,
    /// ReLU.
    Relu,
}

/// Learning-rate (`η_max`) schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Linear decay to zero over `--total-steps` (the paper's Atari setting).
    Linear,
}

/// `acktr train`: every option left out comes from the environment's preset.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct TrainArgs {
    /// Environment id, Gymnasium naming (CartPole-v1, Pendulum-v1, Acrobot-v1,
    /// MountainCarContinuous-v0, MinAtar/Breakout-v1 natively; ALE/Breakout-v5, MinAtar/Asterix-v1,
    /// Hopper-v5, … through Gymnasium when built with the `gymnasium` feature).
    #[arg(long, default_value = "CartPole-v1")]
    pub env: String,
    /// Algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Acktr)]
    pub algo: Algo,
    /// Defaults for the options left out: `sample` (fewest env steps), `fast` (most env
    /// steps per second) or, for Pendulum-v1, `mcu` (the microcontroller's 16-16 nets). With
    /// `--backend tch`, `sample` is `fast` (the critic's own trust region is native only).
    #[arg(long, value_enum, default_value_t = PresetName::Sample)]
    #[serde(default)]
    pub preset: PresetName,
    /// Implementation: auto picks native for compiled-in MLP sizes on CPU, else tch.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Parallel environments.
    #[arg(long)]
    pub num_envs: Option<usize>,
    /// Steps per environment per update (the k of k-step returns).
    #[arg(long)]
    pub num_steps: Option<usize>,
    /// Total environment steps.
    #[arg(long)]
    pub total_steps: Option<u64>,
    /// Seed of environments, initialisation and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device for the tch backend (`cuda` needs `--backend tch` or `auto`).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// tch backend, ACKTR: run the Fisher pass, factor statistics and inverses on a second
    /// thread while the loss gradient is backpropagated (the same numbers as in sequence at
    /// one intra-op thread).
    #[arg(long, value_enum, default_value_t = KfacThreadArg::Auto)]
    #[serde(default = "default_kfac_thread")]
    pub kfac_thread: KfacThreadArg,
    /// tch backend, ACKTR: how the damped Kronecker factors are inverted.
    #[arg(long, value_enum, default_value_t = KfacInverseArg::Cholesky)]
    #[serde(default = "default_kfac_inverse")]
    pub kfac_inverse: KfacInverseArg,
    /// Run folder (default: runs/<env>-<algo>-s<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Normalise observations with running statistics (Gymnasium environments; the MuJoCo
    /// preset's default is true): `--normalize-obs` or `--normalize-obs false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub normalize_obs: Option<bool>,
    /// Scale rewards by the running std of the discounted return (Gymnasium environments):
    /// `--normalize-reward` or `--normalize-reward false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub normalize_reward: Option<bool>,
    /// Atari sticky-action probability (default: the id's own; 0 is the paper's setting).
    #[arg(long)]
    pub sticky_actions: Option<f32>,
    /// Network family.
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Hidden widths of an MLP, comma separated (e.g. 64,64). Runs whose estimated memory
    /// (weights ×4, K-FAC factors ×3, the rollout batch and its activations) exceeds 80% of
    /// the machine's physical memory (64 GiB where it cannot be read) are refused.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Separate actor and critic trunks (else one shared trunk).
    #[arg(long)]
    pub separate: Option<bool>,
    /// Hidden nonlinearity of an MLP.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// η_max: largest step (ACKTR) or learning rate (A2C).
    #[arg(long)]
    pub lr: Option<f32>,
    /// η_max schedule.
    #[arg(long, value_enum)]
    pub lr_schedule: Option<Schedule>,
    /// δ: trust-region KL bound.
    #[arg(long)]
    pub kl_clip: Option<f32>,
    /// λ: Tikhonov damping of the Kronecker factors.
    #[arg(long)]
    pub damping: Option<f32>,
    /// Momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Running-average decay of the factors.
    #[arg(long)]
    pub stat_decay: Option<f32>,
    /// Recompute the damped inverses every this many updates.
    #[arg(long)]
    pub inverse_every: Option<u32>,
    /// Every this-many-th sample of a batch feeds the Kronecker factors (1: all of them).
    #[arg(long)]
    pub stat_stride: Option<u32>,
    /// Plain gradient steps before the natural gradient starts.
    #[arg(long)]
    pub cold_iters: Option<u32>,
    /// Standardise each batch's advantages (mean 0, std 1):
    /// `--normalize-advantage` or `--normalize-advantage false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub normalize_advantage: Option<bool>,
    /// δ_v: the critic's own trust region, for separate trunks (0: one joint trust region).
    #[arg(long)]
    pub vf_kl_clip: Option<f32>,
    /// Natural-gradient steps of the critic per batch (more than 1 needs --vf-kl-clip).
    #[arg(long)]
    pub vf_iters: Option<u32>,
    /// Each further critic step reads every this-many-th sample of the batch (1: all).
    #[arg(long)]
    pub vf_stride: Option<u32>,
    /// Adapt η_max toward this measured KL per policy step (×/÷1.5; 0: off).
    #[arg(long)]
    pub target_kl: Option<f32>,
    /// The critic's steps in the Euclidean norm instead of the Gauss–Newton norm (the paper's
    /// ablation; needs --vf-kl-clip): `--vf-euclidean` or `--vf-euclidean false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub vf_euclidean: Option<bool>,
    /// Entropy bonus coefficient.
    #[arg(long)]
    pub ent_coef: Option<f32>,
    /// Value-loss coefficient.
    #[arg(long)]
    pub vf_coef: Option<f32>,
    /// Discount γ.
    #[arg(long)]
    pub gamma: Option<f32>,
    /// GAE λ (1: k-step returns).
    #[arg(long)]
    pub gae_lambda: Option<f32>,
    /// Gradient-norm clip of first-order and cold steps.
    #[arg(long)]
    pub max_grad_norm: Option<f32>,
    /// L2 weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Updates between progress lines and log rows.
    #[arg(long, default_value_t = 10)]
    pub log_every: u32,
    /// Env steps between checkpoints (0: only at the end).
    #[arg(long, default_value_t = 100_000)]
    pub checkpoint_every: u64,
    /// Deterministic evaluation episodes (periodic and final).
    #[arg(long, default_value_t = 20)]
    pub eval_episodes: u32,
    /// Env steps between periodic deterministic evaluations (0: only at the end); logged as
    /// `eval/mean_reward`.
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    /// Stop as soon as a periodic evaluation's mean return reaches this (needs --eval-every).
    #[arg(long)]
    pub stop_at: Option<f64>,
    /// Stop as soon as the mean return of the last --train-mean-window finished training
    /// episodes (all environments, in the order they ended) reaches this; the final line then
    /// reports the env steps at which it did and the wall time since training started.
    #[arg(long, value_name = "RETURN")]
    pub stop_at_train_mean: Option<f64>,
    /// Episodes in the --stop-at-train-mean window.
    #[arg(long, value_name = "N", default_value_t = 20)]
    #[serde(default = "default_train_mean_window")]
    pub train_mean_window: usize,
    /// With --stop-at-train-mean: record where the target is reached (the final line reports
    /// it) but train on to --total-steps (throughput over the same budget for every run).
    #[arg(long, requires = "stop_at_train_mean")]
    #[serde(default)]
    pub train_mean_no_stop: bool,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// Everything a run uses, resolved (saved as config.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Environment id.
    pub env: String,
    /// Algorithm.
    pub algo: Algo,
    /// The preset the options left out came from.
    #[serde(default)]
    pub preset: PresetName,
    /// Backend actually used.
    pub backend: Backend,
    /// Device actually used (tch), "cpu" for native.
    pub device: String,
    /// K-FAC's work on a thread of its own: as asked, then set by the backend to what it did
    /// (`On`/`Off`; only tch ACKTR has one).
    #[serde(default = "default_kfac_thread")]
    pub kfac_thread: KfacThreadArg,
    /// How the tch backend inverts the damped factors (runs saved before the option existed
    /// used Cholesky).
    #[serde(default = "default_kfac_inverse")]
    pub kfac_inverse: KfacInverseArg,
    /// Parallel environments.
    pub num_envs: usize,
    /// Steps per environment per update.
    pub num_steps: usize,
    /// Total env steps.
    pub total_steps: u64,
    /// Seed.
    pub seed: u64,
    /// Options of Gymnasium environments.
    #[serde(default)]
    pub env_options: crate::envs::EnvOptions,
    /// Network family.
    pub arch: ArchArg,
    /// MLP hidden widths.
    pub hidden: Vec<usize>,
    /// Separate trunks.
    pub separate: bool,
    /// MLP nonlinearity.
    pub activation: ActivationArg,
    /// `η_max` schedule.
    pub lr_schedule: Schedule,
    /// The learner's settings (acktr-core's `Config`).
    pub config: Config,
    /// Checkpoint interval in env steps.
    pub checkpoint_every: u64,
    /// Log interval in updates.
    pub log_every: u32,
    /// Evaluation episodes.
    pub eval_episodes: u32,
    /// Env steps between periodic evaluations (0: none).
    #[serde(default)]
    pub eval_every: u64,
    /// Stop once a periodic evaluation reaches this mean return.
    #[serde(default)]
    pub stop_at: Option<f64>,
    /// Stop once the mean return of the last `train_mean_window` training episodes reaches this.
    #[serde(default)]
    pub stop_at_train_mean: Option<f64>,
    /// Episodes in the `stop_at_train_mean` window.
    #[serde(default = "default_train_mean_window")]
    pub train_mean_window: usize,
    /// Only record `stop_at_train_mean`'s target, train on to `total_steps`.
    #[serde(default)]
    pub train_mean_no_stop: bool,
}

fn default_train_mean_window() -> usize {
    20
}

fn default_kfac_thread() -> KfacThreadArg {
    KfacThreadArg::Auto
}

fn default_kfac_inverse() -> KfacInverseArg {
    KfacInverseArg::Cholesky
}

impl ActivationArg {
    /// The core's activation.
    pub fn core(self) -> Activation {
        match self {
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Relu => Activation::Relu,
        }
    }
}

struct Preset {
    num_envs: usize,
    num_steps: usize,
    total_steps: u64,
    arch: ArchArg,
    hidden: Vec<usize>,
    separate: bool,
    activation: ActivationArg,
    schedule: Schedule,
    /// Gymnasium observation normalisation.
    normalize_obs: bool,
    /// Gymnasium reward normalisation.
    normalize_reward: bool,
    acktr: Config,
    a2c: Config,
}

/// The ACKTR settings of the sample-efficient presets on top of `base`: the critic's own trust
/// region (`vf_kl_clip` 0.03 unless `base` has one) and 10 natural steps of it per batch, standardised advantages,
/// `kl_clip` 0.01, the value loss at the paper's 0.5.
fn sample_efficient(base: Config) -> Config {
    Config {
        // No momentum: the trust region then bounds the step taken, not only its newest
        // part (CartPole seeds 10–29: median 31k env steps to the threshold against 59k with
        // momentum 0.9; Hopper seed 0 at 250k: 1,702 against 1,343).
        momentum: 0.0,
        kl_clip: 0.01,
        value_coef: 0.5,
        normalize_advantage: true,
        vf_kl_clip: if base.vf_kl_clip > 0.0 {
            base.vf_kl_clip
        } else {
            0.03
        },
        vf_iters: 10,
        ..base
    }
}

fn preset(env: &str, name: PresetName, arch: Option<ArchArg>) -> Preset {
    let fast = name == PresetName::Fast;
    let acktr = Config::default();
    let a2c = Config::a2c();
    let mlp = |separate| Preset {
        num_envs: 16,
        num_steps: 20,
        total_steps: 500_000,
        arch: ArchArg::Mlp,
        hidden: vec![64, 64],
        separate,
        activation: ActivationArg::Tanh,
        schedule: Schedule::Constant,
        normalize_obs: false,
        normalize_reward: false,
        acktr,
        a2c,
    };
    match env {
        // The throughput-tuned alternative (`--preset fast`): one shared trunk under one joint
        // trust region, a wide region and a light value loss so that the critic does not
        // dominate it, CartPole's factor statistics from every 32nd sample.
        "CartPole-v1" | "Acrobot-v1" if fast => Preset {
            total_steps: 200_000,
            acktr: Config {
                kl_clip: 0.01,
                value_coef: 0.05,
                stat_stride: if env == "CartPole-v1" { 32 } else { 1 },
                ..acktr
            },
            a2c: Config {
                eta_max: 3e-3,
                ..a2c
            },
            ..mlp(false)
        },
        // Fewest env steps (docs/results.md): separate actor and critic, each under its own
        // trust region, the critic fitted by 10 natural steps per batch, standardised
        // advantages, no momentum. The 9 further critic steps read a ninth of the batch each
        // (together one pass, at the cost of one). CartPole's factor statistics from every
        // 32nd sample.
        "CartPole-v1" | "Acrobot-v1" => Preset {
            total_steps: 200_000,
            acktr: sample_efficient(Config {
                stat_stride: if env == "CartPole-v1" { 32 } else { 1 },
                vf_stride: 9,
                ..acktr
            }),
            a2c: Config {
                eta_max: 3e-3,
                ..a2c
            },
            ..mlp(true)
        },
        // The microcontroller's (`--preset mcu`, docs/embedded.md "Pendulum from scratch"): the
        // smallest net and batch found that learn Pendulum on every one of seeds 0–9 (100-episode
        // evaluation ≥ −200): the Pendulum preset below on separate 16-16 ReLU nets, 8 envs ×
        // 20 steps, 179,200 env steps, γ 0.95 and (ACKTR) δ 0.01.
        "Pendulum-v1" if name == PresetName::Mcu => {
            let p = preset(env, PresetName::Sample, arch);
            Preset {
                num_envs: 8,
                total_steps: 179_200,
                hidden: vec![16, 16],
                acktr: Config {
                    kl_clip: 0.01,
                    gamma: 0.95,
                    ..p.acktr
                },
                a2c: Config {
                    gamma: 0.95,
                    ..p.a2c
                },
                ..p
            }
        }
        // Found by sweeps over seeds 0–9 (docs/results.md): γ 0.9 as is usual for Pendulum, a
        // wider trust region, no entropy bonus, a linear decay of η_max; ReLU 64-64 actor and
        // critic (RLtools' Pendulum networks); factor statistics from every 8th sample.
        "Pendulum-v1" => Preset {
            total_steps: 307_200,
            schedule: Schedule::Linear,
            activation: ActivationArg::Relu,
            acktr: Config {
                kl_clip: 0.02,
                gamma: 0.9,
                gae_lambda: 0.95,
                entropy_coef: 0.0,
                stat_stride: 8,
                ..acktr
            },
            a2c: Config {
                eta_max: 3e-3,
                gamma: 0.9,
                gae_lambda: 0.95,
                entropy_coef: 0.0,
                ..a2c
            },
            ..mlp(true)
        },
        "MountainCarContinuous-v0" => Preset {
            total_steps: 307_200,
            acktr: Config {
                kl_clip: 0.01,
                value_coef: 0.05,
                gae_lambda: 0.95,
                ..acktr
            },
            a2c: Config {
                eta_max: 3e-3,
                gae_lambda: 0.95,
                ..a2c
            },
            ..mlp(true)
        },
        // Conv nets: factor statistics from every 8th sample. On MinAtar Breakout (1M env
        // steps, seeds 0–2) it learned as well as every sample (last-100 means 9.54 median
        // against 9.41) at 1.4× the env steps per second; on the Nature CNN it brings an ACKTR
        // update from 3.9× to 1.6× A2C's (docs/performance-figures.md).
        id if id.starts_with("ALE/") => Preset {
            num_envs: 32,
            num_steps: 20,
            total_steps: 10_000_000,
            arch: ArchArg::Nature,
            schedule: Schedule::Linear,
            acktr: Config {
                stat_stride: 8,
                ..acktr
            },
            ..mlp(false)
        },
        // The small conv net (`--arch minatar-small`, acktr-core's `MinAtarSmall`): the
        // learner's defaults (every sample in the statistics) but `kl_clip` 0.003, on 16 envs ×
        // 5 steps, the MinAtar preset otherwise. Breakout at 1M env steps, seeds 0–2, median
        // last-100 training mean: 11.96 against 10.14 with kl_clip 0.001, 11.11 with 0.002,
        // 11.59 with 0.004, 6.25 with 0.008; 10.60 with stat_stride 4, 9.16 with 10 steps,
        // 9.58 with a constant η_max (docs/conv.md).
        id if id.starts_with("MinAtar/") && arch == Some(ArchArg::MinatarSmall) => Preset {
            num_envs: 16,
            num_steps: 5,
            total_steps: 1_000_000,
            arch: ArchArg::MinatarSmall,
            hidden: vec![32, 32],
            activation: ActivationArg::Relu,
            schedule: Schedule::Linear,
            acktr: Config {
                kl_clip: 0.003,
                ..acktr
            },
            ..mlp(false)
        },
        // The MinAtar suite's games' default (`--arch minatar-medium`, native): 8 filters and
        // a 64-64 trunk, the learner's defaults on 16 envs × 5 steps, η_max decaying linearly.
        // Tuned on Breakout: seeds 0–5 at 1M env steps, last-100 training means 12.1–19.2,
        // median 14.4 (a constant η_max: 8.9–15.4, median 12.7; the 32-32 small net: median
        // 11.96 on seeds 0–2, 10.8 on 0–8); Asterix and SpaceInvaders take it unchanged.
        // docs/results.md has the suite's figures.
        id if !fast
            && matches!(arch, None | Some(ArchArg::MinatarMedium))
            && crate::native::MINATAR_MEDIUM_GAMES
                .iter()
                .any(|(game, _, _)| *game == id) =>
        {
            Preset {
                num_envs: 16,
                num_steps: 5,
                total_steps: 1_000_000,
                arch: ArchArg::MinatarMedium,
                hidden: vec![64, 64],
                activation: ActivationArg::Relu,
                schedule: Schedule::Linear,
                ..mlp(false)
            }
        }
        id if id.starts_with("MinAtar/") => Preset {
            num_envs: 16,
            num_steps: 20,
            total_steps: 1_000_000,
            arch: ArchArg::Minatar,
            activation: ActivationArg::Relu,
            schedule: Schedule::Linear,
            acktr: Config {
                stat_stride: 8,
                ..acktr
            },
            ..mlp(false)
        },
        // Anything else, fast: the paper's MuJoCo setting (separate 64-64 tanh nets, 2500 steps
        // per batch, GAE 0.97, KL 0.002, weight decay 3e-4) under one joint trust region.
        _ if fast => Preset {
            num_envs: 1,
            num_steps: 2500,
            total_steps: 1_000_000,
            acktr: Config {
                kl_clip: 0.002,
                gae_lambda: 0.97,
                weight_decay: 3e-4,
                value_coef: 0.05,
                ..acktr
            },
            a2c: Config {
                gae_lambda: 0.97,
                ..a2c
            },
            ..mlp(true)
        },
        // Anything else (MuJoCo): the paper's layout and batch with normalised observations and
        // rewards, the critic under its own trust region (δ_v 0.1) fitted by 10 natural steps
        // per batch, no entropy bonus, no momentum. Its figures on Hopper-v5, HalfCheetah-v5
        // and Walker2d-v5 at 1M env steps: docs/results.md; Hopper at 300k beside the critic in
        // the Euclidean norm: docs/results-hopper-300k.md.
        _ => Preset {
            num_envs: 1,
            num_steps: 2500,
            total_steps: 1_000_000,
            normalize_obs: true,
            normalize_reward: true,
            acktr: sample_efficient(Config {
                gae_lambda: 0.97,
                weight_decay: 3e-4,
                entropy_coef: 0.0,
                vf_kl_clip: 0.1,
                ..acktr
            }),
            a2c: Config {
                gae_lambda: 0.97,
                entropy_coef: 0.0,
                ..a2c
            },
            ..mlp(true)
        },
    }
}

impl TrainArgs {
    /// Fill every unset option from the preset of `self.env`; checks ranges.
    pub fn resolve(&self) -> Result<Settings> {
        if self.preset == PresetName::Mcu && self.env != "Pendulum-v1" {
            return Err(HostError::InvalidSetting(format!(
                "--preset mcu exists for Pendulum-v1 only (the firmware's), not {}",
                self.env
            )));
        }
        // The tch backend has not the critic's own trust region and passes: there `sample`
        // is `fast`.
        let preset_name = match (self.backend, self.preset) {
            (Backend::Tch, PresetName::Sample) => PresetName::Fast,
            (_, name) => name,
        };
        let p = preset(&self.env, preset_name, self.arch);
        let base = match self.algo {
            Algo::Acktr => p.acktr,
            Algo::A2c => p.a2c,
        };
        let config = Config {
            eta_max: self.lr.unwrap_or(base.eta_max),
            kl_clip: self.kl_clip.unwrap_or(base.kl_clip),
            damping: self.damping.unwrap_or(base.damping),
            momentum: self.momentum.unwrap_or(base.momentum),
            stat_decay: self.stat_decay.unwrap_or(base.stat_decay),
            inverse_every: self.inverse_every.unwrap_or(base.inverse_every),
            stat_stride: self.stat_stride.unwrap_or(base.stat_stride),
            cold_iters: self.cold_iters.unwrap_or(base.cold_iters),
            entropy_coef: self.ent_coef.unwrap_or(base.entropy_coef),
            value_coef: self.vf_coef.unwrap_or(base.value_coef),
            gamma: self.gamma.unwrap_or(base.gamma),
            gae_lambda: self.gae_lambda.unwrap_or(base.gae_lambda),
            max_grad_norm: self.max_grad_norm.unwrap_or(base.max_grad_norm),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            normalize_advantage: self.normalize_advantage.unwrap_or(base.normalize_advantage),
            vf_kl_clip: self.vf_kl_clip.unwrap_or(base.vf_kl_clip),
            vf_iters: self.vf_iters.unwrap_or(base.vf_iters),
            vf_stride: self.vf_stride.unwrap_or(base.vf_stride),
            target_kl: self.target_kl.unwrap_or(base.target_kl),
            vf_euclidean: self.vf_euclidean.unwrap_or(base.vf_euclidean),
            ..base
        };
        config.validate()?;
        let s = Settings {
            env: self.env.clone(),
            algo: self.algo,
            preset: preset_name,
            backend: self.backend,
            device: "cpu".into(),
            kfac_thread: self.kfac_thread,
            kfac_inverse: self.kfac_inverse,
            num_envs: self.num_envs.unwrap_or(p.num_envs),
            num_steps: self.num_steps.unwrap_or(p.num_steps),
            total_steps: self.total_steps.unwrap_or(p.total_steps),
            seed: self.seed,
            env_options: crate::envs::EnvOptions {
                normalize_obs: self.normalize_obs.unwrap_or(p.normalize_obs),
                normalize_reward: self.normalize_reward.unwrap_or(p.normalize_reward),
                sticky_actions: self.sticky_actions,
            },
            arch: self.arch.unwrap_or(p.arch),
            hidden: self.hidden.clone().unwrap_or(p.hidden),
            separate: self.separate.unwrap_or(p.separate),
            activation: self.activation.unwrap_or(p.activation),
            lr_schedule: self.lr_schedule.unwrap_or(p.schedule),
            config,
            checkpoint_every: self.checkpoint_every,
            log_every: self.log_every.max(1),
            eval_episodes: self.eval_episodes,
            eval_every: self.eval_every,
            stop_at: self.stop_at,
            stop_at_train_mean: self.stop_at_train_mean,
            train_mean_window: self.train_mean_window,
            train_mean_no_stop: self.train_mean_no_stop,
        };
        if !s.separate && s.config.vf_kl_clip > 0.0 && self.vf_kl_clip.is_none() {
            return Err(HostError::InvalidSetting(format!(
                "--separate false: {}'s default preset (--preset sample) fits the critic under \
                 its own trust region (--vf-kl-clip {}), which needs separate actor and critic \
                 trunks; for one shared trunk add --preset fast (one joint trust region)",
                s.env, s.config.vf_kl_clip
            )));
        }
        if s.train_mean_window == 0 {
            return Err(HostError::InvalidSetting(
                "--train-mean-window must be at least 1 episode".into(),
            ));
        }
        if let Some(r) = s.stop_at_train_mean.filter(|r| !r.is_finite()) {
            return Err(HostError::InvalidSetting(format!(
                "--stop-at-train-mean must be a finite return, got {r}"
            )));
        }
        if s.stop_at.is_some() && (s.eval_every == 0 || s.eval_episodes == 0) {
            return Err(HostError::InvalidSetting(
                "--stop-at needs --eval-every > 0 and --eval-episodes > 0".into(),
            ));
        }
        if s.num_envs == 0 || s.num_steps == 0 {
            return Err(HostError::InvalidSetting(
                "--num-envs and --num-steps must be at least 1".into(),
            ));
        }
        if s.num_envs.saturating_mul(s.num_steps) > 10_000_000 {
            return Err(HostError::InvalidSetting(
                "a batch of more than 10M samples does not fit in memory".into(),
            ));
        }
        if s.hidden.is_empty() || s.hidden.iter().any(|&h| h == 0 || h > 65_536) {
            return Err(HostError::InvalidSetting(format!(
                "--hidden must list widths in 1..=65536, got {:?}",
                s.hidden
            )));
        }
        if self.backend == Backend::Native && self.device == DeviceArg::Cuda {
            return Err(HostError::InvalidSetting(
                "--device cuda needs --backend tch (the native backend runs on the CPU)".into(),
            ));
        }
        let need = s.memory_estimate();
        let limit = memory_limit();
        if need > limit {
            return Err(HostError::InvalidSetting(format!(
                "this run needs about {:.1} GiB (weights, K-FAC factors, rollout batch), more \
                 than the {:.1} GiB allowed (80% of physical memory): use smaller --hidden, \
                 --num-envs or --num-steps",
                need as f64 / GIB,
                limit as f64 / GIB
            )));
        }
        Ok(s)
    }

    /// The run folder.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(format!(
                "{}-{}-s{}",
                self.env.replace('/', "_"),
                self.algo.cli_name(),
                self.seed
            ))
        })
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// 80% of physical memory (`MemTotal` of /proc/meminfo), 64 GiB where it cannot be read.
fn memory_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    total.map_or(64 << 30, |t| t / 5 * 4)
}

impl Settings {
    /// A lower bound on the bytes a run holds, in f32s of 4 bytes: every weight 4 times
    /// (weights, gradient, momentum, step direction), for ACKTR every Kronecker factor `d×d`
    /// 3 times (running average, batch statistics, damped inverse), the rollout's observations
    /// twice (buffer and tensor) and 3 activations per unit and sample (output,
    /// pre-activation, gradient). Observation sizes come from the environment id where known
    /// (Atari frames 84·84·4, MinAtar 10·10·4, its fewest channels), else 1, and an MLP's
    /// heads are counted with one action: an underestimate only, so a run it refuses would
    /// not fit.
    pub fn memory_estimate(&self) -> u64 {
        let obs: u64 = match (self.arch, self.env.as_str()) {
            (ArchArg::Nature, _) => 84 * 84 * 4,
            (ArchArg::Minatar | ArchArg::MinatarSmall | ArchArg::MinatarMedium, _) => 10 * 10 * 4,
            (_, "CartPole-v1") => 4,
            (_, "Acrobot-v1") => 6,
            (_, "Pendulum-v1") => 3,
            (_, "MountainCarContinuous-v0") => 2,
            _ => 1,
        };
        // Layers as (fan-in + 1, outputs, output positions).
        let mut layers: Vec<(u64, u64, u64)> = Vec::new();
        match self.arch {
            ArchArg::Mlp => {
                let trunks = if self.separate { 2 } else { 1 };
                for _ in 0..trunks {
                    let mut fan = obs;
                    for &h in &self.hidden {
                        layers.push((fan + 1, h as u64, 1));
                        fan = h as u64;
                    }
                    layers.push((fan + 1, 1, 1));
                }
            }
            ArchArg::Nature => layers.extend([
                (4 * 8 * 8 + 1, 32, 20 * 20),
                (32 * 4 * 4 + 1, 64, 9 * 9),
                (64 * 3 * 3 + 1, 64, 7 * 7),
                (64 * 7 * 7 + 1, 512, 1),
                (513, 1, 1),
            ]),
            ArchArg::Minatar => {
                layers.extend([(4 * 3 * 3 + 1, 16, 8 * 8), (16 * 8 * 8 + 1, 128, 1)])
            }
            ArchArg::MinatarSmall => layers.extend([
                (4 * 4 * 4 + 1, 4, 4 * 4),
                (4 * 4 * 4 + 1, 32, 1),
                (32 + 1, 32, 1),
                (32 + 1, 1, 1),
            ]),
            ArchArg::MinatarMedium => layers.extend([
                (4 * 4 * 4 + 1, 8, 4 * 4),
                (8 * 4 * 4 + 1, 64, 1),
                (64 + 1, 64, 1),
                (64 + 1, 1, 1),
            ]),
        }
        let params: u64 = layers.iter().map(|&(i, o, _)| i.saturating_mul(o)).sum();
        let factors: u64 = if self.algo == Algo::Acktr {
            layers
                .iter()
                .map(|&(i, o, _)| i.saturating_mul(i).saturating_add(o.saturating_mul(o)))
                .sum()
        } else {
            0
        };
        let batch = (self.num_envs as u64).saturating_mul(self.num_steps as u64);
        let units: u64 = layers.iter().map(|&(_, o, t)| o.saturating_mul(t)).sum();
        let floats = params
            .saturating_mul(4)
            .saturating_add(factors.saturating_mul(3))
            .saturating_add(batch.saturating_mul(obs).saturating_mul(2))
            .saturating_add(batch.saturating_mul(units).saturating_mul(3));
        floats.saturating_mul(4)
    }
}
