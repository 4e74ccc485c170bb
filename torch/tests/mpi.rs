//! The tch backend's data-parallel training under `mpirun -np 2` (needs the `mpi` feature and
//! Open MPI's `mpirun` on PATH; the CI runs `cargo test --release -p acktr-torch --features mpi
//! --test mpi`):
//!
//! - `acktr-torch-mpi-selftest`: two ranks' update equals one process's on the concatenated
//!   batch (1e-5; ACKTR on MLPs and the MinAtar conv net, A2C), and real training keeps the
//!   ranks bit-identical (see its doc);
//! - `acktr train --backend tch` under two ranks, ACKTR and A2C: the lean `acktr` hands every
//!   rank over to `acktr-torch`, which trains on both ranks' samples; rank 0's run folder
//!   records two ranks and holds both ranks' episodes.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `mpirun -np N` with the flags this project's machines need (root, 2 cores).
fn mpirun(np: u32, exe: &Path) -> Command {
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

const TORCH: &str = env!("CARGO_BIN_EXE_acktr-torch");

/// The binary to start under mpirun: the lean `acktr` beside `acktr-torch` when it is built
/// (it hands over to `acktr-torch` before MPI starts), else `acktr-torch` itself.
fn trainer() -> PathBuf {
    acktr_host::cli::sibling_exe(Path::new(TORCH), acktr_host::cli::LEAN_BIN).unwrap_or_else(|| {
        eprintln!("note: no lean `acktr` beside {TORCH}; starting acktr-torch directly");
        PathBuf::from(TORCH)
    })
}

#[test]
fn selftest_two_ranks_update_as_one_process_and_stay_bit_identical() {
    let o = mpirun(2, Path::new(env!("CARGO_BIN_EXE_acktr-torch-mpi-selftest")))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("vs one process").count(), 8, "{t}");
    for rank in ["rank 0", "rank 1"] {
        for algo in ["tch ACKTR, CartPole-v1", "tch A2C, CartPole-v1"] {
            assert!(
                t.contains(&format!("{rank}: {algo}, 2 ranks")),
                "{rank} did not finish {algo}: {t}"
            );
        }
    }
    println!("{t}");
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

#[test]
fn train_backend_tch_under_two_ranks_acktr_and_a2c() {
    let dir = tempfile::tempdir().unwrap();
    for algo in ["acktr", "a2c"] {
        let out = dir.path().join(algo);
        // 2 ranks × 4 envs × 8 steps = 64 env steps an update; 100 updates.
        let o = mpirun(2, &trainer())
            .args([
                "train",
                "--env",
                "CartPole-v1",
                "--backend",
                "tch",
                "--algo",
                algo,
                "--num-envs",
                "4",
                "--num-steps",
                "8",
                "--eval-episodes",
                "0",
                "--log-every",
                "10",
                "--total-steps",
                "6400",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{algo}: {}", text(&o));
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["mpi_ranks"], 2, "{cfg}");
        assert_eq!(cfg["agent"]["backend"], "tch", "{cfg}");
        // Both ranks' episodes: together longer than one rank's 3,200 steps.
        let steps: u64 = monitor_rows(&out.join("monitor.csv"))
            .iter()
            .map(|r| r.1)
            .sum();
        assert!(
            steps > 3_200 + 300 && steps <= 6_400,
            "{algo}: episode steps {steps}"
        );
    }
}
