//! `acktr bench`: throughput and update cost of ACKTR against A2C on the same network, batch
//! and code, and where ACKTR's extra time goes. Prints markdown tables (medians of several
//! repetitions; ratios taken within one run).

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
    /// Updates timed per measurement (medians are over these).
    #[arg(long, default_value_t = 40)]
    pub updates: usize,
    /// Updates of the Nature CNN (each is large on a CPU).
    #[arg(long, default_value_t = 5)]
    pub conv_updates: usize,
    /// Skip the Nature CNN table.
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
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    sps: f64,
    update: Duration,
}

/// Whole loop (collect + update) and isolated updates of one agent on CartPole 16 × 20.
fn mlp_row(agent: &mut dyn Agent, updates: usize) -> Result<Row> {
    let (n_env, n_steps) = (16, 20);
    let mut env = envs::make("CartPole-v1", n_env)?;
    let (_, act_len) = head_for(env.action_space());
    let mut rollout = HostRollout::new(n_env, env.obs_len(), act_len);
    let mut obs = env.reset(0)?;
    for _ in 0..3 {
        collect(agent, env.as_mut(), &mut obs, &mut rollout, n_steps)?;
        agent.update(&rollout)?;
    }
    let t = Instant::now();
    for _ in 0..updates {
        collect(agent, env.as_mut(), &mut obs, &mut rollout, n_steps)?;
        agent.update(&rollout)?;
    }
    let sps = (updates * n_env * n_steps) as f64 / t.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(updates);
    for _ in 0..updates {
        let t = Instant::now();
        agent.update(&rollout)?;
        times.push(t.elapsed());
    }
    Ok(Row {
        sps,
        update: median(times),
    })
}

fn bench_config(algo: Algo) -> Config {
    match algo {
        // Natural steps from the first update, so every timed update is an ACKTR update.
        Algo::Acktr => Config {
            cold_iters: 0,
            ..Config::default()
        },
        Algo::A2c => Config::a2c(),
    }
}

/// Whole-process wall time of the Pendulum-v1 preset (and of a peer's command beside it),
/// interleaved run by run.
fn pendulum_table(args: &BenchArgs) -> Result<String> {
    use crate::error::HostError;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().map_err(|e| HostError::io("the acktr executable", e))?;
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
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
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
        med(&ours),
        steps / med(&ours)
    );
    if let Some(cmd) = &args.beside {
        out += &format!(
            "| `{cmd}` | {} | {:.2} s | {:.0} |\n",
            list(&peer),
            med(&peer),
            steps / med(&peer)
        );
        out += &format!(
            "\nOur median wall time / theirs: {:.2}\n",
            med(&ours) / med(&peer)
        );
    }
    Ok(out)
}

/// Run the benchmark; returns the markdown report.
pub fn bench(args: &BenchArgs) -> Result<String> {
    let mut out = String::new();
    out += "## MLP 64-64 (tanh, shared trunk), CartPole-v1, 16 envs × 20 steps\n\n";
    out += "| backend | algo | env-steps/s (whole loop) | update (median) |\n|---|---|---|---|\n";
    let mut ratios = Vec::new();
    let backends: &[&str] = if cfg!(feature = "torch") {
        &["native", "tch"]
    } else {
        &["native"]
    };
    for &backend in backends {
        let mut rows = Vec::new();
        for (algo, stride) in [(Algo::Acktr, 1), (Algo::Acktr, 4), (Algo::A2c, 1)] {
            let mut agent = make(backend, algo, stride)?;
            let r = mlp_row(agent.as_mut(), args.updates)?;
            let name = match algo {
                Algo::Acktr => format!("ACKTR, stat_stride {stride}"),
                Algo::A2c => "A2C".into(),
            };
            out += &format!(
                "| {backend} | {name} | {:.0} | {:.3} ms |\n",
                r.sps,
                ms(r.update)
            );
            rows.push(r);
        }
        for (k, stride) in [(0, 1), (1, 4)] {
            ratios.push((
                backend,
                stride,
                rows[k].sps / rows[2].sps,
                rows[k].update.as_secs_f64() / rows[2].update.as_secs_f64(),
            ));
        }
    }
    out += "\n| backend | stat_stride | ACKTR/A2C throughput | ACKTR/A2C update time |\n|---|---|---|---|\n";
    for (b, stride, t, u) in ratios {
        out += &format!("| {b} | {stride} | {t:.2} | {u:.2} |\n");
    }
    if args.pendulum_runs > 0 {
        out += &pendulum_table(args)?;
    }
    #[cfg(feature = "torch")]
    {
        out += &tch_tables(args)?;
    }
    Ok(out)
}

fn make(backend: &str, algo: Algo, stat_stride: u32) -> Result<Box<dyn Agent>> {
    let targs = TrainArgs::parse_for_bench(algo, backend);
    let mut s = targs.resolve()?;
    s.config = Config {
        stat_stride,
        ..bench_config(algo)
    };
    let env = envs::make("CartPole-v1", 1)?;
    crate::train::make_agent(&mut s, env.as_ref(), crate::settings::DeviceArg::Cpu)
}

#[cfg(feature = "torch")]
fn tch_tables(args: &BenchArgs) -> Result<String> {
    use crate::torch::agent::TorchAgent;
    use crate::torch::learner::Timings;
    use crate::torch::net::Arch;
    use acktr_core::{Activation, HeadKind};

    let breakdown = |t: &[Timings]| -> [f64; 6] {
        let pick = |f: fn(&Timings) -> Duration| ms(median(t.iter().map(f).collect()));
        [
            pick(|t| t.forward),
            pick(|t| t.factors),
            pick(|t| t.backward),
            pick(|t| t.inverse),
            pick(|t| t.precondition),
            pick(|t| t.step),
        ]
    };
    let mut out = String::new();
    let device = if tch::Cuda::is_available() {
        tch::Device::Cuda(0)
    } else {
        tch::Device::Cpu
    };
    out += &format!("\n## Where an ACKTR update's time goes (tch, {device:?}; medians, ms)\n\n");
    out += "| network, batch | forward + loss | Fisher backward + factor statistics | loss backward | inverse (amortised: every 10th) | precondition | step | A2C update |\n|---|---|---|---|---|---|---|---|\n";

    // MLP on CartPole-like data.
    let cases: Vec<(&str, Arch, Vec<usize>, usize, usize)> = vec![
        (
            "MLP 64-64, 16×20",
            Arch::Mlp {
                hidden: vec![64, 64],
                separate: false,
                activation: Activation::Tanh,
            },
            vec![4],
            2,
            args.updates,
        ),
        (
            "Nature CNN 84×84×4, 32×20",
            Arch::Nature,
            vec![4, 84, 84],
            4,
            args.conv_updates,
        ),
    ];
    for (name, arch, shape, actions, reps) in cases {
        if args.no_conv && matches!(arch, Arch::Nature) {
            continue;
        }
        let batch = if matches!(arch, Arch::Nature) {
            32 * 20
        } else {
            16 * 20
        };
        let obs_len: usize = shape.iter().product();
        let mut r = HostRollout::new(batch, obs_len, actions);
        tch::manual_seed(0);
        let scale = if matches!(arch, Arch::Nature) {
            255.0
        } else {
            1.0
        };
        r.obs = Vec::<f32>::try_from(
            tch::Tensor::rand(
                [(batch * obs_len) as i64],
                (tch::Kind::Float, tch::Device::Cpu),
            ) * scale,
        )
        .unwrap_or_default();
        for i in 0..batch {
            let mut a = vec![0.0; actions];
            a[i % actions] = 1.0;
            r.actions.extend_from_slice(&a);
        }
        r.rewards = vec![0.0; batch];
        r.values = vec![0.0; batch];
        r.ends = vec![acktr_core::Ending::Continues; batch];
        r.advantages = (0..batch)
            .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
            .collect();
        r.returns = (0..batch)
            .map(|i| ((i * 104_729) % 17) as f32 / 8.0)
            .collect();
        let mut timings = Vec::new();
        let mut acktr = TorchAgent::new(
            bench_config(Algo::Acktr),
            arch.clone(),
            &shape,
            HeadKind::Categorical,
            actions,
            device,
            0,
        )?;
        let mut inverse_every_update = Vec::new();
        acktr.update(&r)?;
        for i in 0..reps.max(10) {
            acktr.update(&r)?;
            let t = acktr.learner.timings;
            if (i + 1) % 10 == 0 {
                inverse_every_update.push(t.inverse);
            }
            timings.push(t);
        }
        let mut a2c = TorchAgent::new(
            bench_config(Algo::A2c),
            arch,
            &shape,
            HeadKind::Categorical,
            actions,
            device,
            0,
        )?;
        a2c.update(&r)?;
        let mut a2c_times = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            a2c.update(&r)?;
            a2c_times.push(t.elapsed());
        }
        let b = breakdown(&timings);
        let a2c_ms = ms(median(a2c_times));
        let inv_full = ms(median(inverse_every_update));
        out += &format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} ({:.2} when computed) | {:.2} | {:.2} | {:.2} |\n",
            b[0], b[1], b[2], inv_full / 10.0, inv_full, b[4], b[5], a2c_ms
        );
        let acktr_total = b[0] + b[1] + b[2] + inv_full / 10.0 + b[4] + b[5];
        out += &format!("| ↳ ACKTR total (amortised) / A2C | {acktr_total:.2} ms / {a2c_ms:.2} ms = {:.2}× | | | | | | |\n", acktr_total / a2c_ms);
    }
    Ok(out)
}

impl TrainArgs {
    /// Defaults for the benchmark's CartPole agents.
    fn parse_for_bench(algo: Algo, backend: &str) -> TrainArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            t: TrainArgs,
        }
        let b = if backend == "native" { "native" } else { "tch" };
        let algo = match algo {
            Algo::Acktr => "acktr",
            Algo::A2c => "a2c",
        };
        P::parse_from([
            "bench",
            "--env",
            "CartPole-v1",
            "--backend",
            b,
            "--algo",
            algo,
        ])
        .t
    }
}
