//! The run folder: everything one training run writes, in formats other tools already read.
//!
//! ```text
//! <out>/
//!   config.json                         the full configuration and seed (pretty JSON)
//!   monitor.csv                         one row per finished episode (stable-baselines3 Monitor)
//!   progress.csv                        one row per log interval (stable-baselines3 CSV logger)
//!   events.out.tfevents.<secs>.<host>   TensorBoard scalars (one file per start or resume)
//!   checkpoint.ackc                     the latest checkpoint (see [`checkpoint`])
//!   checkpoint.prev.ackc                the one before it
//!   .acktr.lock                         the trainer's lock (see [`lock`])
//! ```
//!
//! Every format is specified in `docs/run-folder.md`, with the pandas and TensorBoard one-liners
//! that read it. The log writers buffer: what they hold reaches the file on `flush()`, on drop,
//! and with the first write that comes [`FLUSH_INTERVAL`] or more after the last flush, so a
//! killed run that flushes at every log interval loses at most the lines since then. The
//! checkpoint is replaced atomically and is never half-written.

pub mod checkpoint;
pub mod lock;
mod monitor;
mod progress;
mod tensorboard;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use checkpoint::{crc32c, Checkpoint};
pub use lock::{RunLock, LOCK_FILE};
pub use monitor::read_rows as read_monitor_rows;
pub use monitor::Monitor;
pub use progress::{Progress, Value};
pub use tensorboard::{masked_crc32c, TensorBoard};

use crate::error::{HostError, Result};

/// File name of the configuration inside a run folder.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the episode log inside a run folder.
pub const MONITOR_FILE: &str = "monitor.csv";
/// File name of the training-statistics log inside a run folder.
pub const PROGRESS_FILE: &str = "progress.csv";

/// The longest a log line waits in a buffer before it reaches the file.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A run folder on disk: its path and, for a trainer ([`RunDir::create`],
/// [`RunDir::open_for_resume`]), the folder's [`RunLock`], held until the last clone is
/// dropped. The writers ([`Monitor`], [`Progress`], [`TensorBoard`]) and [`checkpoint`]
/// functions take the paths it hands out.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
    resumed: bool,
    lock: Option<Arc<RunLock>>,
}

/// Equal when they name the same folder in the same mode (the lock is not compared).
impl PartialEq for RunDir {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.resumed == other.resumed
    }
}

impl Eq for RunDir {}

/// A file a failed start or a killed write leaves behind: [`checkpoint::temp_path`]'s
/// `.<name>.tmp`, or the lock file. Neither makes a folder a run.
fn is_leftover(entry: &fs::DirEntry) -> bool {
    let name = entry.file_name();
    let name = name.to_string_lossy();
    let is_file = entry.file_type().is_ok_and(|t| t.is_file());
    is_file
        && (name == LOCK_FILE
            || (name.starts_with('.') && name.ends_with(".tmp") && name.len() > 5))
}

/// What a folder holds, leftovers ([`is_leftover`]) not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contents {
    /// No such folder.
    Missing,
    /// Nothing, or only leftovers.
    Empty,
    /// Something else.
    Other,
}

/// What `root` holds.
fn contents(root: &Path) -> Result<Contents> {
    match fs::read_dir(root) {
        Ok(entries) => {
            for entry in entries {
                if !is_leftover(&entry.map_err(|e| HostError::io(root, e))?) {
                    return Ok(Contents::Other);
                }
            }
            Ok(Contents::Empty)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents::Missing),
        Err(e) => {
            if root.exists() && !root.is_dir() {
                return Err(HostError::InvalidSetting(format!(
                    "--out {} is a file, not a folder",
                    root.display()
                )));
            }
            Err(HostError::io(root, e))
        }
    }
}

impl RunDir {
    /// Start a new run in `path`: create the folder (and its parents), lock it ([`RunLock`]),
    /// remove the leftovers of a failed start (temporary files, no `config.json`) and write
    /// `config` to `config.json` (pretty-printed, trailing newline, written atomically).
    ///
    /// A folder that holds nothing but such leftovers counts as empty. Fails with
    /// [`HostError::InvalidSetting`] if `path` holds anything else (the message tells the
    /// user to pass `--resume` or another `--out`) or is not a folder, with
    /// [`HostError::RunFolderInUse`] if another process holds its lock, and with
    /// [`HostError::Io`] if it cannot be created or written.
    pub fn create(path: impl AsRef<Path>, config: &serde_json::Value) -> Result<RunDir> {
        let root = path.as_ref().to_path_buf();
        let not_empty = |root: &Path| {
            HostError::InvalidSetting(format!(
                "run folder {} already exists and is not empty; pass --resume to continue \
                 that run, or choose another --out",
                root.display()
            ))
        };
        // Checked before anything is written (no lock file in a folder that is not a run),
        // then again under the lock (another start may have written in between).
        match contents(&root)? {
            Contents::Other => {
                // A run in progress there: say so (with its pid) rather than "not empty".
                if root.join(LOCK_FILE).is_file() {
                    RunLock::acquire(&root)?;
                }
                return Err(not_empty(&root));
            }
            Contents::Empty => {}
            Contents::Missing => fs::create_dir_all(&root).map_err(|e| HostError::io(&root, e))?,
        }
        let lock = RunLock::acquire(&root)?;
        if contents(&root)? != Contents::Empty {
            return Err(not_empty(&root));
        }
        for entry in fs::read_dir(&root).map_err(|e| HostError::io(&root, e))? {
            let entry = entry.map_err(|e| HostError::io(&root, e))?;
            if entry.file_name() != LOCK_FILE {
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| HostError::io(&p, e))?;
            }
        }
        let dir = RunDir {
            root,
            resumed: false,
            lock: Some(Arc::new(lock)),
        };
        dir.write_config(config)?;
        Ok(dir)
    }

    /// Reopen the run in `path` to continue it: lock it ([`RunLock`]) and return the folder
    /// and the configuration its `config.json` holds. Fails with
    /// [`HostError::InvalidSetting`] if `path` is not a run folder (no `config.json`; the
    /// message says whether a failed start left nothing to resume), with
    /// [`HostError::RunFolderInUse`] if another process holds its lock, with
    /// [`HostError::BadFile`] if `config.json` is not JSON.
    pub fn open_for_resume(path: impl AsRef<Path>) -> Result<(RunDir, serde_json::Value)> {
        let root = path.as_ref().to_path_buf();
        let nothing = |root: &Path, what: &str| {
            HostError::InvalidSetting(format!(
                "nothing to resume in {}: it is not a run folder ({what}); start the run \
                 without --resume",
                root.display()
            ))
        };
        let no_config = |root: &Path| -> Result<HostError> {
            Ok(match contents(root)? {
                Contents::Missing => nothing(root, "no such folder"),
                Contents::Empty => nothing(
                    root,
                    &format!("no {CONFIG_FILE}: empty, or what a failed start leaves"),
                ),
                Contents::Other => HostError::InvalidSetting(format!(
                    "cannot resume {}: it has no {CONFIG_FILE}, so it is not a run folder; \
                     give the --out of the run to continue",
                    root.display()
                )),
            })
        };
        // Checked before locking: no lock file in a folder that is not a run.
        if !root.join(CONFIG_FILE).is_file() {
            return Err(no_config(&root)?);
        }
        let lock = RunLock::acquire(&root)?;
        let dir = RunDir {
            root,
            resumed: true,
            lock: Some(Arc::new(lock)),
        };
        match dir.read_config()? {
            Some(config) => Ok((dir, config)),
            None => Err(no_config(&dir.root)?),
        }
    }

    /// Open the run in `path` to read it (`acktr eval`, `export`): no lock, nothing written
    /// (see [`lock`]). Fails with [`HostError::InvalidSetting`] if `path` is not a run folder
    /// (no `config.json`), with [`HostError::BadFile`] if `config.json` is not JSON.
    pub fn open(path: impl AsRef<Path>) -> Result<(RunDir, serde_json::Value)> {
        let dir = RunDir {
            root: path.as_ref().to_path_buf(),
            resumed: false,
            lock: None,
        };
        match dir.read_config()? {
            Some(config) => Ok((dir, config)),
            None => Err(HostError::InvalidSetting(format!(
                "{} is not a run folder (it has no {CONFIG_FILE})",
                dir.root.display()
            ))),
        }
    }

    /// `config.json` parsed; `None` if there is none.
    fn read_config(&self) -> Result<Option<serde_json::Value>> {
        let config_path = self.config_path();
        let text = match fs::read(&config_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HostError::io(&config_path, e)),
        };
        let config = serde_json::from_slice(&text).map_err(|e| HostError::BadFile {
            path: config_path.clone(),
            reason: format!("not valid JSON ({e}); the run cannot be read from it"),
        })?;
        Ok(Some(config))
    }

    /// Write `config` to `config.json`: pretty-printed, trailing newline, atomically. A
    /// resume records the settings it changed with it (`--total-steps`, logging, evaluation).
    pub fn write_config(&self, config: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(config).map_err(|e| HostError::BadFile {
            path: self.config_path(),
            reason: format!("cannot serialise the configuration: {e}"),
        })?;
        text.push(b'\n');
        checkpoint::write_atomic(self.config_path(), &text)
    }

    /// Whether this process holds the folder's lock (a trainer's folder).
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether this folder was opened with [`RunDir::open_for_resume`].
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// `<root>/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `<root>/monitor.csv`.
    pub fn monitor_path(&self) -> PathBuf {
        self.root.join(MONITOR_FILE)
    }

    /// `<root>/progress.csv`.
    pub fn progress_path(&self) -> PathBuf {
        self.root.join(PROGRESS_FILE)
    }

    /// The folder TensorBoard event files go in: the run folder itself, so that
    /// `tensorboard --logdir <parent of several runs>` shows one run per folder.
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.clone()
    }

    /// `<root>/checkpoint.ackc`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join(checkpoint::FILE_NAME)
    }

    /// `<root>/checkpoint.prev.ackc`.
    pub fn prev_checkpoint_path(&self) -> PathBuf {
        self.root.join(checkpoint::PREV_FILE_NAME)
    }

    /// The episode log: a new `monitor.csv` for a new run; when resuming, the existing one
    /// reopened for appending (its `t_start` kept), cut back to `resume_rows` episodes if given
    /// (the [`Monitor::rows`] the checkpoint recorded; see [`Monitor::resume`]).
    pub fn monitor(&self, env_id: &str, resume_rows: Option<u64>) -> Result<Monitor> {
        if self.resumed {
            Monitor::resume(self.monitor_path(), env_id, resume_rows)
        } else {
            Monitor::create(self.monitor_path(), env_id)
        }
    }

    /// The statistics log: a new `progress.csv`; when resuming, the existing one reopened for
    /// appending (its columns kept), cut back to `resume_rows` rows if given (the
    /// [`Progress::rows`] the checkpoint recorded).
    pub fn progress(&self, resume_rows: Option<u64>) -> Result<Progress> {
        if self.resumed {
            Progress::resume(self.progress_path(), resume_rows)
        } else {
            Progress::create(self.progress_path())
        }
    }

    /// A new TensorBoard event file. When resuming from a checkpoint taken at `step`, pass
    /// `Some(step)`: the file then starts with a `SessionLog START` at that step, which tells
    /// TensorBoard's reader to discard the points the killed run logged after the checkpoint.
    pub fn tensorboard(&self, resume_step: Option<u64>) -> Result<TensorBoard> {
        match resume_step {
            Some(step) => TensorBoard::resume(self.tensorboard_dir(), step),
            None => TensorBoard::create(self.tensorboard_dir()),
        }
    }

    /// Save a checkpoint atomically (see [`checkpoint::save`]).
    pub fn save_checkpoint(&self, ckpt: &Checkpoint) -> Result<PathBuf> {
        checkpoint::save(&self.root, ckpt)
    }

    /// The newest checkpoint that loads (see [`checkpoint::load_latest`]).
    pub fn load_checkpoint(&self) -> Result<Option<checkpoint::Loaded>> {
        checkpoint::load_latest(&self.root)
    }
}

/// Seconds since the Unix epoch, as Python's `time.time()` gives them.
pub(crate) fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A buffered file, flushed by a write that comes [`FLUSH_INTERVAL`] after the last flush.
pub(crate) struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    last_flush: Instant,
}

impl LogFile {
    pub(crate) fn new(path: PathBuf, file: File) -> LogFile {
        LogFile {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            last_flush: Instant::now(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes`; flush if the last flush is older than [`FLUSH_INTERVAL`].
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| HostError::io(&self.path, e))?;
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        self.out.flush().map_err(|e| HostError::io(&self.path, e))
    }
}

/// Python's `repr(float)` (also `str(float)` and `json.dumps` of a float): the shortest digits
/// that round-trip, positional for decimal exponents `-4 ..= 15` (with `.0` when integral),
/// scientific otherwise with a signed exponent of at least two digits (`1e-05`, `1.5e+16`);
/// `nan`, `inf`, `-inf` (as `str` gives them; JSON writers must not pass non-finite values).
pub(crate) fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` also prints the shortest round-tripping digits: `-1.2345e2`, `1e-5`, `0e0`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    if !(-4..16).contains(&exp) {
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{esign}{:02}", exp.unsigned_abs());
    }
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let point = point as usize;
        if digits.len() <= point {
            let zeros = "0".repeat(point - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// Python's `round(x, 6)`: the double nearest to `x` correctly rounded to 6 decimals.
pub(crate) fn py_round6(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.6}").parse().unwrap_or(x)
}

/// Cut a log file back to its last complete line (a killed run may have left half a line)
/// and, with `max_lines`, to at most that many lines. Returns the content kept and its number
/// of lines.
pub(crate) fn truncate_lines(path: &Path, max_lines: Option<usize>) -> Result<(Vec<u8>, usize)> {
    let mut bytes = fs::read(path).map_err(|e| HostError::io(path, e))?;
    let mut keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = bytes[..keep].iter().filter(|&&b| b == b'\n').count();
    if let Some(max) = max_lines.filter(|&m| m < lines) {
        keep = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(max.wrapping_sub(1))
            .map_or(0, |(i, _)| i + 1);
        lines = max;
    }
    if keep != bytes.len() {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| HostError::io(path, e))?;
        file.set_len(keep as u64)
            .map_err(|e| HostError::io(path, e))?;
        bytes.truncate(keep);
    }
    Ok((bytes, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are Python 3.11's `repr` of the same literals.
    #[test]
    fn py_float_matches_python_repr() {
        let cases: [(f64, &str); 16] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (500.0, "500.0"),
            (-22.5, "-22.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1.7e308, "1.7e+308"),
            (1700000000.123456, "1700000000.123456"),
            (f64::NAN, "nan"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float(x), want, "{x:e}");
        }
        assert_eq!(py_float(f64::NEG_INFINITY), "-inf");
    }

    /// `round(x, 6)` in Python 3.11.
    #[test]
    fn py_round6_matches_python_round() {
        assert_eq!(py_float(py_round6(0.1234565)), "0.123456");
        assert_eq!(py_float(py_round6(2.0000004)), "2.0");
        assert_eq!(py_float(py_round6(1.23456789)), "1.234568");
        assert_eq!(py_float(py_round6(-0.0000004)), "-0.0");
        assert_eq!(py_float(py_round6(0.0000015)), "2e-06");
    }
}
