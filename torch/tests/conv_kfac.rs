//! KFC factors of conv layers against factors built by hand: patches extracted with explicit
//! loops (channel-major `(c, di, dj)` order, the layer's stride, a bias 1), `Ā` averaged over
//! samples and output positions, `S` summed over positions and averaged over samples.

use acktr_core::HeadKind;
use acktr_torch::kfac::TorchKfac;
use acktr_torch::net::{Arch, TorchNet};
use tch::{Device, Kind, Tensor};

fn vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// Ā of a conv layer from explicit patches of `x` (`[B, C, H, W]`, kernel `k`, `stride`).
fn explicit_a(x: &Tensor, k: usize, stride: usize) -> (Vec<f64>, usize) {
    let s = x.size();
    let (b, c, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize);
    let xv = vec(x);
    let at = |bi: usize, ci: usize, i: usize, j: usize| xv[((bi * c + ci) * h + i) * w + j] as f64;
    let (oh, ow) = ((h - k) / stride + 1, (w - k) / stride + 1);
    let d = c * k * k + 1;
    let mut a = vec![0.0f64; d * d];
    for bi in 0..b {
        for pi in 0..oh {
            for pj in 0..ow {
                let mut patch = Vec::with_capacity(d);
                for ci in 0..c {
                    for di in 0..k {
                        for dj in 0..k {
                            patch.push(at(bi, ci, pi * stride + di, pj * stride + dj));
                        }
                    }
                }
                patch.push(1.0);
                for r in 0..d {
                    for q in 0..d {
                        a[r * d + q] += patch[r] * patch[q];
                    }
                }
            }
        }
    }
    let n = (b * oh * ow) as f64;
    a.iter_mut().for_each(|v| *v /= n);
    (a, d)
}

fn check_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    assert!(
        err <= 1e-5 * scale,
        "{what}: max abs err {err}, scale {scale}"
    );
}

fn run(arch: Arch, obs: [usize; 3], k: usize, stride: usize, batch: i64) {
    tch::manual_seed(3);
    let net = TorchNet::new(arch, &obs, HeadKind::Categorical, 4, Device::Cpu).unwrap();
    let x = Tensor::rand(
        [batch, obs[0] as i64, obs[1] as i64, obs[2] as i64],
        (Kind::Float, Device::Cpu),
    ) * 255.0;
    let fw = net.forward(&x);
    // Known per-sample output gradients for every layer.
    let g: Vec<Tensor> = fw.pre.iter().map(|p| p.randn_like()).collect();
    let mut kfac = TorchKfac::new(&net);
    kfac.batch_stats(&net, &fw.inputs, &g);

    // First conv layer: Ā from explicit patches of the (scaled) input.
    let (want, d) = explicit_a(&fw.inputs[0], k, stride);
    let got = vec(kfac.batch_a(0));
    assert_eq!(got.len(), d * d);
    check_close("conv Ā", &got, &want);
    // The bias row (patch means, then exactly 1) on its own scale, far below the XᵀX block's.
    check_close("conv Ā bias row", &got[(d - 1) * d..], &want[(d - 1) * d..]);
    assert_eq!(got[d * d - 1], 1.0, "conv Ā corner");

    // Its S: Σ over positions of g gᵀ, mean over samples.
    let g0 = &g[0]; // [B, O, oh, ow]
    let sz = g0.size();
    let (b, o, oh, ow) = (
        sz[0] as usize,
        sz[1] as usize,
        sz[2] as usize,
        sz[3] as usize,
    );
    let gv = vec(g0);
    let mut want_s = vec![0.0f64; o * o];
    for bi in 0..b {
        for p in 0..oh * ow {
            for r in 0..o {
                for q in 0..o {
                    want_s[r * o + q] += gv[(bi * o + r) * oh * ow + p] as f64
                        * gv[(bi * o + q) * oh * ow + p] as f64;
                }
            }
        }
    }
    want_s.iter_mut().for_each(|v| *v /= b as f64);
    check_close("conv S", &vec(kfac.batch_s(0)), &want_s);

    // The fully connected layer after the convs reads the flattened activations.
    let fc = net.trunks[0].end - 1;
    let grp = net.layers[fc].group;
    let inp = vec(&fw.inputs[grp].reshape([b as i64, -1]));
    let n_in = inp.len() / b;
    let mut want_fc = vec![0.0f64; (n_in + 1) * (n_in + 1)];
    for bi in 0..b {
        let mut row: Vec<f64> = inp[bi * n_in..(bi + 1) * n_in]
            .iter()
            .map(|&v| v as f64)
            .collect();
        row.push(1.0);
        for r in 0..=n_in {
            for q in 0..=n_in {
                want_fc[r * (n_in + 1) + q] += row[r] * row[q] / b as f64;
            }
        }
    }
    check_close("fc Ā", &vec(kfac.batch_a(grp)), &want_fc);
}

#[test]
fn minatar_conv_factors_match_explicit_patches() {
    run(Arch::MinAtar, [4, 10, 10], 3, 1, 3);
}

/// 32 samples: the conv layer's 2,048 × 36 patch matrix is past the size where `Ā` is built
/// block by block instead of from `[X | 1]`.
#[test]
fn large_patch_matrices_build_the_same_factor_by_blocks() {
    run(Arch::MinAtar, [4, 10, 10], 3, 1, 32);
}

#[test]
fn nature_conv_factors_match_explicit_patches_with_stride() {
    // Smallest input the Nature CNN accepts: 8×8/4 → 4×4/2 → 3×3/1 needs 36×36.
    run(Arch::Nature, [4, 36, 36], 8, 4, 3);
}
