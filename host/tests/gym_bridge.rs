//! The Gymnasium bridge against the `VecEnv` contract (host/src/envs/mod.rs) and against the
//! native environments. Needs the set-up's `.venv` (python/requirements-gym.txt); see
//! docs/gymnasium.md.
#![cfg(feature = "gymnasium")]

use std::time::Instant;

use acktr_host::envs::gym::{GymOptions, GymVecEnv};
use acktr_host::envs::{self, Actions, ObsNormState, Space, StepBatch, VecEnv};
use acktr_host::HostError;

/// A small deterministic action stream (xorshift64*), the same for both sides of a comparison.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn discrete(&mut self, n: usize, k: usize) -> Actions {
        Actions::Discrete((0..n).map(|_| (self.next() % k as u64) as usize).collect())
    }
    fn uniform(&mut self, len: usize) -> Actions {
        Actions::Continuous(
            (0..len)
                .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
                .collect(),
        )
    }
}

fn check_batch(env: &dyn VecEnv, b: &StepBatch) {
    let n = env.num_envs();
    assert_eq!(b.obs.len(), n * env.obs_len());
    assert_eq!(b.rewards.len(), n);
    assert_eq!(b.terminated.len(), n);
    assert_eq!(b.truncated.len(), n);
    assert_eq!(b.final_obs.len(), n);
    for i in 0..n {
        let ended = b.terminated[i] || b.truncated[i];
        assert_eq!(b.final_obs[i].is_some(), ended, "final_obs of env {i}");
        if let Some(f) = &b.final_obs[i] {
            assert_eq!(f.len(), env.obs_len());
        }
    }
    for e in &b.episodes {
        assert!(e.env < n);
        assert!(b.terminated[e.env] || b.truncated[e.env]);
    }
}

/// The bridge's CartPole-v1 and the native one, same seeds and actions: the same trajectory.
/// Exact comparison (tolerance 0) on observations, final observations, rewards, flags and
/// episodes over 3 environments × 1000 steps.
#[test]
fn cartpole_bridge_matches_native() {
    const N: usize = 3;
    const STEPS: usize = 1000;
    let mut gym = GymVecEnv::new("CartPole-v1", N, &GymOptions::default()).unwrap();
    let mut native = envs::native::make("CartPole-v1", N).unwrap();
    assert_eq!(gym.obs_shape(), native.obs_shape());
    assert_eq!(gym.action_space(), &Space::Discrete(2));
    assert_eq!(gym.describe()["source"], "gymnasium");

    let seed = 12345;
    assert_eq!(gym.reset(seed).unwrap(), native.reset(seed).unwrap());
    let mut stream = Stream(0x9E37_79B9_7F4A_7C15);
    let mut episodes = 0;
    let mut truncations = 0;
    for t in 0..STEPS {
        let actions = stream.discrete(N, 2);
        let g = gym.step(&actions).unwrap();
        let n = native.step(&actions).unwrap();
        check_batch(&gym, &g);
        assert_eq!(g.obs, n.obs, "observations at step {t}");
        assert_eq!(g.rewards, n.rewards, "rewards at step {t}");
        assert_eq!(g.terminated, n.terminated, "terminated at step {t}");
        assert_eq!(g.truncated, n.truncated, "truncated at step {t}");
        assert_eq!(g.final_obs, n.final_obs, "final_obs at step {t}");
        assert_eq!(g.episodes, n.episodes, "episodes at step {t}");
        episodes += g.episodes.len();
        truncations += g.truncated.iter().filter(|&&x| x).count();
    }
    assert!(episodes > 50, "only {episodes} episodes");
    let _ = truncations;
}

/// A random policy rarely reaches CartPole's 500-step limit: a fixed "balancing" controller
/// does, so truncation and the same-step reset after it are compared too.
#[test]
fn cartpole_truncation_matches_native() {
    const N: usize = 2;
    let mut gym = GymVecEnv::new("CartPole-v1", N, &GymOptions::default()).unwrap();
    let mut native = envs::native::make("CartPole-v1", N).unwrap();
    let mut obs = gym.reset(7).unwrap();
    assert_eq!(obs, native.reset(7).unwrap());
    let mut truncated = 0;
    for t in 0..1200 {
        // Push towards the side the pole leans to (θ + θ̇).
        let actions = Actions::Discrete(
            (0..N)
                .map(|i| usize::from(obs[4 * i + 2] + obs[4 * i + 3] > 0.0))
                .collect(),
        );
        let g = gym.step(&actions).unwrap();
        let n = native.step(&actions).unwrap();
        assert_eq!(g.obs, n.obs, "observations at step {t}");
        assert_eq!(
            (
                &g.rewards,
                &g.terminated,
                &g.truncated,
                &g.final_obs,
                &g.episodes
            ),
            (
                &n.rewards,
                &n.terminated,
                &n.truncated,
                &n.final_obs,
                &n.episodes
            ),
            "step {t}"
        );
        truncated += g.truncated.iter().filter(|&&x| x).count();
        obs = g.obs;
    }
    assert!(
        truncated >= 2,
        "the controller never reached the time limit"
    );
}

#[test]
fn minatar_breakout_is_channel_first() {
    // Through the bridge explicitly: `envs::make` serves this id natively.
    let mut env: Box<dyn VecEnv> =
        Box::new(GymVecEnv::new("MinAtar/Breakout-v1", 2, &GymOptions::default()).unwrap());
    assert_eq!(env.obs_shape(), &[4, 10, 10]);
    assert_eq!(env.action_space(), &Space::Discrete(3));
    assert_eq!(env.describe()["family"], "minatar");
    let obs = env.reset(3).unwrap();
    assert_eq!(obs.len(), 2 * 400);
    assert!(obs.iter().all(|&x| x == 0.0 || x == 1.0));
    // Breakout's channels: paddle, ball, trail, bricks. The paddle sits on the bottom row
    // (row 9) and the bricks fill rows 1..=3 of channel 3.
    let paddle_row: f32 = obs[90..100].iter().sum();
    assert!(paddle_row >= 1.0, "no paddle in channel 0, row 9");
    let bricks: f32 = obs[300..400].iter().sum();
    assert_eq!(bricks, 30.0, "three rows of bricks in channel 3");
    let mut stream = Stream(5);
    let mut done = 0;
    for _ in 0..500 {
        let b = env.step(&stream.discrete(2, 3)).unwrap();
        check_batch(env.as_ref(), &b);
        done += b.episodes.len();
    }
    assert!(done > 0, "no MinAtar episode ended in 500 steps");
}

/// The bridge's MinAtar Breakout (the `minatar` package, observations transposed to CHW) and
/// the native one (the core's port, transposed by `envs::native`), same seeds and actions: the
/// same trajectories, exactly (observations, final observations, rewards, flags, episodes),
/// sticky actions and the same-step resets (which continue each env's `RandomState`) included.
#[test]
fn minatar_breakout_bridge_matches_native() {
    const N: usize = 3;
    const STEPS: usize = 2000;
    let mut gym = GymVecEnv::new("MinAtar/Breakout-v1", N, &GymOptions::default()).unwrap();
    let mut native = envs::native::make("MinAtar/Breakout-v1", N).unwrap();
    assert_eq!(gym.obs_shape(), native.obs_shape());
    assert_eq!(gym.action_space(), native.action_space());
    assert_eq!(gym.describe()["source"], "gymnasium");
    assert_eq!(native.describe()["source"], "native");

    let seed = 2024;
    assert_eq!(gym.reset(seed).unwrap(), native.reset(seed).unwrap());
    let mut stream = Stream(0xD1B5_4A32_D192_ED03);
    let mut episodes = 0;
    let mut bricks = 0.0;
    for t in 0..STEPS {
        let actions = stream.discrete(N, 3);
        let g = gym.step(&actions).unwrap();
        let n = native.step(&actions).unwrap();
        check_batch(&gym, &g);
        assert_eq!(g.obs, n.obs, "observations at step {t}");
        assert_eq!(g.rewards, n.rewards, "rewards at step {t}");
        assert_eq!(g.terminated, n.terminated, "terminated at step {t}");
        assert_eq!(g.truncated, n.truncated, "truncated at step {t}");
        assert_eq!(g.final_obs, n.final_obs, "final_obs at step {t}");
        assert_eq!(g.episodes, n.episodes, "episodes at step {t}");
        episodes += g.episodes.len();
        bricks += g.rewards.iter().sum::<f32>();
    }
    assert!(
        episodes > 50 && bricks > 50.0,
        "{episodes} episodes, {bricks} bricks"
    );
    // A second seeded reset of the same environments matches too.
    assert_eq!(gym.reset(7).unwrap(), native.reset(7).unwrap());
}

#[test]
fn atari_breakout_paper_preprocessing() {
    const N: usize = 4;
    let mut env = envs::make("ALE/Breakout-v5", N).unwrap();
    assert_eq!(env.obs_shape(), &[4, 84, 84]);
    assert_eq!(env.action_space(), &Space::Discrete(4));
    let d = env.describe();
    assert_eq!(d["family"], "atari");
    let p = &d["preprocessing"];
    assert_eq!(p["noop_max"], 30);
    assert_eq!(p["frame_skip"], 4);
    assert_eq!(p["max_pool_last_two_frames"], true);
    assert_eq!(p["resize"], serde_json::json!([84, 84]));
    assert_eq!(p["grayscale"], true);
    assert_eq!(p["frame_stack"], 4);
    assert_eq!(p["episodic_life"], true);
    assert_eq!(p["fire_reset"], true);
    assert_eq!(p["clip_rewards"], "sign");
    assert_eq!(p["repeat_action_probability"], 0.25);

    let obs = env.reset(1).unwrap();
    assert_eq!(obs.len(), N * 4 * 84 * 84);
    assert!(obs
        .iter()
        .all(|&x| (0.0..=255.0).contains(&x) && x.fract() == 0.0));
    assert!(obs.iter().any(|&x| x > 0.0));
    let mut stream = Stream(11);
    let mut clipped = [0.0f64; N];
    let mut terminations = [0usize; N];
    let mut games = Vec::new();
    for _ in 0..5000 {
        let b = env.step(&stream.discrete(N, 4)).unwrap();
        check_batch(env.as_ref(), &b);
        for i in 0..N {
            assert!([-1.0, 0.0, 1.0].contains(&b.rewards[i]), "unclipped reward");
            clipped[i] += f64::from(b.rewards[i]);
            terminations[i] += usize::from(b.terminated[i]);
        }
        for e in &b.episodes {
            games.push((*e, clipped[e.env], terminations[e.env]));
            clipped[e.env] = 0.0;
            terminations[e.env] = 0;
        }
        if games.len() >= 3 {
            break;
        }
    }
    assert!(!games.is_empty(), "no Breakout game ended");
    for (e, clipped, terms) in games {
        assert!(e.ret >= 0.0 && e.ret.fract() == 0.0, "raw score {}", e.ret);
        // Raw Breakout scores are 1, 4 or 7 per brick: at least the clipped sum.
        assert!(e.ret >= clipped, "raw {} < clipped {clipped}", e.ret);
        assert_eq!(e.ret == 0.0, clipped == 0.0);
        assert!(e.len > 0);
        // Episodic life: one termination per life lost, the game over included (5 lives).
        assert_eq!(terms, 5, "terminations in one Breakout game");
    }
}

/// A policy that never chooses FIRE (here: always NOOP, as a deterministic evaluation of an
/// untrained net often does) still finishes Breakout games: the bridge presses FIRE after each
/// life loss, as the paper's EpisodicLifeEnv + FireResetEnv do. Without it the ball is never
/// served again after the first lost life and the game waits out the 27,000-step limit.
#[test]
fn atari_fires_after_each_life_loss() {
    const N: usize = 2;
    let mut env = envs::make("ALE/Breakout-v5", N).unwrap();
    assert_eq!(
        env.describe()["preprocessing"]["fire_after_life_loss"],
        true
    );
    env.reset(3).unwrap();
    let noop = Actions::Discrete(vec![0; N]);
    let mut games = 0;
    let mut steps = 0;
    while games < N && steps < 3000 {
        let b = env.step(&noop).unwrap();
        games += b.episodes.len();
        steps += 1;
    }
    assert!(
        games >= N,
        "a NOOP policy finished {games} of {N} Breakout games in {steps} steps"
    );
}

#[test]
fn atari_refuses_normalisation() {
    let opts = GymOptions {
        normalize_obs: true,
        ..GymOptions::default()
    };
    match GymVecEnv::new("ALE/Pong-v5", 1, &opts) {
        Err(HostError::InvalidSetting(m)) => assert!(m.contains("normalisation"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("accepted obs normalisation for Atari"),
    }
}

#[test]
fn mujoco_hopper_box_actions() {
    let mut env = envs::make("Hopper-v5", 2).unwrap();
    assert_eq!(env.obs_shape(), &[11]);
    assert_eq!(
        env.action_space(),
        &Space::Box {
            low: vec![-1.0; 3],
            high: vec![1.0; 3]
        }
    );
    assert_eq!(env.action_space().policy_outputs(), 3);
    assert_eq!(env.describe()["family"], "mujoco");
    env.reset(0).unwrap();
    let mut stream = Stream(3);
    for _ in 0..100 {
        let b = env.step(&stream.uniform(2 * 3)).unwrap();
        check_batch(env.as_ref(), &b);
    }
}

/// Normalisation changes what the policy sees, not the episode statistics.
#[test]
fn mujoco_normalisation_keeps_raw_returns() {
    let opts = GymOptions {
        normalize_obs: true,
        normalize_reward: true,
        ..GymOptions::default()
    };
    let mut plain = GymVecEnv::new("Hopper-v5", 2, &GymOptions::default()).unwrap();
    let mut norm = GymVecEnv::new("Hopper-v5", 2, &opts).unwrap();
    let d = norm.describe();
    assert_eq!(
        d["preprocessing"]["normalize_reward"]["method"],
        "gymnasium.wrappers.vector.NormalizeReward"
    );
    assert!(d["preprocessing"]["normalize_obs"].is_object());
    plain.reset(4).unwrap();
    norm.reset(4).unwrap();
    let mut stream_a = Stream(9);
    let mut stream_b = Stream(9);
    let (mut eps_plain, mut eps_norm) = (Vec::new(), Vec::new());
    let mut differs = false;
    for _ in 0..300 {
        let a = plain.step(&stream_a.uniform(6)).unwrap();
        let b = norm.step(&stream_b.uniform(6)).unwrap();
        check_batch(&norm, &b);
        assert_eq!(a.terminated, b.terminated);
        assert_eq!(a.truncated, b.truncated);
        assert!(b.obs.iter().all(|x| x.is_finite()));
        differs |= a.rewards != b.rewards;
        eps_plain.extend(a.episodes);
        eps_norm.extend(b.episodes);
    }
    assert!(differs, "rewards were not normalised");
    assert!(!eps_plain.is_empty());
    assert_eq!(eps_plain, eps_norm, "episodes must report raw returns");
    let state = norm.obs_norm_state().unwrap().unwrap();
    assert_eq!(state.mean.len(), 11);
    assert!(state.count > 300.0);
    assert!(plain.obs_norm_state().unwrap().is_none());
    norm.set_obs_norm_state(&state).unwrap();
    norm.set_update_stats(false).unwrap();
}

/// Restored statistics are the saved ones bit for bit, and a frozen normaliser leaves them
/// alone and normalises exactly as [`ObsNormState::normalize`] does (what evaluation of a
/// `--normalize-obs` run feeds the policy): the truth is the unnormalised environment with the
/// same seed and actions, normalised here. ε = 0.5 (not 1e-8) so that dropping it would show.
#[test]
fn frozen_normaliser_matches_the_rust_arithmetic() {
    let opts = GymOptions {
        normalize_obs: true,
        epsilon: 0.5,
        ..GymOptions::default()
    };
    // MountainCar-v0 (float32 observations, served by Gymnasium only).
    let mut plain = GymVecEnv::new("MountainCar-v0", 2, &GymOptions::default()).unwrap();
    let mut norm = GymVecEnv::new("MountainCar-v0", 2, &opts).unwrap();
    let saved = ObsNormState {
        mean: vec![-0.5, 0.001],
        var: vec![0.04, 1e-6],
        count: 1234.5,
        epsilon: 0.5,
    };
    norm.set_obs_norm_state(&saved).unwrap();
    let back = norm.obs_norm_state().unwrap().unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        (bits(&back.mean), bits(&back.var), back.count.to_bits()),
        (bits(&saved.mean), bits(&saved.var), saved.count.to_bits())
    );
    norm.set_update_stats(false).unwrap();
    let raw = plain.reset(7).unwrap();
    let got = norm.reset(7).unwrap();
    assert_eq!(got, saved.normalize(&raw).unwrap());
    let (mut sa, mut sb) = (Stream(5), Stream(5));
    for _ in 0..300 {
        let a = plain.step(&sa.discrete(2, 3)).unwrap();
        let b = norm.step(&sb.discrete(2, 3)).unwrap();
        assert_eq!(b.obs, saved.normalize(&a.obs).unwrap());
        assert_eq!(a.rewards, b.rewards);
    }
    assert_eq!(
        norm.obs_norm_state().unwrap().unwrap(),
        saved,
        "frozen stats moved"
    );
    // A different ε is refused: the statistics belong to one formula.
    let wrong = ObsNormState {
        epsilon: 1e-8,
        ..saved
    };
    assert!(matches!(
        norm.set_obs_norm_state(&wrong),
        Err(HostError::InvalidSetting(_))
    ));
}

/// `acktr train` on a Gymnasium-only id with `--normalize-obs`, then `--resume`, then `acktr
/// eval`: the checkpoint carries the statistics, the resumed run continues them (the
/// normaliser's count is the number of observations it has seen, counted here: 4 environments
/// × (1 reset + 80 steps) per run, from Gymnasium's initial 1e-4), evaluation runs with them,
/// and the reward normaliser's γ is the run's `--gamma`.
#[test]
fn normalize_obs_statistics_survive_resume_and_reach_eval() {
    use acktr_host::run::checkpoint;
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let acktr = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_acktr"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            err,
        )
    };
    let train = |total: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--env",
            "CartPole-v0",
            "--normalize-obs",
            "--normalize-reward",
            "--gamma",
            "0.95",
            "--num-envs",
            "4",
            "--num-steps",
            "8",
            "--total-steps",
            total,
            "--eval-episodes",
            "2",
            "--seed",
            "3",
            "--out",
            out_s,
        ];
        if resume {
            args.push("--resume");
        }
        let (ok, _, err) = acktr(&args);
        assert!(ok, "{err}");
        assert!(err.contains("deterministic eval (2 episodes)"), "{err}");
    };
    let stats = || {
        let path = out.join(checkpoint::FILE_NAME);
        let ck = checkpoint::load(&path).unwrap();
        let blob = ck
            .blob(checkpoint::OBS_NORM_BLOB)
            .expect("statistics saved");
        checkpoint::obs_norm_from_blob(blob, &path).unwrap()
    };
    train("320", false);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["env"]["preprocessing"]["normalize_reward"]["gamma"],
        0.95
    );
    assert!(
        !out.join("policy.ackp").exists(),
        "a policy file without its normaliser"
    );
    let first = stats();
    let per_run = 4.0 * (1.0 + 80.0);
    assert!(
        (first.count - (1e-4 + per_run)).abs() < 1e-9,
        "{}",
        first.count
    );
    assert_eq!(first.mean.len(), 4);
    train("640", true);
    let second = stats();
    assert!(
        (second.count - (1e-4 + 2.0 * per_run)).abs() < 1e-9,
        "resume did not continue the statistics: count {}",
        second.count
    );
    // Parallel-variance merge of the saved statistics with the second run's: the mean moves by
    // (new mean − old mean)·(new count / total), never jumps back to a fresh start's.
    assert_ne!(second.mean, first.mean);
    let (ok, stdout, err) = acktr(&["eval", out_s, "--episodes", "2"]);
    assert!(ok && stdout.contains("deterministic"), "{stdout}{err}");
    assert_eq!(stats(), second, "evaluation must not touch the checkpoint");
    let (ok, _, err) = acktr(&[
        "export",
        out_s,
        "--out",
        out.join("p.ackp").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("normaliser"), "{err}");
    // A checkpoint from before the statistics were saved: refused, saying why.
    let path = out.join(checkpoint::FILE_NAME);
    let mut ck = checkpoint::load(&path).unwrap();
    ck.blobs.retain(|(n, _)| n != checkpoint::OBS_NORM_BLOB);
    std::fs::remove_file(out.join(checkpoint::PREV_FILE_NAME)).unwrap();
    checkpoint::write_atomic(&path, &ck.to_bytes().unwrap()).unwrap();
    let (ok, _, err) = acktr(&["eval", out_s, "--episodes", "1"]);
    assert!(!ok && err.contains(checkpoint::OBS_NORM_BLOB), "{err}");
    let (ok, _, err) = acktr(&[
        "train",
        "--env",
        "CartPole-v0",
        "--resume",
        "--total-steps",
        "960",
        "--out",
        out_s,
    ]);
    assert!(!ok && err.contains(checkpoint::OBS_NORM_BLOB), "{err}");
}

#[test]
fn unknown_id_is_unknown_env() {
    match envs::make("NoSuchEnv-v0", 1) {
        Err(HostError::UnknownEnv { id, known }) => {
            assert_eq!(id, "NoSuchEnv-v0");
            assert!(known.contains("CartPole-v1"), "{known}");
            assert!(known.contains("NoSuchEnv"), "Gymnasium's message: {known}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("made an unknown env"),
    }
}

/// Registers, in the embedded interpreter, two toy environments whose observations are fine
/// (a 2-vector) and whose action spaces the policy heads cannot serve: no registered
/// Gymnasium id has one (toy-text ids fail on their observations first, MuJoCo's actions are
/// 1-D boxes, Atari's and MinAtar's discrete).
fn register_unsupported_action_envs() {
    use pyo3::prelude::*;
    // Loads the bridge, which puts the virtualenv's gymnasium on sys.path.
    drop(envs::make("MountainCar-v0", 1).unwrap());
    Python::attach(|py| {
        py.run(
            c"
import gymnasium as gym
import numpy as np

class _Toy(gym.Env):
    def __init__(self, action_space):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = action_space

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}

for env_id, space in [
    ('AcktrTest/ToyMulti-v0', gym.spaces.MultiDiscrete([3, 2])),
    ('AcktrTest/ToyBox-v0', gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32)),
]:
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=lambda space=space: _Toy(space))
",
            None,
            None,
        )
        .unwrap();
    });
}

#[test]
fn unsupported_spaces_are_named() {
    // Blackjack: Tuple observations; FrozenLake: Discrete observations.
    for (id, space) in [("Blackjack-v1", "Tuple"), ("FrozenLake-v1", "Discrete")] {
        match envs::make(id, 2) {
            Err(HostError::UnsupportedSpace(m)) => {
                assert!(
                    m.contains(id) && m.contains("observation space") && m.contains(space),
                    "{m}"
                )
            }
            Err(e) => panic!("{id}: wrong error: {e}"),
            Ok(_) => panic!("{id}: accepted"),
        }
    }
    // Action spaces: MultiDiscrete, and a Box that is not 1-D (its shape is the reason).
    register_unsupported_action_envs();
    for (id, space) in [
        ("AcktrTest/ToyMulti-v0", "MultiDiscrete"),
        ("AcktrTest/ToyBox-v0", "(2, 2)"),
    ] {
        match envs::make(id, 2) {
            Err(HostError::UnsupportedSpace(m)) => {
                assert!(
                    m.contains(id) && m.contains("action space") && m.contains(space),
                    "{m}"
                )
            }
            Err(e) => panic!("{id}: wrong error: {e}"),
            Ok(_) => panic!("{id}: accepted"),
        }
    }
}

#[test]
fn bad_action_batches_are_errors() {
    // MountainCar-v0 (Discrete(3)) is served by Gymnasium only.
    let mut env = GymVecEnv::new("MountainCar-v0", 2, &GymOptions::default()).unwrap();
    env.reset(0).unwrap();
    assert!(matches!(
        env.step(&Actions::Discrete(vec![0])),
        Err(HostError::InvalidSetting(_))
    ));
    assert!(matches!(
        env.step(&Actions::Discrete(vec![0, 3])),
        Err(HostError::InvalidSetting(_))
    ));
    assert!(matches!(
        env.step(&Actions::Continuous(vec![0.0, 0.0])),
        Err(HostError::InvalidSetting(_))
    ));
    env.step(&Actions::Discrete(vec![0, 2])).unwrap();
}

/// Env-steps per second through the bridge (best of 3 runs, random actions, resets
/// included). Run with
/// `cargo test --release -p acktr-host --features gymnasium --test gym_bridge -- --ignored --nocapture`.
#[test]
#[ignore]
fn bridge_speed() {
    for (id, n, steps) in [
        ("CartPole-v1", 16, 2000),
        ("ALE/Breakout-v5", 8, 500),
        ("ALE/Breakout-v5", 32, 200),
        ("MinAtar/Breakout-v1", 16, 1000),
        ("Hopper-v5", 16, 500),
    ] {
        let mut env = GymVecEnv::new(id, n, &GymOptions::default()).unwrap();
        env.reset(0).unwrap();
        let mut stream = Stream(1);
        let outputs = env.action_space().policy_outputs();
        let discrete = matches!(env.action_space(), Space::Discrete(_));
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = Instant::now();
            for _ in 0..steps {
                let a = if discrete {
                    stream.discrete(n, outputs)
                } else {
                    stream.uniform(n * outputs)
                };
                env.step(&a).unwrap();
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "{id:>22} × {n:>2}: {:>9.0} env-steps/s ({:.1} µs per batch step)",
            (n * steps) as f64 / best,
            best / steps as f64 * 1e6
        );
    }
}
