//! The Breakout firmware's fine-tuning protocol (`firmware-demo/breakout`) on the host, for
//! any policy files and settings: how a firmware author checks, before flashing, that the
//! device's settings gain on their own policies.
//!
//! ```text
//! cargo run --release -p acktr-core --example breakout_finetune -- [OPTIONS] POLICY.ackp...
//! ```
//!
//! Each policy (a `--arch minatar-small` export) is evaluated on the changed game (the paddle
//! moves on every other step), then fine-tuned there from the same start with ACKTR and with
//! momentum SGD, once per seed, and evaluated again; printed per policy: the deterministic
//! mean return before, after each run, the means and the gains; then the gains' means over
//! the policies. The defaults are the firmware's constants (batch, budget, seeds, evaluation,
//! both configs); the host's floating point differs from the Cortex-M4F's in the last bits,
//! so a run's numbers can differ slightly from the device's. Options: `--steps N` device
//! steps per run, `--seeds a,b,..`, `--kl-clip X` and `--eta X` (ACKTR's), `--sgd-lr X`,
//! `--stat-decay X` (ACKTR's), `--momentum X`, `--gae X`, `--ent X` (both optimizers').
use acktr_core::env::{Breakout, BreakoutParams, Pcg64, BREAKOUT_OBS};
use acktr_core::{
    evaluate, read_policy_into, Activation, Config, HeadKind, MinAtarSmallLearner, Optimizer,
    Rollout, Runner,
};

const ENVS: usize = 4;
const STEPS: usize = 4;
type Batch = Rollout<BREAKOUT_OBS, 3, ENVS, STEPS>;
const EVAL_EPISODES: u32 = 20;
const EVAL_SEED: u64 = 1000;
const EVAL_CAP: u32 = 1000;

fn changed_game(eval: bool) -> BreakoutParams {
    BreakoutParams {
        paddle_period: 2,
        max_episode_steps: if eval { Some(EVAL_CAP) } else { None },
        ..BreakoutParams::default()
    }
}

fn eval(learner: &MinAtarSmallLearner) -> Result<f32, String> {
    let mut env = Breakout::new(changed_game(true));
    let mut rng = Pcg64::from_seed(0);
    evaluate(
        &learner.net,
        &mut env,
        EVAL_EPISODES,
        EVAL_SEED,
        true,
        &mut rng,
    )
    .map_err(|e| e.to_string())
}

/// `learner` reset for `config` and loaded with `policy`.
fn load(learner: &mut MinAtarSmallLearner, policy: &[u8], config: Config) -> Result<(), String> {
    learner.reset(config).map_err(|e| e.to_string())?;
    read_policy_into(policy, &mut learner.net).map_err(|e| e.to_string())?;
    if learner.net.head != HeadKind::Categorical {
        return Err("not a categorical policy".into());
    }
    Ok(())
}

/// The return on the changed game after `steps` device steps of `config` from `policy`.
fn fine_tune(
    learner: &mut MinAtarSmallLearner,
    policy: &[u8],
    config: Config,
    seed: u64,
    steps: u64,
) -> Result<f32, String> {
    load(learner, policy, config)?;
    let mut batch = Box::new(Batch::new());
    let mut envs: [Breakout; ENVS] = core::array::from_fn(|_| Breakout::new(changed_game(false)));
    let mut runner = Runner::new(&mut envs, seed);
    let mut rng = Pcg64::from_seed(seed);
    while runner.env_steps() < steps {
        let (gamma, lambda) = (config.gamma, config.gae_lambda);
        runner
            .collect(
                &learner.net,
                &mut envs,
                &mut batch,
                gamma,
                lambda,
                &mut rng,
                |_| {},
            )
            .map_err(|e| e.to_string())?;
        learner
            .update(&batch, &mut rng)
            .map_err(|e| e.to_string())?;
    }
    eval(learner)
}

fn mean(x: &[f32]) -> f32 {
    x.iter().sum::<f32>() / x.len() as f32
}

fn main() -> Result<(), String> {
    // The firmware's (`firmware-demo/breakout/src/main.rs`).
    let mut acktr = Config {
        kl_clip: 0.0003,
        gae_lambda: 0.95,
        cold_iters: 0,
        ..Config::DEFAULT
    };
    let mut sgd = Config {
        optimizer: Optimizer::Sgd,
        eta_max: 0.01,
        gae_lambda: 0.95,
        cold_iters: 0,
        ..Config::DEFAULT
    };
    let mut steps = 16384u64;
    let mut seeds = vec![1u64, 2, 3, 4, 5];
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = |v: Option<String>| -> Result<f32, String> {
            v.and_then(|v| v.parse().ok())
                .ok_or(format!("{a} needs a number"))
        };
        match a.as_str() {
            "--steps" => steps = v(args.next())? as u64,
            "--kl-clip" => acktr.kl_clip = v(args.next())?,
            "--eta" => acktr.eta_max = v(args.next())?,
            "--sgd-lr" => sgd.eta_max = v(args.next())?,
            "--stat-decay" => acktr.stat_decay = v(args.next())?,
            "--momentum" => acktr.momentum = v(args.next())?,
            "--gae" => acktr.gae_lambda = v(args.next())?,
            "--ent" => acktr.entropy_coef = v(args.next())?,
            "--seeds" => {
                seeds = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("--seeds: bad seed {s:?}")))
                    .collect::<Result<_, _>>()?
            }
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            _ => files.push(a),
        }
    }
    // Both optimizers share momentum, GAE and the entropy bonus.
    (sgd.momentum, sgd.gae_lambda, sgd.entropy_coef) =
        (acktr.momentum, acktr.gae_lambda, acktr.entropy_coef);
    if files.is_empty() || seeds.is_empty() {
        return Err("usage: breakout_finetune [OPTIONS] POLICY.ackp...".into());
    }
    println!(
        "changed game: paddle every 2nd step; {steps} device steps, {ENVS} envs x {STEPS} steps per update, seeds {seeds:?}; ACKTR kl_clip {} eta_max {} stat_decay {}; SGD lr {}; both momentum {} GAE lambda {} entropy {}",
        acktr.kl_clip, acktr.eta_max, acktr.stat_decay, sgd.eta_max, acktr.momentum,
        acktr.gae_lambda, acktr.entropy_coef
    );
    let mut learner = Box::new(MinAtarSmallLearner::zeroed(
        acktr,
        Activation::Relu,
        HeadKind::Categorical,
    ));
    let (mut gains_a, mut gains_s, mut ahead) = (Vec::new(), Vec::new(), 0);
    for f in &files {
        let policy = std::fs::read(f).map_err(|e| format!("{f}: {e}"))?;
        load(&mut learner, &policy, acktr).map_err(|e| format!("{f}: {e}"))?;
        let before = eval(&learner)?;
        let mut runs = |cfg: Config| -> Result<Vec<f32>, String> {
            seeds
                .iter()
                .map(|&s| fine_tune(&mut learner, &policy, cfg, s, steps))
                .collect()
        };
        let (a, s) = (runs(acktr)?, runs(sgd)?);
        let (ga, gs) = (mean(&a) - before, mean(&s) - before);
        let verdict = ga > 0.0 && ga > gs;
        println!("{f}: before {before:.2}");
        println!("  ACKTR {a:.2?} mean {:.2} gain {ga:+.2}", mean(&a));
        println!("  SGD   {s:.2?} mean {:.2} gain {gs:+.2}", mean(&s));
        println!("  ACKTR ahead (the firmware's goal a): {verdict}");
        gains_a.push(ga);
        gains_s.push(gs);
        ahead += usize::from(verdict);
    }
    println!(
        "over {} policies: mean gain ACKTR {:+.2}, SGD {:+.2}; ACKTR gains on {}, SGD on {}; ACKTR ahead on {}",
        files.len(),
        mean(&gains_a),
        mean(&gains_s),
        gains_a.iter().filter(|&&g| g > 0.0).count(),
        gains_s.iter().filter(|&&g| g > 0.0).count(),
        ahead
    );
    Ok(())
}
