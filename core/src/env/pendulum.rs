//! Pendulum-v1 (Gymnasium 1.x `PendulumEnv` wrapped in `TimeLimit(200)`), bit-exact.
//!
//! # Dynamics (Gymnasium's `step`, semi-implicit Euler)
//!
//! State `(θ, θ̇)` (rad, rad/s; θ = 0 upright), float64. The torque `u` (N·m) is a float32,
//! clipped to `[−max_torque, max_torque]` in float32:
//!
//! ```text
//! cost  = norm(θ)² + 0.1·θ̇² + 0.001·u²          norm(θ) = ((θ + π) mod 2π) − π
//! θ̇'   = clip(θ̇ + (3g/(2l)·sin θ + 3/(m·l²)·u)·dt, −max_speed, max_speed)
//! θ'    = θ + θ̇'·dt
//! reward = −cost,   obs = (cos θ', sin θ', θ̇') as f32
//! ```
//!
//! numpy 2 promotion (NEP 50) is reproduced: `u` is an `np.float32`, so `0.001·u²` and
//! `3/(m·l²)·u` are float32 products (the Python float constant cast to float32 first, `u²` by
//! `powf`); everything else is float64. `norm(θ)²` and `θ̇²` are numpy scalar powers (`pow(x,
//! 2.0)`, [`Math::pow2`]) and `mod` is numpy's float remainder. There is no termination; the
//! episode is truncated after `max_episode_steps` steps. `reset` draws
//! `θ ~ U(−π, π)`, then `θ̇ ~ U(−1, 1)` from the environment's [`Pcg64`].

use core::f64::consts::PI;
use core::marker::PhantomData;

use super::math::{clip_f32, clip_f64, np_remainder, LibmMath, Math};
use super::seeding::Pcg64;
use super::{Action, ActionSpace, Env, EnvError, Transition};

/// Constants of the pendulum (SI units). `Default` is Gymnasium's Pendulum-v1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PendulumParams {
    /// Gravitational acceleration g (m/s²). Default 10.0 (Gymnasium's `g` argument).
    pub g: f64,
    /// Mass m (kg). Default 1.0.
    pub m: f64,
    /// Length l (m). Default 1.0.
    pub l: f64,
    /// Time step dt (s). Default 0.05.
    pub dt: f64,
    /// |θ̇| limit (rad/s). Default 8.
    pub max_speed: f64,
    /// |u| limit (N·m) of the float32 action box. Default 2.0.
    pub max_torque: f32,
    /// `TimeLimit`: the episode is truncated once this many steps were taken. Default 200.
    pub max_episode_steps: u32,
}

impl Default for PendulumParams {
    /// Gymnasium's Pendulum-v1.
    fn default() -> Self {
        PendulumParams {
            g: 10.0,
            m: 1.0,
            l: 1.0,
            dt: 0.05,
            max_speed: 8.0,
            max_torque: 2.0,
            max_episode_steps: 200,
        }
    }
}

/// The pendulum swing-up environment, `Env<3>`, action space
/// `Continuous { dim: 1, low: −max_torque, high: max_torque }`.
#[derive(Clone, Debug)]
pub struct Pendulum<M: Math = LibmMath> {
    params: PendulumParams,
    /// `3·g / (2·l)` (Python float arithmetic, left to right).
    gravity_coef: f64,
    /// `3.0 / (m·l**2)` cast to float32 (the cast NEP 50 applies before multiplying `u`).
    torque_coef: f32,
    state: [f64; 2],
    last_reward: f64,
    rng: Pcg64,
    elapsed_steps: u32,
    running: bool,
    _math: PhantomData<M>,
}

impl Pendulum {
    /// A pendulum with the given parameters and the portable [`LibmMath`].
    pub fn new(params: PendulumParams) -> Self {
        Self::with_math(params)
    }
}

impl Default for Pendulum {
    /// Gymnasium's Pendulum-v1.
    fn default() -> Self {
        Self::new(PendulumParams::default())
    }
}

/// Gymnasium's `angle_normalize`: `((x + π) % (2π)) − π` with numpy's remainder.
#[inline]
fn angle_normalize(x: f64) -> f64 {
    np_remainder(x + PI, 2.0 * PI) - PI
}

impl<M: Math> Pendulum<M> {
    /// A pendulum using the elementary functions of `M` (generator `Pcg64::from_seed(0)` until
    /// the first seeded reset).
    pub fn with_math(params: PendulumParams) -> Self {
        Pendulum {
            params,
            gravity_coef: 3.0 * params.g / (2.0 * params.l),
            torque_coef: (3.0 / (params.m * M::pow2(params.l))) as f32,
            state: [0.0; 2],
            last_reward: 0.0,
            rng: Pcg64::from_seed(0),
            elapsed_steps: 0,
            running: false,
            _math: PhantomData,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &PendulumParams {
        &self.params
    }

    /// The exact internal f64 state `(θ, θ̇)`.
    pub fn state(&self) -> [f64; 2] {
        self.state
    }

    /// Overwrite the internal state and allow stepping; the elapsed-step count is kept.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.running = true;
    }

    /// Steps taken since the last `reset`.
    pub fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    /// The last step's reward in full precision (Gymnasium returns this float64;
    /// [`Transition::reward`] is its f32 cast).
    pub fn last_reward(&self) -> f64 {
        self.last_reward
    }

    /// The environment's generator.
    pub fn rng(&self) -> &Pcg64 {
        &self.rng
    }

    #[inline]
    fn obs(&self) -> [f32; 3] {
        let [th, thdot] = self.state;
        let (s, c) = M::sin_cos(th);
        [c as f32, s as f32, thdot as f32]
    }

    #[inline]
    fn advance(&mut self, u: f32) -> Transition<3> {
        let p = &self.params;
        let [th, thdot] = self.state;
        // `np.clip(u, -max_torque, max_torque)[0]`: float32.
        let u = clip_f32(u, -p.max_torque, p.max_torque);
        // `0.001 * (u**2)`: float32 (0.001 cast to float32), promoted when added to float64.
        let u_cost = (0.001f64 as f32) * M::powf2(u);
        let costs = M::pow2(angle_normalize(th)) + 0.1 * M::pow2(thdot) + f64::from(u_cost);

        let torque = self.torque_coef * u; // float32 product
        let newthdot = thdot + (self.gravity_coef * M::sin(th) + f64::from(torque)) * p.dt;
        let newthdot = clip_f64(newthdot, -p.max_speed, p.max_speed);
        let newth = th + newthdot * p.dt;
        self.state = [newth, newthdot];
        self.last_reward = -costs;

        self.elapsed_steps += 1;
        let truncated = self.elapsed_steps >= p.max_episode_steps;
        self.running = !truncated;
        Transition {
            obs: self.obs(),
            reward: self.last_reward as f32,
            terminated: false,
            truncated,
        }
    }
}

impl<M: Math> Env<3> for Pendulum<M> {
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Continuous {
            dim: 1,
            low: -self.params.max_torque,
            high: self.params.max_torque,
        }
    }

    fn reset(&mut self, seed: Option<u64>) -> [f32; 3] {
        if let Some(seed) = seed {
            self.rng = Pcg64::from_seed(seed);
        }
        // `uniform(low=-[π, 1], high=[π, 1])`, element by element.
        let th = self.rng.uniform(-PI, PI);
        let thdot = self.rng.uniform(-1.0, 1.0);
        self.state = [th, thdot];
        self.elapsed_steps = 0;
        self.running = true;
        self.obs()
    }

    /// `Continuous(&[u])`; a non-finite `u` is rejected with `InvalidAction` (Gymnasium would
    /// carry the NaN into the state).
    fn step(&mut self, action: Action<'_>) -> Result<Transition<3>, EnvError> {
        let u = match action {
            Action::Continuous(&[u]) if u.is_finite() => u,
            _ => return Err(EnvError::InvalidAction),
        };
        if !self.running {
            return Err(EnvError::NeedsReset);
        }
        Ok(self.advance(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_space() {
        let env = Pendulum::default();
        assert_eq!(
            env.action_space(),
            ActionSpace::Continuous {
                dim: 1,
                low: -2.0,
                high: 2.0
            }
        );
        assert_eq!(env.gravity_coef, 15.0);
        assert_eq!(env.torque_coef, 3.0);
    }

    #[test]
    fn invalid_actions_and_reset() {
        let mut env = Pendulum::default();
        assert_eq!(
            env.step(Action::Continuous(&[0.0])),
            Err(EnvError::NeedsReset)
        );
        env.reset(Some(0));
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::InvalidAction));
        assert_eq!(
            env.step(Action::Continuous(&[0.0, 1.0])),
            Err(EnvError::InvalidAction)
        );
        assert_eq!(
            env.step(Action::Continuous(&[f32::NAN])),
            Err(EnvError::InvalidAction)
        );
    }

    #[test]
    fn clips_torque() {
        let mut a = Pendulum::default();
        let mut b = Pendulum::default();
        a.reset(Some(4));
        b.reset(Some(4));
        let ta = a.step(Action::Continuous(&[2.0])).unwrap();
        let tb = b.step(Action::Continuous(&[50.0])).unwrap();
        assert_eq!(ta, tb);
    }

    #[test]
    fn upright_at_rest_costs_nothing_and_stays() {
        let mut env = Pendulum::default();
        env.reset(Some(0));
        env.set_state([0.0, 0.0]);
        let t = env.step(Action::Continuous(&[0.0])).unwrap();
        assert_eq!(t.reward, 0.0);
        assert_eq!(t.obs, [1.0, 0.0, 0.0]);
    }

    #[test]
    fn speed_is_clipped_and_truncates_at_200() {
        let mut env = Pendulum::default();
        env.reset(Some(1));
        for i in 0..200 {
            let t = env.step(Action::Continuous(&[2.0])).unwrap();
            assert!(t.obs[2].abs() <= 8.0);
            assert!(!t.terminated);
            assert_eq!(t.truncated, i == 199);
        }
        assert_eq!(
            env.step(Action::Continuous(&[0.0])),
            Err(EnvError::NeedsReset)
        );
    }

    #[test]
    fn angle_normalize_range() {
        for k in -20..20 {
            let x = f64::from(k) * 0.77;
            let n = angle_normalize(x);
            assert!((-PI..=PI).contains(&n), "{x} -> {n}");
        }
    }
}
