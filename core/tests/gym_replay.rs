//! Replays trajectories recorded from Gymnasium (`tests/gym/record.py`, data in
//! `tests/data/gym/`) through the `no_std` environments.
//!
//! Two modes:
//!
//! * **Strict** (`GlibcMath`: `sin`, `cos`, `pow` from this process's C library, the functions
//!   numpy called): every block starts with `reset(Some(seed))`, replays the recorded actions
//!   on its own trajectory (no state is ever copied from the recording), resets without a seed
//!   after each episode, and demands every state, observation, reward (f64 and f32),
//!   `terminated` and `truncated` **bit for bit**: tolerance 0 everywhere. It runs when the
//!   C library reproduces numpy's recorded `sin`/`cos`/`x**2` probes (`libm_probe.txt`): the
//!   recordings were made on x86-64 glibc 2.36 with FMA; elsewhere it says so and skips, unless
//!   `ACKTR_REQUIRE_STRICT=1` is set, which turns the skip into a failure (CI sets it).
//! * **Portable** (`LibmMath`, the default of the crate, what a device runs): the same replay,
//!   but the recorded state is loaded before every step, because `libm`'s `sin`/`cos` differ
//!   from glibc's in the last bit for ~1–3 % of arguments, glibc's `pow(x, 2.0)` differs from
//!   the correctly rounded `x·x` for ~0.08 % and its `powf(u, 2.0)` from `u·u` for ~0.07 % (see
//!   `core/src/env/math.rs`), and the dynamics are chaotic: one ulp would grow over a long
//!   trajectory. Seeding involves no libm at all, so every reset state and reset observation
//!   (seeded or not) must still match bit for bit; the flags and the float32 observations and
//!   rewards must match exactly; only the float64 state and the float64 reward get a
//!   tolerance (`PORTABLE_*` below), for exactly the libm reason above.
//!
//! Regenerate the recordings with `tests/gym/record.py` (commands in `docs/environments.md`).
#![cfg(feature = "envs")]

use std::hint::black_box;

use acktr_core::env::{
    Acrobot, Action, CartPole, CartPoleParams, Env, LibmMath, Math, MountainCarContinuous,
    MountainCarState, Pendulum, PendulumParams, Transition,
};

// --------------------------------------------------------------------------------------------
// The C library's functions, as numpy calls them.

/// `sin`/`cos`/`pow` of the platform C library (Rust's `f64::sin` is the C `sin`). `pow` goes
/// through `black_box` so that LLVM cannot rewrite `pow(x, 2.0)` into `x*x`.
struct GlibcMath;

impl Math for GlibcMath {
    fn sin(x: f64) -> f64 {
        black_box(x).sin()
    }
    fn cos(x: f64) -> f64 {
        black_box(x).cos()
    }
    fn pow2(x: f64) -> f64 {
        black_box(x).powf(black_box(2.0))
    }
    fn powf2(x: f32) -> f32 {
        black_box(x).powf(black_box(2.0))
    }
}

// --------------------------------------------------------------------------------------------
// Recordings.

macro_rules! data {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/gym/",
            $name
        ))
    };
}

/// A recorded float with the dtype Gymnasium held it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    F64(u64),
    F32(u32),
}

impl Word {
    fn parse(s: &str) -> Word {
        match s.len() {
            16 => Word::F64(u64::from_str_radix(s, 16).expect("f64 hex")),
            8 => Word::F32(u32::from_str_radix(s, 16).expect("f32 hex")),
            _ => panic!("bad float word {s:?}"),
        }
    }
    fn value(self) -> f64 {
        match self {
            Word::F64(b) => f64::from_bits(b),
            Word::F32(b) => f64::from(f32::from_bits(b)),
        }
    }
    /// The observation Gymnasium derives from it: the float32 cast.
    fn obs_bits(self) -> u32 {
        match self {
            Word::F64(b) => (f64::from_bits(b) as f32).to_bits(),
            Word::F32(b) => b,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Discrete(usize),
    Continuous(f32),
}

#[derive(Debug)]
enum Rec {
    /// The recorder overwrote the state (corner cases); the replay loads it too.
    Set {
        state: Vec<Word>,
    },
    Reset {
        state: Vec<Word>,
        obs: Vec<u32>,
    },
    Step {
        action: Act,
        state: Vec<Word>,
        obs: Vec<u32>,
        reward: f64,
        terminated: bool,
        truncated: bool,
    },
}

#[derive(Debug)]
struct Block {
    seed: u64,
    policy: String,
    recs: Vec<Rec>,
}

#[derive(Debug)]
struct Recording {
    id: String,
    max_steps: u32,
    blocks: Vec<Block>,
}

/// Parses a recording with `n_state` state words and `n_obs` observation words per record
/// (`obs_recorded == false`: the observation is the f32 cast of the state).
fn parse(text: &str, n_state: usize, obs_recorded: bool) -> Recording {
    let mut rec = Recording {
        id: String::new(),
        max_steps: 0,
        blocks: Vec::new(),
    };
    let state_obs = |f: &[&str]| -> (Vec<Word>, Vec<u32>) {
        let state: Vec<Word> = f[..n_state].iter().map(|s| Word::parse(s)).collect();
        let obs: Vec<u32> = if obs_recorded {
            f[n_state..]
                .iter()
                .map(|s| u32::from_str_radix(s, 16).expect("obs hex"))
                .collect()
        } else {
            assert_eq!(f.len(), n_state, "unexpected obs words");
            state.iter().map(|w| w.obs_bits()).collect()
        };
        (state, obs)
    };
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "env" => {
                rec.id = f[1].to_string();
                rec.max_steps = f[2].parse().unwrap();
            }
            "block" => rec.blocks.push(Block {
                seed: f[1].parse().unwrap(),
                policy: f[2].to_string(),
                recs: Vec::new(),
            }),
            "S" => {
                let state = f[1..].iter().map(|s| Word::parse(s)).collect();
                rec.blocks.last_mut().unwrap().recs.push(Rec::Set { state });
            }
            "R" => {
                let (state, obs) = state_obs(&f[1..]);
                rec.blocks
                    .last_mut()
                    .unwrap()
                    .recs
                    .push(Rec::Reset { state, obs });
            }
            _ => {
                let action = if f[0].len() == 8 {
                    Act::Continuous(f32::from_bits(u32::from_str_radix(f[0], 16).unwrap()))
                } else {
                    Act::Discrete(f[0].parse().unwrap())
                };
                let n = f.len();
                let (state, obs) = state_obs(&f[1..n - 2]);
                let reward: f64 = f[n - 2].parse().unwrap();
                let flags: u8 = f[n - 1].parse().unwrap();
                rec.blocks.last_mut().unwrap().recs.push(Rec::Step {
                    action,
                    state,
                    obs,
                    reward,
                    terminated: flags & 1 != 0,
                    truncated: flags & 2 != 0,
                });
            }
        }
    }
    assert!(!rec.blocks.is_empty());
    rec
}

// --------------------------------------------------------------------------------------------
// What the test needs from each environment beyond `Env`.

trait Replay<const OBS: usize>: Env<OBS> {
    /// The internal state as recorded words (value and dtype).
    fn words(&self) -> Vec<Word>;
    /// Load a recorded state.
    fn load(&mut self, state: &[Word]);
    /// The last step's reward in full precision.
    fn reward64(&self) -> f64;
}

impl<M: Math> Replay<4> for CartPole<M> {
    fn words(&self) -> Vec<Word> {
        self.state()
            .iter()
            .map(|v| Word::F64(v.to_bits()))
            .collect()
    }
    fn load(&mut self, s: &[Word]) {
        self.set_state([s[0].value(), s[1].value(), s[2].value(), s[3].value()]);
    }
    fn reward64(&self) -> f64 {
        self.last_reward()
    }
}

impl<M: Math> Replay<3> for Pendulum<M> {
    fn words(&self) -> Vec<Word> {
        self.state()
            .iter()
            .map(|v| Word::F64(v.to_bits()))
            .collect()
    }
    fn load(&mut self, s: &[Word]) {
        self.set_state([s[0].value(), s[1].value()]);
    }
    fn reward64(&self) -> f64 {
        self.last_reward()
    }
}

impl<M: Math> Replay<6> for Acrobot<M> {
    /// float32 right after a reset (`.astype(np.float32)`), float64 after a step.
    fn words(&self) -> Vec<Word> {
        let s = self.state();
        if self.elapsed_steps() == 0 {
            s.iter()
                .map(|&v| {
                    assert_eq!(f64::from(v as f32), v, "reset state must be float32");
                    Word::F32((v as f32).to_bits())
                })
                .collect()
        } else {
            s.iter().map(|v| Word::F64(v.to_bits())).collect()
        }
    }
    fn load(&mut self, s: &[Word]) {
        self.set_state([s[0].value(), s[1].value(), s[2].value(), s[3].value()]);
    }
    fn reward64(&self) -> f64 {
        0.0 // checked through the f32 reward: -1.0 or 0.0, exact in f32
    }
}

impl<M: Math> Replay<2> for MountainCarContinuous<M> {
    fn words(&self) -> Vec<Word> {
        match self.state() {
            MountainCarState::Reset { position, velocity } => {
                vec![Word::F64(position.to_bits()), Word::F64(velocity.to_bits())]
            }
            MountainCarState::Stepped { position, velocity } => {
                vec![Word::F32(position.to_bits()), Word::F32(velocity.to_bits())]
            }
        }
    }
    fn load(&mut self, s: &[Word]) {
        self.set_state(match (s[0], s[1]) {
            (Word::F32(p), Word::F32(v)) => MountainCarState::Stepped {
                position: f32::from_bits(p),
                velocity: f32::from_bits(v),
            },
            (p, v) => MountainCarState::Reset {
                position: p.value(),
                velocity: v.value(),
            },
        });
    }
    fn reward64(&self) -> f64 {
        self.last_reward()
    }
}

// --------------------------------------------------------------------------------------------
// Replay.

/// Distance in units in the last place between two floats of the same dtype.
fn ulps(a: Word, b: Word) -> u64 {
    fn ord64(x: u64) -> i128 {
        if x >> 63 == 1 {
            -((x & !(1 << 63)) as i128)
        } else {
            x as i128
        }
    }
    match (a, b) {
        (Word::F64(x), Word::F64(y)) => (ord64(x) - ord64(y)).unsigned_abs() as u64,
        (Word::F32(x), Word::F32(y)) => {
            (ord64(f64::from(f32::from_bits(x)).to_bits())
                - ord64(f64::from(f32::from_bits(y)).to_bits()))
            .unsigned_abs() as u64
                >> 29
        }
        _ => u64::MAX,
    }
}

#[derive(Default, Debug)]
struct Stats {
    steps: usize,
    resets: usize,
    /// Steps whose state was not bit-identical (portable mode only).
    inexact_states: usize,
    max_state_ulps: u64,
    max_state_abs: f64,
    /// Observation components that were not bit-identical (portable mode only).
    inexact_obs: usize,
    max_obs_ulps: u64,
    max_reward32_ulps: u64,
    max_reward_rel: f64,
}

/// Portable-mode tolerances (libm vs glibc `sin`/`cos`/`pow`/`powf`, see the module docs).
///
/// * A float64 state component may differ by `PORTABLE_STATE_TOL · max(1, |x|)`: the one-ulp
///   differences of `sin`/`cos` (and of glibc's `pow(x, 2.0)` vs `x·x`) enter the accelerations
///   and, through cancellations (`g·sin θ − cos θ·temp`, RK4's stage sums), reach a few ulps of
///   O(1) values (observed on the recordings: at most 1.8e-15 absolute, Acrobot).
/// * The float64 Pendulum reward contains the float32 term `0.001·u**2`, where numpy's float32
///   `u**2` is glibc's `powf`, not always the correctly rounded `u·u` (1 float32 ulp off for
///   ~0.07 % of `u`): relative `2⁻²²` bounds that term's effect on the reward (observed 6e-11).
/// * Observations (float32), float32 rewards, flags and every reset are compared exactly: a
///   1e-15 change of an f64 value flips its float32 rounding with probability ~1e-8 per value,
///   and the recordings are fixed data, so this either always passes or never does.
const PORTABLE_STATE_TOL: f64 = 1e-14;
const PORTABLE_REWARD_REL: f64 = 2.384_185_791_015_625e-7; // 2^-22

fn replay<const OBS: usize, E: Replay<OBS>>(
    rec: &Recording,
    mut make: impl FnMut() -> E,
    strict: bool,
) -> Stats {
    let mut st = Stats::default();
    for block in &rec.blocks {
        let mut env = make();
        let ctx = |i: usize| {
            format!(
                "{} seed {} ({}) record {i}",
                rec.id, block.seed, block.policy
            )
        };
        let mut prev_state: Option<&[Word]> = None;
        for (i, r) in block.recs.iter().enumerate() {
            match r {
                Rec::Set { state } => {
                    env.load(state);
                    prev_state = Some(state);
                }
                Rec::Reset { state, obs } => {
                    let seed = if i == 0 { Some(block.seed) } else { None };
                    let got = env.reset(seed);
                    assert_eq!(&env.words(), state, "{}: reset state", ctx(i));
                    let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(&got, obs, "{}: reset obs", ctx(i));
                    st.resets += 1;
                    prev_state = Some(state);
                }
                Rec::Step {
                    action,
                    state,
                    obs,
                    reward,
                    terminated,
                    truncated,
                } => {
                    if !strict {
                        env.load(prev_state.expect("step before reset"));
                    }
                    let a = match action {
                        Act::Discrete(i) => [*i as f32],
                        Act::Continuous(u) => [*u],
                    };
                    let action = match action {
                        Act::Discrete(i) => Action::Discrete(*i),
                        Act::Continuous(_) => Action::Continuous(&a),
                    };
                    let t: Transition<OBS> = env
                        .step(action)
                        .unwrap_or_else(|e| panic!("{}: step failed: {e}", ctx(i)));
                    let got_obs: Vec<u32> = t.obs.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(t.terminated, *terminated, "{}: terminated", ctx(i));
                    assert_eq!(t.truncated, *truncated, "{}: truncated", ctx(i));
                    let got_state = env.words();
                    let reward64 = if rec.id.starts_with("Acrobot") {
                        *reward // Acrobot's reward is the constant -1.0 or 0.0: see the f32 check
                    } else {
                        env.reward64()
                    };
                    if strict {
                        assert_eq!(&got_obs, obs, "{}: obs", ctx(i));
                        assert_eq!(
                            t.reward.to_bits(),
                            (*reward as f32).to_bits(),
                            "{}: f32 reward",
                            ctx(i)
                        );
                        assert_eq!(
                            reward64.to_bits(),
                            reward.to_bits(),
                            "{}: f64 reward",
                            ctx(i)
                        );
                        assert_eq!(&got_state, state, "{}: state", ctx(i));
                    } else {
                        let mut exact = true;
                        for (g, w) in got_state.iter().zip(state) {
                            let u = ulps(*g, *w);
                            let abs = (g.value() - w.value()).abs();
                            exact &= u == 0;
                            st.max_state_ulps = st.max_state_ulps.max(u);
                            st.max_state_abs = st.max_state_abs.max(abs);
                            assert!(
                                abs <= PORTABLE_STATE_TOL * w.value().abs().max(1.0),
                                "{}: state {g:?} vs {w:?} ({u} ulps, {abs:e})",
                                ctx(i)
                            );
                        }
                        st.inexact_states += usize::from(!exact);
                        for (g, w) in got_obs.iter().zip(obs) {
                            let u = ulps(Word::F32(*g), Word::F32(*w));
                            st.max_obs_ulps = st.max_obs_ulps.max(u);
                            st.inexact_obs += usize::from(u != 0);
                            assert!(u == 0, "{}: obs {u} ulps", ctx(i));
                        }
                        let u = ulps(
                            Word::F32(t.reward.to_bits()),
                            Word::F32((*reward as f32).to_bits()),
                        );
                        st.max_reward32_ulps = st.max_reward32_ulps.max(u);
                        assert!(u == 0, "{}: f32 reward {u} ulps", ctx(i));
                        let rel = (reward64 - reward).abs() / reward.abs().max(f64::MIN_POSITIVE);
                        st.max_reward_rel = st.max_reward_rel.max(rel);
                        assert!(
                            rel <= PORTABLE_REWARD_REL,
                            "{}: f64 reward {reward64:e} vs {reward:e}",
                            ctx(i)
                        );
                    }
                    st.steps += 1;
                    prev_state = Some(state);
                }
            }
        }
    }
    st
}

// --------------------------------------------------------------------------------------------
// The C library check.

/// Whether this process's C library gives numpy's recorded `sin`, `cos` and `x**2` bits.
fn c_library_matches_numpy() -> bool {
    let mut bad = 0;
    let mut n = 0;
    for line in data!("libm_probe.txt").lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let w: Vec<f64> = line
            .split(' ')
            .map(|s| f64::from_bits(u64::from_str_radix(s, 16).unwrap()))
            .collect();
        let (x, s, c, p) = (w[0], w[1], w[2], w[3]);
        let (s2, c2) = GlibcMath::sin_cos(x);
        let ok = GlibcMath::sin(x).to_bits() == s.to_bits()
            && GlibcMath::cos(x).to_bits() == c.to_bits()
            && s2.to_bits() == s.to_bits()
            && c2.to_bits() == c.to_bits()
            && GlibcMath::pow2(x).to_bits() == p.to_bits();
        bad += usize::from(!ok);
        n += 1;
    }
    assert!(n >= 500);
    if bad > 0 {
        eprintln!(
            "NOTE: this C library differs from the recording machine's on {bad}/{n} sin/cos/pow \
             probes: the strict (bit-exact) replay is skipped; the portable replay still runs."
        );
    }
    bad == 0
}

/// Set to `1` (CI on the recording platform, x86-64 glibc) to make a C library that fails the
/// probes an error instead of a skip, so the strict replay cannot silently stop running.
const REQUIRE_STRICT: &str = "ACKTR_REQUIRE_STRICT";

/// Whether the strict replay runs: the C library must match the probes. A mismatch skips it,
/// or fails the test under `ACKTR_REQUIRE_STRICT=1`.
fn strict_enabled() -> bool {
    let required = strict_required();
    let ok = c_library_matches_numpy();
    if !ok {
        assert!(
            !required,
            "{REQUIRE_STRICT}=1 but this C library fails the sin/cos/pow probes (see NOTE \
             above): the strict (bit-exact) replay cannot run here"
        );
        eprintln!("strict replay skipped (see NOTE above; {REQUIRE_STRICT}=1 makes this fail)");
    }
    ok
}

/// `ACKTR_REQUIRE_STRICT` is set to `1`; any other value is refused, so that a typo in CI
/// (`true`, `yes`) cannot quietly turn the requirement off.
fn strict_required() -> bool {
    match std::env::var(REQUIRE_STRICT) {
        Err(std::env::VarError::NotPresent) => false,
        Ok(v) if v == "1" => true,
        Ok(v) if v == "0" || v.is_empty() => false,
        other => panic!("{REQUIRE_STRICT} must be 1 or 0, got {other:?}"),
    }
}

fn report(name: &str, mode: &str, st: &Stats) {
    eprintln!("{name} {mode}: {st:?}");
}

// --------------------------------------------------------------------------------------------
// Tests.

fn cartpole() -> Recording {
    parse(data!("cartpole.txt"), 4, false)
}
fn pendulum() -> Recording {
    parse(data!("pendulum.txt"), 2, true)
}
fn acrobot() -> Recording {
    parse(data!("acrobot.txt"), 4, true)
}
fn mountain_car() -> Recording {
    parse(data!("mountain_car_continuous.txt"), 2, false)
}

fn check_coverage(rec: &Recording, want_terminated: bool) {
    let mut seeds = 0;
    let (mut term, mut trunc, mut steps) = (0, 0, 0);
    for b in &rec.blocks {
        seeds += usize::from(b.policy == "random");
        for r in &b.recs {
            if let Rec::Step {
                terminated,
                truncated,
                ..
            } = r
            {
                term += usize::from(*terminated);
                trunc += usize::from(*truncated);
                steps += 1;
            }
        }
    }
    assert!(seeds >= 5, "{}: {seeds} random seeds", rec.id);
    assert!(steps >= 10_000, "{}: {steps} steps", rec.id);
    assert!(trunc > 0, "{}: no truncation recorded", rec.id);
    assert_eq!(want_terminated, term > 0, "{}: terminations", rec.id);
}

#[test]
fn recordings_cover_the_corners() {
    let r = cartpole();
    assert_eq!((r.id.as_str(), r.max_steps), ("CartPole-v1", 500));
    check_coverage(&r, true);
    let r = pendulum();
    assert_eq!((r.id.as_str(), r.max_steps), ("Pendulum-v1", 200));
    check_coverage(&r, false);
    let r = acrobot();
    assert_eq!((r.id.as_str(), r.max_steps), ("Acrobot-v1", 500));
    check_coverage(&r, true);
    let r = mountain_car();
    assert_eq!(
        (r.id.as_str(), r.max_steps),
        ("MountainCarContinuous-v0", 999)
    );
    check_coverage(&r, true);
}

#[test]
fn cartpole_strict() {
    if !strict_enabled() {
        return;
    }
    let st = replay(
        &cartpole(),
        || CartPole::<GlibcMath>::with_math(CartPoleParams::default()),
        true,
    );
    report("CartPole-v1", "strict", &st);
}

#[test]
fn cartpole_portable() {
    let st = replay(&cartpole(), CartPole::default, false);
    report("CartPole-v1", "portable", &st);
}

#[test]
fn pendulum_strict() {
    if !strict_enabled() {
        return;
    }
    let st = replay(
        &pendulum(),
        || Pendulum::<GlibcMath>::with_math(PendulumParams::default()),
        true,
    );
    report("Pendulum-v1", "strict", &st);
}

#[test]
fn pendulum_portable() {
    let st = replay(&pendulum(), Pendulum::default, false);
    report("Pendulum-v1", "portable", &st);
}

#[test]
fn acrobot_strict() {
    if !strict_enabled() {
        return;
    }
    let st = replay(&acrobot(), Acrobot::<GlibcMath>::with_math, true);
    report("Acrobot-v1", "strict", &st);
}

#[test]
fn acrobot_portable() {
    let st = replay(&acrobot(), Acrobot::default, false);
    report("Acrobot-v1", "portable", &st);
}

#[test]
fn mountain_car_strict() {
    if !strict_enabled() {
        return;
    }
    let st = replay(
        &mountain_car(),
        MountainCarContinuous::<GlibcMath>::with_math,
        true,
    );
    report("MountainCarContinuous-v0", "strict", &st);
}

#[test]
fn mountain_car_portable() {
    let st = replay(&mountain_car(), MountainCarContinuous::default, false);
    report("MountainCarContinuous-v0", "portable", &st);
}

/// The portable math differs from numpy's (the C library's) `sin`, `cos` and `x**2` by at most
/// one ulp, and does differ: the claim behind the portable tolerances.
#[test]
fn portable_math_is_within_one_ulp_of_numpy() {
    let (mut n, mut differ) = (0, 0);
    for line in data!("libm_probe.txt").lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let w: Vec<u64> = line
            .split(' ')
            .map(|s| u64::from_str_radix(s, 16).unwrap())
            .collect();
        let x = f64::from_bits(w[0]);
        let (s, c) = LibmMath::sin_cos(x);
        for (got, want) in [(s, w[1]), (c, w[2]), (LibmMath::pow2(x), w[3])] {
            let u = ulps(Word::F64(got.to_bits()), Word::F64(want));
            assert!(u <= 1, "x = {x:e}: {u} ulps");
            differ += usize::from(u == 1);
            n += 1;
        }
    }
    eprintln!("libm vs numpy: {differ} of {n} sin/cos/x**2 values differ by one ulp");
    assert!(differ > 0);
}
