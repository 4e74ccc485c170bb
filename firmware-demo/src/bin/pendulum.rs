//! Learning Pendulum-v1 from scratch on the microcontroller: a seeded random initialisation,
//! every environment step, every inference and every ACKTR update on the device, then
//! [`EVAL_EPISODES`] deterministic evaluation episodes on the device.
//!
//! 1. The learner (`Learner<3, H, 1, 2>`: separate ReLU actor and critic trunks, a Gaussian
//!    head) is a `static` built by the compiler, the rollout (`ENVS` × `STEPS`) another; the
//!    network is initialised in place from [`SEED`] (`ActorCritic::new`, the orthogonal
//!    initialisation the host's native backend uses with the same seed).
//! 2. Training: [`TOTAL_STEPS`] env steps of `ENVS` Pendulum-v1 environments (the core's
//!    Gymnasium-exact one, f64 dynamics in software), one update per `ENVS × STEPS` batch,
//!    `η_max` decayed linearly to zero as the host's `--lr-schedule linear` does. The learning
//!    curve is the mean return of the training episodes that end in each window of
//!    [`WINDOW`] env steps (no extra work).
//! 3. Evaluation: [`EVAL_EPISODES`] deterministic episodes (the Gaussian's mean), the first
//!    reset seeded with `SEED + 1_000_000` as the host's final evaluation.
//! 4. Costs in instructions (SysTick under QEMU `-icount shift=0`): the whole run, collection
//!    (inference and sampling) against the environment's own steps, the update (cold, natural,
//!    natural with the factors' `LDLᵀ`), the evaluation; then flash, static RAM and the stack
//!    high-water mark.
//!
//! Exit code: success only if the four goals hold: (a) the evaluation's mean return ≥
//! [`RETURN_GOAL`]; (b) the run's instructions at 168 MHz ≤ [`TIME_GOAL_S`] s; (c) static RAM +
//! stack high-water mark ≤ [`RAM_GOAL`]; (d) flash ≤ [`FLASH_GOAL`]. Settings the core refuses
//! (the `pendulum-bad-config` build) stop it with the core's typed error, exit 1. The moonshot
//! (≤ 30 s, ≤ 32 KiB) is reported, not checked. `docs/embedded.md` has the figures.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::sync::atomic::{compiler_fence, AtomicBool, Ordering};

use acktr_core::env::{Action, ActionSpace, Env, EnvError, Pcg64, Pendulum, Transition};
use acktr_core::{
    evaluate, Activation, ActorCritic, Config, Error, HeadKind, Learner, Rollout, Runner,
};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware_demo::report::{percent, Fixed1};
use firmware_demo::{clock, memory, Tally};

/// Hidden width of both trunks.
const H: usize = 16;
/// Separate actor and critic trunks.
type Learn = Learner<3, H, 1, 2>;
type Net = ActorCritic<3, H, 1, 2>;
/// Environments stepped in lockstep, and steps of each per update.
const ENVS: usize = 8;
const STEPS: usize = 20;
type Batch = Rollout<3, 1, ENVS, STEPS>;
/// Env steps of training (all environments).
const TOTAL_STEPS: u64 = 179_200;
/// Seed of the initialisation, the environments' resets and the sampling: 0, or the
/// `PENDULUM_SEED` environment variable at build time (`PENDULUM_SEED=3 cargo run --release
/// --bin pendulum`).
const SEED: u64 = match option_env!("PENDULUM_SEED") {
    Some(s) => parse_u64(s),
    None => 0,
};

/// A decimal `u64`, at compile time (a build with a malformed `PENDULUM_SEED` fails).
const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    assert!(!b.is_empty(), "PENDULUM_SEED is empty");
    let mut v: u64 = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "PENDULUM_SEED must be a decimal number"
        );
        v = match v.checked_mul(10) {
            Some(x) => match x.checked_add((b[i] - b'0') as u64) {
                Some(y) => y,
                None => panic!("PENDULUM_SEED does not fit a u64"),
            },
            None => panic!("PENDULUM_SEED does not fit a u64"),
        };
        i += 1;
    }
    v
}

/// The learning curve's window, env steps.
const WINDOW: u64 = 11_200;
const WINDOWS: usize = TOTAL_STEPS.div_ceil(WINDOW) as usize;
/// Deterministic evaluation episodes after training.
const EVAL_EPISODES: u32 = 100;
/// Samples per block in the update (`Learner::update_steps_in_blocks`; `Learner::update`
/// takes 4). The weights come out the same bit for bit for any block size; one sample at a
/// time keeps the update's block buffers small: less stack for more instructions per update
/// (docs/embedded.md has the figures for 1, 2 and 4).
const UPDATE_BLOCK: usize = 1;

/// The settings, found by host sweeps over seeds 0–9 with the native backend (the same core):
/// the host's Pendulum preset (`acktr train --env Pendulum-v1`: GAE 0.95, no entropy bonus,
/// factor statistics from every 8th sample, `η_max` 0.25 decayed linearly) with γ 0.95
/// instead of 0.9 and a trust region of 0.01 instead of 0.02, on 16-wide trunks and 8 envs
/// (docs/embedded.md has the command); the rest are `Config::DEFAULT`.
const CONFIG: Config = Config {
    kl_clip: 0.01,
    gamma: 0.95,
    gae_lambda: 0.95,
    entropy_coef: 0.0,
    stat_stride: 8,
    ..Config::DEFAULT
};

/// The settings the learner gets: [`CONFIG`], or (`pendulum-bad-config`) settings the core
/// must refuse (critic iterations without the critic's trust region), to show that the device
/// stops with the core's typed error rather than a fault.
#[cfg(not(feature = "pendulum-bad-config"))]
const SETTINGS: Config = CONFIG;
#[cfg(feature = "pendulum-bad-config")]
const SETTINGS: Config = Config {
    vf_iters: 2,
    ..CONFIG
};

/// Goal (a): the evaluation's mean return.
const RETURN_GOAL: f32 = -200.0;
/// The clock of the time goals: a 168 MHz Cortex-M4F (STM32F4) at one instruction per cycle.
const CLOCK_HZ: u64 = 168_000_000;
/// Goal (b), and the moonshot's, seconds at [`CLOCK_HZ`].
const TIME_GOAL_S: u64 = 120;
const TIME_MOONSHOT_S: u64 = 30;
/// Goal (c): statics + stack high-water mark; and the moonshot's.
const RAM_GOAL: usize = 64 * 1024;
const RAM_MOONSHOT: usize = 32 * 1024;
/// Goal (d): flash.
const FLASH_GOAL: usize = 256 * 1024;

/// What stops the program with a failure.
enum Failure {
    /// The core returned an error.
    Core(Error),
    /// The core refused the settings.
    Settings(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Core(e) => write!(f, "{e}"),
            Failure::Settings(e) => write!(f, "the settings were refused: {e}"),
        }
    }
}

/// Pendulum-v1 with a tally of the instructions its `step` takes (the clock reads included).
struct TimedPendulum {
    env: Pendulum,
    steps: Tally,
}

impl Env<3> for TimedPendulum {
    fn action_space(&self) -> ActionSpace {
        self.env.action_space()
    }

    fn reset(&mut self, seed: Option<u64>) -> [f32; 3] {
        self.env.reset(seed)
    }

    fn step(&mut self, action: Action<'_>) -> Result<Transition<3>, EnvError> {
        // The fences keep the caller's inference (which computes `action`) out of the laps:
        // without them the compiler may move its arithmetic past the first clock read.
        compiler_fence(Ordering::SeqCst);
        let t0 = clock::ticks();
        let tr = pendulum_step(&mut self.env, action);
        let t1 = clock::ticks();
        compiler_fence(Ordering::SeqCst);
        self.steps.add(clock::instructions(t1 - t0));
        tr
    }
}

/// One Pendulum step, out of line so that the clock reads around it time it alone.
#[inline(never)]
fn pendulum_step(env: &mut Pendulum, action: Action<'_>) -> Result<Transition<3>, EnvError> {
    env.step(action)
}

/// The seeded random initialisation, out of line: the network-sized temporary that
/// `ActorCritic::new` returns lives in this frame only, not in the training loop's.
#[inline(never)]
fn init_net(learner: &mut Learn, rng: &mut Pcg64) {
    learner.net = Net::new(Activation::Relu, HeadKind::Gaussian, rng);
}

/// The environments, returned into the caller's frame; out of line, so that the array's
/// construction temporary lives in this frame only, not in the training loop's.
#[inline(never)]
fn new_envs() -> [TimedPendulum; ENVS] {
    core::array::from_fn(|_| TimedPendulum {
        env: Pendulum::default(),
        steps: Tally::new(),
    })
}

/// The program's statics, handed out once (`None` on a second call).
fn statics() -> Option<(&'static mut Learn, &'static mut Batch)> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    // Built by the compiler (in `.data`): no learner-sized value passes through the stack.
    static mut LEARNER: Learn = Learner::zeroed(CONFIG, Activation::Relu, HeadKind::Gaussian);
    static mut BATCH: Batch = Batch::new();
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let (learner, batch) = (&raw mut LEARNER, &raw mut BATCH);
    // SAFETY: `TAKEN` lets this point be passed once, and nothing else names these statics,
    // so the two `&'static mut` are the only references to them.
    Some(unsafe { (&mut *learner, &mut *batch) })
}

#[entry]
fn main() -> ! {
    let (learner, batch) = firmware_demo::start(statics());
    firmware_demo::finish(run(learner, batch))
}

/// The stack high-water mark since the last call (or reset), then a repaint: each phase gets
/// its own figure (the frames live at the repaint count in full in the next one).
fn stack_mark() -> usize {
    let mark = memory::stack_high_water();
    memory::repaint();
    mark
}

/// Costs of the run, instructions.
#[derive(Default)]
struct Costs {
    init: u64,
    /// `Runner::collect` (inference, sampling, env steps, returns).
    collect: Tally,
    /// The environments' steps inside `collect`.
    env: Tally,
    /// Updates: the plain-gradient cold start, natural steps, natural steps that also
    /// re-decompose the factors.
    cold: Tally,
    natural: Tally,
    factorizing: Tally,
    /// Setting `η_max` (the schedule) and the curve's bookkeeping.
    other: u64,
    eval: u64,
    /// Env steps of training.
    env_steps: u64,
}

/// Mean return of the training episodes ending in each window, and their number.
struct Curve {
    sum: [f32; WINDOWS],
    n: [u32; WINDOWS],
}

/// [`TOTAL_STEPS`] env steps of training from [`SEED`], timing collection, the environments'
/// steps and the updates. Out of line: its locals (the environments) live only while it runs.
#[inline(never)]
fn train(
    learner: &mut Learn,
    batch: &mut Batch,
    cfg: &Config,
    rng: &mut Pcg64,
    costs: &mut Costs,
) -> Result<Curve, Failure> {
    let mut envs = new_envs();
    let mut runner = Runner::new(&mut envs, SEED);
    let mut curve = Curve {
        sum: [0.0; WINDOWS],
        n: [0; WINDOWS],
    };
    while runner.env_steps() < TOTAL_STEPS {
        let steps_before = runner.env_steps();
        let w = ((steps_before / WINDOW) as usize).min(WINDOWS - 1);
        let (r, cost) = clock::measure(|| {
            runner.collect(
                &learner.net,
                &mut envs,
                batch,
                cfg.gamma,
                cfg.gae_lambda,
                rng,
                |ep| {
                    curve.sum[w] += ep.ret;
                    curve.n[w] += 1;
                },
            )
        });
        r?;
        costs.collect.add(cost);
        let (r, cost) = clock::measure(|| {
            // `--lr-schedule linear`: η_max × (1 − steps/total), the steps counting this batch.
            let frac = 1.0 - runner.env_steps() as f64 / TOTAL_STEPS as f64;
            learner.set_config(Config {
                eta_max: (f64::from(cfg.eta_max) * frac).max(1e-12) as f32,
                ..*cfg
            })
        });
        r?;
        costs.other += cost;
        let k = learner.updates();
        let (r, cost) = clock::measure(|| {
            learner.update_steps_in_blocks::<UPDATE_BLOCK>(batch.steps().as_flattened(), rng)
        });
        r?;
        if k < cfg.cold_iters {
            costs.cold.add(cost);
        } else if (k - cfg.cold_iters) % cfg.inverse_every == 0 {
            costs.factorizing.add(cost);
        } else {
            costs.natural.add(cost);
        }
    }
    for e in envs.iter() {
        costs.env.instructions += e.steps.instructions;
        costs.env.count += e.steps.count;
    }
    costs.env_steps = runner.env_steps();
    Ok(curve)
}

/// Seconds at [`CLOCK_HZ`].
fn seconds(instructions: u64) -> f32 {
    instructions as f32 / CLOCK_HZ as f32
}

/// "met" or "MISSED".
fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The whole program; `Ok(pass)`.
fn run(learner: &mut Learn, batch: &mut Batch) -> Result<bool, Failure> {
    hprintln!(
        "== acktr-core on a {}: Pendulum-v1 learned from scratch on the device",
        firmware_demo::BOARD
    );
    let (instr, ticks) = clock::calibrate(1_000_000);
    hprintln!(
        "clock: {} more instructions of a known loop took {} more SysTick ticks = {} instructions per tick (figures below assume {})",
        instr,
        ticks,
        instr as f32 / ticks.max(1) as f32,
        clock::INSTRUCTIONS_PER_TICK
    );
    let cfg = SETTINGS;
    hprintln!(
        "net 3-{}-{} separate ReLU trunks, Gaussian head ({} parameters); {} envs x {} steps per update, {} env steps, seed {}",
        H,
        H,
        Net::num_params(),
        ENVS,
        STEPS,
        TOTAL_STEPS,
        SEED
    );
    hprintln!(
        "ACKTR: eta_max {} (linear decay), kl_clip {}, gamma {}, gae_lambda {}, entropy_coef {}, value_coef {}, stat_stride {}, inverse_every {}, cold_iters {}",
        cfg.eta_max,
        cfg.kl_clip,
        cfg.gamma,
        cfg.gae_lambda,
        cfg.entropy_coef,
        cfg.value_coef,
        cfg.stat_stride,
        cfg.inverse_every,
        cfg.cold_iters
    );

    // 1. Seeded random initialisation (the host's native backend: one generator for the
    // initialisation, the sampling and the update's Fisher samples).
    let _ = stack_mark();
    let run_start = clock::ticks();
    let mut costs = Costs::default();
    let mut rng = Pcg64::from_seed(SEED);
    let ((), init) = clock::measure(|| init_net(learner, &mut rng));
    costs.init = init;
    learner.reset(cfg).map_err(Failure::Settings)?;
    let init_stack = stack_mark();

    // 2. Training.
    let curve = train(learner, batch, &cfg, &mut rng, &mut costs)?;
    let train_end = clock::ticks();
    let train_stack = stack_mark();

    // 3. Deterministic evaluation, as the host's final one.
    let mut env = Pendulum::default();
    let (ret, cost) = clock::measure(|| {
        evaluate(
            &learner.net,
            &mut env,
            EVAL_EPISODES,
            SEED.wrapping_add(1_000_000),
            true,
            &mut rng,
        )
    });
    let ret = ret?;
    costs.eval = cost;
    let run_end = clock::ticks();
    let run_total = clock::instructions(run_end - run_start);
    let train_total = clock::instructions(train_end - run_start);
    let eval_stack = stack_mark();
    let stack = init_stack.max(train_stack).max(eval_stack);

    // Inference costs, apart from the run.
    let obs = [0.3f32, -0.95, 1.2];
    let (_, act_det_1000) = clock::measure(|| {
        for _ in 0..1000 {
            black_box(learner.net.act_deterministic(black_box(&obs)));
        }
    });
    let mut bench_rng = Pcg64::from_seed(5);
    let (_, act_1000) = clock::measure(|| {
        for _ in 0..1000 {
            black_box(learner.net.act(black_box(&obs), &mut bench_rng));
        }
    });

    let mut env = Pendulum::default();
    env.reset(Some(0));
    let mut env_1000 = Tally::new();
    for i in 0..1000u32 {
        let u = [black_box((i % 9) as f32 * 0.5 - 2.0)];
        let (tr, cost) = clock::measure(|| pendulum_step(&mut env, Action::Continuous(&u)));
        env_1000.add(cost);
        if tr.map_err(Error::Env)?.truncated {
            env.reset(None);
        }
    }

    // 4. Report.
    hprintln!(
        "== learning curve: mean return of the training episodes ending in each window of {} device env steps",
        WINDOW
    );
    for (w, (s, n)) in curve.sum.iter().zip(curve.n.iter()).enumerate() {
        let end = ((w as u64 + 1) * WINDOW).min(TOTAL_STEPS);
        hprintln!(
            "  steps {:>6} to {:>6}: {:>8.1}  ({} episodes)",
            w as u64 * WINDOW,
            end,
            s / (*n).max(1) as f32,
            n
        );
    }
    hprintln!(
        "evaluation: mean return of {} deterministic episodes after {} device env steps: {:.2}",
        EVAL_EPISODES,
        costs.env_steps,
        ret
    );

    let updates = costs.cold.count + costs.natural.count + costs.factorizing.count;
    let update_total =
        costs.cold.instructions + costs.natural.instructions + costs.factorizing.instructions;
    let env_steps = costs.env_steps;
    let inference = costs.collect.instructions - costs.env.instructions;
    hprintln!("== costs, {}", clock::COUNTS);
    hprintln!(
        "whole run (init, training, evaluation)   {:>12}  = {} s at 168 MHz",
        run_total,
        Fixed1(seconds(run_total))
    );
    if let Some(hz) = clock::CORE_HZ {
        // On a chip (the `blackpill/` crate) the figures are core cycles of its own clock.
        hprintln!(
            "  on this chip: {} s measured at its {} MHz clock; the 168 MHz figures and goal (b) divide these cycles (not instructions) by 168 MHz",
            Fixed1(run_total as f32 / hz as f32),
            hz / 1_000_000
        );
    }
    hprintln!(
        "  initialisation                         {:>12}  {:>5}%",
        costs.init,
        Fixed1(percent(costs.init, run_total))
    );
    hprintln!(
        "  rollouts: inference, sampling, returns {:>12}  {:>5}%  ({} per env step)",
        inference,
        Fixed1(percent(inference, run_total)),
        inference / env_steps.max(1)
    );
    hprintln!(
        "  rollouts: Pendulum steps (f64 soft)    {:>12}  {:>5}%  ({} per env step)",
        costs.env.instructions,
        Fixed1(percent(costs.env.instructions, run_total)),
        costs.env.mean()
    );
    hprintln!(
        "  updates                                {:>12}  {:>5}%  ({} updates, {} per update)",
        update_total,
        Fixed1(percent(update_total, run_total)),
        updates,
        update_total / u64::from(updates.max(1))
    );
    hprintln!(
        "  schedule and curve bookkeeping         {:>12}  {:>5}%",
        costs.other,
        Fixed1(percent(costs.other, run_total))
    );
    hprintln!(
        "  evaluation, {} episodes               {:>12}  {:>5}%  ({} per step, inference + env)",
        EVAL_EPISODES,
        costs.eval,
        Fixed1(percent(costs.eval, run_total)),
        costs.eval / (u64::from(EVAL_EPISODES) * 200)
    );
    hprintln!(
        "training per env step (rollout + update share) {}; per update of {} samples: cold (plain gradient) {} x{}, natural {} x{}, natural + LDL^T {} x{}",
        train_total / env_steps.max(1),
        ENVS * STEPS,
        costs.cold.mean(),
        costs.cold.count,
        costs.natural.mean(),
        costs.natural.count,
        costs.factorizing.mean(),
        costs.factorizing.count
    );
    hprintln!(
        "apart from the run: act_deterministic {}, act (sampling) {}, one Pendulum step {} (mean of 1000 each)",
        act_det_1000 / 1000,
        act_1000 / 1000,
        env_1000.mean()
    );

    let mem = memory::usage();
    let ram = mem.static_ram + stack;
    hprintln!("== memory, bytes");
    hprintln!(
        "flash {}; static RAM {} (learner {}, rollout {}); stack high-water mark {} (initialisation {}, training {}, evaluation {}; of {} available); all RAM {}",
        mem.flash,
        mem.static_ram,
        core::mem::size_of::<Learn>(),
        core::mem::size_of::<Batch>(),
        stack,
        init_stack,
        train_stack,
        eval_stack,
        mem.stack_capacity,
        ram
    );

    // Sizes are compile-time constants: printing them instantiates no code of these nets.
    hprintln!(
        "learner bytes on this target: 3-16-16 separate {} (this one), 3-32-32 shared {}, 3-32-32 separate {}",
        core::mem::size_of::<Learner<3, 16, 1, 2>>(),
        core::mem::size_of::<Learner<3, 32, 1, 1>>(),
        core::mem::size_of::<Learner<3, 32, 1, 2>>()
    );

    let time_s = seconds(run_total);
    let return_met = ret >= RETURN_GOAL;
    let time_met = run_total <= TIME_GOAL_S * CLOCK_HZ;
    let ram_met = ram <= RAM_GOAL;
    let flash_met = mem.flash <= FLASH_GOAL;
    hprintln!(
        "goal (a): mean return >= {}: {} ({:.2})",
        RETURN_GOAL,
        verdict(return_met),
        ret
    );
    hprintln!(
        "goal (b): whole run <= {} s at 168 MHz: {} ({} s); moonshot <= {} s: {}",
        TIME_GOAL_S,
        verdict(time_met),
        Fixed1(time_s),
        TIME_MOONSHOT_S,
        verdict(run_total <= TIME_MOONSHOT_S * CLOCK_HZ)
    );
    hprintln!(
        "goal (c): all RAM <= {}: {} ({}); moonshot <= {}: {}",
        RAM_GOAL,
        verdict(ram_met),
        ram,
        RAM_MOONSHOT,
        verdict(ram <= RAM_MOONSHOT)
    );
    hprintln!(
        "goal (d): flash <= {}: {} ({})",
        FLASH_GOAL,
        verdict(flash_met),
        mem.flash
    );
    let pass = return_met && time_met && ram_met && flash_met;
    hprintln!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
