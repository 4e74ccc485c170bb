//! Kronecker-factored curvature (K-FAC, Martens & Grosse 2015) for dense layers.
//!
//! For a layer `s = W x + b` with `W: O×I`, the Fisher block of `θ = vec([W | b])` is
//! approximated by `Ā ⊗ S`, where
//! - `Ā = E[ā āᵀ]`, `ā = [x; 1]` (the bias folded in), `(I+1)×(I+1)`: an [`InputFactor`];
//! - `S = E[g gᵀ]`, `g = ∂(−log p)/∂s` from the *sampled* Fisher loss, `O×O`: an [`OutputFactor`].
//!
//! Both are running averages `F ← ρ F + (1 − ρ) E_batch[·]`.
//!
//! **Damping (factored Tikhonov, stated).** The preconditioner solves
//! `(Ā + π√λ I) ⊗ (S + √λ/π I) vec(V) = vec(G)`, i.e. `V = (S + √λ/π I)⁻¹ G (Ā + π√λ I)⁻¹`,
//! with `π = sqrt((tr Ā/(I+1)) / (tr S/O))` (Martens & Grosse §6.3). Layers that read the same
//! input share one `Ā` and are treated as one layer with a block-diagonal `S` (π uses the
//! traces of all blocks). The damped factors are decomposed `L D Lᵀ` (unit lower `L`, no square
//! roots, cheaper than an eigendecomposition: see `docs/algorithm.md`).
//!
//! **Storage.** A factor of size `n` lives in one `n×n` array: the strict upper triangle holds
//! the running average, the strict lower triangle the `L` of the damped factor, the diagonal
//! `1/D`; the average's diagonal sits in a separate vector. The input factor keeps its bias row
//! `E[x]` and `L`'s last row beside it; its corner `E[1·1] = 1` is implicit. So the "inverse"
//! costs no memory beyond the statistics themselves on a microcontroller.
//!
//! **Hosts** (`cfg(not(target_os = "none"))`) also keep each damped factor's explicit inverse,
//! `(L D Lᵀ)⁻¹ = Xᵀ D⁻¹ X` with `X = L⁻¹`, formed after each decomposition, and precondition
//! with two matrix products instead of four triangular solves (the same multiply-adds, in
//! register tiles: [`precondition_explicit`]). The inverses are derived data: checkpoints keep
//! the decomposition, and [`Curvature::set_factorized`] rebuilds them on restore.

use crate::dense::{axpy, dot};
use crate::encoder::{Encoder, EncoderCurvature};
use crate::Error;

/// Smallest pivot `D_i` accepted as positive.
const MIN_PIVOT: f32 = 1e-12;

/// Rows of `L_A` one triangular-solve pass carries at once (independent sums in flight).
const LB: usize = 4;

/// `L D Lᵀ` of the symmetric matrix whose strict upper triangle is in `m` and diagonal in
/// `diag`, plus `shift·I`. Writes `L` (strict lower) and `1/D` (diagonal) into `m`; leaves
/// the upper triangle untouched. Fails if a pivot is not positive and finite.
fn ldl<const N: usize>(m: &mut [[f32; N]; N], diag: &[f32; N], shift: f32) -> Result<(), Error> {
    #[cfg(not(target_os = "none"))]
    return ldl_outer(m, diag, shift);
    #[cfg(target_os = "none")]
    return ldl_dot(m, diag, shift);
}

/// [`ldl`] in the left-looking (dot-product) form, for the microcontroller: each entry is
/// finished in registers and stored once (the right-looking [`ldl_outer`] stores every entry
/// once per pivot: ~90k more instructions per factorization of a 4-32-32 net on the M4).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn ldl_dot<const N: usize>(
    m: &mut [[f32; N]; N],
    diag: &[f32; N],
    shift: f32,
) -> Result<(), Error> {
    let mut ld = [0.0f32; N]; // ld[k] = L_ik D_k for the current row i
    for i in 0..N {
        for j in 0..i {
            let (head, tail) = m.split_at_mut(i);
            let s = head[j][i] - dot(&ld[..j], &head[j][..j]);
            ld[j] = s;
            tail[0][j] = s * head[j][j];
        }
        let d = diag[i] + shift - dot(&ld[..i], &m[i][..i]);
        if !(d > MIN_PIVOT && d.is_finite()) {
            return Err(Error::UpdateNotPositiveDefinite);
        }
        m[i][i] = 1.0 / d;
    }
    Ok(())
}

/// [`ldl`] in the right-looking (outer-product) form, for hosts: the matrix is copied into the
/// lower triangle, then each pivot `k` takes its column out of the rows below,
/// `A_ij −= L_ik (L_jk D_k)` for `k < j ≤ i`. Entry `(i, j)` receives its terms in `k` order, as
/// in the textbook recurrence, and the rows are contiguous, so the updates vectorise (a
/// dot-product form was latency-bound: 1.7× slower for the factors of a 4-64-64 net).
///
/// Pivots go in panels of [`LDL_PANEL`]: a panel's pivots first update only the panel's own
/// columns (every row below), then the columns right of the panel take the panel's terms in one
/// pass per row, `k` ascending within the pass: the same products subtracted in the same order
/// as one pivot at a time (bit for bit, pinned by a test), with a quarter of the passes over
/// the trailing rows and the panel's own columns updated as vectors down the rows (a 64-wide
/// factor 7.2 → 5.6 µs).
#[cfg(not(target_os = "none"))]
fn ldl_outer<const N: usize>(
    m: &mut [[f32; N]; N],
    diag: &[f32; N],
    shift: f32,
) -> Result<(), Error> {
    for i in 0..N {
        for j in 0..i {
            m[i][j] = m[j][i];
        }
        m[i][i] = diag[i] + shift;
    }
    // The panel's columns, transposed: `u[q][i]` = entry `(i, k0 + q)` as the updates reach
    // it, so that at pivot `k = k0 + q` it is `L_ik D_k`; `l[q][i] = L_ik`.
    let mut u = [[0.0f32; N]; LDL_PANEL];
    let mut l = [[0.0f32; N]; LDL_PANEL];
    let mut k0 = 0;
    while k0 < N {
        let p = LDL_PANEL.min(N - k0);
        let end = k0 + p;
        for (q, uq) in u.iter_mut().enumerate().take(p) {
            for i in k0 + q..N {
                uq[i] = m[i][k0 + q];
            }
        }
        // The panel, pivot by pivot, vectorised down its columns.
        for q in 0..p {
            let k = k0 + q;
            let (done, rest) = u.split_at_mut(q + 1);
            let uq = &done[q];
            let d = uq[k];
            if !(d > MIN_PIVOT && d.is_finite()) {
                return Err(Error::UpdateNotPositiveDefinite);
            }
            let d_inv = 1.0 / d;
            for (li, &ui) in l[q][k + 1..].iter_mut().zip(&uq[k + 1..]) {
                *li = ui * d_inv;
            }
            for (r, ur) in rest.iter_mut().enumerate().take(p - q - 1) {
                let j = k + 1 + r;
                let uj = uq[j];
                for (a, &li) in ur[j..].iter_mut().zip(&l[q][j..]) {
                    *a -= li * uj;
                }
            }
            m[k][k] = d_inv;
            for i in k + 1..N {
                m[i][k] = l[q][i];
            }
        }
        // The rows below: the columns right of the panel take its terms, one pass per row.
        for i in end..N {
            let rest = &mut m[i][end..=i];
            if p == LDL_PANEL {
                let li: [f32; LDL_PANEL] = core::array::from_fn(|q| l[q][i]);
                let [u0, u1, u2, u3] = &u;
                let us = u0[end..=i]
                    .iter()
                    .zip(&u1[end..=i])
                    .zip(&u2[end..=i])
                    .zip(&u3[end..=i]);
                for (a, (((&x0, &x1), &x2), &x3)) in rest.iter_mut().zip(us) {
                    *a = (((*a - li[0] * x0) - li[1] * x1) - li[2] * x2) - li[3] * x3;
                }
            } else {
                for q in 0..p {
                    for (a, &uj) in rest.iter_mut().zip(&u[q][end..=i]) {
                        *a -= l[q][i] * uj;
                    }
                }
            }
        }
        k0 = end;
    }
    Ok(())
}

/// Pivots per panel of [`ldl_outer`].
#[cfg(not(target_os = "none"))]
const LDL_PANEL: usize = 4;

/// Rank-one update of the upper triangle and diagonal: `M += w x xᵀ`.
#[inline]
fn add_outer_upper<const N: usize>(
    m: &mut [[f32; N]; N],
    diag: &mut [f32; N],
    x: &[f32; N],
    w: f32,
) {
    for i in 0..N {
        let wx = w * x[i];
        diag[i] += wx * x[i];
        axpy(wx, &x[i + 1..], &mut m[i][i + 1..]);
    }
}

/// Rank-`C` update of the upper triangle and diagonal: `M += Σ_c w x_c x_cᵀ`.
///
/// Each entry of `M` is loaded and stored once per chunk and receives the `C` products in
/// sample order, so the result is bit for bit that of `C` calls of [`add_outer_upper`]
/// (which re-reads and re-writes the whole triangle per sample).
#[inline]
fn add_outer_upper_chunk<const N: usize, const C: usize>(
    m: &mut [[f32; N]; N],
    diag: &mut [f32; N],
    xs: &[&[f32; N]; C],
    w: f32,
) {
    #[cfg(not(target_os = "none"))]
    if N % TILE == 0 {
        add_outer_upper_tiles(m, diag, xs, w);
        return;
    }
    // Four rows at a time: each `x_c[j]` loaded once for all four, and four independent sums
    // per column overlap their adds' latencies (~7% faster than two rows at a time).
    let mut i = 0;
    while i + 4 <= N {
        let wx: [[f32; C]; 4] =
            core::array::from_fn(|r| core::array::from_fn(|c| w * xs[c][i + r]));
        let (_, rows) = m.split_at_mut(i);
        let [r0, r1, r2, r3, ..] = rows else {
            break;
        };
        // The block's own upper triangle (diagonal in `diag`).
        for r in 0..4 {
            let d = &mut diag[i + r];
            let mut acc = *d;
            for c in 0..C {
                acc += wx[r][c] * xs[c][i + r];
            }
            *d = acc;
        }
        let upper = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)];
        for (r, q) in upper {
            let row: &mut [f32; N] = match r {
                0 => r0,
                1 => r1,
                _ => r2,
            };
            let mut acc = row[i + q];
            for c in 0..C {
                acc += wx[r][c] * xs[c][i + q];
            }
            row[i + q] = acc;
        }
        for j in i + 4..N {
            let mut a = [r0[j], r1[j], r2[j], r3[j]];
            for c in 0..C {
                let x = xs[c][j];
                for r in 0..4 {
                    a[r] += wx[r][c] * x;
                }
            }
            r0[j] = a[0];
            r1[j] = a[1];
            r2[j] = a[2];
            r3[j] = a[3];
        }
        i += 4;
    }
    // Then two rows at a time.
    while i + 1 < N {
        let wx0: [f32; C] = core::array::from_fn(|c| w * xs[c][i]);
        let wx1: [f32; C] = core::array::from_fn(|c| w * xs[c][i + 1]);
        let (top, bottom) = m.split_at_mut(i + 1);
        let (r0, r1) = (&mut top[i], &mut bottom[0]);
        let (mut d0, mut m01, mut d1) = (diag[i], r0[i + 1], diag[i + 1]);
        for c in 0..C {
            d0 += wx0[c] * xs[c][i];
            m01 += wx0[c] * xs[c][i + 1];
            d1 += wx1[c] * xs[c][i + 1];
        }
        diag[i] = d0;
        r0[i + 1] = m01;
        diag[i + 1] = d1;
        for j in i + 2..N {
            let (mut a0, mut a1) = (r0[j], r1[j]);
            for c in 0..C {
                let x = xs[c][j];
                a0 += wx0[c] * x;
                a1 += wx1[c] * x;
            }
            r0[j] = a0;
            r1[j] = a1;
        }
        i += 2;
    }
    if i < N {
        let mut d = diag[i];
        for c in 0..C {
            d += w * xs[c][i] * xs[c][i];
        }
        diag[i] = d;
    }
}

/// Side of the square tiles of [`add_outer_upper_tiles`].
#[cfg(not(target_os = "none"))]
const TILE: usize = 8;

/// [`add_outer_upper_chunk`] on hosts (many vector registers) for `N` a multiple of [`TILE`]:
/// the triangle in `TILE×TILE` tiles, each held in registers while the `C` samples pass, so one
/// load of `x_c[j..j+TILE]` serves `TILE` rows and no row ends in a partial vector. A diagonal
/// tile is computed whole and only its upper half and diagonal written back. Same products,
/// same order: bit for bit the four-row kernel (3× faster on a 64-wide factor with `C = 16`).
#[cfg(not(target_os = "none"))]
#[inline]
fn add_outer_upper_tiles<const N: usize, const C: usize>(
    m: &mut [[f32; N]; N],
    diag: &mut [f32; N],
    xs: &[&[f32; N]; C],
    w: f32,
) {
    for i0 in (0..N).step_by(TILE) {
        // Sample-major, so that building it is plain loads (row-major was a gather).
        let wx: [[f32; TILE]; C] =
            core::array::from_fn(|c| core::array::from_fn(|r| w * xs[c][i0 + r]));
        // The diagonal tile: its lower half is `L` and its diagonal `1/D`, computed on but
        // not written back (copies of whole rows keep the tile in vector registers).
        let mut t = [[0.0f32; TILE]; TILE];
        for (r, t) in t.iter_mut().enumerate() {
            t.copy_from_slice(&m[i0 + r][i0..i0 + TILE]);
            t[r] = diag[i0 + r];
        }
        tile_products(&mut t, &wx, xs, i0);
        for (r, t) in t.iter().enumerate() {
            diag[i0 + r] = t[r];
            m[i0 + r][i0 + r + 1..i0 + TILE].copy_from_slice(&t[r + 1..]);
        }
        // The tiles right of it.
        for j0 in (i0 + TILE..N).step_by(TILE) {
            let mut t: [[f32; TILE]; TILE] =
                core::array::from_fn(|r| core::array::from_fn(|q| m[i0 + r][j0 + q]));
            tile_products(&mut t, &wx, xs, j0);
            for (r, row) in t.iter().enumerate() {
                m[i0 + r][j0..j0 + TILE].copy_from_slice(row);
            }
        }
    }
}

/// `t[r][q] += Σ_c wx[c][r] x_c[j0 + q]`, samples in order.
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn tile_products<const N: usize, const C: usize>(
    t: &mut [[f32; TILE]; TILE],
    wx: &[[f32; TILE]; C],
    xs: &[&[f32; N]; C],
    j0: usize,
) {
    for c in 0..C {
        let x: [f32; TILE] = core::array::from_fn(|q| xs[c][j0 + q]);
        for r in 0..TILE {
            for q in 0..TILE {
                t[r][q] += wx[c][r] * x[q];
            }
        }
    }
}

/// Visit the statistics of an upper-stored symmetric matrix: the strict upper triangle row by
/// row, then the diagonal (the strict lower triangle holds the decomposition's `L`).
fn visit_upper<const N: usize>(
    m: &mut [[f32; N]; N],
    diag: &mut [f32; N],
    f: &mut dyn FnMut(&mut [f32]),
) {
    for (i, row) in m.iter_mut().enumerate() {
        f(&mut row[i + 1..]);
    }
    f(diag);
}

fn scale_upper<const N: usize>(m: &mut [[f32; N]; N], diag: &mut [f32; N], rho: f32) {
    for i in 0..N {
        diag[i] *= rho;
        m[i][i + 1..].iter_mut().for_each(|v| *v *= rho);
    }
}

/// Whether a running average of outer products is finite, read from its diagonal alone: every
/// term `w x_i x_j` is bounded by `w (x_i² + x_j²) / 2`, so a NaN or infinite entry comes with a
/// NaN or infinite diagonal entry (`n` reads instead of `n²`, every update).
fn upper_is_finite<const N: usize>(diag: &[f32; N]) -> bool {
    diag.iter().all(|v| v.is_finite())
}

fn write_dense<const N: usize>(m: &[[f32; N]; N], diag: &[f32; N], n: usize, out: &mut [f32]) {
    for i in 0..N {
        for j in 0..N {
            out[i * n + j] = match i.cmp(&j) {
                core::cmp::Ordering::Less => m[i][j],
                core::cmp::Ordering::Equal => diag[i],
                core::cmp::Ordering::Greater => m[j][i],
            };
        }
    }
}

/// `Ā = E[ā āᵀ]` with `ā = [x; 1]`, `x ∈ ℝᴵ`, and the `L D Lᵀ` of its damped form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputFactor<const I: usize> {
    m: [[f32; I]; I],
    diag: [f32; I],
    mean: [f32; I],
    l_last: [f32; I],
    d_last_inv: f32,
    /// Hosts: `(Ā + shift·I)⁻¹` in full, from the decomposition (see [`InputFactor::invert`]).
    #[cfg(not(target_os = "none"))]
    inv: ExplicitInverse<I>,
}

impl<const I: usize> Default for InputFactor<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const I: usize> InputFactor<I> {
    /// Zero statistics, no decomposition.
    pub const fn new() -> Self {
        Self {
            m: [[0.0; I]; I],
            diag: [0.0; I],
            mean: [0.0; I],
            l_last: [0.0; I],
            d_last_inv: 0.0,
            #[cfg(not(target_os = "none"))]
            inv: ExplicitInverse::new(),
        }
    }

    /// `Ā ← ρ Ā` (the corner stays 1: the averages' weights sum to 1).
    pub fn scale(&mut self, rho: f32) {
        scale_upper(&mut self.m, &mut self.diag, rho);
        self.mean.iter_mut().for_each(|v| *v *= rho);
    }

    /// `Ā += w ā āᵀ` (without the corner, which is kept at 1).
    #[inline]
    pub fn add(&mut self, x: &[f32; I], w: f32) {
        add_outer_upper(&mut self.m, &mut self.diag, x, w);
        axpy(w, x, &mut self.mean);
    }

    /// `Ā += Σ_c w ā_c ā_cᵀ` for the `C` inputs `xs` (a rank-`C` update): the same numbers as
    /// `C` calls of [`InputFactor::add`] in order, with one pass over the statistics.
    #[inline]
    pub fn add_chunk<const C: usize>(&mut self, xs: &[&[f32; I]; C], w: f32) {
        add_outer_upper_chunk(&mut self.m, &mut self.diag, xs, w);
        for j in 0..I {
            let mut acc = self.mean[j];
            for x in xs {
                acc += w * x[j];
            }
            self.mean[j] = acc;
        }
    }

    /// Visit every stored number (statistics and decomposition), in a fixed order.
    pub fn visit_mut(&mut self, f: &mut impl FnMut(&mut [f32])) {
        f(self.m.as_flattened_mut());
        f(&mut self.diag);
        f(&mut self.mean);
        f(&mut self.l_last);
        f(core::slice::from_mut(&mut self.d_last_inv));
    }

    /// Visit the statistics alone (upper triangle, diagonal, mean; not the decomposition), in
    /// a fixed order: what a data-parallel update sums over ranks.
    pub fn visit_statistics_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        visit_upper(&mut self.m, &mut self.diag, f);
        f(&mut self.mean);
    }

    /// `tr Ā`.
    pub fn trace(&self) -> f32 {
        self.diag.iter().sum::<f32>() + 1.0
    }

    /// All statistics finite.
    pub fn is_finite(&self) -> bool {
        upper_is_finite(&self.diag) && self.mean.iter().all(|v| v.is_finite())
    }

    /// Decompose `Ā + shift·I = L D Lᵀ`.
    pub fn factorize(&mut self, shift: f32) -> Result<(), Error> {
        ldl(&mut self.m, &self.diag, shift)?;
        // Last row: L_Ij D_j = E[x_j] − Σ_{k<j} L_Ik L_jk D_k; D_I = 1 + shift − Σ L_Ik² D_k.
        let mut ld = [0.0f32; I];
        for j in 0..I {
            let s = self.mean[j] - dot(&ld[..j], &self.m[j][..j]);
            ld[j] = s;
            self.l_last[j] = s * self.m[j][j];
        }
        let d = 1.0 + shift - dot(&ld, &self.l_last);
        if !(d > MIN_PIVOT && d.is_finite()) {
            return Err(Error::UpdateNotPositiveDefinite);
        }
        self.d_last_inv = 1.0 / d;
        #[cfg(not(target_os = "none"))]
        self.invert();
        Ok(())
    }

    /// Hosts: the explicit inverse from the decomposition. With `X = L⁻¹` (unit lower,
    /// `(I+1)×(I+1)`), `(L D Lᵀ)⁻¹ = Xᵀ D⁻¹ X`; the last row of `X` is
    /// `x_I = e_I − Σ_{k<I} L_Ik x_k`, the only row with a 1 in the bias column, so the bias
    /// row of the inverse is `D_I⁻¹ x_I` (and its corner `D_I⁻¹`).
    #[cfg(not(target_os = "none"))]
    pub(crate) fn invert(&mut self) {
        let mut x = [[0.0f32; I]; I];
        unit_lower_inverse(&self.m, &mut x);
        let mut x_last = [0.0f32; I];
        for (k, xk) in x.iter().enumerate() {
            axpy(-self.l_last[k], &xk[..=k], &mut x_last[..=k]);
        }
        let d = self.d_last_inv;
        inverse_from_ldl(&self.m, &x, Some((&x_last, d)), &mut self.inv.m);
        self.inv.last = x_last.map(|v| d * v);
        self.inv.corner = d;
    }

    /// `[r, r_b] ← [r, r_b] L⁻ᵀ` (forward substitution) on `RB` rows of `[W | b]` at once:
    /// `r_i ← r_i − Σ_{k<i} L_ik r_k` (`k` ascending), then `r_b ← r_b − Σ_k L_Ik r_k`. The
    /// block is worked on transposed (`t[k]` holds column `k` of the `RB` rows), so every
    /// `L_ik` is loaded once for the block and the `RB` rows form one vector. Rows `i` of `L` go
    /// [`LB`] at a time: their sums are independent chains until the block's own triangle, so
    /// the adds' latency overlaps (one chain at a time is latency-bound, ~4× slower), while
    /// each sum keeps its order. (Not inlined: one block's transposed copy on the stack at a
    /// time.)
    #[inline(never)]
    fn forward_rows<const RB: usize>(&self, r: &mut [[f32; I]; RB], rb: &mut [f32; RB]) {
        let mut t = transpose(r);
        let mut bias = *rb;
        let mut i0 = 0;
        while i0 + LB <= I {
            let mut acc: [[f32; RB]; LB] = core::array::from_fn(|j| t[i0 + j]);
            for (k, tk) in t[..i0].iter().enumerate() {
                for (j, aj) in acc.iter_mut().enumerate() {
                    let l = self.m[i0 + j][k];
                    for q in 0..RB {
                        aj[q] -= l * tk[q];
                    }
                }
            }
            for j in 1..LB {
                let (done, rest) = acc.split_at_mut(j);
                for (k, tk) in done.iter().enumerate() {
                    let l = self.m[i0 + j][i0 + k];
                    for q in 0..RB {
                        rest[0][q] -= l * tk[q];
                    }
                }
            }
            for (j, aj) in acc.iter().enumerate() {
                let l = self.l_last[i0 + j];
                for q in 0..RB {
                    bias[q] -= l * aj[q];
                }
                t[i0 + j] = *aj;
            }
            i0 += LB;
        }
        for i in i0..I {
            let mut acc = t[i];
            for (tk, &l) in t[..i].iter().zip(&self.m[i][..i]) {
                for q in 0..RB {
                    acc[q] -= l * tk[q];
                }
            }
            t[i] = acc;
            let l = self.l_last[i];
            for q in 0..RB {
                bias[q] -= l * acc[q];
            }
        }
        *rb = bias;
        untranspose(&t, r);
    }

    /// `[r, r_b] ← [r, r_b] L⁻¹` (back substitution) on `RB` rows of `[W | b]` at once:
    /// `r_k ← r_k − r_b L_Ik − Σ_{i>k} L_ik r_i` for `k` from the last (`i` descending), on the
    /// transposed block and [`LB`] columns `k` at a time, as in [`InputFactor::forward_rows`].
    #[inline(never)]
    fn backward_rows<const RB: usize>(&self, r: &mut [[f32; I]; RB], rb: &[f32; RB]) {
        let mut t = transpose(r);
        let mut end = I;
        while end >= LB {
            // acc[j] is column k = end − 1 − j.
            let mut acc: [[f32; RB]; LB] = core::array::from_fn(|j| {
                let k = end - 1 - j;
                let lk = self.l_last[k];
                core::array::from_fn(|q| t[k][q] - rb[q] * lk)
            });
            for i in (end..I).rev() {
                let ti = t[i];
                for (j, aj) in acc.iter_mut().enumerate() {
                    let l = self.m[i][end - 1 - j];
                    for q in 0..RB {
                        aj[q] -= l * ti[q];
                    }
                }
            }
            for j in 1..LB {
                let (done, rest) = acc.split_at_mut(j);
                for (jj, ti) in done.iter().enumerate() {
                    let l = self.m[end - 1 - jj][end - 1 - j];
                    for q in 0..RB {
                        rest[0][q] -= l * ti[q];
                    }
                }
            }
            for (j, aj) in acc.iter().enumerate() {
                t[end - 1 - j] = *aj;
            }
            end -= LB;
        }
        for k in (0..end).rev() {
            let lk = self.l_last[k];
            let mut acc: [f32; RB] = core::array::from_fn(|q| t[k][q] - rb[q] * lk);
            for (ti, li) in t[k + 1..].iter().zip(&self.m[k + 1..]).rev() {
                let l = li[k];
                for q in 0..RB {
                    acc[q] -= l * ti[q];
                }
            }
            t[k] = acc;
        }
        untranspose(&t, r);
    }

    /// The dense `(I+1)×(I+1)` statistics `Ā`, row-major, into `out` (for tests and tools).
    pub fn write_dense(&self, out: &mut [f32]) {
        let n = I + 1;
        write_dense(&self.m, &self.diag, n, out);
        for i in 0..I {
            out[i * n + I] = self.mean[i];
            out[I * n + i] = self.mean[i];
        }
        out[I * n + I] = 1.0;
    }
}

/// `S = E[g gᵀ]`, `g ∈ ℝᴼ`, and the `L D Lᵀ` of its damped form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputFactor<const O: usize> {
    m: [[f32; O]; O],
    diag: [f32; O],
    /// Hosts: `(S + shift·I)⁻¹` in full, from the decomposition.
    #[cfg(not(target_os = "none"))]
    inv: [[f32; O]; O],
}

impl<const O: usize> Default for OutputFactor<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const O: usize> OutputFactor<O> {
    /// Zero statistics, no decomposition.
    pub const fn new() -> Self {
        Self {
            m: [[0.0; O]; O],
            diag: [0.0; O],
            #[cfg(not(target_os = "none"))]
            inv: [[0.0; O]; O],
        }
    }

    /// `S ← ρ S`.
    pub fn scale(&mut self, rho: f32) {
        scale_upper(&mut self.m, &mut self.diag, rho);
    }

    /// `S += w g gᵀ`.
    #[inline]
    pub fn add(&mut self, g: &[f32; O], w: f32) {
        add_outer_upper(&mut self.m, &mut self.diag, g, w);
    }

    /// `S += Σ_c w g_c g_cᵀ` for the `C` gradients `gs` (a rank-`C` update): the same numbers
    /// as `C` calls of [`OutputFactor::add`] in order, with one pass over the statistics.
    #[inline]
    pub fn add_chunk<const C: usize>(&mut self, gs: &[&[f32; O]; C], w: f32) {
        add_outer_upper_chunk(&mut self.m, &mut self.diag, gs, w);
    }

    /// Visit every stored number (statistics and decomposition), in a fixed order.
    pub fn visit_mut(&mut self, f: &mut impl FnMut(&mut [f32])) {
        f(self.m.as_flattened_mut());
        f(&mut self.diag);
    }

    /// Visit the statistics alone (upper triangle, diagonal; not the decomposition), in a
    /// fixed order: what a data-parallel update sums over ranks.
    pub fn visit_statistics_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        visit_upper(&mut self.m, &mut self.diag, f);
    }

    /// `tr S`.
    pub fn trace(&self) -> f32 {
        self.diag.iter().sum()
    }

    /// All statistics finite.
    pub fn is_finite(&self) -> bool {
        upper_is_finite(&self.diag)
    }

    /// Decompose `S + shift·I = L D Lᵀ`.
    pub fn factorize(&mut self, shift: f32) -> Result<(), Error> {
        ldl(&mut self.m, &self.diag, shift)?;
        #[cfg(not(target_os = "none"))]
        self.invert();
        Ok(())
    }

    /// Hosts: the explicit inverse `(L D Lᵀ)⁻¹ = Xᵀ D⁻¹ X`, `X = L⁻¹`.
    #[cfg(not(target_os = "none"))]
    pub(crate) fn invert(&mut self) {
        let mut x = [[0.0f32; O]; O];
        unit_lower_inverse(&self.m, &mut x);
        inverse_from_ldl(&self.m, &x, None, &mut self.inv);
    }

    /// The dense `O×O` statistics `S`, row-major, into `out`.
    pub fn write_dense(&self, out: &mut [f32]) {
        write_dense(&self.m, &self.diag, O, out);
    }
}

/// π-adjusted split of the damping `λ` between the two factors:
/// returns `(π√λ, √λ/π)` with `π = sqrt((tr Ā / dim Ā) / (tr S / dim S))`, `π = 1` when a trace is
/// not positive.
pub fn damping_split(
    trace_a: f32,
    dim_a: usize,
    trace_s: f32,
    dim_s: usize,
    damping: f32,
) -> (f32, f32) {
    let ra = trace_a / dim_a as f32;
    let rs = trace_s / dim_s as f32;
    let pi = if ra > 0.0 && rs > 0.0 && ra.is_finite() && rs.is_finite() {
        libm::sqrtf(ra / rs)
    } else {
        1.0
    };
    let sl = libm::sqrtf(damping);
    (pi * sl, sl / pi)
}

/// Natural gradient of one layer, in place: `[W | b] ← S_d⁻¹ [∇W | ∇b] Ā_d⁻¹` with the damped,
/// decomposed factors. Returns `gᵀ (Ā_d ⊗ S_d)⁻¹ g = vᵀ (Ā_d ⊗ S_d) v`, this layer's share of the
/// trust-region quadratic form `Δθᵀ F̂ Δθ` (computed from the half-solves
/// `Y = L_S⁻¹ G L_A⁻ᵀ` as `Σ Y_ij² / (D_S,i D_A,j)`, no explicit Fisher).
///
/// Both factors must have been [`factorize`](InputFactor::factorize)d.
pub fn precondition<const I: usize, const O: usize>(
    a: &InputFactor<I>,
    s: &OutputFactor<O>,
    w: &mut [[f32; I]; O],
    b: &mut [f32; O],
) -> f32 {
    // Y ← G L_A⁻ᵀ, a block of rows at a time.
    a_solve_rows::<I, 8, true>(a, w, b);
    // Across rows: Y ← L_S⁻¹ Y.
    s_solve::<I, O, false>(s, w, b);
    // Z = D_S⁻¹ Y D_A⁻¹ and q = Σ Y_ij² / (D_S,i D_A,j), the weights' terms summed in
    // [`Q_LANES`] partial sums (lane `j mod Q_LANES`, rows in order; one serial sum was a
    // quarter of this function), the bias terms in their own.
    let da: [f32; I] = core::array::from_fn(|j| a.m[j][j]);
    let mut lanes = [0.0f32; Q_LANES];
    let mut qb = 0.0;
    for i in 0..O {
        let dsi = s.m[i][i];
        let row = &mut w[i];
        for (r, d) in row.chunks_mut(Q_LANES).zip(da.chunks(Q_LANES)) {
            for ((v, &dj), lane) in r.iter_mut().zip(d).zip(lanes.iter_mut()) {
                let f = dsi * dj;
                *lane += *v * *v * f;
                *v *= f;
            }
        }
        let f = dsi * a.d_last_inv;
        qb += b[i] * b[i] * f;
        b[i] *= f;
    }
    let q = sum_lanes(&lanes) + qb;
    // Across rows: V ← L_S⁻ᵀ Z.
    s_solve::<I, O, true>(s, w, b);
    // V ← V L_A⁻¹.
    a_solve_rows::<I, 8, false>(a, w, b);
    q
}

/// `(Ā + shift·I)⁻¹` of an input factor (hosts): the `I×I` block of the weights' inputs, the
/// bias row (`= column`) beside it, and the corner.
#[cfg(not(target_os = "none"))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct ExplicitInverse<const I: usize> {
    m: [[f32; I]; I],
    last: [f32; I],
    corner: f32,
}

#[cfg(not(target_os = "none"))]
impl<const I: usize> ExplicitInverse<I> {
    const fn new() -> Self {
        Self {
            m: [[0.0; I]; I],
            last: [0.0; I],
            corner: 0.0,
        }
    }
}

/// `X = L⁻¹` for the unit lower-triangular `L` in the strict lower triangle of `m`: row `i`
/// of `X` is `e_i − Σ_{k<i} L_ik x_k` (zero right of the diagonal). Rows go four at a time:
/// the finished rows above the block enter in register tiles of 16 (then 8, 4) columns, as
/// in a matrix product (column `j` of `X` is zero above row `j`, so a tile at `j0` sums from
/// `k = j0`), then the block's own triangle; rows left over (`N` not a multiple of 4) one at a
/// time.
#[cfg(not(target_os = "none"))]
fn unit_lower_inverse<const N: usize>(m: &[[f32; N]; N], x: &mut [[f32; N]; N]) {
    const R: usize = 4;
    let mut i0 = 0;
    while i0 + R <= N {
        let (done, rest) = x.split_at_mut(i0);
        let Some(Ok(block)) = rest.get_mut(..R).map(<&mut [[f32; N]; R]>::try_from) else {
            return;
        };
        for (r, row) in block.iter_mut().enumerate() {
            *row = [0.0; N];
            row[i0 + r] = 1.0;
        }
        let mut j0 = 0;
        while j0 + 16 <= i0 {
            lower_inverse_tile::<N, 16>(m, done, block, i0, j0);
            j0 += 16;
        }
        if j0 + 8 <= i0 {
            lower_inverse_tile::<N, 8>(m, done, block, i0, j0);
            j0 += 8;
        }
        if j0 + 4 <= i0 {
            lower_inverse_tile::<N, 4>(m, done, block, i0, j0);
        }
        for r in 1..R {
            let (top, bottom) = block.split_at_mut(r);
            for (q, xq) in top.iter().enumerate() {
                axpy(
                    -m[i0 + r][i0 + q],
                    &xq[..=i0 + q],
                    &mut bottom[0][..=i0 + q],
                );
            }
        }
        i0 += R;
    }
    for i in i0..N {
        let (done, rest) = x.split_at_mut(i);
        let xi = &mut rest[0];
        *xi = [0.0; N];
        xi[i] = 1.0;
        for (k, xk) in done.iter().enumerate() {
            axpy(-m[i][k], &xk[..=k], &mut xi[..=k]);
        }
    }
}

/// Columns `j0..j0 + W` of the rows `i0..i0 + 4` of [`unit_lower_inverse`]:
/// `−Σ_{j0 ≤ k < i0} L_ik X_kj`, `k` ascending.
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn lower_inverse_tile<const N: usize, const W: usize>(
    m: &[[f32; N]; N],
    done: &[[f32; N]],
    block: &mut [[f32; N]; 4],
    i0: usize,
    j0: usize,
) {
    if j0 + W > N || i0 + 4 > N {
        return;
    }
    let mut t = [[0.0f32; W]; 4];
    for (k, xk) in done.iter().enumerate().skip(j0) {
        let xk: [f32; W] = core::array::from_fn(|q| xk[j0 + q]);
        for r in 0..4 {
            let l = m[i0 + r][k];
            for q in 0..W {
                t[r][q] -= l * xk[q];
            }
        }
    }
    for (row, tr) in block.iter_mut().zip(&t) {
        row[j0..j0 + W].copy_from_slice(tr);
    }
}

/// `inv = Xᵀ D⁻¹ X (+ D_e⁻¹ x_e x_eᵀ)` with `1/D` on the diagonal of `m` and `X = L⁻¹`, plus
/// the optional extra row `x_e` of `X` with its `1/D_e` (an input factor's bias row). One
/// matrix product, then the upper triangle mirrored so the result is exactly symmetric.
#[cfg(not(target_os = "none"))]
fn inverse_from_ldl<const N: usize>(
    m: &[[f32; N]; N],
    x: &[[f32; N]; N],
    extra: Option<(&[f32; N], f32)>,
    inv: &mut [[f32; N]; N],
) {
    let mut dx = [[0.0f32; N]; N];
    for k in 0..N {
        let dk = m[k][k];
        for (v, &u) in dx[k].iter_mut().zip(&x[k]) {
            *v = dk * u;
        }
    }
    match extra {
        Some((xe, d)) => {
            let dxe = xe.map(|v| d * v);
            crate::dense::matmul_lower_tn(x, &dx, Some((xe, &dxe)), inv);
        }
        None => crate::dense::matmul_lower_tn(x, &dx, None, inv),
    }
    for i in 1..N {
        for j in 0..i {
            inv[i][j] = inv[j][i];
        }
    }
}

/// [`precondition`] on hosts, from the explicit inverses: `Y = [G | g_b] Ā_d⁻¹`, then
/// `V = S_d⁻¹ Y`, two matrix products (the same multiply-adds as the four triangular solves;
/// a 4-64-64 net's preconditioning 22.9 → 15.7 µs). The quadratic form is
/// `⟨G, V⟩ = gᵀ (Ā_d ⊗ S_d)⁻¹ g`, summed in [`Q_LANES`] lanes. Equal to [`precondition`] up
/// to rounding.
#[cfg(not(target_os = "none"))]
pub fn precondition_explicit<const I: usize, const O: usize>(
    a: &InputFactor<I>,
    s: &OutputFactor<O>,
    w: &mut [[f32; I]; O],
    b: &mut [f32; O],
) -> f32 {
    use crate::dense::matmul;
    let ai = &a.inv;
    let mut y = [[0.0f32; I]; O];
    matmul::<O, I, I>(w, &ai.m, Some((b, &ai.last)), &mut y);
    let mut yb = [0.0f32; O];
    for ((y, wr), &br) in yb.iter_mut().zip(w.iter()).zip(b.iter()) {
        *y = dot_lanes(wr, &ai.last) + br * ai.corner;
    }
    let mut v = [[0.0f32; I]; O];
    if I < 16 && O >= 16 {
        // Narrow `Y` (a first layer's few inputs): `Vᵀ = Yᵀ S_d⁻¹` (`S_d⁻¹` is exactly
        // symmetric; the same products in the same order) keeps the tiles 16 wide.
        let mut vt = [[0.0f32; O]; I];
        matmul::<I, O, O>(&transpose(&y), &s.inv, None, &mut vt);
        untranspose(&vt, &mut v);
    } else {
        matmul::<O, O, I>(&s.inv, &y, None, &mut v);
    }
    let mut lanes = [0.0f32; Q_LANES];
    let mut qb = 0.0;
    for r in 0..O {
        for (g, vr) in w[r].chunks(Q_LANES).zip(v[r].chunks(Q_LANES)) {
            for ((lane, &gj), &vj) in lanes.iter_mut().zip(g).zip(vr) {
                *lane += gj * vj;
            }
        }
        let vb = dot_lanes(&s.inv[r], &yb);
        qb += b[r] * vb;
        b[r] = vb;
    }
    *w = v;
    sum_lanes(&lanes) + qb
}

/// Partial sums of the quadratic form in [`precondition`] (one AVX-512 vector).
const Q_LANES: usize = 16;

/// `Σ a_j b_j` in [`Q_LANES`] lanes (lane `j mod Q_LANES`), summed as [`sum_lanes`]: one vector
/// per 16 numbers instead of [`dot`]'s four lanes (the bias columns of
/// [`precondition_explicit`], 128 dots of 64 a layer).
#[cfg(not(target_os = "none"))]
#[inline(always)]
fn dot_lanes<const N: usize>(a: &[f32; N], b: &[f32; N]) -> f32 {
    let mut lanes = [0.0f32; Q_LANES];
    for (x, y) in a.chunks(Q_LANES).zip(b.chunks(Q_LANES)) {
        for ((lane, &xj), &yj) in lanes.iter_mut().zip(x).zip(y) {
            *lane += xj * yj;
        }
    }
    sum_lanes(&lanes)
}

/// `Σ lanes` as a pairwise tree (halves first), a fixed order on every target.
fn sum_lanes(lanes: &[f32; Q_LANES]) -> f32 {
    let mut v = *lanes;
    let mut n = Q_LANES;
    while n > 1 {
        n /= 2;
        for k in 0..n {
            v[k] += v[k + n];
        }
    }
    v[0]
}

/// `t[k][q] = r[q][k]`.
#[inline(always)]
fn transpose<const I: usize, const RB: usize>(r: &[[f32; I]; RB]) -> [[f32; RB]; I] {
    core::array::from_fn(|k| core::array::from_fn(|q| r[q][k]))
}

/// `r[q][k] = t[k][q]`.
#[inline(always)]
fn untranspose<const I: usize, const RB: usize>(t: &[[f32; RB]; I], r: &mut [[f32; I]; RB]) {
    for (q, row) in r.iter_mut().enumerate() {
        for (v, tk) in row.iter_mut().zip(t) {
            *v = tk[q];
        }
    }
}

/// The `L_A` solves of [`precondition`] on every row of `[W | b]`
/// ([`InputFactor::forward_rows`] if `FORWARD`, else [`InputFactor::backward_rows`]): in blocks
/// of `RB` rows, then of `RB/2`, … 1 for the rows left over.
#[inline(always)]
fn a_solve_rows<const I: usize, const RB: usize, const FORWARD: bool>(
    a: &InputFactor<I>,
    w: &mut [[f32; I]],
    b: &mut [f32],
) {
    let n = w.len().min(b.len()) / RB * RB;
    let (w, w_rest) = w.split_at_mut(n);
    let (b, b_rest) = b.split_at_mut(n);
    for (r, rb) in w.chunks_exact_mut(RB).zip(b.chunks_exact_mut(RB)) {
        if let (Ok(r), Ok(rb)) = (r.try_into(), rb.try_into()) {
            if FORWARD {
                a.forward_rows::<RB>(r, rb);
            } else {
                a.backward_rows::<RB>(r, rb);
            }
        }
    }
    match RB {
        8 => a_solve_rows::<I, 4, FORWARD>(a, w_rest, b_rest),
        4 => a_solve_rows::<I, 2, FORWARD>(a, w_rest, b_rest),
        2 => a_solve_rows::<I, 1, FORWARD>(a, w_rest, b_rest),
        _ => {}
    }
}

/// The `L_S` solves of [`precondition`], across the rows of `[W | b]`: `L_S⁻¹` (`REV = false`:
/// row `i` takes `−Σ_{k<i} L_ik` row `k`, `k` ascending, rows ascending) or `L_S⁻ᵀ` (`REV`: row
/// `k` takes `−Σ_{i>k} L_ik` row `i`, `i` descending, rows descending). Rows go [`LB`] at a
/// time (independent sums until the block's own triangle, so the adds' latencies overlap) and
/// their columns 64 (then sixteen, eight, four, one) at a time, held in registers while the
/// finished rows stream past.
///
/// The kernels read finished rows and write a block only when it is done: an earlier form
/// (row `i` and rows `..i` from one `split_at_mut`) was miscompiled by rustc 1.95 at
/// opt-level 3, caught by `core/tests/kfac.rs`; this module's tests pin the kernels bit for bit.
#[inline(always)]
fn s_solve<const I: usize, const O: usize, const REV: bool>(
    s: &OutputFactor<O>,
    w: &mut [[f32; I]; O],
    b: &mut [f32; O],
) {
    let mut p0 = 0;
    while p0 + LB <= O {
        s_solve_block::<I, O, LB, REV>(s, w, b, p0);
        p0 += LB;
    }
    while p0 < O {
        s_solve_block::<I, O, 1, REV>(s, w, b, p0);
        p0 += 1;
    }
}

/// Rows at positions `p0..p0 + N` (in solve order) of [`s_solve`], all columns and the bias.
#[inline(always)]
fn s_solve_block<const I: usize, const O: usize, const N: usize, const REV: bool>(
    s: &OutputFactor<O>,
    w: &mut [[f32; I]; O],
    b: &mut [f32; O],
    p0: usize,
) {
    let mut j0 = 0;
    while j0 + 64 <= I {
        s_solve_cols::<I, O, N, 64, REV>(s, w, p0, j0);
        j0 += 64;
    }
    while j0 + 16 <= I {
        s_solve_cols::<I, O, N, 16, REV>(s, w, p0, j0);
        j0 += 16;
    }
    if j0 + 8 <= I {
        s_solve_cols::<I, O, N, 8, REV>(s, w, p0, j0);
        j0 += 8;
    }
    if j0 + 4 <= I {
        s_solve_cols::<I, O, N, 4, REV>(s, w, p0, j0);
        j0 += 4;
    }
    while j0 < I {
        s_solve_cols::<I, O, N, 1, REV>(s, w, p0, j0);
        j0 += 1;
    }
    let row = |p: usize| if REV { O - 1 - p } else { p };
    let l = |r: usize, e: usize| if REV { s.m[e][r] } else { s.m[r][e] };
    let mut acc: [f32; N] = core::array::from_fn(|j| b[row(p0 + j)]);
    for p in 0..p0 {
        let e = row(p);
        for (j, a) in acc.iter_mut().enumerate() {
            *a -= l(row(p0 + j), e) * b[e];
        }
    }
    for j in 1..N {
        for jj in 0..j {
            acc[j] -= l(row(p0 + j), row(p0 + jj)) * acc[jj];
        }
    }
    for (j, a) in acc.iter().enumerate() {
        b[row(p0 + j)] = *a;
    }
}

/// Columns `j0..j0 + CB` of [`s_solve_block`].
#[inline(always)]
fn s_solve_cols<
    const I: usize,
    const O: usize,
    const N: usize,
    const CB: usize,
    const REV: bool,
>(
    s: &OutputFactor<O>,
    w: &mut [[f32; I]; O],
    p0: usize,
    j0: usize,
) {
    if j0 + CB > I {
        return;
    }
    let row = |p: usize| if REV { O - 1 - p } else { p };
    let l = |r: usize, e: usize| if REV { s.m[e][r] } else { s.m[r][e] };
    let mut acc: [[f32; CB]; N] =
        core::array::from_fn(|j| core::array::from_fn(|c| w[row(p0 + j)][j0 + c]));
    for p in 0..p0 {
        let e = row(p);
        let we: [f32; CB] = core::array::from_fn(|c| w[e][j0 + c]);
        for (j, a) in acc.iter_mut().enumerate() {
            let lj = l(row(p0 + j), e);
            for c in 0..CB {
                a[c] -= lj * we[c];
            }
        }
    }
    for j in 1..N {
        let (done, rest) = acc.split_at_mut(j);
        for (jj, d) in done.iter().enumerate() {
            let lj = l(row(p0 + j), row(p0 + jj));
            for c in 0..CB {
                rest[0][c] -= lj * d[c];
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        w[row(p0 + j)][j0..j0 + CB].copy_from_slice(a);
    }
}

/// All Kronecker factors of an [`ActorCritic`](crate::ActorCritic)`<OBS, H, P, T, IN, E>`:
/// the dense layers', then the encoder's ([`Encoder::Curvature`], nothing for the default
/// [`Identity`](crate::Identity)).
///
/// Input factors are shared by the layers that read the same input: every trunk's first layer
/// reads the observation (one `Ā_obs`), and with one trunk (`T = 1`) both heads read its output.
// `Clone` by hand, as `ActorCritic`'s: one copy rather than field by field.
#[derive(Copy, Debug, PartialEq)]
pub struct Curvature<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize = OBS,
    E: Encoder<IN, OBS> = crate::Identity,
> {
    a_obs: InputFactor<OBS>,
    a_h1: [InputFactor<H>; T],
    a_h2: [InputFactor<H>; T],
    s1: [OutputFactor<H>; T],
    s2: [OutputFactor<H>; T],
    s_pi: OutputFactor<P>,
    s_v: OutputFactor<1>,
    enc: E::Curvature,
    factorized: bool,
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > Clone for Curvature<OBS, H, P, T, IN, E>
{
    fn clone(&self) -> Self {
        *self
    }
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > Default for Curvature<OBS, H, P, T, IN, E>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > Curvature<OBS, H, P, T, IN, E>
{
    /// Empty statistics.
    pub const fn new() -> Self {
        Self {
            a_obs: InputFactor::new(),
            a_h1: [InputFactor::new(); T],
            a_h2: [InputFactor::new(); T],
            s1: [OutputFactor::new(); T],
            s2: [OutputFactor::new(); T],
            s_pi: OutputFactor::new(),
            s_v: OutputFactor::new(),
            enc: E::EMPTY_CURVATURE,
            factorized: false,
        }
    }

    /// The encoder's factors.
    pub fn encoder(&self) -> &E::Curvature {
        &self.enc
    }

    /// Mutable [`Curvature::encoder`]: the [`Learner`](crate::Learner) adds the encoder's
    /// statistics with [`Encoder::observe`].
    pub(crate) fn encoder_mut(&mut self) -> &mut E::Curvature {
        &mut self.enc
    }

    /// `Ā` of the observation (read by every trunk's first layer).
    pub fn a_obs(&self) -> &InputFactor<OBS> {
        &self.a_obs
    }

    /// `Ā` of trunk `t`'s first hidden output (its second layer's input).
    pub fn a_h1(&self, t: usize) -> Option<&InputFactor<H>> {
        self.a_h1.get(t)
    }

    /// `Ā` of trunk `t`'s second hidden output (the heads' input).
    pub fn a_h2(&self, t: usize) -> Option<&InputFactor<H>> {
        self.a_h2.get(t)
    }

    /// `S` of trunk `t`'s first (`layer = 0`) or second (`layer = 1`) hidden layer.
    pub fn s_hidden(&self, t: usize, layer: usize) -> Option<&OutputFactor<H>> {
        match layer {
            0 => self.s1.get(t),
            1 => self.s2.get(t),
            _ => None,
        }
    }

    /// `S` of the policy head.
    pub fn s_pi(&self) -> &OutputFactor<P> {
        &self.s_pi
    }

    /// `S` of the value head.
    pub fn s_v(&self) -> &OutputFactor<1> {
        &self.s_v
    }

    /// Whether a decomposition is available for [`Curvature::precondition`].
    pub fn is_factorized(&self) -> bool {
        self.factorized
    }

    /// Visit every stored number of every factor, in a fixed order (for checkpoints);
    /// `factorized` is saved and restored separately.
    pub fn visit_mut(&mut self, mut f: impl FnMut(&mut [f32])) {
        self.a_obs.visit_mut(&mut f);
        for t in 0..T {
            self.a_h1[t].visit_mut(&mut f);
            self.a_h2[t].visit_mut(&mut f);
            self.s1[t].visit_mut(&mut f);
            self.s2[t].visit_mut(&mut f);
        }
        self.s_pi.visit_mut(&mut f);
        self.s_v.visit_mut(&mut f);
        self.enc.visit_mut(&mut f);
    }

    /// Visit the statistics of every factor (not their decompositions), in a fixed order:
    /// what a data-parallel update sums over ranks (see [`crate::Collective`]).
    pub fn visit_statistics_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.a_obs.visit_statistics_mut(f);
        for t in 0..T {
            self.a_h1[t].visit_statistics_mut(f);
            self.a_h2[t].visit_statistics_mut(f);
            self.s1[t].visit_statistics_mut(f);
            self.s2[t].visit_statistics_mut(f);
        }
        self.s_pi.visit_statistics_mut(f);
        self.s_v.visit_statistics_mut(f);
        self.enc.visit_statistics_mut(f);
    }

    /// Declare whether the stored decompositions are valid (after restoring a checkpoint).
    /// On hosts, declaring them valid rebuilds the explicit inverses from them.
    pub fn set_factorized(&mut self, factorized: bool) {
        self.factorized = factorized;
        self.enc.set_factorized(factorized);
        #[cfg(not(target_os = "none"))]
        if factorized {
            self.a_obs.invert();
            for t in 0..T {
                self.a_h1[t].invert();
                self.a_h2[t].invert();
                self.s1[t].invert();
                self.s2[t].invert();
            }
            self.s_pi.invert();
            self.s_v.invert();
        }
    }

    /// Every factor `F ← ρ F`; the start of a running-average update.
    pub fn scale(&mut self, rho: f32) {
        self.a_obs.scale(rho);
        for t in 0..T {
            self.a_h1[t].scale(rho);
            self.a_h2[t].scale(rho);
            self.s1[t].scale(rho);
            self.s2[t].scale(rho);
        }
        self.s_pi.scale(rho);
        self.s_v.scale(rho);
        self.enc.scale(rho);
    }

    /// Add one sample with weight `w`: its layer inputs from `f`, its Fisher-loss
    /// pre-activation gradients from `g` (the dense layers' factors; the encoder's take
    /// [`Encoder::observe`]).
    #[inline]
    pub fn observe(
        &mut self,
        f: &crate::policy::Forward<OBS, H, P, T>,
        g: &crate::policy::Backward<H, P, T>,
        w: f32,
    ) {
        self.a_obs.add(&f.x, w);
        for t in 0..T {
            self.a_h1[t].add(&f.h1[t], w);
            self.a_h2[t].add(&f.h2[t], w);
            self.s1[t].add(&g.g1[t], w);
            self.s2[t].add(&g.g2[t], w);
        }
        self.s_pi.add(&g.gz, w);
        self.s_v.add(&[g.gv], w);
    }

    /// [`Curvature::observe`] for `C` samples at once, in order (bit for bit the same
    /// statistics): every factor gets one rank-`C` update, so each stored number is read and
    /// written once per chunk instead of once per sample. `f[c]` and `g[c]` belong to sample `c`.
    #[inline]
    pub fn observe_chunk<const C: usize>(
        &mut self,
        f: &[crate::policy::Forward<OBS, H, P, T>; C],
        g: &[crate::policy::Backward<H, P, T>; C],
        w: f32,
    ) {
        let xs: [&[f32; OBS]; C] = core::array::from_fn(|c| &f[c].x);
        self.a_obs.add_chunk(&xs, w);
        for t in 0..T {
            let hs: [&[f32; H]; C] = core::array::from_fn(|c| &f[c].h1[t]);
            self.a_h1[t].add_chunk(&hs, w);
            let hs: [&[f32; H]; C] = core::array::from_fn(|c| &f[c].h2[t]);
            self.a_h2[t].add_chunk(&hs, w);
            let gs: [&[f32; H]; C] = core::array::from_fn(|c| &g[c].g1[t]);
            self.s1[t].add_chunk(&gs, w);
            let gs: [&[f32; H]; C] = core::array::from_fn(|c| &g[c].g2[t]);
            self.s2[t].add_chunk(&gs, w);
        }
        let gs: [&[f32; P]; C] = core::array::from_fn(|c| &g[c].gz);
        self.s_pi.add_chunk(&gs, w);
        let gv: [[f32; 1]; C] = core::array::from_fn(|c| [g[c].gv]);
        let gs: [&[f32; 1]; C] = core::array::from_fn(|c| &gv[c]);
        self.s_v.add_chunk(&gs, w);
    }

    /// All statistics finite.
    pub fn is_finite(&self) -> bool {
        self.a_obs.is_finite()
            && (0..T).all(|t| {
                self.a_h1[t].is_finite()
                    && self.a_h2[t].is_finite()
                    && self.s1[t].is_finite()
                    && self.s2[t].is_finite()
            })
            && self.s_pi.is_finite()
            && self.s_v.is_finite()
            && self.enc.is_finite()
    }

    /// Decompose every damped factor (see the module docs for the damping).
    /// On error the previous decomposition is gone and [`Curvature::is_factorized`] is false.
    pub fn factorize(&mut self, damping: f32) -> Result<(), Error> {
        self.factorized = false;
        // First layers: one Ā_obs, S blocks s1[0..T].
        let tr_s: f32 = self.s1.iter().map(|s| s.trace()).sum();
        let (da, ds) = damping_split(self.a_obs.trace(), OBS + 1, tr_s, T * H, damping);
        self.a_obs.factorize(da)?;
        for s in self.s1.iter_mut() {
            s.factorize(ds)?;
        }
        // Second layers: one per trunk.
        for t in 0..T {
            let (da, ds) =
                damping_split(self.a_h1[t].trace(), H + 1, self.s2[t].trace(), H, damping);
            self.a_h1[t].factorize(da)?;
            self.s2[t].factorize(ds)?;
        }
        // Heads.
        if T == 1 {
            let tr_s = self.s_pi.trace() + self.s_v.trace();
            let (da, ds) = damping_split(self.a_h2[0].trace(), H + 1, tr_s, P + 1, damping);
            self.a_h2[0].factorize(da)?;
            self.s_pi.factorize(ds)?;
            self.s_v.factorize(ds)?;
        } else {
            let (da, ds) =
                damping_split(self.a_h2[0].trace(), H + 1, self.s_pi.trace(), P, damping);
            self.a_h2[0].factorize(da)?;
            self.s_pi.factorize(ds)?;
            let (da, ds) = damping_split(
                self.a_h2[T - 1].trace(),
                H + 1,
                self.s_v.trace(),
                1,
                damping,
            );
            self.a_h2[T - 1].factorize(da)?;
            self.s_v.factorize(ds)?;
        }
        // The encoder's pair, with its own damping split.
        self.enc.factorize(damping)?;
        self.factorized = true;
        Ok(())
    }

    /// Natural gradient of every dense layer and of the encoder in `grad`, in place; returns
    /// their share of `gᵀ F̂_d⁻¹ g`. The Gaussian log-std is not touched here (its Fisher block
    /// is exact and diagonal; the optimizer handles it). Requires [`Curvature::factorize`] to
    /// have succeeded.
    pub fn precondition(
        &self,
        grad: &mut crate::ActorCritic<OBS, H, P, T, IN, E>,
    ) -> Result<f32, Error> {
        let [qa, qc] = self.precondition_parts(grad, [true, true])?;
        Ok(qa + qc)
    }

    /// [`Curvature::precondition`] with the quadratic form split as `[q_π, q_v]`: the actor's
    /// blocks (trunk 0 and the policy head; with a shared trunk, the trunk too) and the
    /// critic's (trunk 1 of separate trunks, and the value head). A part whose entry of
    /// `parts = [actor, critic]` is false is left as it is, its `q` 0 (a shared trunk and the
    /// encoder count as the actor's: `q_π` ends with the encoder's `gᵀ(Ā_d ⊗ S_d)⁻¹g`).
    pub fn precondition_parts(
        &self,
        grad: &mut crate::ActorCritic<OBS, H, P, T, IN, E>,
        parts: [bool; 2],
    ) -> Result<[f32; 2], Error> {
        if !self.factorized {
            return Err(Error::UpdateNotPositiveDefinite);
        }
        #[cfg(not(target_os = "none"))]
        use precondition_explicit as precondition;
        let mut q = [0.0; 2];
        for t in 0..T {
            // Trunk 0 is the actor's (shared with the critic when T = 1).
            let part = usize::from(t > 0);
            if !parts[part] {
                continue;
            }
            let tr = &mut grad.trunks[t];
            q[part] += precondition(&self.a_obs, &self.s1[t], &mut tr.l1.w, &mut tr.l1.b);
            q[part] += precondition(&self.a_h1[t], &self.s2[t], &mut tr.l2.w, &mut tr.l2.b);
        }
        if parts[0] {
            q[0] += precondition(&self.a_h2[0], &self.s_pi, &mut grad.pi.w, &mut grad.pi.b);
        }
        if parts[1] {
            q[1] += precondition(&self.a_h2[T - 1], &self.s_v, &mut grad.v.w, &mut grad.v.b);
        }
        if E::TRAINABLE && parts[0] {
            q[0] += E::precondition(&self.enc, &mut grad.encoder)?;
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    //! The blocked kernels against plain loops that spell out the documented order of every
    //! sum, compared bit for bit: a release build that reorders or miscompiles a kernel fails
    //! here (rustc 1.95 did, for an earlier form of the across-row solve).
    use super::*;
    use crate::dense::tests::next;
    use crate::policy::{Backward, Forward};

    fn factors<const I: usize, const O: usize>(s: &mut u64) -> (InputFactor<I>, OutputFactor<O>) {
        let mut a = InputFactor::<I>::new();
        let mut f = OutputFactor::<O>::new();
        for _ in 0..24 {
            let x: [f32; I] = core::array::from_fn(|_| next(s) + 0.3);
            let g: [f32; O] = core::array::from_fn(|_| next(s));
            a.add(&x, 1.0 / 24.0);
            f.add(&g, 1.0 / 24.0);
        }
        a.factorize(0.05).unwrap();
        f.factorize(0.05).unwrap();
        (a, f)
    }

    /// `precondition` as plain loops, each sum in the order its kernel documents.
    fn reference<const I: usize, const O: usize>(
        a: &InputFactor<I>,
        s: &OutputFactor<O>,
        w: &mut [[f32; I]; O],
        b: &mut [f32; O],
    ) -> f32 {
        for (r, rb) in w.iter_mut().zip(b.iter_mut()) {
            for i in 1..I {
                for k in 0..i {
                    r[i] -= a.m[i][k] * r[k];
                }
            }
            for k in 0..I {
                *rb -= a.l_last[k] * r[k];
            }
        }
        for i in 1..O {
            for k in 0..i {
                for j in 0..I {
                    w[i][j] -= s.m[i][k] * w[k][j];
                }
                b[i] -= s.m[i][k] * b[k];
            }
        }
        let mut lanes = [0.0f32; Q_LANES];
        let mut qb = 0.0;
        for i in 0..O {
            for j in 0..I {
                let f = s.m[i][i] * a.m[j][j];
                lanes[j % Q_LANES] += w[i][j] * w[i][j] * f;
                w[i][j] *= f;
            }
            let f = s.m[i][i] * a.d_last_inv;
            qb += b[i] * b[i] * f;
            b[i] *= f;
        }
        let q = sum_lanes(&lanes) + qb;
        for k in (0..O).rev() {
            for i in (k + 1..O).rev() {
                for j in 0..I {
                    w[k][j] -= s.m[i][k] * w[i][j];
                }
                b[k] -= s.m[i][k] * b[i];
            }
        }
        for (r, &rb) in w.iter_mut().zip(b.iter()) {
            for k in (0..I).rev() {
                r[k] -= rb * a.l_last[k];
                for i in (k + 1..I).rev() {
                    r[k] -= a.m[i][k] * r[i];
                }
            }
        }
        q
    }

    fn check_precondition<const I: usize, const O: usize>(seed: u64) {
        let mut s = seed;
        let (a, f) = factors::<I, O>(&mut s);
        let w0: [[f32; I]; O] = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
        let b0: [f32; O] = core::array::from_fn(|_| next(&mut s));
        let (mut w, mut b, mut wr, mut br) = (w0, b0, w0, b0);
        let q = precondition(&a, &f, &mut w, &mut b);
        let qr = reference(&a, &f, &mut wr, &mut br);
        assert_eq!(q.to_bits(), qr.to_bits(), "I={I} O={O}: q");
        assert_eq!(w, wr, "I={I} O={O}: W");
        assert_eq!(b, br, "I={I} O={O}: b");
    }

    #[test]
    fn blocked_precondition_is_the_plain_loops_bit_for_bit() {
        check_precondition::<4, 32>(1);
        check_precondition::<32, 32>(2);
        check_precondition::<32, 2>(3);
        check_precondition::<32, 1>(4);
        check_precondition::<16, 7>(5);
        check_precondition::<8, 8>(6);
        check_precondition::<3, 6>(7);
        check_precondition::<12, 5>(8);
        check_precondition::<1, 3>(9);
        check_precondition::<64, 64>(10);
    }

    /// Hosts: the explicit inverses times the damped factors (built densely from the
    /// statistics, another way) are the identity, and the explicit preconditioning is the
    /// triangular solves' up to rounding.
    #[cfg(not(target_os = "none"))]
    fn check_explicit<const I: usize, const O: usize>(seed: u64) {
        extern crate std;
        use std::vec;
        let mut s = seed;
        let (a, f) = factors::<I, O>(&mut s);
        let shift = 0.05; // as in `factors`
        let n = I + 1;
        let mut ad = vec![0.0f32; n * n];
        a.write_dense(&mut ad);
        let mut ai = vec![0.0f32; n * n];
        for i in 0..I {
            ai[i * n..i * n + I].copy_from_slice(&a.inv.m[i]);
            ai[i * n + I] = a.inv.last[i];
            ai[I * n + i] = a.inv.last[i];
        }
        ai[I * n + I] = a.inv.corner;
        let mut sd = vec![0.0f32; O * O];
        f.write_dense(&mut sd);
        let si: vec::Vec<f32> = f.inv.as_flattened().to_vec();
        for (m, inv, n) in [(&ad, &ai, n), (&sd, &si, O)] {
            for i in 0..n {
                for j in 0..n {
                    let mut p = 0.0f64;
                    for k in 0..n {
                        let mk = m[i * n + k] as f64 + if i == k { shift } else { 0.0 };
                        p += mk * inv[k * n + j] as f64;
                    }
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (p - want).abs() < 1e-4,
                        "I={I} O={O} n={n}: ({i},{j}) = {p}"
                    );
                }
            }
        }
        let w0: [[f32; I]; O] = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
        let b0: [f32; O] = core::array::from_fn(|_| next(&mut s));
        let (mut w, mut b, mut we, mut be) = (w0, b0, w0, b0);
        let q = precondition(&a, &f, &mut w, &mut b);
        let qe = precondition_explicit(&a, &f, &mut we, &mut be);
        let scale = w
            .as_flattened()
            .iter()
            .chain(&b)
            .fold(0.0f32, |m, v| m.max(v.abs()));
        for (x, y) in w
            .as_flattened()
            .iter()
            .chain(&b)
            .zip(we.as_flattened().iter().chain(&be))
        {
            assert!((x - y).abs() <= 1e-4 * scale, "I={I} O={O}: {x} vs {y}");
        }
        assert!(
            (q - qe).abs() <= 1e-4 * q.abs(),
            "I={I} O={O}: q {q} vs {qe}"
        );
    }

    #[cfg(not(target_os = "none"))]
    #[test]
    fn explicit_inverses_invert_and_precondition_as_the_solves() {
        check_explicit::<4, 32>(1);
        check_explicit::<32, 32>(2);
        check_explicit::<32, 2>(3);
        check_explicit::<32, 1>(4);
        check_explicit::<16, 7>(5);
        check_explicit::<3, 6>(7);
        check_explicit::<12, 5>(8);
        check_explicit::<1, 3>(9);
        check_explicit::<64, 64>(10);
        check_explicit::<64, 17>(11);
    }

    fn check_observe_chunk<const H: usize, const T: usize>(seed: u64) {
        let mut s = seed;
        let fs: [Forward<3, H, 2, T>; 4] = core::array::from_fn(|_| {
            let mut f = Forward::zeros();
            f.x = core::array::from_fn(|_| next(&mut s));
            f.h1 = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
            f.h2 = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
            f
        });
        let gs: [Backward<H, 2, T>; 4] = core::array::from_fn(|_| {
            let mut g = Backward::zeros();
            g.g1 = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
            g.g2 = core::array::from_fn(|_| core::array::from_fn(|_| next(&mut s)));
            g.gz = core::array::from_fn(|_| next(&mut s));
            g.gv = next(&mut s);
            g
        });
        let mut one = Curvature::<3, H, 2, T>::new();
        let mut chunked = one;
        for round in 0..3 {
            one.scale(0.9);
            chunked.scale(0.9);
            for (f, g) in fs.iter().zip(&gs) {
                one.observe(f, g, 0.1 + round as f32);
            }
            chunked.observe_chunk(&fs, &gs, 0.1 + round as f32);
        }
        assert_eq!(one, chunked, "H={H} T={T}");
    }

    /// The host's panelled `L D Lᵀ` against the recurrence one pivot at a time, bit for bit.
    #[test]
    fn blocked_ldl_is_one_pivot_at_a_time_bit_for_bit() {
        // The unblocked right-looking recurrence, pivot by pivot.
        fn reference<const N: usize>(m: &mut [[f32; N]; N], diag: &[f32; N], shift: f32) {
            for i in 0..N {
                for j in 0..i {
                    m[i][j] = m[j][i];
                }
                m[i][i] = diag[i] + shift;
            }
            let mut u = [0.0f32; N];
            for k in 0..N {
                let d_inv = 1.0 / m[k][k];
                for i in k + 1..N {
                    u[i] = m[i][k];
                }
                for i in k + 1..N {
                    let l = u[i] * d_inv;
                    m[i][k] = l;
                    for j in k + 1..=i {
                        m[i][j] -= l * u[j];
                    }
                }
                m[k][k] = d_inv;
            }
        }
        fn check<const N: usize>(seed: u64) {
            let mut s = seed;
            let (a, _) = factors::<N, 1>(&mut s);
            let (mut blocked, mut plain) = (a.m, a.m);
            ldl_outer(&mut blocked, &a.diag, 0.05).unwrap();
            reference(&mut plain, &a.diag, 0.05);
            for i in 0..N {
                for j in 0..=i {
                    assert_eq!(blocked[i][j].to_bits(), plain[i][j].to_bits(), "({i},{j})");
                }
            }
        }
        check::<1>(1);
        check::<2>(2);
        check::<3>(3);
        check::<5>(4);
        check::<7>(5);
        check::<33>(6);
        check::<64>(7);
    }

    /// The host's right-looking `L D Lᵀ` against the device's left-looking one (different
    /// summation orders, so to rounding), and both against `L D Lᵀ = A + shift·I` rebuilt.
    #[test]
    fn ldl_forms_agree() {
        fn check<const N: usize>(seed: u64) {
            let mut s = seed;
            let (a, _) = factors::<N, 1>(&mut s);
            let (mut outer, mut dotf) = (a.m, a.m);
            let shift = 0.05;
            ldl_outer(&mut outer, &a.diag, shift).unwrap();
            ldl_dot(&mut dotf, &a.diag, shift).unwrap();
            for i in 0..N {
                for j in 0..=i {
                    let (x, y) = (outer[i][j], dotf[i][j]);
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "({i},{j}): {x} vs {y}"
                    );
                }
            }
            for i in 0..N {
                for j in i..N {
                    // (L D Lᵀ)_ij = Σ_{k ≤ i} L_ik D_k L_jk with L_kk = 1.
                    let l = |r: usize, k: usize| if r == k { 1.0 } else { outer[r][k] };
                    let v: f32 = (0..=i).map(|k| l(i, k) * l(j, k) / outer[k][k]).sum();
                    let want = if i == j { a.diag[i] + shift } else { a.m[i][j] };
                    assert!((v - want).abs() <= 1e-4 * (1.0 + want.abs()), "({i},{j})");
                }
            }
        }
        check::<7>(3);
        check::<33>(4);
        check::<64>(5);
    }

    #[test]
    fn observe_chunk_is_observe_in_order_bit_for_bit() {
        check_observe_chunk::<6, 1>(11);
        check_observe_chunk::<6, 2>(12);
        check_observe_chunk::<13, 1>(13);
        check_observe_chunk::<32, 2>(14);
        check_observe_chunk::<16, 1>(15);
    }
}
