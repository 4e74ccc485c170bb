//! Train the firmware demo's policy on the nominal CartPole-v1 and write it as a policy file.
//!
//! ```sh
//! cargo run --release -p acktr-core --example export_cartpole -- firmware-demo/policy/cartpole.ackp
//! ```
//!
//! (the path is also the default). This regenerates the file that `firmware-demo` embeds with
//! `include_bytes!`: a 4-32-32 tanh shared actor-critic with a categorical head
//! (`SharedActorCritic<4, 32, 2>`), trained with ACKTR from a fixed seed (16 environments ×
//! 20 steps per update, the CartPole preset `kl_clip = 0.01`, `value_coef = 0.05`) until a
//! 20-episode deterministic evaluation averages ≥ 475, then written with
//! [`acktr_core::write_policy`] (no observation normaliser). The run is deterministic: the same
//! build writes the same bytes. See `docs/embedded.md`.
//!
//! This stand-in exists until the host trainer's `acktr export` command writes the same format
//! from a libtorch-trained network; then that command replaces this example.

use acktr_core::env::{CartPole, Pcg64};
use acktr_core::{
    encoded_len, evaluate, read_policy, write_policy, Activation, Config, HeadKind, Learner,
    Rollout, Runner, SharedActorCritic,
};
use rand_core::SeedableRng;

const E: usize = 16; // environments
const N: usize = 20; // steps per environment per update
const SEED: u64 = 0;
const MAX_ENV_STEPS: u64 = 1_000_000;
/// Seed of the first reset of the 20-episode deterministic evaluation that decides "trained".
const EVAL_SEED: u64 = 77;
const DEFAULT_PATH: &str = "firmware-demo/policy/cartpole.ackp";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_PATH.into());

    let mut rng = Pcg64::seed_from_u64(SEED);
    let net = SharedActorCritic::<4, 32, 2>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    // The CartPole preset of `train_cartpole` (see docs/algorithm.md).
    let cfg = Config {
        kl_clip: 0.01,
        value_coef: 0.05,
        ..Config::default()
    };
    let mut learner = Learner::new(cfg, net)?;
    let mut envs: [CartPole; E] = core::array::from_fn(|_| CartPole::default());
    let mut runner = Runner::new(&mut envs, SEED * 1000);
    let mut rollout = Rollout::<4, 2, E, N>::new();
    let (gamma, lambda) = (cfg.gamma, cfg.gae_lambda);
    let mut eval = 0.0;
    while eval < 475.0 {
        if runner.env_steps() >= MAX_ENV_STEPS {
            return Err(format!(
                "not trained after {MAX_ENV_STEPS} env steps (last eval {eval:.1}); nothing written"
            )
            .into());
        }
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
        if learner.updates() % 10 == 0 {
            let mut eval_env = CartPole::default();
            eval = evaluate(&learner.net, &mut eval_env, 20, EVAL_SEED, true, &mut rng)?;
        }
    }
    // A second opinion on seeds the stopping rule never saw.
    let mut eval_env = CartPole::default();
    let fresh = evaluate(&learner.net, &mut eval_env, 20, 10_000, true, &mut rng)?;
    println!(
        "trained: 20-episode deterministic eval {eval:.1} after {} env steps ({} updates); \
         on fresh seeds {fresh:.1}",
        runner.env_steps(),
        learner.updates()
    );

    let mut buf = vec![0u8; encoded_len(&learner.net, None)];
    let n = write_policy(&learner.net, None, &mut buf)?;
    // Read it back before writing: the file must load into the firmware's network type.
    let (back, _) = read_policy::<4, 32, 2, 1>(&buf[..n])?;
    assert_eq!(back, learner.net);
    if let Some(dir) = std::path::Path::new(&path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&path, &buf[..n])?;
    println!("wrote {n} bytes to {path}");
    Ok(())
}
