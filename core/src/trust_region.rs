//! The trust-region step size of ACKTR.
//!
//! With the natural gradient `Δθ = F̂⁻¹ ∇θ` and the second-order KL estimate
//! `KL(θ, θ − ηΔθ) ≈ ½ η² Δθᵀ F̂ Δθ`, the largest step that keeps the KL within `δ`
//! (`kl_clip`) and within the learning rate `η_max` is
//!
//! `η = min(η_max, sqrt(2δ / (Δθᵀ F̂ Δθ)))`.
//!
//! This is the paper's formula. The paper's code (and the PyTorch port) uses
//! `sqrt(δ / Δθᵀ F̂ Δθ)` (no factor 2): to reproduce its steps exactly, halve `kl_clip`.

use crate::Error;

/// `η = min(η_max, sqrt(2δ / q))` for the quadratic form `q = Δθᵀ F̂ Δθ ≥ 0`.
///
/// `q = 0` (a zero gradient) gives `η_max`; a negative (beyond rounding) or non-finite `q` is
/// an error, never a step.
pub fn step_size(q: f32, eta_max: f32, kl_clip: f32) -> Result<f32, Error> {
    if !q.is_finite() || q < 0.0 {
        return Err(Error::UpdateNonFiniteGradient);
    }
    if q == 0.0 {
        return Ok(eta_max);
    }
    Ok(eta_max.min(libm::sqrtf(2.0 * kl_clip / q)))
}
