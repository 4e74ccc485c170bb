//! 2-D convolution `y = W ⋆ x + b` with every size fixed at compile time, and its K-FAC (KFC, Grosse &
//! Martens 2016): a small front-end for grid sensors (an 8×8 time-of-flight array, a
//! MinAtar 10×10×C board) ahead of the dense trunk.
//!
//! **Shapes and layout** (PyTorch's, so a workstation's `Conv2d` weights copy over as they are):
//! - input `x: [[[f32; W]; H]; C]`, channel-major `x[c][r][q]` (CHW);
//! - `F` filters of `K×K` over the `C` channels, stride `S`, no padding ("valid"), so the
//!   output is `Ho×Wo` with `Ho = ⌊(H − K)/S⌋ + 1`, `Wo = ⌊(W − K)/S⌋ + 1` ([`conv_out`]);
//! - output `y: [[[f32; Wo]; Ho]; F]`, `y[f][p][q]`;
//! - weights `w: [[f32; N]; F]` with `N = C·K·K`, `w[f][(c·K + i)·K + j]` the weight of filter
//!   `f` on channel `c` at kernel row `i`, column `j` (PyTorch's `weight.reshape(F, -1)`).
//!
//! `N`, `Ho`, `Wo` are type parameters too, because stable Rust cannot size an array by an
//! expression in generic parameters; every method checks them at compile time
//! (`N = C·K·K`, `Ho = conv_out(H, K, S)`, `K ≤ H`, …), so a wrong size does not build.
//!
//! **Maths.** With the patch at output position `(p, q)`,
//! `u_pq[(c·K + i)·K + j] = x[c][p·S + i][q·S + j]` (`N` entries, [`Conv2d::patch`]):
//! - forward: `y[f][p][q] = (Σ_n w[f][n] u_pq[n]) + b[f]`, a [`Dense`](crate::Dense) layer
//!   `W: F×N` applied at each of the `T = Ho·Wo` positions;
//! - backward, with `g[f][p][q] = ∂L/∂y[f][p][q]`:
//!   `∂L/∂x[c][p·S + i][q·S + j] += Σ_f w[f][(c·K + i)·K + j] g[f][p][q]` summed over every
//!   position whose patch covers the pixel, `∂L/∂w[f][n] += Σ_pq g[f][p][q] u_pq[n]`,
//!   `∂L/∂b[f] += Σ_pq g[f][p][q]`.
//!
//! **K-FAC (KFC).** The Fisher block of `θ = vec([W | b])` is approximated by `Ā ⊗ S` with
//! - `Ā = E_sample[(1/T) Σ_pq ā_pq ā_pqᵀ]`, `ā_pq = [u_pq; 1]`: an
//!   [`InputFactor<N>`](crate::InputFactor), `(N+1)×(N+1)`, the mean over samples and
//!   positions (so its bias corner stays 1, as for a dense layer);
//! - `S = E_sample[Σ_pq g_pq g_pqᵀ]`, `g_pq = (g[f][p][q])_f` from the sampled Fisher loss: an
//!   [`OutputFactor<F>`](crate::OutputFactor), `F×F`, summed over positions.
//!
//! `Ā ⊗ S = T·(Ā ⊗ S̄)` with `S̄` the per-position mean: KFC's `T·(A ⊗ G)`. The factor `T` sits
//! in `S`, as in the libtorch backend (`torch/src/kfac.rs`), so the two agree; with the
//! π-adjusted damping ([`damping_split`]) moving `T` between the factors multiplies `π` by
//! `T` and leaves `(Ā + π√λ I) ⊗ (S + √λ/π I)` unchanged. [`ConvCurvature`] holds the pair.

use rand_core::RngCore;

use crate::dense::Dense;
use crate::kfac::{damping_split, InputFactor, OutputFactor};
use crate::Error;

/// Output length of a valid convolution: `⌊(n − k)/s⌋ + 1`, or 0 when the kernel does not fit
/// (`k > n`, `k = 0`) or the stride is 0. Usable in `const` items to size the output arrays,
/// e.g. `const HO: usize = conv_out(10, 3, 1); // 8`.
pub const fn conv_out(n: usize, k: usize, s: usize) -> usize {
    if k == 0 || s == 0 || k > n {
        0
    } else {
        (n - k) / s + 1
    }
}

/// Positions per rank-`k` statistics update in [`Conv2d::observe`].
const OBSERVE_CHUNK: usize = 4;

/// `F` filters of `K×K` over `C` channels, stride `S`, valid padding; `N = C·K·K` (checked at
/// compile time). Layout and maths in the module docs. As for [`Dense`], the same type is the
/// gradient buffer ([`Conv2d::accumulate`]).
///
/// ```
/// use acktr_core::{conv_out, Conv2d};
/// // One 2×2 filter [[1, 0], [0, −1]] with bias 0.5 on the 3×3 image 1..9: every output is
/// // x[p][q] − x[p+1][q+1] + 0.5 = −3.5.
/// const HO: usize = conv_out(3, 2, 1);
/// let mut l = Conv2d::<1, 1, 2, 1, 4>::zeros();
/// l.w = [[1.0, 0.0, 0.0, -1.0]];
/// l.b = [0.5];
/// let x = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
/// let mut y = [[[0.0f32; HO]; HO]; 1];
/// l.forward(&x, &mut y);
/// assert_eq!(y, [[[-3.5, -3.5], [-3.5, -3.5]]]);
/// ```
///
/// Sizes that do not fit do not build: a patch length other than `C·K·K`,
/// ```compile_fail,E0080
/// let l = acktr_core::Conv2d::<1, 1, 2, 1, 5>::zeros(); // N must be 1·2·2 = 4
/// ```
/// or an output other than `conv_out(H, K, S)×conv_out(W, K, S)`:
/// ```compile_fail,E0080
/// let l = acktr_core::Conv2d::<1, 1, 2, 1, 4>::zeros();
/// let x = [[[0.0f32; 3]; 3]; 1];
/// let mut y = [[[0.0f32; 3]; 3]; 1]; // a 2×2 kernel on 3×3 gives 2×2
/// l.forward(&x, &mut y);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2d<const C: usize, const F: usize, const K: usize, const S: usize, const N: usize> {
    /// Weights, `w[f][(c·K + i)·K + j]`.
    pub w: [[f32; N]; F],
    /// Biases.
    pub b: [f32; F],
}

impl<const C: usize, const F: usize, const K: usize, const S: usize, const N: usize> Default
    for Conv2d<C, F, K, S, N>
{
    fn default() -> Self {
        Self::zeros()
    }
}

impl<const C: usize, const F: usize, const K: usize, const S: usize, const N: usize>
    Conv2d<C, F, K, S, N>
{
    /// The layer's own sizes: all non-zero and `N = C·K·K`.
    const VALID: () = assert!(
        C > 0 && F > 0 && K > 0 && S > 0 && N == C * K * K,
        "Conv2d<C, F, K, S, N> needs non-zero sizes and N = C·K·K"
    );

    /// Bytes of one copy of the parameters (`F·(N+1)` floats).
    pub const PARAM_BYTES: usize = core::mem::size_of::<Self>();

    /// Bytes training this layer keeps: the weights, the gradient and the momentum buffers
    /// (three copies, as [`Learner`](crate::Learner) keeps for its layers) plus the K-FAC
    /// factors ([`ConvCurvature::BYTES`]; on hosts these include the explicit inverses, so
    /// read it on the target). Per-sample activations are extra: see [`Conv2d::io_bytes`].
    ///
    /// A firmware crate can refuse to build a layer that does not fit its budget:
    /// ```
    /// use acktr_core::Conv2d;
    /// // 8×8 time-of-flight frame: 8 filters of 3×3, stride 1 (N = 9).
    /// type Tof = Conv2d<1, 8, 3, 1, 9>;
    /// const _: () = assert!(Tof::TRAIN_BYTES <= 4 * 1024, "conv layer over its RAM budget");
    /// ```
    pub const TRAIN_BYTES: usize = 3 * Self::PARAM_BYTES + ConvCurvature::<N, F>::BYTES;

    /// Bytes of one sample's input and output (`C·H·W + F·Ho·Wo` floats) for an `H×W` input:
    /// what forward keeps for backward and the statistics.
    pub const fn io_bytes(h: usize, w: usize) -> usize {
        4 * (C * h * w + F * conv_out(h, K, S) * conv_out(w, K, S))
    }

    /// Compile-time check of an input `H×W` against an output `Ho×Wo`.
    const fn check_geometry<const H: usize, const W: usize, const HO: usize, const WO: usize>() {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        assert!(
            K <= H && K <= W && HO == conv_out(H, K, S) && WO == conv_out(W, K, S),
            "Conv2d: the kernel must fit the input and Ho×Wo must be conv_out(H, K, S)×conv_out(W, K, S)"
        );
    }

    /// All weights and biases zero (usable in a `static`).
    pub const fn zeros() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Self {
            w: [[0.0; N]; F],
            b: [0.0; F],
        }
    }

    /// Orthogonal initialisation of `W` seen as `F×N` (as the reference ACKTR initialises its
    /// convolutions), scaled by `gain`; `b = 0`. See [`Dense::orthogonal`].
    pub fn orthogonal(rng: &mut impl RngCore, gain: f32) -> Self {
        let d = Dense::<N, F>::orthogonal(rng, gain);
        let mut c = Self::zeros();
        c.w = d.w;
        c
    }

    /// The patch `u[(c·K + i)·K + j] = x[c][p·S + i][q·S + j]` at output position `(p, q)` (the
    /// im2col row of that position); the pixels `V` are numbers, or blocks of lanes as in
    /// [`Conv2d::forward_block`]. Positions outside `Ho×Wo` read nothing past the input: rows
    /// or columns that fall outside are left as they were in `u`.
    #[inline]
    pub fn patch<V: Copy, const H: usize, const W: usize>(
        x: &[[[V; W]; H]; C],
        p: usize,
        q: usize,
        u: &mut [V; N],
    ) {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        // `N = C·K·K`, so the chunks are exactly the `(c, i)` kernel rows.
        for (n, row) in u.chunks_exact_mut(K).enumerate() {
            let (c, i) = (n / K, n % K);
            if let Some(src) = x[c].get(p * S + i).and_then(|r| r.get(q * S..q * S + K)) {
                row.copy_from_slice(src);
            }
        }
    }

    /// `y[f][p][q] = (Σ_n w[f][n] u_pq[n]) + b[f]` for one sample: [`Conv2d::forward_block`]
    /// with one lane (the same numbers).
    pub fn forward<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &self,
        x: &[[[f32; W]; H]; C],
        y: &mut [[[f32; WO]; HO]; F],
    ) {
        let xb = x.map(|xc| xc.map(|row| row.map(|v| [v])));
        let mut yb = [[[[0.0f32; 1]; WO]; HO]; F];
        self.forward_block(&xb, &mut yb);
        *y = yb.map(|yf| yf.map(|row| row.map(|v| v[0])));
    }

    /// [`Conv2d::forward`] for a block of `B` samples, each pixel holding the samples as lanes
    /// (`x[c][r][q][b]`, `y[f][p][q][b]`): `y[f][p][q][b] = (Σ_n w[f][n] u_pq[n][b]) + b[f]`, the
    /// sum over `n` ascending in every lane, so a sample's outputs are the same numbers for any
    /// `B` (as [`Dense::forward_block`]).
    pub fn forward_block<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
    >(
        &self,
        x: &[[[[f32; B]; W]; H]; C],
        y: &mut [[[[f32; B]; WO]; HO]; F],
    ) {
        const { Self::check_geometry::<H, W, HO, WO>() };
        let mut u = [[0.0f32; B]; N];
        for p in 0..HO {
            for q in 0..WO {
                Self::patch(x, p, q, &mut u);
                for ((yf, wf), bf) in y.iter_mut().zip(&self.w).zip(&self.b) {
                    let mut acc = [0.0f32; B];
                    for (wn, un) in wf.iter().zip(&u) {
                        for (a, v) in acc.iter_mut().zip(un) {
                            *a += wn * v;
                        }
                    }
                    for (o, a) in yf[p][q].iter_mut().zip(&acc) {
                        *o = a + bf;
                    }
                }
            }
        }
    }

    /// `∂L/∂x += Wᵀ ⋆ g` for one sample: [`Conv2d::backward_input_block`] with one lane.
    pub fn backward_input<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &self,
        g: &[[[f32; WO]; HO]; F],
        dx: &mut [[[f32; W]; H]; C],
    ) {
        let gb = g.map(|gf| gf.map(|row| row.map(|v| [v])));
        let mut db = dx.map(|xc| xc.map(|row| row.map(|v| [v])));
        self.backward_input_block(&gb, &mut db);
        *dx = db.map(|xc| xc.map(|row| row.map(|v| v[0])));
    }

    /// `∂L/∂x += Wᵀ ⋆ g` for a block of `B` samples laid out as in [`Conv2d::forward_block`]:
    /// at each position (row-major), the patch gradient `d[n][b] = Σ_f w[f][n] g[f][p][q][b]`
    /// (`f` ascending) is added onto the pixels of the patch; the same numbers for any `B`.
    pub fn backward_input_block<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
    >(
        &self,
        g: &[[[[f32; B]; WO]; HO]; F],
        dx: &mut [[[[f32; B]; W]; H]; C],
    ) {
        const { Self::check_geometry::<H, W, HO, WO>() };
        let mut d = [[0.0f32; B]; N];
        for p in 0..HO {
            for q in 0..WO {
                d.iter_mut().for_each(|v| *v = [0.0; B]);
                for (wf, gf) in self.w.iter().zip(g) {
                    let gpq = &gf[p][q];
                    for (dn, wn) in d.iter_mut().zip(wf) {
                        for (a, gb) in dn.iter_mut().zip(gpq) {
                            *a += wn * gb;
                        }
                    }
                }
                for (n, row) in d.chunks_exact(K).enumerate() {
                    let (c, i) = (n / K, n % K);
                    if let Some(dst) = dx[c]
                        .get_mut(p * S + i)
                        .and_then(|r| r.get_mut(q * S..q * S + K))
                    {
                        for (a, v) in dst.iter_mut().zip(row) {
                            for (al, vl) in a.iter_mut().zip(v) {
                                *al += vl;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Treating `self` as a gradient buffer, add one sample's parameter gradient:
    /// `∇w[f] += Σ_pq g[f][p][q] u_pq`, `∇b[f] += Σ_pq g[f][p][q]`, positions row-major.
    pub fn accumulate<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &mut self,
        g: &[[[f32; WO]; HO]; F],
        x: &[[[f32; W]; H]; C],
    ) {
        const { Self::check_geometry::<H, W, HO, WO>() };
        let mut u = [0.0f32; N];
        for p in 0..HO {
            for q in 0..WO {
                Self::patch(x, p, q, &mut u);
                for ((wf, bf), gf) in self.w.iter_mut().zip(self.b.iter_mut()).zip(g) {
                    crate::dense::axpy(gf[p][q], &u, wf);
                    *bf += gf[p][q];
                }
            }
        }
    }

    /// Add one sample's K-FAC statistics with weight `w` (see the module docs):
    /// `Ā += (w/T) Σ_pq ā_pq ā_pqᵀ`, `S += w Σ_pq g_pq g_pqᵀ`, positions row-major. With the
    /// weights of a batch summing to `1 − ρ` after [`ConvCurvature::scale`]`(ρ)`, `Ā` stays a
    /// mean (corner 1). `g` is the per-sample gradient of the sampled Fisher loss at the
    /// layer's output (before any batch mean). The layer gives the geometry; its weights are
    /// not read.
    ///
    /// The positions go four at a time as rank-4 updates (each stored number read
    /// and written once per chunk instead of once per position), the rest one at a time: the
    /// same numbers as one rank-one update per position in order.
    pub fn observe<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &self,
        kfac: &mut ConvCurvature<N, F>,
        x: &[[[f32; W]; H]; C],
        g: &[[[f32; WO]; HO]; F],
        w: f32,
    ) {
        const { Self::check_geometry::<H, W, HO, WO>() };
        let wa = w / (HO * WO) as f32;
        let mut us = [[0.0f32; N]; OBSERVE_CHUNK];
        let mut gs = [[0.0f32; F]; OBSERVE_CHUNK];
        let mut k = 0;
        for p in 0..HO {
            for q in 0..WO {
                Self::patch(x, p, q, &mut us[k]);
                gs[k] = core::array::from_fn(|f| g[f][p][q]);
                k += 1;
                if k == OBSERVE_CHUNK {
                    kfac.a.add_chunk(&us.each_ref(), wa);
                    kfac.s.add_chunk(&gs.each_ref(), w);
                    k = 0;
                }
            }
        }
        for (u, gpq) in us.iter().zip(&gs).take(k) {
            kfac.a.add(u, wa);
            kfac.s.add(gpq, w);
        }
    }

    /// Weights then biases as flat slices (row-major `W`, then `b`).
    pub fn slices(&self) -> [&[f32]; 2] {
        [self.w.as_flattened(), &self.b]
    }

    /// Mutable [`Conv2d::slices`].
    pub fn slices_mut(&mut self) -> [&mut [f32]; 2] {
        [self.w.as_flattened_mut(), &mut self.b]
    }
}

/// The Kronecker factors of one [`Conv2d`] layer with patch length `N` and `F` filters:
/// `Ā` ([`InputFactor<N>`]) and `S` ([`OutputFactor<F>`]), filled by [`Conv2d::observe`];
/// maths and scaling in the module docs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvCurvature<const N: usize, const F: usize> {
    a: InputFactor<N>,
    s: OutputFactor<F>,
    factorized: bool,
}

impl<const N: usize, const F: usize> Default for ConvCurvature<N, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const F: usize> ConvCurvature<N, F> {
    /// Bytes of the statistics and their decomposition (on hosts also the explicit inverses).
    pub const BYTES: usize = core::mem::size_of::<Self>();

    /// Empty statistics, no decomposition.
    pub const fn new() -> Self {
        Self {
            a: InputFactor::new(),
            s: OutputFactor::new(),
            factorized: false,
        }
    }

    /// `Ā`, the patches' factor.
    pub fn a(&self) -> &InputFactor<N> {
        &self.a
    }

    /// `S`, the output gradients' factor.
    pub fn s(&self) -> &OutputFactor<F> {
        &self.s
    }

    /// `F ← ρ F` for both factors: the start of a running-average update.
    pub fn scale(&mut self, rho: f32) {
        self.a.scale(rho);
        self.s.scale(rho);
    }

    /// All statistics finite.
    pub fn is_finite(&self) -> bool {
        self.a.is_finite() && self.s.is_finite()
    }

    /// Whether a decomposition is available for [`ConvCurvature::precondition`].
    pub fn is_factorized(&self) -> bool {
        self.factorized
    }

    /// Decompose `Ā + π√λ I` and `S + √λ/π I` ([`damping_split`] with `dim Ā = N + 1`,
    /// `dim S = F`), as the dense layers' factors are. Fails with
    /// [`Error::UpdateNotPositiveDefinite`] if a pivot is not positive and finite; the previous
    /// decomposition is then gone and [`ConvCurvature::is_factorized`] is false.
    pub fn factorize(&mut self, damping: f32) -> Result<(), Error> {
        self.factorized = false;
        let (da, ds) = damping_split(self.a.trace(), N + 1, self.s.trace(), F, damping);
        self.a.factorize(da)?;
        self.s.factorize(ds)?;
        self.factorized = true;
        Ok(())
    }

    /// Natural gradient of the layer in place, `[∇W | ∇b] ← S_d⁻¹ [∇W | ∇b] Ā_d⁻¹`; returns
    /// `gᵀ (Ā_d ⊗ S_d)⁻¹ g`, the layer's share of the trust region's quadratic form. Fails with
    /// [`Error::UpdateNotPositiveDefinite`] (gradient untouched) unless
    /// [`ConvCurvature::factorize`] has succeeded.
    pub fn precondition<const C: usize, const K: usize, const S: usize>(
        &self,
        grad: &mut Conv2d<C, F, K, S, N>,
    ) -> Result<f32, Error> {
        if !self.factorized {
            return Err(Error::UpdateNotPositiveDefinite);
        }
        #[cfg(target_os = "none")]
        use crate::kfac::precondition;
        #[cfg(not(target_os = "none"))]
        use crate::kfac::precondition_explicit as precondition;
        Ok(precondition(&self.a, &self.s, &mut grad.w, &mut grad.b))
    }

    /// Visit every stored number (statistics and decomposition) in a fixed order, for
    /// checkpoints; `factorized` is restored with [`ConvCurvature::set_factorized`].
    pub fn visit_mut(&mut self, mut f: impl FnMut(&mut [f32])) {
        self.a.visit_mut(&mut f);
        self.s.visit_mut(&mut f);
    }

    /// Visit the statistics `Ā`, `S` (not their decompositions), in a fixed order: what a
    /// data-parallel update sums over ranks.
    pub fn visit_statistics_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.a.visit_statistics_mut(f);
        self.s.visit_statistics_mut(f);
    }

    /// Declare whether the stored decompositions are valid (after restoring a checkpoint); on
    /// hosts, declaring them valid rebuilds the explicit inverses from them.
    pub fn set_factorized(&mut self, factorized: bool) {
        self.factorized = factorized;
        #[cfg(not(target_os = "none"))]
        if factorized {
            self.a.invert();
            self.s.invert();
        }
    }
}
