//! Train the small MinAtar conv net ([`MinAtarSmall`]) on MinAtar Breakout with acktr-core
//! alone and write its policy file (version 2, with the conv encoder): the file the Breakout
//! firmware (`firmware-demo/breakout/`) embeds, until the host CLI trains this net itself.
//!
//! `cargo run --release -p acktr-core --example minatar_small_policy -- OUT [seed] [env_steps]`
//!
//! ACKTR with `Config::default()` (the paper's settings), 16 environments × 5 steps per
//! update, ReLU, seed 0 and 1,000,000 env steps unless given; deterministic (the same bytes
//! every run on one machine). Prints a 20-episode sampled evaluation and the file's length.

use acktr_core::env::{Breakout, Pcg64, BREAKOUT_OBS};
use acktr_core::{
    encoded_len, evaluate, write_policy, Activation, Config, HeadKind, MinAtarSmall,
    MinAtarSmallLearner, Rollout, Runner,
};
use rand_core::SeedableRng;

const E: usize = 16; // environments
const N: usize = 5; // steps per environment per update

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: minatar_small_policy OUT [seed] [env_steps]")?;
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let steps: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);

    let mut rng = Pcg64::seed_from_u64(seed);
    let net = MinAtarSmall::new(Activation::Relu, HeadKind::Categorical, &mut rng);
    let cfg = Config::default();
    let mut learner = Box::new(MinAtarSmallLearner::new(cfg, net)?);
    let mut envs: [Breakout; E] = core::array::from_fn(|_| Breakout::default());
    let mut runner = Runner::new(&mut envs, seed);
    let mut rollout = Box::new(Rollout::<BREAKOUT_OBS, 3, E, N>::new());
    while runner.env_steps() < steps {
        let (gamma, lambda) = (cfg.gamma, cfg.gae_lambda);
        runner.collect(
            &learner.net,
            &mut envs,
            &mut rollout,
            gamma,
            lambda,
            &mut rng,
            |_| {},
        )?;
        learner.update(&rollout, &mut rng)?;
    }
    let mut env = Breakout::default();
    let ret = evaluate(&learner.net, &mut env, 20, 1_000_000, false, &mut rng)?;
    let mut file = vec![0u8; encoded_len(&learner.net, None)];
    let len = write_policy(&learner.net, None, &mut file)?;
    std::fs::write(&out, &file[..len])?;
    println!(
        "MinAtar Breakout, seed {seed}, {steps} env steps: sampled return {ret:.2} (20 episodes); \
         wrote {out} ({len} bytes)"
    );
    Ok(())
}
