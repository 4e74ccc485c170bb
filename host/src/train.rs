//! The training loop, shared by both backends: rollout → returns → update → logs and
//! checkpoints; plus evaluation and export of a run.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use acktr_core::{Ending, HeadKind};

use crate::agent::{Agent, HostRollout};
use crate::envs::{self, Actions, ObsNormState, Space, VecEnv};
use crate::error::{HostError, Result};
use crate::native::{self, NativeSpec};
use crate::run::checkpoint::{self, Checkpoint, Counters};
use crate::run::RunDir;
use crate::settings::{ArchArg, Backend, DeviceArg, Settings, TrainArgs};
use crate::torch_hooks;

/// Head and outputs for an action space.
pub fn head_for(space: &Space) -> (HeadKind, usize) {
    match space {
        Space::Discrete(n) => (HeadKind::Categorical, *n),
        Space::Box { low, .. } => (HeadKind::Gaussian, low.len()),
    }
}

/// Why these settings need libtorch whatever the environment, if they do: `--backend tch`,
/// `--device cuda`, a conv net under `--backend auto` (but `--arch minatar-small|minatar-medium`, native), or `--device auto` on a machine with an
/// NVIDIA driver (only libtorch can tell whether CUDA is usable). `None`: maybe not (an MLP
/// whose sizes have no native network still needs it: [`make_agent`] finds out).
pub fn needs_torch(s: &Settings, device: DeviceArg) -> Option<String> {
    if s.backend == Backend::Tch {
        return Some("--backend tch".into());
    }
    if s.backend == Backend::Native {
        return None; // native or an error, never libtorch
    }
    if device == DeviceArg::Cuda {
        return Some("--device cuda".into());
    }
    if matches!(s.arch, ArchArg::MinatarSmall | ArchArg::MinatarMedium) {
        return None; // a native net, on the CPU
    }
    if s.arch != ArchArg::Mlp {
        return Some(format!("the {:?} conv net (no native backend)", s.arch).to_lowercase());
    }
    if device == DeviceArg::Auto && nvidia_driver_present() {
        return Some(
            "--device auto on a machine with an NVIDIA driver (pass --device cpu to stay native)"
                .into(),
        );
    }
    None
}

/// An NVIDIA kernel driver is loaded, so CUDA may be usable (a cheap check without libtorch).
fn nvidia_driver_present() -> bool {
    cfg!(target_os = "linux")
        && (Path::new("/proc/driver/nvidia/version").exists()
            || Path::new("/dev/nvidiactl").exists())
}

/// [`HostError::NeedsTorch`] when [`needs_torch`] says so and this process has no libtorch
/// ([`torch_hooks::get`] is `None`).
fn torch_gate(s: &Settings, device: DeviceArg) -> Result<()> {
    match (torch_hooks::get(), needs_torch(s, device)) {
        (None, Some(why)) => Err(HostError::NeedsTorch(why)),
        _ => Ok(()),
    }
}

/// [`torch_gate`] for a saved run (`--resume`, `eval`, `export`): the reason names the run.
fn torch_gate_for_run(run: &RunDir, s: &Settings, device: DeviceArg) -> Result<()> {
    torch_gate(s, device).map_err(|e| match e {
        HostError::NeedsTorch(why) => HostError::NeedsTorch(format!(
            "the run in {} ({})",
            run.path().display(),
            if s.backend == Backend::Tch {
                "trained on backend tch".to_string()
            } else {
                why
            }
        )),
        other => other,
    })
}

/// Build the agent the settings ask for; fills in the backend and device actually used.
/// Without libtorch ([`torch_hooks`]) a run that needs it fails with
/// [`HostError::NeedsTorch`], having changed nothing.
pub fn make_agent(s: &mut Settings, env: &dyn VecEnv, device: DeviceArg) -> Result<Box<dyn Agent>> {
    torch_gate(s, device)?;
    let hooks = torch_hooks::get();
    let (head, outputs) = head_for(env.action_space());
    let two_equal = s.hidden.len() == 2 && s.hidden[0] == s.hidden[1];
    let want_cuda = match device {
        DeviceArg::Cpu => false,
        DeviceArg::Cuda => true,
        DeviceArg::Auto => hooks.is_some_and(|h| (h.cuda_available)()),
    };
    let native_ok = match s.arch {
        ArchArg::Mlp => two_equal && env.obs_shape().len() == 1,
        ArchArg::MinatarSmall | ArchArg::MinatarMedium => true,
        ArchArg::Minatar | ArchArg::Nature => false,
    };
    let spec = NativeSpec {
        arch: s.arch,
        obs_shape: env.obs_shape().to_vec(),
        obs: env.obs_len(),
        outputs,
        hidden: s.hidden.first().copied().unwrap_or(0),
        separate: s.separate,
        activation: s.activation.core(),
        head,
        config: s.config,
        seed: s.seed,
    };
    let try_native = match s.backend {
        Backend::Native => true,
        // The small MinAtar nets stay native, on the CPU, under --device auto.
        Backend::Auto => {
            native_ok
                && (!want_cuda || matches!(s.arch, ArchArg::MinatarSmall | ArchArg::MinatarMedium))
        }
        Backend::Tch => false,
    };
    if try_native {
        let agent = if native_ok {
            native::make(&spec)?
        } else {
            None
        };
        match agent {
            Some(a) => {
                s.backend = Backend::Native;
                s.device = "cpu".into();
                s.kfac_thread = crate::settings::KfacThreadArg::Off;
                return Ok(a);
            }
            None if s.backend == Backend::Native => {
                return Err(HostError::InvalidSetting(format!(
                    "no native network for this run (arch {:?}, hidden {:?}, obs {}, outputs {}); built in: {}",
                    s.arch, s.hidden, spec.obs, outputs, native::built_in()
                )))
            }
            None => {}
        }
    }
    match hooks {
        Some(h) => (h.make_agent)(s, env, head, outputs, want_cuda),
        None => Err(HostError::NeedsTorch(format!(
            "this run (arch {:?}, hidden {:?}, obs shape {:?}; native sizes: {})",
            s.arch,
            s.hidden,
            env.obs_shape(),
            native::built_in()
        ))),
    }
}

/// Policy actions (one-hot or continuous, `n × act_len`) as environment actions. Continuous
/// actions are clipped to the box, `clamp(a_i, low_i, high_i)`, as stable-baselines3 does: the
/// rollout keeps the sample the policy drew (its log-probability is the one trained), and the
/// environment never sees an action outside its bounds. Gymnasium's MuJoCo and
/// MountainCarContinuous charge their action cost on the action as given (MuJoCo clamps only
/// the control it applies), so without the clip a Gaussian's tails are penalised for nothing.
pub fn env_actions(space: &Space, a: &[f32], n: usize) -> Actions {
    match space {
        Space::Discrete(k) => Actions::Discrete(
            a.chunks(*k)
                .take(n)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                        )
                        .0
                })
                .collect(),
        ),
        Space::Box { low, high } => Actions::Continuous(
            a.chunks(low.len().max(1))
                .take(n)
                .flat_map(|c| {
                    c.iter()
                        .zip(low.iter().zip(high))
                        // A NaN passes as it is, for the environment to refuse.
                        .map(|(&v, (&lo, &hi))| {
                            if v < lo {
                                lo
                            } else if v > hi {
                                hi
                            } else {
                                v
                            }
                        })
                })
                .collect(),
        ),
    }
}

/// Fill `rollout` (cleared first) with `n_steps` steps of every environment from `obs`
/// (updated in place), with returns computed. Returns the finished episodes, each with the
/// env steps into this rollout at which it ended.
pub fn collect(
    agent: &mut dyn Agent,
    env: &mut dyn VecEnv,
    obs: &mut Vec<f32>,
    rollout: &mut HostRollout,
    n_steps: usize,
) -> Result<Vec<(crate::envs::EpisodeInfo, u64)>> {
    let (n_env, obs_len) = (env.num_envs(), env.obs_len());
    let mut episodes = Vec::new();
    rollout.clear();
    for t in 0..n_steps {
        let (a, v) = agent.act(obs, n_env, false)?;
        let step = env.step(&env_actions(env.action_space(), &a, n_env))?;
        let mut ends = vec![Ending::Continues; n_env];
        for i in 0..n_env {
            if step.terminated[i] {
                ends[i] = Ending::Terminated;
            } else if step.truncated[i] {
                let fo = step.final_obs[i]
                    .as_deref()
                    .unwrap_or(&step.obs[i * obs_len..(i + 1) * obs_len]);
                ends[i] = Ending::Truncated {
                    bootstrap: agent.values(fo, 1)?[0],
                };
            }
        }
        rollout.obs.extend_from_slice(obs);
        rollout.actions.extend_from_slice(&a);
        rollout.rewards.extend_from_slice(&step.rewards);
        rollout.values.extend_from_slice(&v);
        rollout.ends.extend_from_slice(&ends);
        *obs = step.obs;
        episodes.extend(
            step.episodes
                .into_iter()
                .map(|e| (e, ((t + 1) * n_env) as u64)),
        );
    }
    let last = agent.values(obs, n_env)?;
    let cfg = agent.config();
    rollout.compute_returns(&last, cfg.gamma, cfg.gae_lambda);
    Ok(episodes)
}

/// What a finished (or interrupted) training reports.
pub struct Summary {
    /// Env steps done.
    pub env_steps: u64,
    /// Mean of the last 100 training episodes.
    pub recent_return: f64,
    /// Deterministic evaluation mean, if run.
    pub eval_return: Option<f64>,
    /// Env steps per second over the run.
    pub sps: f64,
    /// Env steps at which a periodic evaluation first reached `--stop-at`.
    pub solved_at: Option<u64>,
    /// Where the training-episode mean first reached `--stop-at-train-mean`.
    pub train_mean_reached: Option<TrainMeanReached>,
}

/// The moment the mean return of the last `window` training episodes first reached `target`
/// (`--stop-at-train-mean`), as the final `acktr: done:` line reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainMeanReached {
    /// Episodes in the window.
    pub window: usize,
    /// The target return.
    pub target: f64,
    /// The window's mean return then.
    pub mean: f64,
    /// Env steps (all environments) done when the episode that completed the window ended.
    pub env_steps: u64,
    /// Seconds since training started, when the trainer saw it (after collecting the batch
    /// holding that episode, before that batch's update).
    pub secs: f64,
}

impl TrainMeanReached {
    /// The clause appended to the `acktr: done:` line.
    pub fn clause(&self) -> String {
        format!(
            ", reached last-{} mean {:.2} (target {}) at {} env steps in {:.3} s",
            self.window, self.mean, self.target, self.env_steps, self.secs
        )
    }
}

/// The final line of `acktr train` (read back by [`DoneLine::find`]).
pub fn done_line(
    env_steps: u64,
    sps: f64,
    recent_return: f64,
    eval: Option<(u32, f64)>,
    reached: Option<TrainMeanReached>,
) -> String {
    format!(
        "acktr: done: {env_steps} env steps, {sps:.0} steps/s, last-100 return {recent_return:.2}{}{}",
        eval.map_or(String::new(), |(n, r)| format!(
            ", deterministic eval ({n} episodes) {r:.2}"
        )),
        reached.map_or(String::new(), |r| r.clause())
    )
}

/// What an `acktr: done:` line says, read back (`acktr bench` runs `acktr train` and reads it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoneLine {
    /// Env steps done.
    pub env_steps: u64,
    /// Env steps per second over the run.
    pub sps: f64,
    /// Present when the `--stop-at-train-mean` target was reached (the run stopped there unless
    /// `--train-mean-no-stop`).
    pub reached: Option<TrainMeanReached>,
}

impl DoneLine {
    /// Parse the last `acktr: done:` line of a trainer's stderr.
    pub fn find(stderr: &str) -> Option<DoneLine> {
        let line = stderr
            .lines()
            .rev()
            .find_map(|l| l.trim_start_matches('\r').strip_prefix("acktr: done: "))?;
        let mut words = line.split_whitespace();
        let env_steps = words.next()?.parse().ok()?;
        let sps = line
            .split(", ")
            .nth(1)?
            .strip_suffix(" steps/s")?
            .parse()
            .ok()?;
        let reached = match line.split_once(", reached last-") {
            None => None,
            Some((_, rest)) => {
                // "{window} mean {mean} (target {target}) at {steps} env steps in {secs} s"
                let w: Vec<&str> = rest.split_whitespace().collect();
                match w.as_slice() {
                    [window, "mean", mean, "(target", target, "at", steps, "env", "steps", "in", secs, "s", ..] => {
                        Some(TrainMeanReached {
                            window: window.parse().ok()?,
                            mean: mean.parse().ok()?,
                            target: target.strip_suffix(')')?.parse().ok()?,
                            env_steps: steps.parse().ok()?,
                            secs: secs.parse().ok()?,
                        })
                    }
                    _ => return None,
                }
            }
        };
        Some(DoneLine {
            env_steps,
            sps,
            reached,
        })
    }
}

/// Options `--resume` applies (and records in config.json): they extend or shorten the run,
/// or change only its logging, checkpoints and evaluations, not what it learns.
pub const RESUME_APPLIES: [&str; 5] = [
    "total-steps",
    "log-every",
    "checkpoint-every",
    "eval-episodes",
    "eval-every",
];

/// Options about this process, not the run, which `--resume` takes as given: where the run
/// is, progress output, and the device a libtorch run continues on.
const RESUME_PROCESS: [&str; 4] = ["out", "resume", "quiet", "device"];

/// `--resume`: refuse every option in `given` (long names, without `--`) that a resume cannot
/// apply: those naming the run (`--env`, `--algo`, `--seed`, `--backend`; they pick the
/// default `--out`) unless they match the run's own, and every other training setting unless
/// together they resolve to the run's own settings. The message lists them all.
fn refuse_resume_changes(
    run: &RunDir,
    s: &Settings,
    args: &TrainArgs,
    given: &[String],
) -> Result<()> {
    // Training settings repeated with the run's own values (the same command with --resume
    // added) change nothing: accepted.
    let same = {
        let mut a = args.clone();
        (a.env, a.algo, a.seed, a.preset) = (s.env.clone(), s.algo, s.seed, s.preset);
        a.resolve().is_ok_and(|mut r| {
            (r.backend, r.device, r.kfac_thread) = (s.backend, s.device.clone(), s.kfac_thread);
            (r.total_steps, r.log_every, r.checkpoint_every) =
                (s.total_steps, s.log_every, s.checkpoint_every);
            (r.eval_episodes, r.eval_every) = (s.eval_episodes, s.eval_every);
            r == *s
        })
    };
    let mut refused = Vec::new();
    for flag in given {
        let clash = match flag.as_str() {
            f if RESUME_APPLIES.contains(&f) || RESUME_PROCESS.contains(&f) => None,
            "env" => {
                (args.env != s.env).then(|| format!("--env {} (the run's is {})", args.env, s.env))
            }
            "algo" => (args.algo != s.algo).then(|| {
                format!(
                    "--algo {} (the run's is {})",
                    args.algo.cli_name(),
                    s.algo.cli_name()
                )
            }),
            "seed" => (args.seed != s.seed)
                .then(|| format!("--seed {} (the run's is {})", args.seed, s.seed)),
            "backend" => (args.backend != Backend::Auto && args.backend != s.backend).then(|| {
                format!(
                    "--backend {:?} (the run's is {:?})",
                    args.backend, s.backend
                )
                .to_lowercase()
            }),
            other => (!same).then(|| format!("--{other}")),
        };
        refused.extend(clash);
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(HostError::InvalidSetting(format!(
        "--resume continues the run in {} with the settings in its {} and cannot change: {}; \
         start a new run (another --out) to change them. A resume applies --{} and --device",
        run.path().display(),
        crate::run::CONFIG_FILE,
        refused.join(", "),
        RESUME_APPLIES.join(", --"),
    )))
}

/// Apply the [`RESUME_APPLIES`] options in `given` to the run's settings `s`.
fn apply_resume_options(s: &mut Settings, args: &TrainArgs, given: &[String]) -> Result<()> {
    let has = |f: &str| given.iter().any(|g| g == f);
    if let Some(total) = args.total_steps {
        s.total_steps = total;
    }
    if has("log-every") {
        s.log_every = args.log_every.max(1);
    }
    if has("checkpoint-every") {
        s.checkpoint_every = args.checkpoint_every;
    }
    if has("eval-episodes") {
        s.eval_episodes = args.eval_episodes;
    }
    if has("eval-every") {
        s.eval_every = args.eval_every;
    }
    if s.stop_at.is_some() && (s.eval_every == 0 || s.eval_episodes == 0) {
        return Err(HostError::InvalidSetting(
            "the run stops at an evaluation target (--stop-at), which needs --eval-every > 0 \
             and --eval-episodes > 0"
                .into(),
        ));
    }
    Ok(())
}

/// What `acktr train`'s errors are about: `training <env>`, or for `--resume` the run's own
/// environment (from its config.json, when it can be read) and folder.
pub fn describe(args: &TrainArgs) -> String {
    let out = args.out_dir();
    if !args.resume {
        return format!("training {}", args.env);
    }
    match RunDir::open(&out)
        .ok()
        .and_then(|(run, cfg)| run_settings(&run, &cfg).ok())
    {
        Some(s) => format!("resuming {} in {}", s.env, out.display()),
        None => format!("resuming {}", out.display()),
    }
}

/// The flag a core [`acktr_core::Config`] field is set with on the command line.
const CONFIG_FLAGS: [(&str, &str); 19] = [
    ("eta_max", "--lr"),
    ("kl_clip", "--kl-clip"),
    ("damping", "--damping"),
    ("momentum", "--momentum"),
    ("stat_decay", "--stat-decay"),
    ("weight_decay", "--weight-decay"),
    ("inverse_every", "--inverse-every"),
    ("stat_stride", "--stat-stride"),
    ("cold_iters", "--cold-iters"),
    ("max_grad_norm", "--max-grad-norm"),
    ("gamma", "--gamma"),
    ("gae_lambda", "--gae-lambda"),
    ("entropy_coef", "--ent-coef"),
    ("value_coef", "--vf-coef"),
    ("loss coefficients", "--ent-coef and --vf-coef"),
    ("vf_kl_clip", "--vf-kl-clip"),
    ("vf_iters", "--vf-iters"),
    ("target_kl", "--target-kl"),
    ("vf_euclidean", "--vf-euclidean"),
];

/// A core configuration error (which names `Config`'s fields) as the command line's: the
/// field replaced by its flag. Other errors pass unchanged.
pub fn config_error_as_flags(e: HostError) -> HostError {
    match e {
        HostError::Core(acktr_core::Error::ConfigInvalid(msg)) => {
            let text = CONFIG_FLAGS
                .iter()
                .find_map(|(field, flag)| {
                    msg.strip_prefix(field)
                        .filter(|rest| rest.starts_with(' '))
                        .map(|rest| format!("{flag}{rest}"))
                })
                .unwrap_or_else(|| msg.to_string());
            HostError::InvalidSetting(text)
        }
        other => other,
    }
}

/// A run's saved core configuration, checked: a range error names the field in config.json.
fn check_run_config(run: &RunDir, s: &Settings) -> Result<()> {
    s.config.validate().map_err(|e| match e {
        acktr_core::Error::ConfigInvalid(msg) => HostError::BadFile {
            path: run.config_path(),
            reason: format!("settings.config.{msg}"),
        },
        other => HostError::Core(other),
    })
}

/// `acktr train`, as if no option but those set in `args` had been given (a library caller's
/// `--resume` applies `--total-steps` and refuses other `Option` settings only through
/// [`train_given`]).
pub fn train(args: &TrainArgs) -> Result<Summary> {
    train_given(args, &[])
}

/// `acktr train`; `given`: the long names (without `--`) of the options given on the command
/// line, which `--resume` applies or refuses ([`RESUME_APPLIES`]).
///
/// Under `mpirun -np N` (a build with the `mpi` feature) this is one rank of a data-parallel
/// run: each rank steps its own `num_envs` environments (seeded after the previous ranks'),
/// every update sums all ranks' samples (acktr-core's `Collective`), rank 0 alone writes the
/// run folder, and an error on any rank ends every rank (MPI_Abort) after its message.
pub fn train_given(args: &TrainArgs, given: &[String]) -> Result<Summary> {
    // The lean binary hands a libtorch run over to `acktr-torch` before MPI starts: every
    // rank execs it, and it joins the MPI job as the rank (an exec after MPI_Init would not).
    if let Some(why) = torch_needed_before_mpi(args) {
        return Err(HostError::NeedsTorch(why));
    }
    let mut world = crate::dist::World::init()?;
    let result = train_in(args, given, &mut world);
    if world.ranks() > 1 {
        if let Err(e) = &result {
            if let HostError::NeedsTorch(why) = e {
                world.abort(
                    1,
                    &format!(
                        "error: {why} needs libtorch, found only after MPI started; pass \
                         --backend tch, or start `{}` under mpirun",
                        crate::cli::TORCH_BIN
                    ),
                );
            }
            world.abort(1, &format!("error: {e}; stopping every rank"));
        }
    }
    result
}

/// In the lean binary (no libtorch) started as one of several MPI ranks: the reason the run
/// needs libtorch, when the command line (or a resumed run's config.json) says so; `None`
/// otherwise, and on any error (the run itself reports it).
fn torch_needed_before_mpi(args: &TrainArgs) -> Option<String> {
    if torch_hooks::get().is_some() || crate::dist::launcher_ranks().is_none_or(|n| n < 2) {
        return None;
    }
    let gate = if args.resume {
        let (run, cfg) = RunDir::open(args.out_dir()).ok()?;
        let s = run_settings(&run, &cfg).ok()?;
        torch_gate_for_run(&run, &s, args.device)
    } else {
        torch_gate(&args.resolve().ok()?, args.device)
    };
    match gate {
        Err(HostError::NeedsTorch(why)) => Some(why),
        _ => None,
    }
}

/// The key of config.json that records a data-parallel run's number of ranks (absent: 1).
pub const MPI_RANKS_KEY: &str = "mpi_ranks";

/// [`train_given`] as one rank of `world`.
fn train_in(args: &TrainArgs, given: &[String], world: &mut crate::dist::World) -> Result<Summary> {
    let out = args.out_dir();
    let (ranks, root) = (world.ranks(), world.is_root());
    let (run, mut settings, resumed) =
        if args.resume {
            // Rank 0 holds the folder's lock; the others only read its config and checkpoint.
            let (run, cfg) = if root {
                RunDir::open_for_resume(&out)?
            } else {
                RunDir::open(&out)?
            };
            let recorded = cfg.get(MPI_RANKS_KEY).and_then(|v| v.as_u64()).unwrap_or(1);
            if recorded != u64::from(ranks) {
                return Err(HostError::Distributed(format!(
                "{} was trained on {recorded} rank(s) and this is {ranks}: each rank steps its \
                 own environments, so the batch and the checkpoint's sampling streams belong to \
                 {recorded}; resume it with `mpirun -np {recorded}`{}",
                out.display(),
                if recorded == 1 { " or without mpirun" } else { "" }
            )));
            }
            let mut s = run_settings(&run, &cfg)?;
            check_run_config(&run, &s)?;
            refuse_resume_changes(&run, &s, args, given)?;
            apply_resume_options(&mut s, args, given)?;
            // Before the environment (which may start Python).
            torch_gate_for_run(&run, &s, args.device)?;
            (Some((run, cfg)), s, true)
        } else {
            let s = args.resolve().map_err(config_error_as_flags)?;
            // Before the environment (which may start Python) and long before the run folder.
            torch_gate(&s, args.device)?;
            (None, s, false)
        };
    if ranks > 1 && settings.env_options.normalize_obs {
        return Err(HostError::Distributed(
            "--normalize-obs keeps running statistics per process, which the ranks would not \
             share (their policies would read differently scaled inputs); train without it"
                .into(),
        ));
    }
    let quiet = args.quiet || !root;
    // Rank `r`'s environments take the seeds after ranks `0..r`'s: together they are the
    // environments of one process with `ranks × num_envs` of them.
    let env_seed_offset = u64::from(world.rank()) * settings.num_envs as u64;
    let mut env = envs::make_with(
        &settings.env,
        settings.num_envs,
        &settings.env_options,
        settings.config.gamma,
    )?;
    let mut agent = make_agent(&mut settings, env.as_ref(), args.device)?;
    let mut config_json = serde_json::json!({
        "settings": settings,
        "agent": agent.describe(),
        "env": env.describe(),
        "acktr_version": env!("CARGO_PKG_VERSION"),
    });
    if ranks > 1 {
        config_json[MPI_RANKS_KEY] = serde_json::json!(ranks);
    }
    if !quiet {
        eprintln!(
            "acktr: {} {:?} on {} (backend {:?}, {}{}), {}{} envs × {} steps, {} env steps → {}",
            if resumed { "resuming" } else { "training" },
            settings.algo,
            settings.env,
            settings.backend,
            settings.device,
            if settings.kfac_thread == crate::settings::KfacThreadArg::On {
                ", K-FAC thread"
            } else {
                ""
            },
            if ranks > 1 {
                format!("{ranks} MPI ranks × ")
            } else {
                String::new()
            },
            settings.num_envs,
            settings.num_steps,
            settings.total_steps,
            out.display()
        );
    }
    let mut env_steps = 0u64;
    let (mut monitor_rows, mut progress_rows) = (None, None);
    let run = match run {
        None if root => Some(RunDir::create(&out, &config_json)?),
        None => None,
        Some((run, mut cfg)) => {
            // Every field of the checkpoint is checked before anything is written.
            if let Some(loaded) = run.load_checkpoint()? {
                if let Some(warn) = &loaded.skipped {
                    eprintln!("acktr: warning: newest checkpoint unusable ({warn}); resuming from the previous one");
                }
                let recorded = run_settings(&run, &cfg)?;
                let c = restore(agent.as_mut(), &loaded, &recorded, ranks)?;
                if settings.total_steps < c.env_steps {
                    return Err(HostError::InvalidSetting(format!(
                        "--total-steps {} is less than the {} env steps the run has done; give \
                         a larger total to continue it",
                        settings.total_steps, c.env_steps
                    )));
                }
                (env_steps, monitor_rows, progress_rows) =
                    (c.env_steps, Some(c.monitor_rows), Some(c.progress_rows));
                if settings.env_options.normalize_obs {
                    // Before the reset: the policy was trained on inputs normalised with these.
                    let state = saved_obs_norm(&loaded.checkpoint, &loaded.path)?;
                    env.set_obs_norm_state(&state)?;
                }
            } else if !quiet {
                eprintln!(
                    "acktr: no checkpoint in {}; starting from scratch",
                    out.display()
                );
            }
            // Record what the resume changed (--total-steps, logging, evaluations).
            let mut changed = false;
            if let Some(saved) = cfg.get_mut("settings") {
                for (key, value) in [
                    ("total_steps", serde_json::json!(settings.total_steps)),
                    ("log_every", serde_json::json!(settings.log_every)),
                    (
                        "checkpoint_every",
                        serde_json::json!(settings.checkpoint_every),
                    ),
                    ("eval_episodes", serde_json::json!(settings.eval_episodes)),
                    ("eval_every", serde_json::json!(settings.eval_every)),
                ] {
                    if saved.get(key) != Some(&value) {
                        saved[key] = value;
                        changed = true;
                    }
                }
            }
            if changed && root {
                run.write_config(&cfg)?;
            }
            Some(run)
        }
    };
    // The ranks start equal (rank 0's state), each with its own sampler stream; rank 0 keeps
    // its own (a one-rank run is the plain one).
    if ranks > 1 {
        let rank = u64::from(world.rank());
        let seed = settings.seed ^ rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ env_steps;
        agent.join_data_parallel(world, (rank > 0).then_some(seed))?;
    }
    // Rank 0's logs; the other ranks write nothing.
    let mut logs = match run.as_ref().filter(|_| root) {
        Some(run) => Some((
            run.monitor(env.id(), monitor_rows.or(resumed.then_some(0)))?,
            run.progress(progress_rows.or(resumed.then_some(0)))?,
            run.tensorboard(resumed.then_some(env_steps))?,
        )),
        None => None,
    };

    let (n_env, n_steps) = (settings.num_envs, settings.num_steps);
    let (_, act_len) = head_for(env.action_space());
    let mut obs = env.reset(
        settings
            .seed
            .wrapping_add(env_steps)
            .wrapping_add(env_seed_offset),
    )?;
    let mut rollout = HostRollout::new(n_env, env.obs_len(), act_len);
    // The last 100 episodes (rollout/ep_rew_mean, ep_len_mean): a resumed run starts from
    // the ones monitor.csv holds (cut back to the checkpoint above).
    let mut recent: VecDeque<f64> = VecDeque::new();
    let mut recent_len: VecDeque<u64> = VecDeque::new();
    if let (true, Some(run)) = (resumed, &run) {
        if let Some((monitor, _, _)) = &mut logs {
            monitor.flush()?;
        }
        // Every rank reads the rows the checkpoint counts (rank 0 may still be cutting the file
        // back to them), so that all ranks see the same recent episodes.
        let mut rows = crate::run::read_monitor_rows(&run.monitor_path())?;
        rows.truncate(monitor_rows.map_or(rows.len(), |n| n as usize));
        for (r, l, _) in rows.iter().skip(rows.len().saturating_sub(100)) {
            recent.push_back(*r);
            recent_len.push_back(*l);
        }
    }
    let start = Instant::now();
    let start_steps = env_steps;
    let base_lr = settings.config.eta_max;
    let mut last_ckpt = env_steps;
    let mut last_eval = env_steps;
    let mut solved_at = None;
    // The --stop-at-train-mean window: the last returns.
    let mut window: VecDeque<f64> = VecDeque::new();
    let mut train_mean_reached = None;
    let (mut skipped_updates, mut consecutive_skips) = (0u64, 0u32);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Env steps per update, all ranks together.
    let batch = (n_env * n_steps) as u64 * u64::from(ranks);

    while env_steps < settings.total_steps {
        let episodes = collect(
            agent.as_mut(),
            env.as_mut(),
            &mut obs,
            &mut rollout,
            n_steps,
        )?;
        env_steps += batch;
        // Every rank's episodes, on every rank: the stopping rules below see the same ones.
        let mine: Vec<_> = episodes
            .iter()
            .map(|(ep, at)| (ep.ret, ep.len, *at))
            .collect();
        let episodes = world.gather_episodes(&mine)?;
        for (ret, len, at) in episodes {
            let step_at = env_steps - batch + at;
            if let Some((monitor, _, tb)) = &mut logs {
                monitor.append(ret, len)?;
                tb.scalar("charts/episodic_return", step_at, ret)?;
                tb.scalar("charts/episodic_length", step_at, len as f64)?;
            }
            recent.push_back(ret);
            recent_len.push_back(len);
            if recent.len() > 100 {
                recent.pop_front();
                recent_len.pop_front();
            }
            if let (Some(target), None) = (settings.stop_at_train_mean, train_mean_reached) {
                let n = settings.train_mean_window;
                window.push_back(ret);
                if window.len() > n {
                    window.pop_front();
                }
                let mean = window.iter().sum::<f64>() / n as f64;
                if window.len() == n && mean >= target {
                    train_mean_reached = Some(TrainMeanReached {
                        window: n,
                        target,
                        mean,
                        env_steps: step_at,
                        secs: start.elapsed().as_secs_f64(),
                    });
                }
            }
        }
        if train_mean_reached.is_some() && !settings.train_mean_no_stop {
            break; // the batch's update would come after the target was reached
        }
        if settings.lr_schedule == crate::settings::Schedule::Linear {
            let frac = 1.0 - env_steps as f64 / settings.total_steps as f64;
            agent.set_config(acktr_core::Config {
                eta_max: (base_lr as f64 * frac).max(1e-12) as f32,
                ..agent.config()
            })?;
        }
        let update = agent.updates() as u64;
        let stats = match agent.update_data_parallel(&rollout, world) {
            Ok(stats) => {
                consecutive_skips = 0;
                stats
            }
            // One bad batch is skipped (the agent is as it was before it) and counted; a run
            // that keeps producing them stops.
            Err(e) if is_bad_batch(&e) && consecutive_skips < MAX_CONSECUTIVE_SKIPS => {
                skipped_updates += 1;
                consecutive_skips += 1;
                if !quiet {
                    eprintln!(
                        "{}acktr: warning: update {update} skipped ({e}); the learner is as before it",
                        if tty { "\n" } else { "" }
                    );
                }
                continue;
            }
            Err(e) => return Err(non_finite(e, update)),
        };
        let updates = agent.updates();
        if let (true, Some((monitor, progress, tb))) = (
            updates % settings.log_every == 0 || env_steps >= settings.total_steps,
            &mut logs,
        ) {
            let elapsed = start.elapsed().as_secs_f64();
            let sps = (env_steps - start_steps) as f64 / elapsed.max(1e-9);
            let mean = |v: &VecDeque<f64>| {
                if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            };
            let ep_ret = mean(&recent);
            let ep_len = if recent_len.is_empty() {
                f64::NAN
            } else {
                recent_len.iter().sum::<u64>() as f64 / recent_len.len() as f64
            };
            let lr = agent.config().eta_max as f64;
            progress.write(&[
                ("time/total_timesteps", env_steps as f64),
                ("time/iterations", updates as f64),
                ("time/fps", sps.floor()),
                ("time/time_elapsed", elapsed.floor()),
                ("rollout/ep_rew_mean", ep_ret),
                ("rollout/ep_len_mean", ep_len),
                ("train/policy_loss", stats.policy_loss as f64),
                ("train/value_loss", stats.value_loss as f64),
                ("train/entropy_loss", -stats.entropy as f64),
                ("train/explained_variance", rollout.explained_variance()),
                ("train/learning_rate", lr),
                ("train/step_size", stats.step_size as f64),
                ("train/kl", stats.predicted_kl as f64),
                ("train/grad_norm", stats.grad_norm as f64),
                ("train/vf_step_size", stats.vf_step_size as f64),
                ("train/approx_kl", stats.measured_kl as f64),
                ("train/lr_scale", stats.eta_scale as f64),
                ("train/skipped_updates", skipped_updates as f64),
            ])?;
            tb.scalars(
                env_steps,
                &[
                    ("charts/SPS", sps),
                    ("charts/learning_rate", lr),
                    ("charts/step_size", stats.step_size as f64),
                    ("losses/policy_loss", stats.policy_loss as f64),
                    ("losses/value_loss", stats.value_loss as f64),
                    ("losses/entropy", stats.entropy as f64),
                    ("losses/approx_kl", stats.predicted_kl as f64),
                ],
            )?;
            monitor.flush()?;
            progress.flush()?;
            tb.flush()?;
            if !quiet {
                let pct = 100.0 * env_steps as f64 / settings.total_steps as f64;
                let line = format!(
                    "{env_steps:>10} steps {pct:5.1}%  {sps:>9.0} steps/s  return(100) {ep_ret:>8.2}  entropy {:.3}  step {:.2e}",
                    stats.entropy, stats.step_size
                );
                if tty {
                    eprint!("\r{line}");
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("{line}");
                }
            }
        }
        if settings.eval_every > 0 && env_steps - last_eval >= settings.eval_every {
            last_eval = env_steps;
            let r = evaluate_with(
                agent.as_mut(),
                &settings.env,
                env.obs_norm_state()?.as_ref(),
                settings.eval_episodes,
                settings.seed.wrapping_add(1_000_000),
                true,
            )?;
            if let Some((_, progress, tb)) = &mut logs {
                progress.write(&[
                    ("time/total_timesteps", env_steps as f64),
                    ("eval/mean_reward", r),
                ])?;
                tb.scalar("eval/mean_reward", env_steps, r)?;
            }
            if settings.stop_at.is_some_and(|target| r >= target) {
                solved_at = Some(env_steps);
                if !quiet {
                    eprintln!("{}acktr: evaluation mean {r:.2} reached the target at {env_steps} env steps", if tty { "\n" } else { "" });
                }
                break;
            }
        }
        if settings.checkpoint_every > 0 && env_steps - last_ckpt >= settings.checkpoint_every {
            if let (Some(run), Some((monitor, progress, tb))) = (&run, &mut logs) {
                save(
                    run,
                    agent.as_ref(),
                    env.as_ref(),
                    env_steps,
                    monitor,
                    progress,
                    tb,
                )?;
            }
            last_ckpt = env_steps;
        }
    }
    if tty && !quiet {
        eprintln!();
    }
    if let (Some(run), Some((monitor, progress, tb))) = (&run, &mut logs) {
        save(
            run,
            agent.as_ref(),
            env.as_ref(),
            env_steps,
            monitor,
            progress,
            tb,
        )?;
    }
    let obs_norm = env.obs_norm_state()?;
    // A policy file has no normaliser: without one it would be fed raw observations.
    if obs_norm.is_none() {
        if let (Some(run), true, Ok(bytes)) = (&run, root, agent.export()) {
            checkpoint::write_atomic(run.path().join("policy.ackp"), &bytes)?;
        }
    } else if !quiet {
        eprintln!(
            "acktr: no policy.ackp (the policy file format has no observation normaliser; \
             the statistics are in the checkpoint)"
        );
    }
    let sps = (env_steps - start_steps) as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let eval_return = if settings.eval_episodes > 0 {
        Some(evaluate_with(
            agent.as_mut(),
            &settings.env,
            obs_norm.as_ref(),
            settings.eval_episodes,
            settings.seed.wrapping_add(1_000_000),
            true,
        )?)
    } else {
        None
    };
    let recent_return = if recent.is_empty() {
        f64::NAN
    } else {
        recent.iter().sum::<f64>() / recent.len() as f64
    };
    if !quiet {
        eprintln!(
            "{}",
            done_line(
                env_steps,
                sps,
                recent_return,
                eval_return.map(|r| (settings.eval_episodes, r)),
                train_mean_reached
            )
        );
    }
    Ok(Summary {
        env_steps,
        recent_return,
        eval_return,
        sps,
        solved_at,
        train_mean_reached,
    })
}

/// Updates skipped in a row before a run stops with the error.
const MAX_CONSECUTIVE_SKIPS: u32 = 10;

/// An update error caused by the batch (its numbers, or the curvature and gradient they
/// produce), after which the agent is as before the update: skip the batch.
fn is_bad_batch(e: &HostError) -> bool {
    use acktr_core::Error as E;
    matches!(
        e,
        HostError::Core(
            E::UpdateNonFiniteInput
                | E::UpdateInputOutOfRange
                | E::UpdateNonFiniteGradient
                | E::UpdateNonFiniteCurvature
                | E::UpdateNotPositiveDefinite
        )
    )
}

/// A failed update that left the weights untouched reads as such.
fn non_finite(e: HostError, update: u64) -> HostError {
    let what = match e {
        HostError::Core(acktr_core::Error::UpdateNonFiniteInput) => "rollout",
        HostError::Core(acktr_core::Error::UpdateInputOutOfRange) => "rollout (out of range)",
        HostError::Core(acktr_core::Error::UpdateNonFiniteGradient) => "gradient",
        HostError::Core(acktr_core::Error::UpdateNonFiniteCurvature) => "curvature",
        HostError::Core(acktr_core::Error::UpdateNotPositiveDefinite) => {
            "curvature (not positive definite)"
        }
        other => return other,
    };
    HostError::NonFinite { what, update }
}

/// Checkpoint the agent, the counters and (with `--normalize-obs`) the observation
/// normaliser's statistics.
fn save(
    run: &RunDir,
    agent: &dyn Agent,
    env: &dyn VecEnv,
    env_steps: u64,
    monitor: &mut crate::run::Monitor,
    progress: &mut crate::run::Progress,
    tb: &mut crate::run::TensorBoard,
) -> Result<()> {
    monitor.flush()?;
    progress.flush()?;
    tb.flush()?;
    let meta = serde_json::json!({
        "env_steps": env_steps,
        "updates": agent.updates(),
        "monitor_rows": monitor.rows(),
        "progress_rows": progress.rows(),
    });
    let mut ck = Checkpoint::new(meta);
    for (name, bytes) in agent.save()? {
        ck = ck.with_blob(name, bytes);
    }
    if let Some(state) = env.obs_norm_state()? {
        ck = ck.with_blob(
            checkpoint::OBS_NORM_BLOB,
            checkpoint::obs_norm_to_blob(&state)?,
        );
    }
    run.save_checkpoint(&ck)?;
    Ok(())
}

/// Load a checkpoint into `agent`, every field checked first: the metadata's counters
/// against the run's settings `s` as config.json records them ([`Counters::from_meta`]), the
/// agent's blobs (lengths, finite values), and the update count the blobs hold against the
/// metadata's. A refusal is a [`HostError::BadFile`] naming the file and the field.
/// `ranks`: the data-parallel ranks, whose batches together make one update's.
fn restore(
    agent: &mut dyn Agent,
    loaded: &checkpoint::Loaded,
    s: &Settings,
    ranks: u32,
) -> Result<Counters> {
    let path = &loaded.path;
    let batch = (s.num_envs as u64)
        .saturating_mul(s.num_steps as u64)
        .saturating_mul(u64::from(ranks));
    let c = Counters::from_meta(&loaded.checkpoint.meta, path, batch, s.total_steps)?;
    agent
        .load(&loaded.checkpoint.blobs)
        .map_err(|e| HostError::BadFile {
            path: path.clone(),
            reason: match e {
                HostError::InvalidSetting(m) => m,
                other => other.to_string(),
            },
        })?;
    if u64::from(agent.updates()) != c.updates {
        return Err(HostError::BadFile {
            path: path.clone(),
            reason: format!(
                "metadata field `updates` is {}, the agent's blobs hold {}",
                c.updates,
                agent.updates()
            ),
        });
    }
    Ok(c)
}

/// The observation statistics saved in `ckpt` (read from `path`), which a `--normalize-obs`
/// run needs; a checkpoint without them is refused with [`HostError::BadFile`].
fn saved_obs_norm(ckpt: &Checkpoint, path: &Path) -> Result<ObsNormState> {
    let bytes = ckpt
        .blob(checkpoint::OBS_NORM_BLOB)
        .ok_or_else(|| HostError::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "the run normalises observations (--normalize-obs) but this checkpoint has no \
             `{}` blob (written by a build that did not save the statistics): the policy's \
             inputs cannot be rebuilt; train the run again",
                checkpoint::OBS_NORM_BLOB
            ),
        })?;
    checkpoint::obs_norm_from_blob(bytes, path)
}

/// Mean undiscounted return of `episodes` episodes of one environment (`deterministic`: argmax
/// or mean actions), the first reset seeded with `seed`.
pub fn evaluate(
    agent: &mut dyn Agent,
    env_id: &str,
    episodes: u32,
    seed: u64,
    deterministic: bool,
) -> Result<f64> {
    evaluate_with(agent, env_id, None, episodes, seed, deterministic)
}

/// [`evaluate`], the policy fed observations normalised with `obs_norm` when given. The
/// statistics are frozen: the evaluation environment itself normalises nothing, so it cannot
/// update them, and the numbers are the training normaliser's arithmetic
/// ([`ObsNormState::normalize`]).
pub fn evaluate_with(
    agent: &mut dyn Agent,
    env_id: &str,
    obs_norm: Option<&ObsNormState>,
    episodes: u32,
    seed: u64,
    deterministic: bool,
) -> Result<f64> {
    let mut env = envs::make(env_id, 1)?;
    let mut obs = env.reset(seed)?;
    let mut returns = Vec::new();
    let mut guard = 0u64;
    while returns.len() < episodes as usize {
        let input = match obs_norm {
            Some(n) => n.normalize(&obs)?,
            None => obs.clone(),
        };
        let (a, _) = agent.act(&input, 1, deterministic)?;
        let step = env.step(&env_actions(env.action_space(), &a, 1))?;
        obs = step.obs;
        returns.extend(step.episodes.iter().map(|e| e.ret));
        guard += 1;
        if guard > 100_000_000 {
            return Err(HostError::InvalidSetting(
                "evaluation episodes never ended".into(),
            ));
        }
    }
    Ok(returns.iter().sum::<f64>() / returns.len().max(1) as f64)
}

/// The [`Settings`] saved in a run's config.json.
fn run_settings(run: &RunDir, config: &serde_json::Value) -> Result<Settings> {
    serde_json::from_value(
        config
            .get("settings")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
    )
    .map_err(|e| HostError::BadFile {
        path: run.config_path(),
        reason: format!("not an acktr run config: {e}"),
    })
}

/// Rebuild a run's agent from its folder and last checkpoint. A `--normalize-obs` run's agent
/// comes wrapped in [`ObsNormalized`] with the checkpoint's statistics, so that it can be fed
/// raw observations ([`evaluate`]).
pub fn load_run(dir: &Path) -> Result<(Settings, Box<dyn Agent>)> {
    let (run, cfg) = RunDir::open(dir)?;
    let mut s = run_settings(&run, &cfg)?;
    check_run_config(&run, &s)?;
    let backend = s.backend;
    let device = if s.device.contains("cuda") {
        DeviceArg::Cuda
    } else {
        DeviceArg::Cpu
    };
    torch_gate_for_run(&run, &s, device)?;
    let env = envs::make(&s.env, 1)?;
    let mut agent = make_agent(&mut s, env.as_ref(), device)?;
    if s.backend != backend {
        return Err(HostError::BadFile {
            path: run.config_path(),
            reason: format!("run used backend {backend:?}, which this build cannot load"),
        });
    }
    let loaded = run.load_checkpoint()?.ok_or_else(|| HostError::BadFile {
        path: run.checkpoint_path(),
        reason: "no checkpoint in this run folder".into(),
    })?;
    let recorded = run_settings(&run, &cfg)?;
    let ranks = cfg.get(MPI_RANKS_KEY).and_then(|v| v.as_u64()).unwrap_or(1);
    restore(
        agent.as_mut(),
        &loaded,
        &recorded,
        u32::try_from(ranks).unwrap_or(u32::MAX),
    )?;
    if s.env_options.normalize_obs {
        let norm = saved_obs_norm(&loaded.checkpoint, &loaded.path)?;
        if norm.mean.len() != env.obs_len() {
            return Err(HostError::BadFile {
                path: loaded.path,
                reason: format!(
                    "observation statistics of {} components for observations of {}",
                    norm.mean.len(),
                    env.obs_len()
                ),
            });
        }
        return Ok((s, Box::new(ObsNormalized { inner: agent, norm })));
    }
    Ok((s, agent))
}

/// An agent trained on normalised observations, fed raw ones: every observation goes through
/// the saved, frozen statistics first ([`ObsNormState::normalize`]). For evaluation; it cannot
/// export (a policy file has no normaliser) and passes updates through unchanged.
pub struct ObsNormalized {
    /// The trained agent.
    pub inner: Box<dyn Agent>,
    /// The training normaliser's statistics at the checkpoint.
    pub norm: ObsNormState,
}

impl Agent for ObsNormalized {
    fn act(&mut self, obs: &[f32], n: usize, deterministic: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        let x = self.norm.normalize(obs)?;
        self.inner.act(&x, n, deterministic)
    }
    fn values(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let x = self.norm.normalize(obs)?;
        self.inner.values(&x, n)
    }
    fn update(&mut self, rollout: &HostRollout) -> Result<acktr_core::UpdateStats> {
        self.inner.update(rollout)
    }
    fn update_data_parallel(
        &mut self,
        rollout: &HostRollout,
        coll: &mut dyn acktr_core::Collective,
    ) -> Result<acktr_core::UpdateStats> {
        self.inner.update_data_parallel(rollout, coll)
    }
    fn join_data_parallel(
        &mut self,
        coll: &mut dyn acktr_core::Collective,
        sampler_seed: Option<u64>,
    ) -> Result<()> {
        self.inner.join_data_parallel(coll, sampler_seed)
    }
    fn config(&self) -> acktr_core::Config {
        self.inner.config()
    }
    fn set_config(&mut self, config: acktr_core::Config) -> Result<()> {
        self.inner.set_config(config)
    }
    fn updates(&self) -> u32 {
        self.inner.updates()
    }
    fn save(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.save()
    }
    fn load(&mut self, blobs: &[(String, Vec<u8>)]) -> Result<()> {
        self.inner.load(blobs)
    }
    fn export(&self) -> Result<Vec<u8>> {
        Err(HostError::InvalidSetting(
            "this run normalises observations (--normalize-obs) and the policy file format has \
             no normaliser: an exported policy would be fed raw observations"
                .into(),
        ))
    }
    fn describe(&self) -> serde_json::Value {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_lines_read_back() {
        let reached = TrainMeanReached {
            window: 20,
            target: 475.0,
            mean: 476.25,
            env_steps: 123_456,
            secs: 3.2109,
        };
        let line = done_line(130_000, 98_765.4, 480.5, Some((20, 500.0)), Some(reached));
        assert_eq!(
            line,
            "acktr: done: 130000 env steps, 98765 steps/s, last-100 return 480.50, deterministic eval (20 episodes) 500.00, reached last-20 mean 476.25 (target 475) at 123456 env steps in 3.211 s"
        );
        let text = format!("  1000 steps  0.1%\n\r{line}\n");
        let d = DoneLine::find(&text).expect("parsed");
        assert_eq!((d.env_steps, d.sps), (130_000, 98_765.0));
        let r = d.reached.expect("reached");
        assert_eq!(
            (r.window, r.target, r.mean, r.env_steps),
            (20, 475.0, 476.25, 123_456)
        );
        assert!((r.secs - 3.211).abs() < 1e-9);
        // Not reached, no evaluation; a fractional target.
        let line = done_line(1_000_000, 5e5, f64::NAN, None, None);
        let d = DoneLine::find(&line).expect("parsed");
        assert_eq!((d.env_steps, d.sps, d.reached), (1_000_000, 5e5, None));
        let r = TrainMeanReached {
            target: -150.5,
            ..reached
        };
        let d = DoneLine::find(&done_line(1, 1.0, 0.0, None, Some(r))).expect("parsed");
        assert_eq!(d.reached.map(|r| r.target), Some(-150.5));
        assert!(DoneLine::find("acktr: training CartPole-v1").is_none());
    }

    #[test]
    fn continuous_actions_reach_the_environment_inside_their_box() {
        let space = Space::Box {
            low: vec![-1.0, -2.0],
            high: vec![1.0, f32::INFINITY],
        };
        // Two environments × two dimensions; each dimension has its own bounds.
        let a = [-1.5, -2.5, 0.25, 1e9, 3.0, f32::NAN];
        let Actions::Continuous(got) = env_actions(&space, &a[..4], 2) else {
            panic!("continuous actions expected");
        };
        assert_eq!(got, [-1.0, -2.0, 0.25, 1e9]);
        // Only `n` environments' actions; a NaN is passed on for the environment to refuse.
        let Actions::Continuous(got) = env_actions(&space, &a[4..], 1) else {
            panic!("continuous actions expected");
        };
        assert_eq!((got.len(), got[0]), (2, 1.0));
        assert!(got[1].is_nan());
        let Actions::Discrete(got) = env_actions(&Space::Discrete(3), &[0.0, 1.0, 0.0], 1) else {
            panic!("discrete actions expected");
        };
        assert_eq!(got, [1]);
    }
}
