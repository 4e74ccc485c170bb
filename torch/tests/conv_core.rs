//! The tch backend's small MinAtar conv net (`Arch::MinAtarSmall`) and acktr-core's
//! `ActorCritic<64, 32, 3, 1, 400, ConvEncoder<4, 4, 4, 2, 64, 10, 10, 4, 4, true>>` are one
//! network and one algorithm. Each side computes with its own code (libtorch's `conv2d`, its
//! autograd and `im2col` patches against the core's loops); only weights, observations and
//! the Fisher targets cross over, never a result.
//!
//! - **Same outputs** (fresh net, 1e-5 relative): the tch net's weights copied layer by layer
//!   into the core's fields (conv `F×C×K×K` as the core's `F×(C·K·K)`, dense `O×I` as they
//!   are) give the same logits and values on 160 MinAtar Breakout boards (played by the core's
//!   env, and random ones). The core reads the board channel-last (HWC, as the env gives it),
//!   tch channel-first (the host's transposition, redone here), so the layout of the
//!   observation, the patches and the flatten are all checked.
//! - **The core acts as the trained tch policy** (1e-5 relative): after 8 ACKTR updates of the
//!   tch learner (its own Fisher draws; the weights move by far more than the tolerance), a
//!   fresh copy into the core gives the same logits and values, and the same greedy action
//!   wherever the top two logits are not a near-tie.
//! - **The export is the core's `MinAtarSmall`** (1e-5 relative): a tch agent after 8 ACKTR
//!   updates (`Agent::update`, host rollouts of CHW boards), exported by `Agent::export` and
//!   read by acktr-core's `read_policy_into` (the firmware's loader; the file says HWC), gives
//!   the same logits, values and greedy actions as the agent (`Agent::act`, CHW boards) on 160
//!   boards. Nothing is copied by the test: the file is the only thing that crosses.
//! - **The same update** (1e-4 relative, as the MLP's `tests/tests/core_vs_host.rs`): from
//!   the trained weights (the policy head ×30, so that its share of the gradient and of
//!   the trunk's `S` is not hidden by the 0.01 initialisation) and the same batches, 4 updates
//!   by each learner (no cold start, inverses every 2 updates, momentum 0.9): after each, every
//!   Kronecker factor (the conv's KFC `Ā` from patches with the bias folded in and its `S`, and
//!   the dense layers'), `q = gᵀF̂⁻¹g`, `η`, `|g|`, the natural-gradient direction and the new
//!   weights, layer by layer. The Fisher's sampled targets are the one thing that must be the
//!   same and cannot be computed twice: the core draws them from its generator, and the test
//!   replays that generator (same draws, same order: `uniform01` against the softmax's
//!   cumulative sums, then the critic's `standard_normal`) to give tch the same targets
//!   (`FisherNoise::Given`). A wrong replay would show as a mismatch, never hide one. Once
//!   with every sample in the statistics, once from every 8th (the MinAtar preset's
//!   `stat_stride`, with which tch runs a separate Fisher pass).
//!
//! Mutations tried, each failing here (then reverted): the conv weights copied with kernel rows
//! and columns swapped (the three tests that copy: logits off by 0.01 of 0.02), the boards
//! handed to tch without the HWC→CHW transposition (the same three), the export's conv marked
//! channel-first (the export: the core's loader refuses the file), its kernels written
//! transposed (the export: logits off by 0.1 of 0.14), the bias row and column of tch's conv
//! `Ā` zeroed (the update: conv `Ā`), the conv's damping in tch ×1.01 (the update: `q`, 1e-3
//! relative), the core's conv bias gradient without its last position (the update: `q`, 7e-3
//! relative). Unmutated, the largest relative differences are 3e-7 for the outputs, 6e-6 for
//! the factors and 1e-5 for the directions (f32 on both sides).

mod common;

use acktr_core::env::{Action, Breakout, Env, Pcg64, BREAKOUT_OBS};
use acktr_core::{
    log_softmax, read_policy_into, standard_normal, uniform01, Activation, ActorCritic, Config,
    ConvEncoder, Ending, Forward, HeadKind, Learner, MinAtarSmall, Step,
};
use acktr_host::agent::Agent;
use acktr_torch::agent::TorchAgent;
use acktr_torch::learner::{Batch, FisherNoise, TorchLearner};
use acktr_torch::net::{Arch, TorchNet};
use tch::{Device, Kind, Tensor};

/// MinAtar Breakout: 10×10 board, 4 channels, 3 actions.
const C: usize = 4;
const HW: usize = 10;
const IN: usize = C * HW * HW;
const P: usize = 3;
/// The conv's features (4 filters × 4×4) and the trunk's width.
const FEAT: usize = 64;
const HID: usize = 32;
type Enc = ConvEncoder<C, 4, 4, 2, 64, HW, HW, 4, 4, true>;
type Net = ActorCritic<FEAT, HID, P, 1, IN, Enc>;
type Learn = Learner<FEAT, HID, P, 1, IN, Enc>;

fn flat(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// Max abs difference ≤ `tol` × the largest magnitude in `a` or `b` (at least 1e-3).
fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().chain(b).fold(1e-3f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max abs diff {err} (scale {scale}, tolerance {tol})"
    );
}

fn new_tch_net() -> TorchNet {
    TorchNet::new(
        Arch::MinAtarSmall,
        &[C, HW, HW],
        HeadKind::Categorical,
        P,
        Device::Cpu,
    )
    .unwrap()
}

/// The core's copy of a tch net, field by field. tch's layers: conv, dense 64→32, dense
/// 32→32, policy head, value head.
fn to_core(t: &TorchNet) -> Net {
    assert_eq!(t.layers.len(), 5);
    let mut net = Net::zeros(Activation::Relu, HeadKind::Categorical);
    let l = &t.layers;
    // `F×C×K×K` row-major is the core's `w[f][(c·K + i)·K + j]`.
    net.encoder
        .conv
        .w
        .as_flattened_mut()
        .copy_from_slice(&flat(&l[0].w));
    net.encoder.conv.b.copy_from_slice(&flat(&l[0].b));
    let tr = &mut net.trunks[0];
    tr.l1.w.as_flattened_mut().copy_from_slice(&flat(&l[1].w));
    tr.l1.b.copy_from_slice(&flat(&l[1].b));
    tr.l2.w.as_flattened_mut().copy_from_slice(&flat(&l[2].w));
    tr.l2.b.copy_from_slice(&flat(&l[2].b));
    net.pi.w.as_flattened_mut().copy_from_slice(&flat(&l[3].w));
    net.pi.b.copy_from_slice(&flat(&l[3].b));
    net.v.w.as_flattened_mut().copy_from_slice(&flat(&l[4].w));
    net.v.b.copy_from_slice(&flat(&l[4].b));
    net
}

/// The core's parameters in tch's layer order: `(W, b)` of conv, l1, l2, π, v.
fn core_layers(n: &Net) -> [(Vec<f32>, Vec<f32>); 5] {
    let d = |w: &[f32], b: &[f32]| (w.to_vec(), b.to_vec());
    let tr = &n.trunks[0];
    [
        d(n.encoder.conv.w.as_flattened(), &n.encoder.conv.b),
        d(tr.l1.w.as_flattened(), &tr.l1.b),
        d(tr.l2.w.as_flattened(), &tr.l2.b),
        d(n.pi.w.as_flattened(), &n.pi.b),
        d(n.v.w.as_flattened(), &n.v.b),
    ]
}

/// The host's transposition of a MinAtar board: HWC `o[(r·10 + q)·4 + c]` to CHW
/// `[c][r][q]`, as `[n, 4, 10, 10]`.
fn chw(obs: &[[f32; IN]]) -> Tensor {
    let mut v: Vec<f32> = Vec::with_capacity(obs.len() * IN);
    for o in obs {
        for c in 0..C {
            v.extend(o.iter().skip(c).step_by(C));
        }
    }
    Tensor::from_slice(&v).view([obs.len() as i64, C as i64, HW as i64, HW as i64])
}

/// `n` boards: half from Breakout played with random actions (the core's env), half random
/// cells on with probability 0.3.
fn boards(n: usize, seed: u64) -> Vec<[f32; IN]> {
    let mut rng = Pcg64::from_seed(seed);
    let mut env = Breakout::default();
    let mut o: [f32; BREAKOUT_OBS] = env.reset(Some(seed));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % 2 == 0 {
            out.push(o);
            let a = (rng.next_u64() % P as u64) as usize;
            let t = env.step(Action::Discrete(a)).unwrap();
            o = if t.terminated || t.truncated {
                env.reset(None)
            } else {
                t.obs
            };
        } else {
            out.push(core::array::from_fn(|_| {
                f32::from(u8::from(uniform01(&mut rng) < 0.3))
            }));
        }
    }
    out
}

/// Logits and values of both nets on `obs` agree to 1e-5 relative; the greedy actions agree
/// away from near-ties. Returns each board's greedy action (`None` for a near-tie).
fn same_outputs(what: &str, t: &TorchNet, core: &Net, obs: &[[f32; IN]]) -> Vec<Option<usize>> {
    let fw = tch::no_grad(|| t.forward(&chw(obs)));
    let (tz, tv) = (flat(&fw.z), flat(&fw.v));
    let (mut cz, mut cv) = (Vec::new(), Vec::new());
    for o in obs {
        let mut f = Forward::zeros();
        core.forward(o, &mut f);
        cz.extend_from_slice(&f.z);
        cv.push(f.v);
    }
    close(&format!("{what}: logits"), &cz, &tz, 1e-5);
    close(&format!("{what}: values"), &cv, &tv, 1e-5);
    let scale = tz.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let mut greedy = Vec::with_capacity(obs.len());
    for (i, (o, z)) in obs.iter().zip(tz.chunks(P)).enumerate() {
        let mut s = z.to_vec();
        s.sort_by(|a, b| b.total_cmp(a));
        if s[0] - s[1] < 1e-4 * scale {
            greedy.push(None); // a near-tie: rounding may pick either
            continue;
        }
        let k = core
            .act_deterministic(o)
            .iter()
            .position(|&a| a == 1.0)
            .unwrap();
        assert_eq!(z[k], s[0], "{what}: greedy action of board {i}");
        greedy.push(Some(k));
    }
    greedy
}

/// Not a constant policy: at least two actions are the greedy one somewhere.
fn assert_not_constant(what: &str, greedy: &[Option<usize>]) {
    let mut counts = [0; P];
    for k in greedy.iter().flatten() {
        counts[*k] += 1;
    }
    assert!(
        counts.iter().filter(|&&c| c > 0).count() >= 2,
        "{what}: greedy actions {counts:?}"
    );
}

/// A batch of `obs` with random actions, advantages and returns, for both sides.
fn batch(obs: &[[f32; IN]], rng: &mut Pcg64) -> (Vec<Step<IN, P>>, Batch) {
    let (mut steps, mut idx, mut adv, mut ret) = (vec![], vec![], vec![], vec![]);
    for o in obs {
        let k = (rng.next_u64() % P as u64) as usize;
        let mut a = [0.0; P];
        a[k] = 1.0;
        let mut s = Step::new(*o, a, 0.0, 0.0, Ending::Continues);
        s.advantage = standard_normal(rng);
        s.ret = 2.0 * standard_normal(rng);
        idx.push(k as i64);
        adv.push(s.advantage);
        ret.push(s.ret);
        steps.push(s);
    }
    let b = Batch {
        obs: chw(obs),
        actions: Tensor::from_slice(&idx),
        advantages: Tensor::from_slice(&adv),
        returns: Tensor::from_slice(&ret),
    };
    (steps, b)
}

/// 8 ACKTR updates of a fresh tch learner with its own Fisher draws; returns its net.
fn trained_tch_net() -> TorchNet {
    let config = Config {
        cold_iters: 2,
        eta_max: 0.5,
        kl_clip: 0.05,
        ..Config::default()
    };
    let mut learner = TorchLearner::new(config, new_tch_net()).unwrap();
    let before: Vec<f32> = learner.net.params().iter().flat_map(|p| flat(p)).collect();
    let mut rng = Pcg64::from_seed(11);
    for k in 0..8 {
        let (_, b) = batch(&boards(64, 100 + k), &mut rng);
        learner.update(&b, FisherNoise::Draw).unwrap();
    }
    let after: Vec<f32> = learner.net.params().iter().flat_map(|p| flat(p)).collect();
    let moved = before
        .iter()
        .zip(&after)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 1e-2, "the updates moved the weights (max {moved})");
    learner.net
}

#[test]
fn a_fresh_copy_gives_the_same_outputs() {
    tch::manual_seed(1);
    let t = new_tch_net();
    let core = to_core(&t);
    same_outputs("fresh", &t, &core, &boards(160, 7));
}

#[test]
fn the_core_acts_as_the_trained_tch_policy() {
    tch::manual_seed(2);
    let t = trained_tch_net();
    let core = to_core(&t);
    let greedy = same_outputs("trained", &t, &core, &boards(160, 8));
    assert_not_constant("trained", &greedy);
}

#[test]
fn the_export_is_the_cores_minatar_small() {
    let config = Config {
        cold_iters: 2,
        eta_max: 0.5,
        kl_clip: 0.05,
        ..Config::default()
    };
    let mut agent = TorchAgent::new(
        config,
        Arch::MinAtarSmall,
        &[C, HW, HW],
        HeadKind::Categorical,
        P,
        Device::Cpu,
        6,
    )
    .unwrap();
    let before = common::weights(&agent);
    for k in 0..8 {
        let obs = flat(&chw(&boards(64, 300 + k as u64)));
        agent.update(&common::rollout(obs, IN, P, 1, k)).unwrap();
    }
    let moved = before
        .iter()
        .zip(&common::weights(&agent))
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 1e-2, "the updates moved the weights (max {moved})");

    let bytes = agent.export().unwrap();
    let mut core = MinAtarSmall::zeros(Activation::Tanh, HeadKind::Gaussian);
    assert_eq!(read_policy_into(&bytes, &mut core), Ok(None));
    let obs = boards(160, 9);
    let greedy = same_outputs("exported", &agent.learner.net, &core, &obs);
    assert_not_constant("exported", &greedy);
    // The agent's own greedy actions (`act`, deterministic) from the CHW boards.
    let (actions, _) = agent.act(&flat(&chw(&obs)), obs.len(), true).unwrap();
    for (i, (g, a)) in greedy.iter().zip(actions.chunks(P)).enumerate() {
        if let Some(k) = g {
            assert_eq!(
                a[*k], 1.0,
                "exported: the agent's greedy action of board {i}"
            );
        }
    }
}

/// A `d×d` factor written out by `write`.
fn dense(write: impl Fn(&mut [f32]), d: usize) -> Vec<f32> {
    let mut v = vec![0.0; d * d];
    write(&mut v);
    v
}

/// Four updates of the core and of tch with settings `cfg`, from the same weights and batches,
/// agree (see the module docs).
fn same_updates(cfg: Config, seed: u64) {
    tch::manual_seed(seed as i64);
    let trained = trained_tch_net();
    // A deep copy for the tch learner (the trained net's tensors stay as they are), the
    // policy head ×30 on both sides.
    let mut t = new_tch_net();
    tch::no_grad(|| {
        for (i, (dst, src)) in t.layers.iter_mut().zip(&trained.layers).enumerate() {
            let k = if i == 3 { 30.0 } else { 1.0 };
            dst.w.copy_(&(&src.w * k));
            dst.b.copy_(&(&src.b * k));
        }
    });
    let core_net = to_core(&t);
    let mut core = Learn::new(cfg, core_net).unwrap();
    let mut host = TorchLearner::new(cfg, t).unwrap();
    let mut rng = Pcg64::from_seed(seed);
    const B: usize = 48;
    let stride = cfg.stat_stride as usize;
    for update in 0..4 {
        let (steps, b) = batch(&boards(B, 200 + update), &mut rng);
        // Replay the core's Fisher draws for tch: per sample of the statistics (every
        // `stride`-th) in order, the categorical draw (`uniform01` against the cumulative
        // softmax), then the critic's normal. The other rows are never read: placeholders.
        let mut replay = rng.clone();
        let (mut f_act, mut v_eps) = (vec![], vec![]);
        for (i, s) in steps.iter().enumerate() {
            if i % stride != 0 {
                f_act.push(0);
                v_eps.push(0.0);
                continue;
            }
            let mut f = Forward::zeros();
            core.net.forward(&s.obs, &mut f);
            let mut lp = [0.0; P];
            log_softmax(&f.z, &mut lp);
            let u = uniform01(&mut replay);
            let (mut c, mut k) = (0.0, P - 1);
            for (i, l) in lp.iter().enumerate() {
                c += l.exp();
                if u < c {
                    k = i;
                    break;
                }
            }
            f_act.push(k as i64);
            v_eps.push(standard_normal(&mut replay));
        }
        let cs = core.update_steps(&steps, &mut rng).unwrap();
        let hs = host
            .update(
                &b,
                FisherNoise::Given {
                    actions: &Tensor::from_slice(&f_act),
                    value_noise: &Tensor::from_slice(&v_eps),
                },
            )
            .unwrap();
        let tag = format!("stride {stride} update {update}");
        assert!(cs.natural && hs.natural, "{tag}: natural steps");

        // Factor by factor. tch: `Ā` per input group (observation, conv output, h1, h2),
        // `S` per layer (conv, l1, l2, π, v).
        let curv = core.curvature();
        let a = |g: usize| flat(host.kfac.a(g).unwrap());
        let s = |l: usize| flat(host.kfac.s(l).unwrap());
        let conv = curv.encoder();
        close(
            &format!("{tag}: conv A"),
            &dense(|v| conv.a().write_dense(v), 65),
            &a(0),
            1e-4,
        );
        close(
            &format!("{tag}: conv S"),
            &dense(|v| conv.s().write_dense(v), 4),
            &s(0),
            1e-4,
        );
        let pairs = [
            ("l1 A", dense(|v| curv.a_obs().write_dense(v), 65), a(1)),
            (
                "l1 S",
                dense(|v| curv.s_hidden(0, 0).unwrap().write_dense(v), 32),
                s(1),
            ),
            (
                "l2 A",
                dense(|v| curv.a_h1(0).unwrap().write_dense(v), 33),
                a(2),
            ),
            (
                "l2 S",
                dense(|v| curv.s_hidden(0, 1).unwrap().write_dense(v), 32),
                s(2),
            ),
            (
                "heads A",
                dense(|v| curv.a_h2(0).unwrap().write_dense(v), 33),
                a(3),
            ),
            ("pi S", dense(|v| curv.s_pi().write_dense(v), 3), s(3)),
            ("v S", dense(|v| curv.s_v().write_dense(v), 1), s(4)),
        ];
        for (what, c, h) in &pairs {
            close(&format!("{tag}: {what}"), c, h, 1e-4);
        }

        // The step: its statistics, the direction and the new weights, layer by layer.
        close(
            &format!("{tag}: q, eta, |g|"),
            &[cs.quadratic_form, cs.step_size, cs.grad_norm],
            &[hs.quadratic_form, hs.step_size, hs.grad_norm],
            1e-4,
        );
        let names = ["conv", "l1", "l2", "pi", "v"];
        // The direction of a layer, `[ΔW | Δb]` (one K-FAC block), relative to its largest entry.
        for (i, (cd, name)) in core_layers(core.direction()).iter().zip(names).enumerate() {
            let c = [cd.0.as_slice(), &cd.1].concat();
            let h = [
                flat(&host.direction[2 * i]),
                flat(&host.direction[2 * i + 1]),
            ]
            .concat();
            close(&format!("{tag}: {name} direction"), &c, &h, 1e-4);
        }
        for ((cw, hl), name) in core_layers(&core.net)
            .iter()
            .zip(&host.net.layers)
            .zip(names)
        {
            close(&format!("{tag}: {name} W"), &cw.0, &flat(&hl.w), 1e-4);
            close(&format!("{tag}: {name} b"), &cw.1, &flat(&hl.b), 1e-4);
        }
    }
}

/// No cold start, inverses every 2 updates, every sample in the statistics.
#[test]
fn one_update_is_the_same_update() {
    same_updates(
        Config {
            cold_iters: 0,
            inverse_every: 2,
            kl_clip: 0.01,
            ..Config::default()
        },
        3,
    );
}

/// The MinAtar preset's statistics from every 8th sample (`stat_stride 8`: tch's Fisher pass of
/// a conv net is then a forward and backward of its own, not the loss pass's graph).
#[test]
fn strided_statistics_give_the_same_update() {
    same_updates(
        Config {
            cold_iters: 0,
            inverse_every: 2,
            kl_clip: 0.01,
            stat_stride: 8,
            ..Config::default()
        },
        4,
    );
}
