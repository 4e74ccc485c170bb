//! The policy heads against closed forms computed here in f64:
//! - categorical: `p = softmax(z)`, `log π(k) = z_k − log Σ exp z`, `H = −Σ p log p`; sampling
//!   frequencies against `p` (Pearson's χ² over many draws);
//! - diagonal Gaussian: `log N(a | μ, σ) = Σ −(a−μ)²/(2σ²) − ln σ − ½ ln 2π`,
//!   `H = Σ ln σ + ½(1 + ln 2π)`; sample mean and variance against `μ`, `σ²`;
//! - the sampled Fisher: the mean over draws of `g gᵀ`, `g` = `fisher_grad`, is the exact Fisher
//!   of the outputs, `diag(p) − p pᵀ` (categorical) and `diag(1/σ²)` (Gaussian mean).
//!
//! Sample tolerances: five standard errors, the standard error estimated from the draws
//! themselves (`sd/√n`); the generator is seeded, so the test is deterministic, and five
//! standard errors over the ~30 quantities checked fail by chance with probability < 1e-4.
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::HeadKind;
use common::Rng;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_7;

fn softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Mean and standard error of the mean of `xs`.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn categorical_log_prob_and_entropy_match_closed_forms() {
    let cases: [[f32; 4]; 4] = [
        [0.5, -1.0, 1.2, 0.0],
        [0.0; 4],
        [30.0, -30.0, 0.0, 29.0], // large spread: the log-sum-exp must be stable
        [-3.0, -3.5, -2.0, -8.0],
    ];
    for z in cases {
        let p = softmax(&z);
        let lse = {
            let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
        };
        let h: f64 = -p
            .iter()
            .filter(|&&q| q > 0.0)
            .map(|q| q * q.ln())
            .sum::<f64>();
        for k in 0..4 {
            let mut a = [0.0f32; 4];
            a[k] = 1.0;
            let (lp, ent) = HeadKind::Categorical.log_prob_entropy(&z, &[0.0; 4], &a);
            let want = z[k] as f64 - lse;
            assert!(
                (lp as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "z {z:?} k {k}: log p {lp} vs {want}"
            );
            assert!((ent as f64 - h).abs() <= 1e-5, "z {z:?}: H {ent} vs {h}");
        }
    }
}

#[test]
fn gaussian_log_prob_and_entropy_match_closed_forms() {
    let mut rng = Rng(31);
    for _ in 0..20 {
        let mu: [f32; 3] = core::array::from_fn(|_| 2.0 * rng.sym());
        let ls: [f32; 3] = core::array::from_fn(|_| 1.5 * rng.sym());
        let a: [f32; 3] = core::array::from_fn(|_| 3.0 * rng.sym());
        let mut lp = 0.0f64;
        let mut h = 0.0f64;
        for i in 0..3 {
            let s = (ls[i] as f64).exp();
            let d = a[i] as f64 - mu[i] as f64;
            lp += -d * d / (2.0 * s * s) - s.ln() - HALF_LN_2PI;
            h += s.ln() + 0.5 + HALF_LN_2PI;
        }
        let (glp, gh) = HeadKind::Gaussian.log_prob_entropy(&mu, &ls, &a);
        assert!(
            (glp as f64 - lp).abs() <= 1e-5 * (1.0 + lp.abs()),
            "log N {glp} vs {lp}"
        );
        assert!(
            (gh as f64 - h).abs() <= 1e-5 * (1.0 + h.abs()),
            "H {gh} vs {h}"
        );
    }
}

#[test]
fn categorical_samples_follow_the_softmax() {
    let z = [0.5f32, -1.0, 1.2, 0.0, -2.5];
    let p = softmax(&z);
    let n = 200_000usize;
    let mut counts = [0usize; 5];
    let mut rng = Rng(41);
    for _ in 0..n {
        let mut a = [0.0f32; 5];
        let lp = HeadKind::Categorical.sample(&z, &[0.0; 5], &mut rng, &mut a);
        let k = a.iter().position(|&v| v == 1.0).expect("one-hot action");
        assert_eq!(a.iter().filter(|&&v| v != 0.0).count(), 1);
        assert!((lp as f64 - p[k].ln()).abs() <= 1e-5 * (1.0 + p[k].ln().abs()));
        counts[k] += 1;
    }
    // Pearson's χ² with 4 degrees of freedom: P(χ² > 23.5) ≈ 1e-4.
    let chi2: f64 = (0..5)
        .map(|k| {
            let e = n as f64 * p[k];
            (counts[k] as f64 - e).powi(2) / e
        })
        .sum();
    assert!(chi2 < 23.5, "χ² {chi2}, counts {counts:?}, p {p:?}");
}

#[test]
fn gaussian_samples_have_the_policy_mean_and_std() {
    let mu = [0.7f32, -1.3];
    let ls = [-0.4f32, 0.5];
    let n = 100_000;
    let mut rng = Rng(43);
    let mut xs = [vec![], vec![]];
    for _ in 0..n {
        let mut a = [0.0f32; 2];
        HeadKind::Gaussian.sample(&mu, &ls, &mut rng, &mut a);
        for i in 0..2 {
            xs[i].push(a[i] as f64);
        }
    }
    for i in 0..2 {
        let s = (ls[i] as f64).exp();
        let (m, se) = mean_se(&xs[i]);
        assert!(
            (m - mu[i] as f64).abs() <= 5.0 * se,
            "dim {i}: mean {m} vs {}",
            mu[i]
        );
        let sq: Vec<f64> = xs[i].iter().map(|x| (x - mu[i] as f64).powi(2)).collect();
        let (v, se) = mean_se(&sq);
        assert!(
            (v - s * s).abs() <= 5.0 * se,
            "dim {i}: variance {v} vs {}",
            s * s
        );
    }
}

#[test]
fn categorical_fisher_samples_average_to_diag_p_minus_ppt() {
    let z = [0.5f32, -1.0, 1.2, 0.0];
    let p = softmax(&z);
    let n = 200_000;
    let mut rng = Rng(47);
    let mut prods: Vec<Vec<f64>> = (0..16).map(|_| Vec::with_capacity(n)).collect();
    for _ in 0..n {
        let mut g = [0.0f32; 4];
        HeadKind::Categorical.fisher_grad(&z, &[0.0; 4], &mut rng, &mut g);
        for i in 0..4 {
            for j in 0..4 {
                prods[i * 4 + j].push(g[i] as f64 * g[j] as f64);
            }
        }
    }
    for i in 0..4 {
        for j in 0..4 {
            let want = if i == j { p[i] } else { 0.0 } - p[i] * p[j];
            let (m, se) = mean_se(&prods[i * 4 + j]);
            assert!(
                (m - want).abs() <= 5.0 * se,
                "F[{i}][{j}]: {m} vs {want} (se {se})"
            );
        }
    }
}

#[test]
fn gaussian_fisher_samples_average_to_inverse_variance() {
    let mu = [0.3f32, -0.8, 1.1];
    let ls = [-0.5f32, 0.0, 0.7];
    let n = 200_000;
    let mut rng = Rng(53);
    let mut prods: Vec<Vec<f64>> = (0..9).map(|_| Vec::with_capacity(n)).collect();
    for _ in 0..n {
        let mut g = [0.0f32; 3];
        HeadKind::Gaussian.fisher_grad(&mu, &ls, &mut rng, &mut g);
        for i in 0..3 {
            for j in 0..3 {
                prods[i * 3 + j].push(g[i] as f64 * g[j] as f64);
            }
        }
    }
    for i in 0..3 {
        for j in 0..3 {
            let want = if i == j {
                (-2.0 * ls[i] as f64).exp()
            } else {
                0.0
            };
            let (m, se) = mean_se(&prods[i * 3 + j]);
            assert!(
                (m - want).abs() <= 5.0 * se,
                "F[{i}][{j}]: {m} vs {want} (se {se})"
            );
        }
    }
}
