//! The run folder's guarantees as a user meets them through the `acktr` binary: one trainer
//! per folder (a lock naming the holder's pid), a failed start that leaves only temporary
//! files, checkpoints refused field by field (forged files with valid CRCs), `--resume`'s
//! rules for options, and messages that name flags and the files asked for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use acktr_host::run::checkpoint::{self, Checkpoint};

fn acktr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acktr"))
        .args(args)
        .output()
        .expect("run acktr")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `acktr args` fails, without a panic, and its message contains every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let o = acktr(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: no `{n}` in: {err}");
    }
    err
}

/// A short native CartPole run in `run` (3,200 env steps, checkpoint at the end).
fn short_run(run: &Path, extra: &[&str]) {
    let r = run.to_str().unwrap();
    let o = acktr(
        &[
            &[
                "train",
                "--total-steps",
                "3200",
                "--out",
                r,
                "--quiet",
                "--eval-episodes",
                "0",
            ][..],
            extra,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A trainer that runs until killed, checkpointing every 3,200 env steps; returned once its
/// first checkpoint exists.
fn long_trainer(run: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_acktr"))
        .args([
            "train",
            "--total-steps",
            "100000000",
            "--checkpoint-every",
            "3200",
            "--out",
            run.to_str().unwrap(),
            "--quiet",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn acktr");
    let t0 = Instant::now();
    while !run.join("checkpoint.ackc").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Every file of a folder with its bytes, but the lock file (to show that a refusal wrote
/// nothing).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with(acktr_host::run::LOCK_FILE))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------- one trainer per folder

/// While a trainer runs, a second `acktr train` on its folder (resume or fresh) is refused at
/// once with the holder's pid, and writes nothing; `acktr eval` reads the folder meanwhile.
#[test]
fn a_second_trainer_on_a_folder_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let mut first = long_trainer(&run);
    let pid = format!("pid {}", first.id());
    for args in [
        vec!["train", "--resume", "--out", r, "--quiet"],
        vec!["train", "--out", r, "--quiet"],
    ] {
        // Refused at once: a second trainer still running after 20 s is stopped and fails
        // the test.
        let mut second = Command::new(env!("CARGO_BIN_EXE_acktr"))
            .args(&args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn acktr");
        let t0 = Instant::now();
        while second.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let running = second.try_wait().unwrap().is_none();
        if running {
            second.kill().unwrap();
        }
        let o = second.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!running, "{args:?} was still running after 20 s: {err}");
        assert!(!o.status.success(), "{args:?} succeeded: {err}");
        for n in ["in use by another acktr process", pid.as_str()] {
            assert!(err.contains(n), "{args:?}: no `{n}` in: {err}");
        }
    }
    // A reader takes no lock: it evaluates the last complete checkpoint.
    let o = acktr(&["eval", r, "--episodes", "1"]);
    assert!(o.status.success(), "eval during training: {}", stderr(&o));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first trainer died"
    );
    first.kill().unwrap(); // SIGKILL: the kernel releases the lock
    first.wait().unwrap();
    let done = checkpoint::load_latest(&run)
        .unwrap()
        .unwrap()
        .checkpoint
        .meta["env_steps"]
        .as_u64()
        .unwrap();
    let total = (done + 3200).to_string();
    let o = acktr(&[
        "train",
        "--resume",
        "--out",
        r,
        "--total-steps",
        &total,
        "--quiet",
        "--eval-episodes",
        "0",
    ]);
    assert!(
        o.status.success(),
        "resume after the holder died: {}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------- a failed start

/// A start killed while writing config.json (or on a full disk) leaves only
/// `.config.json.tmp`: `--resume` says there is nothing to resume, a new start clears it.
#[test]
fn a_folder_with_only_temp_files_is_empty_for_a_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join(".config.json.tmp"), b"").unwrap();
    let err = refused(
        &["train", "--resume", "--out", r, "--quiet"],
        &["nothing to resume", "without --resume"],
    );
    assert!(
        !err.contains(".config.json.tmp"),
        "names a temp file: {err}"
    );
    assert!(run.join(".config.json.tmp").exists(), "--resume removed it");
    short_run(&run, &[]);
    assert!(run.join("config.json").is_file());
    assert!(run.join("checkpoint.ackc").is_file());
    assert!(
        !run.join(".config.json.tmp").exists(),
        "the leftover is still there"
    );
    // A folder with anything else is still refused.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    refused(
        &["train", "--out", other.to_str().unwrap(), "--quiet"],
        &["not empty", "--resume"],
    );
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
}

// ---------------------------------------------------------------- forged checkpoints

/// `checkpoint.ackc` replaced by `forge(checkpoint)`, re-encoded (a valid CRC).
fn forge(run: &Path, forge: impl FnOnce(&mut Checkpoint)) {
    let path = run.join(checkpoint::FILE_NAME);
    let mut ck = checkpoint::load(&path).expect("the run's checkpoint loads");
    forge(&mut ck);
    std::fs::write(&path, ck.to_bytes().expect("encodes")).unwrap();
    checkpoint::load(&path).expect("the forged file is a valid container");
}

fn blob_mut<'a>(ck: &'a mut Checkpoint, name: &str) -> &'a mut Vec<u8> {
    &mut ck
        .blobs
        .iter_mut()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no blob {name}"))
        .1
}

fn set_f32(bytes: &mut [u8], i: usize, x: f32) {
    bytes[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
}

/// `eval` and `--resume` refuse `run`'s checkpoint with a message naming the file and
/// `field`; the resume writes nothing.
fn both_refuse(run: &Path, field: &str) {
    let r = run.to_str().unwrap();
    let before = snapshot(run);
    refused(&["eval", r, "--episodes", "1"], &["checkpoint.ackc", field]);
    refused(
        &[
            "train",
            "--resume",
            "--out",
            r,
            "--total-steps",
            "6400",
            "--quiet",
        ],
        &["checkpoint.ackc", field],
    );
    assert!(
        snapshot(run) == before,
        "the refused resume changed {}",
        run.display()
    );
}

#[test]
fn forged_native_checkpoints_are_refused_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    short_run(&base, &[]);
    let meta = |key: &str, v: serde_json::Value| {
        let key = key.to_string();
        move |ck: &mut Checkpoint| ck.meta[key] = v
    };
    type Forgery = Box<dyn FnOnce(&mut Checkpoint)>;
    let cases: Vec<(&str, Forgery, &str)> = vec![
        (
            "nan weight",
            Box::new(|ck| set_f32(blob_mut(ck, "native.state"), 7, f32::NAN)),
            "native.state",
        ),
        (
            "infinite weight",
            Box::new(|ck| set_f32(blob_mut(ck, "native.state"), 0, f32::NEG_INFINITY)),
            "native.state",
        ),
        (
            "trailing byte on the state",
            Box::new(|ck| blob_mut(ck, "native.state").push(0)),
            "native.state",
        ),
        (
            "short sampler state",
            Box::new(|ck| {
                blob_mut(ck, "native.meta").pop();
            }),
            "native.meta",
        ),
        (
            "non-numeric env_steps",
            Box::new(meta("env_steps", serde_json::json!("lots"))),
            "env_steps",
        ),
        (
            "u64::MAX env_steps",
            Box::new(meta("env_steps", serde_json::json!(u64::MAX))),
            "env_steps",
        ),
        (
            "env_steps past a batch",
            Box::new(meta("env_steps", serde_json::json!(3201))),
            "env_steps",
        ),
        (
            "metadata an array",
            Box::new(|ck| ck.meta = serde_json::json!([3200, 10])),
            "metadata",
        ),
        (
            "no monitor_rows",
            Box::new(|ck| {
                ck.meta.as_object_mut().unwrap().remove("monitor_rows");
            }),
            "monitor_rows",
        ),
        (
            "absurd progress_rows",
            Box::new(meta("progress_rows", serde_json::json!(1u64 << 40))),
            "progress_rows",
        ),
        (
            "updates disagreeing with the weights",
            Box::new(meta("updates", serde_json::json!(3))),
            "updates",
        ),
    ];
    for (i, (what, f, field)) in cases.into_iter().enumerate() {
        let run = dir.path().join(format!("case{i}"));
        std::fs::create_dir(&run).unwrap();
        for e in std::fs::read_dir(&base).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, run.join(p.file_name().unwrap())).unwrap();
        }
        forge(&run, f);
        eprintln!("case: {what}");
        both_refuse(&run, field);
    }
}

/// The libtorch backend checks its weights' blobs too.
#[test]
fn forged_tch_checkpoint_with_nan_weights_is_refused() {
    let torch = Path::new(env!("CARGO_BIN_EXE_acktr"))
        .with_file_name(format!("acktr-torch{}", std::env::consts::EXE_SUFFIX));
    assert!(
        torch.is_file(),
        "{} is missing (cargo build -p acktr-torch)",
        torch.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    short_run(&run, &["--backend", "tch", "--algo", "a2c"]);
    forge(&run, |ck| {
        set_f32(blob_mut(ck, "torch.param.0"), 3, f32::NAN)
    });
    both_refuse(&run, "torch.param.0");
}

// ---------------------------------------------------------------- resume and messages

/// `--resume` refuses settings it cannot change (naming the flags and the run's own
/// environment), applies --total-steps and the logging options, and records them.
#[test]
fn resume_refuses_settings_it_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    short_run(&run, &["--env", "Pendulum-v1"]);
    for (extra, needles) in [
        (vec!["--lr", "0.5"], vec!["--lr"]),
        (vec!["--hidden", "32,32"], vec!["--hidden"]),
        (
            vec!["--env", "Acrobot-v1", "--damping", "0.1"],
            vec!["--env Acrobot-v1 (the run's is Pendulum-v1)", "--damping"],
        ),
    ] {
        let args = [&["train", "--resume", "--out", r, "--quiet"][..], &extra].concat();
        let err = refused(&args, &needles);
        assert!(err.contains("resuming Pendulum-v1"), "{err}");
        assert!(!err.contains("CartPole"), "names the default --env: {err}");
    }
    // The same --env as the run's, and the options a resume applies.
    let o = acktr(&[
        "train",
        "--resume",
        "--env",
        "Pendulum-v1",
        "--out",
        r,
        "--total-steps",
        "6400",
        "--log-every",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["settings"]["total_steps"], 6400, "{config}");
    assert_eq!(config["settings"]["log_every"], 3, "{config}");
    // A resume that would go back in steps is refused.
    refused(
        &[
            "train",
            "--resume",
            "--out",
            r,
            "--total-steps",
            "320",
            "--quiet",
        ],
        &["--total-steps 320", "6400 env steps"],
    );
}

/// Right after a resume, progress.csv's episode means come from the episodes before it (the
/// monitor), not NaN. Five steps per update: no episode ends in the first batch after the
/// resume.
#[test]
fn resume_restores_the_recent_episode_window() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let common = [
        "--out",
        r,
        "--quiet",
        "--eval-episodes",
        "0",
        "--log-every",
        "1",
    ];
    let o = acktr(
        &[
            &["train", "--num-steps", "5", "--total-steps", "1600"][..],
            &common,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows_before = std::fs::read_to_string(run.join("progress.csv"))
        .unwrap()
        .lines()
        .count();
    let o = acktr(&[&["train", "--resume", "--total-steps", "1680"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(run.join("progress.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "rollout/ep_rew_mean")
        .unwrap();
    let after: Vec<&str> = lines
        .skip(rows_before - 1)
        .map(|l| l.split(',').nth(col).unwrap())
        .collect();
    assert!(!after.is_empty(), "no rows after the resume:\n{text}");
    for v in after {
        let x: f64 = v.parse().unwrap();
        assert!(
            x.is_finite() && x > 0.0,
            "ep_rew_mean {v} after the resume:\n{text}"
        );
    }
}

/// Messages name the flag, once; the path asked for, not a temp file; no Rust debug dump.
#[test]
fn messages_name_flags_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // A core range error: once, with the flag.
    let err = refused(
        &["train", "--lr", "nan", "--out", &out("a")],
        &["--lr must be > 0"],
    );
    assert_eq!(err.matches("must be > 0").count(), 1, "{err}");
    assert!(!err.contains("eta_max"), "{err}");
    let err = refused(
        &["train", "--gamma", "2", "--out", &out("b")],
        &["--gamma must be in [0, 1]"],
    );
    assert_eq!(err.matches("must be").count(), 1, "{err}");
    // eval of a folder that is not a run: no advice about --resume.
    let err = refused(&["eval", &out("nope")], &["not a run folder"]);
    assert!(!err.contains("--resume"), "{err}");
    let run = dir.path().join("run");
    short_run(&run, &[]);
    let r = run.to_str().unwrap();
    refused(
        &["eval", r, "--episodes", "0"],
        &["--episodes must be at least 1"],
    );
    // Unwritable outputs: the path asked for, no temp file, no debug dump.
    let bad = dir.path().join("missing").join("p.ackp");
    let b = bad.to_str().unwrap();
    let err = refused(&["export", r, "-o", b], &[b]);
    assert!(!err.contains(".p.ackp.tmp"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    let png = dir.path().join("missing").join("curve.png");
    let p = png.to_str().unwrap();
    let err = refused(&["plot", r, "-o", p], &[p]);
    assert!(
        !err.contains("Os {") && !err.contains("kind:") && !err.contains("Error("),
        "{err}"
    );
}
