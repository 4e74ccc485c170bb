//! The command line of both binaries, `acktr` (lean: no libtorch) and `acktr-torch` (the
//! same commands, with the libtorch backend installed through [`crate::torch_hooks`]): train,
//! evaluate, export, plot and benchmark ACKTR / A2C policies.
//!
//! libtorch's static initialisers cost every process that links it ~0.24 s, so the `acktr`
//! users run for native training does not link it. When it meets work that needs libtorch
//! (`--backend tch`, conv nets, CUDA, a tch run's `--resume`/`eval`/`export`, `bench`), it
//! replaces itself with `acktr-torch` from its own folder, same arguments, before anything
//! was written ([`HostError::NeedsTorch`]). `acktr-torch` never hands over.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::HostError;
use crate::settings::TrainArgs;
use crate::torch_hooks::{self, TorchHooks};
use crate::{plot, train};
use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The lean binary's name (no libtorch).
pub const LEAN_BIN: &str = "acktr";
/// The binary with libtorch (package `acktr-torch`).
pub const TORCH_BIN: &str = "acktr-torch";

/// ACKTR (and A2C) from a workstation down to a microcontroller.
#[derive(Parser)]
#[command(name = "acktr", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a policy; writes a run folder (config, monitor.csv, progress.csv, TensorBoard
    /// events, checkpoints, policy.ackp for MLP and minatar-small policies).
    Train(Box<TrainArgs>),
    /// Evaluate a run's policy.
    Eval {
        /// Run folder.
        run: PathBuf,
        /// Episodes (at least 1).
        #[arg(long, default_value_t = 20)]
        episodes: u32,
        /// Seed of the first episode.
        #[arg(long, default_value_t = 12_345)]
        seed: u64,
    },
    /// Export a run's policy (MLP, or the minatar-small conv net as a version-2 file) to
    /// acktr-core's policy file (what the firmware loads).
    Export {
        /// Run folder.
        run: PathBuf,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Benchmark ACKTR against A2C (throughput, update cost, ACKTR's extra cost) on the
    /// native and libtorch backends; prints markdown tables.
    Bench(crate::bench::BenchArgs),
    /// Run a benchmark suite (every env × algorithm × seed, ours and the stable-baselines3
    /// peers, resumable) into one CSV; `acktr benchmark report` writes the results page.
    Benchmark(crate::benchmark::BenchmarkCli),
    /// Plot learning curves (return against env steps) of one or more runs into a PNG.
    Plot {
        /// Run folders.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long, short)]
        out: PathBuf,
        /// Moving-average window in episodes.
        #[arg(long, default_value_t = 20)]
        window: usize,
        /// One label per run (default: folder names).
        #[arg(long)]
        label: Vec<String>,
        /// Runs with the same label become one mean curve with a min–max band.
        #[arg(long)]
        group: bool,
        /// Title.
        #[arg(long)]
        title: Option<String>,
    },
}

/// The long names (without `--`) of the `train` options given on the command line, not
/// defaulted (what `--resume` checks: [`train::RESUME_APPLIES`]).
fn train_options_given(matches: &clap::ArgMatches) -> Vec<String> {
    let (Some(m), Some(cmd)) = (
        matches.subcommand_matches("train"),
        Cli::command().find_subcommand("train").cloned(),
    ) else {
        return Vec::new();
    };
    cmd.get_arguments()
        .filter(|a| m.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

fn run(cli: Cli, given: &[String]) -> anyhow::Result<()> {
    match cli.cmd {
        Command::Train(args) => {
            train::train_given(&args, given).with_context(|| train::describe(&args))?;
        }
        Command::Eval {
            run,
            episodes,
            seed,
        } => {
            if episodes == 0 {
                anyhow::bail!(
                    "--episodes must be at least 1 (the mean of no episodes is undefined)"
                );
            }
            let (s, mut agent) =
                train::load_run(&run).with_context(|| format!("loading {}", run.display()))?;
            let det = train::evaluate(agent.as_mut(), &s.env, episodes, seed, true)?;
            let sto = train::evaluate(agent.as_mut(), &s.env, episodes, seed, false)?;
            println!(
                "{}: {episodes} episodes: deterministic {det:.2}, sampled {sto:.2}",
                s.env
            );
        }
        Command::Export { run, out } => {
            let (_, agent) =
                train::load_run(&run).with_context(|| format!("loading {}", run.display()))?;
            let bytes = agent.export().context("exporting")?;
            crate::run::checkpoint::write_atomic(&out, &bytes)
                .context("writing the policy file")?;
            let h = acktr_core::read_header(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            let encoder = h.encoder.map_or(String::new(), |c| {
                format!(
                    ", conv {}×{}×{} stride {} on {}×{}×{} ({})",
                    c.filters,
                    c.kernel,
                    c.kernel,
                    c.stride,
                    c.height,
                    c.width,
                    c.channels,
                    if c.channels_last { "HWC" } else { "CHW" }
                )
            });
            println!(
                "{}: {} bytes, version {}; obs {}{encoder}, hidden {:?}, {} trunk(s), {:?}, {:?} head with {} outputs",
                out.display(),
                bytes.len(),
                h.version,
                h.obs_dim,
                h.hidden.as_slice(),
                h.trunks,
                h.activation,
                h.head,
                h.actions
            );
        }
        Command::Benchmark(b) => crate::benchmark::main(&b)?,
        Command::Bench(args) => {
            if let Some(path) = &args.report {
                print!("{}", crate::bench::report(path)?);
                return Ok(());
            }
            if let (Some(file), Some(json)) = (&args.import, &args.json) {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| crate::error::HostError::io(file, e))?;
                let command = args.command.as_deref().unwrap_or_default();
                crate::bench::save(json, &text, command)?;
                return Ok(());
            }
            if let (Some(dir), Some(json)) = (&args.criterion, &args.json) {
                let tables = crate::bench::criterion_report(dir)?;
                print!("{tables}");
                let command = args
                    .command
                    .as_deref()
                    .unwrap_or("cargo bench -p acktr-core --features std");
                crate::bench::save(json, &tables, command)?;
                return Ok(());
            }
            let report = crate::bench::bench(&args)?;
            print!("{report}");
            if let Some(path) = &args.json {
                crate::bench::save(path, &report, &crate::benchmark::command_line())?;
            }
            if torch_hooks::get().is_none() {
                println!(
                    "\n(The libtorch rows and tables need `{TORCH_BIN}` next to `{LEAN_BIN}`: \
                     `cargo build --release -p acktr-torch`, libtorch from scripts/setup.sh.)"
                );
            }
        }
        Command::Plot {
            runs,
            out,
            window,
            label,
            group,
            title,
        } => {
            let opts = plot::PlotOptions {
                window,
                labels: label,
                group,
                title,
                ..plot::PlotOptions::default()
            };
            plot::plot_runs(&runs, &out, opts)?;
            println!("{}", out.display());
        }
    }
    Ok(())
}

/// `path`'s sibling executable `name` (same folder), if it exists.
pub fn sibling_exe(path: &std::path::Path, name: &str) -> Option<PathBuf> {
    let p = path.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    p.is_file().then_some(p)
}

/// This executable's sibling `name` (same folder as [`std::env::current_exe`]), if it exists.
pub fn sibling_of_current_exe(name: &str) -> Option<PathBuf> {
    sibling_exe(&std::env::current_exe().ok()?, name)
}

/// Commands the lean binary hands over before running anything, when `acktr-torch` exists:
/// `bench`, whose libtorch rows and tables only `acktr-torch` can add.
fn wants_torch_up_front(cli: &Cli) -> bool {
    // `--report`, `--import` and `--criterion` measure nothing; the data-parallel table stays
    // with the binary asked (`acktr-torch` may be built without MPI; run as `acktr-torch`, it
    // adds the MinAtar rows on libtorch).
    matches!(&cli.cmd, Command::Bench(b) if b.report.is_none() && b.import.is_none()
        && b.criterion.is_none() && b.mpi_ranks.is_empty() && !b.mpi_worker)
}

/// Replace this process with `acktr-torch` (same folder, same arguments). Returns only on
/// failure, with the message to print.
fn hand_over(why: &str, args: &[OsString]) -> String {
    let Some(exe) = sibling_of_current_exe(TORCH_BIN) else {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()))
            .unwrap_or_else(|| "this folder".into());
        return format!(
            "{why} needs libtorch, which `{LEAN_BIN}` does not load: it hands such work to \
             `{TORCH_BIN}`, which is not in {here}; build it with \
             `cargo build --release -p acktr-torch` (libtorch: bash scripts/setup.sh)"
        );
    };
    exec(&exe, args, why)
}

#[cfg(unix)]
fn exec(exe: &std::path::Path, args: &[OsString], why: &str) -> String {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let e = std::process::Command::new(exe).args(args).exec();
    format!("{why} needs libtorch: cannot start {}: {e}", exe.display())
}

#[cfg(not(unix))]
fn exec(exe: &std::path::Path, _: &[OsString], why: &str) -> String {
    format!(
        "{why} needs libtorch, which `{LEAN_BIN}` does not load: run `{}` with the same arguments",
        exe.display()
    )
}

/// The [`HostError::NeedsTorch`] reason anywhere in `e`'s chain.
fn needs_torch(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| match c.downcast_ref::<HostError>() {
        Some(HostError::NeedsTorch(why)) => Some(why.clone()),
        _ => None,
    })
}

/// `e` and its causes, `: `-separated, each once: a cause whose text its parent's message
/// already ends with (an I/O error a message quotes) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Parse the command line and run it; what both binaries' `main` is. `hooks`: the libtorch
/// backend (`acktr-torch`), or `None` (the lean `acktr`, which hands work needing libtorch
/// over to `acktr-torch`).
pub fn main(hooks: Option<TorchHooks>) -> ExitCode {
    if let Some(h) = hooks {
        // A second installation (not made by the binaries) keeps the first.
        let _ = torch_hooks::install(h);
    }
    // With libtorch in this process, never hand over (no loop).
    let lean = torch_hooks::get().is_none();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = train_options_given(&matches);
    if lean && wants_torch_up_front(&cli) && sibling_of_current_exe(TORCH_BIN).is_some() {
        eprintln!(
            "acktr: error: {}",
            hand_over("acktr bench's libtorch tables", &args)
        );
        return ExitCode::FAILURE;
    }
    // Native networks live inline (no allocator in the core): give large ones room.
    let worker = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || run(cli, &given));
    let result = match worker {
        Ok(h) => h
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic); please report it"))),
        Err(e) => Err(anyhow::anyhow!("cannot start the worker thread: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match needs_torch(&e) {
                // Nothing was written: `acktr-torch` does the whole command.
                Some(why) if lean => eprintln!("acktr: error: {}", hand_over(&why, &args)),
                _ => eprintln!("acktr: error: {}", message(&e)),
            }
            ExitCode::FAILURE
        }
    }
}
