//! Data-parallel training: the one interface between the learner and a communication engine
//! (MPI today; NCCL or threads could sit behind it too).
//!
//! `R` processes ("ranks") each hold the same learner and their own batch of `bᵣ` samples. An
//! update computes, from every rank's samples at once, what one process would compute from the
//! concatenated batch of `B = Σ bᵣ` samples:
//!
//! - the advantage standardiser: `μ = Σ Â / B`, `σ² = Σ (Â − μ)² / B` (both sums over ranks);
//! - the loss gradient `∇θ = (Σᵣ Σₜ ∇ℓₜ) / B` (the per-sample sums are all-reduced, then divided);
//! - each Kronecker factor `F ← ρ F + (1−ρ)/B · Σᵣ Σₜ fₜ fₜᵀ`: every rank scales its (equal)
//!   factors by `ρ/R` and adds its own samples' statistics with weight `(1−ρ)/B`, so that the
//!   all-reduced sum is the update above;
//! - the measured KL (`target_kl`) and each further critic pass's gradient (`vf_iters`) the
//!   same way.
//!
//! The damped inverses are then computed on every rank from identical factors: for these MLPs
//! (factors of at most `(H+1)²` numbers) the inversion costs less than a broadcast of its
//! result would. Every rank takes the same step and holds the same weights, provided the
//! engine hands every rank the same sums (MPI's all-reduce does).

use crate::Error;

/// A visitor over the numbers a collective call works on: it calls its argument once per
/// slice, always the same slices in the same order (e.g. a network's parameter slices).
pub type Parts<'a> = dyn FnMut(&mut dyn FnMut(&mut [f32])) + 'a;

/// Collective operations across the `R` processes of a data-parallel run. Every rank must
/// make the same calls in the same order with buffers of the same lengths.
pub trait Collective {
    /// Processes taking part, `R ≥ 1`.
    fn ranks(&self) -> u32;

    /// Element-wise sum over ranks of the `f32` numbers `parts` presents, written back in
    /// place on every rank (the same sums, bit for bit, on every rank). `parts` may be called
    /// more than once (e.g. to pack the slices into one message and to unpack them).
    fn all_reduce_sum(&mut self, parts: &mut Parts<'_>) -> Result<(), Error>;

    /// Element-wise sum over ranks of `buf` (counts and sums that need `f64`), in place.
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), Error>;

    /// Rank 0's numbers, presented by `parts` as in [`Collective::all_reduce_sum`], written
    /// into every other rank's.
    fn broadcast(&mut self, parts: &mut Parts<'_>) -> Result<(), Error>;
}

/// One process: every collective is the identity, and a learner driven through it computes
/// exactly (bit for bit) what it computes without one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn ranks(&self) -> u32 {
        1
    }

    fn all_reduce_sum(&mut self, _: &mut Parts<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, _: &mut [f64]) -> Result<(), Error> {
        Ok(())
    }

    fn broadcast(&mut self, _: &mut Parts<'_>) -> Result<(), Error> {
        Ok(())
    }
}
