//! TensorBoard event files, written without TensorFlow or a protobuf library.
//!
//! A file `events.out.tfevents.<unix seconds>.<hostname>` (with `.1`, `.2`, … appended if that
//! name is taken) is a sequence of TFRecords:
//!
//! | size | field                                                          |
//! |------|----------------------------------------------------------------|
//! | 8    | `n`: data length, `u64` LE                                     |
//! | 4    | [`masked_crc32c`] of those 8 length bytes, `u32` LE            |
//! | `n`  | data: one serialised `tensorflow.Event` protobuf               |
//! | 4    | [`masked_crc32c`] of the data, `u32` LE                        |
//!
//! The events, in proto3 encoding (fields in number order, zero-valued scalars omitted):
//!
//! - first: `Event { wall_time: 1 (double), file_version: 3 (string) = "brain.Event:2" }`;
//! - after a resume: `Event { wall_time, step: 2 (int64), session_log: 7 (SessionLog { status:
//!   1 (enum) = START (1) }) }`: TensorBoard's reader then drops every point with a step at or
//!   after it that earlier files hold (the points a killed run logged after its checkpoint);
//! - per scalar: `Event { wall_time, step, summary: 5 (Summary { value: 1 (repeated Value {
//!   tag: 1 (string), simple_value: 2 (float) }) }) }`.
//!
//! `wall_time` is Unix seconds. Records are buffered: they reach the file on
//! [`TensorBoard::flush`], on drop, and with the first write [`super::FLUSH_INTERVAL`] or more
//! after the last flush.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

use super::{crc32c, unix_time, LogFile};
use crate::error::{HostError, Result};

/// The `file_version` of the first event, as TensorFlow 2 and PyTorch's `SummaryWriter` write it.
pub const FILE_VERSION: &str = "brain.Event:2";

/// TFRecord's masked CRC: `((c >> 15) | (c << 17)) + 0xa282ead8` (wrapping) where `c` is the
/// CRC-32C of `bytes`.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one TensorBoard event file of scalars.
pub struct TensorBoard {
    file: LogFile,
    record: Vec<u8>,
}

impl TensorBoard {
    /// Start a new event file in `dir` (created if missing).
    pub fn create(dir: impl AsRef<Path>) -> Result<TensorBoard> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| HostError::io(dir, e))?;
        let stem = format!(
            "events.out.tfevents.{}.{}",
            unix_time().floor() as u64,
            hostname()
        );
        let mut n = 0u32;
        let (path, file) = loop {
            let name = if n == 0 {
                stem.clone()
            } else {
                format!("{stem}.{n}")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(HostError::io(&path, e)),
            }
        };
        let mut tb = TensorBoard {
            file: LogFile::new(path, file),
            record: Vec::with_capacity(128),
        };
        let mut event = Vec::with_capacity(32);
        put_f64(&mut event, 1, unix_time());
        put_bytes(&mut event, 3, FILE_VERSION.as_bytes());
        tb.write_record(&event)?;
        tb.flush()?;
        Ok(tb)
    }

    /// Start a new event file in `dir` for a run resumed from a checkpoint taken at `step`: it
    /// opens with a `SessionLog START` at `step` (see the [module docs](self)).
    pub fn resume(dir: impl AsRef<Path>, step: u64) -> Result<TensorBoard> {
        let mut tb = Self::create(dir)?;
        let mut session_log = Vec::with_capacity(2);
        put_varint_field(&mut session_log, 1, 1); // status = START
        let mut event = Vec::with_capacity(24);
        put_f64(&mut event, 1, unix_time());
        put_varint_field(&mut event, 2, step_i64(step));
        put_bytes(&mut event, 7, &session_log);
        tb.write_record(&event)?;
        tb.flush()?;
        Ok(tb)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Log `value` (stored as `f32`) under `tag` at `step`. Steps above `i64::MAX` saturate.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<()> {
        self.scalars(step, &[(tag, value)])
    }

    /// Log several scalars at one `step` in one event (one record, one `wall_time`).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let mut summary = Vec::with_capacity(values.len() * 32);
        let mut value = Vec::with_capacity(48);
        for (tag, v) in values {
            value.clear();
            put_bytes(&mut value, 1, tag.as_bytes());
            put_f32(&mut value, 2, *v as f32);
            put_bytes(&mut summary, 1, &value);
        }
        let mut event = Vec::with_capacity(summary.len() + 24);
        put_f64(&mut event, 1, unix_time());
        put_varint_field(&mut event, 2, step_i64(step));
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)
    }

    /// Push buffered events to the file (also done on drop, and by a write a second or more
    /// after the last flush). Call it at every log interval.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush()
    }

    /// Frame `data` as a TFRecord and write it.
    fn write_record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.record.clear();
        self.record.extend_from_slice(&len);
        self.record
            .extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        self.record.extend_from_slice(data);
        self.record
            .extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file.write(&self.record)
    }
}

fn step_i64(step: u64) -> u64 {
    step.min(i64::MAX as u64)
}

/// Protobuf base-128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field key: `(field << 3) | wire_type`.
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Varint field (wire type 0); omitted when 0, as proto3 does.
fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, 0);
        put_varint(out, v);
    }
}

/// `double` field (wire type 1, 8 bytes LE).
fn put_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// `float` field (wire type 5, 4 bytes LE). Written even when 0, so a logged zero is a point.
fn put_f32(out: &mut Vec<u8>, field: u32, v: f32) {
    put_key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Length-delimited field (wire type 2): string, bytes or embedded message.
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// This machine's name for the file name: `/proc/sys/kernel/hostname`, `/etc/hostname` or
/// `$HOSTNAME`, keeping only `[A-Za-z0-9._-]`; `localhost` if none is found.
fn hostname() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_encode_as_protobuf_does() {
        let enc = |v| {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(
            enc(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    /// A scalar event's bytes, worked out by hand from the encoding rules above.
    #[test]
    fn scalar_value_bytes() {
        let mut value = Vec::new();
        put_bytes(&mut value, 1, b"a/b");
        put_f32(&mut value, 2, 1.0);
        assert_eq!(
            value,
            [0x0a, 3, b'a', b'/', b'b', 0x15, 0x00, 0x00, 0x80, 0x3f]
        );
    }
}
