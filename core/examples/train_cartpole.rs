//! Train CartPole-v1 with acktr-core alone (no libtorch): the core's own training loop.
//!
//! `cargo run --release -p acktr-core --example train_cartpole -- [seed] [max_env_steps] [--a2c]`
//!
//! Prints progress, the env steps at which a 20-episode deterministic evaluation (run every 10
//! updates) first averaged ≥ 475, and a final evaluation on other seeds.

use acktr_core::env::{CartPole, Pcg64};
use acktr_core::{Activation, Config, HeadKind, Learner, Rollout, Runner, SharedActorCritic};
use rand_core::SeedableRng;

const E: usize = 16; // environments
const N: usize = 20; // steps per environment per update

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a2c = std::env::args().any(|a| a == "--a2c");
    let mut args = std::env::args().skip(1).filter(|a| a != "--a2c");
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let max_steps: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500_000);

    let mut rng = Pcg64::seed_from_u64(seed);
    let net = SharedActorCritic::<4, 64, 2>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    // CartPole preset: the paper's settings with a wider trust region and a smaller value-loss
    // weight, so the critic's share of ΔθᵀF̂Δθ (returns up to ~100) does not starve the policy.
    let cfg = if a2c {
        Config {
            eta_max: 3e-3,
            ..Config::a2c()
        }
    } else {
        Config {
            kl_clip: 0.01,
            value_coef: 0.05,
            ..Config::default()
        }
    };
    let mut learner = Learner::new(cfg, net)?;
    let mut envs: [CartPole; E] = core::array::from_fn(|_| CartPole::default());
    let mut runner = Runner::new(&mut envs, seed * 1000);
    let mut rollout = Rollout::<4, 2, E, N>::new();
    let mut recent = std::collections::VecDeque::new();
    let mut solved_at = None;
    let start = std::time::Instant::now();
    let (gamma, lambda) = (learner.config().gamma, learner.config().gae_lambda);
    while runner.env_steps() < max_steps {
        runner.collect(
            &learner.net,
            &mut envs,
            &mut rollout,
            gamma,
            lambda,
            &mut rng,
            |ep| {
                recent.push_back(ep.ret);
                if recent.len() > 20 {
                    recent.pop_front();
                }
            },
        )?;
        let stats = learner.update(&rollout, &mut rng)?;
        let mean = recent.iter().sum::<f32>() / recent.len().max(1) as f32;
        if learner.updates() % 100 == 0 {
            println!(
                "steps {:>7}  last-20 return {:>6.1}  entropy {:.3}  eta {:.4}  kl {:.2e}",
                runner.env_steps(),
                mean,
                stats.entropy,
                stats.step_size,
                stats.predicted_kl
            );
        }
        // Solved: a 20-episode deterministic evaluation, every 10 updates, averages ≥ 475.
        if learner.updates() % 10 == 0 {
            let mut eval_env = CartPole::default();
            let eval = acktr_core::evaluate(&learner.net, &mut eval_env, 20, 77, true, &mut rng)?;
            if eval >= 475.0 {
                solved_at = Some(runner.env_steps());
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut eval_env = CartPole::default();
    let eval = acktr_core::evaluate(
        &learner.net,
        &mut eval_env,
        20,
        10_000 + seed,
        true,
        &mut rng,
    )?;
    println!(
        "seed {seed}: reached 475 at {} env steps; {:.0} env-steps/s; deterministic eval (20 episodes) {eval:.1}",
        solved_at.map_or("never".into(), |s| s.to_string()),
        runner.env_steps() as f64 / secs
    );
    Ok(())
}
