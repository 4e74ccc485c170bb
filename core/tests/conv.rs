//! `Conv2d` and its K-FAC against independent truth, all in f64:
//! - forward: the im2col matrix product `Y = W Uᵀ + b` with the patch matrix `U` built here by
//!   index arithmetic (and a direct six-loop convolution, a second way), 1e-5 relative;
//! - backward: central finite differences (h = 1e-4) of a scalar loss through the direct
//!   convolution, 1e-4 relative to the largest gradient entry;
//! - KFC preconditioning: the damped Kronecker system `(T·Ā + π√λ I) ⊗ (S̄ + √λ/π I)` built
//!   densely from patches extracted here (`T·Ā` summed over positions, `S̄` the per-position
//!   mean: the other placement of `T`, which the π-adjusted damping must not notice), solved by
//!   nalgebra's LU, 1e-4 relative (f32 arithmetic in the core).
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::{
    conv_out, Activation, ActorCritic, Backward, Conv2d, ConvCurvature, Error, Forward, HeadKind,
    InputFactor, OutputFactor,
};
use common::Rng;
use nalgebra::{DMatrix, DVector};

/// Random `[[[f32; W]; H]; C]` in `[-1, 1) + shift`.
fn image<const C: usize, const H: usize, const W: usize>(
    rng: &mut Rng,
    shift: f32,
) -> [[[f32; W]; H]; C] {
    core::array::from_fn(|_| core::array::from_fn(|_| core::array::from_fn(|_| rng.sym() + shift)))
}

fn layer<const C: usize, const F: usize, const K: usize, const S: usize, const N: usize>(
    rng: &mut Rng,
) -> Conv2d<C, F, K, S, N> {
    let mut l = Conv2d::<C, F, K, S, N>::zeros();
    for f in 0..F {
        for n in 0..N {
            l.w[f][n] = rng.sym();
        }
        l.b[f] = rng.sym();
    }
    l
}

/// The patch matrix `U` (`T×N`, row `p·Wo + q`), column `(c·K + i)·K + j` holding
/// `x[c][p·S + i][q·S + j]`, in f64.
fn im2col<const C: usize, const H: usize, const W: usize>(
    x: &[[[f32; W]; H]; C],
    k: usize,
    s: usize,
) -> DMatrix<f64> {
    let (ho, wo) = ((H - k) / s + 1, (W - k) / s + 1);
    let mut u = DMatrix::<f64>::zeros(ho * wo, C * k * k);
    for p in 0..ho {
        for q in 0..wo {
            for c in 0..C {
                for i in 0..k {
                    for j in 0..k {
                        u[(p * wo + q, (c * k + i) * k + j)] = x[c][p * s + i][q * s + j] as f64;
                    }
                }
            }
        }
    }
    u
}

/// Direct convolution in f64 on flat buffers: `x` CHW, `w` `F×(C·K·K)`, output FHoWo.
#[allow(clippy::too_many_arguments)]
fn direct(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    (c_in, h, wd): (usize, usize, usize),
    f_out: usize,
    k: usize,
    s: usize,
) -> Vec<f64> {
    let (ho, wo) = ((h - k) / s + 1, (wd - k) / s + 1);
    let mut y = vec![0.0; f_out * ho * wo];
    for f in 0..f_out {
        for p in 0..ho {
            for q in 0..wo {
                let mut acc = b[f];
                for c in 0..c_in {
                    for i in 0..k {
                        for j in 0..k {
                            acc += w[f * c_in * k * k + (c * k + i) * k + j]
                                * x[(c * h + p * s + i) * wd + q * s + j];
                        }
                    }
                }
                y[(f * ho + p) * wo + q] = acc;
            }
        }
    }
    y
}

/// Forward against the im2col product and the direct loops.
fn check_forward<
    const C: usize,
    const F: usize,
    const K: usize,
    const S: usize,
    const N: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
) {
    let mut rng = Rng(seed);
    let l = layer::<C, F, K, S, N>(&mut rng);
    let x = image::<C, H, W>(&mut rng, 0.2);
    let mut y = [[[0.0f32; WO]; HO]; F];
    l.forward(&x, &mut y);

    let u = im2col(&x, K, S);
    let wm = DMatrix::<f64>::from_fn(F, N, |f, n| l.w[f][n] as f64);
    let bm = DVector::<f64>::from_fn(F, |f, _| l.b[f] as f64);
    let mut want = &wm * u.transpose(); // F×T
    for mut col in want.column_iter_mut() {
        col += &bm;
    }
    let xf: Vec<f64> = x
        .as_flattened()
        .as_flattened()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let wf: Vec<f64> = l.w.as_flattened().iter().map(|&v| v as f64).collect();
    let bf: Vec<f64> = l.b.iter().map(|&v| v as f64).collect();
    let yd = direct(&xf, &wf, &bf, (C, H, W), F, K, S);
    let scale = want.amax();
    for f in 0..F {
        for p in 0..HO {
            for q in 0..WO {
                let t = p * WO + q;
                let (got, m) = (y[f][p][q] as f64, want[(f, t)]);
                assert!(
                    (got - m).abs() <= 1e-5 * scale,
                    "({f},{p},{q}): {got} vs {m}"
                );
                assert!((yd[(f * HO + p) * WO + q] - m).abs() <= 1e-12 * scale);
            }
        }
    }
}

#[test]
fn forward_is_the_im2col_product() {
    check_forward::<1, 1, 2, 1, 4, 3, 3, 2, 2>(1);
    check_forward::<3, 4, 3, 1, 27, 8, 8, 6, 6>(2);
    check_forward::<2, 5, 3, 2, 18, 10, 9, 4, 4>(3); // stride 2, a row and column unread
    check_forward::<4, 8, 2, 2, 16, 8, 8, 4, 4>(4); // an 8×8 time-of-flight array, 4 features
    check_forward::<6, 3, 1, 1, 6, 4, 5, 4, 5>(5); // 1×1 kernel, non-square
    check_forward::<1, 2, 5, 3, 25, 5, 11, 1, 3>(6); // kernel as tall as the input
}

/// By hand: a 3×3 image `1..9`, one 2×2 filter `[[1, 0], [0, −1]]`, bias 0.5: each output is
/// `x[p][q] − x[p+1][q+1] + 0.5 = −4 + 0.5`.
#[test]
fn forward_by_hand() {
    let mut l = Conv2d::<1, 1, 2, 1, 4>::zeros();
    l.w = [[1.0, 0.0, 0.0, -1.0]];
    l.b = [0.5];
    let x = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
    let mut y = [[[0.0f32; 2]; 2]; 1];
    l.forward(&x, &mut y);
    assert_eq!(y, [[[-3.5, -3.5], [-3.5, -3.5]]]);
    // Stride 2: a 3×5 image `x[r][q] = 5r + q`, a 3×3 kernel of ones, outputs 1×2.
    let ones = Conv2d::<1, 1, 3, 2, 9> {
        w: [[1.0; 9]],
        b: [0.0],
    };
    let x: [[[f32; 5]; 3]; 1] = [core::array::from_fn(|r| {
        core::array::from_fn(|q| (r * 5 + q) as f32)
    })];
    let mut y = [[[0.0f32; 2]; 1]; 1];
    ones.forward(&x, &mut y);
    // Columns 0..3 and 2..5 of rows 0..3: (0+1+2+5+6+7+10+11+12) = 54, and +2 per entry: 72.
    assert_eq!(y, [[[54.0, 72.0]]]);
    assert_eq!(conv_out(10, 3, 1), 8);
    assert_eq!(conv_out(10, 3, 2), 4);
    assert_eq!(conv_out(2, 3, 1), 0);
    assert_eq!(conv_out(5, 3, 0), 0);
}

/// Backward against central differences of `L = Σ r ⊙ y + ½ Σ y²` (so `∂L/∂y = r + y`)
/// through the direct f64 convolution; both gradients accumulate onto what was there.
fn check_backward<
    const C: usize,
    const F: usize,
    const K: usize,
    const S: usize,
    const N: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
) {
    let mut rng = Rng(seed);
    let l = layer::<C, F, K, S, N>(&mut rng);
    let x = image::<C, H, W>(&mut rng, 0.1);
    let r: Vec<f64> = (0..F * HO * WO).map(|_| rng.sym() as f64).collect();
    let geo = (C, H, W);
    let xf: Vec<f64> = x
        .as_flattened()
        .as_flattened()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let wf: Vec<f64> = l.w.as_flattened().iter().map(|&v| v as f64).collect();
    let bf: Vec<f64> = l.b.iter().map(|&v| v as f64).collect();
    let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
        let y = direct(x, w, b, geo, F, K, S);
        y.iter().zip(&r).map(|(y, r)| r * y + 0.5 * y * y).sum()
    };
    let y = direct(&xf, &wf, &bf, geo, F, K, S);
    let g: [[[f32; WO]; HO]; F] = core::array::from_fn(|f| {
        core::array::from_fn(|p| {
            core::array::from_fn(|q| {
                let t = (f * HO + p) * WO + q;
                (r[t] + y[t]) as f32
            })
        })
    });

    // Core: onto random starting buffers, then the start subtracted.
    let dx0 = image::<C, H, W>(&mut rng, 0.0);
    let mut dx = dx0;
    l.backward_input(&g, &mut dx);
    let grad0 = layer::<C, F, K, S, N>(&mut rng);
    let mut grad = grad0;
    grad.accumulate(&g, &x);

    let h = 1e-4;
    let fd = |which: usize, k: usize| -> f64 {
        let (mut xp, mut wp, mut bp) = (xf.clone(), wf.clone(), bf.clone());
        let (mut xm, mut wm, mut bm) = (xf.clone(), wf.clone(), bf.clone());
        match which {
            0 => (xp[k] += h, xm[k] -= h),
            1 => (wp[k] += h, wm[k] -= h),
            _ => (bp[k] += h, bm[k] -= h),
        };
        (loss(&xp, &wp, &bp) - loss(&xm, &wm, &bm)) / (2.0 * h)
    };
    let got_x: Vec<f64> = dx
        .as_flattened()
        .as_flattened()
        .iter()
        .zip(dx0.as_flattened().as_flattened())
        .map(|(a, b)| *a as f64 - *b as f64)
        .collect();
    let got_w: Vec<f64> = grad
        .w
        .as_flattened()
        .iter()
        .zip(grad0.w.as_flattened())
        .map(|(a, b)| *a as f64 - *b as f64)
        .collect();
    let got_b: Vec<f64> = grad
        .b
        .iter()
        .zip(&grad0.b)
        .map(|(a, b)| *a as f64 - *b as f64)
        .collect();
    for (which, got) in [(0, &got_x), (1, &got_w), (2, &got_b)] {
        let want: Vec<f64> = (0..got.len()).map(|k| fd(which, k)).collect();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.1, "a gradient this small tests nothing");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{} entry {k}: {g} vs finite difference {w}",
                ["x", "w", "b"][which]
            );
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    check_backward::<1, 1, 2, 1, 4, 3, 3, 2, 2>(11);
    check_backward::<3, 4, 3, 1, 27, 6, 7, 4, 5>(12);
    check_backward::<2, 5, 3, 2, 18, 10, 9, 4, 4>(13); // unread pixels: zero input gradient
    check_backward::<4, 3, 2, 2, 16, 8, 8, 4, 4>(14);
    check_backward::<2, 2, 1, 1, 2, 3, 4, 3, 4>(15);
}

/// KFC preconditioning against the dense damped Kronecker solve (see the file's docs).
fn check_kfac<
    const C: usize,
    const F: usize,
    const K: usize,
    const S: usize,
    const N: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
    samples: usize,
    damping: f32,
) {
    let mut rng = Rng(seed);
    let l = layer::<C, F, K, S, N>(&mut rng);
    let t = HO * WO;
    let mut kfac = ConvCurvature::<N, F>::new();
    // Test-side statistics: T·Ā = E[Σ_pq ā āᵀ], S̄ = E[(1/T) Σ_pq g gᵀ].
    let mut a_t = DMatrix::<f64>::zeros(N + 1, N + 1);
    let mut s_bar = DMatrix::<f64>::zeros(F, F);
    for _ in 0..samples {
        let x = image::<C, H, W>(&mut rng, 0.3);
        // Output gradients with per-filter scales, as real ones differ between filters.
        let g: [[[f32; WO]; HO]; F] = core::array::from_fn(|f| {
            core::array::from_fn(|_| core::array::from_fn(|_| rng.sym() * (1.0 + f as f32)))
        });
        l.observe(&mut kfac, &x, &g, 1.0 / samples as f32);
        let u = im2col(&x, K, S);
        for pq in 0..t {
            let mut ab = DVector::<f64>::zeros(N + 1);
            for n in 0..N {
                ab[n] = u[(pq, n)];
            }
            ab[N] = 1.0;
            a_t += &ab * ab.transpose() / samples as f64;
            let gv = DVector::<f64>::from_fn(F, |f, _| g[f][pq / WO][pq % WO] as f64);
            s_bar += &gv * gv.transpose() / (samples * t) as f64;
        }
    }

    // The core's factors are the torch backend's: Ā the mean over samples and positions,
    // S summed over positions.
    let mut buf = vec![0.0f32; (N + 1) * (N + 1)];
    kfac.a().write_dense(&mut buf);
    let core_a = DMatrix::from_row_slice(N + 1, N + 1, &buf).map(|v| v as f64);
    let mut buf = vec![0.0f32; F * F];
    kfac.s().write_dense(&mut buf);
    let core_s = DMatrix::from_row_slice(F, F, &buf).map(|v| v as f64);
    assert!((&core_a * t as f64 - &a_t).amax() <= 1e-5 * a_t.amax());
    assert!((&core_s / t as f64 - &s_bar).amax() <= 1e-5 * s_bar.amax());

    // A gradient to precondition, unfactorized first: refused, untouched.
    let g0 = layer::<C, F, K, S, N>(&mut rng);
    let mut grad = g0;
    assert_eq!(
        kfac.precondition(&mut grad),
        Err(Error::UpdateNotPositiveDefinite)
    );
    assert_eq!(grad, g0);
    kfac.factorize(damping).unwrap();
    let q = kfac.precondition(&mut grad).unwrap();

    // π from the test's own factors (T in Ā here, in S in the core).
    let lambda = damping as f64;
    let pi = ((a_t.trace() / (N + 1) as f64) / (s_bar.trace() / F as f64)).sqrt();
    let ad = &a_t + DMatrix::identity(N + 1, N + 1) * (pi * lambda.sqrt());
    let sd = &s_bar + DMatrix::identity(F, F) * (lambda.sqrt() / pi);
    let kron = ad.kronecker(&sd);
    // vec(G): column-major over the F×(N+1) matrix [∇W | ∇b].
    let mut gv = DVector::<f64>::zeros(F * (N + 1));
    for j in 0..=N {
        for f in 0..F {
            gv[j * F + f] = if j < N { g0.w[f][j] } else { g0.b[f] } as f64;
        }
    }
    let v = kron.lu().solve(&gv).expect("the damped system is regular");
    let scale = v.amax();
    for j in 0..=N {
        for f in 0..F {
            let got = if j < N { grad.w[f][j] } else { grad.b[f] } as f64;
            let want = v[j * F + f];
            assert!(
                (got - want).abs() <= 1e-4 * scale,
                "N={N} F={F}: ({f},{j}) {got} vs {want} (scale {scale})"
            );
        }
    }
    let q_want = gv.dot(&v);
    assert!(
        (q as f64 - q_want).abs() <= 1e-4 * q_want,
        "q {q} vs {q_want}"
    );
}

#[test]
fn kfc_preconditioning_solves_the_damped_kronecker_system() {
    check_kfac::<1, 2, 2, 1, 4, 4, 4, 3, 3>(21, 5, 0.01);
    check_kfac::<2, 4, 3, 1, 18, 6, 6, 4, 4>(22, 8, 0.01);
    check_kfac::<3, 5, 3, 2, 27, 9, 8, 4, 3>(23, 3, 0.05); // fewer samples than N: damping
    check_kfac::<4, 8, 2, 2, 16, 8, 8, 4, 4>(24, 6, 0.001);
    check_kfac::<1, 3, 1, 1, 1, 3, 5, 3, 5>(25, 4, 0.01);
}

#[test]
fn factorize_refuses_non_finite_statistics() {
    let l = Conv2d::<1, 2, 2, 1, 4>::zeros();
    let mut kfac = ConvCurvature::<4, 2>::new();
    let x = [[[1.0, f32::NAN, 0.0], [0.0, 1.0, 2.0], [3.0, 0.0, 1.0]]];
    let g = [[[0.5f32; 2]; 2]; 2];
    l.observe(&mut kfac, &x, &g, 1.0);
    assert!(!kfac.is_finite());
    assert_eq!(kfac.factorize(0.01), Err(Error::UpdateNotPositiveDefinite));
    assert!(!kfac.is_factorized());
    let mut grad = Conv2d::<1, 2, 2, 1, 4>::zeros();
    assert!(kfac.precondition(&mut grad).is_err());
}

/// A checkpoint's numbers restored into a fresh curvature precondition the same, bit for bit
/// (the host's explicit inverses are rebuilt from the decomposition by `set_factorized`).
#[test]
fn restored_curvature_preconditions_the_same() {
    let mut rng = Rng(31);
    let l = layer::<2, 3, 2, 1, 8>(&mut rng);
    let mut kfac = ConvCurvature::<8, 3>::new();
    for _ in 0..4 {
        let x = image::<2, 4, 4>(&mut rng, 0.3);
        let g: [[[f32; 3]; 3]; 3] =
            core::array::from_fn(|_| core::array::from_fn(|_| core::array::from_fn(|_| rng.sym())));
        l.observe(&mut kfac, &x, &g, 0.25);
    }
    kfac.factorize(0.01).unwrap();
    let mut saved = Vec::new();
    kfac.visit_mut(|s| saved.extend_from_slice(s));
    let mut restored = ConvCurvature::<8, 3>::new();
    let mut at = 0;
    restored.visit_mut(|s| {
        s.copy_from_slice(&saved[at..at + s.len()]);
        at += s.len();
    });
    restored.set_factorized(true);
    let g0 = layer::<2, 3, 2, 1, 8>(&mut rng);
    let (mut a, mut b) = (g0, g0);
    let qa = kfac.precondition(&mut a).unwrap();
    let qb = restored.precondition(&mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(qa.to_bits(), qb.to_bits());
}

#[test]
fn memory_figures_count_weights_gradient_momentum_and_factors() {
    type L = Conv2d<4, 8, 2, 2, 16>;
    assert_eq!(L::PARAM_BYTES, 4 * 8 * (16 + 1));
    assert_eq!(
        L::TRAIN_BYTES,
        3 * L::PARAM_BYTES + ConvCurvature::<16, 8>::BYTES
    );
    // The factors hold at least Ā ((N+1)² numbers) and S (F² numbers).
    const { assert!(ConvCurvature::<16, 8>::BYTES >= 4 * (17 * 17 + 8 * 8)) };
    // 4×8×8 in, 8×4×4 out.
    assert_eq!(L::io_bytes(8, 8), 4 * (4 * 64 + 8 * 16));
}

/// `observe` (rank-4 chunks of positions) is one rank-one update per position in row-major
/// order, bit for bit: `Ā += (w/T) ā āᵀ`, `S += w g gᵀ` per position, built here from the
/// public factor updates and the layer's patches. `T = 7·3 = 21` leaves a remainder of 1.
#[test]
fn observe_is_one_update_per_position_in_order_bit_for_bit() {
    let mut rng = Rng(41);
    let l = layer::<2, 3, 3, 1, 18>(&mut rng);
    let mut kfac = ConvCurvature::<18, 3>::new();
    let (mut a, mut s) = (InputFactor::<18>::new(), OutputFactor::<3>::new());
    for round in 0..3 {
        kfac.scale(0.9);
        a.scale(0.9);
        s.scale(0.9);
        let x = image::<2, 9, 5>(&mut rng, 0.3);
        let g: [[[f32; 3]; 7]; 3] =
            core::array::from_fn(|_| core::array::from_fn(|_| core::array::from_fn(|_| rng.sym())));
        let w = 0.1 + round as f32;
        l.observe(&mut kfac, &x, &g, w);
        let mut u = [0.0f32; 18];
        for p in 0..7 {
            for q in 0..3 {
                Conv2d::<2, 3, 3, 1, 18>::patch(&x, p, q, &mut u);
                a.add(&u, w / 21.0);
                s.add(&core::array::from_fn(|f| g[f][p][q]), w);
            }
        }
    }
    let (mut got, mut want) = (vec![0.0f32; 19 * 19], vec![0.0f32; 19 * 19]);
    kfac.a().write_dense(&mut got);
    a.write_dense(&mut want);
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let (mut got, mut want) = (vec![0.0f32; 9], vec![0.0f32; 9]);
    kfac.s().write_dense(&mut got);
    s.write_dense(&mut want);
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

/// A conv front-end under the actor-critic, chained by hand (conv → tanh → flatten → trunk →
/// heads): the conv weights' gradient from `ActorCritic::backward_obs` and `Conv2d::accumulate`
/// against central differences of `L = Σ r ⊙ z + c·v` computed from forward passes only
/// (f32 nets, the loss summed in f64; h = 1e-2 and the tolerance of `core/tests/gradients.rs`).
#[test]
fn conv_under_the_actor_critic_backpropagates() {
    const HO: usize = conv_out(6, 3, 1); // 4
    const OBS: usize = 4 * HO * HO;
    type L = Conv2d<2, 4, 3, 1, 18>;
    type Net = ActorCritic<OBS, 8, 3, 2>;
    let mut rng = Rng(51);
    let conv = layer::<2, 4, 3, 1, 18>(&mut rng);
    let net = Net::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let x = image::<2, 6, 6>(&mut rng, 0.0);
    let r: [f32; 3] = core::array::from_fn(|_| rng.sym());
    let c = 0.7f32;

    // `(loss, conv output after tanh, forward pass)` at the given conv weights.
    let run = |conv: &L| {
        let mut y = [[[0.0f32; HO]; HO]; 4];
        conv.forward(&x, &mut y);
        let mut obs = [0.0f32; OBS];
        for (o, v) in obs.iter_mut().zip(y.as_flattened().as_flattened()) {
            *o = v.tanh();
        }
        let mut f = Forward::zeros();
        net.forward(&obs, &mut f);
        let l = r.iter().zip(&f.z).map(|(r, z)| (r * z) as f64).sum::<f64>() + (c * f.v) as f64;
        (l, obs, f)
    };
    let (_, obs, f) = run(&conv);
    let mut b = Backward::zeros();
    net.backward(&f, &r, c, &mut b);
    let mut d_obs = [0.0f32; OBS];
    net.backward_obs(&b, &mut d_obs);
    // Back through tanh (σ' = 1 − y²) and the flatten (the CHW order of the output).
    let mut g = [[[0.0f32; HO]; HO]; 4];
    for ((gv, d), y) in g
        .as_flattened_mut()
        .as_flattened_mut()
        .iter_mut()
        .zip(&d_obs)
        .zip(&obs)
    {
        *gv = d * (1.0 - y * y);
    }
    let mut grad = L::zeros();
    grad.accumulate(&g, &x);

    let h = 1e-2f32;
    let mut probe = conv;
    let mut largest = 0.0f64;
    for (si, k) in [(0usize, 18 * 4), (1, 4)]
        .into_iter()
        .flat_map(|(si, n)| (0..n).map(move |k| (si, k)))
    {
        let orig = probe.slices()[si][k];
        probe.slices_mut()[si][k] = orig + h;
        let lp = run(&probe).0;
        probe.slices_mut()[si][k] = orig - h;
        let lm = run(&probe).0;
        probe.slices_mut()[si][k] = orig;
        let fd = (lp - lm) / (2.0 * h as f64);
        let bp = grad.slices()[si][k] as f64;
        largest = largest.max(fd.abs());
        assert!(
            (fd - bp).abs() <= 2e-3 + 1e-2 * fd.abs(),
            "slice {si} index {k}: backprop {bp} vs finite difference {fd}"
        );
    }
    assert!(
        largest > 0.05,
        "a gradient this small tests nothing: {largest}"
    );
}

/// `orthogonal`: `W` (as `F×N`) has orthogonal rows of length `gain` (`F ≤ N`), `b = 0`.
#[test]
fn orthogonal_init_has_orthogonal_filters() {
    let mut rng = Rng(61);
    let l = Conv2d::<2, 6, 3, 1, 18>::orthogonal(&mut rng, 2.0);
    for f in 0..6 {
        for e in 0..6 {
            let d: f64 = (0..18).map(|n| l.w[f][n] as f64 * l.w[e][n] as f64).sum();
            let want = if f == e { 4.0 } else { 0.0 };
            assert!((d - want).abs() < 1e-5, "({f},{e}): {d}");
        }
    }
    assert_eq!(l.b, [0.0; 6]);
}

/// A block of samples (the samples as lanes of every pixel) is each sample alone, bit for bit,
/// forward and backward.
fn check_block<
    const C: usize,
    const F: usize,
    const K: usize,
    const S: usize,
    const N: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
) {
    const B: usize = 3;
    let mut rng = Rng(seed);
    let l = layer::<C, F, K, S, N>(&mut rng);
    let xs: [[[[f32; W]; H]; C]; B] = core::array::from_fn(|_| image(&mut rng, 0.1));
    let gs: [[[[f32; WO]; HO]; F]; B] = core::array::from_fn(|_| image(&mut rng, 0.0));
    let dx0: [[[[f32; W]; H]; C]; B] = core::array::from_fn(|_| image(&mut rng, 0.0));
    let lanes = |f: &dyn Fn(usize) -> f32| -> [f32; B] { core::array::from_fn(f) };
    let xb: [[[[f32; B]; W]; H]; C] = core::array::from_fn(|c| {
        core::array::from_fn(|r| core::array::from_fn(|q| lanes(&|b| xs[b][c][r][q])))
    });
    let gb: [[[[f32; B]; WO]; HO]; F] = core::array::from_fn(|f| {
        core::array::from_fn(|p| core::array::from_fn(|q| lanes(&|b| gs[b][f][p][q])))
    });
    let mut db: [[[[f32; B]; W]; H]; C] = core::array::from_fn(|c| {
        core::array::from_fn(|r| core::array::from_fn(|q| lanes(&|b| dx0[b][c][r][q])))
    });
    let mut yb = [[[[0.0f32; B]; WO]; HO]; F];
    l.forward_block(&xb, &mut yb);
    l.backward_input_block(&gb, &mut db);
    for b in 0..B {
        let mut y = [[[0.0f32; WO]; HO]; F];
        l.forward(&xs[b], &mut y);
        let mut dx = dx0[b];
        l.backward_input(&gs[b], &mut dx);
        let yl: Vec<u32> = yb
            .as_flattened()
            .as_flattened()
            .iter()
            .map(|v| v[b].to_bits())
            .collect();
        let ys: Vec<u32> = y
            .as_flattened()
            .as_flattened()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(yl, ys, "forward, lane {b}");
        let dl: Vec<u32> = db
            .as_flattened()
            .as_flattened()
            .iter()
            .map(|v| v[b].to_bits())
            .collect();
        let ds: Vec<u32> = dx
            .as_flattened()
            .as_flattened()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(dl, ds, "backward, lane {b}");
    }
}

#[test]
fn blocks_of_samples_are_each_sample_alone_bit_for_bit() {
    check_block::<3, 4, 3, 1, 27, 8, 8, 6, 6>(71);
    check_block::<2, 5, 3, 2, 18, 10, 9, 4, 4>(72);
    check_block::<1, 2, 2, 1, 4, 3, 5, 2, 4>(73);
}
