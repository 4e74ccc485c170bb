//! On-device adaptation: a CartPole policy trained on a workstation meets a plant that differs
//! from the simulator, and ACKTR fine-tunes it on the microcontroller.
//!
//! 1. The learner is a `static` built by the compiler (`Learner::zeroed`): no learner-sized
//!    value ever passes through the stack. Check that a copy of the embedded policy file
//!    (`policy/cartpole.ackp`, a `SharedActorCritic<4, 32, 2>`) with one flipped byte is
//!    refused with the typed checksum error, then load the real one into the learner's network
//!    in place (`read_policy_into`).
//! 2. Measure the nominal policy (deterministic, [`EVAL_EPISODES`] episodes, fixed seeds) on
//!    the nominal plant and on the changed one ([`changed_plant`]).
//! 3. Fine-tune it on the changed plant with ACKTR for [`DEVICE_STEPS`] env steps
//!    (1 env × 32 steps per update), measuring the return every [`CHECKPOINT`] steps; then the
//!    same from the same policy with first-order momentum SGD (same loop, same steps). Both
//!    once per seed in [`SEEDS`]; before each run `Learner::reset` clears the momentum and the
//!    statistics in place and the policy is loaded again.
//! 4. Costs in instructions (SysTick under QEMU `-icount shift=0`): per inference, per env
//!    step, per update and its pieces; then RAM, flash and the stack high-water mark of the
//!    whole run.
//!
//! Exit code: success only if ACKTR's final return, averaged over the seeds, beats the nominal
//! policy's return on the changed plant by at least [`MIN_GAIN`] and is at least
//! [`MIN_RATIO`]× it; failure otherwise and on any error (printed first). `docs/embedded.md`
//! has the figures and the reasoning behind each setting.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicBool, Ordering};

use acktr_core::env::{Action, CartPole, CartPoleParams, Env, Pcg64};
use acktr_core::{
    evaluate, read_policy_into, standard_normal, Activation, Backward, Config, Curvature, Error,
    Forward, HeadKind, Learner, Optimizer, Rollout, Runner, SharedActorCritic,
};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware_demo::{clock, exit_failure, exit_success, memory, Tally};

type Net = SharedActorCritic<4, 32, 2>;
type Learn = Learner<4, 32, 2, 1>;
/// One environment, 32 steps per update.
type Batch = Rollout<4, 2, 1, 32>;

/// The policy trained on the workstation
/// (`cargo run --release -p acktr-core --example export_cartpole`).
static POLICY: &[u8] = include_bytes!("../policy/cartpole.ackp");
const POLICY_LEN: usize = 5283;
const _: () = assert!(POLICY.len() == POLICY_LEN);

/// Deterministic evaluation: episodes, and the seed of the first reset (the others continue
/// the environment's stream, as Gymnasium does).
const EVAL_EPISODES: u32 = 10;
const EVAL_SEED: u64 = 1000;
/// Env steps of fine-tuning on the device, per run (256 updates of 32 steps).
const DEVICE_STEPS: u64 = 8192;
/// The return is evaluated every this many device steps during fine-tuning.
const CHECKPOINT: u64 = 2048;
const CHECKPOINTS: usize = (DEVICE_STEPS / CHECKPOINT) as usize;
/// Seeds of the fine-tuning runs (environment resets and action sampling): each optimizer
/// starts from the same nominal policy once per seed.
const SEEDS: [u64; 4] = [1, 2, 3, 4];
/// Pass: ACKTR's mean return over the seeds after fine-tuning ≥ before + MIN_GAIN and
/// ≥ MIN_RATIO × before.
const MIN_GAIN: f32 = 100.0;
const MIN_RATIO: f32 = 2.0;
/// Whole updates timed per `inverse_every` setting in the cost section.
const COST_UPDATES: u32 = 20;
/// The cost goal for one ACKTR update of the 4-32-32 net on 32 samples, amortised inverse
/// included.
const UPDATE_GOAL: u64 = 1_500_000;
/// The RAM goal: statics + stack high-water mark.
const RAM_GOAL: usize = 48 * 1024;

/// The plant on the device: a cart weighing 0.2 kg instead of 1.0 kg and a pole half as long
/// (half-length 0.25 m instead of 0.5 m). The same push accelerates the cart about 4× harder
/// and the pole falls faster: the nominal policy overshoots and drops it within ~40 steps.
fn changed_plant() -> CartPoleParams {
    CartPoleParams {
        masscart: 0.2,
        length: 0.25,
        ..CartPoleParams::default()
    }
}

/// Fine-tuning with ACKTR: the CartPole preset (`value_coef` 0.05) with a trust region far
/// smaller than the paper's (a batch of 32 steps of one environment is tiny and noisy, and a
/// trust-region step always moves the policy by the full KL bound), no cold start (the policy
/// is trained already, and the statistics' debiased average needs none), and the factors
/// re-decomposed every 10 updates (as good as every update here, for less).
///
/// A `const` because the learner's static is built from it at compile time; the fields not
/// named are the paper's defaults (`Config::DEFAULT`).
const ACKTR: Config = Config {
    kl_clip: 3e-5,
    cold_iters: 0,
    value_coef: 0.05,
    ..Config::DEFAULT
};

/// The first-order baseline: momentum SGD on the clipped gradient, with the learning rate
/// that had the best mean in a host sweep (0.03 to 1) at this budget.
fn sgd_config() -> Config {
    Config {
        optimizer: Optimizer::Sgd,
        eta_max: 0.5,
        value_coef: 0.05,
        ..Config::default()
    }
}

/// What stops the demo with a failure.
enum Failure {
    /// The core returned an error.
    Core(Error),
    /// A corrupted policy file was not refused with `DeserializeBadChecksum`.
    CorruptAccepted(Option<Error>),
    /// The learner was asked for after the cost section had taken its memory.
    LearnerGone,
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
            Failure::CorruptAccepted(None) => {
                f.write_str("a policy file with a flipped byte was accepted")
            }
            Failure::CorruptAccepted(Some(e)) => write!(
                f,
                "a policy file with a flipped byte gave `{e}`, not the checksum error"
            ),
            Failure::LearnerGone => f.write_str("the learner's memory was already handed on"),
        }
    }
}

/// The big state: the learner, built at compile time, then (once the fine-tuning is over) the
/// cost section's own copies, in the same block: a learner-sized static is all the big RAM
/// the demo uses.
#[repr(C)]
union Space {
    /// The learner (ACKTR, then SGD, reset in place between runs).
    learner: ManuallyDrop<Learn>,
    /// The cost section's own statistics, network and gradient.
    probe: ManuallyDrop<Probe>,
}

struct Probe {
    curvature: Curvature<4, 32, 2, 1>,
    net: Net,
    grad: Net,
}

/// Which field of [`Space`] is live.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Learner,
    Probe,
}

/// The shared block and its phase. Each accessor takes `&mut self` and hands out a borrow of
/// it, so the borrow checker sees that one phase has ended before the next begins.
struct Arena {
    space: Space,
    phase: Phase,
}

impl Arena {
    /// The learner with all-zero weights and the [`ACKTR`] settings, evaluated by the compiler:
    /// the static starts life as this value (in `.data`, copied from flash at reset), so no
    /// learner-sized temporary ever passes through the stack.
    const fn new() -> Self {
        Self {
            space: Space {
                learner: ManuallyDrop::new(Learner::zeroed(
                    ACKTR,
                    Activation::Tanh,
                    HeadKind::Categorical,
                )),
            },
            phase: Phase::Learner,
        }
    }

    /// The learner as it is (for the corrupt-file check, which must leave it untouched).
    fn raw_learner(&mut self) -> Result<&mut Learn, Failure> {
        if self.phase != Phase::Learner {
            return Err(Failure::LearnerGone);
        }
        // SAFETY: `phase` says the learner is the live field (it is from the static's
        // initialiser until `probe` overwrites the block and changes the phase for good).
        Ok(unsafe { &mut *self.space.learner })
    }

    /// The learner, reset in place for `config` (zero momentum, empty statistics) and loaded
    /// with [`POLICY`] (`read_policy_into` writes into its network: no network-sized copy).
    fn learner(&mut self, config: Config) -> Result<&mut Learn, Failure> {
        let learner = self.raw_learner()?;
        learner.reset(config)?;
        read_policy_into(POLICY, &mut learner.net)?;
        Ok(learner)
    }

    /// The cost section's buffers, over the learner (which is gone for good): empty
    /// statistics, and the policy loaded twice (as the network, and as a stand-in gradient:
    /// preconditioning costs the same for any values).
    fn probe(&mut self) -> Result<&mut Probe, Failure> {
        self.phase = Phase::Probe;
        let slot = (&raw mut self.space).cast::<Probe>();
        // SAFETY: `Space` is `repr(C)`: every field starts at offset 0 and the block is large
        // and aligned enough for a `Probe`. The writes neither read nor drop what the learner
        // left, every field is written before the `&mut` is made, and `phase` now says the
        // probe is the live field.
        let probe = unsafe {
            (&raw mut (*slot).curvature).write(Curvature::new());
            (&raw mut (*slot).net).write(Net::zeros(Activation::Tanh, HeadKind::Categorical));
            (&raw mut (*slot).grad).write(Net::zeros(Activation::Tanh, HeadKind::Categorical));
            &mut *slot
        };
        read_policy_into(POLICY, &mut probe.net)?;
        read_policy_into(POLICY, &mut probe.grad)?;
        Ok(probe)
    }
}

/// The demo's statics, handed out once (`None` on a second call).
fn statics() -> Option<(&'static mut Arena, &'static mut Batch)> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut ARENA: Arena = Arena::new();
    static mut BATCH: Batch = Batch::new();
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let (arena, batch) = (&raw mut ARENA, &raw mut BATCH);
    // SAFETY: `TAKEN` lets this point be passed once, and nothing else names these statics,
    // so the two `&'static mut` are the only references to them.
    Some(unsafe { (&mut *arena, &mut *batch) })
}

#[entry]
fn main() -> ! {
    let (Some(cp), Some((arena, batch))) = (cortex_m::Peripherals::take(), statics()) else {
        hprintln!("error: peripherals or statics already taken");
        exit_failure()
    };
    clock::start(cp.SYST);
    match run(arena, batch) {
        Ok(true) => exit_success(),
        Ok(false) => exit_failure(),
        Err(e) => {
            hprintln!("error: {}", e);
            exit_failure()
        }
    }
}

/// The stack high-water mark since the last call (or reset), then a repaint: each phase of the
/// demo gets its own figure (the frames live at the repaint count in full in the next one).
fn stack_mark() -> usize {
    let mark = memory::stack_high_water();
    memory::repaint();
    mark
}

/// Stack high-water marks per phase, bytes.
struct StackMarks {
    /// The corrupt-file check (a copy of the policy file on the stack).
    check: usize,
    /// Evaluations, inference timing and the fine-tuning runs (the updates).
    tuning: usize,
    /// The cost section's pieces.
    pieces: usize,
}

impl StackMarks {
    fn max(&self) -> usize {
        self.check.max(self.tuning).max(self.pieces)
    }
}

/// FNV-1a over the bits of every parameter of `net` (to see that it was left alone, without a
/// network-sized copy).
fn fingerprint(net: &Net) -> u32 {
    let mut h = 0x811C_9DC5u32;
    for s in net.param_slices() {
        for v in s {
            h = (h ^ v.to_bits()).wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// A copy of the policy file with one flipped byte must be refused with the typed checksum
/// error, and leave `net` untouched (the same parameter bits before and after). The copy lives on this function's stack frame (5.3 KB,
/// gone when it returns).
#[inline(never)]
fn check_corrupt_file(net: &mut Net) -> Result<(), Failure> {
    let mut bytes = [0u8; POLICY_LEN];
    bytes.copy_from_slice(POLICY);
    bytes[POLICY_LEN / 2] ^= 0x01;
    let before = fingerprint(net);
    match read_policy_into(black_box(&bytes), net) {
        Err(e @ Error::DeserializeBadChecksum) if fingerprint(net) == before => {
            hprintln!(
                "corrupt policy (byte {} flipped): refused: {}",
                POLICY_LEN / 2,
                e
            );
            Ok(())
        }
        Err(e) => Err(Failure::CorruptAccepted(Some(e))),
        Ok(_) => Err(Failure::CorruptAccepted(None)),
    }
}

/// Costs measured while fine-tuning (instructions).
#[derive(Default)]
struct TuneCosts {
    collect: Tally,
    update_factorize: Tally,
    update_reuse: Tally,
}

impl TuneCosts {
    fn update(&self) -> Tally {
        Tally {
            count: self.update_factorize.count + self.update_reuse.count,
            instructions: self.update_factorize.instructions + self.update_reuse.instructions,
        }
    }
}

/// The whole demo; `Ok(pass)`.
fn run(arena: &mut Arena, batch: &mut Batch) -> Result<bool, Failure> {
    hprintln!("== acktr-core on a Cortex-M4F: on-device adaptation (QEMU mps2-an386)");
    let (instr, ticks) = clock::calibrate(1_000_000);
    hprintln!(
        "clock: {} more instructions of a known loop took {} more SysTick ticks = {} instructions per tick (figures below assume {})",
        instr,
        ticks,
        instr as f32 / ticks.max(1) as f32,
        clock::INSTRUCTIONS_PER_TICK
    );

    // 1. A corrupted copy of the policy file must be refused with the typed error, and the
    // learner's network (the target of the load) left alone. Then the real file, in place.
    let _ = stack_mark();
    check_corrupt_file(&mut arena.raw_learner()?.net)?;
    let check_stack = stack_mark();

    // 2. The nominal policy on both plants.
    let nominal = CartPoleParams::default();
    let plant = changed_plant();
    let learner = arena.learner(ACKTR)?;
    hprintln!(
        "policy: {} bytes, SharedActorCritic<4, 32, 2> ({} parameters), loaded",
        POLICY.len(),
        Net::num_params()
    );
    let (on_nominal, eval_steps, eval_cost) = eval(&learner.net, nominal)?;
    let (before, _, _) = eval(&learner.net, plant)?;
    hprintln!(
        "changed plant: cart {} kg (nominal {}), pole half-length {} m (nominal {})",
        plant.masscart,
        nominal.masscart,
        plant.length,
        nominal.length
    );
    hprintln!(
        "nominal policy, mean return of {} deterministic episodes: nominal plant {}, changed plant {}",
        EVAL_EPISODES,
        on_nominal,
        before
    );

    // Inference and env-step costs.
    let obs = [0.01f32, -0.02, 0.03, 0.04];
    let (_, act_1000) = clock::measure(|| {
        for _ in 0..1000 {
            black_box(learner.net.act_deterministic(black_box(&obs)));
        }
    });
    let mut env = CartPole::new(plant);
    env.reset(Some(0));
    let mut env_step = Tally::new();
    for i in 0..1000usize {
        let (tr, cost) = clock::measure(|| env.step(Action::Discrete(i % 2)));
        env_step.add(cost);
        if tr.map_err(Error::Env)?.terminated {
            env.reset(None);
        }
    }

    // 3. and 4. From the same nominal policy, once per seed: ACKTR, then SGD (same loop,
    // same steps).
    let acktr_cfg = ACKTR;
    let sgd_cfg = sgd_config();
    hprintln!(
        "-- fine-tuning: {} device steps per run, 1 env x 32 steps per update, seeds {:?}",
        DEVICE_STEPS,
        SEEDS
    );
    hprintln!(
        "ACKTR: kl_clip {}, cold_iters {}, inverse_every {}; SGD: lr {}, momentum {} (both value_coef {})",
        acktr_cfg.kl_clip,
        acktr_cfg.cold_iters,
        acktr_cfg.inverse_every,
        sgd_cfg.eta_max,
        sgd_cfg.momentum,
        acktr_cfg.value_coef
    );
    let mut acktr = TuneCosts::default();
    let mut sgd = TuneCosts::default();
    let mut acktr_curves = [[0.0f32; CHECKPOINTS + 1]; SEEDS.len()];
    let mut sgd_curves = acktr_curves;
    let mut every = [Tally::new(); 2];
    for (i, &seed) in SEEDS.iter().enumerate() {
        let learner = arena.learner(acktr_cfg)?;
        acktr_curves[i] = fine_tune(learner, batch, plant, seed, before, &mut acktr)?;
        hprintln!("ACKTR seed {}: {:>6.1}", seed, Row(&acktr_curves[i]));
        if i == 0 {
            // Whole updates with inverse_every 1 and 10, on the adapted learner.
            every = [
                time_updates(learner, batch, plant, 1)?,
                time_updates(learner, batch, plant, 10)?,
            ];
        }
        let learner = arena.learner(sgd_cfg)?;
        sgd_curves[i] = fine_tune(learner, batch, plant, seed, before, &mut sgd)?;
        hprintln!("SGD   seed {}: {:>6.1}", seed, Row(&sgd_curves[i]));
    }
    let [every_1, every_10] = every;
    let tuning_stack = stack_mark();

    // 5. The pieces of one ACKTR update, on the cost section's own copies.
    let pieces = time_pieces(arena.probe()?, batch)?;
    let marks = StackMarks {
        check: check_stack,
        tuning: tuning_stack,
        pieces: stack_mark(),
    };

    // 6. Report.
    hprintln!("== costs, instructions (QEMU -icount shift=0: 1 instruction = 1 virtual ns)");
    hprintln!(
        "inference, act_deterministic           {:>9}",
        act_1000 / 1000
    );
    hprintln!(
        "CartPole step (f64 in software)        {:>9}",
        env_step.mean()
    );
    hprintln!(
        "evaluation step (inference + env)      {:>9}",
        eval_cost / u64::from(eval_steps.max(1))
    );
    hprintln!(
        "collect, 32 steps (sampling + env)     {:>9}",
        acktr.collect.mean()
    );
    hprintln!(
        "ACKTR update, factorizing              {:>9}  (mean of {})",
        acktr.update_factorize.mean(),
        acktr.update_factorize.count
    );
    hprintln!(
        "ACKTR update, reusing the factors      {:>9}  (mean of {})",
        acktr.update_reuse.mean(),
        acktr.update_reuse.count
    );
    hprintln!(
        "ACKTR update, inverse_every 1          {:>9}  (mean of {})",
        every_1.mean(),
        every_1.count
    );
    hprintln!(
        "ACKTR update, inverse_every 10         {:>9}  (mean of {}; the fine-tuning run: {})",
        every_10.mean(),
        every_10.count,
        acktr.update().mean()
    );
    hprintln!(
        "SGD update, same loop                  {:>9}",
        sgd.update().mean()
    );
    hprintln!("pieces, batch of 32 (timed separately on a copy):");
    hprintln!(
        "  forward x32                          {:>9}",
        pieces.forward
    );
    hprintln!(
        "  loss gradient x32 (after forward)    {:>9}  (loss, backward, accumulate)",
        pieces.gradient - pieces.forward
    );
    hprintln!(
        "  Fisher backward x32 (after forward)  {:>9}  (sample, backward)",
        pieces.fisher - pieces.forward
    );
    hprintln!("  statistics: scale                    {:>9}", pieces.scale);
    hprintln!(
        "  statistics: observe x32              {:>9}",
        pieces.observe
    );
    hprintln!(
        "  factorize (the inverse, LDL^T)       {:>9}",
        pieces.factorize
    );
    hprintln!(
        "  precondition                         {:>9}",
        pieces.precondition
    );
    let reuse_from_pieces = pieces.fisher
        + (pieces.gradient - pieces.forward)
        + pieces.scale
        + pieces.observe
        + pieces.precondition;
    hprintln!(
        "  sum = update without factorize, less its step and checks {:>9}",
        reuse_from_pieces
    );
    let amortised = every_10.mean();
    hprintln!(
        "goal: one update, inverse amortised (inverse_every 10) <= {}: {} ({})",
        UPDATE_GOAL,
        if amortised <= UPDATE_GOAL {
            "met"
        } else {
            "MISSED"
        },
        amortised
    );

    let mem = memory::usage();
    let stack = marks.max();
    hprintln!("== memory, bytes");
    hprintln!(
        "flash {} of 524288 (the policy file {}); static RAM {} (arena {} = the learner {}; rollout {})",
        mem.flash,
        POLICY.len(),
        mem.static_ram,
        core::mem::size_of::<Arena>(),
        core::mem::size_of::<Learn>(),
        core::mem::size_of::<Batch>()
    );
    hprintln!(
        "stack high-water mark: {} for the whole run (corrupt-file check {}, fine-tuning {}, cost pieces {}; of {} available)",
        stack,
        marks.check,
        marks.tuning,
        marks.pieces,
        mem.stack_capacity
    );
    let ram = mem.static_ram + stack;
    hprintln!(
        "goal: static RAM + stack <= {}: {} ({})",
        RAM_GOAL,
        if ram <= RAM_GOAL { "met" } else { "MISSED" },
        ram
    );

    // 7. Verdict.
    hprintln!(
        "== adaptation on the changed plant: mean return of {} deterministic episodes, after n device steps",
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
            hprintln!("{:<5} s{}    {:>7.1}", name, seed, Row(c));
        }
    }
    let acktr_mean = mean_curve(&acktr_curves);
    let sgd_mean = mean_curve(&sgd_curves);
    hprintln!("ACKTR mean  {:>7.1}", Row(&acktr_mean));
    hprintln!("SGD mean    {:>7.1}", Row(&sgd_mean));
    let after = acktr_mean[CHECKPOINTS];
    let pass = after >= before + MIN_GAIN && after >= MIN_RATIO * before;
    hprintln!(
        "{}: ACKTR's mean after {} steps, {}, must be >= {} (nominal policy {} + {}) and >= {} ({} x); SGD's: {}",
        if pass { "PASS" } else { "FAIL" },
        DEVICE_STEPS,
        after,
        before + MIN_GAIN,
        before,
        MIN_GAIN,
        MIN_RATIO * before,
        MIN_RATIO,
        sgd_mean[CHECKPOINTS]
    );
    Ok(pass)
}

/// Prints a row of numbers, each with the width and precision given to it.
struct Row<'a, T>(&'a [T]);

impl<T: core::fmt::Display> core::fmt::Display for Row<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for v in self.0 {
            match (f.width(), f.precision()) {
                (Some(w), Some(p)) => write!(f, " {v:>w$.p$}")?,
                (Some(w), None) => write!(f, " {v:>w$}")?,
                _ => write!(f, " {v}")?,
            }
        }
        Ok(())
    }
}

/// The mean over the seeds at every checkpoint.
fn mean_curve(curves: &[[f32; CHECKPOINTS + 1]]) -> [f32; CHECKPOINTS + 1] {
    core::array::from_fn(|k| curves.iter().map(|c| c[k]).sum::<f32>() / curves.len() as f32)
}

/// Mean deterministic return of `net` on `params`, its env steps and its instructions.
fn eval(net: &Net, params: CartPoleParams) -> Result<(f32, u32, u64), Failure> {
    let mut env = CartPole::new(params);
    let mut rng = Pcg64::from_seed(0); // not drawn from by deterministic episodes
    let (ret, cost) =
        clock::measure(|| evaluate(net, &mut env, EVAL_EPISODES, EVAL_SEED, true, &mut rng));
    let ret = ret?;
    // Every step earns 1: the steps are the total return.
    Ok((ret, (ret * EVAL_EPISODES as f32) as u32, cost))
}

/// Fine-tune `learner` on `params` for [`DEVICE_STEPS`] env steps from `seed`, timing collect
/// and update; returns the deterministic mean return every [`CHECKPOINT`] steps (`start` is
/// the return before the first step).
fn fine_tune(
    learner: &mut Learn,
    batch: &mut Batch,
    params: CartPoleParams,
    seed: u64,
    start: f32,
    costs: &mut TuneCosts,
) -> Result<[f32; CHECKPOINTS + 1], Failure> {
    let cfg = *learner.config();
    let mut envs = [CartPole::new(params)];
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
        // The core's rule: a natural update decomposes the factors when there is no
        // decomposition yet, and every `inverse_every` natural updates.
        let natural =
            matches!(cfg.optimizer, Optimizer::Acktr) && learner.updates() >= cfg.cold_iters;
        let factorizes = natural
            && (!learner.curvature().is_factorized()
                || (learner.updates() - cfg.cold_iters) % cfg.inverse_every == 0);
        let (r, cost) = clock::measure(|| learner.update(batch, &mut rng));
        r?;
        if factorizes {
            costs.update_factorize.add(cost);
        } else {
            costs.update_reuse.add(cost);
        }
        let steps = runner.env_steps();
        if steps % CHECKPOINT == 0 {
            curve[(steps / CHECKPOINT) as usize] = eval(&learner.net, params)?.0;
        }
    }
    Ok(curve)
}

/// Time [`COST_UPDATES`] whole updates of `learner` with `inverse_every`.
fn time_updates(
    learner: &mut Learn,
    batch: &mut Batch,
    params: CartPoleParams,
    inverse_every: u32,
) -> Result<Tally, Failure> {
    let cfg = Config {
        inverse_every,
        ..*learner.config()
    };
    learner.set_config(cfg)?;
    let mut envs = [CartPole::new(params)];
    let mut runner = Runner::new(&mut envs, 100);
    let mut rng = Pcg64::from_seed(100);
    let mut t = Tally::new();
    for _ in 0..COST_UPDATES {
        runner.collect(
            &learner.net,
            &mut envs,
            batch,
            cfg.gamma,
            cfg.gae_lambda,
            &mut rng,
            |_| {},
        )?;
        let (r, cost) = clock::measure(|| learner.update(batch, &mut rng));
        r?;
        t.add(cost);
    }
    Ok(t)
}

/// Instructions of the pieces of one ACKTR update on a batch of 32 (each loop includes its own
/// forward passes where it needs them).
struct Pieces {
    forward: u64,
    /// Forward, loss gradient at the head, backward, accumulate into the gradient.
    gradient: u64,
    /// Forward, sampled Fisher-loss gradient at the heads, backward.
    fisher: u64,
    scale: u64,
    observe: u64,
    factorize: u64,
    precondition: u64,
}

/// Time the pieces of an update by hand with the core's public parts, as
/// `Learner::update_steps` runs them (blocks of `Learner::BLOCK` samples: the gradient and the
/// statistics take one rank-`BLOCK` update per block), on the probe's own statistics (their
/// cost does not depend on the values).
fn time_pieces(p: &mut Probe, batch: &Batch) -> Result<Pieces, Failure> {
    const C: usize = Learn::BLOCK;
    let cfg = ACKTR;
    let mut rng = Pcg64::from_seed(7);
    let mut fs = [Forward::zeros(); C];
    let mut loss = [Backward::zeros(); C];
    let mut fisher = [Backward::zeros(); C];
    let net = &p.net;
    let steps = batch.steps().as_flattened();

    let (_, forward) = clock::measure(|| {
        for s in steps {
            net.forward(&s.obs, &mut fs[0]);
            black_box(&fs[0]);
        }
    });
    p.grad.map_mut(|g| *g = 0.0);
    let grad = &mut p.grad;
    let (_, gradient) = clock::measure(|| {
        for chunk in steps.chunks_exact(C) {
            for ((s, f), lg) in chunk.iter().zip(fs.iter_mut()).zip(loss.iter_mut()) {
                net.forward(&s.obs, f);
                let mut gz = [0.0; 2];
                let mut g_log_std = [0.0; 2];
                black_box(net.head.loss_grad(
                    &f.z,
                    &net.log_std,
                    &s.action,
                    s.advantage,
                    cfg.entropy_coef,
                    &mut gz,
                    &mut g_log_std,
                ));
                let gv = 2.0 * cfg.value_coef * (f.v - s.ret);
                net.backward(f, &gz, gv, lg);
            }
            grad.accumulate_chunk(&fs, &loss);
        }
    });
    let fisher_pass = |f: &mut Forward<4, 32, 2, 1>,
                       bw: &mut Backward<32, 2, 1>,
                       rng: &mut Pcg64,
                       obs: &[f32; 4]| {
        net.forward(obs, f);
        let mut gz = [0.0; 2];
        net.head.fisher_grad(&f.z, &net.log_std, rng, &mut gz);
        let gv = -cfg.vf_fisher_coef * standard_normal(rng);
        net.backward(f, &gz, gv, bw);
    };
    let (_, fisher_only) = clock::measure(|| {
        for chunk in steps.chunks_exact(C) {
            for ((s, f), fg) in chunk.iter().zip(fs.iter_mut()).zip(fisher.iter_mut()) {
                fisher_pass(f, fg, &mut rng, &s.obs);
            }
            black_box(&fisher);
        }
    });
    let curvature = &mut p.curvature;
    let (_, scale) = clock::measure(|| curvature.scale(black_box(0.99)));
    let w = (1.0 - 0.99) / steps.len() as f32;
    let (_, fisher_and_observe) = clock::measure(|| {
        for chunk in steps.chunks_exact(C) {
            for ((s, f), fg) in chunk.iter().zip(fs.iter_mut()).zip(fisher.iter_mut()) {
                fisher_pass(f, fg, &mut rng, &s.obs);
            }
            curvature.observe_chunk(&fs, &fisher, w);
        }
    });
    let (r, factorize) = clock::measure(|| curvature.factorize(cfg.damping));
    r?;
    let (q, precondition) = clock::measure(|| curvature.precondition(grad));
    black_box(q?);
    Ok(Pieces {
        forward,
        gradient,
        fisher: fisher_only,
        scale,
        observe: fisher_and_observe.saturating_sub(fisher_only),
        factorize,
        precondition,
    })
}
