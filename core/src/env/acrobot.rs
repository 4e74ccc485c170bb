//! Acrobot-v1 (Gymnasium 1.x `AcrobotEnv`, "book" dynamics, wrapped in `TimeLimit(500)`),
//! bit-exact.
//!
//! # Dynamics (Sutton & Barto's acrobot; Gymnasium's `_dsdt` and `rk4`)
//!
//! State `s = (θ₁, θ₂, θ̇₁, θ̇₂)` (rad, rad/s; θ₁ = 0 hanging down, θ₂ relative to link 1).
//! Actions 0, 1, 2 apply the torque `a = −1, 0, +1` (N·m) at the joint between the links.
//! Constants: m₁ = m₂ = 1 kg, l₁ = 1 m, l_c1 = l_c2 = 0.5 m, I₁ = I₂ = 1 kg·m², g = 9.8 m/s².
//!
//! ```text
//! d₁ = m₁l_c1² + m₂(l₁² + l_c2² + 2l₁l_c2·cos θ₂) + I₁ + I₂
//! d₂ = m₂(l_c2² + l₁l_c2·cos θ₂) + I₂
//! φ₂ = m₂l_c2·g·cos(θ₁ + θ₂ − π/2)
//! φ₁ = −m₂l₁l_c2·θ̇₂²·sin θ₂ − 2m₂l₁l_c2·θ̇₂θ̇₁·sin θ₂ + (m₁l_c1 + m₂l₁)·g·cos(θ₁ − π/2) + φ₂
//! θ̈₂ = (a + d₂/d₁·φ₁ − m₂l₁l_c2·θ̇₁²·sin θ₂ − φ₂) / (m₂l_c2² + I₂ − d₂²/d₁)
//! θ̈₁ = −(d₂θ̈₂ + φ₁) / d₁
//! ```
//!
//! One classical RK4 step of dt = 0.2 s on the augmented state `(s, a)` (whose last derivative
//! is 0): `k₁ = f(y)`, `k₂ = f(y + 0.1k₁)`, `k₃ = f(y + 0.1k₂)`, `k₄ = f(y + 0.2k₃)`,
//! `y' = y + (0.2/6)·(((k₁ + 2k₂) + 2k₃) + k₄)`, in float64 and in that order. Then θ₁, θ₂ are
//! wrapped into [−π, π] by repeated ±2π, θ̇₁ is bounded to ±4π and θ̇₂ to ±9π. The episode
//! terminates when `−cos θ₁ − cos(θ₂ + θ₁) > 1` (reward 0), otherwise the reward is −1; it is
//! truncated after 500 steps. The squares `θ̇²` and `d₂²` are numpy scalar powers
//! ([`Math::pow2`]). Observation: `(cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂)` as f32.
//!
//! `reset` draws the four state values from `U(−0.1, 0.1)` and, like Gymnasium, stores them as
//! **float32**; the reset observation therefore applies numpy's float32 `cos`/`sin`
//! ([`np_cos_f32`]). The first step promotes the state to float64 (exactly).

use core::f64::consts::PI;
use core::marker::PhantomData;

use super::math::{np_cos_f32, np_sin_f32, LibmMath, Math};
use super::seeding::Pcg64;
use super::{Action, ActionSpace, Env, EnvError, Transition};

const DT: f64 = 0.2;
const M1: f64 = 1.0;
const M2: f64 = 1.0;
const L1: f64 = 1.0;
const LC1: f64 = 0.5;
const LC2: f64 = 0.5;
const I1: f64 = 1.0;
const I2: f64 = 1.0;
const G: f64 = 9.8;
// Python evaluates `l1**2`, `lc1**2`, `lc2**2` with C `pow` on these constants: all exact.
const L1_SQ: f64 = 1.0;
const LC1_SQ: f64 = 0.25;
const LC2_SQ: f64 = 0.25;
/// `MAX_VEL_1 = 4 * pi`.
const MAX_VEL_1: f64 = 4.0 * PI;
/// `MAX_VEL_2 = 9 * pi`.
const MAX_VEL_2: f64 = 9.0 * PI;
/// `AVAIL_TORQUE = [-1.0, 0.0, +1]`.
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];
/// `TimeLimit` of Acrobot-v1.
pub const MAX_EPISODE_STEPS: u32 = 500;

/// The acrobot swing-up environment, `Env<6>`, action space `Discrete(3)`.
#[derive(Clone, Debug)]
pub struct Acrobot<M: Math = LibmMath> {
    state: [f64; 4],
    rng: Pcg64,
    elapsed_steps: u32,
    running: bool,
    _math: PhantomData<M>,
}

impl Acrobot {
    /// Gymnasium's Acrobot-v1 with the portable [`LibmMath`].
    pub fn new() -> Self {
        Self::with_math()
    }
}

impl Default for Acrobot {
    fn default() -> Self {
        Self::new()
    }
}

/// Gymnasium's `wrap(x, -π, π)`.
#[inline]
fn wrap(mut x: f64) -> f64 {
    let (m, big) = (-PI, PI);
    let diff = big - m;
    while x > big {
        x -= diff;
    }
    while x < m {
        x += diff;
    }
    x
}

/// Gymnasium's `bound(x, m, M)` = Python `min(max(x, m), M)`.
#[inline]
fn bound(x: f64, m: f64, big: f64) -> f64 {
    let r = if m > x { m } else { x };
    if big < r {
        big
    } else {
        r
    }
}

impl<M: Math> Acrobot<M> {
    /// An acrobot using the elementary functions of `M` (generator `Pcg64::from_seed(0)` until
    /// the first seeded reset).
    pub fn with_math() -> Self {
        Acrobot {
            state: [0.0; 4],
            rng: Pcg64::from_seed(0),
            elapsed_steps: 0,
            running: false,
            _math: PhantomData,
        }
    }

    /// The exact internal state `(θ₁, θ₂, θ̇₁, θ̇₂)` (float32 values right after `reset`).
    pub fn state(&self) -> [f64; 4] {
        self.state
    }

    /// Overwrite the internal state and allow stepping; the elapsed-step count is kept.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = state;
        self.running = true;
    }

    /// Steps taken since the last `reset`.
    pub fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    /// The environment's generator.
    pub fn rng(&self) -> &Pcg64 {
        &self.rng
    }

    /// Gymnasium's `_dsdt` for the state part (the torque's derivative is 0).
    #[inline]
    fn dsdt(s: &[f64; 4], a: f64) -> [f64; 4] {
        let [theta1, theta2, dtheta1, dtheta2] = *s;
        let (sin2, cos2) = M::sin_cos(theta2);
        let d1 = M1 * LC1_SQ + M2 * (L1_SQ + LC2_SQ + 2.0 * L1 * LC2 * cos2) + I1 + I2;
        let d2 = M2 * (LC2_SQ + L1 * LC2 * cos2) + I2;
        let phi2 = M2 * LC2 * G * M::cos(theta1 + theta2 - PI / 2.0);
        let phi1 = -M2 * L1 * LC2 * M::pow2(dtheta2) * sin2
            - 2.0 * M2 * L1 * LC2 * dtheta2 * dtheta1 * sin2
            + (M1 * LC1 + M2 * L1) * G * M::cos(theta1 - PI / 2.0)
            + phi2;
        let ddtheta2 = (a + d2 / d1 * phi1 - M2 * L1 * LC2 * M::pow2(dtheta1) * sin2 - phi2)
            / (M2 * LC2_SQ + I2 - M::pow2(d2) / d1);
        let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
        [dtheta1, dtheta2, ddtheta1, ddtheta2]
    }

    /// Gymnasium's `rk4(self._dsdt, s_augmented, [0, dt])`, returning `yout[-1][:4]`.
    #[inline]
    fn rk4(y0: &[f64; 4], a: f64) -> [f64; 4] {
        let dt2 = DT / 2.0;
        let stage = |k: &[f64; 4], h: f64| -> [f64; 4] {
            let mut y = [0.0; 4];
            for i in 0..4 {
                y[i] = y0[i] + h * k[i];
            }
            y
        };
        // The torque component stays `a + h·0.0 = a` in every stage.
        let k1 = Self::dsdt(y0, a);
        let k2 = Self::dsdt(&stage(&k1, dt2), a);
        let k3 = Self::dsdt(&stage(&k2, dt2), a);
        let k4 = Self::dsdt(&stage(&k3, DT), a);
        let mut out = [0.0; 4];
        for i in 0..4 {
            out[i] = y0[i] + DT / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
        out
    }

    #[inline]
    fn obs(&self) -> [f32; 6] {
        let [t1, t2, d1, d2] = self.state;
        let (s1, c1) = M::sin_cos(t1);
        let (s2, c2) = M::sin_cos(t2);
        [
            c1 as f32, s1 as f32, c2 as f32, s2 as f32, d1 as f32, d2 as f32,
        ]
    }

    #[inline]
    fn advance(&mut self, a: f64) -> Transition<6> {
        let mut ns = Self::rk4(&self.state, a);
        ns[0] = wrap(ns[0]);
        ns[1] = wrap(ns[1]);
        ns[2] = bound(ns[2], -MAX_VEL_1, MAX_VEL_1);
        ns[3] = bound(ns[3], -MAX_VEL_2, MAX_VEL_2);
        self.state = ns;
        let terminated = -M::cos(ns[0]) - M::cos(ns[1] + ns[0]) > 1.0;
        self.elapsed_steps += 1;
        let truncated = self.elapsed_steps >= MAX_EPISODE_STEPS;
        self.running = !(terminated || truncated);
        Transition {
            obs: self.obs(),
            reward: if terminated { 0.0 } else { -1.0 },
            terminated,
            truncated,
        }
    }
}

impl<M: Math> Env<6> for Acrobot<M> {
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Discrete(3)
    }

    fn reset(&mut self, seed: Option<u64>) -> [f32; 6] {
        if let Some(seed) = seed {
            self.rng = Pcg64::from_seed(seed);
        }
        // `uniform(low=-0.1, high=0.1, size=(4,)).astype(np.float32)`
        let mut s32 = [0.0f32; 4];
        for (v, s) in s32.iter_mut().zip(self.state.iter_mut()) {
            *v = self.rng.uniform(-0.1, 0.1) as f32;
            *s = f64::from(*v);
        }
        self.elapsed_steps = 0;
        self.running = true;
        // `_get_ob()` on the float32 state: numpy's float32 cos/sin.
        [
            np_cos_f32(s32[0]),
            np_sin_f32(s32[0]),
            np_cos_f32(s32[1]),
            np_sin_f32(s32[1]),
            s32[2],
            s32[3],
        ]
    }

    fn step(&mut self, action: Action<'_>) -> Result<Transition<6>, EnvError> {
        let a = match action {
            Action::Discrete(i) if i < 3 => AVAIL_TORQUE[i],
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
    fn space_and_errors() {
        let mut env = Acrobot::new();
        assert_eq!(env.action_space(), ActionSpace::Discrete(3));
        assert_eq!(env.step(Action::Discrete(1)), Err(EnvError::NeedsReset));
        env.reset(Some(0));
        assert_eq!(env.step(Action::Discrete(3)), Err(EnvError::InvalidAction));
        assert!(env.step(Action::Discrete(2)).is_ok());
    }

    #[test]
    fn reset_state_is_float32() {
        let mut env = Acrobot::new();
        let obs = env.reset(Some(5));
        for v in env.state() {
            assert_eq!(f64::from(v as f32), v);
            assert!(v.abs() <= 0.1);
        }
        assert_eq!(obs[4], env.state()[2] as f32);
    }

    #[test]
    fn hanging_at_rest_stays_and_costs() {
        let mut env = Acrobot::new();
        env.reset(Some(0));
        env.set_state([0.0; 4]);
        let t = env.step(Action::Discrete(1)).unwrap();
        // cos(θ − π/2) at θ = 0 is 6e-17, not 0: the rest state drifts by ~1e-16 only.
        assert!(env.state().iter().all(|v| v.abs() < 1e-15));
        assert_eq!(t.reward, -1.0);
        assert!(!t.terminated);
    }

    #[test]
    fn terminates_when_tip_is_high() {
        let mut env = Acrobot::new();
        env.reset(Some(0));
        // Both links pointing up: −cos π − cos 2π = 1 − 1 = 0 < 1 is not enough; link 1 up and
        // link 2 straight (θ₂ = 0): −cos π − cos π = 2 > 1.
        env.set_state([PI, 0.0, 0.0, 0.0]);
        let t = env.step(Action::Discrete(1)).unwrap();
        assert!(t.terminated);
        assert_eq!(t.reward, 0.0);
    }

    #[test]
    fn wrap_and_bound() {
        assert_eq!(wrap(PI + 0.5), PI + 0.5 - 2.0 * PI);
        assert_eq!(wrap(-PI - 0.5), -PI - 0.5 + 2.0 * PI);
        assert_eq!(wrap(1.0), 1.0);
        assert_eq!(bound(100.0, -MAX_VEL_1, MAX_VEL_1), MAX_VEL_1);
        assert_eq!(bound(-100.0, -MAX_VEL_2, MAX_VEL_2), -MAX_VEL_2);
    }

    #[test]
    fn truncates_at_500() {
        let mut env = Acrobot::new();
        env.reset(Some(2));
        for i in 0..MAX_EPISODE_STEPS {
            env.set_state([0.0; 4]);
            let t = env.step(Action::Discrete(1)).unwrap();
            assert_eq!(t.truncated, i + 1 == MAX_EPISODE_STEPS);
        }
    }
}
