//! A conv policy trained on a workstation meets a changed game, and ACKTR fine-tunes it on the
//! microcontroller, beside first-order SGD from the same start.
//!
//! 1. The learner ([`MinAtarSmallLearner`]: a 4-filter 4×4 stride-2 conv encoder, a shared
//!    32-32 ReLU trunk, a 3-action categorical head) is a `static` built by the compiler
//!    (`Learner::zeroed`); the embedded policy file (`../policy/minatar-breakout.ackp`, version
//!    2, trained on MinAtar Breakout on the host) is loaded into its network in place
//!    (`read_policy_into`): a file the core refuses stops the program with the core's error.
//! 2. Measure the policy ([`EVAL_EPISODES`] deterministic episodes, fixed seeds, at most
//!    [`EVAL_CAP`] steps each) on MinAtar Breakout and on the changed game ([`changed_game`]:
//!    the paddle moves on every other step only).
//! 3. Fine-tune it on the changed game with ACKTR for [`DEVICE_STEPS`] env steps (`ENVS` ×
//!    `STEPS` per update), measuring the return every [`CHECKPOINT`] steps; then the same from
//!    the same policy with first-order momentum SGD. Both once per seed in [`SEEDS`];
//!    `Learner::reset` and the policy file restart each run in place.
//! 4. Costs in instructions (SysTick under QEMU `-icount shift=0`), then RAM (static RAM and
//!    the stack high-water mark) and flash.
//!
//! Exit code: success only if (a) ACKTR's gain (mean final return over the seeds minus the
//! policy's before fine-tuning) beats SGD's and is positive; (b) one ACKTR update, amortised
//! inverse included, takes at most [`UPDATE_GOAL`] instructions; (c) static RAM + stack
//! high-water mark ≤ [`RAM_GOAL`] (192 KiB, an STM32F429's SRAM; `memory.x`). Failure
//! otherwise and on any error (printed first). `docs/embedded.md` has the figures.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::sync::atomic::{AtomicBool, Ordering};

use acktr_core::env::{Breakout, BreakoutParams, Env, Pcg64, BREAKOUT_OBS};
use acktr_core::{
    evaluate, read_policy_into, Activation, Config, Error, HeadKind, MinAtarSmall,
    MinAtarSmallLearner, Optimizer, Rollout, Runner,
};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware_demo::report::{mean_curve, percent, Fixed1, Row};
use firmware_demo::{clock, memory, Tally};

type Learn = MinAtarSmallLearner;
/// Breakout's three actions: a categorical head (the embedded file must have one).
const HEAD: HeadKind = HeadKind::Categorical;
/// Environments stepped in lockstep, and steps of each per update: 16 samples per update, what
/// fits 192 KiB beside the learner (each sample holds its 400-number observation, 1.6 KB).
const ENVS: usize = 4;
const STEPS: usize = 4;
type Batch = Rollout<BREAKOUT_OBS, 3, ENVS, STEPS>;

/// The policy file, written by `bash scripts/regenerate-policy.sh`.
static POLICY: &[u8] = include_bytes!("../../policy/minatar-breakout.ackp");

/// Deterministic evaluation: episodes, the seed of the first reset (the others continue the
/// game's stream), and a step limit per episode (MinAtar Breakout has none).
const EVAL_EPISODES: u32 = 20;
const EVAL_SEED: u64 = 1000;
const EVAL_CAP: u32 = 1000;
/// Env steps of fine-tuning on the device, per run.
const DEVICE_STEPS: u64 = 16384;
/// The return is evaluated every this many device steps during fine-tuning.
const CHECKPOINT: u64 = 8192;
const CHECKPOINTS: usize = (DEVICE_STEPS / CHECKPOINT) as usize;
/// Seeds of the fine-tuning runs (resets and sampling): each optimizer starts from the same
/// policy once per seed.
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
/// Goal (b): one ACKTR update of the 16-sample batch, amortised inverse included (the mean
/// over every update of the ACKTR fine-tuning runs, `inverse_every` 10).
const UPDATE_GOAL: u64 = 20_000_000;
/// Goal (c): statics + stack high-water mark: an STM32F429's 192 KiB of SRAM.
const RAM_GOAL: usize = 192 * 1024;
/// The flash budget of `memory.x`.
const FLASH_BUDGET: usize = 512 * 1024;

/// The game on the device: MinAtar Breakout whose paddle moves on every other step only (a
/// slower motor). The host's policy, trained on the nominal game, arrives late at the ball.
fn changed_game(eval: bool) -> BreakoutParams {
    BreakoutParams {
        paddle_period: 2,
        max_episode_steps: if eval { Some(EVAL_CAP) } else { None },
        ..BreakoutParams::default()
    }
}

/// Fine-tuning with ACKTR: the paper's settings (`Config::DEFAULT`, `inverse_every` 10) with a
/// trust region of 0.0003 (a trained policy moves little; 0.001 and 0.003 gained less on the
/// host, 0.01 lost), GAE λ 0.95 and no cold start (the policy is trained already). Chosen on
/// the host (`cargo run --release -p acktr-core --example breakout_finetune`) over eleven
/// policies: this file and the small preset's seeds 0–9 (`bash scripts/breakout-policies.sh`,
/// `bench/firmware/breakout-policies.txt`).
const ACKTR: Config = Config {
    kl_clip: 0.0003,
    gae_lambda: 0.95,
    cold_iters: 0,
    ..Config::DEFAULT
};

/// The first-order baseline: momentum SGD on the clipped gradient, GAE λ 0.95 as ACKTR, with
/// the learning rate that had the best mean gain in the same host sweep (0.003, 0.01, 0.03,
/// 0.1) at this budget and batch.
const SGD: Config = Config {
    optimizer: Optimizer::Sgd,
    eta_max: 0.01,
    gae_lambda: 0.95,
    cold_iters: 0,
    ..Config::DEFAULT
};

/// What stops the program with a failure.
enum Failure {
    /// The core returned an error.
    Core(Error),
    /// The embedded policy file was refused (the core's typed error).
    PolicyRefused(Error),
    /// The embedded file has another head kind than this network's.
    PolicyWrongHead(HeadKind),
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
            Failure::PolicyRefused(e) => write!(f, "the embedded policy file was refused: {e}"),
            Failure::PolicyWrongHead(k) => write!(
                f,
                "the embedded policy file was refused: its head is {k:?}, this network's is {HEAD:?}"
            ),
        }
    }
}

/// The program's statics, handed out once (`None` on a second call): the learner, built by
/// the compiler, and the rollout.
fn statics() -> Option<(&'static mut Learn, &'static mut Batch)> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut LEARNER: Learn = Learn::zeroed(ACKTR, Activation::Relu, HEAD);
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

/// `learner` reset for `config` and loaded with [`POLICY`], in place.
fn restart(learner: &mut Learn, config: Config) -> Result<(), Failure> {
    learner.reset(config)?;
    read_policy_into(POLICY, &mut learner.net).map_err(Failure::PolicyRefused)?;
    if learner.net.head != HEAD {
        return Err(Failure::PolicyWrongHead(learner.net.head));
    }
    Ok(())
}

/// Costs measured while fine-tuning (instructions).
#[derive(Default)]
struct TuneCosts {
    collect: Tally,
    update: Tally,
    /// The dearest single update (one with the factors' `LDLᵀ`).
    max_update: u64,
}

/// The whole program; `Ok(pass)`.
fn run(learner: &mut Learn, batch: &mut Batch) -> Result<bool, Failure> {
    hprintln!("== acktr-core on a Cortex-M4F: a host-trained conv policy fine-tuned on a changed MinAtar Breakout (QEMU mps2-an386)");
    let (instr, ticks) = clock::calibrate(1_000_000);
    hprintln!(
        "clock: {} more instructions of a known loop took {} more SysTick ticks = {} instructions per tick (figures below assume {})",
        instr,
        ticks,
        instr as f32 / ticks.max(1) as f32,
        clock::INSTRUCTIONS_PER_TICK
    );
    memory::repaint();
    restart(learner, ACKTR)?;
    hprintln!(
        "policy: {} bytes, MinAtarSmall = conv 4x4x4 stride 2 -> 64 -> 32-32 ReLU -> 3 actions + value ({} parameters), loaded",
        POLICY.len(),
        MinAtarSmall::num_params()
    );

    // The policy on the nominal and the changed game.
    let nominal = BreakoutParams {
        max_episode_steps: Some(EVAL_CAP),
        ..BreakoutParams::default()
    };
    let (on_nominal, eval_steps, eval_cost) = eval(&learner.net, nominal)?;
    let (before, _, _) = eval(&learner.net, changed_game(true))?;
    hprintln!(
        "changed game: the paddle moves on one step in {} (nominal: every step)",
        changed_game(false).paddle_period
    );
    hprintln!(
        "host policy, mean return of {} deterministic episodes (at most {} steps): nominal game {}, changed game {}",
        EVAL_EPISODES,
        EVAL_CAP,
        on_nominal,
        before
    );

    // Inference and game-step costs.
    let obs = Breakout::default().reset(Some(0));
    let (_, act_det_100) = clock::measure(|| {
        for _ in 0..100 {
            black_box(learner.net.act_deterministic(black_box(&obs)));
        }
    });
    let mut rng = Pcg64::from_seed(5);
    let (_, act_100) = clock::measure(|| {
        for _ in 0..100 {
            black_box(learner.net.act(black_box(&obs), &mut rng));
        }
    });
    let game_step = game_step_cost()?;

    // From the same policy, once per seed: ACKTR, then SGD.
    hprintln!(
        "-- fine-tuning: {} device steps per run, {} envs x {} steps per update, seeds {:?}",
        DEVICE_STEPS,
        ENVS,
        STEPS,
        SEEDS
    );
    hprintln!(
        "ACKTR: kl_clip {}, eta_max {}, cold_iters {}, inverse_every {}; SGD: lr {}, max_grad_norm {}; both momentum {}, GAE lambda {}",
        ACKTR.kl_clip,
        ACKTR.eta_max,
        ACKTR.cold_iters,
        ACKTR.inverse_every,
        SGD.eta_max,
        SGD.max_grad_norm,
        ACKTR.momentum,
        ACKTR.gae_lambda
    );
    let mut acktr = TuneCosts::default();
    let mut sgd = TuneCosts::default();
    let mut acktr_curves = [[0.0f32; CHECKPOINTS + 1]; SEEDS.len()];
    let mut sgd_curves = acktr_curves;
    for (i, &seed) in SEEDS.iter().enumerate() {
        restart(learner, ACKTR)?;
        acktr_curves[i] = fine_tune(learner, batch, seed, before, &mut acktr)?;
        hprintln!("ACKTR seed {}: {:>6.2}", seed, Row(&acktr_curves[i]));
        restart(learner, SGD)?;
        sgd_curves[i] = fine_tune(learner, batch, seed, before, &mut sgd)?;
        hprintln!("SGD   seed {}: {:>6.2}", seed, Row(&sgd_curves[i]));
    }
    let stack = memory::stack_high_water();

    // Report.
    let acktr_update = acktr.update.mean();
    let sgd_update = sgd.update.mean();
    hprintln!("== costs, instructions (QEMU -icount shift=0: 1 instruction = 1 virtual ns)");
    hprintln!(
        "inference, act_deterministic           {:>9}",
        act_det_100 / 100
    );
    hprintln!(
        "inference, act (sampling)              {:>9}",
        act_100 / 100
    );
    hprintln!("Breakout step (with its observation)   {:>9}", game_step);
    hprintln!(
        "evaluation step (inference + game)     {:>9}",
        eval_cost / u64::from(eval_steps.max(1))
    );
    hprintln!(
        "collect, {} steps (sampling + game)    {:>9}",
        ENVS * STEPS,
        acktr.collect.mean()
    );
    hprintln!(
        "ACKTR update, fine-tuning runs         {:>9}  (mean of {}, inverse_every {}; the dearest {})",
        acktr_update,
        acktr.update.count,
        ACKTR.inverse_every,
        acktr.max_update
    );
    hprintln!(
        "SGD update, fine-tuning runs           {:>9}  (mean of {}): ACKTR costs {}x an SGD update",
        sgd_update,
        sgd.update.count,
        Fixed1(acktr_update as f32 / sgd_update.max(1) as f32)
    );
    let update_met = acktr_update <= UPDATE_GOAL;
    hprintln!(
        "goal (b): one ACKTR update, inverse amortised (the fine-tuning runs' mean) <= {}: {} ({}, {}% of the goal)",
        UPDATE_GOAL,
        if update_met { "met" } else { "MISSED" },
        acktr_update,
        Fixed1(percent(acktr_update, UPDATE_GOAL))
    );

    let mem = memory::usage();
    hprintln!("== memory, bytes");
    hprintln!(
        "flash {} of {} ({}%; the policy file {}); static RAM {} (the learner {}; rollout {})",
        mem.flash,
        FLASH_BUDGET,
        Fixed1(percent(mem.flash as u64, FLASH_BUDGET as u64)),
        POLICY.len(),
        mem.static_ram,
        core::mem::size_of::<Learn>(),
        core::mem::size_of::<Batch>()
    );
    hprintln!(
        "stack high-water mark: {} (of {} available)",
        stack,
        mem.stack_capacity
    );
    let ram = mem.static_ram + stack;
    let ram_met = ram <= RAM_GOAL;
    hprintln!(
        "goal (c): static RAM + stack <= {}: {} ({}, headroom {})",
        RAM_GOAL,
        if ram_met { "met" } else { "MISSED" },
        ram,
        RAM_GOAL as i64 - ram as i64
    );

    // Verdict.
    hprintln!(
        "== adaptation on the changed game: mean return of {} deterministic episodes, after n device steps",
        EVAL_EPISODES
    );
    hprintln!(
        "steps       {:>7}",
        Row(&core::array::from_fn::<u64, { CHECKPOINTS + 1 }, _>(|k| k
            as u64
            * CHECKPOINT))
    );
    for (name, curves) in [("ACKTR", &acktr_curves), ("SGD", &sgd_curves)] {
        for (seed, c) in SEEDS.iter().zip(curves.iter()) {
            hprintln!("{:<5} s{}    {:>7.2}", name, seed, Row(c));
        }
    }
    let acktr_mean = mean_curve(&acktr_curves);
    let sgd_mean = mean_curve(&sgd_curves);
    hprintln!("ACKTR mean  {:>7.2}", Row(&acktr_mean));
    hprintln!("SGD mean    {:>7.2}", Row(&sgd_mean));
    let acktr_gain = acktr_mean[CHECKPOINTS] - before;
    let sgd_gain = sgd_mean[CHECKPOINTS] - before;
    let ahead = acktr_gain > 0.0 && acktr_gain > sgd_gain;
    hprintln!(
        "goal (a): ACKTR's gain after {} steps, {:.2} (from {:.2} to {:.2}), must be positive and beat SGD's, {:.2} (to {:.2}): {}",
        DEVICE_STEPS,
        acktr_gain,
        before,
        acktr_mean[CHECKPOINTS],
        sgd_gain,
        sgd_mean[CHECKPOINTS],
        if ahead { "met" } else { "MISSED" }
    );
    let pass = ahead && update_met && ram_met;
    hprintln!(
        "{}: ACKTR ahead of SGD {}, update cost {}, RAM {}",
        if pass { "PASS" } else { "FAIL" },
        if ahead { "met" } else { "MISSED" },
        if update_met { "met" } else { "MISSED" },
        if ram_met { "met" } else { "MISSED" }
    );
    Ok(pass)
}

/// Mean deterministic return of `net` on `params`, its game steps and its instructions.
#[inline(never)]
fn eval(net: &MinAtarSmall, params: BreakoutParams) -> Result<(f32, u32, u64), Failure> {
    let mut env = Steps(Breakout::new(params), 0);
    let mut rng = Pcg64::from_seed(0); // not drawn from by deterministic episodes
    let (ret, cost) =
        clock::measure(|| evaluate(net, &mut env, EVAL_EPISODES, EVAL_SEED, true, &mut rng));
    Ok((ret?, env.1, cost))
}

/// A game that counts its steps.
struct Steps(Breakout, u32);

impl Env<BREAKOUT_OBS> for Steps {
    fn action_space(&self) -> acktr_core::env::ActionSpace {
        self.0.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> [f32; BREAKOUT_OBS] {
        self.0.reset(seed)
    }
    fn step(
        &mut self,
        action: acktr_core::env::Action<'_>,
    ) -> Result<acktr_core::env::Transition<BREAKOUT_OBS>, acktr_core::env::EnvError> {
        self.1 += 1;
        self.0.step(action)
    }
}

/// Mean instructions of a step of the changed game (cycling the three actions).
#[inline(never)]
fn game_step_cost() -> Result<u64, Failure> {
    let mut env = Breakout::new(changed_game(false));
    env.reset(Some(0));
    let mut t = Tally::new();
    for i in 0..300usize {
        let (tr, cost) = clock::measure(|| env.step(acktr_core::env::Action::Discrete(i % 3)));
        t.add(cost);
        if tr.map_err(|e| Failure::Core(Error::Env(e)))?.terminated {
            env.reset(None);
        }
    }
    Ok(t.mean())
}

/// Fine-tune `learner` on the changed game for [`DEVICE_STEPS`] env steps from `seed`, timing
/// collect and update; returns the deterministic mean return every [`CHECKPOINT`] steps
/// (`start` is the return before the first step).
#[inline(never)]
fn fine_tune(
    learner: &mut Learn,
    batch: &mut Batch,
    seed: u64,
    start: f32,
    costs: &mut TuneCosts,
) -> Result<[f32; CHECKPOINTS + 1], Failure> {
    let cfg = *learner.config();
    let mut envs: [Breakout; ENVS] = core::array::from_fn(|_| Breakout::new(changed_game(false)));
    let mut runner = Runner::new(&mut envs, seed);
    let mut rng = Pcg64::from_seed(seed);
    let mut curve = [start; CHECKPOINTS + 1];
    while runner.env_steps() < DEVICE_STEPS {
        let (r, cost) = clock::measure(|| {
            runner.collect(
                &learner.net,
                &mut envs,
                batch,
                cfg.gamma,
                cfg.gae_lambda,
                &mut rng,
                |_| {},
            )
        });
        r?;
        costs.collect.add(cost);
        let (r, cost) = clock::measure(|| learner.update(batch, &mut rng));
        r?;
        costs.update.add(cost);
        costs.max_update = costs.max_update.max(cost);
        let steps = runner.env_steps();
        if steps % CHECKPOINT == 0 {
            curve[(steps / CHECKPOINT) as usize] = eval(&learner.net, changed_game(true))?.0;
        }
    }
    Ok(curve)
}
