//! On-device adaptation: a CartPole policy trained on a workstation meets a plant that differs
//! from the simulator, and ACKTR fine-tunes it on the microcontroller.
//!
//! 1. The learner is a `static` built by the compiler (`Learner::zeroed`): no learner-sized
//!    value ever passes through the stack. The embedded policy file (`policy/cartpole.ackp`, a
//!    `SharedActorCritic<4, 32, 2>`) is loaded into the learner's network in place
//!    (`read_policy_into`); a file the core refuses stops the demo with the core's typed error
//!    (the `bad-policy` and `bad-policy-shape` builds embed such a file on purpose); a file of
//!    the right sizes with another head kind stops it there too (`bad-policy-head`). Then a copy
//!    with one flipped byte must be refused with the typed checksum error, the network untouched.
//! 2. Measure the nominal policy (deterministic, [`EVAL_EPISODES`] episodes, fixed seeds) on
//!    the nominal plant and on the changed one ([`changed_plant`]).
//! 3. Fine-tune it on the changed plant with ACKTR for [`DEVICE_STEPS`] env steps
//!    (1 env × 32 steps per update), measuring the return every [`CHECKPOINT`] steps; then the
//!    same from the same policy with first-order momentum SGD (same loop, same steps). Both
//!    once per seed in [`SEEDS`]; before each run `Learner::reset` clears the momentum and the
//!    statistics in place and the policy is loaded again.
//! 4. Costs in instructions (SysTick under QEMU `-icount shift=0`): per inference, per env
//!    step, per update (`inverse_every` 1 and 10, SGD), and the pieces of the update: a replica
//!    of `Learner::update` made of the core's public parts times each piece; it must leave the
//!    weights bit for bit as `Learner::update` does on the same batches, or the demo fails.
//!    Then RAM, flash and the stack high-water mark of the whole run.
//!
//! Exit code: success only if all three goals are met: (a) ACKTR's final return, averaged over
//! the seeds, beats the nominal policy's return on the changed plant by at least [`MIN_GAIN`]
//! and is at least [`MIN_RATIO`]× it (for a policy already within `MIN_GAIN` of [`SOLVED`]
//! there, one a user embeds: stays at `SOLVED` or above); (b) one ACKTR update, amortised
//! inverse included, takes at most [`UPDATE_GOAL`] instructions; (c) static RAM + stack
//! high-water mark ≤ [`RAM_GOAL`]. Failure otherwise and on any error (printed first). `docs/embedded.md` has the
//! figures and the reasoning behind each setting.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicBool, Ordering};

use acktr_core::env::{Action, CartPole, CartPoleParams, Env, Pcg64};
use acktr_core::{
    evaluate, read_policy_into, standard_normal, trust_region, Activation, Backward, BackwardBlock,
    Config, Curvature, Error, Forward, ForwardBlock, HeadKind, Learner, Optimizer, Rollout, Runner,
    SharedActorCritic, Step,
};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware_demo::report::{mean_curve, percent, Fixed1, Row};
use firmware_demo::{clock, memory, Tally};

type Net = SharedActorCritic<4, 32, 2>;
/// CartPole's two actions: a categorical head (the embedded file must have one).
const HEAD: HeadKind = HeadKind::Categorical;
type Learn = Learner<4, 32, 2, 1>;
/// One environment, 32 steps per update.
type Batch = Rollout<4, 2, 1, 32>;

/// The policy file the firmware embeds. Written by `bash scripts/regenerate-policy.sh` (the
/// host trainer's native backend, seed 0, every setting pinned, then `acktr export`).
#[cfg(not(any(
    feature = "bad-policy",
    feature = "bad-policy-shape",
    feature = "bad-policy-head"
)))]
const POLICY_FILE: &[u8] = include_bytes!("../policy/cartpole.ackp");
/// `bad-policy`: the real file with one byte flipped at compile time; the core must refuse it
/// (`DeserializeBadChecksum`) and the demo exit with a failure, never a fault.
#[cfg(all(
    feature = "bad-policy",
    not(any(feature = "bad-policy-shape", feature = "bad-policy-head"))
))]
const POLICY_FILE: &[u8] = &flip_byte::<{ REAL_FILE.len() }>(REAL_FILE, REAL_FILE.len() / 3);
/// `bad-policy-head`: the real file made into a valid file of the same shape with a Gaussian
/// head (2 action dims, log-std 0) at compile time; the shape checks pass, so the demo must
/// refuse it by its head kind ([`Failure::PolicyWrongHead`]) when loading, not at the first act.
#[cfg(all(feature = "bad-policy-head", not(feature = "bad-policy-shape")))]
const POLICY_FILE: &[u8] = &gaussian_head::<{ REAL_FILE.len() + 8 }>(REAL_FILE);
#[cfg(all(
    any(feature = "bad-policy", feature = "bad-policy-head"),
    not(feature = "bad-policy-shape")
))]
const REAL_FILE: &[u8] = include_bytes!("../policy/cartpole.ackp");
/// `bad-policy-shape`: a valid file of another shape (a 4-16-16 net, 1,635 bytes); the core
/// must refuse it (`DeserializeShapeMismatch`): the length differs too, which only the run-time
/// checks see.
#[cfg(feature = "bad-policy-shape")]
const POLICY_FILE: &[u8] = include_bytes!("../policy/cartpole-16x16.ackp");

/// The embedded policy, one copy in flash.
static POLICY: &[u8] = POLICY_FILE;
/// Its length, known to the compiler (the corrupt-file check copies it to the stack); whether
/// the bytes fit the network is the core's run-time check, not a compile-time one.
const POLICY_LEN: usize = POLICY_FILE.len();

/// `src` with byte `at` XOR 0x40 (evaluated by the compiler).
#[cfg(all(
    feature = "bad-policy",
    not(any(feature = "bad-policy-shape", feature = "bad-policy-head"))
))]
const fn flip_byte<const N: usize>(src: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = src[i];
        i += 1;
    }
    out[at] ^= 0x40;
    out
}

/// `src`, a categorical 4-32-32 policy file without a normaliser, as a Gaussian one (evaluated
/// by the compiler): the header's head byte (offset 16: prefix 10, then obs, layer count, two
/// sizes, trunks and activation, one byte each) set to 1, the 2 log-std values 0.0 appended to
/// the payload, the body length and the CRC-32C redone (docs/format.md).
#[cfg(all(feature = "bad-policy-head", not(feature = "bad-policy-shape")))]
const fn gaussian_head<const N: usize>(src: &[u8]) -> [u8; N] {
    let body = N - 10 - 4;
    let mut out = [0u8; N];
    let mut i = 0;
    while i < src.len() - 4 {
        out[i] = src[i];
        i += 1;
    }
    assert!(out[16] == 0, "expected a categorical head at offset 16");
    out[16] = 1;
    let len = (body as u32).to_le_bytes();
    out[6] = len[0];
    out[7] = len[1];
    out[8] = len[2];
    out[9] = len[3];
    // The log-std bytes (0.0f32 is all zeros) are already there; then the CRC of the rest.
    let mut crc = !0u32;
    i = 0;
    while i < N - 4 {
        crc ^= out[i] as u32;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            k += 1;
        }
        i += 1;
    }
    let crc = (!crc).to_le_bytes();
    out[N - 4] = crc[0];
    out[N - 3] = crc[1];
    out[N - 2] = crc[2];
    out[N - 1] = crc[3];
    out
}

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
/// CartPole-v1's solved return: a policy within `MIN_GAIN` of it on the changed plant has
/// nothing to gain, and must stay at it or above instead.
const SOLVED: f32 = 475.0;
/// Whole updates timed per `inverse_every` setting, and by the replica, in the cost section.
const COST_UPDATES: usize = 20;
/// Seed of the cost section's rollouts and sampling.
const COST_SEED: u64 = 100;
/// Goal (b): one ACKTR update of the 4-32-32 net on 32 samples, amortised inverse included
/// (the mean over every update of the ACKTR fine-tuning runs, `inverse_every` 10).
const UPDATE_GOAL: u64 = 1_500_000;
/// Goal (c): statics + stack high-water mark.
const RAM_GOAL: usize = 48 * 1024;
/// The flash budget of `memory.x`.
const FLASH_BUDGET: usize = 512 * 1024;

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
    /// The embedded policy file was refused (the core's typed error).
    PolicyRefused(Error),
    /// The embedded policy file fits the network's sizes but has another head kind (a Gaussian
    /// head where CartPole's network has a categorical one).
    PolicyWrongHead {
        /// The head kind the file holds.
        found: HeadKind,
    },
    /// A corrupted policy file was not refused with `DeserializeBadChecksum`.
    CorruptAccepted(Option<Error>),
    /// The learner was asked for after the cost section had taken its memory.
    LearnerGone,
    /// The timed replica of `Learner::update` left other weights than the update itself
    /// (after this many updates): its breakdown would not be the update's.
    ReplicaDiverged(usize),
    /// The replica covers natural (ACKTR) steps of a categorical net with `stat_stride` 1 only.
    ReplicaUnsupported,
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
            Failure::PolicyWrongHead { found } => write!(
                f,
                "the embedded policy file was refused: its head is {found:?}, this network's is {:?}",
                HEAD
            ),
            Failure::CorruptAccepted(None) => {
                f.write_str("a policy file with a flipped byte was accepted")
            }
            Failure::CorruptAccepted(Some(e)) => write!(
                f,
                "a policy file with a flipped byte gave `{e}`, not the checksum error"
            ),
            Failure::LearnerGone => f.write_str("the learner's memory was already handed on"),
            Failure::ReplicaDiverged(k) => write!(
                f,
                "the timed replica of Learner::update left different weights after update {k}"
            ),
            Failure::ReplicaUnsupported => {
                f.write_str("the replica times natural steps of a categorical net, stride 1, only")
            }
        }
    }
}

/// The big state: the learner, built at compile time, then (once the fine-tuning and the
/// whole-update timings are over) the replica's own state, in the same block: a learner-sized
/// static is all the big RAM the demo uses.
#[repr(C)]
union Space {
    /// The learner (ACKTR, then SGD, reset in place between runs).
    learner: ManuallyDrop<Learn>,
    /// The timed replica of the update.
    replica: ManuallyDrop<Replica>,
}

/// Everything `Learner::update` reads and writes, as plain fields (the learner's own are
/// private): the replica runs the update's steps on these in the same order.
struct Replica {
    net: Net,
    grad: Net,
    velocity: Net,
    curvature: Curvature<4, 32, 2, 1>,
    updates: u32,
}

/// Which field of [`Space`] is live.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Learner,
    Replica,
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
                learner: ManuallyDrop::new(Learner::zeroed(ACKTR, Activation::Tanh, HEAD)),
            },
            phase: Phase::Learner,
        }
    }

    /// The learner as it is.
    fn raw_learner(&mut self) -> Result<&mut Learn, Failure> {
        if self.phase != Phase::Learner {
            return Err(Failure::LearnerGone);
        }
        // SAFETY: `phase` says the learner is the live field (it is from the static's
        // initialiser until `replica` overwrites the block and changes the phase for good).
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

    /// The replica's state over the learner (which is gone for good), as `Learner::reset`
    /// leaves a learner: zero gradient and momentum, empty statistics, no update yet, and the
    /// policy loaded.
    fn replica(&mut self) -> Result<&mut Replica, Failure> {
        self.phase = Phase::Replica;
        let slot = (&raw mut self.space).cast::<Replica>();
        // SAFETY: `Space` is `repr(C)`: every field starts at offset 0 and the block is large
        // and aligned enough for a `Replica`. The writes neither read nor drop what the learner
        // left, every field is written before the `&mut` is made, and `phase` now says the
        // replica is the live field.
        let replica = unsafe {
            let zeros = || Net::zeros(Activation::Tanh, HEAD);
            (&raw mut (*slot).net).write(zeros());
            (&raw mut (*slot).grad).write(zeros());
            (&raw mut (*slot).velocity).write(zeros());
            (&raw mut (*slot).curvature).write(Curvature::new());
            (&raw mut (*slot).updates).write(0);
            &mut *slot
        };
        read_policy_into(POLICY, &mut replica.net)?;
        Ok(replica)
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
    let (arena, batch) = firmware_demo::start(statics());
    firmware_demo::finish(run(arena, batch))
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
    /// Loading the policy and the corrupt-file check (a copy of the policy file on the stack).
    check: usize,
    /// Evaluations, inference timing and the fine-tuning runs (the updates).
    tuning: usize,
    /// The cost section: whole updates and the timed replica.
    costs: usize,
}

impl StackMarks {
    fn max(&self) -> usize {
        self.check.max(self.tuning).max(self.costs)
    }
}

/// FNV-1a over the bits of every parameter of `net` (to compare networks without a
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
/// error, and leave `net` (holding the loaded policy) untouched: the same parameter bits
/// before and after. The copy lives on this function's stack frame, gone when it returns.
#[inline(never)]
fn check_corrupt_file(net: &mut Net) -> Result<(), Failure> {
    let mut bytes = [0u8; POLICY_LEN];
    bytes.copy_from_slice(POLICY);
    bytes[POLICY_LEN / 2] ^= 0x01;
    let before = fingerprint(net);
    match read_policy_into(black_box(&bytes), net) {
        Err(e @ Error::DeserializeBadChecksum) if fingerprint(net) == before => {
            hprintln!(
                "corrupt copy of the policy (byte {} flipped): refused: {}",
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
    update: Tally,
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

    // 1. The embedded file into the learner's network, in place; the core's typed error if it
    // is refused. Then a corrupted copy must be refused, the loaded network left alone.
    let _ = stack_mark();
    let learner = arena.raw_learner()?;
    learner.reset(ACKTR)?;
    read_policy_into(POLICY, &mut learner.net).map_err(Failure::PolicyRefused)?;
    // The file sets the head kind (the sizes alone do not tell a categorical file from a
    // Gaussian one with as many action dims): refuse another kind now, not at the first act.
    if learner.net.head != HEAD {
        return Err(Failure::PolicyWrongHead {
            found: learner.net.head,
        });
    }
    hprintln!(
        "policy: {} bytes, SharedActorCritic<4, 32, 2> ({} parameters), loaded",
        POLICY.len(),
        Net::num_params()
    );
    check_corrupt_file(&mut learner.net)?;
    let check_stack = stack_mark();

    // 2. The nominal policy on both plants.
    let nominal = CartPoleParams::default();
    let plant = changed_plant();
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
    let (_, act_det_1000) = clock::measure(|| {
        for _ in 0..1000 {
            black_box(learner.net.act_deterministic(black_box(&obs)));
        }
    });
    let mut rng = Pcg64::from_seed(5);
    let (_, act_1000) = clock::measure(|| {
        for _ in 0..1000 {
            black_box(learner.net.act(black_box(&obs), &mut rng));
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

    // 3. From the same nominal policy, once per seed: ACKTR, then SGD (same loop, same steps).
    let acktr_cfg = ACKTR;
    let sgd_cfg = sgd_config();
    hprintln!(
        "-- fine-tuning: {} device steps per run, 1 env x 32 steps per update, seeds {:?}",
        DEVICE_STEPS,
        SEEDS
    );
    hprintln!(
        "ACKTR: kl_clip {}, cold_iters {}, inverse_every {}, stat_stride {}; SGD: lr {}, momentum {} (both value_coef {})",
        acktr_cfg.kl_clip,
        acktr_cfg.cold_iters,
        acktr_cfg.inverse_every,
        acktr_cfg.stat_stride,
        sgd_cfg.eta_max,
        sgd_cfg.momentum,
        acktr_cfg.value_coef
    );
    let mut acktr = TuneCosts::default();
    let mut sgd = TuneCosts::default();
    let mut acktr_curves = [[0.0f32; CHECKPOINTS + 1]; SEEDS.len()];
    let mut sgd_curves = acktr_curves;
    for (i, &seed) in SEEDS.iter().enumerate() {
        let learner = arena.learner(acktr_cfg)?;
        acktr_curves[i] = fine_tune(learner, batch, plant, seed, before, &mut acktr)?;
        hprintln!("ACKTR seed {}: {:>6.1}", seed, Row(&acktr_curves[i]));
        let learner = arena.learner(sgd_cfg)?;
        sgd_curves[i] = fine_tune(learner, batch, plant, seed, before, &mut sgd)?;
        hprintln!("SGD   seed {}: {:>6.1}", seed, Row(&sgd_curves[i]));
    }
    let tuning_stack = stack_mark();

    // 4. Whole updates from the nominal policy with inverse_every 1 and 10 (the same batches),
    // then the replica on the batches of the second: same weights, pieces timed.
    let (every_1, _) = time_updates(
        arena.learner(Config {
            inverse_every: 1,
            ..acktr_cfg
        })?,
        batch,
        plant,
    )?;
    let (every_10, weights) = time_updates(arena.learner(acktr_cfg)?, batch, plant)?;
    let pieces = time_replica(arena.replica()?, &acktr_cfg, batch, plant, &weights)?;
    let marks = StackMarks {
        check: check_stack,
        tuning: tuning_stack,
        costs: stack_mark(),
    };

    // 5. Report.
    let n = COST_UPDATES as u64;
    let acktr_update = acktr.update.mean();
    let sgd_update = sgd.update.mean();
    hprintln!("== costs, instructions (QEMU -icount shift=0: 1 instruction = 1 virtual ns)");
    hprintln!(
        "inference, act_deterministic           {:>9}",
        act_det_1000 / 1000
    );
    hprintln!(
        "inference, act (sampling)              {:>9}",
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
        "ACKTR update, fine-tuning runs         {:>9}  (mean of {}, inverse_every {})",
        acktr_update,
        acktr.update.count,
        acktr_cfg.inverse_every
    );
    hprintln!(
        "SGD update, fine-tuning runs           {:>9}  (mean of {}): ACKTR costs {}x an SGD update",
        sgd_update,
        sgd.update.count,
        Fixed1(acktr_update as f32 / sgd_update.max(1) as f32)
    );
    hprintln!(
        "ACKTR update, inverse_every 1          {:>9}  (mean of {} from the nominal policy)",
        every_1.mean(),
        every_1.count
    );
    hprintln!(
        "ACKTR update, inverse_every 10         {:>9}  (mean of {}, the same batches): {}% less",
        every_10.mean(),
        every_10.count,
        Fixed1(100.0 - percent(every_10.mean(), every_1.mean()))
    );
    hprintln!(
        "the update in pieces: a replica of Learner::update from the core's public parts, on the batches of the inverse_every 10 line, weights bit for bit the same after each of its {} updates; mean per update:",
        COST_UPDATES
    );
    let whole = pieces.whole / n;
    let rows: [(&str, u64); 10] = [
        ("checks (validate, finiteness, grad norm)", pieces.checks),
        ("forward x32 (forward_block x8)", pieces.forward),
        ("heads: loss + Fisher output grads x32", pieces.heads),
        (
            "Fisher backward (backward_block x8)",
            pieces.fisher_backward,
        ),
        ("loss backward (backward_block x8)", pieces.loss_backward),
        ("gradient: accumulate_block x8, 1/B", pieces.gradient),
        ("factor statistics: scale, observe x8", pieces.statistics),
        ("inverse: factorize (LDL^T), amortised", pieces.factorize),
        ("preconditioning", pieces.precondition),
        ("step: trust region, momentum, weights", pieces.step),
    ];
    for (name, total) in rows {
        hprintln!(
            "  {:<40} {:>9}  {:>5}%",
            name,
            total / n,
            Fixed1(percent(total, pieces.whole))
        );
    }
    hprintln!(
        "  {:<40} {:>9}  (the pieces' sum: the laps are contiguous)",
        "replica, whole",
        whole
    );
    hprintln!(
        "  inverse per factorization: {} ({} of {} updates factorized); Learner::update on the same batches: {}, the replica {} more (its clock reads)",
        pieces.factorize / u64::from(pieces.factorizations.max(1)),
        pieces.factorizations,
        COST_UPDATES,
        every_10.mean(),
        whole as i64 - every_10.mean() as i64
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
    let stack = marks.max();
    hprintln!("== memory, bytes");
    hprintln!(
        "flash {} of {} ({}%; the policy file {}); static RAM {} (arena {} = the learner {}; rollout {})",
        mem.flash,
        FLASH_BUDGET,
        Fixed1(percent(mem.flash as u64, FLASH_BUDGET as u64)),
        POLICY.len(),
        mem.static_ram,
        core::mem::size_of::<Arena>(),
        core::mem::size_of::<Learn>(),
        core::mem::size_of::<Batch>()
    );
    hprintln!(
        "stack high-water mark: {} for the whole run (policy checks {}, fine-tuning {}, cost section {}; of {} available)",
        stack,
        marks.check,
        marks.tuning,
        marks.costs,
        mem.stack_capacity
    );
    // Sizes are compile-time constants: printing them instantiates no code of these nets.
    hprintln!(
        "learner bytes on this target (weights, gradient, momentum, K-FAC factors and their LDL^T): 4-16-16 shared {}, 4-32-32 shared {}, 4-32-32 separate {}, 4-64-64 shared {}, 4-64-64 separate {}",
        core::mem::size_of::<Learner<4, 16, 2, 1>>(),
        core::mem::size_of::<Learner<4, 32, 2, 1>>(),
        core::mem::size_of::<Learner<4, 32, 2, 2>>(),
        core::mem::size_of::<Learner<4, 64, 2, 1>>(),
        core::mem::size_of::<Learner<4, 64, 2, 2>>()
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

    // 6. Verdict.
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
    let adapted = if before + MIN_GAIN > SOLVED {
        let kept = after >= SOLVED;
        hprintln!(
            "goal (a): the nominal policy already returns {} on the changed plant (within {} of solved, {}): ACKTR's mean after {} steps, {}, must stay >= {}: {}; SGD's: {}",
            before,
            MIN_GAIN,
            SOLVED,
            DEVICE_STEPS,
            after,
            SOLVED,
            if kept { "met" } else { "MISSED" },
            sgd_mean[CHECKPOINTS]
        );
        kept
    } else {
        let gained = after >= before + MIN_GAIN && after >= MIN_RATIO * before;
        hprintln!(
            "goal (a): ACKTR's mean after {} steps, {}, must be >= {} (nominal policy {} + {}) and >= {} ({} x): {}; SGD's: {}",
            DEVICE_STEPS,
            after,
            before + MIN_GAIN,
            before,
            MIN_GAIN,
            MIN_RATIO * before,
            MIN_RATIO,
            if gained { "met" } else { "MISSED" },
            sgd_mean[CHECKPOINTS]
        );
        gained
    };
    let pass = adapted && update_met && ram_met;
    hprintln!(
        "{}: adaptation {}, update cost {}, RAM {}",
        if pass { "PASS" } else { "FAIL" },
        if adapted { "met" } else { "MISSED" },
        if update_met { "met" } else { "MISSED" },
        if ram_met { "met" } else { "MISSED" }
    );
    Ok(pass)
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
        let (r, cost) = clock::measure(|| learner.update(batch, &mut rng));
        r?;
        costs.update.add(cost);
        let steps = runner.env_steps();
        if steps % CHECKPOINT == 0 {
            curve[(steps / CHECKPOINT) as usize] = eval(&learner.net, params)?.0;
        }
    }
    Ok(curve)
}

/// [`COST_UPDATES`] whole `Learner::update`s of `learner` on `params` from [`COST_SEED`]: their
/// cost, and the weights' fingerprint after each.
fn time_updates(
    learner: &mut Learn,
    batch: &mut Batch,
    params: CartPoleParams,
) -> Result<(Tally, [u32; COST_UPDATES]), Failure> {
    let cfg = *learner.config();
    let mut envs = [CartPole::new(params)];
    let mut runner = Runner::new(&mut envs, COST_SEED);
    let mut rng = Pcg64::from_seed(COST_SEED);
    let mut t = Tally::new();
    let mut weights = [0u32; COST_UPDATES];
    for w in weights.iter_mut() {
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
        *w = fingerprint(&learner.net);
    }
    Ok((t, weights))
}

/// Instructions per piece of the update, summed over the replica's updates.
#[derive(Default)]
struct Pieces {
    checks: u64,
    forward: u64,
    heads: u64,
    fisher_backward: u64,
    loss_backward: u64,
    gradient: u64,
    statistics: u64,
    factorize: u64,
    factorizations: u32,
    precondition: u64,
    step: u64,
    /// The replica's whole updates (= the sum of the pieces).
    whole: u64,
}

/// A stopwatch whose laps are contiguous: every instruction between two splits goes to the
/// piece named at the second, so the pieces add up to the whole.
struct Lap(u64);

impl Lap {
    fn start() -> Self {
        Lap(clock::ticks())
    }

    #[inline(always)]
    fn split(&mut self, piece: &mut u64) {
        let now = clock::ticks();
        *piece += clock::instructions(now - self.0);
        self.0 = now;
    }
}

/// Run [`COST_UPDATES`] replica updates on the batches [`time_updates`] saw (same seeds, and
/// the replica's network acts as the learner's did as long as their weights agree), checking
/// the weights against `weights` after each.
fn time_replica(
    r: &mut Replica,
    cfg: &Config,
    batch: &mut Batch,
    params: CartPoleParams,
    weights: &[u32; COST_UPDATES],
) -> Result<Pieces, Failure> {
    let mut envs = [CartPole::new(params)];
    let mut runner = Runner::new(&mut envs, COST_SEED);
    let mut rng = Pcg64::from_seed(COST_SEED);
    let mut p = Pieces::default();
    for (k, &w) in weights.iter().enumerate() {
        runner.collect(
            &r.net,
            &mut envs,
            batch,
            cfg.gamma,
            cfg.gae_lambda,
            &mut rng,
            |_| {},
        )?;
        replica_update(r, cfg, batch.steps().as_flattened(), &mut rng, &mut p)?;
        if fingerprint(&r.net) != w {
            return Err(Failure::ReplicaDiverged(k + 1));
        }
    }
    Ok(p)
}

/// Samples per block, as `Learner::update` takes them.
const BLOCK: usize = Learn::BLOCK;

/// `Learner::update` (a natural step of a categorical net, `stat_stride` 1: what the demo
/// runs) spelled out with the core's public parts in the same order, so that every float
/// operation is the same and the weights come out bit for bit the same, with a lap of the
/// clock between the pieces. The blocks are full ones: 32 samples, [`BLOCK`] at a time.
#[inline(never)]
fn replica_update(
    r: &mut Replica,
    cfg: &Config,
    steps: &[Step<4, 2>],
    rng: &mut Pcg64,
    p: &mut Pieces,
) -> Result<(), Failure> {
    const { assert!(32 % BLOCK == 0) };
    if cfg.optimizer != Optimizer::Acktr
        || r.updates < cfg.cold_iters
        || cfg.stat_stride != 1
        || r.net.head != HeadKind::Categorical
        || steps.len() % BLOCK != 0
    {
        return Err(Failure::ReplicaUnsupported);
    }
    let mut lap = Lap::start();
    let t0 = lap.0;
    cfg.validate()?;
    if steps.is_empty() {
        return Err(Error::UpdateEmptyRollout.into());
    }
    if !steps.iter().all(|s| s.is_finite()) {
        return Err(Error::UpdateNonFiniteInput.into());
    }
    let inv_b = 1.0 / steps.len() as f32;
    let k = r.updates as f32;
    let rho = cfg.stat_decay.min(k / (k + 1.0));
    lap.split(&mut p.checks);
    r.curvature.scale(rho);
    let w_stat = (1.0 - rho) * inv_b;
    lap.split(&mut p.statistics);
    r.grad.map_mut(|g| *g = 0.0);
    lap.split(&mut p.gradient);

    // The blocks: forward, the heads' gradients, the two backward passes, then one rank-BLOCK
    // update each of the gradient and the statistics.
    let mut fb = ForwardBlock::<4, 32, 2, 1, BLOCK>::zeros();
    let mut bb = BackwardBlock::<32, 2, 1, BLOCK>::zeros();
    let mut fs = [Forward::zeros(); BLOCK];
    let mut fgs = [Backward::zeros(); BLOCK];
    let (mut gz_loss, mut gz_fisher) = ([[0.0f32; BLOCK]; 2], [[0.0f32; BLOCK]; 2]);
    let (mut gv_loss, mut gv_fisher) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    let mut losses = [0.0f32; 3];
    for block in steps.chunks_exact(BLOCK) {
        for (b, s) in block.iter().enumerate() {
            fb.set_obs(b, &s.obs);
        }
        r.net.forward_block(&mut fb);
        lap.split(&mut p.forward);
        for (b, s) in block.iter().enumerate() {
            let z = fb.z_of(b);
            let v = fb.v[0][b];
            let mut gz = [0.0; 2];
            let (logp, ent) = r.net.head.loss_grad(
                &z,
                &r.net.log_std,
                &s.action,
                s.advantage,
                cfg.entropy_coef,
                &mut gz,
                &mut r.grad.log_std,
            );
            for (row, g) in gz_loss.iter_mut().zip(gz) {
                row[b] = g;
            }
            gv_loss[b] = 2.0 * cfg.value_coef * (v - s.ret);
            losses[0] -= s.advantage * logp;
            losses[1] += (s.ret - v) * (s.ret - v);
            losses[2] += ent;
            r.net.head.fisher_grad(&z, &r.net.log_std, rng, &mut gz);
            for (row, g) in gz_fisher.iter_mut().zip(gz) {
                row[b] = g;
            }
            gv_fisher[b] = -cfg.vf_fisher_coef * standard_normal(rng);
        }
        lap.split(&mut p.heads);
        fb.unpack(&mut fs);
        lap.split(&mut p.forward);
        r.net.backward_block(&fb, &gz_fisher, &gv_fisher, &mut bb);
        bb.unpack(&mut fgs);
        lap.split(&mut p.fisher_backward);
        r.net.backward_block(&fb, &gz_loss, &gv_loss, &mut bb);
        lap.split(&mut p.loss_backward);
        r.grad.accumulate_block(&fs, &bb);
        lap.split(&mut p.gradient);
        r.curvature.observe_chunk(&fs, &fgs, w_stat);
        lap.split(&mut p.statistics);
    }
    black_box(losses);
    let (wd, net) = (cfg.weight_decay, &r.net);
    r.grad.zip_mut(net, |g, w| *g = *g * inv_b + wd * w);
    lap.split(&mut p.gradient);

    if !r.curvature.is_finite() {
        // As the learner, start the statistics afresh; in place (a new `Curvature` would be a
        // curvature-sized temporary on the stack).
        r.curvature
            .visit_mut(|s| s.iter_mut().for_each(|v| *v = 0.0));
        r.curvature.set_factorized(false);
        return Err(Error::UpdateNonFiniteCurvature.into());
    }
    if !r.grad.is_finite() {
        return Err(Error::UpdateNonFiniteGradient.into());
    }
    black_box(libm::sqrtf(r.grad.fold_with(&r.grad, |a, _| a * a)));
    lap.split(&mut p.checks);

    let since = r.updates - cfg.cold_iters;
    if !r.curvature.is_factorized() || since % cfg.inverse_every == 0 {
        r.curvature.factorize(cfg.damping)?;
        p.factorizations += 1;
    }
    lap.split(&mut p.factorize);
    let q = r.curvature.precondition(&mut r.grad)?;
    lap.split(&mut p.precondition);
    if !r.grad.is_finite() {
        return Err(Error::UpdateNonFiniteGradient.into());
    }
    lap.split(&mut p.checks);
    let eta = trust_region::step_size(q, cfg.eta_max, cfg.kl_clip)?;
    let m = cfg.momentum;
    let (net, dir, state) = (&mut r.net, &r.grad, &mut r.velocity);
    net.zip3_mut(dir, state, |w, d, u| {
        *u = m * *u + (1.0 - m) * eta * d;
        *w -= *u;
    });
    r.updates += 1;
    lap.split(&mut p.step);
    p.whole += clock::instructions(lap.0 - t0);
    Ok(())
}
