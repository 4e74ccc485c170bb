//! The core's Gymnasium-exact environments as a [`VecEnv`], no Python involved.
//!
//! Vector observations pass through as they are; MinAtar Breakout's `10×10×4` (HWC, the
//! package's layout, which the core keeps) is transposed to `4×10×10` (CHW), the trait's image
//! layout and what the Gymnasium bridge delivers for the same id.

use acktr_core::env::{
    Acrobot, Action, ActionSpace, Breakout, CartPole, Env, MountainCarContinuous, Pendulum,
    BREAKOUT_OBS,
};

use super::{Actions, EpisodeInfo, Space, StepBatch, VecEnv};
use crate::error::{HostError, Result};

/// Ids served natively.
pub const IDS: [&str; 5] = [
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCarContinuous-v0",
    "MinAtar/Breakout-v1",
];

/// `num_envs` copies of a core environment.
pub struct NativeVecEnv<En, const OBS: usize> {
    id: &'static str,
    envs: Vec<En>,
    space: Space,
    shape: Vec<usize>,
    /// Appends one core observation in the trait's layout (see [`NativeVecEnv::with_layout`]).
    write_obs: fn(&[f32; OBS], &mut Vec<f32>),
    ep_ret: Vec<f64>,
    ep_len: Vec<u64>,
}

/// A vector observation, unchanged.
fn flat<const OBS: usize>(obs: &[f32; OBS], out: &mut Vec<f32>) {
    out.extend_from_slice(obs);
}

/// MinAtar's `(row, col, channel)` = `10×10×4` as `(channel, row, col)` = `4×10×10`: the value
/// of cell `k = row·10 + col`, channel `c` moves from `4k + c` to `100c + k`.
fn minatar_chw(obs: &[f32; BREAKOUT_OBS], out: &mut Vec<f32>) {
    const CHANNELS: usize = 4;
    for c in 0..CHANNELS {
        out.extend(obs.iter().skip(c).step_by(CHANNELS));
    }
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
        "MinAtar/Breakout-v1" => Box::new(NativeVecEnv::with_layout(
            IDS[4],
            num_envs,
            Breakout::default,
            vec![4, 10, 10],
            minatar_chw,
        )),
        _ => return None,
    })
}

impl<En: Env<OBS>, const OBS: usize> NativeVecEnv<En, OBS> {
    /// `num_envs` environments made by `make_env`, vector observations of shape `[OBS]`.
    pub fn new(id: &'static str, num_envs: usize, make_env: impl Fn() -> En) -> Self {
        Self::with_layout(id, num_envs, make_env, vec![OBS], flat::<OBS>)
    }

    /// `num_envs` environments made by `make_env`, whose observations `write_obs` rearranges
    /// into `shape` (e.g. an HWC image into CHW). `write_obs` must append exactly `OBS` values,
    /// and `shape`'s product must be `OBS`.
    pub fn with_layout(
        id: &'static str,
        num_envs: usize,
        make_env: impl Fn() -> En,
        shape: Vec<usize>,
        write_obs: fn(&[f32; OBS], &mut Vec<f32>),
    ) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), OBS);
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
            shape,
            write_obs,
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
            (self.write_obs)(&e.reset(Some(seed.wrapping_add(i as u64))), &mut obs);
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
                let mut last = Vec::with_capacity(OBS);
                (self.write_obs)(&tr.obs, &mut last);
                out.final_obs[i] = Some(last);
                out.episodes.push(EpisodeInfo {
                    env: i,
                    ret: self.ep_ret[i],
                    len: self.ep_len[i],
                });
                self.ep_ret[i] = 0.0;
                self.ep_len[i] = 0;
                (self.write_obs)(&env.reset(None), &mut out.obs);
            } else {
                (self.write_obs)(&tr.obs, &mut out.obs);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envs::Actions;

    #[test]
    fn minatar_chw_moves_each_channel_to_its_plane() {
        // Value = a code of (row, col, channel) at its HWC index.
        let mut hwc = [0.0f32; BREAKOUT_OBS];
        for (i, v) in hwc.iter_mut().enumerate() {
            let (cell, ch) = (i / 4, i % 4);
            *v = (ch * 1000 + cell) as f32;
        }
        let mut chw = Vec::new();
        minatar_chw(&hwc, &mut chw);
        assert_eq!(chw.len(), BREAKOUT_OBS);
        for ch in 0..4 {
            for row in 0..10 {
                for col in 0..10 {
                    let cell = row * 10 + col;
                    assert_eq!(chw[ch * 100 + cell], (ch * 1000 + cell) as f32);
                }
            }
        }
    }

    #[test]
    fn native_breakout_is_the_core_env_channel_first() {
        let mut v = make("MinAtar/Breakout-v1", 2).expect("native id");
        assert_eq!(v.obs_shape(), &[4, 10, 10]);
        assert_eq!(v.action_space(), &Space::Discrete(3));
        let mut cores = [Breakout::default(), Breakout::default()];
        let to_chw = |o: &[f32; BREAKOUT_OBS]| {
            let mut out = Vec::new();
            minatar_chw(o, &mut out);
            out
        };
        let obs = v.reset(40).expect("reset");
        let want: Vec<f32> = (0..2)
            .flat_map(|i| to_chw(&cores[i].reset(Some(40 + i as u64))))
            .collect();
        assert_eq!(obs, want);
        // The bricks fill rows 1..=3 of channel 3 (plane 3 = values 300..400).
        assert_eq!(obs[300..400].iter().sum::<f32>(), 30.0);
        let mut ended = 0;
        for t in 0..300usize {
            let a = [t % 3, (t / 7) % 3];
            let b = v.step(&Actions::Discrete(a.to_vec())).expect("step");
            for (i, core) in cores.iter_mut().enumerate() {
                let tr = core.step(Action::Discrete(a[i])).expect("core step");
                assert_eq!(b.rewards[i], tr.reward);
                assert_eq!(b.terminated[i], tr.terminated);
                let next = if tr.terminated {
                    ended += 1;
                    assert_eq!(b.final_obs[i].as_deref(), Some(&to_chw(&tr.obs)[..]));
                    core.reset(None)
                } else {
                    tr.obs
                };
                assert_eq!(
                    &b.obs[i * 400..(i + 1) * 400],
                    &to_chw(&next)[..],
                    "step {t}"
                );
            }
        }
        assert!(ended >= 2, "{ended}");
    }
}
