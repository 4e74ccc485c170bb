//! The core's Gymnasium-exact environments as a [`VecEnv`], no Python involved.

use acktr_core::env::{
    Acrobot, Action, ActionSpace, CartPole, Env, MountainCarContinuous, Pendulum,
};

use super::{Actions, EpisodeInfo, Space, StepBatch, VecEnv};
use crate::error::{HostError, Result};

/// Ids served natively.
pub const IDS: [&str; 4] = [
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCarContinuous-v0",
];

/// `num_envs` copies of a core environment.
pub struct NativeVecEnv<En, const OBS: usize> {
    id: &'static str,
    envs: Vec<En>,
    space: Space,
    shape: [usize; 1],
    ep_ret: Vec<f64>,
    ep_len: Vec<u64>,
}

/// Build a native vector env for `id`, or `None` if `id` is not native.
pub fn make(id: &str, num_envs: usize) -> Option<Box<dyn VecEnv>> {
    Some(match id {
        "CartPole-v1" => Box::new(NativeVecEnv::<_, 4>::new(
            IDS[0],
            num_envs,
            CartPole::default,
        )),
        "Pendulum-v1" => Box::new(NativeVecEnv::<_, 3>::new(
            IDS[1],
            num_envs,
            Pendulum::default,
        )),
        "Acrobot-v1" => Box::new(NativeVecEnv::<_, 6>::new(
            IDS[2],
            num_envs,
            Acrobot::default,
        )),
        "MountainCarContinuous-v0" => Box::new(NativeVecEnv::<_, 2>::new(
            IDS[3],
            num_envs,
            MountainCarContinuous::default,
        )),
        _ => return None,
    })
}

impl<En: Env<OBS>, const OBS: usize> NativeVecEnv<En, OBS> {
    /// `num_envs` environments made by `make_env`.
    pub fn new(id: &'static str, num_envs: usize, make_env: impl Fn() -> En) -> Self {
        let envs: Vec<En> = (0..num_envs).map(|_| make_env()).collect();
        let space = match envs[0].action_space() {
            ActionSpace::Discrete(n) => Space::Discrete(n),
            ActionSpace::Continuous { dim, low, high } => Space::Box {
                low: vec![low; dim],
                high: vec![high; dim],
            },
        };
        Self {
            id,
            envs,
            space,
            shape: [OBS],
            ep_ret: vec![0.0; num_envs],
            ep_len: vec![0; num_envs],
        }
    }

    /// The environments themselves (e.g. to read their exact state in tests).
    pub fn envs(&self) -> &[En] {
        &self.envs
    }
}

impl<En: Env<OBS>, const OBS: usize> VecEnv for NativeVecEnv<En, OBS> {
    fn id(&self) -> &str {
        self.id
    }
    fn num_envs(&self) -> usize {
        self.envs.len()
    }
    fn obs_shape(&self) -> &[usize] {
        &self.shape
    }
    fn action_space(&self) -> &Space {
        &self.space
    }

    fn reset(&mut self, seed: u64) -> Result<Vec<f32>> {
        let mut obs = Vec::with_capacity(self.envs.len() * OBS);
        for (i, e) in self.envs.iter_mut().enumerate() {
            obs.extend_from_slice(&e.reset(Some(seed.wrapping_add(i as u64))));
        }
        self.ep_ret.iter_mut().for_each(|r| *r = 0.0);
        self.ep_len.iter_mut().for_each(|l| *l = 0);
        Ok(obs)
    }

    fn step(&mut self, actions: &Actions) -> Result<StepBatch> {
        let n = self.envs.len();
        let mut out = StepBatch {
            obs: Vec::with_capacity(n * OBS),
            rewards: Vec::with_capacity(n),
            terminated: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
            final_obs: vec![None; n],
            episodes: Vec::new(),
        };
        for (i, env) in self.envs.iter_mut().enumerate() {
            let action = match actions {
                Actions::Discrete(a) if a.len() == n => Action::Discrete(a[i]),
                Actions::Continuous(a) if n > 0 && a.len() % n == 0 => {
                    let d = a.len() / n;
                    Action::Continuous(&a[i * d..(i + 1) * d])
                }
                _ => {
                    return Err(HostError::InvalidSetting(
                        "action batch does not match the environments".into(),
                    ))
                }
            };
            let tr = env
                .step(action)
                .map_err(|e| HostError::Core(acktr_core::Error::Env(e)))?;
            self.ep_ret[i] += tr.reward as f64;
            self.ep_len[i] += 1;
            out.rewards.push(tr.reward);
            out.terminated.push(tr.terminated);
            out.truncated.push(tr.truncated);
            if tr.terminated || tr.truncated {
                out.final_obs[i] = Some(tr.obs.to_vec());
                out.episodes.push(EpisodeInfo {
                    env: i,
                    ret: self.ep_ret[i],
                    len: self.ep_len[i],
                });
                self.ep_ret[i] = 0.0;
                self.ep_len[i] = 0;
                out.obs.extend_from_slice(&env.reset(None));
            } else {
                out.obs.extend_from_slice(&tr.obs);
            }
        }
        Ok(out)
    }
}
