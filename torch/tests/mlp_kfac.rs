//! The tch learner's MLP factors against sums written out by hand, and its finiteness check.

use acktr_core::{Activation, HeadKind};
use acktr_torch::kfac::TorchKfac;
use acktr_torch::net::{Arch, TorchNet};
use tch::{Device, Kind, Tensor};

fn vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn mlp() -> TorchNet {
    let arch = Arch::Mlp {
        hidden: vec![8, 8],
        separate: false,
        activation: Activation::Tanh,
    };
    TorchNet::new(arch, &[3], HeadKind::Categorical, 2, Device::Cpu).unwrap()
}

/// `Ā = mean over samples of [x; 1][x; 1]ᵀ` and `S = mean of g gᵀ` of the first layer, from
/// explicit loops, against `batch_stats` (which builds `[X | 1]` for inputs this small).
#[test]
fn mlp_factors_match_explicit_sums() {
    tch::manual_seed(4);
    let net = mlp();
    let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
    let fw = net.forward(&x);
    let g: Vec<Tensor> = fw.pre.iter().map(|p| p.randn_like()).collect();
    let mut k = TorchKfac::new(&net);
    k.batch_stats(&net, &fw.inputs, &g);
    let xv = vec(&fw.inputs[0]);
    let mut want = [[0.0f64; 4]; 4];
    for row in xv.chunks(3) {
        let xa = [row[0] as f64, row[1] as f64, row[2] as f64, 1.0];
        for r in 0..4 {
            for q in 0..4 {
                want[r][q] += xa[r] * xa[q] / 5.0;
            }
        }
    }
    let got = vec(k.batch_a(0));
    for (k, w) in want.as_flattened().iter().enumerate() {
        assert!(
            (got[k] as f64 - w).abs() < 1e-5,
            "Ā[{k}]: {} vs {w}",
            got[k]
        );
    }
    let gv = vec(&g[0]);
    let got = vec(k.batch_s(0));
    for r in 0..8 {
        for q in 0..8 {
            let w: f64 = (0..5)
                .map(|b| gv[b * 8 + r] as f64 * gv[b * 8 + q] as f64 / 5.0)
                .sum();
            assert!((got[r * 8 + q] as f64 - w).abs() < 1e-5, "S[{r},{q}]");
        }
    }
}

/// A NaN or an infinity in the inputs or the gradients makes the statistics non-finite, and the
/// check (which reads the diagonals) says so; finite ones pass.
#[test]
fn finiteness_check_catches_nan_and_inf() {
    for bad in [None, Some(f64::NAN), Some(f64::INFINITY)] {
        for in_input in [true, false] {
            tch::manual_seed(5);
            let net = mlp();
            let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
            if let (Some(v), true) = (bad, in_input) {
                let _ = x.get(2).get(1).fill_(v);
            }
            let fw = net.forward(&x);
            let g: Vec<Tensor> = fw.pre.iter().map(|p| p.randn_like()).collect();
            if let (Some(v), false) = (bad, in_input) {
                let _ = g[1].get(0).get(3).fill_(v);
            }
            let mut k = TorchKfac::new(&net);
            k.batch_stats(&net, &fw.inputs, &g);
            k.accumulate(0.5);
            assert_eq!(k.is_finite(), bad.is_none(), "{bad:?} in input: {in_input}");
        }
    }
}
