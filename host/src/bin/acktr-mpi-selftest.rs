//! `mpirun -np N acktr-mpi-selftest`: checks that data-parallel ACKTR and A2C over this MPI
//! installation (one machine or a cluster) compute what one process computes, and that the
//! ranks stay bit-identical. Exit 0 when every check passes; else a message and exit 1 (every
//! rank ends). The CI runs it with N = 2 (host/tests/mpi.rs).
//!
//! 1. **Same update as one process.** Every rank builds the same fixed batches of `N·b`
//!    samples; rank `r` updates from its `b` (samples `rb..(r+1)b`), one process (on every
//!    rank, [`SingleProcess`]) from all `N·b`, from the same state. The Fisher targets are made
//!    comparable with a counter-based generator: draw `k` of an update is a fixed function of
//!    `(update, k)`, and rank `r` starts at the number of draws ranks `0..r` make (counted by
//!    running their shares), so each sample meets the same targets in both. The states after
//!    the update must agree in relative norm, `‖x − y‖₂/‖y‖₂`: each slice of the whole state
//!    (every layer's weights, every factor, the momentum), the weights' change, the step
//!    statistics, within `1e-5` — or, for an update so ill-conditioned that one process moves
//!    further when every input is nudged by one ulp, within three times that move (no order of
//!    the f32 sums can reproduce it more closely; the line printed says which bound held).
//!    A control checks the comparison has teeth: the update from rank 0's share alone must
//!    differ by more than 100 × 1e-5.
//! 2. **Bit-identical ranks in real training.** CartPole-v1, 20 updates of the native agent
//!    through the trainer's own rollout code, each rank with its own environment seeds and
//!    sampler; the ranks' rollouts must differ and their whole training states must be equal
//!    bit for bit after every update.

use std::process::ExitCode;

use acktr_core::env::Pcg64;
use acktr_core::{
    Activation, ActorCritic, Collective, Config, Ending, HeadKind, Learner, Optimizer,
    SingleProcess, Step, UpdateStats,
};
use acktr_host::agent::{Agent, HostRollout};
use acktr_host::dist::World;
use acktr_host::native::NativeAgent;
use rand_core::{RngCore, SeedableRng};

/// Relative tolerance of the one-process comparison.
const TOL: f32 = 1e-5;
/// Block size of the updates (the host's).
const BLOCK: usize = 16;

/// Draw `k` of stream `key` is `splitmix64(key·2³² + k)`, whatever width is asked for: a
/// generator that can start at any draw.
#[derive(Clone)]
struct CounterRng {
    key: u64,
    next: u64,
}

impl CounterRng {
    fn new(key: u64, start: u64) -> Self {
        Self { key, next: start }
    }
}

impl RngCore for CounterRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        let mut z = (self.key << 32).wrapping_add(self.next);
        self.next += 1;
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A fixed batch of `n` steps for update `u`, the same on every rank.
fn batch<const OBS: usize, const P: usize>(head: HeadKind, u: u64, n: usize) -> Vec<Step<OBS, P>> {
    let mut rng = Pcg64::seed_from_u64(1000 + u);
    let mut x = move || acktr_core::uniform01(&mut rng) * 2.0 - 1.0;
    (0..n)
        .map(|_| {
            let obs = core::array::from_fn(|_| x());
            let mut action = [0.0; P];
            match head {
                HeadKind::Categorical => action[((x() + 1.0) * 0.5 * P as f32) as usize % P] = 1.0,
                HeadKind::Gaussian => action.iter_mut().for_each(|a| *a = 2.0 * x()),
            }
            let mut s = Step::new(obs, action, x(), x(), Ending::Continues);
            s.advantage = 3.0 * x() + 0.5;
            s.ret = 2.0 * x();
            s
        })
        .collect()
}

/// Every number of a learner's state, slice by slice.
fn state<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    l: &Learner<OBS, H, P, T>,
) -> Vec<Vec<f32>> {
    let mut l = l.clone();
    let mut out = Vec::new();
    l.visit_state_mut(|s| out.push(s.to_vec()));
    out
}

/// `‖a − b‖₂ / ‖b‖₂`, slice by slice (each layer's weights, each factor, …): the largest
/// (0 for equal slices).
fn rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let norm = b
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
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
        (a.measured_kl, b.measured_kl),
        (a.value_loss_after, b.value_loss_after),
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
        root.iter().zip(v).any(|(a, b)| a.to_bits() != b.to_bits()),
    ));
    let mut differ = [mine];
    world
        .all_reduce_sum_f64(&mut differ)
        .map_err(|e| e.to_string())?;
    Ok(differ[0] == 0.0)
}

/// Part 1 for one network and setting.
fn same_update<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    world: &mut World,
    name: &str,
    config: Config,
    head: HeadKind,
    per_rank: usize,
) -> Result<(), String> {
    let (rank, ranks) = (world.rank() as usize, world.ranks() as usize);
    let mut init = Pcg64::seed_from_u64(7);
    let net = ActorCritic::<OBS, H, P, T>::new(Activation::Tanh, head, &mut init);
    let mut single = Learner::new(config, net).map_err(|e| e.to_string())?;
    let mut worst = (0.0f32, 0.0f32, 0.0f32);
    let mut control = f32::INFINITY;
    // The update's own sensitivity to rounding: one process, every observation moved by one
    // ulp (for scale: reordered sums differ by about that much).
    let mut ulp = 0.0f32;
    for u in 0..4u64 {
        let all = batch::<OBS, P>(head, u, per_rank * ranks);
        let share = |r: usize| &all[r * per_rank..(r + 1) * per_rank];
        // Draws ranks `0..rank` make in this update: where this rank's stream starts.
        let mut start = 0;
        for r in 0..rank {
            let mut probe = single.clone();
            let mut rng = CounterRng::new(u, start);
            let _ =
                probe.update_data_parallel::<BLOCK>(share(r), None, &mut rng, &mut SingleProcess);
            start = rng.next;
        }
        let mut dp = single.clone();
        let mut alone = single.clone();
        let before_learner = single.clone();
        let before = state(&single);
        let s_dp = dp
            .update_data_parallel::<BLOCK>(share(rank), None, &mut CounterRng::new(u, start), world)
            .map_err(|e| format!("{name}: update {u}, data-parallel: {e}"))?;
        let s_one = single
            .update_data_parallel::<BLOCK>(
                &all,
                None,
                &mut CounterRng::new(u, 0),
                &mut SingleProcess,
            )
            .map_err(|e| format!("{name}: update {u}, one process: {e}"))?;
        let (after_dp, after_one) = (state(&dp), state(&single));
        let delta = |s: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let n = ActorCritic::<OBS, H, P, T>::num_params();
            let flat: Vec<f32> = s.iter().flatten().copied().take(n).collect();
            let b0: Vec<f32> = before.iter().flatten().copied().take(n).collect();
            vec![flat.iter().zip(&b0).map(|(a, b)| a - b).collect()]
        };
        worst.0 = worst.0.max(rel_diff(&after_dp, &after_one));
        worst.1 = worst.1.max(rel_diff(&delta(&after_dp), &delta(&after_one)));
        worst.2 = worst.2.max(stats_diff(&s_dp, &s_one));
        if !same_on_all_ranks(world, &after_dp.concat())? {
            return Err(format!("{name}: update {u}: the ranks' states differ"));
        }
        {
            let mut moved = before_learner.clone();
            let mut nudged = all.clone();
            for st in nudged.iter_mut() {
                st.obs
                    .iter_mut()
                    .for_each(|x| *x = f32::from_bits(x.to_bits() ^ 1));
            }
            let _ = moved.update_data_parallel::<BLOCK>(
                &nudged,
                None,
                &mut CounterRng::new(u, 0),
                &mut SingleProcess,
            );
            ulp = ulp.max(rel_diff(&delta(&state(&moved)), &delta(&after_one)));
        }
        if rank == 0 && ranks > 1 {
            let _ = alone.update_data_parallel::<BLOCK>(
                share(0),
                None,
                &mut CounterRng::new(u, 0),
                &mut SingleProcess,
            );
            control = control.min(rel_diff(&delta(&state(&alone)), &delta(&after_one)));
        }
    }
    println!(
        "rank {rank}: {name}: {ranks} ranks × {per_rank} samples vs one process × {}: state {:.1e}, weight change {:.1e}, statistics {:.1e}; one process on inputs moved 1 ulp: {ulp:.1e} (bound {:.1e}){}",
        per_rank * ranks,
        worst.0,
        worst.1,
        worst.2,
        TOL.max(3.0 * ulp),
        if control.is_finite() {
            format!("; rank 0's share alone: {control:.1e}")
        } else {
            String::new()
        }
    );
    // An ill-conditioned update (its factors nearly singular at this damping) moves by more
    // than 1e-5 under a one-ulp nudge of its inputs; no order of the sums reproduces it
    // closer than that, so it is held to three times its own sensitivity.
    let bound = TOL.max(3.0 * ulp);
    if !(worst.0 <= bound && worst.1 <= bound && worst.2 <= bound) {
        return Err(format!(
            "{name}: the data-parallel update differs from one process's by more than {bound:.1e}"
        ));
    }
    if control.is_finite() && control <= 100.0 * TOL {
        return Err(format!("{name}: control failed: one rank's share alone gives the same update ({control:.1e}), so the comparison cannot tell"));
    }
    Ok(())
}

/// Part 2: real CartPole training, 20 updates.
fn bit_identical_training(world: &mut World) -> Result<(), String> {
    let (rank, ranks) = (world.rank(), world.ranks());
    let (n_env, n_steps) = (4usize, 8usize);
    let config = Config {
        cold_iters: 3,
        inverse_every: 4,
        ..Config::default()
    };
    let mut agent =
        NativeAgent::<4, 64, 2, 1>::new(config, Activation::Tanh, HeadKind::Categorical, 3)
            .map_err(|e| e.to_string())?;
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
            .map_err(|e| format!("update {u}: {e}"))?;
        natural += usize::from(stats.natural);
        let s = state(agent.learner()).concat();
        if !same_on_all_ranks(world, &s)? {
            return Err(format!("update {u}: the ranks' training states differ"));
        }
    }
    if !matches!(config.optimizer, Optimizer::Acktr) || natural == 0 {
        return Err("no natural-gradient update ran".into());
    }
    println!(
        "rank {rank}: CartPole-v1, {ranks} ranks × {n_env} envs × {n_steps} steps: whole training state bit-identical on every rank after each of 20 updates ({natural} natural)"
    );
    Ok(())
}

fn run(world: &mut World) -> Result<(), String> {
    let acktr = Config {
        cold_iters: 1,
        inverse_every: 2,
        normalize_advantage: true,
        target_kl: 0.002,
        vf_iters: 3,
        vf_kl_clip: 0.002,
        weight_decay: 3e-4,
        ..Config::default()
    };
    same_update::<3, 16, 1, 2>(
        world,
        "ACKTR, Gaussian, separate trunks (vf_iters 3, target_kl, normalised advantages)",
        acktr,
        HeadKind::Gaussian,
        40,
    )?;
    let strided = Config {
        cold_iters: 1,
        inverse_every: 1,
        stat_stride: 2,
        normalize_advantage: true,
        ..Config::default()
    };
    same_update::<3, 16, 1, 2>(
        world,
        "ACKTR, Gaussian, separate trunks (stat_stride 2, inverse every update)",
        strided,
        HeadKind::Gaussian,
        40,
    )?;
    same_update::<4, 16, 2, 1>(
        world,
        "ACKTR, categorical, shared trunk",
        Config {
            cold_iters: 1,
            inverse_every: 2,
            ..Config::default()
        },
        HeadKind::Categorical,
        40,
    )?;
    same_update::<3, 16, 1, 2>(
        world,
        "A2C (RMSprop), Gaussian, separate trunks",
        Config::a2c(),
        HeadKind::Gaussian,
        40,
    )?;
    bit_identical_training(world)
}

fn main() -> ExitCode {
    let mut world = match World::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("acktr-mpi-selftest: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&mut world) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => world.abort(1, &format!("self-test failed: {e}")),
    }
}
