//! A tch learner restored from its checkpoint blobs continues exactly as the learner that
//! wrote them (weights, momentum and K-FAC statistics all restored), and blobs from another
//! network are refused.

use acktr_core::{Activation, Config, HeadKind};
use acktr_host::agent::{Agent, HostRollout};
use acktr_torch::agent::TorchAgent;
use acktr_torch::net::Arch;
use tch::Device;

const OBS: usize = 3;
const ACTIONS: usize = 2;
const BATCH: usize = 24;

fn agent(hidden: usize, seed: u64) -> TorchAgent {
    let config = Config {
        cold_iters: 0,
        stat_stride: 2,
        ..Config::default()
    };
    let arch = Arch::Mlp {
        hidden: vec![hidden, hidden],
        separate: false,
        activation: Activation::Tanh,
    };
    TorchAgent::new(
        config,
        arch,
        &[OBS],
        HeadKind::Categorical,
        ACTIONS,
        Device::Cpu,
        seed,
    )
    .unwrap()
}

fn rollout(k: usize) -> HostRollout {
    let mut r = HostRollout::new(BATCH, OBS, ACTIONS);
    r.obs = (0..BATCH * OBS)
        .map(|i| (((i + k) * 37 % 23) as f32 / 11.0) - 1.0)
        .collect();
    for i in 0..BATCH {
        let mut a = [0.0; ACTIONS];
        a[(i + k) % ACTIONS] = 1.0;
        r.actions.extend_from_slice(&a);
    }
    r.rewards = vec![0.0; BATCH];
    r.values = vec![0.0; BATCH];
    r.ends = vec![acktr_core::Ending::Continues; BATCH];
    r.advantages = (0..BATCH)
        .map(|i| ((i * 7 + k) % 5) as f32 / 2.0 - 1.0)
        .collect();
    r.returns = (0..BATCH).map(|i| ((i * 3 + k) % 7) as f32 / 3.0).collect();
    r
}

fn weights(a: &TorchAgent) -> Vec<f32> {
    a.learner
        .net
        .params()
        .iter()
        .flat_map(|p| Vec::<f32>::try_from(p.detach().flatten(0, -1)).unwrap())
        .collect()
}

#[test]
fn a_restored_learner_continues_as_the_original() {
    let mut original = agent(8, 1);
    // Ten updates: the eleventh recomputes the inverses in both learners (inverse_every 10),
    // so from the restored statistics they must take the same step.
    for k in 0..10 {
        original.update(&rollout(k)).unwrap();
    }
    let blobs = original.save().unwrap();
    assert!(blobs.iter().any(|(n, _)| n.starts_with("torch.kfac.s.")));
    let mut restored = agent(8, 2);
    assert_ne!(weights(&original), weights(&restored));
    restored.load(&blobs).unwrap();
    assert_eq!(weights(&original), weights(&restored));
    for k in 10..13 {
        tch::manual_seed(100 + k as i64);
        let a = original.update(&rollout(k)).unwrap();
        tch::manual_seed(100 + k as i64);
        let b = restored.update(&rollout(k)).unwrap();
        assert_eq!(a.quadratic_form, b.quadratic_form, "update {k}");
        assert_eq!(weights(&original), weights(&restored), "update {k}");
    }
    // Without the statistics, the first step differs (fresh factors from one batch).
    let mut fresh = agent(8, 2);
    let no_kfac: Vec<_> = blobs
        .iter()
        .filter(|(n, _)| !n.starts_with("torch.kfac."))
        .cloned()
        .collect();
    fresh.load(&no_kfac).unwrap();
    let mut again = agent(8, 3);
    again.load(&blobs).unwrap();
    tch::manual_seed(7);
    let a = again.update(&rollout(10)).unwrap();
    tch::manual_seed(7);
    let b = fresh.update(&rollout(10)).unwrap();
    assert_ne!(a.quadratic_form, b.quadratic_form);
}

#[test]
fn blobs_of_another_network_are_refused() {
    let mut small = agent(8, 1);
    small.update(&rollout(0)).unwrap();
    let blobs = small.save().unwrap();
    let mut large = agent(16, 1);
    let err = large.load(&blobs).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
}
