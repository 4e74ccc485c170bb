//! `acktr bench`'s libtorch tables (appended to acktr-host's native ones).

use std::time::{Duration, Instant};

use acktr_core::{Activation, Config, HeadKind};
use acktr_host::agent::{Agent, HostRollout};
use acktr_host::bench::{bench_config, median, ms, BenchArgs};
use acktr_host::error::Result;
use acktr_host::settings::Algo;

use crate::agent::TorchAgent;
use crate::learner::Timings;
use crate::net::Arch;

/// The `stat_stride`s whose ACKTR updates the libtorch tables time (factor statistics from
/// every `s`-th sample; A2C has none).
const STRIDES: [u32; 4] = [1, 4, 8, 32];

/// `acktr bench`'s libtorch tables: where an ACKTR update's time goes, MLP and Nature CNN.
pub fn tch_tables(args: &BenchArgs) -> Result<String> {
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
    let threads = tch::get_num_threads();
    out += &format!("\n## Where an ACKTR update's time goes (tch, {device:?}, {threads} intra-op thread(s); medians, ms)\n\n");
    out += "| network, batch | forward + loss | Fisher backward + factor statistics | loss backward | inverse (amortised: every 10th) | precondition | step | A2C update |\n|---|---|---|---|---|---|---|---|\n";

    let mut conv_loops = Vec::new();
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
            LOOP_ENVS * LOOP_STEPS
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
        let make = |config: Config| {
            TorchAgent::new(
                config,
                arch.clone(),
                &shape,
                HeadKind::Categorical,
                actions,
                device,
                0,
            )
        };
        // One warm-up update, then the median wall time of `n` more (ms).
        let update_ms = |agent: &mut TorchAgent, n: usize| -> Result<f64> {
            agent.update(&r)?;
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                agent.update(&r)?;
                times.push(t.elapsed());
            }
            Ok(ms(median(times)))
        };
        let a2c_ms = update_ms(&mut make(bench_config(Algo::A2c))?, reps)?;
        for stride in STRIDES {
            let mut acktr = make(Config {
                stat_stride: stride,
                ..bench_config(Algo::Acktr)
            })?;
            let (mut timings, mut inverse_every_update) = (Vec::new(), Vec::new());
            acktr.update(&r)?;
            for i in 0..reps.max(10) {
                acktr.update(&r)?;
                let t = acktr.learner.timings;
                if (i + 1) % 10 == 0 {
                    inverse_every_update.push(t.inverse);
                }
                timings.push(t);
            }
            let b = breakdown(&timings);
            let inv_full = ms(median(inverse_every_update));
            out += &format!(
                "| {name}, stat_stride {stride} | {:.2} | {:.2} | {:.2} | {:.2} ({:.2} when computed) | {:.2} | {:.2} | {:.2} |\n",
                b[0], b[1], b[2], inv_full / 10.0, inv_full, b[4], b[5], a2c_ms
            );
            let acktr_total = b[0] + b[1] + b[2] + inv_full / 10.0 + b[4] + b[5];
            out += &format!("| ↳ ACKTR total (amortised) / A2C | {acktr_total:.2} ms / {a2c_ms:.2} ms = **{:.2}×** | | | | | | |\n", acktr_total / a2c_ms);
        }
        if two_cores() {
            // The same update with K-FAC's work on its own thread (wall time, median).
            let mut acktr = make(Config {
                stat_stride: 8,
                ..bench_config(Algo::Acktr)
            })?;
            acktr.learner.set_worker(true)?;
            let t = update_ms(&mut acktr, reps.max(10))?;
            out += &format!("| ↳ stat_stride 8 with the K-FAC thread (Fisher pass, statistics and inverses beside the loss backward), update wall time / A2C | {t:.2} ms / {a2c_ms:.2} ms = **{:.2}×** | | | | | | |\n", t / a2c_ms);
        }
        if matches!(arch, Arch::Nature) {
            conv_loops.push(whole_loop(&r, &arch, &shape, actions, device)?);
        }
    }
    for rows in conv_loops {
        out += &format!(
            "\n## Nature CNN, whole loop (tch, {device:?}, {threads} intra-op thread(s)): {LOOP_ENVS} envs × {LOOP_STEPS} steps of random 84×84×4 observations, \
             then the update; the environment costs nothing here\n\n\
             | algo | env-steps/s (whole loop, {LOOP_ITERS} iterations each, alternating) | iteration (mean, ms) |\n|---|---|---|\n{rows}"
        );
    }
    Ok(out)
}

fn two_cores() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

/// Environments and steps of a whole-loop iteration (the Nature CNN table's batch).
const LOOP_ENVS: usize = 32;
const LOOP_STEPS: usize = 20;
/// Iterations per algorithm: ten, so that ACKTR's inverse (every 10th update) is amortised
/// exactly.
const LOOP_ITERS: usize = 10;

/// The Nature CNN's whole loop: `LOOP_STEPS` sampled forward passes of `LOOP_ENVS` observations
/// (the rollout's network work) and one update, A2C and ACKTR (`stat_stride 8`, the conv
/// presets' setting; with a second core also with K-FAC's work on its own thread) taking turns
/// iteration by iteration. Returns the table rows, with each ACKTR's throughput (total env
/// steps over total time) over A2C's.
fn whole_loop(
    r: &HostRollout,
    arch: &Arch,
    shape: &[usize],
    actions: usize,
    device: tch::Device,
) -> Result<String> {
    let mk = |config: Config| {
        TorchAgent::new(
            config,
            arch.clone(),
            shape,
            HeadKind::Categorical,
            actions,
            device,
            0,
        )
    };
    let acktr8 = Config {
        stat_stride: 8,
        ..bench_config(Algo::Acktr)
    };
    let mut agents = vec![
        ("A2C", mk(bench_config(Algo::A2c))?),
        ("ACKTR, stat_stride 8", mk(acktr8)?),
    ];
    if two_cores() {
        let mut a = mk(acktr8)?;
        a.learner.set_worker(true)?;
        agents.push(("ACKTR, stat_stride 8, K-FAC thread", a));
    }
    let obs_len: usize = shape.iter().product();
    let mut total = vec![Duration::ZERO; agents.len()];
    for (_, a) in agents.iter_mut() {
        a.update(r)?; // first update: allocation and, for ACKTR, the first inverse
    }
    for _ in 0..LOOP_ITERS {
        for (k, (_, a)) in agents.iter_mut().enumerate() {
            let t = Instant::now();
            for step in 0..LOOP_STEPS {
                let at = step * LOOP_ENVS * obs_len;
                a.act(&r.obs[at..at + LOOP_ENVS * obs_len], LOOP_ENVS, false)?;
            }
            a.update(r)?;
            total[k] += t.elapsed();
        }
    }
    let steps = (LOOP_ITERS * LOOP_ENVS * LOOP_STEPS) as f64;
    let sps: Vec<f64> = total.iter().map(|t| steps / t.as_secs_f64()).collect();
    let mut rows = String::new();
    for (k, (name, _)) in agents.iter().enumerate() {
        rows += &format!(
            "| {name} | {:.0} | {:.0} |\n",
            sps[k],
            ms(total[k]) / LOOP_ITERS as f64
        );
    }
    for (k, (name, _)) in agents.iter().enumerate().skip(1) {
        rows += &format!(
            "| {name} / A2C throughput | **{:.2}** | |\n",
            sps[k] / sps[0]
        );
    }
    Ok(rows)
}
