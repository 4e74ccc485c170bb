//! K-FAC preconditioning against the explicitly built damped Kronecker system, solved in f64 by
//! nalgebra: `((Ā + π√λ I) ⊗ (S + √λ/π I)) vec(V) = vec(G)` with `vec` column-stacking the
//! `O×(I+1)` matrix `G = [∇W | ∇b]`. Tolerance 1e-4 relative (f32 arithmetic in the core).
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::{damping_split, precondition, InputFactor, OutputFactor};
use common::Rng;
use nalgebra::{DMatrix, DVector};

fn random_factors<const I: usize, const O: usize>(
    rng: &mut Rng,
    samples: usize,
) -> (InputFactor<I>, OutputFactor<O>) {
    let mut a = InputFactor::<I>::new();
    let mut s = OutputFactor::<O>::new();
    // Non-centred, correlated inputs as in a real layer.
    let mix: Vec<f32> = (0..I * I).map(|_| rng.sym()).collect();
    for _ in 0..samples {
        let z: Vec<f32> = (0..I).map(|_| rng.sym()).collect();
        let mut x = [0.0f32; I];
        for i in 0..I {
            x[i] = 0.3 + (0..I).map(|k| mix[i * I + k] * z[k]).sum::<f32>();
        }
        let mut g = [0.0f32; O];
        for o in 0..O {
            g[o] = rng.sym() * (1.0 + o as f32);
        }
        a.add(&x, 1.0 / samples as f32);
        s.add(&g, 1.0 / samples as f32);
    }
    (a, s)
}

fn dense<F: Fn(&mut [f32])>(n: usize, write: F) -> DMatrix<f64> {
    let mut buf = vec![0.0f32; n * n];
    write(&mut buf);
    DMatrix::from_row_slice(n, n, &buf.iter().map(|&v| v as f64).collect::<Vec<_>>())
}

fn check<const I: usize, const O: usize>(seed: u64, damping: f32, samples: usize) {
    let mut rng = Rng(seed);
    let (mut a, mut s) = random_factors::<I, O>(&mut rng, samples);
    let abar = dense(I + 1, |b| a.write_dense(b));
    let smat = dense(O, |b| s.write_dense(b));
    let (da, ds) = damping_split(a.trace(), I + 1, s.trace(), O, damping);
    a.factorize(da).unwrap();
    s.factorize(ds).unwrap();

    let mut w = [[0.0f32; I]; O];
    let mut b = [0.0f32; O];
    for o in 0..O {
        for i in 0..I {
            w[o][i] = rng.sym();
        }
        b[o] = rng.sym();
    }
    // vec(G): column-major over the O×(I+1) matrix [W | b].
    let mut g = DVector::<f64>::zeros(O * (I + 1));
    for j in 0..=I {
        for o in 0..O {
            g[j * O + o] = if j < I { w[o][j] } else { b[o] } as f64;
        }
    }
    let ad = &abar + DMatrix::identity(I + 1, I + 1) * da as f64;
    let sd = &smat + DMatrix::identity(O, O) * ds as f64;
    let k = ad.kronecker(&sd);
    let x = k
        .clone()
        .lu()
        .solve(&g)
        .expect("explicit system is regular");
    let q_explicit = g.dot(&x);

    let q = precondition(&a, &s, &mut w, &mut b);
    let mut err = 0.0f64;
    for j in 0..=I {
        for o in 0..O {
            let v = if j < I { w[o][j] } else { b[o] } as f64;
            err = err.max((v - x[j * O + o]).abs());
        }
    }
    let scale = x.amax();
    assert!(
        err <= 1e-4 * scale,
        "I={I} O={O}: max abs err {err} vs scale {scale}"
    );
    // The same quantity two more ways: gᵀK⁻¹g and vᵀKv.
    let vq = x.dot(&(&k * &x));
    assert!(
        ((q as f64) - q_explicit).abs() <= 1e-4 * q_explicit,
        "q {q} vs {q_explicit}"
    );
    assert!((vq - q_explicit).abs() <= 1e-6 * q_explicit);
}

#[test]
fn preconditioned_gradient_solves_the_damped_kronecker_system() {
    check::<4, 3>(1, 0.01, 64);
    check::<5, 1>(2, 0.01, 16);
    check::<8, 8>(3, 0.1, 200);
    check::<16, 7>(4, 0.01, 40); // fewer samples than dimensions: damping makes it regular
    check::<1, 2>(5, 0.001, 10);
}

#[test]
fn ldl_rejects_non_finite_and_indefinite_factors() {
    let mut s = OutputFactor::<3>::new();
    s.add(&[f32::NAN, 0.0, 1.0], 1.0);
    assert!(!s.is_finite());
    assert!(s.factorize(0.1).is_err());
    // Zero statistics with a negative shift are not positive definite.
    let mut a = InputFactor::<2>::new();
    assert!(a.factorize(-0.5).is_err());
    // The same with a positive shift are.
    assert!(a.factorize(0.5).is_ok());
}

#[test]
fn running_average_matches_the_explicit_formula() {
    // A ← ρA + (1−ρ)E[āāᵀ] done with scale/add equals the formula on dense matrices.
    let mut rng = Rng(9);
    let mut a = InputFactor::<3>::new();
    let mut explicit = DMatrix::<f64>::zeros(4, 4);
    for step in 0..5 {
        let rho = if step == 0 { 0.0 } else { 0.9f32 };
        let xs: Vec<[f32; 3]> = (0..7).map(|_| [rng.sym(), rng.sym(), rng.sym()]).collect();
        a.scale(rho);
        let mut e = DMatrix::<f64>::zeros(4, 4);
        for x in &xs {
            a.add(x, (1.0 - rho) / xs.len() as f32);
            let ab = DVector::from_vec(vec![x[0] as f64, x[1] as f64, x[2] as f64, 1.0]);
            e += &ab * ab.transpose() / xs.len() as f64;
        }
        explicit = explicit * rho as f64 + e * (1.0 - rho as f64);
    }
    let got = dense(4, |b| a.write_dense(b));
    assert!((got - explicit).amax() < 1e-6);
}
