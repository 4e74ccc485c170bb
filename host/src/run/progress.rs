//! `progress.csv`: one row of training statistics per log interval, in the format of
//! stable-baselines3's `CSVOutputFormat` (`stable_baselines3/common/logger.py`).
//!
//! ```text
//! time/total_timesteps,time/fps,rollout/ep_rew_mean\n
//! 2048,10450,22.4\n
//! 4096,10511,\n
//! ```
//!
//! - Line 1 is the header: every key seen so far, comma separated, no quoting, `\n`.
//! - Each [`Progress::write`] adds one row with a cell per header column, `\n`-terminated; a
//!   key missing from that row leaves its cell empty (pandas reads `NaN`).
//! - Cells: integers ([`Value::Int`]) in decimal; floats ([`Value::Float`]) as Python's
//!   `str(float)` (`22.4`, `500.0`, `1e-05`, `nan`, `inf`).
//! - A key that appears for the first time extends the header, and every earlier row gets one
//!   empty cell per new key, as SB3 does; the file is rewritten (atomically) to do so.
//!   Columns are in order of first appearance, new keys in the order the row lists them
//!   (SB3 orders a row's new keys as a Python `set` iterates them, which is unspecified).
//!
//! Keys must be non-empty and contain no `,`, `"`, `\r` or `\n` (SB3 does not quote keys).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::{checkpoint::write_atomic, py_float, truncate_lines, LogFile};
use crate::error::{HostError, Result};

/// One cell of `progress.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// Printed in decimal (`2048`), as SB3 prints Python `int`s (`time/total_timesteps`).
    Int(i64),
    /// Printed as Python's `str(float)` (`22.4`, `500.0`, `1e-05`).
    Float(f64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(f64::from(v))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}

/// Saturates at `i64::MAX`.
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// Saturates at `i64::MAX`.
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl Value {
    fn render(self, out: &mut String) {
        match self {
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(x) => out.push_str(&py_float(x)),
        }
    }
}

/// Writes `progress.csv` (see the [module docs](self) for the exact format).
pub struct Progress {
    file: LogFile,
    keys: Vec<String>,
    rows: u64,
}

impl Progress {
    /// Create (or overwrite) `path`, empty until the first row.
    pub fn create(path: impl Into<PathBuf>) -> Result<Progress> {
        let path = path.into();
        let file = File::create(&path).map_err(|e| HostError::io(&path, e))?;
        Ok(Progress {
            file: LogFile::new(path, file),
            keys: Vec::new(),
            rows: 0,
        })
    }

    /// Reopen `path` for appending: its header gives the columns, and a half-written last row
    /// (a killed run) is cut off first. With `keep_rows`, rows after the first `keep_rows` are
    /// cut too: pass the [`Progress::rows`] saved in the checkpoint being resumed (after a
    /// [`Progress::flush`]). If `path` does not exist this is [`Progress::create`].
    /// Fails with [`HostError::BadFile`] if the file is not UTF-8 or its header repeats a key.
    pub fn resume(path: impl Into<PathBuf>, keep_rows: Option<u64>) -> Result<Progress> {
        let path = path.into();
        if !path.exists() {
            return Self::create(path);
        }
        let keep_lines =
            keep_rows.map(|r| usize::try_from(r).unwrap_or(usize::MAX).saturating_add(1));
        let (bytes, lines) = truncate_lines(&path, keep_lines)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| HostError::BadFile {
            path: path.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        let header = text.split('\n').next().unwrap_or("");
        let keys: Vec<String> = if header.is_empty() {
            Vec::new()
        } else {
            header.split(',').map(str::to_string).collect()
        };
        let mut seen = HashSet::new();
        if let Some(dup) = keys.iter().find(|k| !seen.insert(k.as_str())) {
            return Err(HostError::BadFile {
                path,
                reason: format!("header repeats the column `{dup}`"),
            });
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| HostError::io(&path, e))?;
        Ok(Progress {
            file: LogFile::new(path, file),
            keys,
            rows: lines.saturating_sub(1) as u64,
        })
    }

    /// The columns, in file order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Rows in the file, including those still buffered. Save it in checkpoints (after a
    /// [`Progress::flush`]) for [`Progress::resume`].
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Append one row. `V` is anything convertible to a [`Value`]: `&[("a", 1.0)]` for
    /// floats only, `&[("time/total_timesteps", Value::from(n)), ("time/fps", Value::from(f))]`
    /// to mix integers and floats.
    ///
    /// Fails with [`HostError::InvalidSetting`] on an empty key, a key with `,`, `"`, `\r` or
    /// `\n`, or a key given twice in one row; nothing is written then.
    pub fn write<V: Into<Value> + Copy>(&mut self, row: &[(&str, V)]) -> Result<()> {
        let mut in_row = HashSet::new();
        for (key, _) in row {
            if key.is_empty() || key.contains([',', '"', '\r', '\n']) {
                return Err(HostError::InvalidSetting(format!(
                    "progress.csv key `{}` must be non-empty without `,` `\"` or line breaks",
                    key.escape_debug()
                )));
            }
            if !in_row.insert(*key) {
                return Err(HostError::InvalidSetting(format!(
                    "progress.csv key `{key}` given twice in one row"
                )));
            }
        }
        let new: Vec<&str> = row
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !self.keys.iter().any(|have| have == k))
            .collect();
        if !new.is_empty() {
            self.extend_header(&new)?;
        }
        let mut line = String::with_capacity(16 * self.keys.len());
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            if let Some((_, v)) = row.iter().find(|(k, _)| k == key) {
                (*v).into().render(&mut line);
            }
        }
        line.push('\n');
        self.file.write(line.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    /// Push buffered rows to the file (also done on drop, and by a write a second or more after
    /// the last flush). Call it at every log interval.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush()
    }

    /// Add `new` columns: rewrite the file with the longer header and every existing row padded
    /// with one empty cell per new column, then reopen it for appending.
    fn extend_header(&mut self, new: &[&str]) -> Result<()> {
        self.file.flush()?;
        let path = self.file.path().to_path_buf();
        let old = fs::read_to_string(&path).map_err(|e| HostError::io(&path, e))?;
        let mut keys = self.keys.clone();
        keys.extend(new.iter().map(|k| k.to_string()));
        let pad = ",".repeat(new.len());
        let mut text = String::with_capacity(old.len() + 64 + old.len() / 8);
        text.push_str(&keys.join(","));
        text.push('\n');
        for line in old.lines().skip(1) {
            text.push_str(line);
            text.push_str(&pad);
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| HostError::io(&path, e))?;
        self.file = LogFile::new(path, file);
        self.keys = keys;
        Ok(())
    }
}
