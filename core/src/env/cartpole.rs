//! CartPole-v1 (Gymnasium 1.x `CartPoleEnv` wrapped in `TimeLimit(500)`), bit-exact.
//!
//! # Dynamics (Barto, Sutton & Anderson 1983; Gymnasium's `step`, explicit Euler, all f64)
//!
//! State `s = (x, ẋ, θ, θ̇)` (m, m/s, rad, rad/s; θ = 0 upright). Action 0 pushes left with
//! `F = −force_mag`, action 1 right with `F = +force_mag` (N). With `M = m_pole + m_cart`,
//! `m_pole·l` (l = *half* the pole length):
//!
//! ```text
//! temp = (F + m_pole·l·θ̇²·sin θ) / M
//! θ̈    = (g·sin θ − cos θ·temp) / (l·(4/3 − m_pole·cos²θ / M))
//! ẍ    = temp − m_pole·l·θ̈·cos θ / M
//! x ← x + τ·ẋ,  ẋ ← ẋ + τ·ẍ,  θ ← θ + τ·θ̇,  θ̇ ← θ̇ + τ·θ̈      (all on the old values)
//! ```
//!
//! evaluated in exactly Gymnasium's order of operations (`np.square(v)` is `v·v`). The episode
//! terminates when `x < −x_threshold`, `x > x_threshold`, `θ < −θ_threshold` or
//! `θ > θ_threshold`; the reward is `1.0` on every step, the terminating one included; it is
//! truncated once `max_episode_steps` steps were taken (on the same step it may also terminate).
//! The observation is the f32 cast of the f64 state. `reset` draws `x, ẋ, θ, θ̇ ~ U(−0.05, 0.05)`
//! in that order from the environment's [`Pcg64`].

use core::marker::PhantomData;

use super::math::{LibmMath, Math};
use super::seeding::Pcg64;
use super::{Action, ActionSpace, Env, EnvError, Transition};

/// Physical constants and limits of the cart-pole (SI units). `Default` is Gymnasium's
/// CartPole-v1; change fields to simulate a different plant (longer or heavier pole, weaker
/// motor, …).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CartPoleParams {
    /// Gravitational acceleration g (m/s²). Default 9.8.
    pub gravity: f64,
    /// Cart mass (kg). Default 1.0.
    pub masscart: f64,
    /// Pole mass (kg). Default 0.1.
    pub masspole: f64,
    /// *Half* the pole length l (m). Default 0.5.
    pub length: f64,
    /// Magnitude of the force the actions apply (N). Default 10.0.
    pub force_mag: f64,
    /// Euler time step τ (s). Default 0.02.
    pub tau: f64,
    /// |x| beyond which the episode terminates (m). Default 2.4.
    pub x_threshold: f64,
    /// |θ| beyond which the episode terminates (rad). Default `12·2·π/360` (12°).
    pub theta_threshold_radians: f64,
    /// `TimeLimit`: the episode is truncated once this many steps were taken. Default 500.
    pub max_episode_steps: u32,
}

impl Default for CartPoleParams {
    /// Gymnasium's CartPole-v1.
    fn default() -> Self {
        CartPoleParams {
            gravity: 9.8,
            masscart: 1.0,
            masspole: 0.1,
            length: 0.5,
            force_mag: 10.0,
            tau: 0.02,
            x_threshold: 2.4,
            // Python: `12 * 2 * math.pi / 360`, left to right.
            theta_threshold_radians: 12.0 * 2.0 * core::f64::consts::PI / 360.0,
            max_episode_steps: 500,
        }
    }
}

/// The cart-pole environment, `Env<4>`, action space `Discrete(2)`.
///
/// `M` chooses the `sin`/`cos` implementation (see [`Math`]); the default [`LibmMath`] is
/// portable.
#[derive(Clone, Debug)]
pub struct CartPole<M: Math = LibmMath> {
    params: CartPoleParams,
    /// `masspole + masscart`, as Gymnasium precomputes it.
    total_mass: f64,
    /// `masspole · length`, as Gymnasium precomputes it.
    polemass_length: f64,
    state: [f64; 4],
    rng: Pcg64,
    elapsed_steps: u32,
    running: bool,
    _math: PhantomData<M>,
}

impl CartPole {
    /// A cart-pole with the given parameters and the portable [`LibmMath`].
    pub fn new(params: CartPoleParams) -> Self {
        Self::with_math(params)
    }
}

impl Default for CartPole {
    /// Gymnasium's CartPole-v1.
    fn default() -> Self {
        Self::new(CartPoleParams::default())
    }
}

impl<M: Math> CartPole<M> {
    /// A cart-pole using the elementary functions of `M`.
    ///
    /// Until the first `reset(Some(seed))` the generator is `Pcg64::from_seed(0)` (Gymnasium
    /// would draw OS entropy instead); `step` before any `reset` returns `NeedsReset`.
    pub fn with_math(params: CartPoleParams) -> Self {
        CartPole {
            params,
            total_mass: params.masspole + params.masscart,
            polemass_length: params.masspole * params.length,
            state: [0.0; 4],
            rng: Pcg64::from_seed(0),
            elapsed_steps: 0,
            running: false,
            _math: PhantomData,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &CartPoleParams {
        &self.params
    }

    /// The exact internal f64 state `(x, ẋ, θ, θ̇)` (Gymnasium's `env.unwrapped.state`).
    pub fn state(&self) -> [f64; 4] {
        self.state
    }

    /// Overwrite the internal state (e.g. to replay from a recorded one) and allow stepping;
    /// the elapsed-step count (for truncation) is kept.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = state;
        self.running = true;
    }

    /// Steps taken since the last `reset`.
    pub fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    /// The reward of a step in full precision: always `1.0` (Gymnasium's default reward).
    pub fn last_reward(&self) -> f64 {
        1.0
    }

    /// The environment's generator (Gymnasium's `env.np_random`).
    pub fn rng(&self) -> &Pcg64 {
        &self.rng
    }

    #[inline]
    fn obs(&self) -> [f32; 4] {
        let s = &self.state;
        [s[0] as f32, s[1] as f32, s[2] as f32, s[3] as f32]
    }

    /// One step with a validated action (`push_right` = action 1).
    #[inline]
    fn advance(&mut self, push_right: bool) -> Transition<4> {
        let p = &self.params;
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if push_right {
            p.force_mag
        } else {
            -p.force_mag
        };
        let (sintheta, costheta) = M::sin_cos(theta);

        let temp =
            (force + self.polemass_length * (theta_dot * theta_dot) * sintheta) / self.total_mass;
        let thetaacc = (p.gravity * sintheta - costheta * temp)
            / (p.length * (4.0 / 3.0 - p.masspole * (costheta * costheta) / self.total_mass));
        let xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass;

        let x = x + p.tau * x_dot;
        let x_dot = x_dot + p.tau * xacc;
        let theta = theta + p.tau * theta_dot;
        let theta_dot = theta_dot + p.tau * thetaacc;
        self.state = [x, x_dot, theta, theta_dot];

        let terminated = x < -p.x_threshold
            || x > p.x_threshold
            || theta < -p.theta_threshold_radians
            || theta > p.theta_threshold_radians;
        self.elapsed_steps += 1;
        let truncated = self.elapsed_steps >= p.max_episode_steps;
        self.running = !(terminated || truncated);
        Transition {
            obs: self.obs(),
            reward: 1.0,
            terminated,
            truncated,
        }
    }
}

impl<M: Math> Env<4> for CartPole<M> {
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Discrete(2)
    }

    fn reset(&mut self, seed: Option<u64>) -> [f32; 4] {
        if let Some(seed) = seed {
            self.rng = Pcg64::from_seed(seed);
        }
        // `np_random.uniform(low=-0.05, high=0.05, size=(4,))`
        for s in self.state.iter_mut() {
            *s = self.rng.uniform(-0.05, 0.05);
        }
        self.elapsed_steps = 0;
        self.running = true;
        self.obs()
    }

    #[inline]
    fn step(&mut self, action: Action<'_>) -> Result<Transition<4>, EnvError> {
        let push_right = match action {
            Action::Discrete(0) => false,
            Action::Discrete(1) => true,
            _ => return Err(EnvError::InvalidAction),
        };
        if !self.running {
            return Err(EnvError::NeedsReset);
        }
        Ok(self.advance(push_right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_defaults() {
        let p = CartPoleParams::default();
        // python -c "import math; print((12 * 2 * math.pi / 360).hex())"  -> 0x1.acee9f37bebd5p-3
        assert_eq!(
            p.theta_threshold_radians,
            f64::from_bits(0x3FCA_CEE9_F37B_EBD5)
        );
        assert_eq!(p.max_episode_steps, 500);
        let env = CartPole::default();
        assert_eq!(env.action_space(), ActionSpace::Discrete(2));
    }

    #[test]
    fn needs_reset_and_invalid_actions() {
        let mut env = CartPole::default();
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::NeedsReset));
        env.reset(Some(0));
        assert_eq!(env.step(Action::Discrete(2)), Err(EnvError::InvalidAction));
        assert_eq!(
            env.step(Action::Continuous(&[1.0])),
            Err(EnvError::InvalidAction)
        );
        assert!(env.step(Action::Discrete(1)).is_ok());
    }

    #[test]
    fn reset_is_small_and_reproducible() {
        let mut a = CartPole::default();
        let mut b = CartPole::default();
        let oa = a.reset(Some(123));
        let ob = b.reset(Some(123));
        assert_eq!(oa, ob);
        assert!(oa.iter().all(|v| v.abs() < 0.05));
        // Unseeded resets continue the stream: they differ from the seeded one.
        assert_ne!(a.reset(None), oa);
    }

    #[test]
    fn terminates_beyond_x_threshold() {
        let mut env = CartPole::default();
        env.reset(Some(0));
        // ẋ·τ carries x over 2.4 in one step; the pole stays upright.
        env.set_state([2.399, 1.0, 0.0, 0.0]);
        let t = env.step(Action::Discrete(1)).unwrap();
        assert!(t.terminated && !t.truncated);
        assert_eq!(t.reward, 1.0);
        assert_eq!(env.step(Action::Discrete(1)), Err(EnvError::NeedsReset));
        env.set_state([-2.399, -1.0, 0.0, 0.0]);
        assert!(env.step(Action::Discrete(0)).unwrap().terminated);
    }

    #[test]
    fn terminates_beyond_theta_threshold() {
        let mut env = CartPole::default();
        env.reset(Some(0));
        env.set_state([0.0, 0.0, 0.2094, 1.0]);
        assert!(env.step(Action::Discrete(1)).unwrap().terminated);
    }

    #[test]
    fn truncates_at_max_steps() {
        let mut env = CartPole::new(CartPoleParams {
            max_episode_steps: 3,
            ..CartPoleParams::default()
        });
        env.reset(Some(1));
        for i in 0..3 {
            env.set_state([0.0; 4]);
            let t = env.step(Action::Discrete(i % 2)).unwrap();
            assert!(!t.terminated);
            assert_eq!(t.truncated, i == 2);
        }
        assert_eq!(env.step(Action::Discrete(0)), Err(EnvError::NeedsReset));
    }

    #[test]
    fn terminated_and_truncated_on_the_same_step() {
        let mut env = CartPole::new(CartPoleParams {
            max_episode_steps: 2,
            ..CartPoleParams::default()
        });
        env.reset(Some(0));
        assert!(!env.step(Action::Discrete(0)).unwrap().truncated);
        env.set_state([2.399, 1.0, 0.0, 0.0]);
        let t = env.step(Action::Discrete(1)).unwrap();
        assert!(t.terminated && t.truncated);
        assert_eq!(t.reward, 1.0);
    }

    #[test]
    fn heavier_pole_falls_differently() {
        let mut a = CartPole::default();
        let mut b = CartPole::new(CartPoleParams {
            masspole: 0.5,
            length: 1.0,
            ..CartPoleParams::default()
        });
        a.reset(Some(3));
        b.reset(Some(3));
        let ta = a.step(Action::Discrete(1)).unwrap();
        let tb = b.step(Action::Discrete(1)).unwrap();
        assert_ne!(ta.obs, tb.obs);
    }
}
