//! The front-end below the trunks: an [`Encoder`] maps the observation `o` (`IN` numbers, what
//! the environment gives and a [`Step`](crate::Step) stores) to the trunks' input `x` (`OBS`
//! numbers), and is trained with the rest of the [`ActorCritic`](crate::ActorCritic).
//!
//! - [`Identity`] (every network's default): `x = o`, no parameters, no factors; every update is
//!   the MLP actor-critic's, bit for bit.
//! - [`ConvEncoder`]: `x = flatten(σ(W ⋆ o + b))`, one [`Conv2d`] and the network's activation
//!   `σ`, flattened channel-major (`x[(f·Ho + p)·Wo + q] = σ(y[f][p][q])`, PyTorch's
//!   `flatten` of an `F×Ho×Wo` map). Its Fisher block is KFC's `Ā ⊗ S`
//!   ([`ConvCurvature`]), from the gradient at the convolution's output
//!   `g[f][p][q] = σ'(y[f][p][q]) · (∂L/∂x)[(f·Ho + p)·Wo + q]`, with
//!   `∂L/∂x = Σ_t W1_tᵀ g1_t` over the trunks' first layers.
//!
//! **Which part it belongs to.** The encoder's parameters count as the actor's: its share of
//! `ΔθᵀF̂Δθ` joins the actor's (with one trunk the trunk is the actor's too) and it moves with
//! the actor's step size. A separate critic trust region (`vf_kl_clip > 0`, and with it the
//! critic-only passes of `vf_iters > 1`, which need it) is refused with a trainable encoder
//! ([`Error::ConfigInvalid`]): the encoder feeds the value head too, so a critic step apart
//! from the actor's would not bound the value's change. (Were a critic-only pass run, it would
//! leave the encoder as it is: its gradient is neither computed nor applied there.)

use heapless::Vec as HVec;
use rand_core::RngCore;

use crate::conv::{conv_out, Conv2d, ConvCurvature};
use crate::dense::Activation;
use crate::format::ConvSpec;
use crate::Error;

/// `v` as `u32`, `u32::MAX` if larger.
const fn sat(v: usize) -> u32 {
    if v > u32::MAX as usize {
        u32::MAX
    } else {
        v as u32
    }
}

/// The Kronecker factors of an [`Encoder`]: what [`Curvature`](crate::Curvature) does to its
/// own factors, it does to these (after its own, in the same call).
pub trait EncoderCurvature: Copy + core::fmt::Debug + PartialEq {
    /// Every factor `F ← ρ F`.
    fn scale(&mut self, rho: f32);
    /// All statistics finite.
    fn is_finite(&self) -> bool;
    /// Decompose the damped factors; on error no decomposition is valid.
    fn factorize(&mut self, damping: f32) -> Result<(), Error>;
    /// Every stored number (statistics and decompositions), in a fixed order.
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut [f32]));
    /// The statistics alone (what ranks sum), in a fixed order.
    fn visit_statistics_mut(&mut self, f: &mut dyn FnMut(&mut [f32]));
    /// Declare whether the stored decompositions are valid.
    fn set_factorized(&mut self, factorized: bool);
}

/// No factors ([`Identity`]'s).
impl EncoderCurvature for () {
    fn scale(&mut self, _rho: f32) {}
    fn is_finite(&self) -> bool {
        true
    }
    fn factorize(&mut self, _damping: f32) -> Result<(), Error> {
        Ok(())
    }
    fn visit_mut(&mut self, _f: &mut dyn FnMut(&mut [f32])) {}
    fn visit_statistics_mut(&mut self, _f: &mut dyn FnMut(&mut [f32])) {}
    fn set_factorized(&mut self, _factorized: bool) {}
}

impl<const N: usize, const F: usize> EncoderCurvature for ConvCurvature<N, F> {
    fn scale(&mut self, rho: f32) {
        ConvCurvature::scale(self, rho);
    }
    fn is_finite(&self) -> bool {
        ConvCurvature::is_finite(self)
    }
    fn factorize(&mut self, damping: f32) -> Result<(), Error> {
        ConvCurvature::factorize(self, damping)
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        ConvCurvature::visit_mut(self, f);
    }
    fn visit_statistics_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        ConvCurvature::visit_statistics_mut(self, f);
    }
    fn set_factorized(&mut self, factorized: bool) {
        ConvCurvature::set_factorized(self, factorized);
    }
}

/// A trainable map from the observation `o: [f32; IN]` to the trunks' input `x: [f32; OBS]`
/// (see the module docs). The network, its curvature and the [`Learner`](crate::Learner) call
/// it; samples travel in blocks of `B` lanes as in [`ForwardBlock`](crate::ForwardBlock), and
/// every method gives each sample the numbers it would get alone.
pub trait Encoder<const IN: usize, const OBS: usize>: Copy + core::fmt::Debug + PartialEq {
    /// Whether it has parameters (false: the update skips every encoder step).
    const TRAINABLE: bool;
    /// Number of trainable scalars.
    const PARAMS: usize;
    /// All parameters zero (also the shape of the gradient and momentum buffers).
    const ZERO: Self;
    /// Per-block buffers: the block's observations and the gradient at the encoder's output.
    type Lanes<const B: usize>: Copy;
    /// The Kronecker factors.
    type Curvature: EncoderCurvature;
    /// Empty statistics, no decomposition.
    const EMPTY_CURVATURE: Self::Curvature;
    /// How the policy file describes it: `None` (no encoder, a version-1 file) or the
    /// convolution a version-2 file carries.
    const SPEC: Option<ConvSpec>;

    /// Initialised parameters (drawing from `rng` only if [`Encoder::TRAINABLE`]).
    fn init(rng: &mut impl RngCore) -> Self;
    /// Zeroed per-block buffers.
    fn lanes<const B: usize>() -> Self::Lanes<B>;
    /// Put observation `obs` in lane `b`: in `lanes` (its output `x` is then written by
    /// [`Encoder::forward_block`]), or, for [`Identity`], straight into `x`.
    fn load<const B: usize>(
        lanes: &mut Self::Lanes<B>,
        x: &mut [[f32; B]; OBS],
        b: usize,
        obs: &[f32; IN],
    );
    /// `x` of every lane from the observations in `lanes`, with activation `act`.
    fn forward_block<const B: usize>(
        &self,
        act: Activation,
        lanes: &Self::Lanes<B>,
        x: &mut [[f32; B]; OBS],
    );
    /// The buffer for `∂L/∂x` in `lanes` (`None`: not trainable, nothing to fill).
    fn output_grad<const B: usize>(lanes: &mut Self::Lanes<B>) -> Option<&mut [[f32; B]; OBS]>;
    /// Treating `self` as a gradient buffer: add the parameter gradients of the first `n`
    /// lanes, in lane order, from their observations and `∂L/∂x` in `lanes` and their outputs
    /// `x`.
    fn accumulate<const B: usize>(
        &mut self,
        act: Activation,
        lanes: &Self::Lanes<B>,
        x: &[[f32; B]; OBS],
        n: usize,
    );
    /// Add the Fisher statistics of the first `n` lanes with weight `w` each, in lane order,
    /// `∂L/∂x` in `lanes` being the sampled Fisher loss's gradient.
    fn observe<const B: usize>(
        &self,
        kfac: &mut Self::Curvature,
        act: Activation,
        lanes: &Self::Lanes<B>,
        x: &[[f32; B]; OBS],
        n: usize,
        w: f32,
    );
    /// Natural gradient of the encoder in place; returns its share of `gᵀF̂_d⁻¹g`. Fails with
    /// [`Error::UpdateNotPositiveDefinite`] (gradient untouched) without a decomposition.
    fn precondition(kfac: &Self::Curvature, grad: &mut Self) -> Result<f32, Error>;
    /// The parameters as flat slices, in a fixed order.
    fn slices(&self) -> HVec<&[f32], 2>;
    /// Mutable [`Encoder::slices`].
    fn slices_mut(&mut self) -> HVec<&mut [f32], 2>;
}

/// The observation is the trunks' input (`IN = OBS`): no parameters, no factors, no buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity;

impl<const OBS: usize> Encoder<OBS, OBS> for Identity {
    const TRAINABLE: bool = false;
    const PARAMS: usize = 0;
    const ZERO: Self = Identity;
    type Lanes<const B: usize> = ();
    type Curvature = ();
    const EMPTY_CURVATURE: () = ();
    const SPEC: Option<ConvSpec> = None;

    fn init(_rng: &mut impl RngCore) -> Self {
        Identity
    }
    fn lanes<const B: usize>() {}
    #[inline]
    fn load<const B: usize>(_: &mut (), x: &mut [[f32; B]; OBS], b: usize, obs: &[f32; OBS]) {
        for (row, &o) in x.iter_mut().zip(obs) {
            row[b] = o;
        }
    }
    #[inline]
    fn forward_block<const B: usize>(&self, _: Activation, _: &(), _: &mut [[f32; B]; OBS]) {}
    fn output_grad<const B: usize>(_: &mut ()) -> Option<&mut [[f32; B]; OBS]> {
        None
    }
    fn accumulate<const B: usize>(&mut self, _: Activation, _: &(), _: &[[f32; B]; OBS], _: usize) {
    }
    fn observe<const B: usize>(
        &self,
        _: &mut (),
        _: Activation,
        _: &(),
        _: &[[f32; B]; OBS],
        _: usize,
        _: f32,
    ) {
    }
    fn precondition(_: &(), _: &mut Self) -> Result<f32, Error> {
        Ok(0.0)
    }
    fn slices(&self) -> HVec<&[f32], 2> {
        HVec::new()
    }
    fn slices_mut(&mut self) -> HVec<&mut [f32], 2> {
        HVec::new()
    }
}

/// One [`Conv2d`] (`F` filters `K×K` over `C` channels, stride `S`, `N = C·K·K`) on an `H×W`
/// observation, the network's activation, and a channel-major flatten to `OBS = F·Ho·Wo`
/// features, `Ho = conv_out(H, K, S)`, `Wo = conv_out(W, K, S)` (see the module docs).
///
/// The observation `o: [f32; IN]`, `IN = C·H·W`, is read channel-first (`CHANNELS_LAST =
/// false`, PyTorch's CHW: `o[(c·H + r)·W + q]`) or channel-last (`true`, MinAtar's and numpy's
/// HWC: `o[(r·W + q)·C + c]`). Every size relation is checked at compile time.
///
/// A conv actor-critic for MinAtar Breakout (10×10×4, channel-last), 8 filters 4×4 at stride 2
/// (4×4 outputs that read every cell, 128 features), one 32-unit trunk, and the bytes its
/// training state takes:
/// ```
/// use acktr_core::{ActorCritic, ConvEncoder, Learner};
/// type Enc = ConvEncoder<4, 8, 4, 2, 64, 10, 10, 4, 4, true>;
/// type Net = ActorCritic<128, 32, 3, 1, 400, Enc>;
/// type Learn = Learner<128, 32, 3, 1, 400, Enc>;
/// assert_eq!(Net::num_params(), 8 * 65 + 32 * 129 + 32 * 33 + 3 * 33 + 33 + 3);
/// // Everything is inline: the learner's size is a constant a firmware crate checks.
/// const _: () = assert!(core::mem::size_of::<Learn>() < 512 * 1024, "over the RAM budget");
/// ```
///
/// A stride that leaves an edge unread does not compile (3×3 at stride 2 on 10×10 skips row
/// and column 9):
/// ```compile_fail,E0080
/// use acktr_core::env::Pcg64;
/// use acktr_core::{Activation, ActorCritic, ConvEncoder, HeadKind};
/// type Enc = ConvEncoder<4, 8, 3, 2, 36, 10, 10, 4, 4, true>;
/// let net = ActorCritic::<128, 32, 3, 1, 400, Enc>::new(
///     Activation::Relu,
///     HeadKind::Categorical,
///     &mut Pcg64::from_seed(0),
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvEncoder<
    const C: usize,
    const F: usize,
    const K: usize,
    const S: usize,
    const N: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
    const CHANNELS_LAST: bool = false,
> {
    /// The convolution.
    pub conv: Conv2d<C, F, K, S, N>,
}

/// [`ConvEncoder`]'s per-block buffers, samples as lanes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvLanes<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const OBS: usize,
> {
    /// Observations, CHW: `x[c][r][q][b]`.
    pub x: [[[[f32; B]; W]; H]; C],
    /// `∂L/∂x` of the features, `dx[i][b]`.
    pub dx: [[f32; B]; OBS],
}

impl<
        const C: usize,
        const F: usize,
        const K: usize,
        const S: usize,
        const N: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        const CHANNELS_LAST: bool,
    > ConvEncoder<C, F, K, S, N, H, W, HO, WO, CHANNELS_LAST>
{
    /// `IN = C·H·W`, `OBS = F·Ho·Wo`, and the convolution's own geometry.
    const fn check<const IN: usize, const OBS: usize>() {
        assert!(
            C > 0
                && F > 0
                && K > 0
                && S > 0
                && N == C * K * K
                && K <= H
                && K <= W
                && (H - K) % S == 0
                && (W - K) % S == 0
                && HO == conv_out(H, K, S)
                && WO == conv_out(W, K, S)
                && IN == C * H * W
                && OBS == F * HO * WO,
            "ConvEncoder needs N = C·K·K, strides that tile the input ((H − K) and (W − K) \
             multiples of S, so no edge row or column goes unread), Ho×Wo = conv_out(H, K, S)×\
             conv_out(W, K, S), IN = C·H·W and OBS = F·Ho·Wo"
        );
    }

    /// Index of pixel `(c, r, q)` in the observation.
    const fn index(c: usize, r: usize, q: usize) -> usize {
        if CHANNELS_LAST {
            (r * W + q) * C + c
        } else {
            (c * H + r) * W + q
        }
    }

    /// Lane `b`'s observation (CHW) into `o` and the gradient at its convolution's output into
    /// `g`, `g[f][p][q] = σ'(x_f,p,q) · dx_f,p,q` with `x` the activated outputs.
    #[inline]
    fn lane<const B: usize, const OBS: usize>(
        act: Activation,
        lanes: &ConvLanes<B, C, H, W, OBS>,
        x: &[[f32; B]; OBS],
        b: usize,
        o: &mut [[[f32; W]; H]; C],
        g: &mut [[[f32; WO]; HO]; F],
    ) {
        let src = lanes.x.as_flattened().as_flattened();
        for (oi, v) in o.as_flattened_mut().as_flattened_mut().iter_mut().zip(src) {
            *oi = v[b];
        }
        let flat = g.as_flattened_mut().as_flattened_mut();
        for ((gi, xi), di) in flat.iter_mut().zip(x).zip(&lanes.dx) {
            *gi = act.derivative_from_output(xi[b]) * di[b];
        }
    }
}

impl<
        const C: usize,
        const F: usize,
        const K: usize,
        const S: usize,
        const N: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        const CHANNELS_LAST: bool,
        const IN: usize,
        const OBS: usize,
    > Encoder<IN, OBS> for ConvEncoder<C, F, K, S, N, H, W, HO, WO, CHANNELS_LAST>
{
    const TRAINABLE: bool = true;
    const PARAMS: usize = F * (N + 1);
    const ZERO: Self = Self {
        conv: Conv2d::zeros(),
    };
    type Lanes<const B: usize> = ConvLanes<B, C, H, W, OBS>;
    type Curvature = ConvCurvature<N, F>;
    const EMPTY_CURVATURE: ConvCurvature<N, F> = ConvCurvature::new();
    /// The sizes as `u32` (saturating: the policy file's writer refuses a size above
    /// `u32::MAX` at compile time).
    const SPEC: Option<ConvSpec> = Some(ConvSpec {
        channels: sat(C),
        filters: sat(F),
        kernel: sat(K),
        stride: sat(S),
        height: sat(H),
        width: sat(W),
        channels_last: CHANNELS_LAST,
    });

    /// Orthogonal weights with gain `√2` (as the hidden layers), zero biases.
    fn init(rng: &mut impl RngCore) -> Self {
        const { Self::check::<IN, OBS>() };
        Self {
            conv: Conv2d::orthogonal(rng, core::f32::consts::SQRT_2),
        }
    }

    fn lanes<const B: usize>() -> ConvLanes<B, C, H, W, OBS> {
        const { Self::check::<IN, OBS>() };
        ConvLanes {
            x: [[[[0.0; B]; W]; H]; C],
            dx: [[0.0; B]; OBS],
        }
    }

    #[inline]
    fn load<const B: usize>(
        lanes: &mut ConvLanes<B, C, H, W, OBS>,
        _x: &mut [[f32; B]; OBS],
        b: usize,
        obs: &[f32; IN],
    ) {
        const { Self::check::<IN, OBS>() };
        for (c, xc) in lanes.x.iter_mut().enumerate() {
            for (r, row) in xc.iter_mut().enumerate() {
                for (q, px) in row.iter_mut().enumerate() {
                    px[b] = obs[Self::index(c, r, q)];
                }
            }
        }
    }

    /// `x = flatten(σ(W ⋆ o + b))` lane by lane ([`Conv2d::forward_block`]).
    #[inline]
    fn forward_block<const B: usize>(
        &self,
        act: Activation,
        lanes: &ConvLanes<B, C, H, W, OBS>,
        x: &mut [[f32; B]; OBS],
    ) {
        const { Self::check::<IN, OBS>() };
        let mut y = [[[[0.0f32; B]; WO]; HO]; F];
        self.conv.forward_block(&lanes.x, &mut y);
        for (xi, yi) in x.iter_mut().zip(y.as_flattened().as_flattened()) {
            for (a, &s) in xi.iter_mut().zip(yi) {
                *a = act.apply(s);
            }
        }
    }

    fn output_grad<const B: usize>(
        lanes: &mut ConvLanes<B, C, H, W, OBS>,
    ) -> Option<&mut [[f32; B]; OBS]> {
        Some(&mut lanes.dx)
    }

    /// [`Conv2d::accumulate`] of each lane's `g` (see the module docs) and observation.
    fn accumulate<const B: usize>(
        &mut self,
        act: Activation,
        lanes: &ConvLanes<B, C, H, W, OBS>,
        x: &[[f32; B]; OBS],
        n: usize,
    ) {
        let (mut o, mut g) = ([[[0.0; W]; H]; C], [[[0.0; WO]; HO]; F]);
        for b in 0..n.min(B) {
            Self::lane(act, lanes, x, b, &mut o, &mut g);
            self.conv.accumulate(&g, &o);
        }
    }

    /// [`Conv2d::observe`] of each lane's `g` and observation.
    fn observe<const B: usize>(
        &self,
        kfac: &mut ConvCurvature<N, F>,
        act: Activation,
        lanes: &ConvLanes<B, C, H, W, OBS>,
        x: &[[f32; B]; OBS],
        n: usize,
        w: f32,
    ) {
        let (mut o, mut g) = ([[[0.0; W]; H]; C], [[[0.0; WO]; HO]; F]);
        for b in 0..n.min(B) {
            Self::lane(act, lanes, x, b, &mut o, &mut g);
            self.conv.observe(kfac, &o, &g, w);
        }
    }

    fn precondition(kfac: &ConvCurvature<N, F>, grad: &mut Self) -> Result<f32, Error> {
        kfac.precondition(&mut grad.conv)
    }

    /// The convolution's weights (row-major `F×N`), then its biases.
    fn slices(&self) -> HVec<&[f32], 2> {
        HVec::from_iter(self.conv.slices())
    }

    fn slices_mut(&mut self) -> HVec<&mut [f32], 2> {
        HVec::from_iter(self.conv.slices_mut())
    }
}
