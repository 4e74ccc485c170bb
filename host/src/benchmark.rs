//! `acktr benchmark`: a suite of training runs (every environment × algorithm × seed) as one
//! resumable command that appends to one tidy CSV, and `acktr benchmark report`, which writes
//! the results page (tables and one figure per environment) from such CSVs.
//!
//! ```text
//! acktr benchmark classic --seeds 0-9                  # → bench/classic.csv, bench/runs/classic/
//! acktr benchmark mujoco --seeds 0-2 --algos acktr,sb3-ppo --jobs 2
//! acktr benchmark report bench/*.csv --out docs/results.md --img docs/img
//! ```
//!
//! **Runs.** Each (env, algo, seed) is one child process, `--jobs` at a time: ours are
//! `acktr train --env E --algo A --seed S --total-steps N --out RUN --checkpoint-every 0
//! --eval-episodes 10` (this executable), the peers (`sb3-a2c`, `sb3-ppo`, `sb3-trpo`) are
//! `python/peers.py` with the same arguments run by the repository's `.venv/bin/python`. Run
//! folders go to `<runs>/<env>-<algo>-s<seed>/` (the env id's `/` as `-`), each child's stdout
//! and stderr to `<runs>/<env>-<algo>-s<seed>.log`; `<runs>` defaults to `runs/<suite>/` beside
//! the CSV (`bench/runs/classic/` for `bench/classic.csv`). After a run exits successfully its
//! episodes are read from its `monitor.csv` and its final deterministic evaluation from the last
//! line of its log (`acktr: done: … deterministic eval (10 episodes) R`, which `peers.py`
//! prints in the same format), and all its rows are appended to the CSV in one write under an
//! exclusive lock (`flock`), so that two jobs never interleave lines.
//!
//! **Resuming.** The CSV is the record of what is done: a run with its `eval` row in the CSV is
//! skipped. A benchmark stopped part-way (Ctrl-C stops the children too, as they share its
//! process group) is continued by running the same command again: an unfinished run's folder is
//! deleted and the run starts over, and rows of a run without its `eval` row (a write cut off
//! by a crash) are removed from the CSV first.
//!
//! **The CSV** ([`CSV_HEADER`]), one row per finished training episode (`kind` = `train`) and
//! one per run for its final evaluation (`kind` = `eval`, always the run's last row):
//!
//! | column | `train` row | `eval` row |
//! |---|---|---|
//! | `env`, `algo`, `seed` | the run | the run |
//! | `kind` | `train` | `eval` |
//! | `episode` | 1-based index of the episode, in the order episodes ended | empty |
//! | `env_steps` | env steps when the episode ended: the cumulative sum of the episode lengths so far (see below) | env steps the run trained for |
//! | `wall_s` | seconds from the run's start to the episode's end (the monitor's `t`) | the run's whole wall time: the child process from start to exit (start-up and evaluation included) |
//! | `episode_return` | the episode's raw return | mean return of the 10 deterministic evaluation episodes |
//! | `episode_length` | the episode's length in env steps | empty |
//! | `cpu` | empty | the CPU model (`lscpu`'s `Model name`) |
//! | `date` | empty | when the run finished, UTC, ISO 8601 |
//!
//! `env_steps` of a training episode is the sum of the lengths of the episodes that ended up
//! to it (what stable-baselines3's `results_plotter` plots): exact with one environment, an
//! approximation with N parallel ones, short by the steps the other N − 1 environments have
//! done into their unfinished episodes (at most N − 1 episode lengths). The same rule holds for
//! ours and the peers, read from the same `monitor.csv` format.
//!
//! **The report** ([`report`]): per environment, a table with one row per algorithm — env
//! steps, episodes and wall seconds until the mean return of the last W training episodes
//! first reaches the environment's threshold ([`EnvSpec`]; the W episodes must all have
//! ended), the last-100 training mean and the deterministic evaluation at the budget, and the
//! whole run's wall time — each as the median over seeds with the minimum and maximum; and a
//! PNG of every algorithm's curve (the trailing W-episode mean against env steps; median over
//! seeds in a min–max band).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::HostError;
use crate::plot::{self, Band, PlotOptions};
use crate::train::DoneLine;

/// The CSV's header line (see the [module docs](self) for the columns).
pub const CSV_HEADER: &str =
    "env,algo,seed,kind,episode,env_steps,wall_s,episode_return,episode_length,cpu,date";

/// Deterministic evaluation episodes at the end of every run.
pub const EVAL_EPISODES: u32 = 10;

/// The episodes of the training mean reported as the return at the budget.
pub const FINAL_WINDOW: usize = 100;

/// What `acktr benchmark` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    /// A bad command line (unknown suite, env or algorithm, bad seed list, …).
    #[error("{0}")]
    Usage(String),
    /// A file or folder could not be read, written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A benchmark CSV that is not in [`CSV_HEADER`]'s format.
    #[error("{path}: line {line}: {reason}")]
    BadCsv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Some runs failed (the others' rows are in the CSV).
    #[error("{failed} of {total} runs failed (their logs say why): {list}")]
    RunsFailed {
        /// Failed runs.
        failed: usize,
        /// Runs attempted.
        total: usize,
        /// `run: reason (log)`, `; `-separated.
        list: String,
    },
    /// Plotting failed (e.g. no font).
    #[error(transparent)]
    Host(#[from] HostError),
}

type Result<T> = std::result::Result<T, BenchmarkError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchmarkError + '_ {
    move |source| BenchmarkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ------------------------------------------------------------------------------ suites

/// One environment of a suite: its budget and its threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvSpec {
    /// Gymnasium id.
    pub id: &'static str,
    /// Env steps per run.
    pub budget: u64,
    /// The return the mean of the last [`EnvSpec::window`] training episodes must reach;
    /// `None`: no threshold (the report shows returns only).
    pub threshold: Option<f64>,
    /// Training episodes in the threshold's moving mean.
    pub window: usize,
    /// Where the threshold comes from.
    pub source: &'static str,
}

/// A named set of environments with a default number of seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Suite {
    /// The name on the command line.
    pub name: &'static str,
    /// Seeds `0..seeds` unless `--seeds` says otherwise.
    pub seeds: u64,
    /// The environments, in report order.
    pub envs: &'static [EnvSpec],
}

/// The suites (issue 22). Budgets of the classic environments are our presets' defaults.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "classic",
        seeds: 10,
        envs: &[
            EnvSpec {
                id: "CartPole-v1",
                budget: 200_000,
                threshold: Some(475.0),
                window: 10,
                source: "Gymnasium's reward_threshold, over the last 10 episodes rather than 100",
            },
            EnvSpec {
                id: "Acrobot-v1",
                budget: 200_000,
                threshold: Some(-100.0),
                window: 100,
                source: "Gymnasium's reward_threshold",
            },
            EnvSpec {
                id: "Pendulum-v1",
                budget: 307_200,
                threshold: Some(-200.0),
                window: 100,
                source: "the usual solved level; Gymnasium sets none",
            },
            EnvSpec {
                id: "MountainCarContinuous-v0",
                budget: 307_200,
                threshold: Some(90.0),
                window: 100,
                source: "Gymnasium's reward_threshold",
            },
        ],
    },
    Suite {
        name: "mujoco",
        seeds: 3,
        envs: &[
            EnvSpec {
                id: "Hopper-v5",
                budget: 1_000_000,
                threshold: Some(3000.0),
                window: 100,
                source:
                    "a usual level in ACKTR/TRPO comparisons; Gymnasium's reward_threshold is 3800",
            },
            EnvSpec {
                id: "HalfCheetah-v5",
                budget: 1_000_000,
                threshold: Some(3000.0),
                window: 100,
                source:
                    "a usual level in ACKTR/TRPO comparisons; Gymnasium's reward_threshold is 4800",
            },
            EnvSpec {
                id: "Walker2d-v5",
                budget: 1_000_000,
                threshold: Some(3000.0),
                window: 100,
                source: "a usual level in ACKTR/TRPO comparisons; Gymnasium sets none",
            },
        ],
    },
    Suite {
        name: "minatar",
        seeds: 3,
        envs: &[
            EnvSpec {
                id: "MinAtar/Breakout-v1",
                budget: 1_000_000,
                threshold: None,
                window: 100,
                source: "none published",
            },
            EnvSpec {
                id: "MinAtar/Asterix-v1",
                budget: 1_000_000,
                threshold: None,
                window: 100,
                source: "none published",
            },
            EnvSpec {
                id: "MinAtar/SpaceInvaders-v1",
                budget: 1_000_000,
                threshold: None,
                window: 100,
                source: "none published",
            },
        ],
    },
];

/// The suite named `name`.
pub fn suite(name: &str) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.name == name)
}

/// The first suite entry for the environment `id`.
pub fn env_spec(id: &str) -> Option<&'static EnvSpec> {
    SUITES.iter().flat_map(|s| s.envs).find(|e| e.id == id)
}

/// An algorithm of the benchmark: ours (through `acktr train`) or a peer (through
/// `python/peers.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    /// Our ACKTR.
    Acktr,
    /// Our ACKTR with `--preset fast` (the throughput-tuned settings).
    AcktrFast,
    /// Our A2C.
    A2c,
    /// stable-baselines3 A2C.
    Sb3A2c,
    /// stable-baselines3 PPO.
    Sb3Ppo,
    /// sb3-contrib TRPO.
    Sb3Trpo,
    /// The paper's first ablation: our ACKTR with the critic's steps in the Euclidean norm
    /// (`--vf-euclidean`) instead of the Gauss–Newton norm.
    AcktrEuclideanCritic,
    /// The paper's second ablation: our ACKTR and A2C at batch 160 (8 envs × 20 steps) and
    /// 640 (32 × 20), the rest of each preset as it is.
    AcktrB160,
    /// ACKTR at batch 640.
    AcktrB640,
    /// A2C at batch 160.
    A2cB160,
    /// A2C at batch 640.
    A2cB640,
    /// ACKTR on the microcontroller's MinAtar net (`--arch minatar-small`; MinAtar/Breakout-v1).
    AcktrSmall,
}

impl Algo {
    /// Every algorithm, in report order.
    pub const ALL: [Algo; 12] = [
        Algo::Acktr,
        Algo::AcktrFast,
        Algo::A2c,
        Algo::Sb3A2c,
        Algo::Sb3Ppo,
        Algo::Sb3Trpo,
        Algo::AcktrEuclideanCritic,
        Algo::AcktrB160,
        Algo::AcktrB640,
        Algo::A2cB160,
        Algo::A2cB640,
        Algo::AcktrSmall,
    ];

    /// The name on the command line and in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Acktr => "acktr",
            Algo::AcktrFast => "acktr-fast",
            Algo::A2c => "a2c",
            Algo::Sb3A2c => "sb3-a2c",
            Algo::Sb3Ppo => "sb3-ppo",
            Algo::Sb3Trpo => "sb3-trpo",
            Algo::AcktrEuclideanCritic => "acktr-euclidean-critic",
            Algo::AcktrB160 => "acktr-b160",
            Algo::AcktrB640 => "acktr-b640",
            Algo::A2cB160 => "a2c-b160",
            Algo::A2cB640 => "a2c-b640",
            Algo::AcktrSmall => "acktr-small",
        }
    }

    /// The algorithm named `name`.
    pub fn parse(name: &str) -> Option<Algo> {
        Algo::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether `python/peers.py` runs it.
    pub fn is_peer(self) -> bool {
        matches!(self, Algo::Sb3A2c | Algo::Sb3Ppo | Algo::Sb3Trpo)
    }

    /// `acktr train`'s arguments that select it (ours only).
    fn train_args(self) -> &'static [&'static str] {
        match self {
            Algo::AcktrFast => &["--algo", "acktr", "--preset", "fast"],
            Algo::A2c => &["--algo", "a2c"],
            Algo::AcktrEuclideanCritic => &["--algo", "acktr", "--vf-euclidean"],
            Algo::AcktrB160 => &["--algo", "acktr", "--num-envs", "8", "--num-steps", "20"],
            Algo::AcktrB640 => &["--algo", "acktr", "--num-envs", "32", "--num-steps", "20"],
            Algo::A2cB160 => &["--algo", "a2c", "--num-envs", "8", "--num-steps", "20"],
            Algo::A2cB640 => &["--algo", "a2c", "--num-envs", "32", "--num-steps", "20"],
            Algo::AcktrSmall => &["--algo", "acktr", "--arch", "minatar-small"],
            _ => &["--algo", "acktr"],
        }
    }
}

/// Parse a seed list: comma-separated seeds and inclusive ranges (`0-2`, `0,3,5`, `0-2,7`);
/// duplicates dropped, order kept.
pub fn parse_seeds(text: &str) -> std::result::Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for item in text.split(',').map(str::trim) {
        let bad = || format!("bad seed list `{text}`: `{item}` is not a seed or a range `a-b`");
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u64>().map_err(|_| bad())?,
                b.trim().parse::<u64>().map_err(|_| bad())?,
            ),
            None => {
                let s = item.parse::<u64>().map_err(|_| bad())?;
                (s, s)
            }
        };
        if hi < lo {
            return Err(format!(
                "bad seed list `{text}`: range `{item}` runs backwards"
            ));
        }
        if hi - lo >= 100_000 {
            return Err(format!(
                "bad seed list `{text}`: range `{item}` is too long"
            ));
        }
        for s in lo..=hi {
            if !seeds.contains(&s) {
                seeds.push(s);
            }
        }
    }
    Ok(seeds)
}

// --------------------------------------------------------------------------- command line

/// `acktr benchmark`: run a suite, or (`acktr benchmark report`) write the results page.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchmarkCli {
    /// `report`: the results page from benchmark CSVs.
    #[command(subcommand)]
    pub command: Option<BenchmarkCommand>,
    /// Running a suite.
    #[command(flatten)]
    pub suite: SuiteArgs,
}

/// The subcommands of `acktr benchmark`.
#[derive(clap::Subcommand, Debug)]
pub enum BenchmarkCommand {
    /// Write the results page (tables; one PNG per environment) from benchmark CSVs.
    Report(ReportArgs),
}

/// Running a suite: `acktr benchmark SUITE [options]`.
#[derive(clap::Args, Debug, Clone)]
pub struct SuiteArgs {
    /// The suite: classic (CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCarContinuous-v0;
    /// 10 seeds), mujoco (Hopper-v5, HalfCheetah-v5, Walker2d-v5; 1M steps, 3 seeds) or
    /// minatar (MinAtar Breakout, Asterix, SpaceInvaders; 1M steps, 3 seeds).
    #[arg(required = true)]
    pub suite: Option<String>,
    /// Seeds, e.g. `0-2` or `0,3,5` (default: 0 to the suite's seed count − 1).
    #[arg(long)]
    pub seeds: Option<String>,
    /// The CSV to append to (default: bench/SUITE.csv).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder for the run folders and logs (default: runs/SUITE beside the CSV).
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// Runs at a time.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Algorithms, comma separated: acktr, acktr-fast (`--preset fast`), a2c (ours), sb3-a2c,
    /// sb3-ppo, sb3-trpo (peers, through python/peers.py); the paper's ablations:
    /// acktr-euclidean-critic (the critic in the Euclidean norm), acktr-b160, acktr-b640,
    /// a2c-b160, a2c-b640 (batch 160 = 8 envs × 20 steps, 640 = 32 × 20); acktr-small (the
    /// microcontroller's MinAtar net, `--arch minatar-small`, MinAtar/Breakout-v1 only).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "acktr,acktr-fast,a2c,sb3-a2c,sb3-ppo,sb3-trpo"
    )]
    pub algos: Vec<String>,
    /// Only these of the suite's environments, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub envs: Vec<String>,
    /// Env steps per run for every environment (default: each environment's budget).
    #[arg(long)]
    pub total_steps: Option<u64>,
    /// The Python that runs the peers (default: $ACKTR_PYTHON, else .venv/bin/python of the
    /// repository holding python/peers.py).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The peers' driver (default: python/peers.py of the repository, found from the current
    /// folder or this executable's).
    #[arg(long)]
    pub peers_script: Option<PathBuf>,
    /// List the runs to do and exit.
    #[arg(long)]
    pub dry_run: bool,
}

/// `acktr benchmark report CSV... --out PAGE --img FOLDER`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Benchmark CSVs (written by `acktr benchmark`).
    #[arg(required = true)]
    pub csv: Vec<PathBuf>,
    /// The Markdown page to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Folder for the figures (one PNG per environment).
    #[arg(long)]
    pub img: PathBuf,
    /// A Markdown file of notes by environment (`## ENV` sections: the reason of an exception,
    /// what was tried), each inserted under that environment's verdict.
    #[arg(long)]
    pub notes: Option<PathBuf>,
}

/// Run `acktr benchmark …` (what the CLI calls).
pub fn main(cli: &BenchmarkCli) -> Result<()> {
    match &cli.command {
        Some(BenchmarkCommand::Report(args)) => {
            let written = report(args, &command_line())?;
            println!("{}", args.out.display());
            for p in written {
                println!("{}", p.display());
            }
            Ok(())
        }
        None => run_suite(&cli.suite),
    }
}

/// This process's command line, as a user would type it (program name without its folder).
pub(crate) fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "acktr".into());
    std::iter::once(prog)
        .chain(args.map(|a| {
            if a.is_empty()
                || a.contains(|c: char| c.is_whitespace() || "'\"$`\\|&;<>*?".contains(c))
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------- running

/// One run of a suite.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Environment id.
    pub env: &'static str,
    /// Algorithm.
    pub algo: Algo,
    /// Seed.
    pub seed: u64,
    /// Env steps.
    pub steps: u64,
}

impl Job {
    /// The run folder's name: `<env>-<algo>-s<seed>`, `/` in the env id as `-`.
    pub fn name(&self) -> String {
        format!(
            "{}-{}-s{}",
            self.env.replace('/', "-"),
            self.algo.name(),
            self.seed
        )
    }
}

/// How to start the peers.
#[derive(Clone, Debug)]
struct Peers {
    python: PathBuf,
    script: PathBuf,
}

/// The folder above `start` (or `start` itself) that holds `python/peers.py`.
fn repo_root_from(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("python").join("peers.py").is_file())
        .map(Path::to_path_buf)
}

fn find_peers(args: &SuiteArgs) -> Result<Peers> {
    let root = std::env::current_dir()
        .ok()
        .and_then(|d| repo_root_from(&d))
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().and_then(repo_root_from))
        });
    let script = match (&args.peers_script, &root) {
        (Some(s), _) => s.clone(),
        (None, Some(r)) => r.join("python").join("peers.py"),
        (None, None) => {
            return Err(BenchmarkError::Usage(
                "the peers' driver python/peers.py was not found above the current folder or \
                 this executable; run from the repository or pass --peers-script"
                    .into(),
            ))
        }
    };
    let python = match (&args.python, std::env::var_os("ACKTR_PYTHON"), &root) {
        (Some(p), _, _) => p.clone(),
        (None, Some(p), _) => PathBuf::from(p),
        (None, None, Some(r)) => r.join(".venv").join("bin").join("python"),
        (None, None, None) => PathBuf::from("python3"),
    };
    if !script.is_file() {
        return Err(BenchmarkError::Usage(format!(
            "the peers' driver {} does not exist",
            script.display()
        )));
    }
    if python.components().count() > 1 && !python.exists() {
        return Err(BenchmarkError::Usage(format!(
            "{} does not exist: the peers need a Python with stable-baselines3 and sb3-contrib \
             (bash scripts/setup.sh, then .venv/bin/pip install -r python/requirements-peers.txt), \
             or name one with --python or $ACKTR_PYTHON; --algos acktr,a2c runs ours only",
            python.display()
        )));
    }
    Ok(Peers { python, script })
}

/// The CPU model: `lscpu`'s `Model name`, else `/proc/cpuinfo`'s `model name`, else
/// `unknown`; commas and quotes replaced by spaces (a CSV cell).
pub fn cpu_model() -> String {
    let from_lscpu = Command::new("lscpu")
        .env("LC_ALL", "C")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|v| v.trim().to_string()))
        });
    let model = from_lscpu
        .or_else(|| {
            fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == "model name").then(|| v.trim().to_string())
                })
            })
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown".into());
    clean_cell(&model)
}

/// `s` with the characters a CSV cell cannot hold unquoted as spaces.
fn clean_cell(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, ',' | '"' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The proleptic Gregorian date of day `z` since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The deterministic evaluation mean in the last `acktr: done:` line of `log`.
pub fn eval_in_done_line(log: &str) -> Option<f64> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.trim_start_matches('\r').strip_prefix("acktr: done: "))?;
    let rest = line.split_once(", deterministic eval (")?.1;
    let rest = rest.split_once(" episodes) ")?.1;
    rest.split(',').next()?.trim().parse().ok()
}

/// Run a suite (see the [module docs](self)).
pub fn run_suite(args: &SuiteArgs) -> Result<()> {
    let name = args.suite.as_deref().unwrap_or_default();
    let suite = suite(name).ok_or_else(|| {
        BenchmarkError::Usage(format!(
            "unknown suite `{name}`; the suites: {}",
            SUITES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if args.jobs == 0 {
        return Err(BenchmarkError::Usage("--jobs must be at least 1".into()));
    }
    if args.total_steps == Some(0) {
        return Err(BenchmarkError::Usage(
            "--total-steps must be at least 1".into(),
        ));
    }
    let seeds = match &args.seeds {
        Some(s) => parse_seeds(s).map_err(BenchmarkError::Usage)?,
        None => (0..suite.seeds).collect(),
    };
    let mut algos = Vec::new();
    for a in &args.algos {
        let algo = Algo::parse(a.trim()).ok_or_else(|| {
            BenchmarkError::Usage(format!(
                "unknown algorithm `{a}`; the algorithms: {}",
                Algo::ALL.map(Algo::name).join(", ")
            ))
        })?;
        if !algos.contains(&algo) {
            algos.push(algo);
        }
    }
    if algos.is_empty() {
        return Err(BenchmarkError::Usage("--algos names no algorithm".into()));
    }
    let mut envs: Vec<&EnvSpec> = Vec::new();
    if args.envs.is_empty() {
        envs.extend(suite.envs);
    } else {
        for e in &args.envs {
            let spec = suite
                .envs
                .iter()
                .find(|s| s.id == e.trim())
                .ok_or_else(|| {
                    BenchmarkError::Usage(format!(
                        "`{e}` is not in the suite {}: {}",
                        suite.name,
                        suite
                            .envs
                            .iter()
                            .map(|s| s.id)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if !envs.contains(&spec) {
                envs.push(spec);
            }
        }
    }
    let csv = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench").join(format!("{}.csv", suite.name)));
    let runs_dir = args.runs.clone().unwrap_or_else(|| {
        csv.parent()
            .unwrap_or(Path::new(""))
            .join("runs")
            .join(suite.name)
    });

    let mut jobs = Vec::new();
    for env in &envs {
        for &algo in &algos {
            for &seed in &seeds {
                jobs.push(Job {
                    env: env.id,
                    algo,
                    seed,
                    steps: args.total_steps.unwrap_or(env.budget),
                });
            }
        }
    }
    let done = prepare_csv(&csv)?;
    let planned = jobs.len();
    jobs.retain(|j| !done.contains(&(j.env.to_string(), j.algo.name().to_string(), j.seed)));
    println!(
        "acktr benchmark {}: {planned} runs, {} already in {}, {} to do, {} at a time",
        suite.name,
        planned - jobs.len(),
        csv.display(),
        jobs.len(),
        args.jobs.min(jobs.len().max(1))
    );
    if args.dry_run {
        for j in &jobs {
            println!("  {} ({} env steps)", j.name(), j.steps);
        }
        return Ok(());
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let peers = if jobs.iter().any(|j| j.algo.is_peer()) {
        Some(find_peers(args)?)
    } else {
        None
    };
    fs::create_dir_all(&runs_dir).map_err(io_err(&runs_dir))?;
    let ctx = Context {
        csv: &csv,
        runs: &runs_dir,
        peers: peers.as_ref(),
        cpu: cpu_model(),
        exe: std::env::current_exe().map_err(io_err(Path::new("the acktr executable")))?,
    };

    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let total = jobs.len();
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(total) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let outcome = run_one(job, &ctx);
                let k = finished.fetch_add(1, Ordering::SeqCst) + 1;
                match outcome {
                    Ok(line) => println!("[{k}/{total}] {line}"),
                    Err(why) => {
                        println!("[{k}/{total}] {}: FAILED: {why}", job.name());
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{}: {why}", job.name()));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if failures.is_empty() {
        println!(
            "acktr benchmark {}: done; results in {} (tables and figures: acktr benchmark \
             report {} --out PAGE.md --img FOLDER)",
            suite.name,
            csv.display(),
            csv.display()
        );
        Ok(())
    } else {
        Err(BenchmarkError::RunsFailed {
            failed: failures.len(),
            total,
            list: failures.join("; "),
        })
    }
}

/// What every run of one benchmark shares.
struct Context<'a> {
    csv: &'a Path,
    runs: &'a Path,
    peers: Option<&'a Peers>,
    cpu: String,
    exe: PathBuf,
}

/// Remove the folder of an unfinished run (one that has no `eval` row), if it looks like a
/// run folder (or is empty).
fn clear_stale_run(dir: &Path) -> std::result::Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let looks_like_run = ["config.json", "monitor.csv", crate::run::LOCK_FILE]
        .iter()
        .any(|f| dir.join(f).exists())
        || fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if !dir.is_dir() || !looks_like_run {
        return Err(format!(
            "{} exists and is not a run folder; move it away",
            dir.display()
        ));
    }
    fs::remove_dir_all(dir)
        .map_err(|e| format!("cannot remove the unfinished run {}: {e}", dir.display()))
}

/// Run `job` to the end and append its rows; the line to print, or why it failed.
fn run_one(job: &Job, ctx: &Context) -> std::result::Result<String, String> {
    let dir = ctx.runs.join(job.name());
    let log_path = ctx.runs.join(format!("{}.log", job.name()));
    clear_stale_run(&dir)?;
    let log = File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let steps = job.steps.to_string();
    let seed = job.seed.to_string();
    let mut cmd = if job.algo.is_peer() {
        let peers = ctx
            .peers
            .ok_or_else(|| "no Python for the peers".to_string())?;
        let mut c = Command::new(&peers.python);
        c.arg(&peers.script)
            .args(["--algo", job.algo.name()])
            .env("OMP_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1");
        c
    } else {
        let mut c = Command::new(&ctx.exe);
        c.arg("train")
            .args(job.algo.train_args())
            .args(["--checkpoint-every", "0"]);
        c
    };
    cmd.args(["--env", job.env, "--seed", &seed, "--total-steps", &steps])
        .arg("--eval-episodes")
        .arg(EVAL_EPISODES.to_string())
        .arg("--out")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let wall = start.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no output)");
        return Err(format!(
            "exited with {status}: {} (log: {})",
            last.trim(),
            log_path.display()
        ));
    }
    let (Some(done), Some(eval)) = (DoneLine::find(&text), eval_in_done_line(&text)) else {
        return Err(format!(
            "no `acktr: done: … deterministic eval` line in {}",
            log_path.display()
        ));
    };
    let monitor = dir.join(crate::run::MONITOR_FILE);
    let episodes = crate::run::read_monitor_rows(&monitor).map_err(|e| e.to_string())?;
    let block = run_rows(
        job,
        &episodes,
        done.env_steps,
        wall,
        eval,
        &ctx.cpu,
        &utc_now(),
    );
    append_rows(ctx.csv, &block).map_err(|e| e.to_string())?;
    let recent = &episodes[episodes.len().saturating_sub(FINAL_WINDOW)..];
    let recent_mean = recent.iter().map(|e| e.0).sum::<f64>() / recent.len().max(1) as f64;
    Ok(format!(
        "{}: {} env steps in {wall:.1} s, {} episodes, last-100 mean {recent_mean:.2}, \
         eval {eval:.2}",
        job.name(),
        done.env_steps,
        episodes.len()
    ))
}

/// The CSV rows of one finished run: a `train` row per `(return, length, t)` episode, then
/// its `eval` row.
pub fn run_rows(
    job: &Job,
    episodes: &[(f64, u64, f64)],
    env_steps: u64,
    wall_s: f64,
    eval: f64,
    cpu: &str,
    date: &str,
) -> String {
    let (env, algo, seed) = (job.env, job.algo.name(), job.seed);
    let mut out = String::new();
    let mut steps = 0u64;
    for (i, &(r, l, t)) in episodes.iter().enumerate() {
        steps += l;
        out.push_str(&format!(
            "{env},{algo},{seed},train,{},{steps},{t},{r},{l},,\n",
            i + 1
        ));
    }
    out.push_str(&format!(
        "{env},{algo},{seed},eval,,{env_steps},{wall_s:.3},{eval},,{},{}\n",
        clean_cell(cpu),
        clean_cell(date)
    ));
    out
}

/// Serialises appends within this process ([`lock_file`] does across processes).
static APPEND: Mutex<()> = Mutex::new(());

/// Hold an exclusive `flock` on `file` until it is closed (no-op off Unix).
fn lock_file(file: &File, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            BenchmarkError::Io {
                path: path.to_path_buf(),
                source: e.into(),
            }
        })?;
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Append one run's rows to the CSV in one write, under the lock; the header first if the
/// file is new or empty.
fn append_rows(csv: &Path, block: &str) -> Result<()> {
    let _guard = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = csv.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(csv)
        .map_err(io_err(csv))?;
    lock_file(&file, csv)?;
    let len = file.metadata().map_err(io_err(csv))?.len();
    let mut text = String::with_capacity(block.len() + CSV_HEADER.len() + 1);
    if len == 0 {
        text.push_str(CSV_HEADER);
        text.push('\n');
    }
    text.push_str(block);
    file.write_all(text.as_bytes()).map_err(io_err(csv))?;
    file.sync_data().map_err(io_err(csv))
}

/// Check an existing CSV, drop the rows of unfinished runs (and a half-written last line),
/// and return the finished runs `(env, algo, seed)`.
fn prepare_csv(csv: &Path) -> Result<BTreeSet<(String, String, u64)>> {
    if !csv.exists() {
        return Ok(BTreeSet::new());
    }
    let _guard = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(csv)
        .map_err(io_err(csv))?;
    lock_file(&file, csv)?;
    let text = fs::read_to_string(csv).map_err(io_err(csv))?;
    let parsed = parse_csv(csv, &text)?;
    let done: BTreeSet<_> = parsed
        .rows
        .iter()
        .filter(|(_, r)| r.kind == Kind::Eval)
        .map(|(_, r)| r.key())
        .collect();
    let keep: Vec<&str> = parsed
        .rows
        .iter()
        .filter(|(_, r)| done.contains(&r.key()))
        .map(|(line, _)| *line)
        .collect();
    if keep.len() < parsed.rows.len() || parsed.partial_tail {
        let dropped = parsed.rows.len() - keep.len();
        let mut out = String::from(CSV_HEADER);
        out.push('\n');
        for l in &keep {
            out.push_str(l);
            out.push('\n');
        }
        crate::run::checkpoint::write_atomic(csv, out.as_bytes())?;
        println!(
            "acktr benchmark: {}: dropped {dropped} rows of unfinished runs{}",
            csv.display(),
            if parsed.partial_tail {
                " and a half-written last line"
            } else {
                ""
            }
        );
    }
    Ok(done)
}

// ---------------------------------------------------------------------------- the CSV

/// A row's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A finished training episode.
    Train,
    /// The run's final deterministic evaluation.
    Eval,
}

/// One parsed CSV row (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Environment id.
    pub env: String,
    /// Algorithm name.
    pub algo: String,
    /// Seed.
    pub seed: u64,
    /// Training episode or evaluation.
    pub kind: Kind,
    /// 1-based training episode (train rows).
    pub episode: Option<u64>,
    /// Env steps.
    pub env_steps: u64,
    /// Seconds.
    pub wall_s: f64,
    /// Return.
    pub episode_return: f64,
    /// Episode length (train rows).
    pub episode_length: Option<u64>,
    /// CPU model (eval rows).
    pub cpu: String,
    /// UTC finish time (eval rows).
    pub date: String,
}

impl Row {
    /// `(env, algo, seed)`.
    pub fn key(&self) -> (String, String, u64) {
        (self.env.clone(), self.algo.clone(), self.seed)
    }
}

/// A parsed CSV: `(line text, row)` per row, and whether a half-written last line (no line
/// end) was skipped.
pub struct ParsedCsv<'a> {
    /// The rows with their line text.
    pub rows: Vec<(&'a str, Row)>,
    /// A last line without its line end was skipped.
    pub partial_tail: bool,
}

/// Parse a benchmark CSV's text (`path` for messages). An empty file has no rows.
pub fn parse_csv<'a>(path: &Path, text: &'a str) -> Result<ParsedCsv<'a>> {
    let bad = |line: usize, reason: String| BenchmarkError::BadCsv {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let (complete, partial_tail) = match text.rfind('\n') {
        Some(i) => (&text[..=i], i + 1 < text.len()),
        None => ("", !text.is_empty()),
    };
    let mut lines = complete.lines().enumerate();
    let mut rows = Vec::new();
    match lines.next() {
        None => return Ok(ParsedCsv { rows, partial_tail }),
        Some((_, h)) if h.trim_end_matches('\r') == CSV_HEADER => {}
        Some((_, h)) => {
            return Err(bad(
                1,
                format!("header `{h}` is not a benchmark CSV's `{CSV_HEADER}`"),
            ))
        }
    }
    for (n, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let row = parse_row(line).map_err(|reason| bad(n + 1, reason))?;
        rows.push((line, row));
    }
    Ok(ParsedCsv { rows, partial_tail })
}

fn parse_row(line: &str) -> std::result::Result<Row, String> {
    let cells: Vec<&str> = line.split(',').collect();
    let width = CSV_HEADER.split(',').count();
    if cells.len() != width {
        return Err(format!("{} cells, expected {width}", cells.len()));
    }
    let num = |i: usize, what: &str| -> std::result::Result<f64, String> {
        cells[i]
            .parse::<f64>()
            .map_err(|_| format!("bad {what} `{}`", cells[i]))
    };
    let int = |i: usize, what: &str| -> std::result::Result<u64, String> {
        cells[i]
            .parse::<u64>()
            .map_err(|_| format!("bad {what} `{}`", cells[i]))
    };
    let opt_int = |i: usize, what: &str| -> std::result::Result<Option<u64>, String> {
        if cells[i].is_empty() {
            Ok(None)
        } else {
            int(i, what).map(Some)
        }
    };
    let kind = match cells[3] {
        "train" => Kind::Train,
        "eval" => Kind::Eval,
        k => return Err(format!("bad kind `{k}` (train or eval)")),
    };
    let row = Row {
        env: cells[0].to_string(),
        algo: cells[1].to_string(),
        seed: int(2, "seed")?,
        kind,
        episode: opt_int(4, "episode")?,
        env_steps: int(5, "env_steps")?,
        wall_s: num(6, "wall_s")?,
        episode_return: num(7, "episode_return")?,
        episode_length: opt_int(8, "episode_length")?,
        cpu: cells[9].to_string(),
        date: cells[10].to_string(),
    };
    if row.env.is_empty() || row.algo.is_empty() {
        return Err("empty env or algo".into());
    }
    if kind == Kind::Train && (row.episode.is_none() || row.episode_length.is_none()) {
        return Err("a train row needs its episode and episode_length".into());
    }
    Ok(row)
}

// ---------------------------------------------------------------------------- the report

/// One finished run, as read back from the CSV.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    /// `(env_steps, wall_s, return)` per training episode, in order.
    pub episodes: Vec<(u64, f64, f64)>,
    /// Env steps trained.
    pub env_steps: u64,
    /// Whole-run wall seconds.
    pub wall_s: f64,
    /// Deterministic evaluation mean.
    pub eval: f64,
    /// CPU model.
    pub cpu: String,
    /// UTC finish time.
    pub date: String,
}

/// Where a run first reached its threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reached {
    /// Env steps at the end of the episode that completed the window.
    pub env_steps: u64,
    /// That episode's 1-based number.
    pub episodes: u64,
    /// Seconds from the run's start to that episode's end.
    pub wall_s: f64,
}

/// The first episode at which the mean return of the last `window` training episodes (all
/// `window` ended) is at least `threshold`.
pub fn first_reached(
    episodes: &[(u64, f64, f64)],
    window: usize,
    threshold: f64,
) -> Option<Reached> {
    let window = window.max(1);
    let mut sum = 0.0;
    for (i, &(steps, wall, r)) in episodes.iter().enumerate() {
        sum += r;
        if i >= window {
            sum -= episodes[i - window].2;
        }
        if i + 1 >= window && sum / window as f64 >= threshold {
            return Some(Reached {
                env_steps: steps,
                episodes: i as u64 + 1,
                wall_s: wall,
            });
        }
    }
    None
}

/// Median, minimum and maximum of values where `None` is "not reached" and counts as larger
/// than every number (so the median is "not reached" when its middle value(s) are).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median: the middle value, or the mean of the two middle values of an even count
    /// (`None` if either is not reached).
    pub median: Option<f64>,
    /// The smallest value.
    pub min: Option<f64>,
    /// The largest value.
    pub max: Option<f64>,
}

/// The [`Spread`] of `values` (`None` for no values).
pub fn spread(values: &[Option<f64>]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let fin = |x: f64| x.is_finite().then_some(x);
    Some(Spread {
        median: fin(median),
        min: fin(v[0]),
        max: fin(v[n - 1]),
    })
}

/// Read benchmark CSVs into finished runs by `(env, algo, seed)`. Rows of runs without an
/// `eval` row are left out (with a count on stderr); a run in two files is an error.
pub fn read_runs(csvs: &[PathBuf]) -> Result<BTreeMap<(String, String, u64), RunRecord>> {
    let mut runs: BTreeMap<(String, String, u64), RunRecord> = BTreeMap::new();
    let mut unfinished = BTreeMap::<(String, String, u64), RunRecord>::new();
    for csv in csvs {
        let text = fs::read_to_string(csv).map_err(io_err(csv))?;
        let parsed = parse_csv(csv, &text)?;
        let mut here: BTreeMap<(String, String, u64), RunRecord> = BTreeMap::new();
        let mut finished_here = BTreeSet::new();
        for (_, row) in parsed.rows {
            let key = row.key();
            if finished_here.contains(&key) || runs.contains_key(&key) {
                return Err(BenchmarkError::Usage(format!(
                    "{}: the run {} {} seed {} appears twice",
                    csv.display(),
                    key.0,
                    key.1,
                    key.2
                )));
            }
            let rec = here.entry(key.clone()).or_default();
            match row.kind {
                Kind::Train => rec
                    .episodes
                    .push((row.env_steps, row.wall_s, row.episode_return)),
                Kind::Eval => {
                    rec.env_steps = row.env_steps;
                    rec.wall_s = row.wall_s;
                    rec.eval = row.episode_return;
                    rec.cpu = row.cpu;
                    rec.date = row.date;
                    finished_here.insert(key);
                }
            }
        }
        for (key, rec) in here {
            if finished_here.contains(&key) {
                runs.insert(key, rec);
            } else {
                unfinished.insert(key, rec);
            }
        }
    }
    if !unfinished.is_empty() {
        eprintln!(
            "acktr benchmark report: {} unfinished runs (no eval row) left out",
            unfinished.len()
        );
    }
    Ok(runs)
}

/// `n` with thousands separators, one decimal if it is not whole.
fn fmt_count(x: f64) -> String {
    let s = if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    };
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A [`Spread`] as `median [min – max]`, "not reached" for `None`.
fn fmt_spread(s: Option<Spread>, f: impl Fn(f64) -> String) -> String {
    let one = |v: Option<f64>| v.map_or_else(|| "not reached".to_string(), &f);
    match s {
        None => "—".into(),
        Some(s) if s.min == s.max => one(s.median),
        Some(s) => format!("{} [{} – {}]", one(s.median), one(s.min), one(s.max)),
    }
}

/// Seeds as `0–9` or `0, 2, 5–7`.
fn fmt_seeds(seeds: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < seeds.len() {
        let mut j = i;
        while j + 1 < seeds.len() && seeds[j + 1] == seeds[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}–{}", seeds[i], seeds[j])
        } else {
            seeds[i].to_string()
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// A file-name-safe lowercase slug of an env id.
fn slug(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `to` relative to the folder `from` (both made absolute against the current folder).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let abs = |p: &Path| {
        p.canonicalize().unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    let (from, to) = (abs(from), abs(to));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// Trailing-mean curve of one run: `(env_steps, mean of the last min(window, i+1) returns)`.
fn smoothed(episodes: &[(u64, f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(episodes.len());
    let mut sum = 0.0;
    for (i, &(steps, _, r)) in episodes.iter().enumerate() {
        sum += r;
        if i >= window {
            sum -= episodes[i - window].2;
        }
        out.push((steps as f64, sum / (i + 1).min(window) as f64));
    }
    out
}

/// Median line and min–max band of `curves` at 200 points over the env steps all of them
/// cover; a single curve as it is.
fn median_band(label: String, curves: &[Vec<(f64, f64)>]) -> Band {
    let curves: Vec<&Vec<(f64, f64)>> = curves.iter().filter(|c| !c.is_empty()).collect();
    if curves.len() < 2 {
        return Band {
            label,
            line: curves.first().map(|c| c.to_vec()).unwrap_or_default(),
            band: Vec::new(),
        };
    }
    const GRID: usize = 200;
    let lo = curves.iter().map(|c| c[0].0).fold(f64::MIN, f64::max);
    let hi = curves
        .iter()
        .map(|c| c[c.len() - 1].0)
        .fold(f64::MAX, f64::min);
    let mut band = Band {
        label,
        ..Band::default()
    };
    if hi < lo {
        return band;
    }
    for g in 0..GRID {
        let x = lo + (hi - lo) * g as f64 / (GRID - 1) as f64;
        let ys: Vec<Option<f64>> = curves
            .iter()
            .map(|c| Some(plot::interpolate(c, x)))
            .collect();
        if let Some(Spread {
            median: Some(m),
            min: Some(a),
            max: Some(b),
        }) = spread(&ys)
        {
            band.line.push((x, m));
            band.band.push((x, a, b));
        }
    }
    band
}

/// Write the results page `args.out` and one PNG per environment into `args.img` from the
/// CSVs `args.csv`; `command` is named in the page's header. Returns the PNGs written.
/// One algorithm's medians on one environment, for the verdicts.
struct AlgoMedians {
    algo: String,
    /// Median env steps to the threshold (`None`: not reached in the median, or no threshold).
    steps: Option<f64>,
    /// Runs (seeds).
    runs: usize,
    /// Median last-100 training mean at the budget.
    last100: Option<f64>,
}

/// ACKTR's standing on one environment: a paragraph and the two summary cells.
struct Verdict {
    text: String,
    steps_cell: String,
    peer_cell: String,
}

/// Compare `acktr` with our `a2c` (env steps to the threshold; the paper's claim is a ratio
/// ≤ ½) and with the best peer (last-100 training mean at the budget).
fn verdict(medians: &[AlgoMedians], has_threshold: bool) -> Verdict {
    let get = |name: &str| medians.iter().find(|m| m.algo == name);
    let mut text = Vec::new();
    let steps_cell = match (get("acktr"), get("a2c")) {
        // No threshold: the returns at the budget, where a ratio of them means something.
        (Some(a), Some(b)) if !has_threshold => match (a.last100, b.last100) {
            (Some(x), Some(y)) if x >= 0.0 && y > 0.0 => {
                text.push(format!(
                    "No threshold: at the budget, median last-100 training means acktr {x:.2} \
                     and a2c {y:.2}, {:.2}× a2c's.",
                    x / y
                ));
                format!("no threshold; last-100 at the budget {:.2}× a2c's", x / y)
            }
            _ => "— (no threshold)".to_string(),
        },
        _ if !has_threshold => "— (no threshold)".to_string(),
        (Some(a), Some(b)) => match (a.steps, b.steps) {
            (Some(x), Some(y)) => {
                let r = x / y;
                let met = if r <= 0.5 { "met" } else { "not met" };
                text.push(format!(
                    "Env steps to the threshold, medians: acktr {} against a2c {}, a ratio of \
                     {r:.2} (the paper's claim, ≤ 0.5: {met}).",
                    fmt_count(x),
                    fmt_count(y)
                ));
                format!("{r:.2} ({met})")
            }
            (Some(x), None) => {
                text.push(format!(
                    "Env steps to the threshold, medians: acktr {}; a2c does not reach it in \
                     the median (the paper's claim, ≤ 0.5: met).",
                    fmt_count(x)
                ));
                "a2c not reached (met)".into()
            }
            (None, Some(y)) => {
                text.push(format!(
                    "Env steps to the threshold, medians: acktr does not reach it in the \
                     median, a2c at {} (the paper's claim, ≤ 0.5: not met).",
                    fmt_count(y)
                ));
                "acktr not reached (not met)".into()
            }
            (None, None) => {
                let at_budget = match (a.last100, b.last100) {
                    (Some(x), Some(y)) => format!(
                        "; at the budget, last-100 training means acktr {x:.2} and a2c {y:.2}"
                    ),
                    _ => String::new(),
                };
                text.push(format!(
                    "Neither acktr nor a2c reaches the threshold in the median: no ratio{at_budget}."
                ));
                "neither reached".into()
            }
        },
        (Some(_), None) => "— (no a2c runs)".into(),
        _ => "— (no acktr runs)".into(),
    };
    let peers: Vec<&AlgoMedians> = medians
        .iter()
        .filter(|m| Algo::parse(&m.algo).is_some_and(Algo::is_peer))
        .collect();
    let runs = |p: &AlgoMedians| format!("{} run{}", p.runs, if p.runs == 1 { "" } else { "s" });
    // Where a peer reaches the threshold, the paper's measure (env steps to it) decides;
    // otherwise the return at the budget.
    let fastest_peer = peers
        .iter()
        .filter_map(|m| Some((*m, m.steps?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let best_peer = peers
        .iter()
        .filter_map(|m| Some((*m, m.last100?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let acktr = get("acktr");
    let peer_cell = match (acktr, fastest_peer, best_peer) {
        (Some(a), Some((p, y)), _) if has_threshold => match a.steps {
            Some(x) => {
                let r = x / y;
                text.push(format!(
                    "Env steps to the threshold against the fastest peer, medians: acktr {} \
                     against {} ({}) {}, a ratio of {r:.2}.",
                    fmt_count(x),
                    p.algo,
                    runs(p),
                    fmt_count(y)
                ));
                format!("env steps {r:.2}× {}'s", p.algo)
            }
            None => {
                text.push(format!(
                    "Env steps to the threshold: acktr does not reach it in the median; the \
                     fastest peer, {} ({}), at {}.",
                    p.algo,
                    runs(p),
                    fmt_count(y)
                ));
                format!("acktr not reached, {} at {}", p.algo, fmt_count(y))
            }
        },
        (Some(a), _, Some((p, y))) => match a.last100 {
            Some(x) => {
                let pct = (x - y) / y.abs().max(f64::MIN_POSITIVE) * 100.0;
                let verdict = if pct.abs() < 0.5 {
                    "the same to 0.5%".to_string()
                } else if pct > 0.0 {
                    format!("ahead by {pct:.0}%")
                } else {
                    format!("short by {:.0}%", -pct)
                };
                text.push(format!(
                    "Last-100 training mean at the budget, medians: acktr {x:.2} against the \
                     best peer, {} ({}), {y:.2}: acktr is {verdict}.",
                    p.algo,
                    runs(p)
                ));
                format!("last-100 {x:.2} against {} {y:.2}: {verdict}", p.algo)
            }
            None => "— (acktr has no finished episodes)".into(),
        },
        _ => "— (no peer runs)".into(),
    };
    Verdict {
        text: text.join(" "),
        steps_cell,
        peer_cell,
    }
}

/// `## ENV` sections of a notes file, by environment id.
fn notes_by_env(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(env) = line.strip_prefix("## ") {
            current = Some(env.trim().to_string());
            out.entry(env.trim().to_string()).or_default();
        } else if let Some(env) = &current {
            let e = out.entry(env.clone()).or_default();
            e.push_str(line);
            e.push('\n');
        }
    }
    out
}

pub fn report(args: &ReportArgs, command: &str) -> Result<Vec<PathBuf>> {
    let runs = read_runs(&args.csv)?;
    if runs.is_empty() {
        return Err(BenchmarkError::Usage(
            "no finished runs in the CSVs; nothing to report".into(),
        ));
    }
    let out_dir = args
        .out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    fs::create_dir_all(&args.img).map_err(io_err(&args.img))?;

    // Environments in suite order, then others by name; algorithms ours, then the peers.
    let mut envs: Vec<String> = runs.keys().map(|k| k.0.clone()).collect();
    envs.dedup();
    let suite_rank = |id: &str| {
        SUITES
            .iter()
            .flat_map(|s| s.envs)
            .position(|e| e.id == id)
            .unwrap_or(usize::MAX)
    };
    envs.sort_by(|a, b| suite_rank(a).cmp(&suite_rank(b)).then(a.cmp(b)));
    let algo_rank = |a: &str| {
        Algo::ALL
            .iter()
            .position(|x| x.name() == a)
            .unwrap_or(usize::MAX)
    };

    let cpus: BTreeSet<&str> = runs.values().map(|r| r.cpu.as_str()).collect();
    let dates: Vec<&str> = runs.values().map(|r| r.date.as_str()).collect();
    let first = dates.iter().min().map_or("", |d| d.get(..10).unwrap_or(d));
    let last = dates.iter().max().map_or("", |d| d.get(..10).unwrap_or(d));
    let mut md = String::new();
    md.push_str(
        "<!-- Generated file: do not edit by hand; regenerate it with the command below. -->\n",
    );
    md.push_str("# Benchmark results\n\n");
    md.push_str(&format!(
        "Generated by `{command}` from {} finished runs in {}. The runs finished \
         between {first} and {last} on: {}. Host builds use `target-cpu=native` \
         (`.cargo/config.toml`): the figures hold for that CPU.\n\n",
        runs.len(),
        args.csv
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", "),
        cpus.iter().copied().collect::<Vec<_>>().join("; ")
    ));
    md.push_str(
        "Each cell is the median over seeds with the minimum and maximum in brackets. A \
         run reaches the threshold at the first training episode where the mean return of the \
         last W training episodes (all W finished) is at least the threshold; a run that never \
         does counts as larger than every number (\"not reached\"), so the median is \"not \
         reached\" when at least half the runs did not reach it. Env steps of an episode are \
         the summed lengths of the episodes finished so far (exact with one environment; with \
         N parallel environments short by the steps of the other N − 1 unfinished episodes). \
         Wall seconds are from the run's start (to the threshold) or the whole child process \
         (per run, start-up and final evaluation included). At the budget: the mean of the last \
         100 training episodes and the mean of 10 deterministic evaluation episodes. The \
         figures show the trailing W-episode mean against env steps: the median over seeds in \
         a min–max band, over the env steps all seeds cover.\n\n",
    );

    let notes = match &args.notes {
        Some(path) => notes_by_env(&fs::read_to_string(path).map_err(io_err(path))?),
        None => BTreeMap::new(),
    };
    if let Some(env) = notes.keys().find(|e| !envs.contains(e)) {
        return Err(BenchmarkError::Usage(format!(
            "the notes have a section for {env}, which has no runs in the CSVs"
        )));
    }
    let mut summary = String::new();
    let mut body = String::new();
    let mut pngs = Vec::new();
    for env in &envs {
        let md = &mut body;
        let mut medians: Vec<AlgoMedians> = Vec::new();
        let spec = env_spec(env);
        let window = spec.map_or(FINAL_WINDOW, |s| s.window);
        let threshold = spec.and_then(|s| s.threshold);
        let mut algos: Vec<&str> = runs
            .keys()
            .filter(|k| &k.0 == env)
            .map(|k| k.1.as_str())
            .collect();
        algos.dedup();
        algos.sort_by(|a, b| algo_rank(a).cmp(&algo_rank(b)).then(a.cmp(b)));
        let env_runs: Vec<&RunRecord> = runs
            .iter()
            .filter(|(k, _)| &k.0 == env)
            .map(|(_, r)| r)
            .collect();
        let trained_min = env_runs.iter().map(|r| r.env_steps).min().unwrap_or(0);
        let trained_max = env_runs.iter().map(|r| r.env_steps).max().unwrap_or(0);
        let seeds: BTreeSet<u64> = runs.keys().filter(|k| &k.0 == env).map(|k| k.2).collect();

        md.push_str(&format!("## {env}\n\n"));
        match (threshold, spec) {
            (Some(t), Some(s)) => md.push_str(&format!(
                "Threshold: mean return of the last {window} training episodes ≥ {} ({}). ",
                fmt_count(t),
                s.source
            )),
            _ => md.push_str(&format!(
                "No threshold ({}): returns only. ",
                spec.map_or("the environment is in no suite", |s| s.source)
            )),
        }
        let trained = if trained_min == trained_max {
            fmt_count(trained_max as f64)
        } else {
            format!(
                "{}–{}",
                fmt_count(trained_min as f64),
                fmt_count(trained_max as f64)
            )
        };
        md.push_str(&format!(
            "Env steps trained (the budget, rounded up to whole batches): {trained}. Seeds: {}.\n\n",
            fmt_seeds(&seeds.iter().copied().collect::<Vec<_>>())
        ));

        let png = args.img.join(format!("results-{}.png", slug(env)));
        let mut bands = Vec::new();
        md.push_str(
            "| algorithm | runs | reached | env steps to threshold | episodes to threshold | \
             wall s to threshold | last-100 training mean at budget | deterministic eval at \
             budget | wall s per run |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for algo in &algos {
            let these: Vec<&RunRecord> = runs
                .iter()
                .filter(|(k, _)| &k.0 == env && k.1 == *algo)
                .map(|(_, r)| r)
                .collect();
            let reached: Vec<Option<Reached>> = these
                .iter()
                .map(|r| threshold.and_then(|t| first_reached(&r.episodes, window, t)))
                .collect();
            let n_reached = reached.iter().filter(|r| r.is_some()).count();
            let field = |f: fn(&Reached) -> f64| -> Vec<Option<f64>> {
                reached.iter().map(|r| r.as_ref().map(f)).collect()
            };
            let final_mean: Vec<Option<f64>> = these
                .iter()
                .map(|r| {
                    let tail = &r.episodes[r.episodes.len().saturating_sub(FINAL_WINDOW)..];
                    (!tail.is_empty())
                        .then(|| tail.iter().map(|e| e.2).sum::<f64>() / tail.len() as f64)
                })
                .collect();
            let evals: Vec<Option<f64>> = these.iter().map(|r| Some(r.eval)).collect();
            let walls: Vec<Option<f64>> = these.iter().map(|r| Some(r.wall_s)).collect();
            let ret = |x: f64| format!("{x:.2}");
            let secs = |x: f64| format!("{x:.1}");
            let (steps_cell, eps_cell, wall_cell, reached_cell) = if threshold.is_some() {
                (
                    fmt_spread(spread(&field(|r| r.env_steps as f64)), fmt_count),
                    fmt_spread(spread(&field(|r| r.episodes as f64)), fmt_count),
                    fmt_spread(spread(&field(|r| r.wall_s)), secs),
                    format!("{n_reached}/{}", these.len()),
                )
            } else {
                ("—".into(), "—".into(), "—".into(), "—".into())
            };
            // A run without episodes has no training mean: shown as "not reached" would
            // mislead, so such runs are left out of that column's spread.
            let finals: Vec<Option<f64>> =
                final_mean.iter().copied().filter(Option::is_some).collect();
            medians.push(AlgoMedians {
                algo: (*algo).to_string(),
                steps: threshold.and_then(|_| spread(&field(|r| r.env_steps as f64))?.median),
                runs: these.len(),
                last100: spread(&finals).and_then(|s| s.median),
            });
            md.push_str(&format!(
                "| {algo} | {} | {reached_cell} | {steps_cell} | {eps_cell} | {wall_cell} | {} | {} | {} |\n",
                these.len(),
                fmt_spread(spread(&finals), ret),
                fmt_spread(spread(&evals), ret),
                fmt_spread(spread(&walls), secs),
            ));
            let curves: Vec<Vec<(f64, f64)>> = these
                .iter()
                .map(|r| smoothed(&r.episodes, window))
                .collect();
            let label = if these.len() > 1 {
                format!("{algo} (median of {}, min–max)", these.len())
            } else {
                (*algo).to_string()
            };
            bands.push(median_band(label, &curves));
        }
        let title = match threshold {
            Some(t) => format!("{env} (threshold {})", fmt_count(t)),
            None => env.clone(),
        };
        plot::plot_bands(
            &bands,
            &png,
            &title,
            "environment steps",
            &format!("return (mean of the last {window} training episodes)"),
            &PlotOptions::default(),
        )?;
        let v = verdict(&medians, threshold.is_some());
        if !v.text.is_empty() {
            md.push_str(&format!("\n{}\n", v.text));
        }
        if let Some(n) = notes.get(env) {
            md.push_str(&format!("\n{}\n", n.trim()));
        }
        md.push_str(&format!(
            "\n![{env}: return against env steps]({})\n\n",
            relative(&out_dir, &png).display()
        ));
        if medians.iter().any(|m| m.algo == "acktr") {
            summary.push_str(&format!("| {env} | {} | {} |\n", v.steps_cell, v.peer_cell));
        }
        pngs.push(png);
    }
    if !summary.is_empty() {
        md.push_str(
            "## Summary\n\nACKTR (`acktr`, the default preset) against our A2C on the same nets \
         (the paper's claim: at most half the env steps to the threshold) and against the best \
         of the peers run here (medians over seeds; details under each environment).\n\n| environment | env steps to threshold, acktr / a2c | acktr against the \
         best peer: env steps to threshold where a peer reaches it, else last-100 training mean \
         at budget |\n|---|---|---|\n",
        );
        md.push_str(&summary);
        md.push('\n');
    }
    md.push_str(&body);
    crate::run::checkpoint::write_atomic(&args.out, md.as_bytes())?;
    Ok(pngs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists() {
        assert_eq!(parse_seeds("0-2"), Ok(vec![0, 1, 2]));
        assert_eq!(parse_seeds("0,3,5"), Ok(vec![0, 3, 5]));
        assert_eq!(parse_seeds("4-5,1,5"), Ok(vec![4, 5, 1]));
        assert!(parse_seeds("2-1").is_err());
        assert!(parse_seeds("a").is_err());
        assert!(parse_seeds("").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn spreads_count_not_reached_as_largest() {
        let s = spread(&[Some(3.0), Some(1.0), Some(2.0)]).expect("values");
        assert_eq!((s.median, s.min, s.max), (Some(2.0), Some(1.0), Some(3.0)));
        let s = spread(&[Some(3.0), None, Some(1.0), Some(2.0)]).expect("values");
        assert_eq!((s.median, s.min, s.max), (Some(2.5), Some(1.0), None));
        let s = spread(&[None, None, Some(1.0), Some(2.0)]).expect("values");
        assert_eq!(s.median, None);
        assert!(spread(&[]).is_none());
    }

    #[test]
    fn threshold_needs_a_full_window() {
        let eps: Vec<(u64, f64, f64)> = [10.0, 500.0, 500.0, 400.0, 600.0]
            .iter()
            .enumerate()
            .map(|(i, &r)| ((i as u64 + 1) * 100, i as f64, r))
            .collect();
        // One episode of 500 is not a window of 2.
        let r = first_reached(&eps, 2, 475.0).expect("reached");
        assert_eq!((r.env_steps, r.episodes), (300, 3));
        assert_eq!(first_reached(&eps, 5, 475.0), None);
        assert_eq!(first_reached(&eps, 1, 475.0).map(|r| r.episodes), Some(2));
    }

    #[test]
    fn done_line_eval() {
        let log = "x\nacktr: done: 2240 env steps, 51182 steps/s, last-100 return 22.34, \
                   deterministic eval (10 episodes) -9.30, reached last-10 mean 1 (target 1) at 1 env steps in 1 s\n";
        assert_eq!(eval_in_done_line(log), Some(-9.3));
        assert_eq!(
            eval_in_done_line("acktr: done: 1 env steps, 1 steps/s, last-100 return 1"),
            None
        );
    }

    #[test]
    fn counts_and_seeds_format() {
        assert_eq!(fmt_count(1234567.0), "1,234,567");
        assert_eq!(fmt_count(-1500.5), "-1,500.5");
        assert_eq!(fmt_count(475.0), "475");
        assert_eq!(fmt_seeds(&[0, 1, 2, 5, 7, 8]), "0–2, 5, 7–8");
    }

    #[test]
    fn rows_round_trip() {
        let job = Job {
            env: "MinAtar/Breakout-v1",
            algo: Algo::Sb3Ppo,
            seed: 3,
            steps: 100,
        };
        let text = format!(
            "{CSV_HEADER}\n{}",
            run_rows(
                &job,
                &[(1.5, 10, 0.25), (-2.0, 5, 0.5)],
                20,
                1.25,
                3.5,
                "A, B",
                "d"
            )
        );
        let p = parse_csv(Path::new("x.csv"), &text).expect("parses");
        assert!(!p.partial_tail);
        assert_eq!(p.rows.len(), 3);
        assert_eq!(p.rows[1].1.env_steps, 15);
        assert_eq!(p.rows[2].1.kind, Kind::Eval);
        assert_eq!(p.rows[2].1.cpu, "A  B");
        assert_eq!(job.name(), "MinAtar-Breakout-v1-sb3-ppo-s3");
    }
}
