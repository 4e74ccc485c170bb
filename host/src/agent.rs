//! A backend's policy and learner behind one trait: the trainer loop, evaluation and export
//! are written once; the native backend (acktr-core, fixed sizes) and the libtorch backend
//! differ only here.

use acktr_core::{Collective, Config, Ending, Gae, UpdateStats};

use crate::error::{HostError, Result};

/// A run-time sized rollout: `steps × envs` samples, time-major.
#[derive(Clone, Debug, Default)]
pub struct HostRollout {
    /// Environments.
    pub num_envs: usize,
    /// Flattened observation length.
    pub obs_len: usize,
    /// Policy outputs per action (one-hot width, or action dimension).
    pub act_len: usize,
    /// Observations.
    pub obs: Vec<f32>,
    /// Actions (one-hot for categorical policies).
    pub actions: Vec<f32>,
    /// Rewards.
    pub rewards: Vec<f32>,
    /// `V(s)` when acting.
    pub values: Vec<f32>,
    /// How each step ended.
    pub ends: Vec<Ending>,
    /// Filled by [`HostRollout::compute_returns`].
    pub advantages: Vec<f32>,
    /// Filled by [`HostRollout::compute_returns`].
    pub returns: Vec<f32>,
}

impl HostRollout {
    /// Empty storage for `num_envs` environments.
    pub fn new(num_envs: usize, obs_len: usize, act_len: usize) -> Self {
        Self {
            num_envs,
            obs_len,
            act_len,
            ..Self::default()
        }
    }

    /// Forget all steps.
    pub fn clear(&mut self) {
        self.obs.clear();
        self.actions.clear();
        self.rewards.clear();
        self.values.clear();
        self.ends.clear();
        self.advantages.clear();
        self.returns.clear();
    }

    /// Samples stored.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// GAE(λ) advantages and returns with the core's recursion ([`Gae`]).
    pub fn compute_returns(&mut self, last_values: &[f32], gamma: f32, lambda: f32) {
        let (n, e) = (self.len(), self.num_envs);
        self.advantages = vec![0.0; n];
        self.returns = vec![0.0; n];
        for env in 0..e {
            let mut gae = Gae::new(last_values[env], gamma, lambda);
            for i in (env..n).step_by(e).rev() {
                (self.advantages[i], self.returns[i]) =
                    gae.step(self.rewards[i], self.values[i], self.ends[i]);
            }
        }
    }

    /// `1 − Var[R − V] / Var[R]` over the rollout's returns `R` and the values `V` it acted
    /// with (stable-baselines3's `train/explained_variance`): 1 for a perfect critic, 0 for one
    /// no better than a constant, negative for a worse one; NaN when the returns do not vary.
    pub fn explained_variance(&self) -> f64 {
        let var = |v: &mut dyn Iterator<Item = f64>| {
            let (mut n, mut sum, mut sq) = (0.0, 0.0, 0.0);
            for x in v {
                n += 1.0;
                sum += x;
                sq += x * x;
            }
            let mean = sum / n;
            sq / n - mean * mean
        };
        let r = || self.returns.iter().map(|&x| f64::from(x));
        let var_r = var(&mut r());
        let var_err = var(&mut r().zip(&self.values).map(|(r, &v)| r - f64::from(v)));
        if var_r > 0.0 {
            1.0 - var_err / var_r
        } else {
            f64::NAN
        }
    }
}

/// A policy with its learner.
pub trait Agent {
    /// For `n` observations (`n × obs_len`): actions (`n × act_len`, one-hot for categorical)
    /// and values.
    fn act(&mut self, obs: &[f32], n: usize, deterministic: bool) -> Result<(Vec<f32>, Vec<f32>)>;
    /// `V(s)` for `n` observations.
    fn values(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>>;
    /// One update from a rollout with returns.
    fn update(&mut self, rollout: &HostRollout) -> Result<UpdateStats>;
    /// One data-parallel update: this rank's rollout, the sums over ranks through `coll` (see
    /// [`acktr_core::Collective`]). Backends without it refuse more than one rank.
    fn update_data_parallel(
        &mut self,
        rollout: &HostRollout,
        coll: &mut dyn Collective,
    ) -> Result<UpdateStats> {
        if coll.ranks() == 1 {
            return self.update(rollout);
        }
        Err(no_data_parallel())
    }
    /// Join a data-parallel run: take rank 0's whole training state (the ranks start equal),
    /// and, with `sampler_seed`, a sampler of this rank's own (its actions and Fisher
    /// targets). Backends without it refuse more than one rank.
    fn join_data_parallel(
        &mut self,
        coll: &mut dyn Collective,
        sampler_seed: Option<u64>,
    ) -> Result<()> {
        let _ = sampler_seed;
        if coll.ranks() == 1 {
            return Ok(());
        }
        Err(no_data_parallel())
    }
    /// The learner's settings.
    fn config(&self) -> Config;
    /// Change the settings (learning-rate schedule).
    fn set_config(&mut self, config: Config) -> Result<()>;
    /// Completed updates.
    fn updates(&self) -> u32;
    /// Everything needed to resume, as named blobs.
    fn save(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Restore from [`Agent::save`]'s blobs.
    fn load(&mut self, blobs: &[(String, Vec<u8>)]) -> Result<()>;
    /// The policy in acktr-core's file format (MLP policies only).
    fn export(&self) -> Result<Vec<u8>>;
    /// Backend and network, for the run's config.
    fn describe(&self) -> serde_json::Value;
}

fn no_data_parallel() -> HostError {
    HostError::Distributed(
        "this backend does not train across MPI ranks (the native and tch backends do)".into(),
    )
}

/// `f32`s as little-endian bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes as `f32`s.
pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Check a checkpoint blob of `f32`s before [`bytes_f32`] reads it: a whole number of
/// little-endian `f32`s (no trailing bytes), every one finite. The error names the blob and
/// what is wrong (the caller adds the file).
pub fn check_f32_blob(name: &str, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "blob `{name}` is {} bytes, not a whole number of f32 values ({} trailing)",
            bytes.len(),
            bytes.len() % 4
        ));
    }
    match bytes_f32(bytes)
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite())
    {
        Some((i, x)) => Err(format!(
            "blob `{name}`: value {i} is {x} (weights and statistics must be finite)"
        )),
        None => Ok(()),
    }
}

/// Find a named blob.
pub fn blob<'a>(blobs: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    blobs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explained_variance_against_hand_computed_cases() {
        let mut r = HostRollout::new(1, 1, 1);
        r.returns = vec![1.0, 2.0, 3.0, 4.0];
        // A perfect critic, a constant one, and V = R − (±1): Var[R] = 1.25, Var[R − V] = 1.
        r.values = r.returns.clone();
        assert_eq!(r.explained_variance(), 1.0);
        r.values = vec![2.5; 4];
        assert!(r.explained_variance().abs() < 1e-12);
        r.values = vec![0.0, 3.0, 2.0, 5.0];
        assert!((r.explained_variance() - (1.0 - 1.0 / 1.25)).abs() < 1e-12);
        r.returns = vec![2.0; 4];
        assert!(r.explained_variance().is_nan());
    }
}
