//! The MLP actor-critic: `T` trunks of two hidden layers (`OBS → H → H`), a policy head
//! (`H → P`) and a value head (`H → 1`).
//!
//! - `T = 1` ([`SharedActorCritic`]): both heads read the one trunk (the paper's Atari layout).
//! - `T = 2` ([`SeparateActorCritic`]): trunk 0 feeds the policy head, trunk 1 the value head
//!   (the paper's MuJoCo layout, separate 64-64 tanh nets).
//!
//! An [`Encoder`] below the trunks maps the observation (`IN` numbers) to the trunks' input
//! (`OBS`): [`Identity`] by default (`IN = OBS`), or a [`ConvEncoder`](crate::ConvEncoder).
//!
//! Forward keeps, per layer, the input `x` (K-FAC's `a`, before the bias 1 is appended) and the
//! outputs; backward produces the pre-activation gradients `g = ∂L/∂s` of every layer.

use heapless::Vec as HVec;
use rand_core::RngCore;

use crate::dense::{Activation, Dense};
use crate::encoder::{Encoder, Identity};
use crate::head::HeadKind;

/// Two hidden layers: `h1 = σ(W1 x + b1)`, `h2 = σ(W2 h1 + b2)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trunk<const I: usize, const H: usize> {
    /// First hidden layer, `H×I`.
    pub l1: Dense<I, H>,
    /// Second hidden layer, `H×H`.
    pub l2: Dense<H, H>,
}

/// Actor-critic with `T ∈ {1, 2}` trunks over an [`Encoder`] `E` of the observation; see the
/// module docs. `OBS` is the trunks' input, `IN` the observation (`IN = OBS` for the default
/// [`Identity`]).
// `Clone` by hand: a derived one on a type with a type parameter clones field by field, which
// costs a host update a measurable share in copies where `*self` is one.
#[derive(Copy, Debug, PartialEq)]
pub struct ActorCritic<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize = OBS,
    E = Identity,
> {
    /// Hidden nonlinearity (both layers of every trunk).
    pub activation: Activation,
    /// Policy distribution.
    pub head: HeadKind,
    /// Trunk 0 feeds the policy head; trunk `T − 1` the value head.
    pub trunks: [Trunk<OBS, H>; T],
    /// Policy head: logits (categorical) or means (Gaussian), `P×H`.
    pub pi: Dense<H, P>,
    /// Value head, `1×H`.
    pub v: Dense<H, 1>,
    /// Gaussian log-std, state independent (unused by the categorical head, stays 0).
    pub log_std: [f32; P],
    /// The front-end from the observation to the trunks' input (the actor's part).
    pub encoder: E,
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Copy,
    > Clone for ActorCritic<OBS, H, P, T, IN, E>
{
    fn clone(&self) -> Self {
        *self
    }
}

/// One trunk shared by the policy and value heads.
pub type SharedActorCritic<const OBS: usize, const H: usize, const P: usize> =
    ActorCritic<OBS, H, P, 1>;
/// Separate policy and value trunks.
pub type SeparateActorCritic<const OBS: usize, const H: usize, const P: usize> =
    ActorCritic<OBS, H, P, 2>;

/// What forward keeps for backward and for K-FAC's input statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forward<const OBS: usize, const H: usize, const P: usize, const T: usize> {
    /// Observation (input of every trunk's first layer).
    pub x: [f32; OBS],
    /// First hidden outputs per trunk (input of the second layer).
    pub h1: [[f32; H]; T],
    /// Second hidden outputs per trunk (input of the heads).
    pub h2: [[f32; H]; T],
    /// Policy outputs.
    pub z: [f32; P],
    /// Value.
    pub v: f32,
}

/// Pre-activation gradients `g = ∂L/∂s` of every layer for one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backward<const H: usize, const P: usize, const T: usize> {
    /// First hidden layer of each trunk.
    pub g1: [[f32; H]; T],
    /// Second hidden layer of each trunk.
    pub g2: [[f32; H]; T],
    /// Policy head.
    pub gz: [f32; P],
    /// Value head.
    pub gv: f32,
}

impl<const OBS: usize, const H: usize, const P: usize, const T: usize> Forward<OBS, H, P, T> {
    /// All zeros.
    pub const fn zeros() -> Self {
        Self {
            x: [0.0; OBS],
            h1: [[0.0; H]; T],
            h2: [[0.0; H]; T],
            z: [0.0; P],
            v: 0.0,
        }
    }
}

impl<const H: usize, const P: usize, const T: usize> Backward<H, P, T> {
    /// All zeros.
    pub const fn zeros() -> Self {
        Self {
            g1: [[0.0; H]; T],
            g2: [[0.0; H]; T],
            gz: [0.0; P],
            gv: 0.0,
        }
    }
}

/// [`Forward`] for a block of `B` samples, feature-major: `h1[t][k][b]` is unit `k` of sample
/// `b`. The samples are the SIMD lanes of the layer kernels ([`Dense::forward_block`]), and
/// every sample's numbers are those of [`ActorCritic::forward`] alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardBlock<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const B: usize,
> {
    /// Observations, `x[i][b]`.
    pub x: [[f32; B]; OBS],
    /// First hidden outputs per trunk.
    pub h1: [[[f32; B]; H]; T],
    /// Second hidden outputs per trunk.
    pub h2: [[[f32; B]; H]; T],
    /// Policy outputs.
    pub z: [[f32; B]; P],
    /// Values, `v[0][b]`.
    pub v: [[f32; B]; 1],
}

/// [`Backward`] for a block of `B` samples, feature-major like [`ForwardBlock`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackwardBlock<const H: usize, const P: usize, const T: usize, const B: usize> {
    /// First hidden layer of each trunk.
    pub g1: [[[f32; B]; H]; T],
    /// Second hidden layer of each trunk.
    pub g2: [[[f32; B]; H]; T],
    /// Policy head.
    pub gz: [[f32; B]; P],
    /// Value head, `gv[0][b]`.
    pub gv: [[f32; B]; 1],
}

/// `out[b][k] = m[k][b]`.
#[inline]
fn lanes_to_rows<const N: usize, const B: usize>(m: &[[f32; B]; N], out: &mut [&mut [f32; N]; B]) {
    for (k, row) in m.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(row) {
            o[k] = v;
        }
    }
}

impl<const OBS: usize, const H: usize, const P: usize, const T: usize, const B: usize>
    ForwardBlock<OBS, H, P, T, B>
{
    /// All zeros.
    pub const fn zeros() -> Self {
        Self {
            x: [[0.0; B]; OBS],
            h1: [[[0.0; B]; H]; T],
            h2: [[[0.0; B]; H]; T],
            z: [[0.0; B]; P],
            v: [[0.0; B]; 1],
        }
    }

    /// Put observation `obs` in lane `b`.
    #[inline]
    pub fn set_obs(&mut self, b: usize, obs: &[f32; OBS]) {
        for (row, &o) in self.x.iter_mut().zip(obs) {
            row[b] = o;
        }
    }

    /// Policy outputs of lane `b`.
    #[inline]
    pub fn z_of(&self, b: usize) -> [f32; P] {
        core::array::from_fn(|p| self.z[p][b])
    }

    /// Copy lane `from` of `src` into lane `to`.
    #[inline]
    pub fn copy_lane(&mut self, to: usize, src: &Self, from: usize) {
        let rows = |d: &mut [[f32; B]], s: &[[f32; B]]| {
            for (d, s) in d.iter_mut().zip(s) {
                d[to] = s[from];
            }
        };
        rows(&mut self.x, &src.x);
        for t in 0..T {
            rows(&mut self.h1[t], &src.h1[t]);
            rows(&mut self.h2[t], &src.h2[t]);
        }
        rows(&mut self.z, &src.z);
        rows(&mut self.v, &src.v);
    }

    /// Lane by lane, as per-sample [`Forward`]s.
    pub fn unpack(&self, out: &mut [Forward<OBS, H, P, T>; B]) {
        lanes_to_rows(&self.x, &mut out.each_mut().map(|f| &mut f.x));
        for t in 0..T {
            lanes_to_rows(&self.h1[t], &mut out.each_mut().map(|f| &mut f.h1[t]));
            lanes_to_rows(&self.h2[t], &mut out.each_mut().map(|f| &mut f.h2[t]));
        }
        lanes_to_rows(&self.z, &mut out.each_mut().map(|f| &mut f.z));
        for (f, &v) in out.iter_mut().zip(&self.v[0]) {
            f.v = v;
        }
    }
}

impl<const H: usize, const P: usize, const T: usize, const B: usize> BackwardBlock<H, P, T, B> {
    /// All zeros.
    pub const fn zeros() -> Self {
        Self {
            g1: [[[0.0; B]; H]; T],
            g2: [[[0.0; B]; H]; T],
            gz: [[0.0; B]; P],
            gv: [[0.0; B]; 1],
        }
    }

    /// Lane by lane, as per-sample [`Backward`]s.
    pub fn unpack(&self, out: &mut [Backward<H, P, T>; B]) {
        for t in 0..T {
            lanes_to_rows(&self.g1[t], &mut out.each_mut().map(|g| &mut g.g1[t]));
            lanes_to_rows(&self.g2[t], &mut out.each_mut().map(|g| &mut g.g2[t]));
        }
        lanes_to_rows(&self.gz, &mut out.each_mut().map(|g| &mut g.gz));
        for (g, &v) in out.iter_mut().zip(&self.gv[0]) {
            g.gv = v;
        }
    }
}

/// Upper bound on the number of parameter slices (`4T + 5` with `T ≤ 2`, and up to 2 of the
/// encoder).
pub(crate) const MAX_SLICES: usize = 15;

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > ActorCritic<OBS, H, P, T, IN, E>
{
    const VALID: () = assert!(
        (T == 1 || T == 2) && OBS > 0 && H > 0 && P > 0,
        "ActorCritic needs T = 1 (shared) or 2 (separate) trunks and non-zero sizes"
    );

    /// Index of the trunk that feeds the value head.
    pub const CRITIC: usize = T - 1;

    /// All parameters zero (also the shape of gradient and momentum buffers).
    pub const fn zeros(activation: Activation, head: HeadKind) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Self {
            activation,
            head,
            trunks: [Trunk {
                l1: Dense::zeros(),
                l2: Dense::zeros(),
            }; T],
            pi: Dense::zeros(),
            v: Dense::zeros(),
            log_std: [0.0; P],
            encoder: E::ZERO,
        }
    }

    /// Orthogonal initialisation as the reference ACKTR: hidden gain `√2`, policy head `0.01`,
    /// value head `1`; zero biases, log-std `0`; then the encoder's ([`Encoder::init`]).
    pub fn new(activation: Activation, head: HeadKind, rng: &mut impl RngCore) -> Self {
        let mut n = Self::zeros(activation, head);
        let g = core::f32::consts::SQRT_2;
        for t in n.trunks.iter_mut() {
            t.l1 = Dense::orthogonal(rng, g);
            t.l2 = Dense::orthogonal(rng, g);
        }
        n.pi = Dense::orthogonal(rng, 0.01);
        n.v = Dense::orthogonal(rng, 1.0);
        n.encoder = E::init(rng);
        n
    }

    /// Number of trainable scalars (the encoder's included).
    pub const fn num_params() -> usize {
        T * (H * OBS + H + H * H + H) + P * H + P + H + 1 + P + E::PARAMS
    }

    /// Forward pass for one observation, keeping everything backward and K-FAC need: the
    /// encoder ([`ActorCritic::encode_block`]), then [`ActorCritic::forward_block`], with one
    /// lane (the same numbers). `f.x` is the trunks' input (the encoder's output).
    #[inline]
    pub fn forward(&self, obs: &[f32; IN], f: &mut Forward<OBS, H, P, T>) {
        let mut fb = ForwardBlock::<OBS, H, P, T, 1>::zeros();
        let mut lanes = E::lanes::<1>();
        E::load(&mut lanes, &mut fb.x, 0, obs);
        self.encode_block(&lanes, &mut fb.x);
        self.forward_block(&mut fb);
        fb.unpack(core::array::from_mut(f));
    }

    /// The encoder's output `x[i][b]` for the observations put in `lanes` by [`Encoder::load`]
    /// (for [`Identity`] `load` writes `x` itself and this does nothing): the trunks' input
    /// that [`ActorCritic::forward_block`] reads from `ForwardBlock::x`.
    #[inline]
    pub fn encode_block<const B: usize>(&self, lanes: &E::Lanes<B>, x: &mut [[f32; B]; OBS]) {
        self.encoder.forward_block(self.activation, lanes, x);
    }

    /// Forward pass of the trunks and heads for a block of `B` samples whose trunk inputs are
    /// in `f.x` (the observations for [`Identity`], else [`ActorCritic::encode_block`]'s).
    #[inline]
    pub fn forward_block<const B: usize>(&self, f: &mut ForwardBlock<OBS, H, P, T, B>) {
        self.forward_block_part(f, false);
    }

    /// The trunks a pass runs: all, or with `critic_only` the value head's alone (the
    /// policy's trunk and head are then neither read nor written).
    fn trunks_of(critic_only: bool) -> core::ops::Range<usize> {
        if critic_only {
            Self::CRITIC..T
        } else {
            0..T
        }
    }

    /// [`ActorCritic::forward_block`]; with `critic_only` the value alone (`f.z` and the
    /// policy trunk's outputs are left as they were).
    #[inline]
    pub(crate) fn forward_block_part<const B: usize>(
        &self,
        f: &mut ForwardBlock<OBS, H, P, T, B>,
        critic_only: bool,
    ) {
        let act = self.activation;
        for t in Self::trunks_of(critic_only) {
            let tr = &self.trunks[t];
            tr.l1.forward_block(&f.x, &mut f.h1[t]);
            f.h1[t]
                .as_flattened_mut()
                .iter_mut()
                .for_each(|y| *y = act.apply(*y));
            tr.l2.forward_block(&f.h1[t], &mut f.h2[t]);
            f.h2[t]
                .as_flattened_mut()
                .iter_mut()
                .for_each(|y| *y = act.apply(*y));
        }
        if !critic_only {
            self.pi.forward_block(&f.h2[0], &mut f.z);
        }
        self.v.forward_block(&f.h2[Self::CRITIC], &mut f.v);
    }

    /// Value `V(s)` only.
    pub fn value(&self, obs: &[f32; IN]) -> f32 {
        let mut f = Forward::zeros();
        self.forward(obs, &mut f);
        f.v
    }

    /// Sample an action; returns `(action, V(s), log π(a|s))`. Actions are one-hot for the
    /// categorical head.
    pub fn act(&self, obs: &[f32; IN], rng: &mut impl RngCore) -> ([f32; P], f32, f32) {
        let mut f = Forward::zeros();
        self.forward(obs, &mut f);
        let mut a = [0.0; P];
        let lp = self.head.sample(&f.z, &self.log_std, rng, &mut a);
        (a, f.v, lp)
    }

    /// The deterministic action (argmax one-hot or the Gaussian mean).
    pub fn act_deterministic(&self, obs: &[f32; IN]) -> [f32; P] {
        let mut f = Forward::zeros();
        self.forward(obs, &mut f);
        let mut a = [0.0; P];
        self.head.mode(&f.z, &mut a);
        a
    }

    /// Backward from head-output gradients `gz` (policy) and `gv` (value) to every layer's
    /// pre-activation gradient: [`ActorCritic::backward_block`] with one lane.
    #[inline]
    pub fn backward(
        &self,
        f: &Forward<OBS, H, P, T>,
        gz: &[f32; P],
        gv: f32,
        b: &mut Backward<H, P, T>,
    ) {
        let mut fb = ForwardBlock::<OBS, H, P, T, 1>::zeros();
        fb.h1 = f.h1.map(|h| h.map(|v| [v]));
        fb.h2 = f.h2.map(|h| h.map(|v| [v]));
        let mut bb = BackwardBlock::zeros();
        self.backward_block(&fb, &gz.map(|v| [v]), &[gv], &mut bb);
        bb.unpack(core::array::from_mut(b));
    }

    /// Backward of a block: from the head-output gradients `gz[p][b]` and `gv[b]` to every
    /// layer's pre-activation gradient, `g = σ'(s) ⊙ Wᵀ g_above` (a shared trunk's second
    /// layer receives the policy head's part, then the value head's).
    #[inline]
    pub fn backward_block<const B: usize>(
        &self,
        f: &ForwardBlock<OBS, H, P, T, B>,
        gz: &[[f32; B]; P],
        gv: &[f32; B],
        b: &mut BackwardBlock<H, P, T, B>,
    ) {
        self.backward_block_part(f, gz, gv, b, false);
    }

    /// [`ActorCritic::backward_block`]; with `critic_only` (separate trunks) the value head's
    /// trunk alone, from `gv` (`gz` and the policy trunk's gradients are not touched).
    #[inline]
    pub(crate) fn backward_block_part<const B: usize>(
        &self,
        f: &ForwardBlock<OBS, H, P, T, B>,
        gz: &[[f32; B]; P],
        gv: &[f32; B],
        b: &mut BackwardBlock<H, P, T, B>,
        critic_only: bool,
    ) {
        if !critic_only {
            b.gz = *gz;
        }
        b.gv = [*gv];
        let act = self.activation;
        let mut dh = [[0.0f32; B]; H];
        for t in Self::trunks_of(critic_only) {
            dh.iter_mut().for_each(|r| *r = [0.0; B]);
            if t == 0 {
                self.pi.backward_input_block(gz, &mut dh);
            }
            if t == Self::CRITIC {
                self.v.backward_input_block(&b.gv, &mut dh);
            }
            for ((g, d), y) in b.g2[t]
                .as_flattened_mut()
                .iter_mut()
                .zip(dh.as_flattened())
                .zip(f.h2[t].as_flattened())
            {
                *g = d * act.derivative_from_output(*y);
            }
            dh.iter_mut().for_each(|r| *r = [0.0; B]);
            self.trunks[t].l2.backward_input_block(&b.g2[t], &mut dh);
            for ((g, d), y) in b.g1[t]
                .as_flattened_mut()
                .iter_mut()
                .zip(dh.as_flattened())
                .zip(f.h1[t].as_flattened())
            {
                *g = d * act.derivative_from_output(*y);
            }
        }
    }

    /// Treating `self` as a gradient buffer: add one sample's parameter gradients.
    #[inline]
    pub fn accumulate(&mut self, f: &Forward<OBS, H, P, T>, b: &Backward<H, P, T>) {
        for t in 0..T {
            self.trunks[t].l1.accumulate(&b.g1[t], &f.x);
            self.trunks[t].l2.accumulate(&b.g2[t], &f.h1[t]);
        }
        self.pi.accumulate(&b.gz, &f.h2[0]);
        self.v.accumulate(&[b.gv], &f.h2[Self::CRITIC]);
    }

    /// [`ActorCritic::accumulate`] for `C` samples at once, in order (bit for bit the same
    /// sums): each layer's gradient takes one rank-`C` update, `f[c]` and `b[c]` being
    /// sample `c`'s forward pass and pre-activation gradients.
    #[inline]
    pub fn accumulate_chunk<const C: usize>(
        &mut self,
        f: &[Forward<OBS, H, P, T>; C],
        b: &[Backward<H, P, T>; C],
    ) {
        self.accumulate_chunk_part(f, b, false);
    }

    /// [`ActorCritic::accumulate_chunk`]; with `critic_only` the value head's trunk and head
    /// alone.
    #[inline]
    pub(crate) fn accumulate_chunk_part<const C: usize>(
        &mut self,
        f: &[Forward<OBS, H, P, T>; C],
        b: &[Backward<H, P, T>; C],
        critic_only: bool,
    ) {
        for t in Self::trunks_of(critic_only) {
            let g: [&[f32; H]; C] = core::array::from_fn(|c| &b[c].g1[t]);
            let x: [&[f32; OBS]; C] = core::array::from_fn(|c| &f[c].x);
            self.trunks[t].l1.accumulate_chunk(&g, &x);
            let g: [&[f32; H]; C] = core::array::from_fn(|c| &b[c].g2[t]);
            let x: [&[f32; H]; C] = core::array::from_fn(|c| &f[c].h1[t]);
            self.trunks[t].l2.accumulate_chunk(&g, &x);
        }
        if !critic_only {
            let g: [&[f32; P]; C] = core::array::from_fn(|c| &b[c].gz);
            let x: [&[f32; H]; C] = core::array::from_fn(|c| &f[c].h2[0]);
            self.pi.accumulate_chunk(&g, &x);
        }
        let gv: [[f32; 1]; C] = core::array::from_fn(|c| [b[c].gv]);
        let g: [&[f32; 1]; C] = core::array::from_fn(|c| &gv[c]);
        let x: [&[f32; H]; C] = core::array::from_fn(|c| &f[c].h2[Self::CRITIC]);
        self.v.accumulate_chunk(&g, &x);
    }

    /// [`ActorCritic::accumulate_chunk`] with the pre-activation gradients as a block (no
    /// transposition of them needed): the same sums, bit for bit.
    #[inline]
    pub fn accumulate_block<const B: usize>(
        &mut self,
        f: &[Forward<OBS, H, P, T>; B],
        b: &BackwardBlock<H, P, T, B>,
    ) {
        self.accumulate_block_part(f, b, false);
    }

    /// [`ActorCritic::accumulate_block`]; with `critic_only` the value head's trunk and head
    /// alone.
    #[inline]
    pub(crate) fn accumulate_block_part<const B: usize>(
        &mut self,
        f: &[Forward<OBS, H, P, T>; B],
        b: &BackwardBlock<H, P, T, B>,
        critic_only: bool,
    ) {
        for t in Self::trunks_of(critic_only) {
            let x: [&[f32; OBS]; B] = core::array::from_fn(|c| &f[c].x);
            self.trunks[t].l1.accumulate_lanes(&b.g1[t], &x);
            let x: [&[f32; H]; B] = core::array::from_fn(|c| &f[c].h1[t]);
            self.trunks[t].l2.accumulate_lanes(&b.g2[t], &x);
        }
        if !critic_only {
            let x: [&[f32; H]; B] = core::array::from_fn(|c| &f[c].h2[0]);
            self.pi.accumulate_lanes(&b.gz, &x);
        }
        let x: [&[f32; H]; B] = core::array::from_fn(|c| &f[c].h2[Self::CRITIC]);
        self.v.accumulate_lanes(&b.gv, &x);
    }

    /// `∂L/∂obs += Σ_t W1_tᵀ g1_t` from one sample's pre-activation gradients: the gradient a
    /// trainable front-end below the trunks receives (a [`Conv2d`](crate::Conv2d) whose
    /// flattened output is the observation). Trunks in order, each
    /// [`Dense::backward_input`].
    pub fn backward_obs(&self, b: &Backward<H, P, T>, dx: &mut [f32; OBS]) {
        for (tr, g1) in self.trunks.iter().zip(&b.g1) {
            tr.l1.backward_input(g1, dx);
        }
    }

    /// [`ActorCritic::backward_obs`] for a block: `dx = Σ_t W1_tᵀ g1_t` (overwritten), the
    /// gradient at the encoder's output, trunks in order.
    #[inline]
    pub(crate) fn backward_features_block<const B: usize>(
        &self,
        b: &BackwardBlock<H, P, T, B>,
        dx: &mut [[f32; B]; OBS],
    ) {
        dx.iter_mut().for_each(|r| *r = [0.0; B]);
        for (tr, g1) in self.trunks.iter().zip(&b.g1) {
            tr.l1.backward_input_block(g1, dx);
        }
    }

    /// All parameters as flat slices, in a fixed order (trunks, policy, value, log-std, then
    /// the encoder's [`Encoder::slices`]).
    pub fn param_slices(&self) -> HVec<&[f32], MAX_SLICES> {
        let mut v: HVec<&[f32], MAX_SLICES> = HVec::new();
        for t in self.trunks.iter() {
            for s in t.l1.slices().into_iter().chain(t.l2.slices()) {
                let _ = v.push(s); // capacity 4T + 5 ≤ 13 by construction
            }
        }
        for s in self.pi.slices().into_iter().chain(self.v.slices()) {
            let _ = v.push(s);
        }
        let _ = v.push(&self.log_std);
        for s in self.encoder.slices() {
            let _ = v.push(s); // at most 2 more
        }
        v
    }

    /// Whether slice `i` of [`ActorCritic::param_slices`] belongs to the critic alone (the
    /// value head's trunk with separate trunks, and the value head; the encoder's slices,
    /// after the log-std, are the actor's).
    pub(crate) const fn is_critic_slice(i: usize) -> bool {
        let trunk = i / 4;
        (T == 2 && trunk == Self::CRITIC && i < 4 * T) || (i >= 4 * T + 2 && i < 4 * T + 4)
    }

    /// Mutable [`ActorCritic::param_slices`].
    pub fn param_slices_mut(&mut self) -> HVec<&mut [f32], MAX_SLICES> {
        let mut v: HVec<&mut [f32], MAX_SLICES> = HVec::new();
        for t in self.trunks.iter_mut() {
            let [a, b] = t.l1.slices_mut();
            let [c, d] = t.l2.slices_mut();
            for s in [a, b, c, d] {
                let _ = v.push(s);
            }
        }
        let [a, b] = self.pi.slices_mut();
        let [c, d] = self.v.slices_mut();
        for s in [a, b, c, d] {
            let _ = v.push(s);
        }
        let _ = v.push(&mut self.log_std);
        for s in self.encoder.slices_mut() {
            let _ = v.push(s);
        }
        v
    }

    /// Apply `f(self_i, other_i)` to every pair of corresponding parameters.
    pub fn zip_mut(&mut self, other: &Self, mut f: impl FnMut(&mut f32, f32)) {
        for (a, b) in self
            .param_slices_mut()
            .into_iter()
            .zip(other.param_slices())
        {
            for (x, &y) in a.iter_mut().zip(b.iter()) {
                f(x, y);
            }
        }
    }

    /// Apply `f(self_i, a_i, b_i)` to corresponding parameters of three networks
    /// (weights, direction, optimizer state).
    pub fn zip3_mut(&mut self, a: &Self, b: &mut Self, mut f: impl FnMut(&mut f32, f32, &mut f32)) {
        let sa = a.param_slices();
        for ((x, y), z) in self
            .param_slices_mut()
            .into_iter()
            .zip(sa)
            .zip(b.param_slices_mut())
        {
            for ((p, &q), r) in x.iter_mut().zip(y.iter()).zip(z.iter_mut()) {
                f(p, q, r);
            }
        }
    }

    /// Apply `f` to every parameter.
    pub fn map_mut(&mut self, mut f: impl FnMut(&mut f32)) {
        for s in self.param_slices_mut() {
            s.iter_mut().for_each(&mut f);
        }
    }

    /// `Σ f(self_i, other_i)` over all parameters.
    pub fn fold_with(&self, other: &Self, mut f: impl FnMut(f32, f32) -> f32) -> f32 {
        let mut acc = 0.0;
        for (a, b) in self.param_slices().into_iter().zip(other.param_slices()) {
            for (&x, &y) in a.iter().zip(b.iter()) {
                acc += f(x, y);
            }
        }
        acc
    }

    /// Every parameter is finite.
    pub fn is_finite(&self) -> bool {
        // A count, not `all`: no early exit, so it vectorises (read every update).
        self.param_slices()
            .iter()
            .all(|s| s.iter().filter(|v| !v.is_finite()).count() == 0)
    }
}
