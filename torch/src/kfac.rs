//! K-FAC on tensors for `Linear` and `Conv2d` layers: the same maths as acktr-core's `kfac`
//! (read its module docs), on libtorch.
//!
//! - `Ā` per input group: `ā = [a, 1]`; for a convolution, `a` are the input patches (im2col
//!   at the layer's kernel, stride and padding) at every output position, so
//!   `Ā = mean over (sample, position) of ā āᵀ`, `(C·k·k + 1)²`.
//! - `S` per layer from the per-sample gradients `g` of the sampled Fisher loss:
//!   `S = (1/B) Σ_b Σ_positions g gᵀ` (KFC's spatial factor `T` sits in `S`: with π-adjusted
//!   damping, moving `T` between the factors changes π by `√T` and leaves
//!   `(Ā + π√λ)⊗(S + √λ/π)` unchanged).
//! - Running averages with the core's debiased `ρ_k = min(ρ, k/(k+1))`, the core's π split of
//!   the damping (layers of a group share `Ā`; π uses the traces of all their `S`), damped
//!   inverses every `inverse_every` updates ([`InverseMethod`]: Cholesky, or a symmetric
//!   eigendecomposition with the damping added to the eigenvalues), `V = S_d⁻¹ G Ā_d⁻¹`.

use acktr_host::error::{HostError, Result};
use tch::{Kind, Tensor};

use crate::net::TorchNet;

/// How [`TorchKfac::factorize`] inverts a damped factor `F + d·I` (`F` symmetric positive
/// semi-definite, `d > 0`). Both give the same inverse up to rounding: the damping is the
/// core's factored split either way, never the reference code's damping of the eigenvalue
/// products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InverseMethod {
    /// `L Lᵀ = F + d·I`, then `(L Lᵀ)⁻¹` from `L` (`linalg_cholesky`, `cholesky_inverse`).
    /// Fails with [`acktr_core::Error::UpdateNotPositiveDefinite`] when rounding leaves the
    /// damped factor indefinite.
    #[default]
    Cholesky,
    /// `F = Q diag(λ) Qᵀ` (`linalg_eigh`, lower triangle), then
    /// `(F + d·I)⁻¹ = Q diag(1/(λ + d)) Qᵀ`. Eigenvalues below 0 (rounding of a semi-definite
    /// `F`) are raised to 0 first, so `λ + d ≥ d` and it never fails on a finite `F`.
    Eigh,
}

/// Factors and inverses of every layer of a [`TorchNet`].
///
/// All factors live in one flat tensor (each `Ā`, then each `S`, row-major), and one batch's
/// statistics in a second of the same layout, so that the running average is one `lerp_` and
/// the finiteness check one gather, whatever the number of layers: on a small MLP each
/// libtorch call's overhead (a few µs), not the arithmetic, is the cost.
#[derive(Debug)]
pub struct TorchKfac {
    /// Running averages, flat.
    stats: Tensor,
    /// One batch's statistics, flat (same layout).
    batch: Tensor,
    /// Views of `stats`: `Ā` per input group, then `S` per layer.
    views: Vec<Tensor>,
    /// The same views of `batch`.
    batch_views: Vec<Tensor>,
    /// Positions of every factor's diagonal in the flat layout.
    diagonals: Tensor,
    /// Dimension of each factor (same order as `views`).
    dims: Vec<i64>,
    groups: usize,
    /// Whether `stats` holds averages (false until the first batch).
    seen: bool,
    a_inv: Vec<Option<Tensor>>,
    s_inv: Vec<Option<Tensor>>,
    /// How the damped inverses are computed.
    method: InverseMethod,
}

/// Inputs up to this many numbers get their bias column appended before the product.
const SMALL_ROWS: usize = 1 << 16;

impl TorchKfac {
    /// Empty statistics for `net`.
    pub fn new(net: &TorchNet) -> Self {
        let device = net.device();
        let mut dims = vec![0i64; net.groups];
        for l in &net.layers {
            dims[l.group] = l.fan_in() + 1;
        }
        dims.extend(net.layers.iter().map(|l| l.outputs()));
        let total: i64 = dims.iter().map(|d| d * d).sum();
        let stats = Tensor::zeros([total], (Kind::Float, device));
        let batch = Tensor::zeros([total], (Kind::Float, device));
        let (mut views, mut batch_views, mut diag) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0;
        for &d in &dims {
            views.push(stats.narrow(0, offset, d * d).view([d, d]));
            batch_views.push(batch.narrow(0, offset, d * d).view([d, d]));
            diag.extend((0..d).map(|i| offset + i * (d + 1)));
            offset += d * d;
        }
        Self {
            stats,
            batch,
            views,
            batch_views,
            diagonals: Tensor::from_slice(&diag).to_device(device),
            dims,
            groups: net.groups,
            seen: false,
            a_inv: (0..net.groups).map(|_| None).collect(),
            s_inv: (0..net.layers.len()).map(|_| None).collect(),
            method: InverseMethod::default(),
        }
    }

    /// A stand-in without factors (no allocation), for while the statistics are away on the
    /// worker thread.
    pub(crate) fn placeholder() -> Self {
        Self {
            stats: Tensor::new(),
            batch: Tensor::new(),
            views: Vec::new(),
            batch_views: Vec::new(),
            diagonals: Tensor::new(),
            dims: Vec::new(),
            groups: 0,
            seen: false,
            a_inv: Vec::new(),
            s_inv: Vec::new(),
            method: InverseMethod::default(),
        }
    }

    /// Choose how later [`Self::factorize`] calls invert the damped factors.
    pub fn set_inverse_method(&mut self, method: InverseMethod) {
        self.method = method;
    }

    /// How the damped factors are inverted.
    pub fn inverse_method(&self) -> InverseMethod {
        self.method
    }

    /// `Ā` of input group `g` (`None` before the first batch).
    pub fn a(&self, g: usize) -> Option<&Tensor> {
        self.views[..self.groups].get(g).filter(|_| self.seen)
    }

    /// `S` of layer `l` (`None` before the first batch).
    pub fn s(&self, l: usize) -> Option<&Tensor> {
        self.views.get(self.groups + l).filter(|_| self.seen)
    }

    /// The last batch's `E[ā āᵀ]` of input group `g` (after [`Self::batch_stats`]).
    pub fn batch_a(&self, g: usize) -> &Tensor {
        &self.batch_views[g]
    }

    /// The last batch's `S` of layer `l` (after [`Self::batch_stats`]).
    pub fn batch_s(&self, l: usize) -> &Tensor {
        &self.batch_views[self.groups + l]
    }

    /// Whether damped inverses exist.
    pub fn is_factorized(&self) -> bool {
        self.s_inv.iter().all(|s| s.is_some())
    }

    /// The batch statistics `E[ā āᵀ]` of each group and `S` of each layer from each group's
    /// input (a forward pass's [`crate::net::Forward::inputs`]) and the per-sample Fisher gradients `g` of
    /// every layer's pre-activation (with a `stat_stride`, the learner passes the strided
    /// samples' inputs), into the batch buffer ([`Self::batch_a`], [`Self::batch_s`]).
    ///
    /// `Ā` is built as `[[XᵀX, Σx], [Σxᵀ, n]] / n`: small inputs append the bias column and take
    /// one product, large ones (conv patches) fill the blocks, without a copy of `[X | 1]` as
    /// large as the patch matrix.
    pub fn batch_stats(&mut self, net: &TorchNet, inputs: &[Tensor], g: &[Tensor]) {
        let divisors = self.batch_sums(net, inputs, g);
        self.divide_batch(&divisors);
    }

    /// [`Self::batch_stats`] before its division: the sums `Σ ā āᵀ` and `Σ g gᵀ` in the batch
    /// buffer, and each factor's divisor (the rows summed: samples, or samples × positions
    /// for a conv layer's `Ā`), in factor order. A data-parallel update sums both over the
    /// ranks before [`Self::divide_batch`].
    pub fn batch_sums(&mut self, net: &TorchNet, inputs: &[Tensor], g: &[Tensor]) -> Vec<f64> {
        // Each factor's divisor (0 until built): an MLP's all equal the batch size (one `div_`
        // for all), a conv layer's `Ā` divides by samples × positions.
        let mut divisors: Vec<f64> = vec![0.0; self.dims.len()];
        let mut ones: Option<Tensor> = None;
        for (li, l) in net.layers.iter().enumerate() {
            let input = &inputs[l.group];
            let bsz = input.size()[0];
            if divisors[l.group] == 0.0 {
                let rows = match l.conv {
                    Some(c) => input
                        .im2col(
                            [c.k, c.k],
                            [1, 1],
                            [c.padding, c.padding],
                            [c.stride, c.stride],
                        )
                        .transpose(1, 2)
                        .reshape([-1, l.fan_in()]),
                    None => input.reshape([bsz, -1]),
                };
                let n = rows.size()[0];
                let dst = &self.batch_views[l.group];
                if rows.numel() <= SMALL_ROWS {
                    let one = match &ones {
                        Some(o) if o.size()[0] == n => o.shallow_clone(),
                        _ => Tensor::ones([n, 1], (rows.kind(), rows.device())),
                    };
                    let xa = Tensor::cat(&[&rows, &one], 1);
                    ones = Some(one);
                    let _ = xa.tr().mm_out(dst, &xa);
                } else {
                    let k = l.fan_in();
                    dst.narrow(0, 0, k)
                        .narrow(1, 0, k)
                        .copy_(&rows.tr().mm(&rows));
                    let sum = rows.sum_dim_intlist(0, true, Kind::Float);
                    dst.narrow(0, k, 1).narrow(1, 0, k).copy_(&sum);
                    dst.narrow(0, 0, k).narrow(1, k, 1).copy_(&sum.tr());
                    let _ = dst.narrow(0, k, 1).narrow(1, k, 1).fill_(n as f64);
                }
                divisors[l.group] = n as f64;
            }
            let gl = &g[li];
            let rows = if gl.dim() == 4 {
                gl.permute([0, 2, 3, 1]).reshape([-1, l.outputs()])
            } else {
                gl.reshape([gl.size()[0], -1])
            };
            let _ = rows.tr().mm_out(&self.batch_views[self.groups + li], &rows);
            divisors[self.groups + li] = bsz as f64;
        }
        divisors
    }

    /// Divide each factor of the batch buffer by its divisor ([`Self::batch_sums`]).
    pub fn divide_batch(&mut self, divisors: &[f64]) {
        if divisors.iter().all(|&d| d == divisors[0]) {
            let _ = self.batch.g_div_scalar_(divisors[0]);
        } else {
            for (v, &d) in self.batch_views.iter().zip(divisors) {
                let _ = v.shallow_clone().g_div_scalar_(d);
            }
        }
    }

    /// The batch buffer, flat (every factor, row-major, in factor order).
    pub fn batch_flat(&self) -> &Tensor {
        &self.batch
    }

    /// Overwrite the batch buffer with `v` (the layout of [`Self::batch_flat`]).
    pub fn set_batch_flat(&mut self, v: &[f32]) -> Result<()> {
        self.batch
            .copy_(&flat_of(v, self.batch.numel(), self.batch.device())?);
        Ok(())
    }

    /// The running averages, flat (the layout of [`Self::batch_flat`]).
    pub fn stats_flat(&self) -> &Tensor {
        &self.stats
    }

    /// Overwrite the running averages with `v` (the layout of [`Self::stats_flat`]) and
    /// forget the inverses (the next natural update computes them from these factors).
    pub fn set_stats_flat(&mut self, v: &[f32]) -> Result<()> {
        self.stats
            .copy_(&flat_of(v, self.stats.numel(), self.stats.device())?);
        self.forget_inverses();
        Ok(())
    }

    /// Whether the running averages hold statistics (false until the first batch).
    pub fn has_stats(&self) -> bool {
        self.seen
    }

    /// Drop the damped inverses, keeping the statistics.
    pub fn forget_inverses(&mut self) {
        for t in self.a_inv.iter_mut().chain(self.s_inv.iter_mut()) {
            *t = None;
        }
    }

    /// `F ← ρ F + (1−ρ) F_batch` for every factor at once, as `F + (1−ρ)(F_batch − F)`; the
    /// first batch is copied as it is (`ρ₀ = 0`).
    pub fn accumulate(&mut self, rho: f64) {
        if self.seen {
            let _ = self.stats.lerp_(&self.batch, 1.0 - rho);
        } else {
            self.stats.copy_(&self.batch);
            self.seen = true;
        }
    }

    /// Every factor's diagonal, factor by factor (one gather and one copy).
    fn diagonals(&self) -> Result<Vec<f32>> {
        Vec::<f32>::try_from(self.stats.take(&self.diagonals).to_device(tch::Device::Cpu))
            .map_err(|e| HostError::InvalidSetting(format!("K-FAC diagonals: {e}")))
    }

    /// All statistics finite, read from the diagonals alone: every entry of an average of
    /// outer products is bounded by its diagonal entries, so a NaN or infinite entry comes with
    /// a NaN or infinite diagonal entry (as in the core).
    pub fn is_finite(&self) -> bool {
        !self.seen
            || self
                .diagonals()
                .is_ok_and(|d| d.iter().all(|v| v.is_finite()))
    }

    /// Forget all statistics and inverses (after an overflow).
    pub fn reset(&mut self) {
        self.seen = false;
        let _ = self.stats.zero_();
        for t in self.a_inv.iter_mut().chain(self.s_inv.iter_mut()) {
            *t = None;
        }
    }

    /// Set the statistics (from a checkpoint): `a` per group, `s` per layer, each `[d, d]`.
    pub fn load(&mut self, a: &[Tensor], s: &[Tensor]) -> Result<()> {
        self.reset();
        if a.len() + s.len() != self.views.len() {
            return Err(HostError::InvalidSetting(format!(
                "K-FAC statistics: {} factors for a net with {}",
                a.len() + s.len(),
                self.views.len()
            )));
        }
        for ((dst, src), &d) in self.views.iter().zip(a.iter().chain(s)).zip(&self.dims) {
            if src.size() != [d, d] {
                return Err(HostError::InvalidSetting(format!(
                    "K-FAC factor of shape {:?}, expected [{d}, {d}]",
                    src.size()
                )));
            }
            dst.shallow_clone().copy_(src);
        }
        self.seen = true;
        Ok(())
    }

    /// Damped inverses with the core's π split (acktr_core::damping_split).
    pub fn factorize(&mut self, net: &TorchNet, damping: f32) -> Result<()> {
        if !self.seen {
            return Err(not_ready("S"));
        }
        // Traces from one copy of all diagonals.
        let diag = self.diagonals()?;
        let mut traces = Vec::with_capacity(self.dims.len());
        let mut at = 0;
        for &d in &self.dims {
            let d = d as usize;
            traces.push(diag[at..at + d].iter().map(|&v| v as f64).sum::<f64>() as f32);
            at += d;
        }
        for gi in 0..net.groups {
            let members: Vec<usize> = (0..net.layers.len())
                .filter(|&li| net.layers[li].group == gi)
                .collect();
            if members.is_empty() {
                continue;
            }
            let tr_s = members.iter().map(|&li| traces[self.groups + li]).sum();
            let dim_s = members
                .iter()
                .map(|&li| self.dims[self.groups + li] as usize)
                .sum();
            let (da, ds) =
                acktr_core::damping_split(traces[gi], self.dims[gi] as usize, tr_s, dim_s, damping);
            self.a_inv[gi] = Some(damped_inverse(&self.views[gi], da, self.method)?);
            for &li in &members {
                self.s_inv[li] = Some(damped_inverse(
                    &self.views[self.groups + li],
                    ds,
                    self.method,
                )?);
            }
        }
        Ok(())
    }

    /// Natural gradient of every layer in place (`grads` holds `W`, `b` per layer, in layer
    /// order, then the log-std); returns `Σ v·g` over the layers.
    pub fn precondition(&self, net: &TorchNet, grads: &mut [Tensor]) -> Result<f64> {
        let (mut gs, mut vs) = (Vec::new(), Vec::new());
        for (li, l) in net.layers.iter().enumerate() {
            let a_inv = self.a_inv[l.group]
                .as_ref()
                .ok_or_else(|| not_ready("Ā⁻¹"))?;
            let s_inv = self.s_inv[li].as_ref().ok_or_else(|| not_ready("S⁻¹"))?;
            let o = l.outputs();
            let wsize = grads[2 * li].size();
            let w = match l.conv {
                Some(_) => grads[2 * li].reshape([o, -1]),
                None => grads[2 * li].shallow_clone(),
            };
            let g = Tensor::cat(&[w, grads[2 * li + 1].unsqueeze(1)], 1);
            let v = s_inv.mm(&g).mm(a_inv);
            let fan = l.fan_in();
            grads[2 * li] = match l.conv {
                Some(_) => v.narrow(1, 0, fan).reshape(wsize),
                None => v.narrow(1, 0, fan),
            };
            grads[2 * li + 1] = v.select(1, fan);
            gs.push(g.view([-1]));
            vs.push(v.view([-1]));
        }
        if gs.is_empty() {
            return Ok(0.0);
        }
        // Σ over layers of vec(V)·vec(G): one dot of the concatenations.
        let q = Tensor::cat(&vs, 0).dot(&Tensor::cat(&gs, 0));
        f64::try_from(q).map_err(|e| HostError::InvalidSetting(e.to_string()))
    }
}

/// `v` as a flat `f32` tensor of `numel` numbers on `device`.
fn flat_of(v: &[f32], numel: usize, device: tch::Device) -> Result<Tensor> {
    if v.len() != numel {
        return Err(HostError::InvalidSetting(format!(
            "K-FAC factors: {} numbers for a buffer of {numel}",
            v.len()
        )));
    }
    Ok(Tensor::from_slice(v).to_device(device))
}

fn not_ready(what: &str) -> HostError {
    HostError::InvalidSetting(format!("K-FAC {what} used before it was computed"))
}

/// `(F + shift·I)⁻¹` by `method`.
fn damped_inverse(f: &Tensor, shift: f32, method: InverseMethod) -> Result<Tensor> {
    if method == InverseMethod::Eigh {
        let (lambda, q) = f
            .f_linalg_eigh("L")
            .map_err(|_| HostError::Core(acktr_core::Error::UpdateNotPositiveDefinite))?;
        let scale = lambda
            .clamp_min(0.0)
            .g_add_scalar(shift as f64)
            .reciprocal();
        // Q diag(s) Qᵀ as (Q ⊙ sᵀ) Qᵀ: one product, no diagonal matrix.
        return Ok((&q * scale.unsqueeze(0)).mm(&q.tr()));
    }
    let m = f.copy();
    let _ = m.diagonal(0, 0, 1).g_add_scalar_(shift as f64);
    let l = m
        .f_linalg_cholesky(false)
        .map_err(|_| HostError::Core(acktr_core::Error::UpdateNotPositiveDefinite))?;
    Ok(l.cholesky_inverse(false))
}
