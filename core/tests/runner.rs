//! What the runner hands the environments: a Gaussian policy's samples clipped to the action
//! box, against the same environments stepped by hand.
#![cfg(feature = "envs")]

mod common;

use acktr_core::env::{Action, ActionSpace, Env, MountainCarContinuous};
use acktr_core::{env_action, Activation, ActorCritic, HeadKind, Rollout, Runner};
use common::Rng;

/// Gymnasium's MountainCarContinuous charges `0.1·a²` on the action it is given, so a reward
/// tells which action reached it. Stepping twins by hand with `clamp(a, −1, 1)` of each stored
/// sample must give every reward bit for bit; without the clip the rewards of the samples
/// outside the box differ.
#[test]
fn continuous_actions_reach_the_environment_clipped_and_the_rollout_keeps_the_sample() {
    let mut rng = Rng(7);
    let mut net = ActorCritic::<2, 8, 1, 2>::new(Activation::Tanh, HeadKind::Gaussian, &mut rng);
    net.log_std = [1.5]; // σ ≈ 4.5: most samples fall outside [−1, 1]
    let mut envs: [MountainCarContinuous; 2] =
        core::array::from_fn(|_| MountainCarContinuous::default());
    let mut runner = Runner::new(&mut envs, 3);
    let mut rollout = Rollout::<2, 1, 2, 50>::new();
    runner
        .collect(&net, &mut envs, &mut rollout, 0.99, 0.95, &mut rng, |_| {})
        .unwrap();

    let mut twins: [MountainCarContinuous; 2] =
        core::array::from_fn(|_| MountainCarContinuous::default());
    for (e, t) in twins.iter_mut().enumerate() {
        t.reset(Some(3 + e as u64));
    }
    let mut outside = 0;
    for step in rollout.steps() {
        for (s, twin) in step.iter().zip(twins.iter_mut()) {
            let a = s.action[0];
            outside += usize::from(a.abs() > 1.0);
            let tr = twin
                .step(Action::Continuous(&[a.clamp(-1.0, 1.0)]))
                .unwrap();
            assert_eq!(tr.reward.to_bits(), s.reward.to_bits(), "action {a}");
            assert!(s.reward >= -0.1, "cost beyond the box's: {}", s.reward);
        }
    }
    assert!(outside >= 30, "only {outside} of 100 samples left the box");
}

#[test]
fn env_action_clips_into_its_buffer_and_keeps_nan_for_the_environment_to_refuse() {
    let space = ActionSpace::Continuous {
        dim: 3,
        low: -2.0,
        high: 0.5,
    };
    let a = [-7.0, 0.25, f32::INFINITY];
    let mut buf = [0.0; 3];
    let act = env_action(HeadKind::Gaussian, space, &a, &mut buf).unwrap();
    assert_eq!(act, Action::Continuous(&[-2.0, 0.25, 0.5]));
    let nan = [f32::NAN, 0.0, 0.0];
    match env_action(HeadKind::Gaussian, space, &nan, &mut buf).unwrap() {
        Action::Continuous(x) => assert!(x[0].is_nan() && x[1] == 0.0),
        other => panic!("{other:?}"),
    }
    let mut env = MountainCarContinuous::default();
    env.reset(Some(0));
    let one = [f32::NAN];
    let mut b1 = [0.0];
    let space = env.action_space();
    assert!(env
        .step(env_action(HeadKind::Gaussian, space, &one, &mut b1).unwrap())
        .is_err());
    // A box given upside down clips without panicking (`f32::clamp` would).
    let upside = ActionSpace::Continuous {
        dim: 1,
        low: 1.0,
        high: -1.0,
    };
    assert!(env_action(HeadKind::Gaussian, upside, &[0.0], &mut b1).is_ok());
}
