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
//!   inverses by Cholesky every `inverse_every` updates, `V = S_d⁻¹ G Ā_d⁻¹`.

use acktr_host::error::{HostError, Result};
use tch::{Kind, Tensor};

use crate::net::{Forward, TorchNet};

/// Factors and inverses of every layer of a [`TorchNet`].
#[derive(Debug)]
pub struct TorchKfac {
    /// `Ā` per input group (`None` until first seen).
    pub a: Vec<Option<Tensor>>,
    /// `S` per layer.
    pub s: Vec<Option<Tensor>>,
    a_inv: Vec<Option<Tensor>>,
    s_inv: Vec<Option<Tensor>>,
}

/// Inputs up to this many numbers get their bias column appended before the product.
const SMALL_ROWS: usize = 1 << 16;

/// `Ā = E[ā āᵀ]` of the rows `x` of `rows` (`[n, K]`) with `ā = [x; 1]`, in blocks:
/// `[[XᵀX/n, x̄], [x̄ᵀ, 1]]` — without building `[X | 1]`, a copy as large as the conv layers'
/// patch matrices.
fn input_factor(rows: &Tensor) -> Tensor {
    let n = rows.size()[0] as f64;
    let one = Tensor::ones([1, 1], (rows.kind(), rows.device()));
    if rows.numel() <= SMALL_ROWS {
        // Small (an MLP's layers): five libtorch calls instead of ten, whose overhead is the
        // cost at this size.
        let xa = Tensor::cat(&[rows, &one.expand([rows.size()[0], 1], false)], 1);
        return xa.tr().mm(&xa) / n;
    }
    let xtx = rows.tr().mm(rows) / n;
    let mean = rows.sum_dim_intlist(0, true, Kind::Float) / n;
    let top = Tensor::cat(&[xtx, mean.tr()], 1);
    let bottom = Tensor::cat(&[mean, one], 1);
    Tensor::cat(&[top, bottom], 0)
}

impl TorchKfac {
    /// Empty statistics for `net`.
    pub fn new(net: &TorchNet) -> Self {
        Self {
            a: (0..net.groups).map(|_| None).collect(),
            s: (0..net.layers.len()).map(|_| None).collect(),
            a_inv: (0..net.groups).map(|_| None).collect(),
            s_inv: (0..net.layers.len()).map(|_| None).collect(),
        }
    }

    /// Whether damped inverses exist.
    pub fn is_factorized(&self) -> bool {
        self.s_inv.iter().all(|s| s.is_some())
    }

    /// The batch statistics `E[ā āᵀ]` of each group and `S` of each layer from a forward pass
    /// and the per-sample Fisher gradients `g` of every layer's pre-activation (with a
    /// `stat_stride`, the learner passes the strided samples' own forward pass).
    pub fn batch_stats(
        net: &TorchNet,
        fw: &Forward,
        g: &[Tensor],
    ) -> (Vec<Option<Tensor>>, Vec<Tensor>) {
        let inputs = &fw.inputs;
        let mut a_batch: Vec<Option<Tensor>> = (0..net.groups).map(|_| None).collect();
        let mut s_batch = Vec::with_capacity(net.layers.len());
        for (li, l) in net.layers.iter().enumerate() {
            let input = &inputs[l.group];
            let bsz = input.size()[0] as f64;
            if a_batch[l.group].is_none() {
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
                    None => input.reshape([input.size()[0], -1]),
                };
                a_batch[l.group] = Some(input_factor(&rows));
            }
            let gl = &g[li];
            let rows = if gl.dim() == 4 {
                gl.permute([0, 2, 3, 1]).reshape([-1, l.outputs()])
            } else {
                gl.reshape([gl.size()[0], -1])
            };
            s_batch.push(rows.tr().mm(&rows) / bsz);
        }
        (a_batch, s_batch)
    }

    /// `F ← ρ F + (1−ρ) F_batch` for every factor, in place as `F + (1−ρ)(F_batch − F)` (one
    /// libtorch call a factor instead of three: on a small MLP each call's overhead is the cost).
    pub fn accumulate(&mut self, a_batch: Vec<Option<Tensor>>, s_batch: Vec<Tensor>, rho: f64) {
        let blend = |dst: &mut Option<Tensor>, src: Tensor| match dst {
            Some(old) => {
                let _ = old.lerp_(&src, 1.0 - rho);
            }
            None => *dst = Some(src),
        };
        for (dst, src) in self.a.iter_mut().zip(a_batch) {
            if let Some(src) = src {
                blend(dst, src);
            }
        }
        for (dst, src) in self.s.iter_mut().zip(s_batch) {
            blend(dst, src);
        }
    }

    /// All statistics finite, read from the diagonals alone (one check for all factors):
    /// every entry of an average of outer products is bounded by its diagonal entries, so a
    /// NaN or infinite entry comes with a NaN or infinite diagonal entry (as in the core).
    pub fn is_finite(&self) -> bool {
        let diags: Vec<Tensor> = self
            .a
            .iter()
            .chain(self.s.iter())
            .flatten()
            .map(|t| t.diagonal(0, 0, 1))
            .collect();
        diags.is_empty() || bool::try_from(Tensor::cat(&diags, 0).isfinite().all()).unwrap_or(false)
    }

    /// Forget all statistics (after an overflow).
    pub fn reset(&mut self) {
        for t in self
            .a
            .iter_mut()
            .chain(self.s.iter_mut())
            .chain(self.a_inv.iter_mut())
            .chain(self.s_inv.iter_mut())
        {
            *t = None;
        }
    }

    /// Damped inverses with the core's π split (acktr_core::damping_split).
    pub fn factorize(&mut self, net: &TorchNet, damping: f32) -> Result<()> {
        for gi in 0..net.groups {
            let Some(a) = &self.a[gi] else { continue };
            let members: Vec<usize> = (0..net.layers.len())
                .filter(|&li| net.layers[li].group == gi)
                .collect();
            let mut tr_s = 0.0;
            let mut dim_s = 0;
            for &li in &members {
                let s = self.s[li].as_ref().ok_or_else(|| not_ready("S"))?;
                tr_s += f64::try_from(s.trace())
                    .map_err(|e| HostError::InvalidSetting(e.to_string()))?
                    as f32;
                dim_s += s.size()[0] as usize;
            }
            let dim_a = a.size()[0] as usize;
            let tr_a = f64::try_from(a.trace())
                .map_err(|e| HostError::InvalidSetting(e.to_string()))?
                as f32;
            let (da, ds) = acktr_core::damping_split(tr_a, dim_a, tr_s, dim_s, damping);
            self.a_inv[gi] = Some(damped_inverse(a, da)?);
            for &li in &members {
                let s = self.s[li].as_ref().ok_or_else(|| not_ready("S"))?;
                self.s_inv[li] = Some(damped_inverse(s, ds)?);
            }
        }
        Ok(())
    }

    /// Natural gradient of every layer in place (`grads` holds `W`, `b` per layer, in layer
    /// order, then the log-std); returns `Σ v·g` over the layers.
    pub fn precondition(&self, net: &TorchNet, grads: &mut [Tensor]) -> Result<f64> {
        let mut q = 0.0;
        for (li, l) in net.layers.iter().enumerate() {
            let a_inv = self.a_inv[l.group]
                .as_ref()
                .ok_or_else(|| not_ready("Ā⁻¹"))?;
            let s_inv = self.s_inv[li].as_ref().ok_or_else(|| not_ready("S⁻¹"))?;
            let o = l.outputs();
            let (wsize, bsize) = (grads[2 * li].size(), grads[2 * li + 1].size());
            let g = Tensor::cat(
                &[
                    grads[2 * li].reshape([o, -1]),
                    grads[2 * li + 1].reshape([o, 1]),
                ],
                1,
            );
            let v = s_inv.mm(&g).mm(a_inv);
            q += f64::try_from((&v * &g).sum(Kind::Double))
                .map_err(|e| HostError::InvalidSetting(e.to_string()))?;
            let fan = l.fan_in();
            grads[2 * li] = v.narrow(1, 0, fan).reshape(wsize);
            grads[2 * li + 1] = v.narrow(1, fan, 1).reshape(bsize);
        }
        Ok(q)
    }
}

fn not_ready(what: &str) -> HostError {
    HostError::InvalidSetting(format!("K-FAC {what} used before it was computed"))
}

/// `(F + shift·I)⁻¹` through a Cholesky factorisation.
fn damped_inverse(f: &Tensor, shift: f32) -> Result<Tensor> {
    let n = f.size()[0];
    let eye = Tensor::eye(n, (f.kind(), f.device()));
    let m = f + eye * shift as f64;
    let l = m
        .f_linalg_cholesky(false)
        .map_err(|_| HostError::Core(acktr_core::Error::UpdateNotPositiveDefinite))?;
    Ok(l.cholesky_inverse(false))
}
