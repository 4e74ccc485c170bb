//! Helpers shared by the integration tests: deterministic synthetic batches and a flat copy of
//! a net's weights.
#![allow(dead_code)] // each test file uses its own subset

use acktr_host::agent::HostRollout;
use acktr_torch::agent::TorchAgent;

/// `len` deterministic values in `[−1, 1]`: `((i + shift)·37 mod 23)/11 − 1`.
pub fn pattern(len: usize, shift: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i + shift) * 37 % 23) as f32 / 11.0) - 1.0)
        .collect()
}

/// A batch of `obs.len() / obs_len` samples of batch `k`: the given observations, one-hot
/// actions `(i·action_step + k) mod actions`, zero rewards and values, advantages
/// `((7i + k) mod 5)/2 − 1` and returns `((3i + k) mod 7)/3`.
pub fn rollout(
    obs: Vec<f32>,
    obs_len: usize,
    actions: usize,
    action_step: usize,
    k: usize,
) -> HostRollout {
    let batch = obs.len() / obs_len;
    let mut r = HostRollout::new(batch, obs_len, actions);
    r.obs = obs;
    for i in 0..batch {
        let mut a = vec![0.0; actions];
        a[(i * action_step + k) % actions] = 1.0;
        r.actions.extend_from_slice(&a);
    }
    r.rewards = vec![0.0; batch];
    r.values = vec![0.0; batch];
    r.ends = vec![acktr_core::Ending::Continues; batch];
    r.advantages = (0..batch)
        .map(|i| ((i * 7 + k) % 5) as f32 / 2.0 - 1.0)
        .collect();
    r.returns = (0..batch).map(|i| ((i * 3 + k) % 7) as f32 / 3.0).collect();
    r
}

/// Every parameter of the agent's net, flattened in `params()` order.
pub fn weights(a: &TorchAgent) -> Vec<f32> {
    a.learner
        .net
        .params()
        .iter()
        .flat_map(|p| Vec::<f32>::try_from(p.detach().flatten(0, -1)).unwrap())
        .collect()
}
