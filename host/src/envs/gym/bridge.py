"""The Python half of acktr-host's Gymnasium bridge (host/src/envs/gym.rs, docs/gymnasium.md).

Rust embeds this file, runs it as the module `acktr_gym_bridge` and calls one method per batch
step. Everything returned to Rust is a C-contiguous numpy array (read through the buffer
protocol, copied once) or a short list of plain tuples.

Semantics (the `VecEnv` trait of host/src/envs/mod.rs):
- observations float32, `(num_envs, obs_len)`, images channel-first;
- same-step autoreset, with the observation each finished environment ended in;
- episodes with their raw return and length, before reward clipping or normalisation.
"""

import json

import numpy as np

import gymnasium as gym
from gymnasium.vector import AutoresetMode


class UnknownEnv(Exception):
    """The id is not registered with Gymnasium (nor ale_py, nor minatar)."""


class UnsupportedSpace(Exception):
    """An observation or action space the policy heads cannot handle."""


class InvalidSetting(Exception):
    """An option that does not apply to this environment."""


_registered = False
_optional = {}


def _register():
    """Register the optional families once: ale_py (ALE/*) and minatar (MinAtar/*)."""
    global _registered
    if _registered:
        return
    try:
        import ale_py

        gym.register_envs(ale_py)
        _optional["ale_py"] = ale_py.__version__
    except ImportError as e:
        _optional["ale_py"] = f"not importable: {e}"
    try:
        import minatar.gym as minatar_gym

        if "MinAtar/Breakout-v1" not in gym.registry:
            minatar_gym.register_envs()
        from importlib.metadata import version

        _optional["minatar"] = version("minatar")
    except ImportError as e:
        _optional["minatar"] = f"not importable: {e}"
    _registered = True


def versions():
    """Versions of the Python packages the bridge uses (for the run's config)."""
    _register()
    out = {"gymnasium": gym.__version__, "numpy": np.__version__}
    out.update(_optional)
    try:
        import mujoco

        out["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    import sys

    out["python"] = f"{sys.version.split()[0]} ({sys.base_prefix})"
    return out


def find_spec(env_id):
    """`None` if `env_id` is registered, else Gymnasium's message saying why not."""
    _register()
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        return str(e)
    return None


def _json_num(x):
    """JSON has no infinities: write them as strings."""
    return x if np.isfinite(x) else str(x)


def _space_repr(space):
    return f"{type(space).__name__}: {space}"


class _RawRewards(gym.vector.VectorWrapper):
    """Keeps the rewards of the wrapped vector env before any normalisation wrapper."""

    def __init__(self, env):
        super().__init__(env)
        self.raw = np.zeros(self.num_envs, dtype=np.float64)

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.raw = np.asarray(rewards, dtype=np.float64)
        return obs, rewards, terminated, truncated, info


class Bridge:
    """`num_envs` environments of `env_id`, stepped together with same-step autoreset."""

    def __init__(self, env_id, num_envs, opts):
        _register()
        msg = find_spec(env_id)
        if msg is not None:
            raise UnknownEnv(msg)
        spec = gym.spec(env_id)
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.opts = dict(opts)
        entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
        if entry == "ale_py.env:AtariEnv":
            self.family = "atari"
        elif env_id.startswith("MinAtar/"):
            self.family = "minatar"
        elif entry.startswith("gymnasium.envs.mujoco"):
            self.family = "mujoco"
        else:
            self.family = "generic"
        self.env = None
        self._transpose = None
        self._obs_rms = None
        self._update_stats = True
        try:
            if self.family == "atari":
                self._make_atari(spec)
            else:
                self._make_gymnasium(spec)
        except BaseException:
            self.close()
            raise
        n = self.num_envs
        self.obs_len = int(np.prod(self.obs_shape, dtype=np.int64))
        # How observations cross to Rust: images as uint8 (Rust widens them to f32 while
        # copying), everything else as float32.
        self.wire = (
            "u8"
            if (self.family == "atari" or self._transpose is not None) and self._obs_rms is None
            else "f32"
        )
        self._obs = np.zeros((n, self.obs_len), dtype=np.float32)
        self._ret = np.zeros(n, dtype=np.float64)
        self._len = np.zeros(n, dtype=np.int64)

    # ----------------------------------------------------------------------------------------
    # Construction

    def _make_atari(self, spec):
        """ale_py's C++ AtariVectorEnv: the paper's preprocessing, done natively."""
        import ale_py

        o = self.opts
        if o["normalize_obs"] or o["normalize_reward"]:
            raise InvalidSetting(
                "observation/reward normalisation is for vector observations (MuJoCo); "
                "Atari ids use reward clipping (clip_rewards) instead"
            )
        kw = spec.kwargs
        sticky = o["repeat_action_probability"]
        if sticky is None:
            # What the id means in Gymnasium: v5 is sticky (0.25), *NoFrameskip-v4 is not (0.0).
            sticky = float(kw.get("repeat_action_probability", 0.25))
        self.atari = {
            "game": kw["game"],
            "frame_skip": int(o["frame_skip"]),
            "max_pool_last_two_frames": True,
            "noop_max": int(o["noop_max"]),
            "resize": [84, 84],
            "resize_interpolation": "cv2.INTER_AREA",
            "grayscale": True,
            "frame_stack": int(o["frame_stack"]),
            "episodic_life": bool(o["episodic_life"]),
            "fire_reset": bool(o["fire_reset"]),
            "clip_rewards": "sign" if o["clip_rewards"] else "none",
            "repeat_action_probability": sticky,
            "full_action_space": bool(kw.get("full_action_space", False)),
            "max_num_frames_per_episode": int(kw.get("max_num_frames_per_episode", 108000)),
        }
        a = self.atari
        self.env = ale_py.AtariVectorEnv(
            a["game"],
            self.num_envs,
            num_threads=int(o["num_threads"]),
            autoreset_mode=AutoresetMode.SAME_STEP,
            max_num_frames_per_episode=a["max_num_frames_per_episode"],
            repeat_action_probability=a["repeat_action_probability"],
            full_action_space=a["full_action_space"],
            img_height=84,
            img_width=84,
            grayscale=True,
            stack_num=a["frame_stack"],
            frameskip=a["frame_skip"],
            maxpool=True,
            noop_max=a["noop_max"],
            # ale_py's `episodic_life` resets the whole game on a life loss; `life_loss_info`
            # only reports the loss as a termination and plays on, which is the paper's
            # EpisodicLifeEnv. Game overs are told apart from life losses in `step`.
            episodic_life=False,
            life_loss_info=a["episodic_life"],
            # Raw rewards come back; the clipping to sign happens in `step`, after the raw
            # return was accumulated.
            reward_clipping=False,
            use_fire_reset=a["fire_reset"],
        )
        # ale_py presses FIRE on a reset only. With `life_loss_info` the game plays on after a
        # life loss without one, where the paper's EpisodicLifeEnv + FireResetEnv reset and so
        # press FIRE after every life: a policy that never chooses FIRE (a deterministic
        # evaluation of an untrained net, often) then waits out the 108,000-frame limit. The
        # bridge presses FIRE on the two steps after a life loss instead of the agent's action
        # (two: with sticky actions one FIRE is lost to the previous action with p = 0.25⁴).
        self._fire_action = None
        if a["fire_reset"]:
            probe = ale_py.AtariEnv(game=a["game"], full_action_space=a["full_action_space"])
            try:
                meanings = probe.get_action_meanings()
            finally:
                probe.close()
            if "FIRE" in meanings:
                self._fire_action = meanings.index("FIRE")
        a["fire_after_life_loss"] = self._fire_action is not None
        self._lives = np.zeros(self.num_envs, dtype=np.int64)
        self._fire_next = np.zeros(self.num_envs, dtype=np.int64)
        self.obs_shape = tuple(int(d) for d in self.env.single_observation_space.shape)
        self.obs_layout = "CHW (frame stack as channels), grayscale 0..255, not scaled"
        self._set_action_space(self.env.single_action_space)
        self._episode_start = None

    def _make_gymnasium(self, spec):
        """`gymnasium.make_vec(..., "sync", SAME_STEP)`, plus optional normalisation."""
        o = self.opts
        kwargs = {}
        if o["max_episode_steps"] is not None:
            kwargs["max_episode_steps"] = int(o["max_episode_steps"])
        base = gym.make_vec(
            self.env_id,
            num_envs=self.num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **kwargs,
        )
        self.env = base
        if base.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise InvalidSetting(
                f"{self.env_id}: the vector env did not accept SAME_STEP autoreset "
                f"(got {base.metadata.get('autoreset_mode')})"
            )
        obs_space = base.single_observation_space
        if not isinstance(obs_space, gym.spaces.Box):
            raise UnsupportedSpace(f"observation space {_space_repr(obs_space)}")
        shape = tuple(int(d) for d in obs_space.shape)
        if self.family == "minatar":
            # (10, 10, C) bool -> (C, 10, 10)
            if len(shape) != 3:
                raise UnsupportedSpace(f"MinAtar observation {_space_repr(obs_space)}")
            self._transpose = (0, 3, 1, 2)
            shape = (shape[2], shape[0], shape[1])
            self.obs_layout = "CHW, 0/1 (from (10, 10, C) bool)"
        elif (
            obs_space.dtype == np.uint8
            and len(shape) == 3
            and shape[2] in (1, 3, 4)
            and min(shape[0], shape[1]) > 4
        ):
            # An image (H, W, C) uint8 -> (C, H, W), as the trait wants images.
            self._transpose = (0, 3, 1, 2)
            shape = (shape[2], shape[0], shape[1])
            self.obs_layout = "CHW (from (H, W, C) uint8), 0..255, not scaled"
        else:
            cast = "" if obs_space.dtype == np.float32 else " cast to float32"
            self.obs_layout = f"{obs_space.dtype}{cast}, flattened row-major"
        self.obs_shape = shape
        self.obs_dtype = str(obs_space.dtype)
        self._set_action_space(base.single_action_space)
        self._raw = _RawRewards(base)
        self.env = self._raw
        if o["normalize_reward"]:
            from gymnasium.wrappers.vector import NormalizeReward

            self.env = NormalizeReward(
                self._raw, gamma=float(o["gamma"]), epsilon=float(o["epsilon"])
            )
        if o["normalize_obs"]:
            from gymnasium.wrappers.utils import RunningMeanStd

            # gymnasium.wrappers.vector.NormalizeObservation refuses SAME_STEP (it cannot
            # reach `final_obs`), so its arithmetic is applied here to both.
            self._obs_rms = RunningMeanStd(shape=(int(np.prod(shape)),), dtype=np.float64)

    def _set_action_space(self, space):
        if isinstance(space, gym.spaces.Discrete):
            self.action_kind = "discrete"
            self.action_n = int(space.n)
            self._action_start = int(space.start)
            self.action_low = []
            self.action_high = []
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            self.action_kind = "box"
            self.action_n = int(space.shape[0])
            self.action_low = [float(x) for x in np.asarray(space.low, dtype=np.float32)]
            self.action_high = [float(x) for x in np.asarray(space.high, dtype=np.float32)]
            self._action_dtype = space.dtype
        else:
            raise UnsupportedSpace(f"action space {_space_repr(space)}")

    # ----------------------------------------------------------------------------------------
    # The description saved in the run's config

    def describe(self):
        d = {
            "source": "gymnasium",
            "id": self.env_id,
            "family": self.family,
            "num_envs": self.num_envs,
            "autoreset": "same-step",
            "obs_shape": list(self.obs_shape),
            "obs_layout": self.obs_layout,
            "action_space": (
                {"discrete": self.action_n}
                if self.action_kind == "discrete"
                else {
                    "box": {
                        "low": [_json_num(x) for x in self.action_low],
                        "high": [_json_num(x) for x in self.action_high],
                    }
                }
            ),
            "episode_stats": "raw return and length, before clipping/normalisation",
            "versions": versions(),
        }
        if self.family == "atari":
            d["vectorization"] = "ale_py.AtariVectorEnv (C++ threads)"
            d["preprocessing"] = dict(self.atari)
            d["episode_stats"] = (
                "raw game score (all lives, unclipped) and agent steps, per game"
            )
        else:
            d["vectorization"] = "gymnasium.make_vec(vectorization_mode='sync')"
            pre = {}
            if self._transpose is not None:
                pre["transpose"] = "HWC -> CHW"
            if self.family == "minatar":
                game = getattr(self._raw.env.envs[0].unwrapped, "game", None)
                if game is not None:
                    # MinAtar's own defaults, applied inside the game.
                    pre["sticky_action_prob"] = float(game.sticky_action_prob)
            if self.opts["max_episode_steps"] is not None:
                pre["max_episode_steps"] = int(self.opts["max_episode_steps"])
            pre["normalize_obs"] = (
                {
                    "method": "gymnasium NormalizeObservation arithmetic, shared stats, "
                    "applied to obs and final_obs",
                    "epsilon": float(self.opts["epsilon"]),
                }
                if self._obs_rms is not None
                else False
            )
            pre["normalize_reward"] = (
                {
                    "method": "gymnasium.wrappers.vector.NormalizeReward",
                    "gamma": float(self.opts["gamma"]),
                    "epsilon": float(self.opts["epsilon"]),
                }
                if self.opts["normalize_reward"]
                else False
            )
            d["preprocessing"] = pre
            spec = gym.spec(self.env_id)
            d["max_episode_steps"] = (
                int(self.opts["max_episode_steps"])
                if self.opts["max_episode_steps"] is not None
                else spec.max_episode_steps
            )
        return json.dumps(d, allow_nan=False)

    # ----------------------------------------------------------------------------------------
    # Normalisation state (checkpoints, evaluation)

    def obs_norm_state(self):
        if self._obs_rms is None:
            return None
        r = self._obs_rms
        return (r.mean.tolist(), r.var.tolist(), float(r.count))

    def set_obs_norm_state(self, mean, var, count):
        if self._obs_rms is None:
            raise InvalidSetting("observation normalisation is off for this environment")
        mean = np.asarray(mean, dtype=np.float64)
        var = np.asarray(var, dtype=np.float64)
        if mean.shape != self._obs_rms.mean.shape or var.shape != mean.shape:
            raise InvalidSetting(
                f"normalisation state has {mean.shape} values, observations {self.obs_len}"
            )
        self._obs_rms.mean = mean
        self._obs_rms.var = var
        self._obs_rms.count = float(count)

    def set_update_stats(self, update):
        """Freeze (False) or continue (True) the running statistics, e.g. for evaluation."""
        self._update_stats = bool(update)
        if self.family != "atari" and self.opts["normalize_reward"]:
            self.env.update_running_mean = bool(update)

    # ----------------------------------------------------------------------------------------
    # Observations

    def _flat(self, obs):
        """The batch as (k, obs_len) in any dtype, channel-first for MinAtar."""
        obs = np.asarray(obs)
        if self._transpose is not None:
            obs = obs.transpose(self._transpose)
        return obs.reshape(obs.shape[0], -1)

    def _normalize(self, flat, update):
        """NormalizeObservation's arithmetic: (obs - mean) / sqrt(var + eps), in float32."""
        rms = self._obs_rms
        if update and self._update_stats:
            rms.update(flat)
        return np.float32((flat - rms.mean) / np.sqrt(rms.var + float(self.opts["epsilon"])))

    def _emit(self, obs, update):
        flat = self._flat(obs)
        if self._obs_rms is not None:
            flat = self._normalize(flat, update)
        if self.wire == "u8":
            return np.ascontiguousarray(flat).view(np.uint8)
        np.copyto(self._obs, flat, casting="unsafe")
        return self._obs

    def _final(self, final_list):
        if not final_list:
            dtype = np.uint8 if self.wire == "u8" else np.float32
            return np.zeros((0, self.obs_len), dtype=dtype)
        flat = self._flat(np.stack(final_list))
        if self._obs_rms is not None:
            flat = self._normalize(flat, update=False)
        if self.wire == "u8":
            return np.ascontiguousarray(flat).view(np.uint8)
        return np.ascontiguousarray(flat, dtype=np.float32)

    # ----------------------------------------------------------------------------------------
    # Reset and step

    def reset(self, seed):
        seeds = [int(seed) + i for i in range(self.num_envs)]
        if self.family == "atari":
            if seeds[-1] > 2**31 - 1:
                raise InvalidSetting(
                    f"ale_py takes 31-bit seeds; seed {seed} + {self.num_envs - 1} is too large"
                )
            obs, info = self.env.reset(seed=np.asarray(seeds, dtype=np.int64))
            self._episode_start = self._atari_episode_start(info)
            self._lives = np.asarray(info["lives"], dtype=np.int64).copy()
            self._fire_next[:] = 0
        else:
            # NormalizeReward's reset clears its discounted returns too.
            obs, info = self.env.reset(seed=seeds)
        self._ret[:] = 0.0
        self._len[:] = 0
        return self._emit(obs, update=True)

    @staticmethod
    def _atari_episode_start(info):
        # ALE's frame counter minus the episode's frame counter is the frame the current game
        # started at: constant within a game, larger after every reset.
        return np.asarray(info["frame_number"], dtype=np.int64) - np.asarray(
            info["episode_frame_number"], dtype=np.int64
        )

    def _actions(self, raw):
        if self.action_kind == "discrete":
            a = np.frombuffer(raw, dtype=np.int64)
            if self._action_start != 0:
                a = a + self._action_start
            return a
        a = np.frombuffer(raw, dtype=np.float32).reshape(self.num_envs, self.action_n)
        return a.astype(self._action_dtype, copy=False)

    def step(self, raw_actions):
        """One batch step. `raw_actions`: int64 indices or float32 `(n, dim)`, as bytes.

        Returns (obs, rewards, terminated, truncated, final_idx, final_obs, episodes):
        obs (n, obs_len) in the wire dtype (`self.wire`: float32 or uint8); rewards float64
        (n,); terminated/truncated uint8 (n,); final_idx int64 (k,); final_obs (k, obs_len)
        in the wire dtype; episodes [(env, ret, len)].
        """
        actions = self._actions(raw_actions)
        if self.family == "atari":
            return self._step_atari(actions)
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        raw = self._raw.raw
        self._ret += raw
        self._len += 1
        done = terminated | truncated
        final_idx = np.flatnonzero(done)
        episodes = []
        final_list = []
        if final_idx.size:
            final_obs = info["final_obs"]
            for i in final_idx:
                final_list.append(final_obs[i])
                episodes.append((int(i), float(self._ret[i]), int(self._len[i])))
            self._ret[done] = 0.0
            self._len[done] = 0
        out = self._emit(obs, update=True)
        return (
            out,
            np.ascontiguousarray(rewards, dtype=np.float64),
            terminated.view(np.uint8),
            truncated.view(np.uint8),
            final_idx.astype(np.int64),
            self._final(final_list),
            episodes,
        )

    def _step_atari(self, actions):
        fire = self._fire_next > 0
        if self._fire_action is not None and fire.any():
            actions = np.array(actions, copy=True)
            actions[fire] = self._fire_action
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        raw = np.asarray(rewards, dtype=np.float64)
        self._ret += raw
        self._len += 1
        start = self._atari_episode_start(info)
        game_over = start != self._episode_start
        self._episode_start = start
        lives = np.asarray(info["lives"], dtype=np.int64)
        self._fire_next = np.where(
            (lives < self._lives) & ~game_over, 2, np.maximum(self._fire_next - 1, 0)
        )
        self._lives = lives.copy()
        done = terminated | truncated
        final_idx = np.flatnonzero(done)
        final_list = []
        if final_idx.size:
            final_obs = info.get("final_obs")
            for i in final_idx:
                if game_over[i] and final_obs is not None:
                    final_list.append(final_obs[i])
                else:
                    # A life loss (episodic life): the game plays on from this very frame.
                    final_list.append(obs[i])
        episodes = []
        for i in np.flatnonzero(game_over):
            episodes.append((int(i), float(self._ret[i]), int(self._len[i])))
        self._ret[game_over] = 0.0
        self._len[game_over] = 0
        clipped = np.sign(raw) if self.atari["clip_rewards"] == "sign" else raw
        out = self._emit(obs, update=False)
        return (
            out,
            np.ascontiguousarray(clipped, dtype=np.float64),
            terminated.view(np.uint8),
            truncated.view(np.uint8),
            final_idx.astype(np.int64),
            self._final(final_list),
            episodes,
        )

    def close(self):
        if self.env is not None:
            try:
                self.env.close()
            finally:
                self.env = None
