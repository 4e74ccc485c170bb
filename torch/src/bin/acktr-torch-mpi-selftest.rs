//! `mpirun -np N acktr-torch-mpi-selftest`: checks that data-parallel ACKTR and A2C on the
//! tch backend compute what one process computes, and that the ranks stay bit-identical. Exit
//! 0 when every check passes; else a message and exit 1 (every rank ends). The CI runs it with
//! N = 2 (torch/tests/mpi.rs); acktr-mpi-selftest is the native backend's.
//!
//! 1. **Same update as one process.** Every rank builds the same fixed batches of `N·b`
//!    samples with their Fisher noise (sampled actions, critic `ε`); rank `r` updates from its
//!    `b` (samples `rb..(r+1)b`) and their noise, one process (on every rank, one rank) from
//!    all `N·b`, from the same state (a checkpoint's blobs, loaded into both). The states
//!    after the update must agree within `1e-5` in relative norm, `‖x − y‖₂/‖y‖₂`, for each
//!    slice (every weight tensor, every optimizer state, the K-FAC factors; relative to the
//!    update's change of the slice where that is larger: a bias the update left near zero),
//!    the weights' change, and the logged statistics — or, for an update so sensitive to rounding that one
//!    process moves further when every input is nudged by one ulp, or when it takes the same
//!    samples in another order (the ranks' shares reversed), within three times that move (as
//!    acktr-mpi-selftest; the line printed says which bound held). A control checks
//!    the comparison has teeth: the update from rank 0's share alone must differ by more than
//!    100 × 1e-5.
//! 2. **Bit-identical ranks in real training.** CartPole-v1, 20 updates of the tch agent
//!    (ACKTR with its K-FAC thread, and A2C) through the trainer's own rollout code, each rank
//!    with its own environment seeds and sampler; the ranks' rollouts must differ and their
//!    whole training states (weights, optimizer state, factors) must be equal bit for bit
//!    after every update.

use std::process::ExitCode;

use acktr_core::{Activation, Collective, Config, HeadKind, Optimizer, UpdateStats};
use acktr_host::agent::{Agent, HostRollout};
use acktr_host::dist::World;
use acktr_torch::agent::TorchAgent;
use acktr_torch::learner::{Batch, FisherNoise, TorchLearner};
use acktr_torch::net::Arch;
use tch::{Device, Kind, Tensor};

/// Relative tolerance of the one-process comparison.
const TOL: f32 = 1e-5;

/// Uniform numbers in `[0, 1)` from a counter (splitmix64): the same on every rank.
struct Counter(u64);

impl Counter {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.next().max(1e-7), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// A fixed batch of `n` samples and its Fisher noise, the same on every rank.
struct Fixed {
    obs: Vec<f32>,
    /// Categorical: action indices; Gaussian: actions.
    actions: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    /// Categorical: sampled action indices; Gaussian: the `ε` of `ã = μ + σε`.
    fisher_actions: Vec<f32>,
    value_noise: Vec<f32>,
}

fn fixed(u: u64, n: usize, obs_len: usize, head: HeadKind, p: usize) -> Fixed {
    let mut c = Counter(1000 + u);
    let mut x = || c.next() * 2.0 - 1.0;
    let obs = (0..n * obs_len).map(|_| x()).collect();
    let width = if head == HeadKind::Categorical { 1 } else { p };
    let pick = |c: &mut Counter| match head {
        HeadKind::Categorical => ((c.next() * p as f32) as usize).min(p - 1) as f32,
        HeadKind::Gaussian => c.normal(),
    };
    let mut c = Counter(2000 + u);
    let actions = (0..n * width).map(|_| pick(&mut c)).collect();
    let advantages = (0..n).map(|_| 3.0 * (c.next() * 2.0 - 1.0) + 0.5).collect();
    let returns = (0..n).map(|_| 2.0 * (c.next() * 2.0 - 1.0)).collect();
    let fisher_actions = (0..n * width).map(|_| pick(&mut c)).collect();
    let value_noise = (0..n).map(|_| c.normal()).collect();
    Fixed {
        obs,
        actions,
        advantages,
        returns,
        fisher_actions,
        value_noise,
    }
}

/// `f` with its shares of `per_rank` samples in reverse order (the last rank's first): the
/// same samples, summed in another order.
fn reversed_shares(f: &Fixed, per_rank: usize, obs_len: usize, width: usize) -> Fixed {
    let shares = f.advantages.len() / per_rank;
    let flip = |v: &[f32], k: usize| -> Vec<f32> {
        (0..shares)
            .rev()
            .flat_map(|r| v[r * per_rank * k..(r + 1) * per_rank * k].iter().copied())
            .collect()
    };
    Fixed {
        obs: flip(&f.obs, obs_len),
        actions: flip(&f.actions, width),
        advantages: flip(&f.advantages, 1),
        returns: flip(&f.returns, 1),
        fisher_actions: flip(&f.fisher_actions, width),
        value_noise: flip(&f.value_noise, 1),
    }
}

/// Samples `from..to` of `f` as a batch, and its Fisher noise.
fn slice(
    f: &Fixed,
    from: usize,
    to: usize,
    obs_shape: &[i64],
    head: HeadKind,
    p: usize,
) -> (Batch, Tensor, Tensor) {
    let obs_len: i64 = obs_shape.iter().product();
    let n = (to - from) as i64;
    let mut shape = vec![n];
    shape.extend_from_slice(obs_shape);
    let obs = Tensor::from_slice(&f.obs[from * obs_len as usize..to * obs_len as usize])
        .view(shape.as_slice());
    let width = if head == HeadKind::Categorical { 1 } else { p };
    let acts = |v: &[f32]| {
        let t = Tensor::from_slice(&v[from * width..to * width]);
        match head {
            HeadKind::Categorical => t.to_kind(Kind::Int64),
            HeadKind::Gaussian => t.view([n, p as i64]),
        }
    };
    let batch = Batch {
        obs,
        actions: acts(&f.actions),
        advantages: Tensor::from_slice(&f.advantages[from..to]),
        returns: Tensor::from_slice(&f.returns[from..to]),
    };
    let noise = Tensor::from_slice(&f.value_noise[from..to]);
    (batch, acts(&f.fisher_actions), noise)
}

/// Every number of a learner's training state, tensor by tensor: weights, optimizer state,
/// K-FAC factors.
fn state(l: &TorchLearner) -> Vec<Vec<f32>> {
    let v = |t: &Tensor| {
        Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).reshape([-1])).unwrap_or_default()
    };
    let mut out: Vec<Vec<f32>> = l.net.params().iter().map(|p| v(p)).collect();
    out.extend(l.velocity.iter().map(v));
    for g in 0..l.net.groups {
        out.extend(l.kfac.a(g).map(v));
    }
    for i in 0..l.net.layers.len() {
        out.extend(l.kfac.s(i).map(v));
    }
    out
}

/// `‖a − b‖₂ / ‖b‖₂`, slice by slice: the largest (0 for equal slices).
fn rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    rel_diff_of_update(a, b, None)
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// [`rel_diff`], with `before` (the state before the update): each slice's difference
/// relative to the larger of `‖b‖₂` and the update's change of it, `‖b − before‖₂` (a
/// weight the update left near zero — a bias whose steps cancelled — has no scale of its
/// own to be relative to).
fn rel_diff_of_update(a: &[Vec<f32>], b: &[Vec<f32>], before: Option<&[Vec<f32>]>) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (a, b))| {
            let change = before.and_then(|s| s.get(i)).map_or(0.0, |p| {
                let d: Vec<f32> = b.iter().zip(p).map(|(x, y)| x - y).collect();
                norm(&d)
            });
            let norm = norm(b).max(change);
            let diff = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum::<f64>()
                .sqrt();
            if diff == 0.0 {
                0.0
            } else {
                (diff / norm.max(f64::MIN_POSITIVE)) as f32
            }
        })
        .fold(0.0, f32::max)
}

fn stats_diff(a: &UpdateStats, b: &UpdateStats) -> f32 {
    let pairs = [
        (a.policy_loss, b.policy_loss),
        (a.value_loss, b.value_loss),
        (a.entropy, b.entropy),
        (a.grad_norm, b.grad_norm),
        (a.step_size, b.step_size),
        (a.quadratic_form, b.quadratic_form),
    ];
    let mut worst = f32::from(u8::from(a.samples != b.samples || a.natural != b.natural));
    for (x, y) in pairs {
        if x != y {
            worst = worst.max((x - y).abs() / y.abs().max(f32::MIN_POSITIVE));
        }
    }
    worst
}

/// Whether rank 0's `v` equals this rank's, bit for bit (on every rank alike).
fn same_on_all_ranks(world: &mut World, v: &[f32]) -> Result<bool, String> {
    let mut root = v.to_vec();
    world
        .broadcast(&mut |f: &mut dyn FnMut(&mut [f32])| f(&mut root))
        .map_err(|e| e.to_string())?;
    let mine = f64::from(u8::from(
        root.len() != v.len() || root.iter().zip(v).any(|(a, b)| a.to_bits() != b.to_bits()),
    ));
    let mut differ = [mine];
    world
        .all_reduce_sum_f64(&mut differ)
        .map_err(|e| e.to_string())?;
    Ok(differ[0] == 0.0)
}

/// One learner case of part 1.
struct Case {
    name: &'static str,
    config: Config,
    arch: Arch,
    obs_shape: Vec<usize>,
    head: HeadKind,
    outputs: usize,
    per_rank: usize,
    worker: bool,
}

fn agent(c: &Case) -> Result<TorchAgent, String> {
    let mut a = TorchAgent::new(
        c.config,
        c.arch.clone(),
        &c.obs_shape,
        c.head,
        c.outputs,
        Device::Cpu,
        7,
    )
    .map_err(|e| e.to_string())?;
    a.learner.set_worker(c.worker).map_err(|e| e.to_string())?;
    Ok(a)
}

/// Part 1 for one case: four updates, each from one process's state.
fn same_update(world: &mut World, c: &Case) -> Result<(), String> {
    let (rank, ranks) = (world.rank() as usize, world.ranks() as usize);
    let name = c.name;
    let (mut single, mut dp, mut alone) = (agent(c)?, agent(c)?, agent(c)?);
    let (mut moved, mut reordered) = (agent(c)?, agent(c)?);
    // The update's own sensitivity to rounding: one process, every observation moved by one
    // ulp, and one process on the same samples with the ranks' shares in reverse order (its
    // sums in another order, as the all-reduce's are).
    let (mut ulp, mut order) = (0.0f32, 0.0f32);
    let width = if c.head == HeadKind::Categorical {
        1
    } else {
        c.outputs
    };
    let obs_shape: Vec<i64> = c.obs_shape.iter().map(|&d| d as i64).collect();
    let obs_len = c.obs_shape.iter().product();
    let (mut worst, mut control, mut natural) = ((0.0f32, 0.0f32, 0.0f32), f32::INFINITY, 0);
    for u in 0..4u64 {
        let all = fixed(u, c.per_rank * ranks, obs_len, c.head, c.outputs);
        // Both start from one process's state (its blobs, as a checkpoint holds them).
        let blobs = single.save().map_err(|e| e.to_string())?;
        for a in [&mut single, &mut dp, &mut alone, &mut moved, &mut reordered] {
            a.load(&blobs).map_err(|e| e.to_string())?;
        }
        let before = state(&single.learner);
        let (b, fa, vn) = slice(&all, 0, c.per_rank * ranks, &obs_shape, c.head, c.outputs);
        let s_one = single
            .learner
            .update(
                &b,
                FisherNoise::Given {
                    actions: &fa,
                    value_noise: &vn,
                },
            )
            .map_err(|e| format!("{name}: update {u}, one process: {e}"))?;
        let (from, to) = (rank * c.per_rank, (rank + 1) * c.per_rank);
        let (b, fa, vn) = slice(&all, from, to, &obs_shape, c.head, c.outputs);
        let s_dp = dp
            .learner
            .update_data_parallel(
                &b,
                FisherNoise::Given {
                    actions: &fa,
                    value_noise: &vn,
                },
                world,
            )
            .map_err(|e| format!("{name}: update {u}, data-parallel: {e}"))?;
        natural += usize::from(s_dp.natural);
        let (after_dp, after_one) = (state(&dp.learner), state(&single.learner));
        let params = single.learner.net.params().len();
        let delta = |s: &[Vec<f32>]| -> Vec<Vec<f32>> {
            s.iter()
                .zip(&before)
                .take(params)
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
                .collect()
        };
        worst.0 = worst
            .0
            .max(rel_diff_of_update(&after_dp, &after_one, Some(&before)));
        worst.1 = worst.1.max(rel_diff(&delta(&after_dp), &delta(&after_one)));
        worst.2 = worst.2.max(stats_diff(&s_dp, &s_one));
        if !same_on_all_ranks(world, &after_dp.concat())? {
            return Err(format!("{name}: update {u}: the ranks' states differ"));
        }
        {
            let mut nudged = fixed(u, c.per_rank * ranks, obs_len, c.head, c.outputs);
            nudged
                .obs
                .iter_mut()
                .for_each(|x| *x = f32::from_bits(x.to_bits() ^ 1));
            let (b, fa, vn) = slice(
                &nudged,
                0,
                c.per_rank * ranks,
                &obs_shape,
                c.head,
                c.outputs,
            );
            let _ = moved.learner.update(
                &b,
                FisherNoise::Given {
                    actions: &fa,
                    value_noise: &vn,
                },
            );
            ulp = ulp.max(rel_diff(&delta(&state(&moved.learner)), &delta(&after_one)));
            let flipped = reversed_shares(&all, c.per_rank, obs_len, width);
            let (b, fa, vn) = slice(
                &flipped,
                0,
                c.per_rank * ranks,
                &obs_shape,
                c.head,
                c.outputs,
            );
            let _ = reordered.learner.update(
                &b,
                FisherNoise::Given {
                    actions: &fa,
                    value_noise: &vn,
                },
            );
            order = order.max(rel_diff_of_update(
                &state(&reordered.learner),
                &after_one,
                Some(&before),
            ));
        }
        if rank == 0 && ranks > 1 {
            let (b, fa, vn) = slice(&all, 0, c.per_rank, &obs_shape, c.head, c.outputs);
            let _ = alone.learner.update(
                &b,
                FisherNoise::Given {
                    actions: &fa,
                    value_noise: &vn,
                },
            );
            control = control.min(rel_diff(&delta(&state(&alone.learner)), &delta(&after_one)));
        }
    }
    // An ill-conditioned update (its factors nearly singular at this damping) moves by more
    // than 1e-5 under a one-ulp nudge of its inputs; no order of the sums reproduces it
    // closer than that, so it is held to three times its own sensitivity.
    let bound = TOL.max(3.0 * ulp.max(order));
    println!(
        "rank {rank}: {name}: {ranks} ranks × {} samples vs one process × {}: state {:.1e}, weight change {:.1e}, statistics {:.1e}; one process on inputs moved 1 ulp: {ulp:.1e}, on its samples in another order: {order:.1e} (bound {bound:.1e}; {natural} natural){}",
        c.per_rank,
        c.per_rank * ranks,
        worst.0,
        worst.1,
        worst.2,
        if control.is_finite() {
            format!("; rank 0's share alone: {control:.1e}")
        } else {
            String::new()
        }
    );
    if !(worst.0 <= bound && worst.1 <= bound && worst.2 <= bound) {
        return Err(format!(
            "{name}: the data-parallel update differs from one process's by more than {bound:.1e}"
        ));
    }
    if matches!(c.config.optimizer, Optimizer::Acktr) && natural == 0 {
        return Err(format!("{name}: no natural-gradient update ran"));
    }
    if control.is_finite() && control <= 100.0 * TOL {
        return Err(format!("{name}: control failed: one rank's share alone gives the same update ({control:.1e}), so the comparison cannot tell"));
    }
    Ok(())
}

/// Part 2: real CartPole training, 20 updates.
fn bit_identical_training(world: &mut World, name: &str, config: Config) -> Result<(), String> {
    let (rank, ranks) = (world.rank(), world.ranks());
    let (n_env, n_steps) = (4usize, 8usize);
    let arch = Arch::Mlp {
        hidden: vec![64, 64],
        separate: false,
        activation: Activation::Tanh,
    };
    let mut agent = TorchAgent::new(config, arch, &[4], HeadKind::Categorical, 2, Device::Cpu, 3)
        .map_err(|e| e.to_string())?;
    let acktr = matches!(config.optimizer, Optimizer::Acktr);
    agent.learner.set_worker(acktr).map_err(|e| e.to_string())?;
    agent
        .join_data_parallel(world, (rank > 0).then_some(99 + u64::from(rank)))
        .map_err(|e| e.to_string())?;
    let mut env = acktr_host::envs::make("CartPole-v1", n_env).map_err(|e| e.to_string())?;
    let mut obs = env
        .reset(5 + u64::from(rank) * n_env as u64)
        .map_err(|e| e.to_string())?;
    let mut rollout = HostRollout::new(n_env, 4, 2);
    let mut natural = 0;
    for u in 0..20 {
        acktr_host::train::collect(&mut agent, env.as_mut(), &mut obs, &mut rollout, n_steps)
            .map_err(|e| e.to_string())?;
        // The ranks' rollouts differ (their own environments and samplers).
        let mut sums = vec![0.0f64; ranks as usize];
        sums[rank as usize] = rollout.obs.iter().map(|&x| f64::from(x)).sum();
        world
            .all_reduce_sum_f64(&mut sums)
            .map_err(|e| e.to_string())?;
        if ranks > 1 && sums.iter().skip(1).any(|&s| s == sums[0]) {
            return Err(format!("update {u}: two ranks collected the same rollout"));
        }
        let stats = agent
            .update_data_parallel(&rollout, world)
            .map_err(|e| format!("{name}: update {u}: {e}"))?;
        natural += usize::from(stats.natural);
        if !same_on_all_ranks(world, &state(&agent.learner).concat())? {
            return Err(format!(
                "{name}: update {u}: the ranks' training states differ"
            ));
        }
    }
    if acktr && natural == 0 {
        return Err(format!("{name}: no natural-gradient update ran"));
    }
    println!(
        "rank {rank}: {name}, CartPole-v1, {ranks} ranks × {n_env} envs × {n_steps} steps: whole training state bit-identical on every rank after each of 20 updates ({natural} natural)"
    );
    Ok(())
}

fn run(world: &mut World) -> Result<(), String> {
    let mlp = |separate| Arch::Mlp {
        hidden: vec![16, 16],
        separate,
        activation: Activation::Tanh,
    };
    let cases = [
        Case {
            name: "tch ACKTR, categorical, shared trunk",
            config: Config {
                cold_iters: 1,
                inverse_every: 2,
                ..Config::default()
            },
            arch: mlp(false),
            obs_shape: vec![4],
            head: HeadKind::Categorical,
            outputs: 2,
            per_rank: 40,
            worker: false,
        },
        Case {
            name:
                "tch ACKTR, Gaussian, separate trunks (stat_stride 2, weight decay, K-FAC thread)",
            config: Config {
                cold_iters: 1,
                inverse_every: 1,
                stat_stride: 2,
                weight_decay: 3e-4,
                ..Config::default()
            },
            arch: mlp(true),
            obs_shape: vec![3],
            head: HeadKind::Gaussian,
            outputs: 1,
            per_rank: 40,
            worker: true,
        },
        Case {
            name: "tch ACKTR, MinAtar conv net, categorical",
            config: Config {
                cold_iters: 1,
                inverse_every: 2,
                ..Config::default()
            },
            arch: Arch::MinAtar,
            obs_shape: vec![4, 10, 10],
            head: HeadKind::Categorical,
            outputs: 6,
            per_rank: 16,
            worker: false,
        },
        Case {
            name: "tch A2C (RMSprop), Gaussian, separate trunks",
            config: Config::a2c(),
            arch: mlp(true),
            obs_shape: vec![3],
            head: HeadKind::Gaussian,
            outputs: 1,
            per_rank: 40,
            worker: false,
        },
    ];
    for c in &cases {
        same_update(world, c)?;
    }
    bit_identical_training(
        world,
        "tch ACKTR",
        Config {
            cold_iters: 3,
            inverse_every: 4,
            ..Config::default()
        },
    )?;
    bit_identical_training(world, "tch A2C", Config::a2c())
}

fn main() -> ExitCode {
    // One intra-op thread, as the trainer runs an MLP on the CPU (the ranks share the cores).
    tch::set_num_threads(1);
    let mut world = match World::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("acktr-torch-mpi-selftest: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&mut world) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => world.abort(1, &format!("self-test failed: {e}")),
    }
}
