#!/usr/bin/env python3
"""Record MinAtar Breakout trajectories for the bit-exact replay test (core/tests/minatar_replay.rs).

Usage (from the repository root; versions pinned in tests/gym/requirements.txt):

    .venv/bin/pip install -r tests/gym/requirements.txt
    .venv/bin/python tests/gym/record_minatar.py      # writes tests/data/minatar/breakout.txt

The environment is `gym.make("MinAtar/Breakout-v1")` from the `minatar` package (its
`minatar.gym.register_envs()` registers the ids): actions `Discrete(3)` = the minimal action set
(no-op, left, right), sticky actions with probability 0.1, no time limit, observation a
10x10x4 bool array (rows, columns, channels paddle/ball/trail/brick).

ONE environment records every block, as a user reusing one env would: `reset(seed=...)` at the
start of a block replaces the generator (`np.random.RandomState(seed)`) but keeps the sticky
"last action" of the previous block, and the replay must do the same.

Output format (one record per line; '#' lines are provenance comments)
----------------------------------------------------------------------
    env <gym id>
    block <seed> <policy> <steps>
        `env.reset(seed=<seed>)`, then <steps> steps; after an episode ends, `env.reset()`
        without a seed (the generator continues). <policy> names how the actions were chosen
        (`random`: uniform; `track`: a paddle that follows the ball; `right`, `stay`: always
        that action; see BLOCKS below for what each block is there for); the actions come
        from `np.random.default_rng(ACTION_SEED + seed)` and are recorded, so the replay needs
        neither the policy nor that generator.
    R <obs>
        A reset and its observation.
    <action> <executed> <obs> <reward> <flags>
        A step: the action given to `env.step` (0..2), the action the game executed after the
        sticky-action draw (`game.last_action` mapped back to 0..2), the observation, the reward
        (int), flags = terminated + 2 * truncated.
    <obs> is the bool array in C order (row, column, channel) packed 4 bits to a hex digit, the
    first element in the most significant bit: 400 bits, 100 hex digits.
"""

import os
import platform
import sys

import gymnasium as gym
from importlib.metadata import version
import numpy as np
from minatar.gym import register_envs

ACTION_SEED = 20_000
GYM_ID = "MinAtar/Breakout-v1"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "minatar", "breakout.txt")


def obs_hex(obs):
    obs = np.asarray(obs)
    assert obs.dtype == np.bool_ and obs.shape == (10, 10, 4), (obs.dtype, obs.shape)
    return np.packbits(obs.reshape(-1)).tobytes().hex()


def random_policy(obs, rng):
    return int(rng.integers(3))


def track_policy(obs, rng):
    # Keep the paddle where the ball will be on row 8 (when it moves down: walls reflect it,
    # bricks are ignored) or on its next column (when it moves up); ball minus trail gives the
    # direction. No random actions: the sticky actions alone make it miss now and then, after
    # clearing the wall for the seeds below (a new wall appears, then the episode ends).
    ball = np.argwhere(obs[:, :, 1])
    trail = np.argwhere(obs[:, :, 2])
    paddle = np.argwhere(obs[9, :, 0])
    if len(ball) == 0 or len(trail) == 0 or len(paddle) == 0:
        return 0
    (by, bx), (ty, tx), px = (int(v) for v in ball[0]), (int(v) for v in trail[0]), int(paddle[0][0])
    dx = bx - tx if bx != tx else 1
    if by > ty:
        x = bx
        for _ in range(8 - by):
            x += dx
            if x < 0 or x > 9:
                x, dx = min(9, max(0, x)), -dx
        target = x
    else:
        target = min(9, max(0, bx + dx))
    return 0 if target == px else (1 if target < px else 2)


def right_policy(obs, rng):
    return 2


def stay_policy(obs, rng):
    return 0


# policy name, policy, [(seed, steps)], in recording order
BLOCKS = [
    ("random", random_policy, [(s, 150) for s in (0, 1, 2, 3, 4, 4294967295)]),
    # 305: the wall is cleared and refilled (step 366), a second brick right after a first is
    # entered unscored (step 426), the episode ends at 442. 258: the unscored brick at step 66.
    ("track", track_policy, [(305, 450), (258, 110)]),
    # The sticky action survives `reset(seed=...)`: after a block that only moves right, the
    # first step of RandomState(3) is sticky (its first `rand()`, after `randint(2)`, is < 0.1),
    # so the no-op asked for executes as "right".
    ("right", right_policy, [(7, 5)]),
    ("stay", stay_policy, [(3, 5)]),
]


def main():
    register_envs()
    env = gym.make(GYM_ID)
    action_set = env.unwrapped.action_set
    assert env.spec.max_episode_steps is None
    lines = [
        f"# {GYM_ID} recorded by tests/gym/record_minatar.py (format: see its docstring)",
        f"# minatar {version('MinAtar')}, gymnasium {gym.__version__}, "
        f"numpy {np.__version__}, python {platform.python_version()}",
        f"env {GYM_ID}",
    ]
    stats = dict(episodes=0, terminated=0, bricks=0, sticky=0, refills=0, ball_in_brick=0, unscored_brick=0, max_episode=0)
    for name, policy, blocks in BLOCKS:
        for seed, n_steps in blocks:
            act_rng = np.random.default_rng(ACTION_SEED + seed)
            lines.append(f"block {seed} {name} {n_steps}")
            obs, _ = env.reset(seed=seed)
            lines.append("R " + obs_hex(obs))
            ep_len = 0
            for t in range(n_steps):
                action = policy(obs, act_rng)
                bricks_before = int(obs[:, :, 3].sum())
                obs, reward, terminated, truncated, _ = env.step(action)
                executed = action_set.index(env.unwrapped.game.last_action)
                ep_len += 1
                stats["sticky"] += int(executed != action)
                stats["bricks"] += int(reward)
                stats["refills"] += int(int(obs[:, :, 3].sum()) > bricks_before)
                # A second brick hit on the very next step is not scored: the ball enters it.
                stats["ball_in_brick"] += int((obs[:, :, 1] & obs[:, :, 3]).any())
                stats["unscored_brick"] += int(env.unwrapped.game.env.strike and reward == 0)
                flags = int(bool(terminated)) + 2 * int(bool(truncated))
                lines.append(f"{action} {executed} {obs_hex(obs)} {int(reward)} {flags}")
                if terminated or truncated:
                    stats["episodes"] += 1
                    stats["terminated"] += int(bool(terminated))
                    stats["max_episode"] = max(stats["max_episode"], ep_len)
                    ep_len = 0
                    if t + 1 < n_steps:
                        obs, _ = env.reset()
                        lines.append("R " + obs_hex(obs))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{OUT}: {os.path.getsize(OUT)} bytes, {stats}", file=sys.stderr)


if __name__ == "__main__":
    main()
