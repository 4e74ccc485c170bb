//! Data-parallel training under `mpirun -np 2` (needs the `mpi` feature and Open MPI's
//! `mpirun` on PATH; the CI installs `openmpi-bin libopenmpi-dev`):
//!
//! - `acktr-mpi-selftest`: two ranks' update equals one process's on the concatenated batch
//!   (1e-5), and real training keeps the ranks bit-identical (see its doc);
//! - `acktr train` under two ranks: rank 0's log holds both ranks' episodes, `--resume` with
//!   another number of ranks is refused, and a rank killed mid-run ends every rank with a
//!   non-zero exit and leaves the last checkpoint loadable, from which two ranks continue.
#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -np N` with the flags this project's machines need (root, 2 cores).
fn mpirun(np: u32, exe: &str) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(np.to_string())
        .arg(exe);
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const ACKTR: &str = env!("CARGO_BIN_EXE_acktr");

/// `train` arguments of a small CartPole run: 2 ranks × 4 envs × 8 steps = 64 env steps an
/// update.
fn train_args(out: &Path, total: u64) -> Vec<String> {
    [
        "train",
        "--env",
        "CartPole-v1",
        "--backend",
        "native",
        "--num-envs",
        "4",
        "--num-steps",
        "8",
        "--eval-episodes",
        "0",
        "--log-every",
        "1",
        "--total-steps",
        &total.to_string(),
        "--out",
        &out.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `(return, length)` rows of a monitor.csv.
fn monitor_rows(path: &Path) -> Vec<(f64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(2) // the `#{...}` header and the column names
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect()
}

/// The JSON metadata of a checkpoint file (magic, version, length, JSON: docs/run-folder.md).
fn checkpoint_meta(path: &Path) -> serde_json::Value {
    let b = std::fs::read(path).unwrap();
    let len = u32::from_le_bytes([b[6], b[7], b[8], b[9]]) as usize;
    serde_json::from_slice(&b[10..10 + len]).unwrap()
}

#[test]
fn selftest_two_ranks_update_as_one_process_and_stay_bit_identical() {
    let o = mpirun(2, env!("CARGO_BIN_EXE_acktr-mpi-selftest"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for rank in ["rank 0", "rank 1"] {
        assert!(
            t.contains(&format!("{rank}: CartPole-v1, 2 ranks")),
            "{rank} did not finish: {t}"
        );
    }
    assert_eq!(t.matches("vs one process").count(), 8, "{t}");
    println!("{t}");
}

#[test]
fn two_ranks_log_both_ranks_episodes_and_refuse_another_rank_count_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 160 updates × 64 = 10,240 env steps: 5,120 per rank.
    let o = mpirun(2, ACKTR)
        .args(train_args(&out, 10_240))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["mpi_ranks"], 2);
    // Both ranks' episodes: together longer than one rank's 5,120 steps, within the 10,240
    // both took.
    let steps: u64 = monitor_rows(&out.join("monitor.csv"))
        .iter()
        .map(|r| r.1)
        .sum();
    assert!(
        steps > 5_120 + 500 && steps <= 10_240,
        "episode steps {steps}"
    );
    assert_eq!(
        checkpoint_meta(&out.join("checkpoint.ackc"))["env_steps"],
        10_240
    );

    // One process cannot continue a two-rank run, nor can three ranks.
    let mut args = train_args(&out, 20_480);
    args.push("--resume".into());
    let o = Command::new(ACKTR).args(&args).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("was trained on 2 rank(s) and this is 1")
            && text(&o).contains("mpirun -np 2"),
        "{}",
        text(&o)
    );
    let o = mpirun(3, ACKTR).args(&args).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("was trained on 2 rank(s) and this is 3"),
        "{}",
        text(&o)
    );
    // Nothing was written by the refused resumes.
    assert_eq!(
        checkpoint_meta(&out.join("checkpoint.ackc"))["env_steps"],
        10_240
    );
}

/// The pid of `mpirun`'s child that is rank `rank` (its environment says so).
fn rank_pid(mpirun_pid: u32, rank: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the fields after the last `)`.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(mpirun_pid) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_ends_every_rank_and_the_last_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let ckpt = out.join("checkpoint.ackc");
    let mut args = train_args(&out, 1_000_000_000);
    args.extend(["--checkpoint-every".into(), "2048".into()]);
    let mut child = mpirun(2, ACKTR)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !ckpt.is_file() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (r0, r1) = (rank_pid(child.id(), 0), rank_pid(child.id(), 1));
    let (Some(r0), Some(r1)) = (r0, r1) else {
        let _ = child.kill();
        panic!("ranks not found among mpirun's children: {r0:?} {r1:?}");
    };
    let killed = Command::new("kill")
        .args(["-9", &r1.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t1.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("mpirun still running 60 s after rank 1 was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("exited on signal 9"),
        "mpirun said nothing clear: {stderr}"
    );
    assert!(
        !Path::new(&format!("/proc/{r0}")).exists()
            || std::fs::read_to_string(format!("/proc/{r0}/stat")).is_ok_and(|s| s
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))),
        "rank 0 (pid {r0}) still runs"
    );

    // The last checkpoint is whole (its CRC checks) and two ranks continue from it.
    let loaded = acktr_host::run::checkpoint::load_latest(&out)
        .unwrap()
        .expect("a checkpoint");
    assert!(loaded.skipped.is_none(), "{:?}", loaded.skipped);
    let done = checkpoint_meta(&loaded.path)["env_steps"].as_u64().unwrap();
    assert!(done >= 2048 && done % 64 == 0, "{done}");
    let mut args = train_args(&out, done + 128);
    args.push("--resume".into());
    let o = mpirun(2, ACKTR).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(checkpoint_meta(&ckpt)["env_steps"], done + 128);
}

/// Numbers a data-parallel update all-reduces for a 4-64-64 net with two trunks and 2
/// actions, counted from the layer shapes (independently of the code that sends them): the
/// parameters, each factor's statistics (`Ā` of `n` inputs: `n(n+3)/2`; `S` of `n` outputs:
/// `n(n+1)/2`) and three loss sums as `f32`, seven batch numbers as `f64`.
fn acktr_bytes_per_update() -> u64 {
    let (obs, h, p, t) = (4u64, 64u64, 2u64, 2u64);
    let params = t * (obs * h + h + h * h + h) + h * p + p + h + 1 + p;
    let input = |n: u64| n * (n + 3) / 2;
    let output = |n: u64| n * (n + 1) / 2;
    let stats = input(obs) + t * (2 * input(h) + 2 * output(h)) + output(p) + output(1);
    4 * (params + stats + 3) + 8 * 7
}

#[test]
fn bench_reports_one_and_two_ranks_with_the_bytes_the_shapes_give() {
    let o = Command::new(ACKTR)
        .args([
            "bench",
            "--mpi-ranks",
            "1,2",
            "--updates",
            "3",
            "--mpirun-args",
            "--allow-run-as-root --oversubscribe",
        ])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for ranks in [1, 2] {
        let row = t
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "| CartPole-v1 | native | 16 × 20 | ACKTR | {ranks} |"
                ))
            })
            .unwrap_or_else(|| panic!("no ACKTR row for {ranks} ranks: {t}"));
        let cells: Vec<String> = row.split('|').map(|c| c.trim().replace(',', "")).collect();
        // | env | backend | batch | algo | ranks | env-steps/s | speed-up | update | collectives
        // | share | alone | share | bytes |
        let sps: f64 = cells[6].parse().unwrap();
        assert!(sps > 0.0, "{row}");
        let speedup: f64 = cells[7].trim_end_matches('×').parse().unwrap();
        assert!(speedup > 0.0 && (ranks > 1 || speedup == 1.0), "{row}");
        assert_eq!(
            cells[13].parse::<u64>().unwrap(),
            acktr_bytes_per_update(),
            "{row}"
        );
    }
}
