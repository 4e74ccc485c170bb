#!/usr/bin/env python3
"""Record Gymnasium trajectories for the bit-exact replay test (core/tests/gym_replay.rs).

Usage (from the repository root; versions pinned in tests/gym/requirements.txt):

    python3 -m venv .venv
    .venv/bin/pip install -r tests/gym/requirements.txt
    .venv/bin/python tests/gym/record.py            # writes tests/data/gym/*.txt

Output format (one text file per environment, one record per line)
-------------------------------------------------------------------
Lines starting with '#' are comments (provenance: versions, platform). Floats are written as
the hexadecimal digits of their IEEE-754 bits, so they round-trip exactly:
16 digits = a float64, 8 digits = a float32. The number of digits therefore also records the
dtype Gymnasium kept the value in (Acrobot's state is float32 right after reset, float64 after
a step; MountainCarContinuous's the other way round).

    env <gym id> <max_episode_steps>
    block <seed> <policy> <steps>
        A new block: `env.reset(seed=<seed>)`, then <steps> steps. <policy> names how the
        actions were chosen (`random`: uniform; `drive`: a simple controller that reaches the
        corners of the dynamics, see POLICIES below). The actions come from a separate
        `np.random.default_rng(ACTION_SEED + seed)` and are recorded, so the replay needs
        neither the policy nor that generator.
    S <state...>
        (only in `inject` blocks) the script overwrote `env.unwrapped.state` with this state (of
        this dtype) before the next step: it puts the dynamics into corners random play
        rarely reaches (clipping, walls, wrapping). The replay loads the same state.
    R <state...> [<obs...>]
        A reset: the internal state `env.unwrapped.state` and the observation. The first R of a
        block follows `reset(seed=<seed>)`, every later one `reset()` without a seed (the
        generator continues) right after an episode ended.
    <action> <state...> [<obs...>] <reward> <flags>
        A step: the action (an int for Discrete, the float32 bits for Box), the state after the
        step, the observation, the reward as Python's `repr(float(reward))` (shortest
        round-trip decimal), and flags = terminated + 2 * truncated.

    The observation is omitted where it is, by construction, the float32 cast of the state
    (CartPole-v1, MountainCarContinuous-v0); the script asserts that for every record.
"""

import os
import platform
import sys

import gymnasium as gym
import numpy as np

ACTION_SEED = 10_000
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gym")


def hex_words(arr):
    """IEEE bits of every element, 16 hex digits for float64, 8 for float32."""
    arr = np.asarray(arr)
    if arr.dtype == np.float64:
        return ["%016x" % int(v) for v in arr.view(np.uint64)]
    if arr.dtype == np.float32:
        return ["%08x" % int(v) for v in arr.view(np.uint32)]
    raise TypeError(f"unexpected dtype {arr.dtype}")


def f32_action(value):
    return np.array([value], dtype=np.float32)


# --- policies: (env, obs, rng) -> action -------------------------------------------------------
def cartpole_random(obs, rng):
    return int(rng.integers(2))


def cartpole_drive(obs, rng):
    # A balancing controller with 10 % random actions: reaches the 500-step truncation.
    if rng.random() < 0.1:
        return int(rng.integers(2))
    x, x_dot, th, th_dot = (float(v) for v in obs)
    return int(0.1 * x + 0.5 * x_dot + 10.0 * th + 2.0 * th_dot > 0.0)


def pendulum_random(obs, rng):
    # Uniform on [-2.5, 2.5]: a fifth of the torques exercise the clipping to [-2, 2].
    return f32_action(rng.uniform(-2.5, 2.5))


def pendulum_drive(obs, rng):
    # Pump energy (torque along the angular velocity): reaches the speed limit of 8 rad/s.
    thdot = float(obs[2])
    sign = 1.0 if thdot >= 0.0 else -1.0
    return f32_action(sign * rng.uniform(0.5, 2.5))


def acrobot_random(obs, rng):
    return int(rng.integers(3))


def acrobot_drive(obs, rng):
    # Pump energy (torque against the first joint's velocity), 10 % random: reaches the goal.
    if rng.random() < 0.1:
        return int(rng.integers(3))
    return 0 if float(obs[4]) > 0.0 else 2


def mountaincar_random(obs, rng):
    # Uniform on [-1.25, 1.25]: a fifth of the actions exercise the clipping to [-1, 1].
    return f32_action(rng.uniform(-1.25, 1.25))


def mountaincar_drive(obs, rng):
    # Push along the velocity: reaches the goal (termination, +100) and the left wall.
    v = float(obs[1])
    sign = (1.0 if v > 0.0 else -1.0) if v != 0.0 else (1.0 if rng.random() < 0.5 else -1.0)
    return f32_action(sign * rng.uniform(0.3, 1.3))


# --- injected corner states: (state array, actions to take from it) ----------------------------
def f64s(*v):
    return np.array(v, dtype=np.float64)


def f32s(*v):
    return np.array(v, dtype=np.float32)


PI = np.pi
INJECT = {
    "cartpole": [
        (f64s(2.39, 1.0, 0.0, 0.0), [1, 1]),
        (f64s(-2.39, -1.0, 0.0, 0.0), [0]),
        (f64s(0.0, 0.0, 0.2, 1.0), [1]),
        (f64s(0.0, 0.0, -0.2, -1.0), [0, 1]),
        (f64s(1.0, 5.0, 0.1, -3.0), [1, 0, 1]),
        (f64s(-0.3, -4.0, -0.05, 6.0), [0, 0]),
    ],
    "pendulum": [
        (f64s(PI, 0.0), [f32_action(0.0)]),
        (f64s(-PI, 0.0), [f32_action(-0.0)]),
        (f64s(3 * PI + 1e-9, 7.99), [f32_action(2.0), f32_action(5.0)]),
        (f64s(-100.0, -7.99), [f32_action(-2.0), f32_action(-7.5)]),
        (f64s(0.5, 8.0), [f32_action(2.0000002), f32_action(1.9999999)]),
        (f64s(1e-12, -1e-12), [f32_action(1e-6), f32_action(-3.0)]),
    ],
    "acrobot": [
        (f64s(PI - 1e-3, -PI + 1e-3, 12.5, 28.2), [2, 2, 0]),
        (f64s(-PI + 1e-3, PI - 1e-3, -12.5, -28.2), [0, 0, 2]),
        (f64s(3.0, 0.2, 5.0, -20.0), [1, 2, 0]),
        (f64s(PI, 0.0, 0.0, 0.0), [1]),
        (f64s(2.5, 0.5, 3.0, 3.0), [2, 2]),
    ],
    "mountain_car_continuous": [
        (f32s(-0.5, 0.0695), [f32_action(1.0), f32_action(1.0)]),
        (f32s(-0.5, -0.0695), [f32_action(-1.0), f32_action(-1.5)]),
        (f32s(-1.19, -0.05), [f32_action(-1.0), f32_action(0.25)]),
        (f64s(-1.19, -0.06), [f32_action(-3.0)]),
        (f64s(-0.5, 0.0699), [f32_action(1.0)]),
        (f32s(0.58, 0.05), [f32_action(0.5)]),
        (f32s(0.449, 0.001), [f32_action(0.0)]),
        (f32s(0.4499999, 0.0000001), [f32_action(1.0)]),
        (f64s(0.4, 0.0699), [f32_action(2.0)]),
    ],
}

# name, gym id, policies, seeds per policy, steps per seed, obs is the state's f32 cast
ENVS = [
    ("cartpole", "CartPole-v1", [("random", cartpole_random, [0, 1, 2, 3, 4], 2000),
                                 ("drive", cartpole_drive, [100, 101], 1500)], True),
    ("pendulum", "Pendulum-v1", [("random", pendulum_random, [0, 1, 2, 3, 4], 2000),
                                 ("drive", pendulum_drive, [100, 101], 800)], False),
    ("acrobot", "Acrobot-v1", [("random", acrobot_random, [0, 1, 2, 3, 4], 2000),
                               ("drive", acrobot_drive, [100, 101], 800)], False),
    ("mountain_car_continuous", "MountainCarContinuous-v0",
     [("random", mountaincar_random, [0, 1, 2, 3, 4], 2000),
      ("drive", mountaincar_drive, [100, 101], 800)], True),
]


def state_and_obs(env, obs, obs_is_state_cast):
    state = np.asarray(env.unwrapped.state)
    obs = np.asarray(obs)
    assert obs.dtype == np.float32, obs.dtype
    words = hex_words(state)
    if obs_is_state_cast:
        assert np.array_equal(obs.view(np.uint32), state.astype(np.float32).view(np.uint32))
        return words
    return words + hex_words(obs)


def action_word(action):
    if isinstance(action, int):
        return str(action)
    return hex_words(action)[0]


def step(env, action, lines, stats, obs_is_state_cast):
    obs, reward, terminated, truncated, _ = env.step(action)
    flags = int(bool(terminated)) + 2 * int(bool(truncated))
    fields = [action_word(action)]
    fields += state_and_obs(env, obs, obs_is_state_cast)
    fields += [repr(float(reward)), str(flags)]
    lines.append(" ".join(fields))
    done = bool(terminated or truncated)
    if done:
        stats["episodes"] += 1
        stats["terminated"] += int(bool(terminated))
        stats["truncated"] += int(bool(truncated))
    return obs, done


def record(name, gym_id, policies, obs_is_state_cast):
    env = gym.make(gym_id)
    max_steps = env.spec.max_episode_steps
    lines = [
        f"# {gym_id} recorded by tests/gym/record.py (format: see its docstring)",
        f"# gymnasium {gym.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
        f"{platform.machine()} {platform.libc_ver()[0]} {platform.libc_ver()[1]}",
        f"env {gym_id} {max_steps}",
    ]
    stats = {"episodes": 0, "terminated": 0, "truncated": 0}
    for policy_name, policy, seeds, n_steps in policies:
        for seed in seeds:
            act_rng = np.random.default_rng(ACTION_SEED + seed)
            lines.append(f"block {seed} {policy_name} {n_steps}")
            obs, _ = env.reset(seed=seed)
            lines.append("R " + " ".join(state_and_obs(env, obs, obs_is_state_cast)))
            for t in range(n_steps):
                action = policy(obs, act_rng)
                obs, done = step(env, action, lines, stats, obs_is_state_cast)
                if done and t + 1 < n_steps:
                    obs, _ = env.reset()
                    lines.append("R " + " ".join(state_and_obs(env, obs, obs_is_state_cast)))
    # Corner states: overwrite the state, then take the listed actions (or fewer, if the episode
    # ends first, after which the environment is reset without a seed).
    injections = INJECT[name]
    lines.append(f"block 200 inject {sum(len(a) for _, a in injections)}")
    obs, _ = env.reset(seed=200)
    lines.append("R " + " ".join(state_and_obs(env, obs, obs_is_state_cast)))
    for state, actions in injections:
        env.unwrapped.state = state.copy()
        lines.append("S " + " ".join(hex_words(state)))
        for action in actions:
            obs, done = step(env, action, lines, stats, obs_is_state_cast)
            if done:
                obs, _ = env.reset()
                lines.append("R " + " ".join(state_and_obs(env, obs, obs_is_state_cast)))
                break
    env.close()
    path = os.path.join(OUT_DIR, name + ".txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{path}: {os.path.getsize(path)} bytes, {stats}", file=sys.stderr)


def record_probes():
    """numpy's float64 sin, cos and x**2 on a fixed set of arguments.

    The replay test uses these to decide whether the Rust process's C library computes the
    same bits as the numpy that made the recordings (then it demands bit-exact trajectories).
    """
    rng = np.random.default_rng(12345)
    xs = np.concatenate([rng.uniform(-0.3, 0.3, 200), rng.uniform(-4.0, 4.0, 200),
                         rng.uniform(-60.0, 60.0, 100), rng.uniform(-10.0, 10.0, 300)])
    lines = [
        "# x, np.sin(x), np.cos(x), np.float64(x)**2 as float64 bits (tests/gym/record.py)",
        f"# numpy {np.__version__}, {platform.machine()} {platform.libc_ver()[0]} {platform.libc_ver()[1]}",
    ]
    for x in xs:
        x = np.float64(x)
        vals = np.array([x, np.sin(x), np.cos(x), x ** 2], dtype=np.float64)
        lines.append(" ".join(hex_words(vals)))
    path = os.path.join(OUT_DIR, "libm_probe.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, gym_id, policies, obs_is_state_cast in ENVS:
        record(name, gym_id, policies, obs_is_state_cast)
    record_probes()


if __name__ == "__main__":
    main()
