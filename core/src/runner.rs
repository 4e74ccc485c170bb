//! Collecting rollouts: `E` environments stepped in lockstep by one policy.

use rand_core::RngCore;

use crate::encoder::Encoder;
use crate::env::{Action, ActionSpace, Env};
use crate::head::{argmax, HeadKind};
use crate::policy::ActorCritic;
use crate::rollout::{Ending, Rollout, Step};
use crate::Error;

/// A finished episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    /// Which environment.
    pub env: usize,
    /// Undiscounted return.
    pub ret: f32,
    /// Steps.
    pub len: u32,
    /// Ended by the time limit rather than a terminal state.
    pub truncated: bool,
}

/// The environments' current observations and running episode totals.
#[derive(Clone, Debug)]
pub struct Runner<const OBS: usize, const E: usize> {
    obs: [[f32; OBS]; E],
    ep_ret: [f32; E],
    ep_len: [u32; E],
    steps: u64,
}

/// Turn a policy action `a` into an environment action, checking that the spaces agree. A
/// continuous action is clipped to its box, `clamp(aᵢ, low, high)`, into `buf`, as
/// stable-baselines3 does: environments such as MountainCarContinuous charge their action cost
/// on the action as given, so the Gaussian's tails would cost reward and move nothing. `a`
/// itself, the sample the rollout keeps, is unchanged; a NaN stays NaN, for the environment
/// to refuse.
pub fn env_action<'b, const P: usize>(
    head: HeadKind,
    space: ActionSpace,
    a: &[f32; P],
    buf: &'b mut [f32; P],
) -> Result<Action<'b>, Error> {
    match (head, space) {
        (HeadKind::Categorical, ActionSpace::Discrete(n)) if n == P => {
            Ok(Action::Discrete(argmax(a)))
        }
        (HeadKind::Gaussian, ActionSpace::Continuous { dim, low, high }) if dim == P => {
            for (b, &x) in buf.iter_mut().zip(a) {
                // Not `f32::clamp`: it panics on a box with `low > high`, and this keeps NaN.
                *b = if x < low {
                    low
                } else if x > high {
                    high
                } else {
                    x
                };
            }
            Ok(Action::Continuous(buf))
        }
        _ => Err(Error::EnvActionSpaceMismatch),
    }
}

impl<const OBS: usize, const E: usize> Runner<OBS, E> {
    /// Reset environment `e` with seed `seed + e`.
    pub fn new<En: Env<OBS>>(envs: &mut [En; E], seed: u64) -> Self {
        let mut obs = [[0.0; OBS]; E];
        for (e, (o, env)) in obs.iter_mut().zip(envs.iter_mut()).enumerate() {
            *o = env.reset(Some(seed.wrapping_add(e as u64)));
        }
        Self {
            obs,
            ep_ret: [0.0; E],
            ep_len: [0; E],
            steps: 0,
        }
    }

    /// Environment steps taken so far (all environments).
    pub fn env_steps(&self) -> u64 {
        self.steps
    }

    /// Fill `rollout` (cleared first) with `N` steps of every environment, acting with `net`
    /// (whose encoder `Enc` reads the `OBS` observation numbers into its trunks' `X` inputs;
    /// `X = OBS` for the default [`Identity`](crate::Identity)); computes returns with
    /// `gamma`, `lambda`. Calls `on_episode` for every finished episode.
    #[allow(clippy::too_many_arguments)]
    pub fn collect<
        En: Env<OBS>,
        const H: usize,
        const P: usize,
        const T: usize,
        const N: usize,
        const X: usize,
        Enc: Encoder<OBS, X>,
    >(
        &mut self,
        net: &ActorCritic<X, H, P, T, OBS, Enc>,
        envs: &mut [En; E],
        rollout: &mut Rollout<OBS, P, E, N>,
        gamma: f32,
        lambda: f32,
        rng: &mut impl RngCore,
        mut on_episode: impl FnMut(Episode),
    ) -> Result<(), Error> {
        rollout.clear();
        for _ in 0..N {
            let mut batch = [Step::new([0.0; OBS], [0.0; P], 0.0, 0.0, Ending::Continues); E];
            for e in 0..E {
                let (a, v, _) = net.act(&self.obs[e], rng);
                let env = &mut envs[e];
                let mut clipped = [0.0; P];
                let tr = env
                    .step(env_action(net.head, env.action_space(), &a, &mut clipped)?)
                    .map_err(Error::Env)?;
                self.ep_ret[e] += tr.reward;
                self.ep_len[e] += 1;
                let end = if tr.terminated {
                    Ending::Terminated
                } else if tr.truncated {
                    Ending::Truncated {
                        bootstrap: net.value(&tr.obs),
                    }
                } else {
                    Ending::Continues
                };
                batch[e] = Step::new(self.obs[e], a, tr.reward, v, end);
                if tr.terminated || tr.truncated {
                    on_episode(Episode {
                        env: e,
                        ret: self.ep_ret[e],
                        len: self.ep_len[e],
                        truncated: !tr.terminated,
                    });
                    self.ep_ret[e] = 0.0;
                    self.ep_len[e] = 0;
                    self.obs[e] = env.reset(None);
                } else {
                    self.obs[e] = tr.obs;
                }
            }
            rollout.push(batch)?;
            self.steps += E as u64;
        }
        let mut last = [0.0; E];
        for (l, o) in last.iter_mut().zip(self.obs.iter()) {
            *l = net.value(o);
        }
        rollout.compute_returns(&last, gamma, lambda);
        Ok(())
    }
}

/// Mean undiscounted return of `episodes` deterministic (`deterministic = true`) or sampled
/// episodes of `net` in `env`, the first reset with `seed` (`X`, `Enc`: see
/// [`Runner::collect`]).
pub fn evaluate<
    En: Env<OBS>,
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const X: usize,
    Enc: Encoder<OBS, X>,
>(
    net: &ActorCritic<X, H, P, T, OBS, Enc>,
    env: &mut En,
    episodes: u32,
    seed: u64,
    deterministic: bool,
    rng: &mut impl RngCore,
) -> Result<f32, Error> {
    let mut total = 0.0;
    for i in 0..episodes {
        let mut obs = env.reset(if i == 0 { Some(seed) } else { None });
        loop {
            let a = if deterministic {
                net.act_deterministic(&obs)
            } else {
                net.act(&obs, rng).0
            };
            let mut clipped = [0.0; P];
            let tr = env
                .step(env_action(net.head, env.action_space(), &a, &mut clipped)?)
                .map_err(Error::Env)?;
            total += tr.reward;
            obs = tr.obs;
            if tr.terminated || tr.truncated {
                break;
            }
        }
    }
    Ok(total / episodes.max(1) as f32)
}
