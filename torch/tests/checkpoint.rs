//! A tch learner restored from its checkpoint blobs continues exactly as the learner that
//! wrote them (weights, momentum and K-FAC statistics all restored), and blobs from another
//! network are refused.

mod common;

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
    common::rollout(common::pattern(BATCH * OBS, k), OBS, ACTIONS, 1, k)
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
    assert_ne!(common::weights(&original), common::weights(&restored));
    restored.load(&blobs).unwrap();
    assert_eq!(common::weights(&original), common::weights(&restored));
    for k in 10..13 {
        tch::manual_seed(100 + k as i64);
        let a = original.update(&rollout(k)).unwrap();
        tch::manual_seed(100 + k as i64);
        let b = restored.update(&rollout(k)).unwrap();
        assert_eq!(a.quadratic_form, b.quadratic_form, "update {k}");
        assert_eq!(
            common::weights(&original),
            common::weights(&restored),
            "update {k}"
        );
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
