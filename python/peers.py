#!/usr/bin/env python3
"""The peers of `acktr benchmark`: stable-baselines3 A2C and PPO and sb3-contrib TRPO, trained
into a run folder that the benchmark reads exactly as it reads one of ours.

    .venv/bin/python python/peers.py --algo sb3-ppo --env Hopper-v5 --seed 0 \
        --total-steps 1000000 --out RUNDIR

What RUNDIR gets (the parts of an `acktr train` run folder the benchmark reads):

- `config.json`: algorithm, library and version, env, seed, budget, and the hyperparameters
  used with where they come from (`hyperparams_source`): rl-baselines3-zoo's published values
  where the zoo has the env (its `-v4` MuJoCo entries for our `-v5` ids), the library's
  defaults otherwise.
- `monitor.csv`: one row per finished training episode in stable-baselines3's Monitor format
  (`#` + JSON line, header `r,l,t`), written by `VecMonitor` on the raw rewards (inside any
  `VecNormalize`).
- The final line on stderr, in the format of `acktr train`'s last line: `acktr: done: N env
  steps, S steps/s, last-100 return R, deterministic eval (10 episodes) E`; E is the mean
  return of `--eval-episodes` deterministic episodes on a fresh environment seeded with
  seed + 1,000,000 (as ours), observations normalised with the frozen training statistics.

One torch thread (`torch.set_num_threads(1)`): the benchmark runs two jobs on two cores.
MinAtar ids (not in the zoo) use the MinAtar paper's network, the one `acktr --arch minatar`
trains (conv 16 3x3 -> fc 128 -> heads), with the library's default hyperparameters.
"""

import argparse
import json
import os
import sys
import time

# Values copied from rl-baselines3-zoo (github.com/DLR-RM/rl-baselines3-zoo, hyperparams/
# a2c.yml, ppo.yml, trpo.yml, last changed in eec15dc2; read at 22e3ff24). `lin_X` is a linear
# schedule from X to 0. `policy_kwargs` as strings, evaluated with `nn` = torch.nn. The zoo's
# `n_timesteps` is not used: the budget is --total-steps. `normalize: True` means VecNormalize
# on observations and rewards, with the algorithm's gamma when one is given (as the zoo does).
_MUJOCO_PPO_NET = (
    "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, "
    "net_arch=dict(pi=[256, 256], vf=[256, 256]))"
)
_TRPO_MUJOCO = dict(
    normalize=True, n_envs=2, batch_size=128, n_steps=1024, gamma=0.99, gae_lambda=0.95,
    sub_sampling_factor=1, cg_max_steps=25, cg_damping=0.1, n_critic_updates=20,
    learning_rate=1e-3,
)
ZOO = {
    "sb3-a2c": {
        "CartPole-v1": dict(n_envs=8, ent_coef=0.0),
        "Acrobot-v1": dict(normalize=True, n_envs=16, ent_coef=0.0),
        "Pendulum-v1": dict(
            normalize=True, n_envs=8, ent_coef=0.0, max_grad_norm=0.5, n_steps=8,
            gae_lambda=0.9, vf_coef=0.4, gamma=0.9, use_rms_prop=True,
            normalize_advantage=False, learning_rate="lin_7e-4", use_sde=True,
            policy_kwargs="dict(log_std_init=-2, ortho_init=False)",
        ),
        "MountainCarContinuous-v0": dict(
            normalize=True, n_envs=4, n_steps=100, ent_coef=0.0, use_sde=True,
            sde_sample_freq=16, policy_kwargs="dict(log_std_init=0.0, ortho_init=False)",
        ),
        "HalfCheetah-v4": dict(normalize=True),
        "Hopper-v4": dict(normalize=True),
        "Walker2d-v4": dict(normalize=True),
    },
    "sb3-ppo": {
        "CartPole-v1": dict(
            n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
            ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2",
        ),
        "Acrobot-v1": dict(
            normalize=True, n_envs=16, n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4,
            ent_coef=0.0,
        ),
        "Pendulum-v1": dict(
            n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
            learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4,
        ),
        "MountainCarContinuous-v0": dict(
            normalize=True, n_envs=1, batch_size=256, n_steps=8, gamma=0.9999,
            learning_rate=7.77e-05, ent_coef=0.00429, clip_range=0.1, n_epochs=10,
            gae_lambda=0.9, max_grad_norm=5, vf_coef=0.19, use_sde=True,
            policy_kwargs="dict(log_std_init=-3.29, ortho_init=False)",
        ),
        "HalfCheetah-v4": dict(
            normalize=True, n_envs=1, batch_size=64, n_steps=512, gamma=0.98,
            learning_rate=2.0633e-05, ent_coef=0.000401762, clip_range=0.1, n_epochs=20,
            gae_lambda=0.92, max_grad_norm=0.8, vf_coef=0.58096, policy_kwargs=_MUJOCO_PPO_NET,
        ),
        "Hopper-v4": dict(
            normalize=True, n_envs=1, batch_size=32, n_steps=512, gamma=0.999,
            learning_rate=9.80828e-05, ent_coef=0.00229519, clip_range=0.2, n_epochs=5,
            gae_lambda=0.99, max_grad_norm=0.7, vf_coef=0.835671, policy_kwargs=_MUJOCO_PPO_NET,
        ),
        "Walker2d-v4": dict(
            normalize=True, n_envs=1, batch_size=32, n_steps=512, gamma=0.99,
            learning_rate=5.05041e-05, ent_coef=0.000585045, clip_range=0.1, n_epochs=20,
            gae_lambda=0.95, max_grad_norm=1, vf_coef=0.871923,
        ),
    },
    "sb3-trpo": {
        "CartPole-v1": dict(
            n_envs=2, n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98,
            gamma=0.99, learning_rate=1e-3, n_critic_updates=20,
        ),
        "Acrobot-v1": dict(normalize=True, n_envs=2, n_steps=1024),
        "Pendulum-v1": dict(
            n_envs=2, n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True,
            sde_sample_freq=4,
        ),
        "MountainCarContinuous-v0": dict(
            normalize=True, n_envs=2, use_sde=True, sde_sample_freq=4,
        ),
        "HalfCheetah-v4": dict(_TRPO_MUJOCO, target_kl=0.04),
        "Hopper-v4": dict(_TRPO_MUJOCO),
        "Walker2d-v4": dict(_TRPO_MUJOCO),
    },
}

ALGOS = ("sb3-a2c", "sb3-ppo", "sb3-trpo")
ZOO_SOURCE = "rl-baselines3-zoo hyperparams/{file} entry {entry} (values as of commit 22e3ff24)"


def zoo_entry(algo, env_id):
    """The zoo's (entry name, hyperparameters) for `env_id`, or None. Our MuJoCo `-v5` ids use
    the zoo's `-v4` entries (the zoo has no `-v5` ones)."""
    table = ZOO[algo]
    for name in (env_id, env_id.replace("-v5", "-v4") if env_id.endswith("-v5") else None):
        if name and name in table:
            return name, dict(table[name])
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", required=True, choices=ALGOS)
    p.add_argument("--env", required=True, help="Gymnasium id (MinAtar/* registered here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, required=True, help="env steps to train for")
    p.add_argument("--out", required=True, help="run folder (must not exist, or be empty)")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="final deterministic evaluation episodes (at least 1)")
    a = p.parse_args(argv)
    if a.total_steps < 1:
        p.error("--total-steps must be at least 1")
    if a.eval_episodes < 1:
        p.error("--eval-episodes must be at least 1")
    return a


def main(argv):
    args = parse_args(argv)
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        print(f"peers.py: error: {args.out} exists and is not an empty folder", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)

    import gymnasium as gym
    import numpy as np
    import torch
    import torch.nn as nn
    import stable_baselines3
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

    torch.set_num_threads(1)
    is_minatar = args.env.startswith("MinAtar/")
    if is_minatar:
        import minatar.gym

        minatar.gym.register_envs()

    if args.algo == "sb3-trpo":
        import sb3_contrib
        from sb3_contrib import TRPO

        cls, library = TRPO, f"sb3-contrib {sb3_contrib.__version__}"
    else:
        cls = A2C if args.algo == "sb3-a2c" else PPO
        library = f"stable-baselines3 {stable_baselines3.__version__}"

    found = zoo_entry(args.algo, args.env)
    if found:
        entry, hp = found
        file = {"sb3-a2c": "a2c.yml", "sb3-ppo": "ppo.yml", "sb3-trpo": "trpo.yml"}[args.algo]
        source = ZOO_SOURCE.format(file=file, entry=entry)
    else:
        hp = {}
        source = "library defaults (rl-baselines3-zoo has no entry for this env)"
    recorded = dict(hp)
    normalize = bool(hp.pop("normalize", False))
    n_envs = int(hp.pop("n_envs", 1))

    for key in ("learning_rate", "clip_range"):
        v = hp.get(key)
        if isinstance(v, str) and v.startswith("lin_"):
            start = float(v[4:])
            hp[key] = lambda progress_remaining, s=start: progress_remaining * s
    if isinstance(hp.get("policy_kwargs"), str):
        hp["policy_kwargs"] = eval(hp["policy_kwargs"], {"nn": nn, "dict": dict})

    class MinAtarObs(gym.ObservationWrapper):
        """MinAtar's 10x10xC bool frames as C x 10 x 10 float32 (what our bridge feeds ours)."""

        def __init__(self, env):
            super().__init__(env)
            h, w, c = env.observation_space.shape
            self.observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)

        def observation(self, obs):
            return np.ascontiguousarray(np.transpose(obs, (2, 0, 1)), dtype=np.float32)

    class MinAtarNet(BaseFeaturesExtractor):
        """The MinAtar paper's trunk: conv 16 3x3 stride 1 + ReLU, fc 128 + ReLU."""

        def __init__(self, space):
            super().__init__(space, features_dim=128)
            c, h, w = space.shape
            self.net = nn.Sequential(
                nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten(),
                nn.Linear(16 * (h - 2) * (w - 2), 128), nn.ReLU(),
            )

        def forward(self, obs):
            return self.net(obs)

    if is_minatar:
        recorded["policy_kwargs"] = (
            "dict(features_extractor_class=MinAtarNet, net_arch=[]) "
            "(conv 16 3x3 -> fc 128 -> heads, as acktr --arch minatar)"
        )
        hp["policy_kwargs"] = dict(features_extractor_class=MinAtarNet, net_arch=[])

    def make(rank):
        def thunk():
            env = gym.make(args.env)
            return MinAtarObs(env) if is_minatar else env

        return thunk

    config = {
        "algo": args.algo,
        "library": library,
        "torch": torch.__version__,
        "env": args.env,
        "seed": args.seed,
        "total_steps": args.total_steps,
        "eval_episodes": args.eval_episodes,
        "torch_threads": torch.get_num_threads(),
        "n_envs": n_envs,
        "normalize": normalize,
        "hyperparams_source": source,
        "hyperparams": {k: v for k, v in recorded.items()},
        "policy": "MlpPolicy",
    }
    with open(os.path.join(args.out, "config.json.tmp"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(os.path.join(args.out, "config.json.tmp"), os.path.join(args.out, "config.json"))

    venv = DummyVecEnv([make(i) for i in range(n_envs)])
    venv.spec = gym.spec(args.env)  # the env_id in monitor.csv's first line
    venv.seed(args.seed)
    venv = VecMonitor(venv, filename=os.path.join(args.out, "monitor.csv"))
    if normalize:
        venv = VecNormalize(venv, **({"gamma": hp["gamma"]} if "gamma" in hp else {}))

    model = cls("MlpPolicy", venv, seed=args.seed, verbose=0, device="cpu", **hp)
    start = time.time()
    model.learn(total_timesteps=args.total_steps)
    sps = model.num_timesteps / max(time.time() - start, 1e-9)

    eval_env = DummyVecEnv([lambda: Monitor(make(0)())])
    eval_env.seed(args.seed + 1_000_000)
    if normalize:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = model.get_vec_normalize_env().obs_rms
    eval_mean, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True
    )
    recent = [e["r"] for e in model.ep_info_buffer]
    recent_mean = float(np.mean(recent)) if recent else float("nan")
    venv.close()
    print(
        f"acktr: done: {model.num_timesteps} env steps, {sps:.0f} steps/s, last-100 return "
        f"{recent_mean:.2f}, deterministic eval ({args.eval_episodes} episodes) {eval_mean:.2f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
