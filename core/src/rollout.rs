//! Fixed-capacity rollout storage for `E` environments × `N` steps, and its returns.
//!
//! With `δ_t = r_t + γ V_{t+1} − V_t`, advantages are GAE(λ):
//! `Â_t = δ_t + γλ Â_{t+1}` (reset at episode ends), returns `R_t = Â_t + V_t`.
//! `λ = 1` gives the paper's k-step bootstrapped returns
//! `R_t = Σ_{k<n} γᵏ r_{t+k} + γⁿ V(s_{t+n})`.
//!
//! Episode ends: after a *termination* the next value is 0; after a *truncation* (time
//! limit) the next value is `V(s_final)` of the observation the episode was cut at, which the
//! caller evaluates and stores in [`Ending::Truncated`].

use heapless::Vec as HVec;

use crate::Error;

/// How the step ended for its environment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ending {
    /// The episode goes on: bootstrap from the next stored step (or the last values).
    Continues,
    /// Terminal state: no bootstrap.
    Terminated,
    /// Cut by a time limit: bootstrap from `V(s_final)`.
    Truncated {
        /// `V(s_final)` of the observation the episode was cut at.
        bootstrap: f32,
    },
}

/// One environment's transition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step<const OBS: usize, const P: usize> {
    /// Observation the action was taken in.
    pub obs: [f32; OBS],
    /// Action taken (one-hot for categorical policies).
    pub action: [f32; P],
    /// Reward received.
    pub reward: f32,
    /// `V(obs)` when acting.
    pub value: f32,
    /// How the step ended.
    pub end: Ending,
    /// `Â_t`, filled by [`Rollout::compute_returns`].
    pub advantage: f32,
    /// `R_t`, filled by [`Rollout::compute_returns`].
    pub ret: f32,
}

impl<const OBS: usize, const P: usize> Step<OBS, P> {
    /// A transition whose advantage and return are not yet computed.
    pub const fn new(
        obs: [f32; OBS],
        action: [f32; P],
        reward: f32,
        value: f32,
        end: Ending,
    ) -> Self {
        Self {
            obs,
            action,
            reward,
            value,
            end,
            advantage: 0.0,
            ret: 0.0,
        }
    }

    /// Every number finite.
    pub fn is_finite(&self) -> bool {
        let b = match self.end {
            Ending::Truncated { bootstrap } => bootstrap.is_finite(),
            _ => true,
        };
        b && self
            .obs
            .iter()
            .chain(self.action.iter())
            .all(|v| v.is_finite())
            && self.reward.is_finite()
            && self.value.is_finite()
            && self.advantage.is_finite()
            && self.ret.is_finite()
    }

    /// Every number within the ranges an update accepts: `|obs| ≤ ` [`Step::MAX_OBS`] and
    /// `|reward|, |value|, |Â|, |R|` and a bootstrap `≤ ` [`Step::MAX_SIGNAL`] (NaN is out of
    /// range). The squares of larger inputs overflow the f32 factor statistics, or swamp their
    /// damping so that the next decomposition fails.
    pub fn in_range(&self) -> bool {
        let ok = |v: f32, m: f32| v.abs() <= m;
        let b = match self.end {
            Ending::Truncated { bootstrap } => ok(bootstrap, Self::MAX_SIGNAL),
            _ => true,
        };
        b && self.obs.iter().all(|&v| ok(v, Self::MAX_OBS))
            && self.action.iter().all(|&v| ok(v, Self::MAX_OBS))
            && [self.reward, self.value, self.advantage, self.ret]
                .iter()
                .all(|&v| ok(v, Self::MAX_SIGNAL))
    }

    /// Largest `|observation|` (and `|action|`) an update accepts: 10⁶.
    pub const MAX_OBS: f32 = 1e6;
    /// Largest `|reward|`, `|value|`, `|advantage|`, `|return|` an update accepts: 10⁹.
    pub const MAX_SIGNAL: f32 = 1e9;
}

/// `N` time steps of `E` environments (`E·N` samples), time-major.
#[derive(Clone, Debug)]
pub struct Rollout<const OBS: usize, const P: usize, const E: usize, const N: usize> {
    steps: HVec<[Step<OBS, P>; E], N>,
}

impl<const OBS: usize, const P: usize, const E: usize, const N: usize> Default
    for Rollout<OBS, P, E, N>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const OBS: usize, const P: usize, const E: usize, const N: usize> Rollout<OBS, P, E, N> {
    /// Empty.
    pub const fn new() -> Self {
        Self { steps: HVec::new() }
    }

    /// Append one time step of all environments; `Err(RolloutFull)` when `N` are stored.
    pub fn push(&mut self, step: [Step<OBS, P>; E]) -> Result<(), Error> {
        self.steps.push(step).map_err(|_| Error::RolloutFull)
    }

    /// Forget all steps.
    pub fn clear(&mut self) {
        self.steps.clear();
    }

    /// Stored time steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// No time steps stored.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// `N` time steps stored.
    pub fn is_full(&self) -> bool {
        self.steps.is_full()
    }

    /// Time-major steps.
    pub fn steps(&self) -> &[[Step<OBS, P>; E]] {
        &self.steps
    }

    /// Every stored sample (`len() · E`), time-major.
    pub fn samples(&self) -> impl Iterator<Item = &Step<OBS, P>> {
        self.steps.iter().flat_map(|s| s.iter())
    }

    /// Fill advantages and returns (GAE(λ), see the module docs), bootstrapping the last step
    /// of environment `e` from `last_values[e] = V(s_{N})`.
    pub fn compute_returns(&mut self, last_values: &[f32; E], gamma: f32, lambda: f32) {
        let n = self.steps.len();
        for e in 0..E {
            let mut gae = Gae::new(last_values[e], gamma, lambda);
            for t in (0..n).rev() {
                let s = &mut self.steps[t][e];
                (s.advantage, s.ret) = gae.step(s.reward, s.value, s.end);
            }
        }
    }

    /// Every stored number finite.
    pub fn is_finite(&self) -> bool {
        self.samples().all(|s| s.is_finite())
    }
}

/// GAE(λ) for one environment, walked backwards in time; the recursion every rollout storage
/// (this crate's [`Rollout`], the host's tensors) shares.
///
/// ```
/// use acktr_core::{Ending, Gae};
/// // Two steps, γ = 0.5, λ = 1, bootstrap V = 4 after the last: R_1 = 1 + 0.5·4 = 3,
/// // R_0 = 1 + 0.5·3 = 2.5.
/// let mut g = Gae::new(4.0, 0.5, 1.0);
/// let (_, r1) = g.step(1.0, 0.0, Ending::Continues);
/// let (_, r0) = g.step(1.0, 0.0, Ending::Continues);
/// assert_eq!((r1, r0), (3.0, 2.5));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Gae {
    next_value: f32,
    gae: f32,
    gamma: f32,
    lambda: f32,
}

impl Gae {
    /// Start after the last stored step, whose successor has value `last_value`.
    pub fn new(last_value: f32, gamma: f32, lambda: f32) -> Self {
        Self {
            next_value: last_value,
            gae: 0.0,
            gamma,
            lambda,
        }
    }

    /// The previous step (`reward`, `value` = V(s_t), how it ended): returns `(Â_t, R_t)`.
    #[inline]
    pub fn step(&mut self, reward: f32, value: f32, end: Ending) -> (f32, f32) {
        let (next_v, carry) = match end {
            Ending::Continues => (self.next_value, 1.0),
            Ending::Terminated => (0.0, 0.0),
            Ending::Truncated { bootstrap } => (bootstrap, 0.0),
        };
        let delta = reward + self.gamma * next_v - value;
        self.gae = delta + self.gamma * self.lambda * carry * self.gae;
        self.next_value = value;
        (self.gae, self.gae + value)
    }
}
