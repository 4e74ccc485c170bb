//! Checkpoints: a small container file, replaced atomically so that a killed run never leaves
//! a half-written checkpoint as the latest.
//!
//! # The `.ackc` container, version 1
//!
//! All integers little-endian. A checkpoint is a JSON metadata block (the trainer's counters,
//! settings, RNG state: whatever it needs to continue) and named binary blobs (weights, K-FAC
//! factors, optimiser state), in the order given.
//!
//! | size | field                                                                     |
//! |------|---------------------------------------------------------------------------|
//! | 4    | magic, the ASCII bytes `ACKC` (`41 43 4B 43`)                             |
//! | 2    | version, `u16` = 1                                                        |
//! | 4    | `m`: metadata length, `u32`                                               |
//! | `m`  | metadata: one JSON value, UTF-8                                           |
//! | 4    | `k`: number of blobs, `u32`                                               |
//! |      | `k` times: `u32` name length `s`, `s` bytes of name (UTF-8, non-empty, unique), `u64` data length `d`, `d` bytes of data |
//! | 4    | CRC-32C ([`crc32c`]) of every byte before it, `u32`                       |
//!
//! Nothing may follow the CRC. A reader checks, in order: magic (else "not an acktr
//! checkpoint"), version (else "version N, this build reads 1"), length and CRC (else
//! "truncated" / "corrupt"), then every length against the bytes left; any failure is a
//! [`HostError::BadFile`] naming the file and the reason, never a panic.
//!
//! # Blobs the trainer writes
//!
//! The agent's own blobs (`native.*`, or the libtorch backend's), and, for a run with
//! `--normalize-obs`, [`OBS_NORM_BLOB`] (`env.obs_norm`): the observation normaliser's
//! statistics, little-endian, `n` the observation length:
//!
//! | size  | field                                          |
//! |-------|------------------------------------------------|
//! | 4     | `n`, `u32`                                     |
//! | 8     | count, `f64` (> 0)                             |
//! | 8     | ε, `f64` (> 0)                                 |
//! | 8·`n` | mean μ, `f64` each (finite)                    |
//! | 8·`n` | variance σ², `f64` each (finite, ≥ 0)          |
//!
//! The metadata is a JSON object of the trainer's counters (`env_steps`, `updates`,
//! `monitor_rows`, `progress_rows`), checked against the run's settings by
//! [`Counters::from_meta`] before a resume or an evaluation uses the checkpoint; the agents
//! check their own blobs (lengths, finite values) when they load them.
//!
//! Adding a blob does not change the container version: a reader looks blobs up by name.
//! Checkpoints written before this blob existed still load; resuming or evaluating a
//! `--normalize-obs` run from one is refused (the policy's inputs cannot be rebuilt), with an
//! error that says so.
//!
//! # On disk
//!
//! [`save`] writes `checkpoint.ackc` in the run folder with [`write_atomic`], after keeping the
//! previous one as `checkpoint.prev.ackc` (a hard link, so `checkpoint.ackc` exists at every
//! moment). [`load_latest`] loads `checkpoint.ackc`, or falls back to `checkpoint.prev.ackc`
//! if the newer one is missing or damaged (disk full, a bad sector, a copy cut short).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::envs::ObsNormState;
use crate::error::{HostError, Result};

/// The latest checkpoint's file name in a run folder.
pub const FILE_NAME: &str = "checkpoint.ackc";
/// The previous checkpoint's file name in a run folder.
pub const PREV_FILE_NAME: &str = "checkpoint.prev.ackc";
/// The first four bytes of every checkpoint.
pub const MAGIC: [u8; 4] = *b"ACKC";
/// The container version this build writes and reads.
pub const VERSION: u16 = 1;

/// The blob holding the observation normaliser's statistics (see the [module docs](self)).
pub const OBS_NORM_BLOB: &str = "env.obs_norm";

/// [`OBS_NORM_BLOB`]'s bytes for `state`. Fails with [`HostError::InvalidSetting`] when the
/// mean and variance differ in length or there are more than `u32::MAX` components.
pub fn obs_norm_to_blob(state: &ObsNormState) -> Result<Vec<u8>> {
    let n = state.mean.len();
    let n32 = u32::try_from(n)
        .ok()
        .filter(|_| state.var.len() == n)
        .ok_or_else(|| {
            HostError::InvalidSetting(format!(
                "observation normaliser with {n} means and {} variances",
                state.var.len()
            ))
        })?;
    let mut out = Vec::with_capacity(4 + 16 + 16 * n);
    out.extend_from_slice(&n32.to_le_bytes());
    out.extend_from_slice(&state.count.to_le_bytes());
    out.extend_from_slice(&state.epsilon.to_le_bytes());
    for x in state.mean.iter().chain(&state.var) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}

/// Decode [`OBS_NORM_BLOB`]; `path` only names the file in errors. A wrong length, a count or
/// ε that is not positive, a non-finite mean or a negative or non-finite variance is a
/// [`HostError::BadFile`].
pub fn obs_norm_from_blob(bytes: &[u8], path: &Path) -> Result<ObsNormState> {
    let bad = |reason: String| HostError::BadFile {
        path: path.to_path_buf(),
        reason: format!("blob `{OBS_NORM_BLOB}`: {reason}"),
    };
    let f64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        f64::from_le_bytes(b)
    };
    if bytes.len() < 20 {
        return Err(bad(format!("{} bytes, at least 20 expected", bytes.len())));
    }
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let want = n.checked_mul(16).and_then(|b| b.checked_add(20));
    if want != Some(bytes.len()) {
        return Err(bad(format!(
            "{} bytes for {n} components (expected 20 + 16·{n})",
            bytes.len()
        )));
    }
    let (count, epsilon) = (f64_at(4), f64_at(12));
    if !(count > 0.0 && count.is_finite() && epsilon > 0.0 && epsilon.is_finite()) {
        return Err(bad(format!(
            "count {count} and epsilon {epsilon} must be positive"
        )));
    }
    let mean: Vec<f64> = (0..n).map(|i| f64_at(20 + 8 * i)).collect();
    let var: Vec<f64> = (0..n).map(|i| f64_at(20 + 8 * (n + i))).collect();
    if !mean.iter().all(|m| m.is_finite()) || !var.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return Err(bad("non-finite mean or negative/non-finite variance".into()));
    }
    Ok(ObsNormState {
        mean,
        var,
        count,
        epsilon,
    })
}

/// The trainer's counters, from a checkpoint's metadata ([`Counters::from_meta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Env steps done (all environments).
    pub env_steps: u64,
    /// Updates done.
    pub updates: u64,
    /// Rows of `monitor.csv` at the checkpoint.
    pub monitor_rows: u64,
    /// Rows of `progress.csv` at the checkpoint.
    pub progress_rows: u64,
}

impl Counters {
    /// The counters of a run with batches of `batch` env steps (`num_envs × num_steps`) and
    /// a total of `total_steps`, as the trainer writes them: metadata that is a JSON object
    /// holding each field as a whole number. `path` only names the file in errors.
    ///
    /// Every field is checked against what the run can have done, and any failure is a
    /// [`HostError::BadFile`] naming the file and the field: `env_steps` a multiple of
    /// `batch`, at most `total_steps` rounded up to a whole batch; `updates` at most one per
    /// batch; `monitor_rows` at most one per env step (an episode lasts at least one);
    /// `progress_rows` at most two per batch (a log row and an evaluation row). Unknown fields
    /// are ignored.
    pub fn from_meta(
        meta: &serde_json::Value,
        path: &Path,
        batch: u64,
        total_steps: u64,
    ) -> Result<Counters> {
        let bad = |reason: String| HostError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let obj = meta.as_object().ok_or_else(|| {
            let kind = match meta {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            bad(format!("metadata is {kind}, not a JSON object"))
        })?;
        let field = |name: &str, max: u64, why: &str| -> Result<u64> {
            let v = obj
                .get(name)
                .ok_or_else(|| bad(format!("metadata has no field `{name}`")))?;
            let n = v.as_u64().ok_or_else(|| {
                let mut text = v.to_string();
                if text.len() > 40 {
                    text.truncate(40);
                    text.push('…');
                }
                bad(format!(
                    "metadata field `{name}` is {text}, not a whole number"
                ))
            })?;
            if n > max {
                return Err(bad(format!(
                    "metadata field `{name}` is {n}, more than {max} ({why})"
                )));
            }
            Ok(n)
        };
        let batch = batch.max(1);
        let max_steps = total_steps.div_ceil(batch).saturating_mul(batch);
        let env_steps = field(
            "env_steps",
            max_steps,
            "the run's total_steps in config.json, rounded up to a whole batch",
        )?;
        if env_steps % batch != 0 {
            return Err(bad(format!(
                "metadata field `env_steps` is {env_steps}, not a multiple of the run's batch \
                 of {batch} env steps (num_envs × num_steps in config.json)"
            )));
        }
        let batches = env_steps / batch;
        Ok(Counters {
            env_steps,
            updates: field("updates", batches, "one per batch of env steps")?,
            monitor_rows: field("monitor_rows", env_steps, "one episode per env step")?,
            progress_rows: field(
                "progress_rows",
                batches.saturating_mul(2),
                "a log row and an evaluation row per batch",
            )?,
        })
    }
}

/// Bytes before the metadata: magic, version, metadata length.
const PREFIX: usize = 4 + 2 + 4;

/// CRC-32C (Castagnoli), the CRC of iSCSI, TFRecord and the core's policy file: the core's
/// implementation. Check value: `crc32c(b"123456789") == 0xE3069283`.
pub use acktr_core::crc32c;

/// A checkpoint: JSON metadata and named binary blobs.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Anything the trainer needs to continue: counters, settings, RNG state.
    pub meta: serde_json::Value,
    /// `(name, bytes)` in file order; names are non-empty and unique.
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Checkpoint {
    /// A checkpoint with `meta` and no blobs.
    pub fn new(meta: serde_json::Value) -> Checkpoint {
        Checkpoint {
            meta,
            blobs: Vec::new(),
        }
    }

    /// Add a blob (builder style).
    pub fn with_blob(mut self, name: impl Into<String>, bytes: Vec<u8>) -> Checkpoint {
        self.blobs.push((name.into(), bytes));
        self
    }

    /// The blob called `name`.
    pub fn blob(&self, name: &str) -> Option<&[u8]> {
        self.blobs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Encode as the `.ackc` container (see the [module docs](self)). Fails with
    /// [`HostError::InvalidSetting`] on an empty or repeated blob name, or on metadata or a
    /// name longer than `u32::MAX` bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let meta = serde_json::to_vec(&self.meta)
            .map_err(|e| HostError::InvalidSetting(format!("checkpoint metadata: {e}")))?;
        let len32 = |n: usize, what: &str| {
            u32::try_from(n).map_err(|_| {
                HostError::InvalidSetting(format!("checkpoint {what} is longer than 4 GiB"))
            })
        };
        let total = PREFIX
            + meta.len()
            + 4
            + self
                .blobs
                .iter()
                .map(|(n, b)| 12 + n.len() + b.len())
                .sum::<usize>()
            + 4;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&len32(meta.len(), "metadata")?.to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&len32(self.blobs.len(), "blob count")?.to_le_bytes());
        for (i, (name, data)) in self.blobs.iter().enumerate() {
            if name.is_empty() {
                return Err(HostError::InvalidSetting(
                    "checkpoint blob with an empty name".into(),
                ));
            }
            if self.blobs[..i].iter().any(|(n, _)| n == name) {
                return Err(HostError::InvalidSetting(format!(
                    "checkpoint blob `{name}` given twice"
                )));
            }
            out.extend_from_slice(&len32(name.len(), "blob name")?.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            out.extend_from_slice(data);
        }
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decode a `.ackc` container; `path` only names the file in errors. Every malformed
    /// input (foreign, newer version, truncated, corrupt, trailing bytes, bad lengths, bad
    /// UTF-8 or JSON, empty or repeated names) is a [`HostError::BadFile`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        let bad = |reason: String| HostError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < MAGIC.len() || bytes[..4] != MAGIC {
            return Err(bad(format!(
                "not an acktr checkpoint (expected the magic `ACKC`, found {:02x?})",
                &bytes[..bytes.len().min(4)]
            )));
        }
        let mut r = Reader {
            bytes,
            pos: 4,
            path,
        };
        let version = u16::from_le_bytes(r.array::<2>("version")?);
        if version != VERSION {
            return Err(bad(format!(
                "checkpoint container version {version}; this build reads version {VERSION}"
            )));
        }
        if bytes.len() < PREFIX + 4 + 4 {
            return Err(bad(format!(
                "truncated: {} bytes, a checkpoint has at least {}",
                bytes.len(),
                PREFIX + 8
            )));
        }
        let (body, stored) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let computed = crc32c(body);
        if stored != computed {
            return Err(bad(format!(
                "corrupt or truncated: CRC-32C is {computed:08x}, the file says {stored:08x}"
            )));
        }
        // From here on the CRC matched, so a failure means a writer bug or a forged file.
        r.bytes = body;
        let meta_len = u32::from_le_bytes(r.array::<4>("metadata length")?) as usize;
        let meta = r.take(meta_len, "metadata")?;
        let meta =
            serde_json::from_slice(meta).map_err(|e| bad(format!("metadata is not JSON: {e}")))?;
        let count = u32::from_le_bytes(r.array::<4>("blob count")?);
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..count {
            let name_len = u32::from_le_bytes(r.array::<4>("blob name length")?) as usize;
            let name = r.take(name_len, "blob name")?;
            let name = std::str::from_utf8(name)
                .map_err(|_| bad(format!("blob {i}: name is not UTF-8")))?;
            if name.is_empty() || blobs.iter().any(|(n, _)| n == name) {
                return Err(bad(format!("blob {i}: empty or repeated name `{name}`")));
            }
            let data_len = u64::from_le_bytes(r.array::<8>("blob length")?);
            let data_len = usize::try_from(data_len)
                .map_err(|_| bad(format!("blob `{name}`: length {data_len} too large")))?;
            let data = r.take(data_len, "blob data")?;
            blobs.push((name.to_string(), data.to_vec()));
        }
        if r.pos != body.len() {
            return Err(bad(format!(
                "{} unexpected bytes before the CRC",
                body.len() - r.pos
            )));
        }
        Ok(Checkpoint { meta, blobs })
    }
}

/// A bounds-checked cursor over a checkpoint's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(HostError::BadFile {
                path: self.path.to_path_buf(),
                reason: format!(
                    "truncated: {what} needs {n} bytes at offset {}, {} left",
                    self.pos,
                    self.bytes.len().saturating_sub(self.pos)
                ),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// The temporary file [`write_atomic`] uses for `path`: `.<file name>.tmp` in the same folder.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replace `path` with `bytes` so that, whenever the process dies, `path` holds either its
/// old content or all of `bytes`: write [`temp_path`] in the same folder, `fsync` it, rename
/// it over `path`, `fsync` the folder (on Unix). One writer per `path` at a time. Errors name
/// `path` (the temporary file is an implementation detail), and a failed write removes the
/// temporary file.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let tmp = temp_path(path);
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(HostError::io(path, e));
    }
    sync_dir(path)
}

/// `fsync` the folder holding `path`, so a rename in it survives a power cut.
fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let handle = File::open(dir).map_err(|e| HostError::io(dir, e))?;
        handle.sync_all().map_err(|e| HostError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Save `ckpt` as `dir/checkpoint.ackc`, keeping the one it replaces as
/// `dir/checkpoint.prev.ackc`; returns the path written.
///
/// Steps: encode; hard-link the current `checkpoint.ackc` to `.checkpoint.prev.ackc.tmp` and
/// rename that over `checkpoint.prev.ackc` (a copy where hard links are not supported);
/// [`write_atomic`] the new bytes to `checkpoint.ackc`. A crash at any point leaves
/// `checkpoint.ackc` complete (old or new) and loadable.
pub fn save(dir: impl AsRef<Path>, ckpt: &Checkpoint) -> Result<PathBuf> {
    let dir = dir.as_ref();
    let bytes = ckpt.to_bytes()?;
    let latest = dir.join(FILE_NAME);
    let prev = dir.join(PREV_FILE_NAME);
    if latest.exists() {
        let prev_tmp = temp_path(&prev);
        match fs::remove_file(&prev_tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HostError::io(&prev_tmp, e)),
        }
        if fs::hard_link(&latest, &prev_tmp).is_err() {
            fs::copy(&latest, &prev_tmp).map_err(|e| HostError::io(&prev_tmp, e))?;
            OpenOptions::new()
                .write(true)
                .open(&prev_tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| HostError::io(&prev_tmp, e))?;
        }
        fs::rename(&prev_tmp, &prev).map_err(|e| HostError::io(&prev, e))?;
    }
    write_atomic(&latest, &bytes)?;
    Ok(latest)
}

/// Read and decode one checkpoint file.
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| HostError::io(path, e))?;
    Checkpoint::from_bytes(&bytes, path)
}

/// What [`load_latest`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The file it came from (`checkpoint.ackc`, or `checkpoint.prev.ackc` after a fallback).
    pub path: PathBuf,
    /// Why the newer `checkpoint.ackc` was not used, when the previous one was loaded instead;
    /// the CLI should print it as a warning.
    pub skipped: Option<HostError>,
}

/// The newest checkpoint in `dir` that loads: `checkpoint.ackc`, else `checkpoint.prev.ackc`.
/// `Ok(None)` if neither exists; the error of `checkpoint.ackc` if both exist and neither
/// loads. Leftover temporary files are ignored.
pub fn load_latest(dir: impl AsRef<Path>) -> Result<Option<Loaded>> {
    let dir = dir.as_ref();
    let latest = dir.join(FILE_NAME);
    let prev = dir.join(PREV_FILE_NAME);
    let newer = if latest.exists() {
        match load(&latest) {
            Ok(checkpoint) => {
                return Ok(Some(Loaded {
                    checkpoint,
                    path: latest,
                    skipped: None,
                }))
            }
            Err(e) => Some(e),
        }
    } else {
        None
    };
    if !prev.exists() {
        return match newer {
            Some(e) => Err(e),
            None => Ok(None),
        };
    }
    match load(&prev) {
        Ok(checkpoint) => Ok(Some(Loaded {
            checkpoint,
            path: prev,
            skipped: newer,
        })),
        Err(e) => Err(newer.unwrap_or(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ObsNormState {
        ObsNormState {
            mean: vec![0.1, -2.5e-7, 3.0],
            var: vec![1.0 / 3.0, 0.0, 7.25],
            count: 1e-4 + 96.0,
            epsilon: 1e-8,
        }
    }

    /// The layout of the module docs, built here by hand: n, count, ε, means, variances.
    #[test]
    fn obs_norm_blob_layout_and_round_trip() {
        let s = state();
        let mut want = 3u32.to_le_bytes().to_vec();
        for x in [s.count, s.epsilon].iter().chain(&s.mean).chain(&s.var) {
            want.extend_from_slice(&x.to_le_bytes());
        }
        let bytes = obs_norm_to_blob(&s).unwrap();
        assert_eq!(bytes, want);
        let back = obs_norm_from_blob(&bytes, Path::new("c.ackc")).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.var[0].to_bits(), s.var[0].to_bits());
    }

    #[test]
    fn bad_obs_norm_blobs_are_bad_files() {
        let p = Path::new("c.ackc");
        let good = obs_norm_to_blob(&state()).unwrap();
        let is_bad = |b: &[u8]| matches!(obs_norm_from_blob(b, p), Err(HostError::BadFile { .. }));
        assert!(is_bad(&good[..good.len() - 1]), "truncated");
        assert!(is_bad(&[good.as_slice(), &[0]].concat()), "trailing byte");
        assert!(is_bad(&good[..10]), "shorter than the header");
        let mut n_big = good.clone();
        n_big[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(is_bad(&n_big), "component count past the data");
        let with = |at: usize, x: f64| {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&x.to_le_bytes());
            b
        };
        assert!(is_bad(&with(4, 0.0)), "count 0");
        assert!(is_bad(&with(12, -1e-8)), "negative epsilon");
        assert!(is_bad(&with(20, f64::NAN)), "NaN mean");
        assert!(is_bad(&with(20 + 8 * 3, -1.0)), "negative variance");
        assert!(
            is_bad(&with(20 + 8 * 5, f64::INFINITY)),
            "infinite variance"
        );
        let uneven = ObsNormState {
            var: vec![1.0],
            ..state()
        };
        assert!(matches!(
            obs_norm_to_blob(&uneven),
            Err(HostError::InvalidSetting(_))
        ));
    }
}
