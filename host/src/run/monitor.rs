//! `monitor.csv`: one row per finished episode, byte for byte what stable-baselines3's
//! `Monitor`/`VecMonitor` (`stable_baselines3/common/monitor.py`, `ResultsWriter`) writes, so
//! `stable_baselines3.common.monitor.load_results`, `rl_plotter` and pandas read it unchanged.
//!
//! ```text
//! #{"t_start": 1700000000.123456, "env_id": "CartPole-v1"}\n
//! r,l,t\r\n
//! 22.0,22,0.004172\r\n
//! ```
//!
//! - Line 1: `#` then Python's `json.dumps({"t_start": t, "env_id": id})`: `", "` and `": "`
//!   separators, `t_start` the Unix time in seconds as Python prints a float (shortest
//!   round-trip digits), `env_id` ASCII-escaped; ends with `\n`.
//! - Line 2: the header `r,l,t`, ending `\r\n` (Python's `csv` writer terminates rows with CRLF;
//!   SB3 opens the file with `newline="\n"`, so the CRLF reaches the file).
//! - Rows: `r` the raw episode return `round(ret, 6)`, `l` the length in steps (integer), `t`
//!   the seconds since `t_start`, `round(t, 6)`; floats printed as Python's `str(float)`;
//!   rows end `\r\n`.
//!
//! With several environments, rows come in the order episodes finish, as `VecMonitor` writes
//! them. On resume the file is reopened for appending with `t_start` kept, so `t` keeps
//! counting wall time from the first start (including the time the run was stopped).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::{py_float, py_round6, truncate_lines, unix_time, LogFile};
use crate::error::{HostError, Result};

/// The CSV header line, as SB3 writes it.
const HEADER: &str = "r,l,t\r\n";

/// Writes `monitor.csv` (see the [module docs](self) for the exact format).
pub struct Monitor {
    file: LogFile,
    t_start: f64,
    rows: u64,
}

impl Monitor {
    /// Create (or overwrite) `path` with `t_start` = now.
    pub fn create(path: impl Into<PathBuf>, env_id: &str) -> Result<Monitor> {
        Self::create_with_start(path, env_id, unix_time())
    }

    /// Create (or overwrite) `path` with a given `t_start` (Unix seconds), e.g. to share one
    /// start time with the other logs, or to write reproducible files in tests.
    pub fn create_with_start(
        path: impl Into<PathBuf>,
        env_id: &str,
        t_start: f64,
    ) -> Result<Monitor> {
        let path = path.into();
        let file = File::create(&path).map_err(|e| HostError::io(&path, e))?;
        let mut file = LogFile::new(path, file);
        let first = format!(
            "#{{\"t_start\": {}, \"env_id\": {}}}\n{HEADER}",
            py_float(t_start),
            py_json_str(env_id)
        );
        file.write(first.as_bytes())?;
        file.flush()?;
        Ok(Monitor {
            file,
            t_start,
            rows: 0,
        })
    }

    /// Reopen `path` for appending, keeping the `t_start` of its first line; a half-written
    /// last row (a killed run) is cut off first. With `keep_rows`, rows after the first
    /// `keep_rows` are cut too: pass the [`Monitor::rows`] saved in the checkpoint being
    /// resumed (after a [`Monitor::flush`]), so episodes the killed run logged after its
    /// checkpoint are not counted twice. If `path` does not exist this is [`Monitor::create`];
    /// `env_id` is only used then.
    ///
    /// Fails with [`HostError::BadFile`] if the first line is not `#{"t_start": <number>, …}`
    /// or the second is not the header `r,l,t`.
    pub fn resume(
        path: impl Into<PathBuf>,
        env_id: &str,
        keep_rows: Option<u64>,
    ) -> Result<Monitor> {
        let path = path.into();
        if !path.exists() {
            return Self::create(path, env_id);
        }
        let keep_lines =
            keep_rows.map(|r| usize::try_from(r).unwrap_or(usize::MAX).saturating_add(2));
        let (bytes, lines) = truncate_lines(&path, keep_lines)?;
        let t_start = parse_preamble(&path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| HostError::io(&path, e))?;
        Ok(Monitor {
            file: LogFile::new(path, file),
            t_start,
            rows: lines.saturating_sub(2) as u64,
        })
    }

    /// The start time in the first line (Unix seconds).
    pub fn t_start(&self) -> f64 {
        self.t_start
    }

    /// Episodes in the file, including those still buffered. Save it in checkpoints (after a
    /// [`Monitor::flush`]) for [`Monitor::resume`].
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Log a finished episode: raw return `ret`, `len` steps, `t` = now − `t_start`.
    pub fn append(&mut self, ret: f64, len: u64) -> Result<()> {
        let t = unix_time() - self.t_start;
        self.append_at(ret, len, t)
    }

    /// Log a finished episode that ended `t` seconds after `t_start`.
    pub fn append_at(&mut self, ret: f64, len: u64, t: f64) -> Result<()> {
        let row = format!(
            "{},{len},{}\r\n",
            py_float(py_round6(ret)),
            py_float(py_round6(t))
        );
        self.file.write(row.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    /// Push buffered rows to the file (also done on drop, and by a write a second or more after
    /// the last flush). Call it at every log interval.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush()
    }
}

/// Check the first two lines of an existing `monitor.csv` and return its `t_start`.
fn parse_preamble(path: &Path, bytes: &[u8]) -> Result<f64> {
    let bad = |reason: String| HostError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let json = first.strip_prefix('#').ok_or_else(|| {
        bad("first line does not start with `#`; not a stable-baselines3 monitor file".into())
    })?;
    let header: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| bad(format!("first line is not `#` + JSON: {e}")))?;
    let t_start = header
        .get("t_start")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| bad("first line has no numeric `t_start`".into()))?;
    match lines.next() {
        Some("r,l,t\r") | Some("r,l,t") => Ok(t_start),
        Some(other) => Err(bad(format!(
            "second line is `{}`, expected the header `r,l,t`",
            other.trim_end()
        ))),
        None => Err(bad("no header line `r,l,t`".into())),
    }
}

/// Python's `json.dumps(str)` with its default `ensure_ascii=True`: `"`, `\` and the control
/// characters escaped (`\n`, `\r`, `\t`, `\b`, `\f`, others `\u00XX`), every non-ASCII
/// character as `\uXXXX` (UTF-16 surrogate pairs above U+FFFF).
fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Read the rows of a `monitor.csv` (any file in SB3's format: extra columns are ignored):
/// `(r, l, t)` per episode, in file order. A half-written last row is skipped.
pub fn read_rows(path: &Path) -> Result<Vec<(f64, u64, f64)>> {
    let bad = |reason: String| HostError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| HostError::io(path, e))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut lines = complete.lines();
    let first = lines.next().unwrap_or("");
    if !first.starts_with('#') {
        return Err(bad(
            "first line does not start with `#`; not a stable-baselines3 monitor file".into(),
        ));
    }
    let header = lines
        .next()
        .ok_or_else(|| bad("no header line `r,l,t`".into()))?;
    let columns: Vec<&str> = header.trim_end_matches('\r').split(',').collect();
    let find = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| bad(format!("header `{header}` has no column `{name}`")))
    };
    let (ir, il, it) = (find("r")?, find("l")?, find("t")?);
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or("");
        let parse_err = |what: &str, v: &str| bad(format!("row {}: bad {what} `{v}`", n + 1));
        let r: f64 = cell(ir).parse().map_err(|_| parse_err("r", cell(ir)))?;
        // SB3's VecMonitor may write `l` from a numpy integer; accept `22.0` too.
        let l: f64 = cell(il).parse().map_err(|_| parse_err("l", cell(il)))?;
        let t: f64 = cell(it).parse().map_err(|_| parse_err("t", cell(it)))?;
        if !(l >= 0.0 && l.fract() == 0.0) {
            return Err(parse_err("l", cell(il)));
        }
        rows.push((r, l as u64, t));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::py_json_str;

    /// Expected: Python 3.11 `json.dumps(s)`.
    #[test]
    fn json_strings_escape_like_python() {
        assert_eq!(py_json_str("CartPole-v1"), "\"CartPole-v1\"");
        assert_eq!(py_json_str("ALE/Breakout-v5"), "\"ALE/Breakout-v5\"");
        assert_eq!(py_json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(py_json_str("é\u{1}"), "\"\\u00e9\\u0001\"");
        assert_eq!(py_json_str("😀"), "\"\\ud83d\\ude00\"");
    }
}
