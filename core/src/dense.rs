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
            Activation::Tanh => libm::tanhf(s),
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

    /// `s = W x + b`.
    #[inline]
    pub fn forward(&self, x: &[f32; I], s: &mut [f32; O]) {
        for ((so, row), bo) in s.iter_mut().zip(self.w.iter()).zip(self.b.iter()) {
            *so = dot(row, x) + bo;
        }
    }

    /// `∂L/∂x += Wᵀ g` for the pre-activation gradient `g`.
    #[inline]
    pub fn backward_input(&self, g: &[f32; O], dx: &mut [f32; I]) {
        for (row, &go) in self.w.iter().zip(g.iter()) {
            axpy(go, row, dx);
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

/// `y += α x`.
#[inline(always)]
pub(crate) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x.iter()) {
        *yi += alpha * xi;
    }
}
