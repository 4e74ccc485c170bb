//! The run folder's files, read back independently of the writers: exact monitor/progress
//! bytes (the truth is stable-baselines3's `monitor.py`/`logger.py` and Python 3.11's float
//! `repr`), TensorBoard records parsed by a decoder written here, checkpoint corruption and
//! atomic replacement, and the plot's PNG.
//!
//! Golden CRC values come from TensorBoard 2.21's pure-Python
//! `tensorboard.compat.tensorflow_stub.pywrap_tensorflow.{crc32c, masked_crc32c}`.

use std::fs;
use std::path::{Path, PathBuf};

use acktr_host::plot::{plot_runs, PlotOptions, XAxis};
use acktr_host::run::checkpoint::{self, Checkpoint};
use acktr_host::run::{crc32c, masked_crc32c, Monitor, Progress, RunDir, TensorBoard, Value};
use acktr_host::HostError;
use serde_json::json;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

// ---------------------------------------------------------------- run folder and config

#[test]
fn run_dir_writes_config_and_reads_it_back_for_resume() {
    let t = tmp();
    let root = t.path().join("runs/cartpole-1");
    let config = json!({"env": "CartPole-v1", "seed": 7, "lr": 0.25});
    let run = RunDir::create(&root, &config).expect("create");
    assert!(!run.is_resumed());
    assert_eq!(run.config_path(), root.join("config.json"));
    assert_eq!(run.monitor_path(), root.join("monitor.csv"));
    assert_eq!(run.progress_path(), root.join("progress.csv"));
    assert_eq!(run.checkpoint_path(), root.join("checkpoint.ackc"));
    assert_eq!(
        run.prev_checkpoint_path(),
        root.join("checkpoint.prev.ackc")
    );
    let text = fs::read_to_string(run.config_path()).expect("config.json");
    assert!(
        text.ends_with("}\n"),
        "pretty JSON with a trailing newline: {text:?}"
    );
    assert!(text.contains("\n  \"seed\": 7"), "pretty-printed: {text}");

    // The trainer's lock: held while `run` lives, by this process's pid.
    let lock = fs::read_to_string(root.join(acktr_host::run::LOCK_FILE)).expect("lock file");
    assert_eq!(lock, format!("{}\n", std::process::id()));
    match RunDir::open_for_resume(&root) {
        Err(HostError::RunFolderInUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("a second opening while locked: {other:?}"),
    }
    drop(run);
    let (again, read) = RunDir::open_for_resume(&root).expect("resume");
    assert!(again.is_resumed());
    assert_eq!(read, config);
    assert!(!root.join(".config.json.tmp").exists(), "no temp file left");
}

#[test]
fn run_dir_refuses_a_non_empty_folder_and_accepts_an_empty_one() {
    let t = tmp();
    let root = t.path().join("run");
    fs::create_dir(&root).expect("mkdir");
    RunDir::create(&root, &json!({})).expect("empty folder is fine");
    let err = RunDir::create(&root, &json!({})).expect_err("second create");
    let msg = err.to_string();
    assert!(matches!(err, HostError::InvalidSetting(_)), "{err:?}");
    assert!(msg.contains("--resume") && msg.contains("--out"), "{msg}");
}

#[test]
fn resume_needs_a_valid_config() {
    let t = tmp();
    let err = RunDir::open_for_resume(t.path()).expect_err("no config.json");
    assert!(err.to_string().contains("not a run folder"), "{err}");
    assert!(
        !t.path().join(acktr_host::run::LOCK_FILE).exists(),
        "a lock file in a folder that is not a run"
    );
    fs::write(t.path().join("config.json"), b"{\"seed\": ").expect("write");
    let err = RunDir::open_for_resume(t.path()).expect_err("cut-off config.json");
    assert!(matches!(err, HostError::BadFile { .. }), "{err:?}");
}

// ---------------------------------------------------------------- monitor.csv

/// Expected bytes: what SB3's `ResultsWriter` writes for the same episodes
/// (`#` + `json.dumps(header)` + `\n`, then `csv.DictWriter` rows ending `\r\n`, with
/// `round(x, 6)` floats printed by Python's `repr`).
#[test]
fn monitor_csv_matches_stable_baselines3_bytes() {
    let t = tmp();
    let path = t.path().join("monitor.csv");
    let mut m = Monitor::create_with_start(&path, "CartPole-v1", 1700000000.5).expect("create");
    m.append_at(22.0, 22, 0.0041719).expect("row");
    m.append_at(-0.5, 3, 12.3456789).expect("row");
    m.append_at(1.0e-7, 1, 100.0).expect("row");
    m.flush().expect("flush");
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(
        text,
        "#{\"t_start\": 1700000000.5, \"env_id\": \"CartPole-v1\"}\n\
         r,l,t\r\n\
         22.0,22,0.004172\r\n\
         -0.5,3,12.345679\r\n\
         0.0,1,100.0\r\n"
    );

    // The same file through an ordinary CSV reader, as pandas sees it after `skiprows=1`.
    let body = text.split_once('\n').map(|(_, b)| b).unwrap_or("");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), ["r", "l", "t"]);
    let rows: Vec<(f64, u64, f64)> = reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            (
                r[0].parse().expect("r"),
                r[1].parse().expect("l"),
                r[2].parse().expect("t"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [(22.0, 22, 0.004172), (-0.5, 3, 12.345679), (0.0, 1, 100.0)]
    );
}

#[test]
fn monitor_resume_keeps_t_start_and_drops_a_half_written_row() {
    let t = tmp();
    let path = t.path().join("monitor.csv");
    {
        let mut m = Monitor::create_with_start(&path, "Pendulum-v1", 1234.25).expect("create");
        m.append_at(-1200.5, 200, 3.0).expect("row");
    }
    // A killed run: half a row at the end.
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend_from_slice(b"-99");
    fs::write(&path, &bytes).expect("write");

    let mut m = Monitor::resume(&path, "ignored", None).expect("resume");
    assert_eq!(m.t_start(), 1234.25);
    m.append_at(-800.0, 200, 9.5).expect("row");
    drop(m); // flushes
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(
        text,
        "#{\"t_start\": 1234.25, \"env_id\": \"Pendulum-v1\"}\nr,l,t\r\n\
         -1200.5,200,3.0\r\n-800.0,200,9.5\r\n"
    );

    // `append` measures wall time from t_start, so resuming a 1234.25 s epoch run gives huge t.
    let mut m = Monitor::resume(&path, "ignored", None).expect("resume");
    m.append(1.0, 1).expect("row");
    m.flush().expect("flush");
    let text = fs::read_to_string(&path).expect("read");
    let last = text.lines().last().unwrap_or("");
    let t_col: f64 = last
        .trim_end()
        .rsplit(',')
        .next()
        .unwrap_or("")
        .parse()
        .expect("t");
    assert!(t_col > 1.0e9, "{last}");

    fs::write(&path, "r,l,t\n1,1,1\n").expect("write");
    let err = Monitor::resume(&path, "x", None).err().expect("no # line");
    assert!(matches!(err, HostError::BadFile { .. }), "{err:?}");
}

// ---------------------------------------------------------------- progress.csv

/// Expected bytes: SB3's `CSVOutputFormat.write` for the same three `dump`s: a new key
/// rewrites the header and pads earlier rows with one `,` per new key; absent keys are empty.
#[test]
fn progress_csv_extends_its_header_like_stable_baselines3() {
    let t = tmp();
    let path = t.path().join("progress.csv");
    let mut p = Progress::create(&path).expect("create");
    p.write(&[
        ("time/total_timesteps", Value::Int(2048)),
        ("time/fps", Value::Float(1500.5)),
    ])
    .expect("row 1");
    p.write(&[
        ("time/total_timesteps", Value::from(4096u64)),
        ("rollout/ep_rew_mean", Value::from(22.4)),
        ("train/kl", Value::from(0.00001)),
    ])
    .expect("row 2");
    p.write(&[("train/kl", f64::NAN)]).expect("row 3");
    p.flush().expect("flush");
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(
        text,
        "time/total_timesteps,time/fps,rollout/ep_rew_mean,train/kl\n\
         2048,1500.5,,\n\
         4096,,22.4,1e-05\n\
         ,,,nan\n"
    );
    assert_eq!(p.keys().len(), 4);

    let mut reader = csv::Reader::from_path(&path).expect("csv");
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(headers.len(), 4);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.len() == 4));
}

#[test]
fn progress_resume_keeps_columns_and_rejects_bad_keys() {
    let t = tmp();
    let path = t.path().join("progress.csv");
    {
        let mut p = Progress::create(&path).expect("create");
        p.write(&[("a", 1.0), ("b", 2.0)]).expect("row");
    }
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend_from_slice(b"3.0,"); // half a row from a killed run
    fs::write(&path, &bytes).expect("write");

    let mut p = Progress::resume(&path, None).expect("resume");
    assert_eq!(p.keys(), ["a", "b"]);
    p.write(&[("b", 5.0)]).expect("row");
    for bad in ["", "a,b", "say \"hi\"", "x\ny"] {
        assert!(p.write(&[(bad, 1.0)]).is_err(), "{bad:?} accepted");
    }
    assert!(
        p.write(&[("a", 1.0), ("a", 2.0)]).is_err(),
        "duplicate key accepted"
    );
    drop(p);
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "a,b\n1.0,2.0\n,5.0\n"
    );
}

/// A run killed after its checkpoint logged rows the resumed run will log again; resuming
/// with the row counts saved in the checkpoint cuts them, as TensorBoard's purge does.
#[test]
fn resume_cuts_the_logs_back_to_the_checkpoint() {
    let t = tmp();
    let run = RunDir::create(t.path().join("run"), &json!({"seed": 1})).expect("create");
    let (monitor_rows, progress_rows) = {
        let mut m = run.monitor("CartPole-v1", None).expect("monitor");
        let mut p = run.progress(None).expect("progress");
        for i in 0..3u64 {
            m.append_at(10.0, 10, i as f64).expect("row");
            p.write(&[("time/iterations", Value::from(i))])
                .expect("row");
        }
        m.flush().expect("flush");
        p.flush().expect("flush");
        let at_checkpoint = (m.rows(), p.rows());
        for i in 3..5u64 {
            m.append_at(99.0, 99, i as f64)
                .expect("row after the checkpoint");
            p.write(&[
                ("time/iterations", Value::from(i)),
                ("train/kl", Value::from(0.5)),
            ])
            .expect("row after the checkpoint");
        }
        at_checkpoint
    };
    assert_eq!((monitor_rows, progress_rows), (3, 3));

    drop(run); // its lock
    let (run, _) = RunDir::open_for_resume(t.path().join("run")).expect("resume");
    let m = run
        .monitor("CartPole-v1", Some(monitor_rows))
        .expect("monitor");
    let p = run.progress(Some(progress_rows)).expect("progress");
    assert_eq!((m.rows(), p.rows()), (3, 3));
    drop((m, p));
    let monitor = fs::read_to_string(run.monitor_path()).expect("read");
    assert_eq!(monitor.lines().count(), 5, "{monitor}");
    assert!(!monitor.contains("99.0,99,"), "{monitor}");
    // The header keeps the column the cut rows introduced; the kept rows are padded.
    let progress = fs::read_to_string(run.progress_path()).expect("read");
    assert_eq!(progress, "time/iterations,train/kl\n0,\n1,\n2,\n");

    // Without counts, everything complete is kept and counted.
    let m = Monitor::resume(run.monitor_path(), "CartPole-v1", None).expect("monitor");
    assert_eq!(m.rows(), 3);
}

// ---------------------------------------------------------------- TensorBoard

#[test]
fn crc32c_and_masked_crc_known_values() {
    assert_eq!(
        crc32c(b"123456789"),
        0xE306_9283,
        "the standard CRC-32C check value"
    );
    assert_eq!(crc32c(b""), 0);
    assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    assert_eq!(masked_crc32c(b""), 0xA282_EAD8);
    assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224B_7FA3);
}

/// A protobuf field as this test's decoder sees it.
#[derive(Debug)]
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

fn varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint too long");
}

/// Decode one message into `(field number, value)` in order.
fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut pos)),
            1 => {
                let v = b[pos..pos + 8].try_into().expect("8 bytes");
                pos += 8;
                Field::Fixed64(v)
            }
            2 => {
                let n = varint(b, &mut pos) as usize;
                let v = &b[pos..pos + n];
                pos += n;
                Field::Bytes(v)
            }
            5 => {
                let v = b[pos..pos + 4].try_into().expect("4 bytes");
                pos += 4;
                Field::Fixed32(v)
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

/// Split a TFRecord file into its records, checking both masked CRCs of every record.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len_bytes = &bytes[pos..pos + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8")) as usize;
        let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().expect("4"));
        assert_eq!(
            len_crc,
            masked_crc32c(len_bytes),
            "length CRC of record {}",
            out.len()
        );
        let data = &bytes[pos + 12..pos + 12 + len];
        let data_crc =
            u32::from_le_bytes(bytes[pos + 12 + len..pos + 16 + len].try_into().expect("4"));
        assert_eq!(
            data_crc,
            masked_crc32c(data),
            "data CRC of record {}",
            out.len()
        );
        out.push(data);
        pos += 16 + len;
    }
    assert_eq!(pos, bytes.len());
    out
}

/// `(wall_time, step, what)` of an Event, `what` being its remaining fields.
fn event(data: &[u8]) -> (f64, u64, Vec<(u64, Field<'_>)>) {
    let mut wall = None;
    let mut step = 0;
    let mut rest = Vec::new();
    for (n, f) in fields(data) {
        match (n, f) {
            (1, Field::Fixed64(b)) => wall = Some(f64::from_le_bytes(b)),
            (2, Field::Varint(s)) => step = s,
            other => rest.push(other),
        }
    }
    (wall.expect("every event has a wall_time"), step, rest)
}

/// `(tag, simple_value)` pairs of a Summary.
fn summary_values(summary: &[u8]) -> Vec<(String, f32)> {
    fields(summary)
        .into_iter()
        .map(|(n, f)| {
            assert_eq!(n, 1, "Summary.value");
            let Field::Bytes(value) = f else {
                panic!("Value is a message")
            };
            let mut tag = None;
            let mut v = None;
            for (n, f) in fields(value) {
                match (n, f) {
                    (1, Field::Bytes(t)) => {
                        tag = Some(String::from_utf8(t.to_vec()).expect("utf8"))
                    }
                    (2, Field::Fixed32(b)) => v = Some(f32::from_le_bytes(b)),
                    other => panic!("unexpected Value field {other:?}"),
                }
            }
            (tag.expect("tag"), v.expect("simple_value"))
        })
        .collect()
}

#[test]
fn tensorboard_records_round_trip_with_valid_crcs() {
    let t = tmp();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut tb = TensorBoard::create(t.path()).expect("create");
    tb.scalar("charts/episodic_return", 0, 9.5).expect("scalar");
    tb.scalar("charts/episodic_return", 300, 200.0)
        .expect("scalar");
    tb.scalars(
        1 << 40,
        &[("losses/value_loss", 0.125), ("charts/SPS", 0.0)],
    )
    .expect("scalars");
    tb.flush().expect("flush");
    let path = tb.path().to_path_buf();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let secs: u64 = name
        .split('.')
        .nth(3)
        .and_then(|s| s.parse().ok())
        .expect("unix seconds");
    assert!((secs as f64 - before).abs() < 5.0, "{name}");

    let bytes = fs::read(&path).expect("read");
    let recs = records(&bytes);
    assert_eq!(recs.len(), 4);

    let (wall, step, what) = event(recs[0]);
    assert!((wall - before).abs() < 5.0);
    assert_eq!(step, 0);
    assert!(
        matches!(what.as_slice(), [(3, Field::Bytes(b"brain.Event:2"))]),
        "file_version event: {what:?}"
    );

    let mut got = Vec::new();
    for r in &recs[1..] {
        let (_, step, what) = event(r);
        let [(5, Field::Bytes(summary))] = what.as_slice() else {
            panic!("summary event: {what:?}")
        };
        for (tag, v) in summary_values(summary) {
            got.push((step, tag, v));
        }
    }
    assert_eq!(
        got,
        [
            (0, "charts/episodic_return".to_string(), 9.5),
            (300, "charts/episodic_return".to_string(), 200.0),
            (1 << 40, "losses/value_loss".to_string(), 0.125),
            (1 << 40, "charts/SPS".to_string(), 0.0),
        ]
    );

    // A second file in the same second gets its own name instead of clobbering the first.
    let other = TensorBoard::create(t.path()).expect("second");
    assert_ne!(other.path(), path.as_path());
}

#[test]
fn tensorboard_resume_starts_with_a_session_log_start_at_the_checkpoint_step() {
    let t = tmp();
    let tb = TensorBoard::resume(t.path(), 5000).expect("resume");
    let bytes = fs::read(tb.path()).expect("read");
    let recs = records(&bytes);
    assert_eq!(recs.len(), 2);
    let (_, step, what) = event(recs[1]);
    assert_eq!(step, 5000);
    let [(7, Field::Bytes(session_log))] = what.as_slice() else {
        panic!("session_log event: {what:?}")
    };
    assert!(
        matches!(fields(session_log).as_slice(), [(1, Field::Varint(1))]),
        "status START"
    );
}

// ---------------------------------------------------------------- checkpoints

fn sample() -> Checkpoint {
    Checkpoint::new(json!({"step": 4096, "updates": 8, "rng": [1, 2, 3]}))
        .with_blob("weights", (0..=255u8).collect())
        .with_blob("kfac", vec![0xAA; 33])
        .with_blob("empty", Vec::new())
}

/// Bytes worked out by hand from the format table in `checkpoint.rs`; the CRC from
/// TensorBoard's pure-Python `crc32c` over the first 40 bytes.
#[test]
fn checkpoint_golden_bytes() {
    let c = Checkpoint::new(json!({"step": 1})).with_blob("w", vec![1, 2, 3]);
    let bytes = c.to_bytes().expect("encode");
    let want: [u8; 44] = [
        0x41, 0x43, 0x4b, 0x43, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x73, 0x74, 0x65,
        0x70, 0x22, 0x3a, 0x31, 0x7d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x77, 0x03,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0xc3, 0xa9, 0x12, 0x6c,
    ];
    assert_eq!(bytes, want);
    let back = Checkpoint::from_bytes(&bytes, Path::new("x")).expect("decode");
    assert_eq!(back, c);
    assert_eq!(back.blob("w"), Some(&[1u8, 2, 3][..]));
    assert_eq!(back.blob("nope"), None);
}

#[test]
fn checkpoint_round_trips_and_rejects_bad_names() {
    let c = sample();
    let bytes = c.to_bytes().expect("encode");
    assert_eq!(
        Checkpoint::from_bytes(&bytes, Path::new("x")).expect("decode"),
        c
    );
    assert!(Checkpoint::new(json!(null))
        .with_blob("", vec![])
        .to_bytes()
        .is_err());
    assert!(Checkpoint::new(json!(null))
        .with_blob("a", vec![])
        .with_blob("a", vec![1])
        .to_bytes()
        .is_err());
}

#[test]
fn every_truncation_of_a_checkpoint_is_a_bad_file() {
    let bytes = sample().to_bytes().expect("encode");
    for n in 0..bytes.len() {
        match Checkpoint::from_bytes(&bytes[..n], Path::new("cut.ackc")) {
            Err(HostError::BadFile { path, reason }) => {
                assert_eq!(path, PathBuf::from("cut.ackc"));
                assert!(!reason.is_empty());
            }
            other => panic!("truncated to {n} bytes: {other:?}"),
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(
        Checkpoint::from_bytes(&longer, Path::new("x")).is_err(),
        "trailing byte"
    );
}

#[test]
fn every_bit_flip_in_a_checkpoint_is_a_bad_file() {
    let bytes = sample().to_bytes().expect("encode");
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let r = Checkpoint::from_bytes(&b, Path::new("x"));
            assert!(
                matches!(r, Err(HostError::BadFile { .. })),
                "flip {i}:{bit}: {r:?}"
            );
        }
    }
}

#[test]
fn foreign_and_newer_files_say_why() {
    let reason = |b: &[u8]| match Checkpoint::from_bytes(b, Path::new("f")) {
        Err(HostError::BadFile { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    assert!(reason(b"PK\x03\x04 a zip").contains("not an acktr checkpoint"));
    assert!(reason(b"").contains("not an acktr checkpoint"));
    let mut newer = sample().to_bytes().expect("encode");
    newer[4] = 2;
    assert!(reason(&newer).contains("version 2"), "{}", reason(&newer));
    let mut corrupt = sample().to_bytes().expect("encode");
    corrupt[20] ^= 0xff;
    assert!(reason(&corrupt).contains("CRC"), "{}", reason(&corrupt));

    // A forged file with a matching CRC but a length pointing past the end.
    let mut forged = b"ACKC\x01\x00\xff\xff\xff\x7f{}".to_vec();
    let crc = crc32c(&forged);
    forged.extend_from_slice(&crc.to_le_bytes());
    assert!(reason(&forged).contains("truncated"), "{}", reason(&forged));
}

#[test]
fn save_keeps_the_previous_checkpoint() {
    let t = tmp();
    assert!(checkpoint::load_latest(t.path())
        .expect("empty dir")
        .is_none());
    let first = Checkpoint::new(json!({"step": 1}));
    let second = Checkpoint::new(json!({"step": 2})).with_blob("w", vec![9; 10]);
    let path = checkpoint::save(t.path(), &first).expect("save 1");
    assert_eq!(path, t.path().join("checkpoint.ackc"));
    assert!(!t.path().join("checkpoint.prev.ackc").exists());
    checkpoint::save(t.path(), &second).expect("save 2");
    assert_eq!(
        checkpoint::load(t.path().join("checkpoint.ackc")).expect("latest"),
        second
    );
    assert_eq!(
        checkpoint::load(t.path().join("checkpoint.prev.ackc")).expect("prev"),
        first
    );
    let loaded = checkpoint::load_latest(t.path())
        .expect("load")
        .expect("some");
    assert_eq!(loaded.checkpoint, second);
    assert!(loaded.skipped.is_none());
    let leftovers: Vec<_> = fs::read_dir(t.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A run killed after writing (part of) the temporary file but before the rename: the old
/// checkpoint is still the latest and loads; the next save overwrites the leftover.
#[test]
fn a_crash_before_the_rename_leaves_the_old_checkpoint_in_place() {
    let t = tmp();
    let old = sample();
    checkpoint::save(t.path(), &old).expect("save");
    let latest = t.path().join("checkpoint.ackc");
    let new_bytes = Checkpoint::new(json!({"step": 999}))
        .to_bytes()
        .expect("encode");
    for cut in [0, 1, new_bytes.len() / 2, new_bytes.len()] {
        fs::write(checkpoint::temp_path(&latest), &new_bytes[..cut]).expect("half-written temp");
        let loaded = checkpoint::load_latest(t.path())
            .expect("load")
            .expect("some");
        assert_eq!(loaded.checkpoint, old, "cut at {cut}");
        assert_eq!(loaded.path, latest);
    }
    let newer = Checkpoint::new(json!({"step": 1000}));
    checkpoint::save(t.path(), &newer).expect("save over leftover");
    assert_eq!(
        checkpoint::load_latest(t.path())
            .expect("load")
            .expect("some")
            .checkpoint,
        newer
    );
    assert!(!checkpoint::temp_path(&latest).exists());
}

#[test]
fn a_damaged_latest_checkpoint_falls_back_to_the_previous_one() {
    let t = tmp();
    let first = Checkpoint::new(json!({"step": 1}));
    checkpoint::save(t.path(), &first).expect("save 1");
    checkpoint::save(t.path(), &sample()).expect("save 2");
    let latest = t.path().join("checkpoint.ackc");
    let bytes = fs::read(&latest).expect("read");
    fs::write(&latest, &bytes[..bytes.len() / 2]).expect("damage");
    let loaded = checkpoint::load_latest(t.path())
        .expect("load")
        .expect("some");
    assert_eq!(loaded.checkpoint, first);
    assert_eq!(loaded.path, t.path().join("checkpoint.prev.ackc"));
    assert!(matches!(loaded.skipped, Some(HostError::BadFile { .. })));

    fs::write(t.path().join("checkpoint.prev.ackc"), b"junk").expect("damage prev");
    let err = checkpoint::load_latest(t.path()).expect_err("both damaged");
    assert!(err.to_string().contains("checkpoint.ackc"), "{err}");
}

#[test]
fn write_atomic_replaces_the_whole_file() {
    let t = tmp();
    let p = t.path().join("f.json");
    checkpoint::write_atomic(&p, b"a much longer first version").expect("write");
    checkpoint::write_atomic(&p, b"short").expect("write");
    assert_eq!(fs::read(&p).expect("read"), b"short");
    assert!(!checkpoint::temp_path(&p).exists());
}

// ---------------------------------------------------------------- plot

/// `(width, height)` from a PNG's IHDR after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().expect("4"));
    let h = u32::from_be_bytes(bytes[20..24].try_into().expect("4"));
    (w, h)
}

/// A fake CartPole-like run: returns rising from ~20 to ~`top` over `n` episodes.
fn fake_run(root: &Path, name: &str, n: usize, top: f64, seed: u64) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    let mut m =
        Monitor::create_with_start(dir.join("monitor.csv"), "CartPole-v1", 1.7e9).expect("monitor");
    let mut s = seed;
    for i in 0..n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 40.0;
        let ret = (20.0 + (top - 20.0) * (i as f64 / n as f64)).max(8.0) + noise;
        let ret = ret.round().clamp(8.0, 500.0);
        m.append_at(ret, ret as u64, i as f64 * 0.05).expect("row");
    }
    dir
}

/// Where to keep the PNGs for a look: `$ACKTR_TEST_PLOT_DIR`, else the temp dir.
fn plot_out(t: &Path, name: &str) -> PathBuf {
    match std::env::var_os("ACKTR_TEST_PLOT_DIR") {
        Some(d) => PathBuf::from(d).join(name),
        None => t.join(name),
    }
}

#[test]
fn plot_draws_two_runs_into_a_png() {
    let t = tmp();
    let a = fake_run(t.path(), "acktr-seed1", 300, 480.0, 1);
    let b = fake_run(t.path(), "a2c-seed1", 400, 250.0, 2);
    let out = plot_out(t.path(), "two_runs.png");
    plot_runs(
        &[a.clone(), b.join("monitor.csv")],
        &out,
        PlotOptions::default(),
    )
    .expect("plot");
    assert_eq!(png_size(&fs::read(&out).expect("png")), (1000, 600));

    let out = plot_out(t.path(), "wall_time.png");
    let opts = PlotOptions {
        x_axis: XAxis::WallTime,
        window: 1,
        size: (640, 400),
        labels: vec!["ACKTR".into(), "A2C".into()],
        title: Some("CartPole-v1, raw returns".into()),
        ..PlotOptions::default()
    };
    plot_runs(&[a, b], &out, opts).expect("plot");
    assert_eq!(png_size(&fs::read(&out).expect("png")), (640, 400));
}

#[test]
fn plot_groups_seeds_into_a_mean_and_band() {
    let t = tmp();
    let mut runs = Vec::new();
    let mut labels = Vec::new();
    for seed in 0..3 {
        runs.push(fake_run(
            t.path(),
            &format!("acktr-{seed}"),
            300,
            450.0 + 10.0 * seed as f64,
            seed,
        ));
        labels.push("ACKTR".to_string());
        runs.push(fake_run(
            t.path(),
            &format!("a2c-{seed}"),
            300,
            200.0 + 30.0 * seed as f64,
            10 + seed,
        ));
        labels.push("A2C".to_string());
    }
    let empty = t.path().join("not-started");
    fs::create_dir_all(&empty).expect("mkdir");
    Monitor::create_with_start(empty.join("monitor.csv"), "CartPole-v1", 0.0).expect("monitor");
    runs.push(empty);
    labels.push("PPO".to_string());
    let out = plot_out(t.path(), "grouped.png");
    let opts = PlotOptions {
        labels,
        group: true,
        ..PlotOptions::default()
    };
    plot_runs(&runs, &out, opts).expect("plot");
    assert_eq!(png_size(&fs::read(&out).expect("png")), (1000, 600));
}

#[test]
fn plot_reports_bad_input() {
    let t = tmp();
    let out = t.path().join("x.png");
    assert!(plot_runs(&[], &out, PlotOptions::default()).is_err());
    let a = fake_run(t.path(), "a", 10, 100.0, 1);
    let opts = PlotOptions {
        labels: vec!["one".into(), "two".into()],
        ..PlotOptions::default()
    };
    assert!(
        plot_runs(std::slice::from_ref(&a), &out, opts).is_err(),
        "label count"
    );
    let missing = t.path().join("missing");
    let err = plot_runs(&[missing], &out, PlotOptions::default()).expect_err("missing run");
    assert!(matches!(err, HostError::Io { .. }), "{err:?}");
    let empty = t.path().join("empty");
    fs::create_dir_all(&empty).expect("mkdir");
    Monitor::create_with_start(empty.join("monitor.csv"), "CartPole-v1", 0.0).expect("monitor");
    let err = plot_runs(&[empty], &out, PlotOptions::default()).expect_err("no episodes");
    assert!(err.to_string().contains("no finished episodes"), "{err}");
}
