//! `acktr bench`: throughput and update cost of ACKTR against A2C on the same network, batch
//! and code, and where ACKTR's extra time goes. Prints markdown tables (medians of several
//! repetitions; ratios taken within one run); `--json FILE` also appends them to a data file
//! (each table with its date, CPU model and command), and `--report FILE` prints such a file
//! as the page docs/performance-figures.md.

use std::time::{Duration, Instant};

use acktr_core::Config;

use crate::agent::{Agent, HostRollout};
use crate::envs;
use crate::error::Result;
use crate::settings::{Algo, TrainArgs};
use crate::train::{collect, head_for};

/// `acktr bench` options.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Updates per measurement: the MLP table's whole-loop rows time this many collect +
    /// update iterations per round (7 rounds, the agents taking turns), its update rows and the
    /// breakdown tables take the median of this many isolated updates.
    #[arg(long, default_value_t = 40)]
    pub updates: usize,
    /// Isolated updates of the Nature CNN per breakdown row (each is large on a CPU; the
    /// Nature CNN's whole-loop table always runs 10 iterations per algorithm).
    #[arg(long, default_value_t = 5)]
    pub conv_updates: usize,
    /// Skip the Nature CNN tables.
    #[arg(long)]
    pub no_conv: bool,
    /// Also time this many whole `acktr train --env Pendulum-v1` processes (the preset,
    /// 307,200 env steps, seeds 0, 1, …; 0: skip) and report the median wall time.
    #[arg(long, default_value_t = 0)]
    pub pendulum_runs: usize,
    /// With `--pendulum-runs`: a peer's command (e.g. a built RLtools Pendulum PPO binary),
    /// timed the same number of times, interleaved with ours, for a table in one session.
    #[arg(long)]
    pub beside: Option<String>,
    /// Time this many seeds (0, 1, …; 0: skip) of whole `acktr train --env CartPole-v1
    /// --backend native` processes per algorithm and batch, each over the same budget
    /// (`--cartpole-total-steps`): env steps and wall time until the mean return of the last 20
    /// training episodes reaches `--cartpole-target` (`--stop-at-train-mean` with
    /// `--train-mean-no-stop`), and the ACKTR/A2C throughput ratio over the budget. Needs no
    /// libtorch.
    #[arg(long, default_value_t = 0)]
    pub cartpole_seeds: usize,
    /// With `--cartpole-seeds`: the batches, comma separated, each num_envs×num_steps
    /// (`x` or `×`).
    #[arg(long, value_delimiter = ',', default_value = "16x20,64x20")]
    pub cartpole_batches: Vec<String>,
    /// With `--cartpole-seeds`: the last-20 training mean whose env steps and time are reported.
    #[arg(long, default_value_t = 475.0)]
    pub cartpole_target: f64,
    /// With `--cartpole-seeds`: every run's env steps (a run that has not reached the target
    /// by then is reported as not reached).
    #[arg(long, default_value_t = 1_000_000)]
    pub cartpole_total_steps: u64,
    /// Also append this run's tables to FILE (JSON; each table with the date, the CPU model
    /// and this command line), the data docs/performance-figures.md is generated from.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Measure nothing: print the tables saved in FILE (by `--json`) as a Markdown page
    /// (`acktr bench --report bench/performance.json > docs/performance-figures.md`).
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub report: Option<std::path::PathBuf>,
    /// Measure nothing: save the Markdown tables of FILE, another command's printed output
    /// (e.g. `scripts/pendulum-seeds.sh`), into `--json`, recorded with `--command`.
    #[arg(long, value_name = "FILE", requires_all = ["json", "command"], conflicts_with = "criterion")]
    pub import: Option<std::path::PathBuf>,
    /// Measure nothing: save the estimates `cargo bench` left in DIR (criterion's folder,
    /// `target/criterion`) into `--json` as tables, one column per benchmark group, recorded
    /// with `--command` (default `cargo bench -p acktr-core --features std`).
    #[arg(long, value_name = "DIR", requires = "json")]
    pub criterion: Option<std::path::PathBuf>,
    /// With `--import` or `--criterion`: the command that measured the figures.
    #[arg(long)]
    pub command: Option<String>,
    /// Only the data-parallel table: CartPole-v1 native, 16 envs × 20 steps per rank (and, run
    /// as `acktr-torch`, MinAtar Breakout on tch with its preset's batch per rank), under
    /// `mpirun -np N` for each N given (comma separated): env steps per second of all ranks
    /// together and the all-reduce's share of an update's time. Needs the `mpi` feature and
    /// `mpirun` on PATH.
    #[arg(long, value_delimiter = ',')]
    pub mpi_ranks: Vec<u32>,
    /// Extra `mpirun` options for `--mpi-ranks` (e.g. `--allow-run-as-root --oversubscribe`,
    /// or `--hostfile hosts`), space separated.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub mpirun_args: String,
    /// Internal: one rank of `--mpi-ranks` (prints rank 0's measurement as JSON).
    #[arg(long, hide = true)]
    pub mpi_worker: bool,
}

/// One measured table, as `--json` saves it and `--report` prints it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Table {
    /// The heading the table was printed under.
    pub title: String,
    /// When it was measured (UTC, `YYYY-MM-DD`).
    pub date: String,
    /// The CPU model it was measured on (`lscpu`'s model name).
    pub cpu: String,
    /// The command that printed it.
    pub command: String,
    /// What the reader needs beside the cells (how the figures were taken).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Column headings.
    pub header: Vec<String>,
    /// Cells, row by row, as printed.
    pub rows: Vec<Vec<String>>,
}

/// The Markdown tables of `report` (bench's output), each under the nearest heading above it.
pub fn tables_of(report: &str, date: &str, cpu: &str, command: &str) -> Vec<Table> {
    let cells = |line: &str| -> Vec<String> {
        let l = line.trim().trim_start_matches('|').trim_end_matches('|');
        l.split('|').map(|c| c.trim().to_string()).collect()
    };
    let (mut tables, mut title) = (Vec::<Table>::new(), String::new());
    let mut open = false;
    for line in report.lines() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('#') {
            title = h.trim_start_matches('#').trim().to_string();
            open = false;
        } else if !t.starts_with('|') {
            open = false;
        } else if !open {
            open = true;
            tables.push(Table {
                title: title.clone(),
                date: date.into(),
                cpu: cpu.into(),
                command: command.into(),
                note: String::new(),
                header: cells(t),
                rows: Vec::new(),
            });
        } else if !t
            .trim_matches(|c| matches!(c, '|' | '-' | ':' | ' '))
            .is_empty()
        {
            if let Some(table) = tables.last_mut() {
                table.rows.push(cells(t));
            }
        }
    }
    tables
}

fn read_tables(path: &std::path::Path) -> Result<Vec<Table>> {
    use crate::error::HostError;
    let text = std::fs::read_to_string(path).map_err(|e| HostError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| HostError::InvalidSetting(format!("{}: {e}", path.display())))
}

/// Save the tables of `report` into the JSON file `path` (created when missing): a table with
/// the title and header of a saved one replaces it in place (a re-measurement), others are
/// appended.
pub fn save(path: &std::path::Path, report: &str, command: &str) -> Result<()> {
    use crate::benchmark::{cpu_model, utc_now};
    use crate::error::HostError;
    let mut tables = if path.exists() {
        read_tables(path)?
    } else {
        Vec::new()
    };
    let now = utc_now();
    let date = now.get(..10).unwrap_or(&now);
    let new = tables_of(report, date, &cpu_model(), command);
    if new.is_empty() {
        return Err(HostError::InvalidSetting(format!(
            "nothing saved to {}: the output holds no Markdown table",
            path.display()
        )));
    }
    for t in new {
        match tables
            .iter_mut()
            .find(|s| s.title == t.title && s.header == t.header)
        {
            Some(saved) => *saved = t,
            None => tables.push(t),
        }
    }
    let text = serde_json::to_string_pretty(&tables)
        .map_err(|e| HostError::InvalidSetting(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text + "\n").map_err(|e| HostError::io(path, e))
}

/// The Markdown page of the tables saved in `path` (docs/performance-figures.md).
pub fn report(path: &std::path::Path) -> Result<String> {
    let tables = read_tables(path)?;
    let mut md = format!(
        "<!-- Generated file: do not edit by hand; regenerate it with the command below. -->\n\
         # Performance figures\n\n\
         Generated by `acktr bench --report {}` from {} tables. Each table names the command \
         that measured it, the date and the CPU model: host builds use `target-cpu=native` \
         (`.cargo/config.toml`), so the figures hold for that CPU; compare rows within one \
         table. What the figures mean: [performance.md](performance.md).\n",
        path.display(),
        tables.len()
    );
    for t in &tables {
        md += &format!("\n## {}\n\n", t.title);
        if !t.note.is_empty() {
            md += &format!("{}\n\n", t.note);
        }
        md += &format!("Measured {} on {}: `{}`\n\n", t.date, t.cpu, t.command);
        md += &format!(
            "| {} |\n|{}\n",
            t.header.join(" | "),
            "---|".repeat(t.header.len())
        );
        for r in &t.rows {
            md += &format!("| {} |\n", r.join(" | "));
        }
    }
    Ok(md)
}

/// One benchmark's estimate as criterion saves it (`<dir>/<group>/<function>/new/`).
struct CriterionEstimate {
    group: String,
    function: String,
    /// Median and its 95% confidence interval, ns.
    median: [f64; 3],
}

fn criterion_estimates(dir: &std::path::Path) -> Result<Vec<CriterionEstimate>> {
    use crate::error::HostError;
    let read_json = |p: &std::path::Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(p).map_err(|e| HostError::io(p, e))?;
        serde_json::from_str(&text)
            .map_err(|e| HostError::InvalidSetting(format!("{}: {e}", p.display())))
    };
    let list = |p: &std::path::Path| -> Result<Vec<std::path::PathBuf>> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .map_err(|e| HostError::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        Ok(v)
    };
    let mut out = Vec::new();
    for group in list(dir)? {
        for bench in list(&group)? {
            let new = bench.join("new");
            if !new.join("benchmark.json").exists() {
                continue;
            }
            let id = read_json(&new.join("benchmark.json"))?;
            let est = read_json(&new.join("estimates.json"))?;
            let m = &est["median"];
            let ci = &m["confidence_interval"];
            let (Some(group), Some(function), Some(point), Some(lo), Some(hi)) = (
                id["group_id"].as_str(),
                id["function_id"].as_str(),
                m["point_estimate"].as_f64(),
                ci["lower_bound"].as_f64(),
                ci["upper_bound"].as_f64(),
            ) else {
                return Err(HostError::InvalidSetting(format!(
                    "{}: not criterion's benchmark.json and estimates.json",
                    new.display()
                )));
            };
            out.push(CriterionEstimate {
                group: group.into(),
                function: function.into(),
                median: [point, lo, hi],
            });
        }
    }
    if out.is_empty() {
        return Err(HostError::InvalidSetting(format!(
            "{}: no criterion estimates (run `cargo bench -p acktr-core --features std` first)",
            dir.display()
        )));
    }
    Ok(out)
}

/// A duration in ns as criterion prints it (3 significant figures, ns/µs/ms/s).
fn short_time(ns: f64) -> String {
    let (v, unit) = match ns {
        n if n < 1e3 => (n, "ns"),
        n if n < 1e6 => (n / 1e3, "µs"),
        n if n < 1e9 => (n / 1e6, "ms"),
        n => (n / 1e9, "s"),
    };
    let decimals = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.decimals$} {unit}")
}

/// Markdown tables of the estimates in criterion's folder `dir`: groups that ran the same
/// benchmarks share a table, one column per group; each cell is the median and its 95%
/// confidence interval.
pub fn criterion_report(dir: &std::path::Path) -> Result<String> {
    let est = criterion_estimates(dir)?;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for e in &est {
        match groups.iter_mut().find(|(g, _)| *g == e.group) {
            Some((_, f)) => f.push(e.function.clone()),
            None => groups.push((e.group.clone(), vec![e.function.clone()])),
        }
    }
    let mut md = String::new();
    let mut done: Vec<&Vec<String>> = Vec::new();
    for (_, functions) in &groups {
        if done.contains(&functions) {
            continue;
        }
        done.push(functions);
        let columns: Vec<&str> = groups
            .iter()
            .filter(|(_, f)| f == functions)
            .map(|(g, _)| g.as_str())
            .collect();
        md += &format!(
            "## acktr-core's pieces: {}

| benchmark | {} |
|---|{}
",
            columns.join(", "),
            columns
                .iter()
                .map(|c| format!("{c}: median [95% interval]"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(columns.len())
        );
        for f in functions {
            let cells: Vec<String> = columns
                .iter()
                .map(|g| {
                    est.iter()
                        .find(|e| e.group == *g && e.function == *f)
                        .map_or("—".into(), |e| {
                            format!(
                                "{} [{} – {}]",
                                short_time(e.median[0]),
                                short_time(e.median[1]),
                                short_time(e.median[2])
                            )
                        })
                })
                .collect();
            md += &format!("| {} | {} |\n", f, cells.join(" | "));
        }
        md += "\n";
    }
    Ok(md)
}

/// Median of durations (the upper middle for an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Rounds of the whole-loop measurement: every agent of a backend is timed once per round,
/// in turn, so a slow spell of this shared machine falls on all of them.
const LOOP_ROUNDS: usize = 7;

/// One agent's whole loop (collect + update) on CartPole 16 × 20, with its own environments.
struct Loop {
    agent: Box<dyn Agent>,
    env: Box<dyn crate::envs::VecEnv>,
    obs: Vec<f32>,
    rollout: HostRollout,
}

impl Loop {
    const ENVS: usize = 16;
    const STEPS: usize = 20;

    fn new(agent: Box<dyn Agent>) -> Result<Self> {
        let mut env = envs::make("CartPole-v1", Self::ENVS)?;
        let (_, act_len) = head_for(env.action_space());
        let rollout = HostRollout::new(Self::ENVS, env.obs_len(), act_len);
        let obs = env.reset(0)?;
        let mut l = Self {
            agent,
            env,
            obs,
            rollout,
        };
        l.env_steps_per_sec(3)?;
        Ok(l)
    }

    /// Env steps per second over `updates` collect + update iterations.
    fn env_steps_per_sec(&mut self, updates: usize) -> Result<f64> {
        let t = Instant::now();
        for _ in 0..updates {
            let (agent, env) = (self.agent.as_mut(), self.env.as_mut());
            collect(agent, env, &mut self.obs, &mut self.rollout, Self::STEPS)?;
            self.agent.update(&self.rollout)?;
        }
        Ok((updates * Self::ENVS * Self::STEPS) as f64 / t.elapsed().as_secs_f64())
    }

    /// Median time of `updates` isolated updates on the last rollout.
    fn update_time(&mut self, updates: usize) -> Result<Duration> {
        let mut times = Vec::with_capacity(updates);
        for _ in 0..updates {
            let t = Instant::now();
            self.agent.update(&self.rollout)?;
            times.push(t.elapsed());
        }
        Ok(median(times))
    }
}

/// The benchmark's learner configuration for `algo`.
pub fn bench_config(algo: Algo) -> Config {
    match algo {
        // Natural steps from the first update, so every timed update is an ACKTR update.
        Algo::Acktr => Config {
            cold_iters: 0,
            ..Config::default()
        },
        Algo::A2c => Config::a2c(),
    }
}

/// The trainer whose whole processes the tables time: the lean `acktr` next to this executable
/// when it exists (what users run for native training: `acktr-torch` would add libtorch's
/// start-up to every run), else this executable.
fn trainer_exe() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| crate::error::HostError::io("the acktr executable", e))?;
    Ok(crate::cli::sibling_exe(&exe, crate::cli::LEAN_BIN).unwrap_or(exe))
}

/// Whole-process wall time of the Pendulum-v1 preset (and of a peer's command beside it),
/// interleaved run by run.
fn pendulum_table(args: &BenchArgs) -> Result<String> {
    use crate::error::HostError;
    use std::process::{Command, Stdio};
    let exe = trainer_exe()?;
    let dir = std::env::temp_dir().join(format!("acktr-bench-{}", std::process::id()));
    let time = |cmd: &mut Command| -> Result<f64> {
        let t = Instant::now();
        let status = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| HostError::io(format!("{cmd:?}"), e))?;
        let secs = t.elapsed().as_secs_f64();
        if !status.success() {
            return Err(HostError::InvalidSetting(format!(
                "bench: {cmd:?} failed ({status})"
            )));
        }
        Ok(secs)
    };
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for seed in 0..args.pendulum_runs {
        let out = dir.join(format!("pendulum-{seed}"));
        ours.push(time(
            Command::new(&exe)
                .args(["train", "--env", "Pendulum-v1", "--seed", &seed.to_string()])
                .arg("--out")
                .arg(&out),
        )?);
        if let Some(cmd) = &args.beside {
            peer.push(time(Command::new("sh").args(["-c", cmd]))?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let steps = 307_200.0;
    let mut out = String::from(
        "\n## Pendulum-v1, 307,200 env steps, whole process (one thread)\n\n| trainer | runs (s) | median | env-steps/s |\n|---|---|---|---|\n",
    );
    out += &format!(
        "| acktr train --env Pendulum-v1 (native ACKTR preset) | {} | {:.2} s | {:.0} |\n",
        list(&ours),
        median_f64(&ours),
        steps / median_f64(&ours)
    );
    if let Some(cmd) = &args.beside {
        out += &format!(
            "| `{cmd}` | {} | {:.2} s | {:.0} |\n",
            list(&peer),
            median_f64(&peer),
            steps / median_f64(&peer)
        );
        out += &format!(
            "\nOur median wall time / theirs: {:.2}\n",
            median_f64(&ours) / median_f64(&peer)
        );
    }
    Ok(out)
}

/// One `acktr train` run of the CartPole table.
struct SolveRun {
    /// Env steps and seconds to the target; `None`: not reached within the cap.
    reached: Option<(u64, f64)>,
    /// The run's own env-steps/s over the whole budget.
    sps: f64,
}

/// `"16x20"` → `(16, 20)`.
fn parse_batch(b: &str) -> Result<(usize, usize)> {
    let bad = || {
        crate::error::HostError::InvalidSetting(format!(
            "--cartpole-batches: {b:?} is not num_envs×num_steps (e.g. 16x20)"
        ))
    };
    let (e, s) = b.trim().split_once(['x', 'X', '×']).ok_or_else(bad)?;
    let e: usize = e.trim().parse().map_err(|_| bad())?;
    let s: usize = s.trim().parse().map_err(|_| bad())?;
    if e == 0 || s == 0 {
        return Err(bad());
    }
    Ok((e, s))
}

/// Median, the middle two averaged for an even count (+∞ entries, e.g. unreached targets,
/// sort last).
fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Smallest entry.
fn lo(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Largest entry.
fn hi(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Thousands separators: 123456 → "123,456".
fn grouped(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Env steps and wall time to a last-20 training mean of `--cartpole-target` on CartPole-v1,
/// ACKTR against A2C, each a whole `acktr train` process (native backend), seeds interleaved.
fn cartpole_table(args: &BenchArgs) -> Result<String> {
    use crate::error::HostError;
    use crate::train::DoneLine;
    use std::process::Command;
    let batches = args
        .cartpole_batches
        .iter()
        .map(|b| parse_batch(b))
        .collect::<Result<Vec<_>>>()?;
    if !args.cartpole_target.is_finite() {
        return Err(HostError::InvalidSetting(
            "--cartpole-target must be finite".into(),
        ));
    }
    let exe = trainer_exe()?;
    let dir = std::env::temp_dir().join(format!("acktr-bench-cartpole-{}", std::process::id()));
    let target = args.cartpole_target.to_string();
    let cap = args.cartpole_total_steps.to_string();
    let run_one = |algo: Algo, envs: usize, steps: usize, seed: usize| -> Result<SolveRun> {
        let name = algo.cli_name();
        let out = dir.join(format!("{envs}x{steps}-{name}-s{seed}"));
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = Command::new(&exe);
        cmd.args([
            "train",
            "--env",
            "CartPole-v1",
            "--backend",
            "native",
            "--algo",
            name,
        ])
        .args([
            "--num-envs",
            &envs.to_string(),
            "--num-steps",
            &steps.to_string(),
        ])
        // The shared-trunk preset whose throughput this table has always measured.
        .args(["--preset", "fast"])
        .args(["--seed", &seed.to_string(), "--total-steps", &cap])
        .args(["--stop-at-train-mean", &target, "--train-mean-window", "20"])
        // Every run to the same budget: its env-steps/s then covers the same phases of
        // training (an early stop would time ACKTR mostly in the short-episode phase).
        .arg("--train-mean-no-stop")
        // Only the training is timed: no checkpoints on the way, no final evaluation.
        .args(["--checkpoint-every", "0", "--eval-episodes", "0"])
        .arg("--out")
        .arg(&out);
        let o = cmd
            .output()
            .map_err(|e| HostError::io(format!("{cmd:?}"), e));
        let _ = std::fs::remove_dir_all(&out);
        let o = o?;
        let err = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            return Err(HostError::InvalidSetting(format!(
                "bench: {cmd:?} failed ({}): {}",
                o.status,
                err.lines().last().unwrap_or("")
            )));
        }
        let done = DoneLine::find(&err).ok_or_else(|| {
            HostError::InvalidSetting(format!("bench: no `acktr: done:` line from {cmd:?}"))
        })?;
        let run = SolveRun {
            reached: done.reached.map(|r| (r.env_steps, r.secs)),
            sps: done.sps,
        };
        eprintln!(
            "bench: CartPole-v1 {envs}×{steps} {name} seed {seed}: {}, {:.0} env-steps/s",
            run.reached.map_or(
                format!("not reached in {} env steps", done.env_steps),
                |(n, t)| format!("{n} env steps, {t:.2} s")
            ),
            run.sps
        );
        Ok(run)
    };
    let mut table = format!(
        "\n## CartPole-v1: env steps and wall time to a last-20 training mean of {t}\n\n\
         Native backend, whole `acktr train --preset fast` processes, seeds 0–{last}, \
         each run {cap} env steps (ACKTR and A2C of a seed back to back); a run that never \
         reaches {t} counts as +∞ in the medians.\n\n\
         | batch | algo | reached | env steps to {t}: median | min | max | wall time to {t}: median | min | max | env-steps/s over the run (median) | env-steps/s until {t} (median) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        t = args.cartpole_target,
        last = args.cartpole_seeds - 1,
        cap = grouped(args.cartpole_total_steps as f64),
    );
    let mut ratios = String::from(
        "\n| batch | ACKTR/A2C throughput, same budget (median of the seeds' ratios; goal ≥ 0.9) | min | max | ACKTR/A2C env steps to target (medians) | ACKTR/A2C wall time to target (medians) |\n|---|---|---|---|---|---|\n",
    );
    let result = (|| -> Result<()> {
        for &(envs, steps) in &batches {
            let algos = [Algo::Acktr, Algo::A2c];
            let mut runs: [Vec<SolveRun>; 2] = [Vec::new(), Vec::new()];
            for seed in 0..args.cartpole_seeds {
                // Interleaved seed by seed, the first algorithm alternating, so that drifts in
                // the machine's speed hit both alike.
                for k in 0..2 {
                    let i = (k + seed) % 2;
                    runs[i].push(run_one(algos[i], envs, steps, seed)?);
                }
            }
            let mut med = [(0.0, 0.0, 0.0); 2];
            for (i, algo) in algos.iter().enumerate() {
                let r = &runs[i];
                let n_steps: Vec<f64> = r
                    .iter()
                    .map(|x| x.reached.map_or(f64::INFINITY, |(n, _)| n as f64))
                    .collect();
                let secs: Vec<f64> = r
                    .iter()
                    .map(|x| x.reached.map_or(f64::INFINITY, |(_, t)| t))
                    .collect();
                let sps: Vec<f64> = r.iter().map(|x| x.sps).collect();
                let sps_to: Vec<f64> = r
                    .iter()
                    .filter_map(|x| x.reached.map(|(n, t)| n as f64 / t))
                    .collect();
                let reached = r.iter().filter(|x| x.reached.is_some()).count();
                let fmt = |x: f64, f: &dyn Fn(f64) -> String| {
                    if x.is_finite() {
                        f(x)
                    } else {
                        "not reached".to_string()
                    }
                };
                let st = |x: f64| grouped(x);
                let tm = |x: f64| format!("{x:.2} s");
                med[i] = (median_f64(&sps), median_f64(&n_steps), median_f64(&secs));
                table += &format!(
                    "| {envs}×{steps} | {} | {reached}/{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    algo.label(),
                    r.len(),
                    fmt(med[i].1, &st),
                    fmt(lo(&n_steps), &st),
                    fmt(hi(&n_steps), &st),
                    fmt(med[i].2, &tm),
                    fmt(lo(&secs), &tm),
                    fmt(hi(&secs), &tm),
                    grouped(med[i].0),
                    if sps_to.is_empty() {
                        "—".to_string()
                    } else {
                        grouped(median_f64(&sps_to))
                    },
                );
            }
            let ratio = |a: f64, b: f64| {
                if a.is_finite() && b.is_finite() {
                    format!("{:.2}", a / b)
                } else {
                    "—".to_string()
                }
            };
            // Per seed, the two runs were back to back: their ratio cancels slow drifts.
            let paired: Vec<f64> = runs[0]
                .iter()
                .zip(&runs[1])
                .map(|(a, b)| a.sps / b.sps)
                .collect();
            ratios += &format!(
                "| {envs}×{steps} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                median_f64(&paired),
                lo(&paired),
                hi(&paired),
                ratio(med[0].1, med[1].1),
                ratio(med[0].2, med[1].2),
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(table + &ratios)
}

/// Run the benchmark; returns the markdown report.
pub fn bench(args: &BenchArgs) -> Result<String> {
    if args.mpi_worker {
        return mpi_worker(args);
    }
    if !args.mpi_ranks.is_empty() {
        return mpi_table(args);
    }
    let mut out = String::new();
    out += "## MLP 64-64 (tanh, shared trunk), CartPole-v1, 16 envs × 20 steps\n\n";
    out += "| backend | algo | env-steps/s (whole loop) | update (median) |\n|---|---|---|---|\n";
    let mut ratios = Vec::new();
    let hooks = crate::torch_hooks::get();
    let backends: &[&str] = if hooks.is_some() {
        &["native", "tch"]
    } else {
        &["native"]
    };
    // (algorithm, stat_stride, K-FAC on its own thread): the thread rows are tch's (the core
    // is single-threaded) and need a second core.
    let two_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let configs = [
        (Algo::Acktr, 1, false),
        (Algo::Acktr, 4, false),
        (Algo::Acktr, 8, false),
        // The CartPole preset's stride.
        (Algo::Acktr, 32, false),
        (Algo::Acktr, 8, true),
        (Algo::Acktr, 32, true),
        (Algo::A2c, 1, false),
    ];
    for &backend in backends {
        let configs: Vec<_> = configs
            .iter()
            .copied()
            .filter(|&(_, _, thread)| !thread || (backend == "tch" && two_cores))
            .collect();
        let mut loops = configs
            .iter()
            .map(|&(algo, stride, thread)| Loop::new(make(backend, algo, stride, thread)?))
            .collect::<Result<Vec<_>>>()?;
        // sps[k][round]; the A2C loop (last) runs in every round beside the others.
        let mut sps = vec![Vec::with_capacity(LOOP_ROUNDS); loops.len()];
        for _ in 0..LOOP_ROUNDS {
            for (l, s) in loops.iter_mut().zip(sps.iter_mut()) {
                s.push(l.env_steps_per_sec(args.updates)?);
            }
        }
        let mut updates = Vec::with_capacity(loops.len());
        for l in loops.iter_mut() {
            updates.push(l.update_time(args.updates)?);
        }
        let a2c = configs.len() - 1;
        for (k, &(algo, stride, thread)) in configs.iter().enumerate() {
            let name = match algo {
                Algo::Acktr => format!(
                    "{}, stat_stride {stride}{}",
                    algo.label(),
                    if thread { ", K-FAC thread" } else { "" }
                ),
                Algo::A2c => algo.label().into(),
            };
            out += &format!(
                "| {backend} | {name} | {:.0} | {:.3} ms |\n",
                median_f64(&sps[k]),
                ms(updates[k])
            );
            if k == a2c {
                continue;
            }
            let paired: Vec<f64> = sps[k].iter().zip(&sps[a2c]).map(|(a, b)| a / b).collect();
            ratios.push((
                backend,
                stride,
                thread,
                median_f64(&paired),
                lo(&paired),
                hi(&paired),
                updates[k].as_secs_f64() / updates[a2c].as_secs_f64(),
            ));
        }
    }
    out += &format!(
        "\n| backend | stat_stride | K-FAC thread | ACKTR/A2C throughput (median of {LOOP_ROUNDS} interleaved rounds) | min | max | ACKTR/A2C update time |\n|---|---|---|---|---|---|---|\n"
    );
    for (b, stride, thread, t, t_lo, t_hi, u) in ratios {
        let thread = if thread { "yes" } else { "no" };
        out +=
            &format!("| {b} | {stride} | {thread} | {t:.2} | {t_lo:.2} | {t_hi:.2} | {u:.2} |\n");
    }
    if args.pendulum_runs > 0 {
        out += &pendulum_table(args)?;
    }
    if args.cartpole_seeds > 0 {
        out += &cartpole_table(args)?;
    }
    if let Some(h) = hooks {
        out += &(h.bench_tables)(args)?;
    }
    Ok(out)
}

fn make(backend: &str, algo: Algo, stat_stride: u32, kfac_thread: bool) -> Result<Box<dyn Agent>> {
    let targs = TrainArgs::parse_for_bench("CartPole-v1", algo, backend);
    let mut s = targs.resolve()?;
    s.kfac_thread = if kfac_thread {
        crate::settings::KfacThreadArg::On
    } else {
        crate::settings::KfacThreadArg::Off
    };
    s.config = Config {
        stat_stride,
        ..bench_config(algo)
    };
    let env = envs::make("CartPole-v1", 1)?;
    crate::train::make_agent(&mut s, env.as_ref(), crate::settings::DeviceArg::Cpu)
}

impl TrainArgs {
    /// `acktr train`'s defaults (the preset of `env`) for a benchmark's agent.
    fn parse_for_bench(env: &str, algo: Algo, backend: &str) -> TrainArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            t: TrainArgs,
        }
        let b = if backend == "native" { "native" } else { "tch" };
        P::parse_from([
            "bench",
            "--env",
            env,
            "--backend",
            b,
            "--algo",
            algo.cli_name(),
        ])
        .t
    }
}

/// The data-parallel table's cases: CartPole-v1 on the native backend (the benchmark's
/// separate 64-64 net, 16 envs × 20 steps per rank) and, in a build with libtorch, MinAtar
/// Breakout on the tch backend (its preset: the conv net and batch of `acktr train`).
fn mpi_cases() -> Vec<(&'static str, &'static str, Algo)> {
    let mut cases = vec![
        ("CartPole-v1", "native", Algo::Acktr),
        ("CartPole-v1", "native", Algo::A2c),
    ];
    if crate::torch_hooks::get().is_some() {
        cases.push(("MinAtar/Breakout-v1", "tch", Algo::Acktr));
        cases.push(("MinAtar/Breakout-v1", "tch", Algo::A2c));
    }
    cases
}

/// One case of the data-parallel table on this rank: its agent, environments and batch.
struct MpiCase {
    agent: Box<dyn Agent>,
    env: Box<dyn crate::envs::VecEnv>,
    envs: usize,
    steps: usize,
}

fn mpi_case(env_id: &str, backend: &str, algo: Algo) -> Result<MpiCase> {
    if env_id == "CartPole-v1" {
        return Ok(MpiCase {
            agent: make(backend, algo, 1, false)?,
            env: envs::make(env_id, Loop::ENVS)?,
            envs: Loop::ENVS,
            steps: Loop::STEPS,
        });
    }
    let mut s = TrainArgs::parse_for_bench(env_id, algo, backend).resolve()?;
    // Natural steps from the first update, so every timed update is an ACKTR update.
    s.config.cold_iters = 0;
    let env = envs::make(env_id, s.num_envs)?;
    Ok(MpiCase {
        agent: crate::train::make_agent(&mut s, env.as_ref(), crate::settings::DeviceArg::Cpu)?,
        env,
        envs: s.num_envs,
        steps: s.num_steps,
    })
}

/// One rank of the data-parallel table (under `mpirun`): for each of [`mpi_cases`],
/// `args.updates` collect + update iterations after 3 of warm-up; rank 0 prints one JSON line
/// per case.
fn mpi_worker(args: &BenchArgs) -> Result<String> {
    use acktr_core::Collective;
    let mut world = crate::dist::World::init()?;
    let (rank, ranks) = (world.rank(), world.ranks());
    let mut out = String::new();
    for (env_id, backend, algo) in mpi_cases() {
        let MpiCase {
            mut agent,
            mut env,
            envs,
            steps,
        } = mpi_case(env_id, backend, algo)?;
        let (_, act_len) = head_for(env.action_space());
        let mut rollout = HostRollout::new(envs, env.obs_len(), act_len);
        let mut obs = env.reset(u64::from(rank) * envs as u64)?;
        agent.join_data_parallel(&mut world, (rank > 0).then_some(u64::from(rank)))?;
        let mut iteration = |world: &mut crate::dist::World| -> Result<Duration> {
            collect(agent.as_mut(), env.as_mut(), &mut obs, &mut rollout, steps)?;
            let t = Instant::now();
            agent.update_data_parallel(&rollout, world)?;
            Ok(t.elapsed())
        };
        for _ in 0..3 {
            iteration(&mut world)?;
        }
        world.take_busy();
        let t = Instant::now();
        let mut update = Duration::ZERO;
        for _ in 0..args.updates {
            update += iteration(&mut world)?;
        }
        let wall = t.elapsed().as_secs_f64();
        let (busy, bytes) = world.take_busy();
        let n = args.updates.max(1) as f64;
        // The all-reduce alone, the ranks already in step: the same bytes, back to back (the
        // loop's figure also holds the wait for the slowest rank).
        let mut buf = vec![0.0f32; (bytes as f64 / n / 4.0) as usize];
        let reps = 100;
        let t = Instant::now();
        for _ in 0..reps {
            world.all_reduce_sum(&mut |f: &mut dyn FnMut(&mut [f32])| f(&mut buf))?;
        }
        let alone = t.elapsed().as_secs_f64() * 1e3 / f64::from(reps);
        if rank == 0 {
            out += &format!(
                "{}\n",
                serde_json::json!({
                    "env": env_id,
                    "backend": backend,
                    "batch": format!("{envs} × {steps}"),
                    "algo": algo.label(),
                    "ranks": ranks,
                    "env_steps_per_s": (args.updates * envs * steps) as f64 * f64::from(ranks) / wall,
                    "update_ms": update.as_secs_f64() * 1e3 / n,
                    "collective_ms": busy.as_secs_f64() * 1e3 / n,
                    "bytes_per_update": bytes as f64 / n,
                    "allreduce_alone_ms": alone,
                })
            );
        }
    }
    Ok(out)
}

/// Rounds of the data-parallel table: every rank count once per round, the rounds interleaved
/// so that a busy spell of a shared machine falls on all of them alike.
const MPI_ROUNDS: usize = 3;

/// `mpirun -np N <this executable> bench --mpi-worker` for each N of `--mpi-ranks`, in
/// [`MPI_ROUNDS`] interleaved rounds, as one table of medians. The speed-up is the median over
/// rounds of a row's env steps per second against the first rank count's in the same round.
fn mpi_table(args: &BenchArgs) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| crate::HostError::io("current executable", e))?;
    // (env, backend, batch, algo, ranks) → one JSON object per round, in first-seen order.
    let mut rows: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for _ in 0..MPI_ROUNDS {
        for &np in &args.mpi_ranks {
            let o = std::process::Command::new("mpirun")
                .args(args.mpirun_args.split_whitespace())
                .args(["-np", &np.to_string()])
                .arg(&exe)
                .args([
                    "bench",
                    "--mpi-worker",
                    "--updates",
                    &args.updates.to_string(),
                ])
                .output()
                .map_err(|e| crate::HostError::io("mpirun", e))?;
            if !o.status.success() {
                return Err(crate::HostError::Distributed(format!(
                    "mpirun -np {np} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                )));
            }
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let key = ["env", "backend", "batch", "algo", "ranks"]
                    .map(|k| v[k].to_string())
                    .join("|");
                match rows.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, runs)) => runs.push(v),
                    None => rows.push((key, vec![v])),
                }
            }
        }
    }
    let mut out = format!(
        "## Data-parallel ACKTR and A2C (MPI), {} updates per row, medians of {MPI_ROUNDS} interleaved rounds\n\n\
         | env | backend | envs × steps per rank | algo | ranks | env-steps/s (all ranks) | speed-up | update (mean) | in collectives (mean, waits included) | share | one all-reduce of those bytes alone | share | bytes all-reduced per update (per rank) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        args.updates
    );
    let first_ranks = args.mpi_ranks.first().copied().unwrap_or(1);
    for (_, runs) in &rows {
        let v = &runs[0];
        let med = |k: &str| {
            median_f64(
                &runs
                    .iter()
                    .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>(),
            )
        };
        let base = rows.iter().find(|(_, b)| {
            ["env", "backend", "batch", "algo"]
                .iter()
                .all(|k| b[0][k] == v[*k])
                && b[0]["ranks"].as_f64() == Some(f64::from(first_ranks))
        });
        let speedup = base.map_or(f64::NAN, |(_, b)| {
            median_f64(
                &runs
                    .iter()
                    .zip(b)
                    .map(|(r, b)| {
                        r["env_steps_per_s"].as_f64().unwrap_or(f64::NAN)
                            / b["env_steps_per_s"].as_f64().unwrap_or(f64::NAN)
                    })
                    .collect::<Vec<_>>(),
            )
        });
        let (update, busy, alone) = (
            med("update_ms"),
            med("collective_ms"),
            med("allreduce_alone_ms"),
        );
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {:.2}× | {:.3} ms | {:.3} ms | {:.0}% | {:.3} ms | {:.0}% | {} |\n",
            v["env"].as_str().unwrap_or("?"),
            v["backend"].as_str().unwrap_or("?"),
            v["batch"].as_str().unwrap_or("?"),
            v["algo"].as_str().unwrap_or("?"),
            med("ranks"),
            grouped(med("env_steps_per_s")),
            speedup,
            update,
            busy,
            100.0 * busy / update,
            alone,
            100.0 * alone / update,
            grouped(med("bytes_per_update")),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_medians() {
        assert_eq!(parse_batch("16x20").unwrap(), (16, 20));
        assert_eq!(parse_batch(" 64×20").unwrap(), (64, 20));
        for bad in ["16", "0x20", "16x", "ax20", ""] {
            assert!(parse_batch(bad).is_err(), "{bad}");
        }
        assert_eq!(median_f64(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f64(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(
            median_f64(&[1.0, f64::INFINITY, f64::INFINITY]),
            f64::INFINITY
        );
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        assert_eq!(grouped(999.0), "999");
    }

    #[test]
    fn tables_round_trip_through_the_json_file() {
        let printed = "## MLP\n\n| backend | algo | env-steps/s |\n|---|---|---|\n\
                       | native | ACKTR | 1,000 |\n| native | A2C | 2,000 |\n\n\
                       | ratio | value |\n|---|---|\n| throughput | 0.50 |\n\
                       \n## Pendulum\n\nprose\n| trainer | median |\n|---|---|\n| ours | 0.47 s |\n";
        let t = tables_of(printed, "2026-12-07", "CPU", "acktr bench");
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].title.as_str(), t[1].title.as_str()), ("MLP", "MLP"));
        assert_eq!(t[0].header, ["backend", "algo", "env-steps/s"]);
        assert_eq!(t[0].rows[1], ["native", "A2C", "2,000"]);
        assert_eq!((t[2].title.as_str(), t[2].rows.len()), ("Pendulum", 1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf.json");
        save(&path, printed, "acktr bench --json perf.json").unwrap();
        let remeasured = printed.replace("2,000", "2,500");
        save(&path, &remeasured, "acktr bench --json perf.json").unwrap();
        let saved = read_tables(&path).unwrap();
        assert_eq!(saved.len(), 3, "a re-measured table replaces its old copy");
        assert_eq!(saved[0].rows[1], ["native", "A2C", "2,500"]);
        let other =
            "## MLP\n\n| backend | algo | update |\n|---|---|---|\n| native | ACKTR | 1 ms |\n";
        save(&path, other, "acktr bench").unwrap();
        assert_eq!(
            read_tables(&path).unwrap().len(),
            4,
            "another header is another table"
        );
        assert!(save(&path, "no table here\n", "x").is_err());
        let page = report(&path).unwrap();
        assert!(page.contains("| native | A2C | 2,500 |\n"), "{page}");
        assert!(page.contains("`acktr bench --json perf.json`"), "{page}");
    }

    #[test]
    fn criterion_estimates_become_one_table_per_set_of_benchmarks() {
        let dir = tempfile::tempdir().unwrap();
        let put = |group: &str, function: &str, ns: f64| {
            let d = dir
                .path()
                .join(group)
                .join(function.replace(':', "_"))
                .join("new");
            std::fs::create_dir_all(&d).unwrap();
            let id = serde_json::json!({"group_id": group, "function_id": function});
            let ci = serde_json::json!({"lower_bound": ns * 0.9, "upper_bound": ns * 1.1});
            let est =
                serde_json::json!({"median": {"point_estimate": ns, "confidence_interval": ci}});
            std::fs::write(d.join("benchmark.json"), id.to_string()).unwrap();
            std::fs::write(d.join("estimates.json"), est.to_string()).unwrap();
        };
        put("4-32-32", "precondition", 3_210.0);
        put("4-32-32", "update", 32_000.0);
        put("4-64-64", "precondition", 15_500.0);
        put("4-64-64", "update", 129_000.0);
        put("33x33 factor", "LDLt::factorize", 850.0);
        let md = criterion_report(dir.path()).unwrap();
        let t = tables_of(&md, "d", "c", "cargo bench");
        assert_eq!(t.len(), 2, "{md}");
        let pieces = t.iter().find(|t| t.header.len() == 3).unwrap();
        assert!(pieces.header[1].starts_with("4-32-32") && pieces.header[2].starts_with("4-64-64"));
        assert_eq!(
            pieces.rows[0],
            [
                "precondition",
                "3.21 µs [2.89 µs – 3.53 µs]",
                "15.5 µs [13.9 µs – 17.1 µs]"
            ]
        );
        assert_eq!(pieces.rows[1][2], "129 µs [116 µs – 142 µs]");
        let ldl = t.iter().find(|t| t.header.len() == 2).unwrap();
        assert_eq!(ldl.rows[0], ["LDLt::factorize", "850 ns [765 ns – 935 ns]"]);
        assert!(criterion_report(&dir.path().join("missing")).is_err());
    }
}
