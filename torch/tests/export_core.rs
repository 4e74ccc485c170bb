//! A tch-trained MLP exported in the core's policy format acts as the tch policy: after a few
//! ACKTR updates (weights moved off their initialisation), the core's deterministic action
//! (`read_policy`, `act_deterministic`) equals the tch agent's deterministic action on 400
//! observations spread over CartPole's observation range.

mod common;

use acktr_core::{Activation, Config, HeadKind};
use acktr_host::agent::{Agent, HostRollout};
use acktr_torch::agent::TorchAgent;
use acktr_torch::net::Arch;
use tch::Device;

const OBS: usize = 4;
const ACTIONS: usize = 2;
const BATCH: usize = 32;

fn rollout(k: usize) -> HostRollout {
    common::rollout(common::pattern(BATCH * OBS, 3 * k), OBS, ACTIONS, 5, k)
}

#[test]
fn the_core_acts_as_the_trained_tch_policy() {
    let config = Config {
        cold_iters: 2,
        eta_max: 0.5,
        kl_clip: 0.05,
        ..Config::default()
    };
    let arch = Arch::Mlp {
        hidden: vec![64, 64],
        separate: false,
        activation: Activation::Tanh,
    };
    let mut agent = TorchAgent::new(
        config,
        arch,
        &[OBS],
        HeadKind::Categorical,
        ACTIONS,
        Device::Cpu,
        5,
    )
    .unwrap();
    let before = agent.export().unwrap();
    for k in 0..12 {
        agent.update(&rollout(k)).unwrap();
    }
    let bytes = agent.export().unwrap();
    assert_ne!(before, bytes, "the updates moved the weights");
    let (net, norm) =
        acktr_core::read_policy::<OBS, 64, ACTIONS, 1>(&bytes).expect("the core loads the export");
    assert!(norm.is_none() && net.is_finite());

    // Observations over and beyond CartPole's range (x ±4.8, θ ±0.42, velocities ±3).
    let n = 400;
    let scale = [4.8f32, 3.0, 0.42, 3.0];
    let obs: Vec<f32> = (0..n * OBS)
        .map(|i| {
            let u = ((i * 7919 + 13) % 1000) as f32 / 500.0 - 1.0;
            u * scale[i % OBS] * 1.2
        })
        .collect();
    let (tch_actions, _) = agent.act(&obs, n, true).unwrap();
    // Logit margins: rounding (libtorch's products against the core's loops) may flip only a
    // near-tie, so those are left out of the comparison.
    let x = tch::Tensor::from_slice(&obs).view([n as i64, OBS as i64]);
    let z = tch::no_grad(|| agent.learner.net.forward(&x).z);
    let margin = Vec::<f32>::try_from((z.select(1, 1) - z.select(1, 0)).abs()).unwrap();
    let mut ones = 0;
    for (i, row) in obs.chunks(OBS).enumerate() {
        if margin[i] < 1e-4 {
            continue;
        }
        let o: [f32; OBS] = row.try_into().unwrap();
        let core = net.act_deterministic(&o);
        let tch_row = &tch_actions[i * ACTIONS..(i + 1) * ACTIONS];
        assert_eq!(&core[..], tch_row, "observation {i} {o:?}");
        ones += (core[1] == 1.0) as usize;
    }
    // Both actions occur, so the comparison is not of a constant policy.
    assert!(ones > 0 && ones < n, "action 1 chosen {ones} times of {n}");
}
