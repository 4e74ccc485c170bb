//! The Gymnasium bridge: any registered Gymnasium id (`ALE/Breakout-v5`, `MinAtar/Breakout-v1`,
//! `Hopper-v5`, …) as a [`VecEnv`], driven through an embedded CPython (pyo3).
//!
//! The Python half is `gym/bridge.py`, compiled into the binary and run as the module
//! `acktr_gym_bridge`. Each [`VecEnv::step`] is **one** Python call for the whole batch: the
//! actions go in as one `bytes` object, the observations come back as one C-contiguous
//! float32 numpy array that is copied once, through the buffer protocol, into the `Vec<f32>`
//! (the crossing's one copy; the tch backend copies the batch again into a `Tensor`).
//!
//! Three families (docs/gymnasium.md has the details):
//! - **Atari** (`ALE/*-v5`, `*NoFrameskip-v4`, any id whose entry point is ale_py's `AtariEnv`):
//!   ale_py's C++ `AtariVectorEnv` with the paper's preprocessing (up to 30 no-ops, frame skip 4
//!   with a max over the last two frames, 84×84 grayscale, 4 stacked frames, episodic life, FIRE
//!   on reset, rewards clipped to their sign). Episodes report the whole game's raw score.
//! - **MinAtar** (`MinAtar/*`): observations `10×10×C` bool become `C×10×10` f32.
//! - **Everything else** (MuJoCo included): `gymnasium.make_vec(id, n, "sync")` with same-step
//!   autoreset; optional observation and reward normalisation ([`GymOptions`]).
//!
//! The interpreter is the CPython pyo3 was built against; the packages come from a virtualenv
//! found by [`find_venv`] and added with `site.addsitedir`.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyModule, PyTuple};

use super::{Actions, EpisodeInfo, Space, StepBatch, VecEnv};
use crate::error::{HostError, Result};

/// The Python half, embedded.
const BRIDGE_PY: &str = include_str!("gym/bridge.py");

/// What the set-up installs (shown when Gymnasium cannot be imported).
const SETUP_HINT: &str = "run the set-up from the repository root, `bash scripts/setup.sh` \
     (it makes `.venv` and installs python/requirements-gym.txt into it), or point VIRTUAL_ENV \
     at a virtualenv that has those packages; see docs/gymnasium.md";

/// Settings of the Gymnasium bridge. The CLI maps its flags onto these; `Default` is the
/// paper's set-up (Atari preprocessing on, no normalisation).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GymOptions {
    /// Normalise observations with running mean/variance (Gymnasium's `NormalizeObservation`
    /// arithmetic, statistics shared by all environments, applied to `final_obs` too). For
    /// vector observations (MuJoCo); refused for Atari ids.
    pub normalize_obs: bool,
    /// Scale rewards by the running standard deviation of the discounted return
    /// (`gymnasium.wrappers.vector.NormalizeReward`). Refused for Atari ids (they clip).
    pub normalize_reward: bool,
    /// Discount of the return whose spread `normalize_reward` tracks.
    pub gamma: f64,
    /// The normalisers' ε (added to the variance under the square root).
    pub epsilon: f64,
    /// Override the registered time limit (non-Atari ids), in agent steps.
    pub max_episode_steps: Option<u64>,
    /// Atari: at most this many no-op actions after a reset (ale-py draws 0..noop_max−1).
    pub noop_max: u32,
    /// Atari: emulator frames per agent step (max-pooled over the last two).
    pub frame_skip: u32,
    /// Atari: stacked frames, the observation's channels.
    pub frame_stack: u32,
    /// Atari: a lost life ends the training episode (`terminated`), the game plays on.
    pub episodic_life: bool,
    /// Atari: press FIRE after a reset in games that need it.
    pub fire_reset: bool,
    /// Atari: train on the sign of the reward (episodes still report the raw score).
    pub clip_rewards: bool,
    /// Atari: sticky-action probability; `None` takes the id's own (v5: 0.25, NoFrameskip-v4:
    /// 0.0).
    pub repeat_action_probability: Option<f32>,
    /// Atari: worker threads of ale-py's vector env (0: one per environment, at most the
    /// number of cores).
    pub num_threads: usize,
}

impl Default for GymOptions {
    fn default() -> Self {
        Self {
            normalize_obs: false,
            normalize_reward: false,
            gamma: 0.99,
            epsilon: 1e-8,
            max_episode_steps: None,
            noop_max: 30,
            frame_skip: 4,
            frame_stack: 4,
            episodic_life: true,
            fire_reset: true,
            clip_rewards: true,
            repeat_action_probability: None,
            num_threads: 0,
        }
    }
}

/// The normaliser's statistics, defined next to the trait that reads and restores them.
pub use super::ObsNormState;

/// `num_envs` Gymnasium environments behind the [`VecEnv`] trait.
pub struct GymVecEnv {
    id: String,
    num_envs: usize,
    obs_shape: Vec<usize>,
    obs_len: usize,
    space: Space,
    describe: serde_json::Value,
    wire: Wire,
    /// The normalisers' ε (reported with the observation statistics).
    epsilon: f64,
    bridge: Py<PyAny>,
}

/// How observations cross from numpy: float32, or uint8 images widened to f32 in Rust.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Wire {
    F32,
    U8,
}

/// Make `num_envs` environments of the Gymnasium id `id`.
pub fn make(id: &str, num_envs: usize, opts: &GymOptions) -> Result<Box<dyn VecEnv>> {
    Ok(Box::new(GymVecEnv::new(id, num_envs, opts)?))
}

impl GymVecEnv {
    /// Make `num_envs` environments of the Gymnasium id `id`. Unregistered ids give
    /// [`HostError::UnknownEnv`]; spaces other than `Box` observations and `Discrete` or 1-D
    /// `Box` actions give [`HostError::UnsupportedSpace`].
    pub fn new(id: &str, num_envs: usize, opts: &GymOptions) -> Result<Self> {
        if num_envs == 0 {
            return Err(HostError::InvalidSetting(
                "--num-envs must be at least 1".into(),
            ));
        }
        if opts.frame_skip == 0 || opts.frame_stack == 0 {
            return Err(HostError::InvalidSetting(
                "frame skip and frame stack must be at least 1".into(),
            ));
        }
        if !(opts.gamma.is_finite() && (0.0..=1.0).contains(&opts.gamma)) || opts.epsilon <= 0.0 {
            return Err(HostError::InvalidSetting(
                "normalisation needs gamma in [0, 1] and epsilon > 0".into(),
            ));
        }
        Python::attach(|py| {
            let module = bridge_module(py).map_err(|e| match e {
                HostError::Python(m) => HostError::Python(format!(
                    "`{id}` is not built in ({}) and the Gymnasium bridge is unavailable: {m}",
                    super::native::IDS.join(", ")
                )),
                other => other,
            })?;
            let kwargs = options_dict(py, opts).map_err(|e| py_err(py, e))?;
            let bridge = module
                .getattr("Bridge")
                .and_then(|cls| cls.call1((id, num_envs, kwargs)))
                .map_err(|e| classify(py, module, id, e))?;
            let obs_shape: Vec<usize> = get(py, &bridge, "obs_shape")?;
            let obs_len: usize = get(py, &bridge, "obs_len")?;
            let kind: String = get(py, &bridge, "action_kind")?;
            let n: usize = get(py, &bridge, "action_n")?;
            let space = if kind == "discrete" {
                Space::Discrete(n)
            } else {
                Space::Box {
                    low: get(py, &bridge, "action_low")?,
                    high: get(py, &bridge, "action_high")?,
                }
            };
            let text: String = bridge
                .call_method0("describe")
                .and_then(|d| d.extract())
                .map_err(|e| py_err(py, e))?;
            let wire = match get::<String>(py, &bridge, "wire")?.as_str() {
                "u8" => Wire::U8,
                _ => Wire::F32,
            };
            let describe = serde_json::from_str(&text)
                .map_err(|e| HostError::Python(format!("describe() is not JSON: {e}")))?;
            Ok(GymVecEnv {
                id: id.to_string(),
                num_envs,
                obs_shape,
                obs_len,
                space,
                describe,
                wire,
                epsilon: opts.epsilon,
                bridge: bridge.unbind(),
            })
        })
    }

    /// Freeze (`false`, for evaluation) or continue (`true`) the normalisers' statistics.
    pub fn set_update_stats(&mut self, update: bool) -> Result<()> {
        Python::attach(|py| {
            self.bridge
                .bind(py)
                .call_method1("set_update_stats", (update,))
                .map(drop)
                .map_err(|e| py_err(py, e))
        })
    }

    /// The actions as the bytes `bridge.py` reads: int64 indices or float32 rows.
    fn action_bytes(&self, actions: &Actions) -> Result<Vec<u8>> {
        let n = self.num_envs;
        let mismatch =
            || HostError::InvalidSetting("action batch does not match the environments".into());
        match (actions, &self.space) {
            (Actions::Discrete(a), Space::Discrete(k)) if a.len() == n => {
                let mut out = Vec::with_capacity(8 * n);
                for &x in a {
                    if x >= *k {
                        return Err(HostError::InvalidSetting(format!(
                            "action {x} out of range for Discrete({k})"
                        )));
                    }
                    out.extend_from_slice(&(x as i64).to_ne_bytes());
                }
                Ok(out)
            }
            (Actions::Continuous(a), Space::Box { low, .. }) if a.len() == n * low.len() => {
                if a.iter().any(|x| !x.is_finite()) {
                    return Err(HostError::InvalidSetting(
                        "non-finite continuous action".into(),
                    ));
                }
                Ok(a.iter().flat_map(|x| x.to_ne_bytes()).collect())
            }
            _ => Err(mismatch()),
        }
    }
}

impl VecEnv for GymVecEnv {
    fn id(&self) -> &str {
        &self.id
    }
    fn num_envs(&self) -> usize {
        self.num_envs
    }
    fn obs_shape(&self) -> &[usize] {
        &self.obs_shape
    }
    fn action_space(&self) -> &Space {
        &self.space
    }

    fn reset(&mut self, seed: u64) -> Result<Vec<f32>> {
        Python::attach(|py| {
            let bridge = self.bridge.bind(py);
            let obs = bridge
                .call_method1("reset", (seed,))
                .map_err(|e| classify_err(py, &self.id, e))?;
            read_obs(py, &obs, self.num_envs * self.obs_len, self.wire)
        })
    }

    fn step(&mut self, actions: &Actions) -> Result<StepBatch> {
        let bytes = self.action_bytes(actions)?;
        let n = self.num_envs;
        let len = self.obs_len;
        let wire = self.wire;
        Python::attach(|py| {
            let out = self
                .bridge
                .bind(py)
                .call_method1("step", (PyBytes::new(py, &bytes),))
                .map_err(|e| py_err(py, e))?;
            let t = out.cast::<PyTuple>().map_err(|e| py_err(py, e.into()))?;
            let item = |i: usize| t.get_item(i).map_err(|e| py_err(py, e));
            let obs = read_obs(py, &item(0)?, n * len, wire)?;
            let rewards: Vec<f32> = read::<f64>(py, &item(1)?, n, "rewards")?
                .into_iter()
                .map(|r| r as f32)
                .collect();
            let terminated = read::<u8>(py, &item(2)?, n, "terminated")?
                .into_iter()
                .map(|b| b != 0)
                .collect();
            let truncated = read::<u8>(py, &item(3)?, n, "truncated")?
                .into_iter()
                .map(|b| b != 0)
                .collect();
            let final_idx_obj = item(4)?;
            let k = final_idx_obj.len().map_err(|e| py_err(py, e))?;
            let final_idx = read::<i64>(py, &final_idx_obj, k, "final indices")?;
            let finals = read_obs(py, &item(5)?, k * len, wire)?;
            let mut final_obs = vec![None; n];
            for (j, &i) in final_idx.iter().enumerate() {
                let i = usize::try_from(i)
                    .ok()
                    .filter(|&i| i < n)
                    .ok_or_else(|| HostError::Python(format!("bridge returned env index {i}")))?;
                final_obs[i] = Some(finals[j * len..(j + 1) * len].to_vec());
            }
            let eps: Vec<(usize, f64, u64)> = item(6)?.extract().map_err(|e| py_err(py, e))?;
            let episodes = eps
                .into_iter()
                .map(|(env, ret, len)| EpisodeInfo { env, ret, len })
                .collect();
            Ok(StepBatch {
                obs,
                rewards,
                terminated,
                truncated,
                final_obs,
                episodes,
            })
        })
    }

    fn describe(&self) -> serde_json::Value {
        self.describe.clone()
    }

    /// The observation normaliser's statistics, `None` when `normalize_obs` is off.
    fn obs_norm_state(&self) -> Result<Option<ObsNormState>> {
        Python::attach(|py| {
            let state: Option<(Vec<f64>, Vec<f64>, f64)> = self
                .bridge
                .bind(py)
                .call_method0("obs_norm_state")
                .and_then(|s| s.extract())
                .map_err(|e| py_err(py, e))?;
            Ok(state.map(|(mean, var, count)| ObsNormState {
                mean,
                var,
                count,
                epsilon: self.epsilon,
            }))
        })
    }

    /// Restore the observation normaliser's statistics (a resumed run). Its ε must be this
    /// environment's: the statistics were gathered for that formula.
    fn set_obs_norm_state(&mut self, state: &ObsNormState) -> Result<()> {
        if state.epsilon.to_bits() != self.epsilon.to_bits() {
            return Err(HostError::InvalidSetting(format!(
                "{}: saved normaliser has epsilon {:e}, this environment {:e}",
                self.id, state.epsilon, self.epsilon
            )));
        }
        Python::attach(|py| {
            let bridge = self.bridge.bind(py);
            bridge
                .call_method1(
                    "set_obs_norm_state",
                    (state.mean.clone(), state.var.clone(), state.count),
                )
                .map(drop)
                .map_err(|e| classify_err(py, &self.id, e))
        })
    }
}

impl Drop for GymVecEnv {
    fn drop(&mut self) {
        Python::attach(|py| {
            // Closing frees the emulators/simulators now rather than at interpreter exit; an
            // error here has nowhere useful to go.
            let _ = self.bridge.bind(py).call_method0("close");
        });
    }
}

// --------------------------------------------------------------------------------------------
// The interpreter and its packages

static BRIDGE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The bridge module, loaded once per process (after the virtualenv's site-packages were
/// added to `sys.path`).
fn bridge_module(py: Python<'_>) -> Result<&Bound<'_, PyModule>> {
    let module = BRIDGE.get_or_try_init(py, || load_bridge(py))?;
    Ok(module.bind(py))
}

fn load_bridge(py: Python<'_>) -> Result<Py<PyModule>> {
    let sys = py.import("sys").map_err(|e| py_err(py, e))?;
    let (major, minor): (u32, u32) = sys
        .getattr("version_info")
        .and_then(|v| Ok((v.get_item(0)?.extract()?, v.get_item(1)?.extract()?)))
        .map_err(|e| py_err(py, e))?;
    // Embedded interpreters have no sys.argv; some packages read it.
    if !sys.hasattr("argv").unwrap_or(false) {
        sys.setattr("argv", vec!["acktr"])
            .map_err(|e| py_err(py, e))?;
    }
    let venv = find_venv();
    let mut searched = String::new();
    match &venv {
        Some(v) => {
            let site = site_packages(v, major, minor);
            if site.is_dir() {
                add_site_first(py, &sys, &site).map_err(|e| py_err(py, e))?;
                searched = format!("; added {}", site.display());
            } else if !v.is_dir() {
                searched = format!("; the virtualenv {} does not exist", v.display());
            } else {
                searched = format!(
                    "; the virtualenv {} has no {} (made with another Python than the \
                     embedded {major}.{minor}?)",
                    v.display(),
                    site.display()
                );
            }
        }
        None => searched.push_str("; no virtualenv found (VIRTUAL_ENV unset, no .venv above the current directory or the executable)"),
    }
    let code = CString::new(BRIDGE_PY).map_err(|e| HostError::Python(e.to_string()))?;
    PyModule::from_code(py, &code, c"acktr_gym_bridge.py", c"acktr_gym_bridge")
        .map(Bound::unbind)
        .map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyImportError>(py) {
                HostError::Python(format!(
                    "cannot import the bridge's packages ({e}) into the embedded Python \
                     {major}.{minor}{searched}: {SETUP_HINT}"
                ))
            } else {
                py_err(py, e)
            }
        })
}

/// `site.addsitedir(site)` (which also runs its `.pth` files), then move what it added to the
/// front of `sys.path`: the virtualenv's packages must win over a system interpreter's own
/// `dist-packages` (Debian puts those on the path).
fn add_site_first(py: Python<'_>, sys: &Bound<'_, PyModule>, site: &Path) -> PyResult<()> {
    let before: Vec<String> = sys.getattr("path")?.extract()?;
    py.import("site")?
        .call_method1("addsitedir", (site.to_string_lossy().into_owned(),))?;
    let after: Vec<String> = sys.getattr("path")?.extract()?;
    let (mut added, rest): (Vec<String>, Vec<String>) =
        after.into_iter().partition(|p| !before.contains(p));
    added.extend(rest);
    sys.setattr("path", added)
}

/// The virtualenv whose site-packages the embedded interpreter uses, first match wins:
/// 1. `$VIRTUAL_ENV` (an activated virtualenv);
/// 2. `.venv/` in the current directory or one of its ancestors (a user in the repository);
/// 3. `.venv/` next to the executable or above it (`<repo>/target/release/acktr`);
/// 4. `<repo>/.venv/` of the checkout this crate was built from.
///
/// A directory counts as a virtualenv when it has a `pyvenv.cfg`.
pub fn find_venv() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    let above = |start: &Path| {
        start
            .ancestors()
            .map(|d| d.join(".venv"))
            .find(|v| v.join("pyvenv.cfg").is_file())
    };
    if let Some(v) = std::env::current_dir().ok().and_then(|d| above(&d)) {
        return Some(v);
    }
    if let Some(v) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().and_then(above))
    {
        return Some(v);
    }
    above(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// `<venv>/lib/pythonX.Y/site-packages`.
fn site_packages(venv: &Path, major: u32, minor: u32) -> PathBuf {
    venv.join("lib")
        .join(format!("python{major}.{minor}"))
        .join("site-packages")
}

// --------------------------------------------------------------------------------------------
// Conversions

/// The options as the keyword dict `Bridge.__init__` reads.
fn options_dict<'py>(py: Python<'py>, o: &GymOptions) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("normalize_obs", o.normalize_obs)?;
    d.set_item("normalize_reward", o.normalize_reward)?;
    d.set_item("gamma", o.gamma)?;
    d.set_item("epsilon", o.epsilon)?;
    d.set_item("max_episode_steps", o.max_episode_steps)?;
    d.set_item("noop_max", o.noop_max)?;
    d.set_item("frame_skip", o.frame_skip)?;
    d.set_item("frame_stack", o.frame_stack)?;
    d.set_item("episodic_life", o.episodic_life)?;
    d.set_item("fire_reset", o.fire_reset)?;
    d.set_item("clip_rewards", o.clip_rewards)?;
    d.set_item("repeat_action_probability", o.repeat_action_probability)?;
    d.set_item("num_threads", o.num_threads)?;
    Ok(d)
}

/// An attribute of the bridge object.
fn get<T>(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str) -> Result<T>
where
    T: for<'a, 'py> FromPyObject<'a, 'py, Error = PyErr>,
{
    obj.getattr(name)
        .and_then(|v| v.extract::<T>())
        .map_err(|e| py_err(py, e))
}

/// Observations as f32, copied once from the numpy buffer (uint8 widened on the way).
fn read_obs(py: Python<'_>, obj: &Bound<'_, PyAny>, len: usize, wire: Wire) -> Result<Vec<f32>> {
    match wire {
        Wire::F32 => read::<f32>(py, obj, len, "observations"),
        Wire::U8 => Ok(read::<u8>(py, obj, len, "observations")?
            .into_iter()
            .map(f32::from)
            .collect()),
    }
}

/// Copy a C-contiguous numpy array of `T` with `len` elements into a `Vec`.
fn read<T: Element>(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    len: usize,
    what: &str,
) -> Result<Vec<T>> {
    let buf = PyBuffer::<T>::get(obj).map_err(|e| py_err(py, e))?;
    if buf.item_count() != len {
        return Err(HostError::Python(format!(
            "bridge returned {} {what}, expected {len}",
            buf.item_count()
        )));
    }
    buf.to_vec(py).map_err(|e| py_err(py, e))
}

/// A Python exception as [`HostError::Python`]: `Type: message` and the traceback.
fn py_err(py: Python<'_>, e: PyErr) -> HostError {
    let mut msg = e.to_string();
    if let Some(tb) = e.traceback(py).and_then(|tb| tb.format().ok()) {
        msg = format!("{msg}\n{}", tb.trim_end());
    }
    HostError::Python(msg)
}

/// [`classify`] with the bridge module looked up.
fn classify_err(py: Python<'_>, id: &str, e: PyErr) -> HostError {
    match bridge_module(py) {
        Ok(module) => classify(py, module, id, e),
        Err(_) => py_err(py, e),
    }
}

/// Map the bridge's own exceptions to the matching [`HostError`] variants.
fn classify(py: Python<'_>, module: &Bound<'_, PyModule>, id: &str, e: PyErr) -> HostError {
    let is = |name: &str| {
        module
            .getattr(name)
            .map(|ty| e.is_instance(py, &ty))
            .unwrap_or(false)
    };
    let msg = e.value(py).to_string();
    if is("UnknownEnv") {
        HostError::UnknownEnv {
            id: id.to_string(),
            known: format!(
                "{} and every registered Gymnasium id (Gymnasium says: {msg})",
                super::native::IDS.join(", ")
            ),
        }
    } else if is("UnsupportedSpace") {
        HostError::UnsupportedSpace(format!("{id}: {msg}"))
    } else if is("InvalidSetting") {
        HostError::InvalidSetting(format!("{id}: {msg}"))
    } else {
        py_err(py, e)
    }
}
