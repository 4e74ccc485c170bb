//! Policy heads: categorical over `P` actions and diagonal Gaussian over `P` dimensions with a
//! state-independent log-std.
//!
//! Actions are stored as `[f32; P]`: a one-hot vector for the categorical head (so the
//! categorical log-prob is `Σ aᵢ log pᵢ`), the sampled value for the Gaussian head.
//!
//! Per sample, with advantage `A`, entropy coefficient `c_e`, the actor loss is
//! `−A log π(a|s) − c_e H(π(·|s))`. Its gradients with respect to the head outputs `z` are:
//! - categorical (`p = softmax z`): `∂/∂zᵢ = A (pᵢ − aᵢ) + c_e pᵢ (log pᵢ + H)`;
//! - Gaussian (`μ = z`, `σ = exp(ℓ)`): `∂/∂μᵢ = −A (aᵢ − μᵢ)/σᵢ²`,
//!   `∂/∂ℓᵢ = −A ((aᵢ − μᵢ)²/σᵢ² − 1) − c_e`.
//!
//! The Fisher uses the gradient of `−log π(ã|s)` with `ã` drawn from the policy itself
//! (the paper's sampled Fisher): `p − onehot(ã)` (categorical), `−ε/σ` with `ã = μ + σε`
//! (Gaussian mean). The Gaussian log-std block of the Fisher is exactly `2` per dimension and is
//! handled in closed form by the optimizer.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

/// `½ ln(2π)`.
const HALF_LN_2PI: f32 = 0.918_938_5;

/// Which distribution the policy outputs parameterise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadKind {
    /// Categorical over `P` discrete actions; outputs are logits.
    Categorical,
    /// Diagonal Gaussian over `P` dimensions; outputs are means, log-std is a free parameter.
    Gaussian,
}

/// Uniform in `[0, 1)` with 24 random bits.
#[inline]
pub fn uniform01(rng: &mut impl RngCore) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Standard normal by Box–Muller.
#[inline]
pub fn standard_normal(rng: &mut impl RngCore) -> f32 {
    let u1 = 1.0 - uniform01(rng); // (0, 1]: ln is finite
    let u2 = uniform01(rng);
    libm::sqrtf(-2.0 * libm::logf(u1)) * libm::cosf(core::f32::consts::TAU * u2)
}

/// `out = log softmax(z)`, computed stably; returns `H = −Σ pᵢ log pᵢ`.
#[inline]
pub fn log_softmax<const P: usize>(z: &[f32; P], out: &mut [f32; P]) -> f32 {
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let s: f32 = z.iter().map(|&v| libm::expf(v - m)).sum();
    let lse = m + libm::logf(s);
    let mut h = 0.0;
    for (o, &v) in out.iter_mut().zip(z.iter()) {
        *o = v - lse;
        h -= libm::expf(*o) * *o;
    }
    h
}

/// [`log_softmax`] with the probabilities it passes through: `(log p, p, H)`, `p = exp(log p)`
/// bit for bit as `libm::expf` of the returned `log p` (so callers need not exponentiate again).
#[inline]
fn softmax_parts<const P: usize>(z: &[f32; P]) -> ([f32; P], [f32; P], f32) {
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let s: f32 = z.iter().map(|&v| libm::expf(v - m)).sum();
    let lse = m + libm::logf(s);
    let mut lp = [0.0; P];
    let mut p = [0.0; P];
    let mut h = 0.0;
    for i in 0..P {
        lp[i] = z[i] - lse;
        p[i] = libm::expf(lp[i]);
        h -= p[i] * lp[i];
    }
    (lp, p, h)
}

/// Index of `u ∈ [0, 1)` in the cumulative sums of `p` (the last index if rounding leaves the
/// total below `u`).
#[inline]
fn categorical_index<const P: usize>(p: &[f32; P], u: f32) -> usize {
    let mut c = 0.0;
    for (i, &pi) in p.iter().enumerate() {
        c += pi;
        if u < c {
            return i;
        }
    }
    P - 1
}

/// Index of the largest entry (first on ties).
#[inline]
pub fn argmax<const P: usize>(v: &[f32; P]) -> usize {
    let mut best = 0;
    for i in 1..P {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

impl HeadKind {
    /// Draw an action from the policy with outputs `z` (and log-std `ls` for the Gaussian) into
    /// `a`; returns `log π(a|s)`.
    pub fn sample<const P: usize>(
        self,
        z: &[f32; P],
        ls: &[f32; P],
        rng: &mut impl RngCore,
        a: &mut [f32; P],
    ) -> f32 {
        match self {
            HeadKind::Categorical => {
                let (lp, p, _) = softmax_parts(z);
                let k = categorical_index(&p, uniform01(rng));
                *a = [0.0; P];
                a[k] = 1.0;
                lp[k]
            }
            HeadKind::Gaussian => {
                let mut logp = 0.0;
                for i in 0..P {
                    let e = standard_normal(rng);
                    a[i] = z[i] + libm::expf(ls[i]) * e;
                    logp += -0.5 * e * e - ls[i] - HALF_LN_2PI;
                }
                logp
            }
        }
    }

    /// The most likely action (argmax one-hot, or the mean) into `a`.
    pub fn mode<const P: usize>(self, z: &[f32; P], a: &mut [f32; P]) {
        match self {
            HeadKind::Categorical => {
                *a = [0.0; P];
                a[argmax(z)] = 1.0;
            }
            HeadKind::Gaussian => *a = *z,
        }
    }

    /// `(log π(a|s), H(π(·|s)))`.
    pub fn log_prob_entropy<const P: usize>(
        self,
        z: &[f32; P],
        ls: &[f32; P],
        a: &[f32; P],
    ) -> (f32, f32) {
        match self {
            HeadKind::Categorical => {
                let mut lp = [0.0; P];
                let h = log_softmax(z, &mut lp);
                (crate::dense::dot(a, &lp), h)
            }
            HeadKind::Gaussian => {
                let mut logp = 0.0;
                let mut h = 0.0;
                for i in 0..P {
                    let e = (a[i] - z[i]) * libm::expf(-ls[i]);
                    logp += -0.5 * e * e - ls[i] - HALF_LN_2PI;
                    h += ls[i] + 0.5 + HALF_LN_2PI;
                }
                (logp, h)
            }
        }
    }

    /// Gradient of the per-sample actor loss `−A log π(a|s) − c_e H` with respect to the outputs
    /// (`gz`) and, for the Gaussian, the log-std (`gls`, accumulated). Returns
    /// `(log π(a|s), H)`.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_grad<const P: usize>(
        self,
        z: &[f32; P],
        ls: &[f32; P],
        a: &[f32; P],
        adv: f32,
        ent_coef: f32,
        gz: &mut [f32; P],
        gls: &mut [f32; P],
    ) -> (f32, f32) {
        match self {
            HeadKind::Categorical => {
                let (lp, p, h) = softmax_parts(z);
                for i in 0..P {
                    gz[i] = adv * (p[i] - a[i]) + ent_coef * p[i] * (lp[i] + h);
                }
                (crate::dense::dot(a, &lp), h)
            }
            HeadKind::Gaussian => {
                let mut logp = 0.0;
                let mut h = 0.0;
                for i in 0..P {
                    let inv_sigma = libm::expf(-ls[i]);
                    let e = (a[i] - z[i]) * inv_sigma;
                    gz[i] = -adv * e * inv_sigma;
                    gls[i] += -adv * (e * e - 1.0) - ent_coef;
                    logp += -0.5 * e * e - ls[i] - HALF_LN_2PI;
                    h += ls[i] + 0.5 + HALF_LN_2PI;
                }
                (logp, h)
            }
        }
    }

    /// `KL(π_old ‖ π_new)` of one state from both policies' outputs `z` and log-stds `ls`:
    /// categorical `Σ p_old (log p_old − log p_new)`; diagonal Gaussian
    /// `Σ [ls_new − ls_old + (σ_old² + (μ_old − μ_new)²) / (2σ_new²) − ½]`.
    pub fn kl<const P: usize>(
        self,
        z_old: &[f32; P],
        ls_old: &[f32; P],
        z_new: &[f32; P],
        ls_new: &[f32; P],
    ) -> f32 {
        match self {
            HeadKind::Categorical => {
                let (lp_old, p_old, _) = softmax_parts(z_old);
                let (lp_new, _, _) = softmax_parts(z_new);
                (0..P).map(|i| p_old[i] * (lp_old[i] - lp_new[i])).sum()
            }
            HeadKind::Gaussian => (0..P)
                .map(|i| {
                    let d = z_old[i] - z_new[i];
                    let r = libm::expf(2.0 * (ls_old[i] - ls_new[i]));
                    ls_new[i] - ls_old[i] + 0.5 * (r + d * d * libm::expf(-2.0 * ls_new[i])) - 0.5
                })
                .sum(),
        }
    }

    /// Fisher sample: gradient of `−log π(ã|s)` with respect to the outputs, `ã ~ π(·|s)`.
    pub fn fisher_grad<const P: usize>(
        self,
        z: &[f32; P],
        ls: &[f32; P],
        rng: &mut impl RngCore,
        gz: &mut [f32; P],
    ) {
        match self {
            HeadKind::Categorical => {
                // `sample`'s draw, without computing the softmax twice.
                let (_, p, _) = softmax_parts(z);
                let k = categorical_index(&p, uniform01(rng));
                for i in 0..P {
                    gz[i] = p[i] - if i == k { 1.0 } else { 0.0 };
                }
            }
            HeadKind::Gaussian => {
                for i in 0..P {
                    gz[i] = -standard_normal(rng) * libm::expf(-ls[i]);
                }
            }
        }
    }
}
