//! `acktr`: train, evaluate, export, plot and benchmark ACKTR / A2C policies.

use std::path::PathBuf;
use std::process::ExitCode;

use acktr_host::settings::TrainArgs;
use acktr_host::{plot, train};
use anyhow::Context;
use clap::{Parser, Subcommand};

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
    /// events, checkpoints, policy.ackp for MLP policies).
    Train(Box<TrainArgs>),
    /// Evaluate a run's policy.
    Eval {
        /// Run folder.
        run: PathBuf,
        /// Episodes.
        #[arg(long, default_value_t = 20)]
        episodes: u32,
        /// Seed of the first episode.
        #[arg(long, default_value_t = 12_345)]
        seed: u64,
    },
    /// Export a run's MLP policy to acktr-core's policy file (what the firmware loads).
    Export {
        /// Run folder.
        run: PathBuf,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Benchmark ACKTR against A2C (throughput, update cost, ACKTR's extra cost) on the
    /// native and libtorch backends; prints markdown tables.
    Bench(acktr_host::bench::BenchArgs),
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Command::Train(args) => {
            train::train(&args).with_context(|| format!("training {}", args.env))?;
        }
        Command::Eval {
            run,
            episodes,
            seed,
        } => {
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
            acktr_host::run::checkpoint::write_atomic(&out, &bytes)?;
            let h = acktr_core::read_header(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}: {} bytes; obs {}, hidden {:?}, {} trunk(s), {:?}, {:?} head with {} outputs",
                out.display(),
                bytes.len(),
                h.obs_dim,
                h.hidden.as_slice(),
                h.trunks,
                h.activation,
                h.head,
                h.actions
            );
        }
        Command::Bench(args) => {
            print!("{}", acktr_host::bench::bench(&args)?);
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Native networks live inline (no allocator in the core): give large ones room.
    let worker = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || run(cli));
    let result = match worker {
        Ok(h) => h
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic); please report it"))),
        Err(e) => Err(anyhow::anyhow!("cannot start the worker thread: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acktr: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
