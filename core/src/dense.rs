//! Fully connected layer `s = W x + b` with `W: O×I`, `b: O`, sizes in the type.
//!
//! The layer stores pre-activation maths only; the nonlinearity is an [`Activation`] applied by
//! the network, which keeps the layer input `x` (K-FAC's `a`) and the pre-activation gradient
//! `g = ∂L/∂s` (K-FAC's `g`) for the curvature statistics.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::head::standard_normal;

/// Elementwise nonlinearity of hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `tanh(s)`; derivative `1 − y²` from the output `y`.
    Tanh,
    /// `max(s, 0)`; derivative `1` where `y > 0`, else `0`.
    Relu,
    /// `s`.
    Identity,
}

impl Activation {
    /// `y = σ(s)`.
    #[inline(always)]
    pub fn apply(self, s: f32) -> f32 {
        match self {
            Activation::Tanh => tanh(s),
            Activation::Relu => s.max(0.0),
            Activation::Identity => s,
        }
    }

    /// `σ'(s)` expressed through the output `y = σ(s)`, so backward needs only the outputs.
    #[inline(always)]
    pub fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Tanh => 1.0 - y * y,
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Identity => 1.0,
        }
    }
}

/// `tanh x`, within 1 ulp of the correctly rounded value for every `f32` (checked against
/// `f64` `tanh` over all of them: at most 1.5e-7 relative), odd, monotonic, `NaN` for `NaN`.
///
/// libm's `tanhf` costs ~100 instructions on a Cortex-M4F and a 4-32-32 forward pass calls it
/// 64 times; this costs about a third. Two ranges, both plain `f32` arithmetic (no fused
/// multiply-add, so every target rounds alike):
/// - `|x| < 0.625`: `x + x·t·R(t)`, `t = x²`, `R` a degree-4 polynomial fitted to
///   `(tanh x − x)/x³` (minimax of the relative error of `tanh`, by Lawson's iteration on
///   3,000 points, in f64 against `mpmath`; ≤ 4.4e-9 before rounding to `f32`);
/// - otherwise `1 − 2/(e^{2|x|} + 1)` with `|x|` clamped at 9.5 (beyond ≈ 9.01, `tanh` rounds
///   to 1), `e^y = 2ᵏ·e^r`, `k = round(y/ln 2)`, `r = y − k ln 2` (ln 2 split in two so `k·ln2_hi`
///   is exact), `e^r = 1 + r + r² S(r)`, `S` of degree 4 fitted the same way on
///   `|r| ≤ ln 2 / 2` (≤ 3.1e-9).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    const R: [f32; 5] = [
        -0.333_332_8,
        0.133_314_42,
        -0.053_739_715,
        0.020_639_086,
        -0.005_704_987,
    ];
    const S: [f32; 5] = [
        0.499_999_94,
        0.166_665_21,
        0.041_668_39,
        0.008_368_71,
        0.001_381_461_3,
    ];
    const LN2_HI: f32 = 0.693_145_75; // 0x3F31_7200: 16 significant bits, k·LN2_HI exact
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 − LN2_HI
    let a = x.abs();
    let y = if a < 0.625 {
        let t = a * a;
        let r = (((R[4] * t + R[3]) * t + R[2]) * t + R[1]) * t + R[0];
        a + a * (t * r)
    } else {
        // `a > 9.5` is false for NaN, which then flows through as NaN.
        let y = 2.0 * if a > 9.5 { 9.5 } else { a };
        let k = (y * core::f32::consts::LOG2_E + 0.5) as i32; // y ≥ 1.25: rounds to nearest
        let kf = k as f32;
        let r = (y - kf * LN2_HI) - kf * LN2_LO;
        let p = (((S[4] * r + S[3]) * r + S[2]) * r + S[1]) * r + S[0];
        let er = 1.0 + r + r * r * p;
        // 2ᵏ for 1 ≤ k ≤ 28 (k = 0 for NaN): a normal f32 built from its exponent bits.
        let e = er * f32::from_bits(((k + 127) as u32) << 23);
        1.0 - 2.0 / (e + 1.0)
    };
    y.copysign(x)
}

/// `s = W x + b`; `W` is `O×I` row-major (`w[o][i]`), `b` has `O` entries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dense<const I: usize, const O: usize> {
    /// Weights, `w[o][i]`.
    pub w: [[f32; I]; O],
    /// Biases.
    pub b: [f32; O],
}

impl<const I: usize, const O: usize> Default for Dense<I, O> {
    fn default() -> Self {
        Self::zeros()
    }
}

impl<const I: usize, const O: usize> Dense<I, O> {
    /// All weights and biases zero (usable in a `static`).
    pub const fn zeros() -> Self {
        Self {
            w: [[0.0; I]; O],
            b: [0.0; O],
        }
    }

    /// Orthogonal initialisation (Saxe et al. 2014, as the reference ACKTR uses): `W` has
    /// orthonormal rows (if `O ≤ I`) or columns (if `O > I`), scaled by `gain`; `b = 0`.
    /// Built by modified Gram–Schmidt on a standard normal matrix.
    pub fn orthogonal(rng: &mut impl RngCore, gain: f32) -> Self {
        let mut d = Self::zeros();
        for row in d.w.iter_mut() {
            for v in row.iter_mut() {
                *v = standard_normal(rng);
            }
        }
        if O <= I {
            // Orthonormalise the O rows (length I).
            for r in 0..O {
                for p in 0..r {
                    let dot: f32 = (0..I).map(|k| d.w[r][k] * d.w[p][k]).sum();
                    for k in 0..I {
                        d.w[r][k] -= dot * d.w[p][k];
                    }
                }
                let n = libm::sqrtf((0..I).map(|k| d.w[r][k] * d.w[r][k]).sum());
                let n = if n > 1e-12 { n } else { 1.0 };
                for k in 0..I {
                    d.w[r][k] /= n;
                }
            }
        } else {
            // Orthonormalise the I columns (length O).
            for c in 0..I {
                for p in 0..c {
                    let dot: f32 = (0..O).map(|k| d.w[k][c] * d.w[k][p]).sum();
                    for k in 0..O {
                        d.w[k][c] -= dot * d.w[k][p];
                    }
                }
                let n = libm::sqrtf((0..O).map(|k| d.w[k][c] * d.w[k][c]).sum());
                let n = if n > 1e-12 { n } else { 1.0 };
                for k in 0..O {
                    d.w[k][c] /= n;
                }
            }
        }
        for row in d.w.iter_mut() {
            for v in row.iter_mut() {
                *v *= gain;
            }
        }
        d
    }

    /// `s = W x + b` for one sample: [`Dense::forward_block`] with one lane (the same numbers).
    #[inline]
    pub fn forward(&self, x: &[f32; I], s: &mut [f32; O]) {
        let xb = x.map(|v| [v]);
        let mut sb = [[0.0; 1]; O];
        self.forward_block(&xb, &mut sb);
        *s = sb.map(|v| v[0]);
    }

    /// `s = W x + b` for a block of `B` samples stored feature-major (`x[i][b]` is input `i`
    /// of sample `b`, `s[o][b]` output `o`): `s[o][b] = (Σ_i W_oi x[i][b]) + b_o`, the sum over
    /// `i` ascending.
    ///
    /// The samples are the SIMD lanes: every lane is summed in the same order, so a sample's
    /// outputs are the same numbers for any `B` (one sample at a time on a microcontroller,
    /// 32 at a time on the host). Four rows share each load of `x[i]`.
    #[inline]
    pub fn forward_block<const B: usize>(&self, x: &[[f32; B]; I], s: &mut [[f32; B]; O]) {
        const R: usize = 4;
        let full = O / R * R;
        for o0 in (0..full).step_by(R) {
            let mut acc = [[0.0f32; B]; R];
            for (i, xi) in x.iter().enumerate() {
                for (r, a) in acc.iter_mut().enumerate() {
                    let w = self.w[o0 + r][i];
                    for (ab, xb) in a.iter_mut().zip(xi) {
                        *ab += w * xb;
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let bias = self.b[o0 + r];
                for (sb, ab) in s[o0 + r].iter_mut().zip(a) {
                    *sb = ab + bias;
                }
            }
        }
        for o in full..O {
            let mut acc = [0.0f32; B];
            for (xi, &w) in x.iter().zip(&self.w[o]) {
                for (ab, xb) in acc.iter_mut().zip(xi) {
                    *ab += w * xb;
                }
            }
            for (sb, ab) in s[o].iter_mut().zip(&acc) {
                *sb = ab + self.b[o];
            }
        }
    }

    /// `∂L/∂x += Wᵀ g` for one sample: [`Dense::backward_input_block`] with one lane.
    #[inline]
    pub fn backward_input(&self, g: &[f32; O], dx: &mut [f32; I]) {
        let gb = g.map(|v| [v]);
        let mut db = dx.map(|v| [v]);
        self.backward_input_block(&gb, &mut db);
        *dx = db.map(|v| v[0]);
    }

    /// `∂L/∂x += Wᵀ g` for a block of `B` samples, feature-major like
    /// [`Dense::forward_block`]: `dx[i][b] += Σ_o W_oi g[o][b]`, `o` ascending (the same
    /// numbers for any `B`). Four entries of `∂L/∂x` share each load of `g[o]`.
    #[inline]
    pub fn backward_input_block<const B: usize>(&self, g: &[[f32; B]; O], dx: &mut [[f32; B]; I]) {
        const R: usize = 4;
        let full = I / R * R;
        for i0 in (0..full).step_by(R) {
            let mut acc: [[f32; B]; R] = core::array::from_fn(|r| dx[i0 + r]);
            for (row, go) in self.w.iter().zip(g) {
                for (r, a) in acc.iter_mut().enumerate() {
                    let w = row[i0 + r];
                    for (ab, gb) in a.iter_mut().zip(go) {
                        *ab += w * gb;
                    }
                }
            }
            dx[i0..i0 + R].copy_from_slice(&acc);
        }
        for i in full..I {
            let mut acc = dx[i];
            for (row, go) in self.w.iter().zip(g) {
                let w = row[i];
                for (ab, gb) in acc.iter_mut().zip(go) {
                    *ab += w * gb;
                }
            }
            dx[i] = acc;
        }
    }

    /// Accumulate this sample's parameter gradient into `self`: `∇W += g xᵀ`, `∇b += g`.
    #[inline]
    pub fn accumulate(&mut self, g: &[f32; O], x: &[f32; I]) {
        for ((row, bo), &go) in self.w.iter_mut().zip(self.b.iter_mut()).zip(g.iter()) {
            axpy(go, x, row);
            *bo += go;
        }
    }

    /// [`Dense::accumulate`] for `C` samples at once, in order (bit for bit the same sums):
    /// `∇W += Σ_c g_c x_cᵀ`, `∇b += Σ_c g_c`, each entry of `∇W` loaded and stored once.
    #[inline]
    pub fn accumulate_chunk<const C: usize>(&mut self, g: &[&[f32; O]; C], x: &[&[f32; I]; C]) {
        let lanes: [[f32; C]; O] = core::array::from_fn(|o| core::array::from_fn(|c| g[c][o]));
        self.accumulate_lanes(&lanes, x);
    }

    /// [`Dense::accumulate_chunk`] with the gradients feature-major, as a backward block holds
    /// them (`g[o][c]`: output `o` of sample `c`), the inputs one row per sample.
    #[inline]
    pub fn accumulate_lanes<const C: usize>(&mut self, g: &[[f32; C]; O], x: &[&[f32; I]; C]) {
        for ((row, bo), go) in self.w.iter_mut().zip(self.b.iter_mut()).zip(g) {
            for (j, v) in row.iter_mut().enumerate() {
                let mut acc = *v;
                for c in 0..C {
                    acc += go[c] * x[c][j];
                }
                *v = acc;
            }
            let mut acc = *bo;
            for gc in go {
                acc += gc;
            }
            *bo = acc;
        }
    }

    /// Weights then biases as flat slices (row-major `W`, then `b`).
    pub fn slices(&self) -> [&[f32]; 2] {
        [self.w.as_flattened(), &self.b]
    }

    /// Mutable [`Dense::slices`].
    pub fn slices_mut(&mut self) -> [&mut [f32]; 2] {
        [self.w.as_flattened_mut(), &mut self.b]
    }
}

/// `Σ a_i b_i`.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four accumulators let the compiler vectorise without reassociating a single sum.
    let mut acc = [0.0f32; 4];
    let chunks = a.len() / 4 * 4;
    let (a4, ar) = a.split_at(chunks);
    let (b4, br) = b.split_at(chunks.min(b.len()));
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ar.iter().zip(br.iter()) {
        s += x * y;
    }
    s
}

/// `√x`, correctly rounded (IEEE 754): std's on hosts (feature `std`, vectorisable), libm's
/// otherwise. The same number either way.
#[inline(always)]
pub(crate) fn sqrt(x: f32) -> f32 {
    #[cfg(feature = "std")]
    return x.sqrt();
    #[cfg(not(feature = "std"))]
    return libm::sqrtf(x);
}

/// `y += α x`.
#[inline(always)]
pub(crate) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x.iter()) {
        *yi += alpha * xi;
    }
}

/// `c = a b (+ e fᵀ)` for `a: M×K`, `b: K×N`, and an optional rank-one term with
/// `e ∈ ℝᴹ`, `f ∈ ℝᴺ`. Each `c_rj = Σ_k a_rk b_kj` sums `k`
/// ascending, then adds `e_r f_j`.
///
/// Hosts only (the microcontroller never forms explicit inverses): `4×16` tiles of `c` in
/// registers while `k` runs, so each load of `b_k` serves four rows (a 64-wide product runs
/// at ~50 multiply-adds a nanosecond here; the triangular solves it replaces are chains of
/// dependent adds).
#[cfg(not(target_os = "none"))]
pub(crate) fn matmul<const M: usize, const K: usize, const N: usize>(
    a: &[[f32; K]; M],
    b: &[[f32; N]; K],
    extra: Option<(&[f32; M], &[f32; N])>,
    c: &mut [[f32; N]; M],
) {
    product::<M, K, N, false>(|r, k| a[r][k], b, extra, c);
}

/// [`matmul`] with `a = xᵀ` for a lower-triangular `x` and a `b` that is zero above its
/// diagonal too (as `D X` for `X` lower triangular): only the tiles that reach the upper
/// triangle of `c` are computed, each summing from `k = max(row, column)` of its corner (the
/// terms skipped are zero); the rest of `c` is left as it was.
#[cfg(not(target_os = "none"))]
pub(crate) fn matmul_lower_tn<const N: usize>(
    x: &[[f32; N]; N],
    b: &[[f32; N]; N],
    extra: Option<(&[f32; N], &[f32; N])>,
    c: &mut [[f32; N]; N],
) {
    product::<N, N, N, true>(|r, k| x[k][r], b, extra, c);
}

/// `c = a b (+ e fᵀ)` with `a_rk = a_at(r, k)`, four rows at a time; `UPPER` as in
/// [`matmul_lower_tn`].
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn product<const M: usize, const K: usize, const N: usize, const UPPER: bool>(
    a_at: impl Fn(usize, usize) -> f32 + Copy,
    b: &[[f32; N]; K],
    extra: Option<(&[f32; M], &[f32; N])>,
    c: &mut [[f32; N]; M],
) {
    let mut r0 = 0;
    while r0 + 4 <= M {
        product_rows::<M, K, N, 4, UPPER>(a_at, b, extra, r0, c);
        r0 += 4;
    }
    while r0 < M {
        product_rows::<M, K, N, 1, UPPER>(a_at, b, extra, r0, c);
        r0 += 1;
    }
}

/// Rows `r0..r0 + MR` of [`product`], columns 16, 8, 4, then 1 at a time.
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn product_rows<
    const M: usize,
    const K: usize,
    const N: usize,
    const MR: usize,
    const UPPER: bool,
>(
    a_at: impl Fn(usize, usize) -> f32 + Copy,
    b: &[[f32; N]; K],
    extra: Option<(&[f32; M], &[f32; N])>,
    r0: usize,
    c: &mut [[f32; N]; M],
) {
    // Upper: from the tile that reaches the diagonal (tiles start at multiples of 16).
    let mut j0 = if UPPER { r0 / 16 * 16 } else { 0 };
    while j0 + 16 <= N {
        product_tile::<M, K, N, MR, 16, UPPER>(a_at, b, extra, r0, j0, c);
        j0 += 16;
    }
    if j0 + 8 <= N {
        product_tile::<M, K, N, MR, 8, UPPER>(a_at, b, extra, r0, j0, c);
        j0 += 8;
    }
    if j0 + 4 <= N {
        product_tile::<M, K, N, MR, 4, UPPER>(a_at, b, extra, r0, j0, c);
        j0 += 4;
    }
    while j0 < N {
        product_tile::<M, K, N, MR, 1, UPPER>(a_at, b, extra, r0, j0, c);
        j0 += 1;
    }
}

/// The `MR×NR` tile of [`product`] at row `r0`, column `j0`.
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn product_tile<
    const M: usize,
    const K: usize,
    const N: usize,
    const MR: usize,
    const NR: usize,
    const UPPER: bool,
>(
    a_at: impl Fn(usize, usize) -> f32 + Copy,
    b: &[[f32; N]; K],
    extra: Option<(&[f32; M], &[f32; N])>,
    r0: usize,
    j0: usize,
    c: &mut [[f32; N]; M],
) {
    if r0 + MR > M || j0 + NR > N {
        return;
    }
    let mut t = [[0.0f32; NR]; MR];
    for k in if UPPER { r0.max(j0) } else { 0 }..K {
        let bk: [f32; NR] = core::array::from_fn(|q| b[k][j0 + q]);
        for r in 0..MR {
            let ark = a_at(r0 + r, k);
            for q in 0..NR {
                t[r][q] += ark * bk[q];
            }
        }
    }
    if let Some((e, f)) = extra {
        let f: [f32; NR] = core::array::from_fn(|q| f[j0 + q]);
        for r in 0..MR {
            let er = e[r0 + r];
            for q in 0..NR {
                t[r][q] += er * f[q];
            }
        }
    }
    let c = &mut c[r0..r0 + MR];
    for (cr, tr) in c.iter_mut().zip(&t) {
        cr[j0..j0 + NR].copy_from_slice(tr);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Uniform in `[-0.5, 0.5)` from a 64-bit LCG (Knuth's MMIX constants); shared by the
    /// crate's kernel tests.
    pub(crate) fn next(s: &mut u64) -> f32 {
        *s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*s >> 40) as f32 / 16_777_216.0 - 0.5
    }

    fn check_layer<const I: usize, const O: usize>(seed: u64) {
        let mut s = seed;
        let mut d = Dense::<I, O>::zeros();
        d.w = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
        d.b = core::array::from_fn(|_| next(&mut s));
        let x: [[f32; I]; 4] = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
        let g: [[f32; O]; 4] = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));

        // Forward: each output is `(Σ_i W_oi x_i) + b_o`, `i` ascending.
        let mut y = [0.0; O];
        d.forward(&x[0], &mut y);
        for o in 0..O {
            let mut want = 0.0f32;
            for i in 0..I {
                want += d.w[o][i] * x[0][i];
            }
            assert_eq!(y[o].to_bits(), (want + d.b[o]).to_bits());
        }
        // Backward: `dx_i += g_o W_oi`, `o` ascending.
        let mut dx = x[1];
        d.backward_input(&g[0], &mut dx);
        let mut want = x[1];
        for o in 0..O {
            axpy(g[0][o], &d.w[o], &mut want);
        }
        assert_eq!(dx, want);
        // A block of samples (feature-major, the samples as lanes) is each sample alone.
        let xb: [[f32; 4]; I] = core::array::from_fn(|i| core::array::from_fn(|c| x[c][i]));
        let gb: [[f32; 4]; O] = core::array::from_fn(|o| core::array::from_fn(|c| g[c][o]));
        let mut sb = [[0.0; 4]; O];
        d.forward_block(&xb, &mut sb);
        let mut db = xb;
        d.backward_input_block(&gb, &mut db);
        for c in 0..4 {
            let (mut y, mut dx) = ([0.0; O], x[c]);
            d.forward(&x[c], &mut y);
            d.backward_input(&g[c], &mut dx);
            for o in 0..O {
                assert_eq!(sb[o][c].to_bits(), y[o].to_bits());
            }
            for i in 0..I {
                assert_eq!(db[i][c].to_bits(), dx[i].to_bits());
            }
        }
        // A chunk of samples is the samples one by one, in order.
        let mut one = d;
        for c in 0..4 {
            one.accumulate(&g[c], &x[c]);
        }
        let mut chunked = d;
        let gs: [&[f32; O]; 4] = core::array::from_fn(|c| &g[c]);
        let xs: [&[f32; I]; 4] = core::array::from_fn(|c| &x[c]);
        chunked.accumulate_chunk(&gs, &xs);
        assert_eq!(one, chunked);
    }

    /// The blocked layer kernels against their one-row/one-sample definitions, bit for bit
    /// (row and column counts that leave every kind of remainder).
    #[test]
    fn blocked_layer_kernels_are_the_plain_sums_bit_for_bit() {
        check_layer::<4, 32>(1);
        check_layer::<32, 32>(2);
        check_layer::<32, 2>(3);
        check_layer::<32, 1>(4);
        check_layer::<13, 7>(5);
        check_layer::<3, 6>(6);
    }

    /// `tanh` against libm's `f64` `tanh` rounded to `f32`: at most 1 ulp apart, on every
    /// 64th `f32` from the smallest subnormal to 12 (the full sweep, every `f32`, gave the
    /// same bound: 1 ulp, 1.44e-7 relative, monotonic), plus the special values.
    #[test]
    fn tanh_within_one_ulp() {
        let mut bits = 1u32;
        let mut prev = 0.0f32;
        while f32::from_bits(bits) <= 12.0 {
            let x = f32::from_bits(bits);
            let y = tanh(x);
            let want = libm::tanh(f64::from(x)) as f32;
            let ulps = (i64::from(y.to_bits()) - i64::from(want.to_bits())).abs();
            assert!(ulps <= 1, "tanh({x:e}) = {y:e}, want {want:e}");
            assert!(y >= prev, "not monotonic at {x:e}");
            assert_eq!(tanh(-x), -y, "not odd at {x:e}");
            prev = y;
            bits += 64;
        }
        assert_eq!(tanh(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(1e30), 1.0);
        assert!(tanh(f32::NAN).is_nan());
    }
}
