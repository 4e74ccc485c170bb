//! MountainCarContinuous-v0 (Gymnasium 1.x `Continuous_MountainCarEnv` wrapped in
//! `TimeLimit(999)`), bit-exact including numpy 2's mixed float32/float64 arithmetic.
//!
//! # Dynamics (Gymnasium's `step`)
//!
//! State `(p, v)`: position (m, in [−1.2, 0.6]) and velocity (|v| ≤ 0.07). With the action
//! `a` (float32) and `force = min(max(a, −1), 1)`:
//!
//! ```text
//! v ← v + force·0.0015 − 0.0025·cos(3p);   v ← clip(v, −0.07, 0.07)
//! p ← p + v;                                p ← clip(p, −1.2, 0.6)
//! if p == −1.2 and v < 0: v ← 0
//! terminated = p ≥ 0.45 and v ≥ 0
//! reward = (100 if terminated else 0) − 0.1·a²        (a unclipped, Python float math)
//! ```
//!
//! # The precision of every operation (what makes this bit-exact)
//!
//! Gymnasium keeps the state as **float64 right after `reset`** and stores it as **float32
//! after every step** (`np.array([p, v], dtype=np.float32)`); the observation is that float32
//! state. Under numpy 2 (NEP 50) the precision of each operation depends on its operands: an
//! `np.float32` combined with a Python float (the constants, `math.cos(…)`, a clipped value) is
//! computed in float32 after casting the Python float to float32 (comparisons too); with an
//! `np.float64` it is float64; two Python floats are float64. `force` is the `np.float32` action
//! unless Python's `min`/`max` replaced it by the Python float ±1.0, and a clipped velocity or
//! position becomes a Python float. This module tracks those three kinds per value and applies
//! the same rule, so the first step after a reset runs (mostly) in float64 and later ones mostly
//! in float32, exactly as in Gymnasium. `cos` is Python's `math.cos` (float64, [`Math::cos`]),
//! `a²` is `math.pow(a, 2)` ([`Math::pow2`]). `reset` draws `p ~ U(−0.6, −0.4)`, `v = 0`.

use core::marker::PhantomData;

use super::math::{LibmMath, Math};
use super::seeding::Pcg64;
use super::{Action, ActionSpace, Env, EnvError, Transition};

const MIN_ACTION: f64 = -1.0;
const MAX_ACTION: f64 = 1.0;
const MIN_POSITION: f64 = -1.2;
const MAX_POSITION: f64 = 0.6;
const MAX_SPEED: f64 = 0.07;
const GOAL_POSITION: f64 = 0.45;
const GOAL_VELOCITY: f64 = 0.0;
const POWER: f64 = 0.0015;
/// `TimeLimit` of MountainCarContinuous-v0.
pub const MAX_EPISODE_STEPS: u32 = 999;

/// Gymnasium's internal state, whose dtype changes with the first step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MountainCarState {
    /// Right after `reset`: a float64 array `[p, 0.0]`.
    Reset {
        /// Position (m).
        position: f64,
        /// Velocity (m per step).
        velocity: f64,
    },
    /// After any step: a float32 array.
    Stepped {
        /// Position (m).
        position: f32,
        /// Velocity (m per step).
        velocity: f32,
    },
}

/// The numeric type a value has in Gymnasium's Python code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A Python `float` or `int` ("weak" under NEP 50).
    Py,
    /// `np.float32`.
    F32,
    /// `np.float64`.
    F64,
}

/// A value with its Python/numpy type (`v` holds it exactly; float32 values are widened).
#[derive(Clone, Copy, Debug)]
struct Num {
    v: f64,
    k: Kind,
}

const fn py(v: f64) -> Num {
    Num { v, k: Kind::Py }
}

/// The precision numpy 2 computes a binary operation in: float64 wins, then float32 (a Python
/// scalar is cast to it), two Python floats stay float64.
#[inline]
fn join(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (Kind::F64, _) | (_, Kind::F64) => Kind::F64,
        (Kind::F32, _) | (_, Kind::F32) => Kind::F32,
        _ => Kind::Py,
    }
}

#[inline]
fn arith(a: Num, b: Num, op64: fn(f64, f64) -> f64, op32: fn(f32, f32) -> f32) -> Num {
    let k = join(a.k, b.k);
    let v = if k == Kind::F32 {
        f64::from(op32(a.v as f32, b.v as f32))
    } else {
        op64(a.v, b.v)
    };
    Num { v, k }
}

#[inline]
fn add(a: Num, b: Num) -> Num {
    arith(a, b, |x, y| x + y, |x, y| x + y)
}
#[inline]
fn sub(a: Num, b: Num) -> Num {
    arith(a, b, |x, y| x - y, |x, y| x - y)
}
#[inline]
fn mul(a: Num, b: Num) -> Num {
    arith(a, b, |x, y| x * y, |x, y| x * y)
}

/// `a < b` in the precision numpy compares in.
#[inline]
fn lt(a: Num, b: Num) -> bool {
    if join(a.k, b.k) == Kind::F32 {
        (a.v as f32) < (b.v as f32)
    } else {
        a.v < b.v
    }
}
#[inline]
fn gt(a: Num, b: Num) -> bool {
    lt(b, a)
}
#[inline]
fn ge(a: Num, b: Num) -> bool {
    if join(a.k, b.k) == Kind::F32 {
        (a.v as f32) >= (b.v as f32)
    } else {
        a.v >= b.v
    }
}
#[inline]
fn eq(a: Num, b: Num) -> bool {
    if join(a.k, b.k) == Kind::F32 {
        (a.v as f32) == (b.v as f32)
    } else {
        a.v == b.v
    }
}

/// The continuous mountain car, `Env<2>`, action space `Continuous { dim: 1, low: −1, high: 1 }`.
#[derive(Clone, Debug)]
pub struct MountainCarContinuous<M: Math = LibmMath> {
    state: MountainCarState,
    last_reward: f64,
    rng: Pcg64,
    elapsed_steps: u32,
    running: bool,
    _math: PhantomData<M>,
}

impl MountainCarContinuous {
    /// Gymnasium's MountainCarContinuous-v0 with the portable [`LibmMath`].
    pub fn new() -> Self {
        Self::with_math()
    }
}

impl Default for MountainCarContinuous {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Math> MountainCarContinuous<M> {
    /// A mountain car using the elementary functions of `M` (generator `Pcg64::from_seed(0)`
    /// until the first seeded reset).
    pub fn with_math() -> Self {
        MountainCarContinuous {
            state: MountainCarState::Reset {
                position: 0.0,
                velocity: 0.0,
            },
            last_reward: 0.0,
            rng: Pcg64::from_seed(0),
            elapsed_steps: 0,
            running: false,
            _math: PhantomData,
        }
    }

    /// The exact internal state (float64 after `reset`, float32 after a step).
    pub fn state(&self) -> MountainCarState {
        self.state
    }

    /// Overwrite the internal state and allow stepping; the elapsed-step count is kept.
    pub fn set_state(&mut self, state: MountainCarState) {
        self.state = state;
        self.running = true;
    }

    /// Steps taken since the last `reset`.
    pub fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    /// The last step's reward in full precision (a Python float in Gymnasium;
    /// [`Transition::reward`] is its f32 cast).
    pub fn last_reward(&self) -> f64 {
        self.last_reward
    }

    /// The environment's generator.
    pub fn rng(&self) -> &Pcg64 {
        &self.rng
    }

    fn obs(&self) -> [f32; 2] {
        match self.state {
            MountainCarState::Reset { position, velocity } => [position as f32, velocity as f32],
            MountainCarState::Stepped { position, velocity } => [position, velocity],
        }
    }

    fn advance(&mut self, a: f32) -> Transition<2> {
        let (mut position, mut velocity) = match self.state {
            MountainCarState::Reset { position, velocity } => (
                Num {
                    v: position,
                    k: Kind::F64,
                },
                Num {
                    v: velocity,
                    k: Kind::F64,
                },
            ),
            MountainCarState::Stepped { position, velocity } => (
                Num {
                    v: f64::from(position),
                    k: Kind::F32,
                },
                Num {
                    v: f64::from(velocity),
                    k: Kind::F32,
                },
            ),
        };
        let action = Num {
            v: f64::from(a),
            k: Kind::F32,
        };
        // `force = min(max(action[0], min_action), max_action)` (Python builtins: the first
        // argument is kept unless the other compares strictly greater / smaller).
        let mut force = action;
        if gt(py(MIN_ACTION), force) {
            force = py(MIN_ACTION);
        }
        if lt(py(MAX_ACTION), force) {
            force = py(MAX_ACTION);
        }

        // `velocity += force * self.power - 0.0025 * math.cos(3 * position)`
        let cos3p = py(M::cos(mul(py(3.0), position).v));
        let dv = sub(mul(force, py(POWER)), mul(py(0.0025), cos3p));
        velocity = add(velocity, dv);
        if gt(velocity, py(MAX_SPEED)) {
            velocity = py(MAX_SPEED);
        }
        if lt(velocity, py(-MAX_SPEED)) {
            velocity = py(-MAX_SPEED);
        }
        position = add(position, velocity);
        if gt(position, py(MAX_POSITION)) {
            position = py(MAX_POSITION);
        }
        if lt(position, py(MIN_POSITION)) {
            position = py(MIN_POSITION);
        }
        if eq(position, py(MIN_POSITION)) && lt(velocity, py(0.0)) {
            velocity = py(0.0);
        }

        let terminated = ge(position, py(GOAL_POSITION)) && ge(velocity, py(GOAL_VELOCITY));
        // `reward = 0 (or 100.0); reward -= math.pow(action[0], 2) * 0.1`
        let base = if terminated { 100.0 } else { 0.0 };
        self.last_reward = base - M::pow2(f64::from(a)) * 0.1;

        self.state = MountainCarState::Stepped {
            position: position.v as f32,
            velocity: velocity.v as f32,
        };
        self.elapsed_steps += 1;
        let truncated = self.elapsed_steps >= MAX_EPISODE_STEPS;
        self.running = !(terminated || truncated);
        Transition {
            obs: self.obs(),
            reward: self.last_reward as f32,
            terminated,
            truncated,
        }
    }
}

impl<M: Math> Env<2> for MountainCarContinuous<M> {
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Continuous {
            dim: 1,
            low: MIN_ACTION as f32,
            high: MAX_ACTION as f32,
        }
    }

    fn reset(&mut self, seed: Option<u64>) -> [f32; 2] {
        if let Some(seed) = seed {
            self.rng = Pcg64::from_seed(seed);
        }
        // `np.array([self.np_random.uniform(low=-0.6, high=-0.4), 0])`
        self.state = MountainCarState::Reset {
            position: self.rng.uniform(-0.6, -0.4),
            velocity: 0.0,
        };
        self.elapsed_steps = 0;
        self.running = true;
        self.obs()
    }

    /// `Continuous(&[a])`; a non-finite `a` is rejected with `InvalidAction`.
    fn step(&mut self, action: Action<'_>) -> Result<Transition<2>, EnvError> {
        let a = match action {
            Action::Continuous(&[a]) if a.is_finite() => a,
            _ => return Err(EnvError::InvalidAction),
        };
        if !self.running {
            return Err(EnvError::NeedsReset);
        }
        Ok(self.advance(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy2_promotion_rules() {
        // python -c "import numpy as np; print(np.float32(1) + (2**-24 + 2**-50) == 1.0, np.float32(0.6) > 0.6, np.float32(-1.2) == -1.2)"
        // -> True False True: the Python float is cast to float32 first, comparisons included.
        let one = Num {
            v: 1.0,
            k: Kind::F32,
        };
        assert_eq!(add(one, py(2f64.powi(-24) + 2f64.powi(-50))).v, 1.0);
        let p06 = Num {
            v: f64::from(0.6f32),
            k: Kind::F32,
        };
        assert!(!gt(p06, py(0.6)));
        let m12 = Num {
            v: f64::from(-1.2f32),
            k: Kind::F32,
        };
        assert!(eq(m12, py(-1.2)));
        // float64 with a Python float: plain float64.
        let x = Num {
            v: 1.0,
            k: Kind::F64,
        };
        assert_eq!(add(x, py(1e-10)).v, 1.0 + 1e-10);
    }

    #[test]
    fn dtype_changes_after_first_step() {
        let mut env = MountainCarContinuous::new();
        let obs = env.reset(Some(0));
        match env.state() {
            MountainCarState::Reset { position, velocity } => {
                assert!((-0.6..-0.4).contains(&position));
                assert_eq!(velocity, 0.0);
                assert_eq!(obs, [position as f32, 0.0]);
            }
            MountainCarState::Stepped { .. } => panic!("reset state must be float64"),
        }
        let t = env.step(Action::Continuous(&[0.5])).unwrap();
        match env.state() {
            MountainCarState::Stepped { position, velocity } => {
                assert_eq!(t.obs, [position, velocity])
            }
            MountainCarState::Reset { .. } => panic!("stepped state must be float32"),
        }
        assert_eq!(t.reward, (-(0.5f64 * 0.5) * 0.1) as f32);
    }

    #[test]
    fn errors() {
        let mut env = MountainCarContinuous::new();
        assert_eq!(
            env.step(Action::Continuous(&[0.0])),
            Err(EnvError::NeedsReset)
        );
        env.reset(Some(1));
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::InvalidAction));
        assert_eq!(
            env.step(Action::Continuous(&[f32::INFINITY])),
            Err(EnvError::InvalidAction)
        );
    }

    #[test]
    fn left_wall_stops_the_car() {
        let mut env = MountainCarContinuous::new();
        env.reset(Some(0));
        env.set_state(MountainCarState::Stepped {
            position: -1.19,
            velocity: -0.05,
        });
        let t = env.step(Action::Continuous(&[-1.0])).unwrap();
        assert_eq!(t.obs, [-1.2f32, 0.0]);
    }

    #[test]
    fn goal_terminates_with_bonus() {
        let mut env = MountainCarContinuous::new();
        env.reset(Some(0));
        env.set_state(MountainCarState::Stepped {
            position: 0.44,
            velocity: 0.05,
        });
        let t = env.step(Action::Continuous(&[2.0])).unwrap();
        assert!(t.terminated);
        // The bonus minus 0.1·a² with the *unclipped* action.
        assert_eq!(env.last_reward(), 100.0 - 4.0 * 0.1);
        assert_eq!(
            env.step(Action::Continuous(&[0.0])),
            Err(EnvError::NeedsReset)
        );
    }

    #[test]
    fn truncates_at_999() {
        let mut env = MountainCarContinuous::new();
        env.reset(Some(3));
        for i in 0..MAX_EPISODE_STEPS {
            let t = env.step(Action::Continuous(&[0.0])).unwrap();
            assert!(!t.terminated);
            assert_eq!(t.truncated, i + 1 == MAX_EPISODE_STEPS);
        }
    }
}
