//! The native backend: training with acktr-core's fixed-size networks — the same `Learner`
//! that runs on the microcontroller, no second implementation of the algorithm.
//!
//! Compile-time sizes meet a run-time CLI through a table of instantiations: every built-in
//! environment's (observation, action) sizes × hidden widths [`HIDDEN`] × shared/separate
//! trunks, two equal hidden layers (the paper's 64-64 family), and the small MinAtar conv net
//! ([`MinAtarSmall`], `--arch minatar-small`) for MinAtar/Breakout-v1. Anything else falls back
//! to the libtorch backend (or is refused with the list of what is built in).

use acktr_core::env::Pcg64;
use acktr_core::{
    Activation, ActorCritic, Collective, Config, ConvEncoder, Encoder, Forward, ForwardBlock,
    HeadKind, Identity, Learner, MinAtarSmall, MinAtarSmallEncoder, SingleProcess, Step,
    UpdateStats,
};
use rand_core::SeedableRng;

use crate::agent::{blob, bytes_f32, f32_bytes, Agent, HostRollout};
use crate::error::{HostError, Result};
use crate::settings::ArchArg;

/// The encoder of `--arch minatar-medium` (the MinAtar games' default): MinAtar's 10×10×`C`
/// channel-last board, 8 filters 4×4 at stride 2 (a 4×4 output reading every cell), ReLU, 128
/// features into one 64-64 trunk. Too large for a microcontroller's RAM (`MinAtarSmall` is the
/// device's net). `N` = 16·`C` is a patch's length; built for `C` = 4 (Breakout, Asterix) and
/// 6 (SpaceInvaders).
pub type MinAtarMediumEncoder<const C: usize, const N: usize> =
    ConvEncoder<C, 8, 4, 2, N, 10, 10, 4, 4, true>;

/// The MinAtar games `--arch minatar-medium` is built for: (id, channels, actions).
pub const MINATAR_MEDIUM_GAMES: [(&str, usize, usize); 3] = [
    ("MinAtar/Breakout-v1", 4, 3),
    ("MinAtar/Asterix-v1", 4, 5),
    ("MinAtar/SpaceInvaders-v1", 6, 4),
];

/// Hidden widths compiled in.
pub const HIDDEN: [usize; 5] = [16, 32, 64, 128, 256];

/// Samples per block (the SIMD lanes of the core's layer kernels), in updates and in
/// rollouts. The results do not depend on it (the core sums every lane in the same order);
/// on this project's machine the Pendulum preset took 1.05 s with 8, 0.94 s with 16 and
/// 1.44 s with 32 (docs/performance.md).
pub const BLOCK: usize = 16;

/// A core learner as an [`Agent`]: an MLP (`IN = OBS`, the [`Identity`] encoder) or a net
/// whose encoder `E` maps the `IN` observation numbers to the trunks' `OBS` inputs.
///
/// Image observations come from the host's environments channel-first (`obs_shape`
/// `[C, H, W]`, PyTorch's layout); a channel-last conv encoder (MinAtar's HWC, as the core's
/// environments and the firmware give them) gets each one transposed on the way in. An MLP
/// reads its observations as they are.
pub struct NativeAgent<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize = OBS,
    E: Encoder<IN, OBS> = Identity,
> {
    learner: Box<Learner<OBS, H, P, T, IN, E>>,
    /// The learner before the last update (restored when it fails).
    backup: Box<Learner<OBS, H, P, T, IN, E>>,
    rng: Pcg64,
    steps: Vec<Step<IN, P>>,
    /// The encoder's per-block buffers (nothing for an MLP).
    lanes: Box<E::Lanes<BLOCK>>,
    block: Box<ForwardBlock<OBS, H, P, T, BLOCK>>,
    single: Box<Forward<OBS, H, P, T>>,
    /// The sampled acts' forward passes since the last update, in rollout order: the update
    /// reuses them (same weights) instead of recomputing them.
    stored: Vec<ForwardBlock<OBS, H, P, T, BLOCK>>,
    /// Blocks of `stored` in use.
    used: usize,
    /// Every sampled act since the last update came in whole blocks.
    aligned: bool,
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > NativeAgent<OBS, H, P, T, IN, E>
{
    /// A fresh policy (core initialisation, seeded).
    pub fn new(config: Config, activation: Activation, head: HeadKind, seed: u64) -> Result<Self> {
        let mut rng = Pcg64::seed_from_u64(seed);
        let net = ActorCritic::<OBS, H, P, T, IN, E>::new(activation, head, &mut rng);
        let learner = Box::new(Learner::new(config, net)?);
        Ok(Self {
            backup: learner.clone(),
            learner,
            rng,
            steps: Vec::new(),
            lanes: Box::new(E::lanes::<BLOCK>()),
            block: Box::new(ForwardBlock::zeros()),
            single: Box::new(Forward::zeros()),
            stored: Vec::new(),
            used: 0,
            aligned: true,
        })
    }

    /// The core learner (for tests: the backend adds no maths of its own).
    pub fn learner(&self) -> &Learner<OBS, H, P, T, IN, E> {
        &self.learner
    }

    /// Observation `i` of a batch, in the encoder's layout (see the type's docs).
    fn obs_at(obs: &[f32], i: usize) -> Result<[f32; IN]> {
        let o = obs
            .get(i * IN..(i + 1) * IN)
            .and_then(|s| <[f32; IN]>::try_from(s).ok())
            .ok_or_else(|| {
                HostError::InvalidSetting(format!("observation batch is not a multiple of {IN}"))
            })?;
        // A constant per instantiation: an MLP returns `o` as it is.
        Ok(match E::SPEC {
            Some(c) if c.channels_last => {
                let (ch, hw) = (c.channels as usize, (c.height * c.width) as usize);
                // CHW `o[c·HW + p]` → HWC `x[p·C + c]`.
                let mut x = [0.0; IN];
                for (k, v) in o.iter().enumerate() {
                    x[(k % hw) * ch + k / hw] = *v;
                }
                x
            }
            _ => o,
        })
    }
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > Agent for NativeAgent<OBS, H, P, T, IN, E>
{
    fn act(&mut self, obs: &[f32], n: usize, deterministic: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut actions = Vec::with_capacity(n * P);
        let mut values = Vec::with_capacity(n);
        let net = &self.learner.net;
        // A rollout's acts (sampled, whole blocks) keep their forward passes for the update.
        let keep = !deterministic && n % BLOCK == 0;
        self.aligned &= deterministic || keep;
        // Actions are drawn in environment order, from the policy outputs `z`.
        let mut draw = |z: &[f32; P], v: f32| {
            let mut a = [0.0; P];
            if deterministic {
                net.head.mode(z, &mut a);
            } else {
                net.head.sample(z, &net.log_std, &mut self.rng, &mut a);
            }
            actions.extend_from_slice(&a);
            values.push(v);
        };
        // Environments `BLOCK` at a time through the block forward pass (each sample's numbers
        // are those of `ActorCritic::act`).
        for first in (0..n).step_by(BLOCK) {
            if n - first < BLOCK {
                // A short block (an evaluation's single environment): one lane at a time
                // rather than a whole block of lanes for one sample.
                let f = &mut *self.single;
                for b in first..n {
                    net.forward(&Self::obs_at(obs, b)?, f);
                    draw(&f.z, f.v);
                }
                continue;
            }
            let fb = if keep {
                if self.used == self.stored.len() {
                    self.stored.push(ForwardBlock::zeros());
                }
                self.used += 1;
                &mut self.stored[self.used - 1]
            } else {
                &mut *self.block
            };
            // For an MLP `load` writes the observation into `fb.x` and `encode_block` does
            // nothing; an encoder's observations go to its lanes and its output to `fb.x`.
            for b in 0..BLOCK {
                E::load(
                    &mut self.lanes,
                    &mut fb.x,
                    b,
                    &Self::obs_at(obs, first + b)?,
                );
            }
            net.encode_block(&self.lanes, &mut fb.x);
            net.forward_block(fb);
            for b in 0..BLOCK {
                draw(&fb.z_of(b), fb.v[0][b]);
            }
        }
        Ok((actions, values))
    }

    fn values(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        Ok(self.act(obs, n, true)?.1)
    }

    fn update(&mut self, r: &HostRollout) -> Result<UpdateStats> {
        self.update_data_parallel(r, &mut SingleProcess)
    }

    fn update_data_parallel(
        &mut self,
        r: &HostRollout,
        coll: &mut dyn Collective,
    ) -> Result<UpdateStats> {
        self.steps.clear();
        for i in 0..r.len() {
            let mut s = Step::new(
                Self::obs_at(&r.obs, i)?,
                <[f32; P]>::try_from(&r.actions[i * P..(i + 1) * P])
                    .map_err(|_| HostError::InvalidSetting("action width".into()))?,
                r.rewards[i],
                r.values[i],
                r.ends[i],
            );
            s.advantage = r.advantages[i];
            s.ret = r.returns[i];
            self.steps.push(s);
        }
        let used = self.used;
        let reuse = self.aligned && used * BLOCK == self.steps.len();
        (self.used, self.aligned) = (0, true);
        // The core changes nothing on bad input; after that (a pathological curvature or
        // gradient) only this copy gives the whole state back, statistics included.
        self.backup.clone_from(&self.learner);
        let rng = self.rng.clone();
        // Every rank fails alike (the core sums the ranks' verdicts on their batches), so all
        // of them restore their copies together.
        let forwards = reuse.then(|| &self.stored[..used]);
        let result =
            self.learner
                .update_data_parallel::<BLOCK>(&self.steps, forwards, &mut self.rng, coll);
        if result.is_err() {
            std::mem::swap(&mut self.learner, &mut self.backup);
            self.rng = rng;
        }
        Ok(result?)
    }

    fn join_data_parallel(
        &mut self,
        coll: &mut dyn Collective,
        sampler_seed: Option<u64>,
    ) -> Result<()> {
        let l = &mut *self.learner;
        let mut flags = [
            f64::from(l.updates()),
            f64::from(u8::from(l.curvature().is_factorized())),
        ];
        if coll.ranks() > 1 {
            // Rank 0's counters: a sum over ranks of (rank 0's, zeros elsewhere) would need the
            // rank; the ranks hold the same ones (same checkpoint), which the weights' broadcast
            // below does not check, so compare instead.
            let mine = flags;
            coll.all_reduce_sum_f64(&mut flags)?;
            let r = f64::from(coll.ranks());
            if flags != [mine[0] * r, mine[1] * r] {
                return Err(crate::error::HostError::Distributed(
                    "the ranks start from different update counts (different checkpoints?)".into(),
                ));
            }
        }
        coll.broadcast(&mut |f: &mut dyn FnMut(&mut [f32])| l.visit_state_mut(&mut *f))?;
        // The explicit inverses (not part of the state) follow the broadcast decomposition.
        let (updates, factorized) = (l.updates(), l.curvature().is_factorized());
        l.set_updates(updates, factorized);
        if let Some(seed) = sampler_seed {
            self.rng = Pcg64::seed_from_u64(seed);
        }
        (self.used, self.aligned) = (0, true);
        Ok(())
    }

    fn config(&self) -> Config {
        *self.learner.config()
    }

    fn set_config(&mut self, config: Config) -> Result<()> {
        Ok(self.learner.set_config(config)?)
    }

    fn updates(&self) -> u32 {
        self.learner.updates()
    }

    fn save(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut l = self.learner.clone();
        let mut state = Vec::new();
        l.visit_state_mut(|s| state.extend_from_slice(s));
        let (s0, s1) = self.rng.raw_state();
        let mut meta = Vec::new();
        meta.extend_from_slice(&l.updates().to_le_bytes());
        meta.push(l.curvature().is_factorized() as u8);
        meta.extend_from_slice(&s0.to_le_bytes());
        meta.extend_from_slice(&s1.to_le_bytes());
        Ok(vec![
            ("native.state".into(), f32_bytes(&state)),
            ("native.meta".into(), meta),
        ])
    }

    fn load(&mut self, blobs: &[(String, Vec<u8>)]) -> Result<()> {
        let bad = |r: &str| {
            HostError::InvalidSetting(format!("checkpoint does not fit this native network: {r}"))
        };
        let raw = blob(blobs, "native.state").ok_or_else(|| bad("no blob `native.state`"))?;
        crate::agent::check_f32_blob("native.state", raw).map_err(|e| bad(&e))?;
        let state = bytes_f32(raw);
        let meta = blob(blobs, "native.meta").ok_or_else(|| bad("no blob `native.meta`"))?;
        if meta.len() != 4 + 1 + 32 {
            return Err(bad(&format!(
                "blob `native.meta` is {} bytes, not {}",
                meta.len(),
                4 + 1 + 32
            )));
        }
        if meta[4] > 1 {
            return Err(bad(&format!(
                "blob `native.meta`: factorised flag {}, not 0 or 1",
                meta[4]
            )));
        }
        let mut count = 0;
        let mut l = (*self.learner).clone();
        l.visit_state_mut(|s| count += s.len());
        if count != state.len() {
            return Err(bad(&format!(
                "blob `native.state` holds {} numbers, this network {count}",
                state.len()
            )));
        }
        let mut pos = 0;
        l.visit_state_mut(|s| {
            s.copy_from_slice(&state[pos..pos + s.len()]);
            pos += s.len();
        });
        let updates = u32::from_le_bytes([meta[0], meta[1], meta[2], meta[3]]);
        l.set_updates(updates, meta[4] != 0);
        let u128_at = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&meta[o..o + 16]);
            u128::from_le_bytes(b)
        };
        if u128_at(21) & 1 == 0 {
            return Err(bad("blob `native.meta`: the sampler's increment is even"));
        }
        self.rng = Pcg64::from_raw_state(u128_at(5), u128_at(21));
        *self.learner = l;
        (self.used, self.aligned) = (0, true);
        Ok(())
    }

    fn export(&self) -> Result<Vec<u8>> {
        let net = &self.learner.net;
        let mut buf = vec![0u8; acktr_core::encoded_len(net, None)];
        let n = acktr_core::write_policy(net, None, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn describe(&self) -> serde_json::Value {
        let trunks = if T == 1 {
            "shared trunk"
        } else {
            "separate actor/critic trunks"
        };
        let network = match E::SPEC {
            None => format!("{OBS}-{H}-{H} {trunks}"),
            Some(c) => format!(
                "conv {}×{}×{} stride {} on {}×{}×{} → {OBS}-{H}-{H} {trunks}",
                c.filters, c.kernel, c.kernel, c.stride, c.channels, c.height, c.width
            ),
        };
        serde_json::json!({
            "backend": "native",
            "network": network,
            "params": ActorCritic::<OBS, H, P, T, IN, E>::num_params(),
        })
    }
}

/// What a native agent is built for.
pub struct NativeSpec {
    /// Network family: [`ArchArg::Mlp`], [`ArchArg::MinatarSmall`] or [`ArchArg::MinatarMedium`].
    pub arch: ArchArg,
    /// Observation shape (the environment's `obs_shape`).
    pub obs_shape: Vec<usize>,
    /// Observation length.
    pub obs: usize,
    /// Policy outputs.
    pub outputs: usize,
    /// Two equal hidden widths.
    pub hidden: usize,
    /// Separate trunks.
    pub separate: bool,
    /// Hidden nonlinearity.
    pub activation: Activation,
    /// Head.
    pub head: HeadKind,
    /// Learner settings.
    pub config: Config,
    /// Seed of the initialisation and the action sampler.
    pub seed: u64,
}

macro_rules! sizes {
    ($spec:expr, $obs:literal, $p:literal; $($h:literal),*) => {
        match ($spec.hidden, $spec.separate) {
            $(
                ($h, false) => Some(Box::new(NativeAgent::<$obs, $h, $p, 1>::new($spec.config, $spec.activation, $spec.head, $spec.seed)?) as Box<dyn Agent>),
                ($h, true) => Some(Box::new(NativeAgent::<$obs, $h, $p, 2>::new($spec.config, $spec.activation, $spec.head, $spec.seed)?) as Box<dyn Agent>),
            )*
            _ => None,
        }
    };
}

/// A native agent if `spec` is one of the compiled instantiations, else `None`.
pub fn make(spec: &NativeSpec) -> Result<Option<Box<dyn Agent>>> {
    if spec.arch == ArchArg::MinatarSmall {
        // MinAtar/Breakout-v1: 4×10×10 channel-first from the host's env, 3 actions; the
        // net's trunk and head are fixed (one 32-32 trunk, categorical).
        let fits = spec.obs_shape == [4, 10, 10]
            && spec.outputs == 3
            && spec.hidden == 32
            && !spec.separate
            && spec.head == HeadKind::Categorical;
        if !fits {
            return Ok(None);
        }
        type Small = NativeAgent<64, 32, 3, 1, 400, MinAtarSmallEncoder>;
        // The same net as acktr-core's `MinAtarSmall` (a type error otherwise).
        let _: fn(&ActorCritic<64, 32, 3, 1, 400, MinAtarSmallEncoder>) -> &MinAtarSmall = |n| n;
        let a = Small::new(spec.config, spec.activation, spec.head, spec.seed)?;
        return Ok(Some(Box::new(a)));
    }
    if spec.arch == ArchArg::MinatarMedium {
        // The MinAtar games' default net: 8 filters, one 64-64 trunk, categorical; one
        // instantiation per (channels, actions) of `MINATAR_MEDIUM_GAMES`.
        let fits = spec.hidden == 64 && !spec.separate && spec.head == HeadKind::Categorical;
        let a = match (fits, spec.obs_shape.as_slice(), spec.outputs) {
            (true, [4, 10, 10], 3) => medium::<3, 4, 64, 400>(spec)?,
            (true, [4, 10, 10], 5) => medium::<5, 4, 64, 400>(spec)?,
            (true, [6, 10, 10], 4) => medium::<4, 6, 96, 600>(spec)?,
            _ => return Ok(None),
        };
        return Ok(Some(a));
    }
    if spec.arch != ArchArg::Mlp || spec.obs_shape.len() != 1 {
        return Ok(None);
    }
    Ok(match (spec.obs, spec.outputs) {
        (4, 2) => sizes!(spec, 4, 2; 16, 32, 64, 128, 256), // CartPole-v1
        (6, 3) => sizes!(spec, 6, 3; 16, 32, 64, 128, 256), // Acrobot-v1
        (3, 1) => sizes!(spec, 3, 1; 16, 32, 64, 128, 256), // Pendulum-v1
        (2, 1) => sizes!(spec, 2, 1; 16, 32, 64, 128, 256), // MountainCarContinuous-v0
        (11, 3) => sizes!(spec, 11, 3; 64),                 // Hopper-v5
        (17, 6) => sizes!(spec, 17, 6; 64),                 // HalfCheetah-v5, Walker2d-v5
        _ => None,
    })
}

/// The `--arch minatar-medium` agent for `P` actions on a 10×10×`C` board (`N` = 16·`C`,
/// `IN` = 100·`C`).
fn medium<const P: usize, const C: usize, const N: usize, const IN: usize>(
    spec: &NativeSpec,
) -> Result<Box<dyn Agent>> {
    let a = NativeAgent::<128, 64, P, 1, IN, MinAtarMediumEncoder<C, N>>::new(
        spec.config,
        spec.activation,
        spec.head,
        spec.seed,
    )?;
    Ok(Box::new(a))
}

/// What is built in, for error messages.
pub fn built_in() -> String {
    format!(
        "observation/action sizes 4/2, 6/3, 3/1, 2/1 (CartPole, Acrobot, Pendulum, MountainCarContinuous) with two equal hidden layers of {:?}, and 11/3, 17/6 (Hopper, HalfCheetah, Walker2d) with 64-64; shared or separate trunks; --arch minatar-small (hidden 32, shared) for MinAtar/Breakout-v1, and minatar-medium (hidden 64, shared) for MinAtar's Breakout-v1, Asterix-v1 and SpaceInvaders-v1",
        HIDDEN
    )
}
