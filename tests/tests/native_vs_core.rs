//! The native backend adds no maths of its own: `acktr train --backend native` (run folder,
//! vectorised environments, run-time sized rollout) and acktr-core's own loop (`Runner`,
//! `Rollout`, `Learner`) give bit-identical weights for the same seed and settings.

use acktr_core::env::{CartPole, Pcg64};
use acktr_core::{read_policy, Activation, ActorCritic, HeadKind, Learner, Rollout, Runner};
use rand_core::SeedableRng;

#[test]
fn native_backend_equals_the_core_loop() {
    const E: usize = 16;
    const N: usize = 20;
    const UPDATES: u64 = 12; // past the 10 cold steps into natural steps
    let seed = 7;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args: acktr_host::settings::TrainArgs = {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            t: acktr_host::settings::TrainArgs,
        }
        let total = (UPDATES * (E * N) as u64).to_string();
        let seed = seed.to_string();
        P::parse_from([
            "t",
            "--env",
            "CartPole-v1",
            // One shared trunk under one trust region (the core loop below builds that net).
            "--preset",
            "fast",
            "--backend",
            "native",
            "--seed",
            &seed,
            "--total-steps",
            &total,
            "--eval-episodes",
            "0",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .t
    };
    let settings = args.resolve().unwrap();
    acktr_host::train::train(&args).unwrap();
    let bytes = std::fs::read(out.join("policy.ackp")).unwrap();
    let (host_net, _) = read_policy::<4, 64, 2, 1>(&bytes).unwrap();

    // The core's own loop with the same seed and settings.
    let mut rng = Pcg64::seed_from_u64(seed);
    let net = ActorCritic::<4, 64, 2, 1>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let mut learner = Learner::new(settings.config, net).unwrap();
    let mut envs: [CartPole; E] = core::array::from_fn(|_| CartPole::default());
    let mut runner = Runner::new(&mut envs, seed);
    let mut rollout = Rollout::<4, 2, E, N>::new();
    let cfg = settings.config;
    for _ in 0..UPDATES {
        runner
            .collect(
                &learner.net,
                &mut envs,
                &mut rollout,
                cfg.gamma,
                cfg.gae_lambda,
                &mut rng,
                |_| {},
            )
            .unwrap();
        learner.update(&rollout, &mut rng).unwrap();
    }
    assert_eq!(learner.updates() as u64, UPDATES);
    assert!(
        learner.net == host_net,
        "the native backend's weights differ from the core loop's"
    );
}
