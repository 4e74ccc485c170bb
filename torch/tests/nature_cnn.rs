//! Conv nets under ACKTR: the Nature CNN (4×84×84 frames) takes natural-gradient updates on
//! random frames with finite weights and a moving loss, and a conv layer's preconditioned
//! gradient `V = S_d⁻¹ G Ā_d⁻¹` solves the explicit damped Kronecker system
//! `(S_d ⊗ Ā_d) vec(V) = vec(G)` (row-major `vec`; `Ā_d`, `S_d` with the core's damping
//! split), solved in f64 by LU from the 592 × 592 Kronecker product itself.

mod common;

use acktr_core::{Config, HeadKind};
use acktr_host::agent::{Agent, HostRollout};
use acktr_torch::agent::TorchAgent;
use acktr_torch::kfac::{InverseMethod, TorchKfac};
use acktr_torch::net::{Arch, TorchNet};
use tch::{Device, Kind, Tensor};

const ACTIONS: usize = 4;

fn frames(batch: usize, seed: usize) -> Vec<f32> {
    // Deterministic pseudo-random pixels in [0, 255].
    (0..batch * 4 * 84 * 84)
        .map(|i| ((i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97)) >> 7) as f32 % 256.0)
        .collect()
}

fn rollout(batch: usize) -> HostRollout {
    common::rollout(frames(batch, 1), 4 * 84 * 84, ACTIONS, 3, 0)
}

#[test]
fn nature_cnn_takes_natural_gradient_steps() {
    let config = Config {
        cold_iters: 0,
        inverse_every: 1,
        ..Config::default()
    };
    let mut agent = TorchAgent::new(
        config,
        Arch::Nature,
        &[4, 84, 84],
        HeadKind::Categorical,
        ACTIONS,
        Device::Cpu,
        3,
    )
    .unwrap();
    let batch = rollout(16);
    let w0 = common::weights(&agent);
    let mut losses = Vec::new();
    for _ in 0..3 {
        let s = agent.update(&batch).unwrap();
        assert!(s.natural, "a natural-gradient step (cold_iters 0)");
        assert!(s.step_size > 0.0 && s.step_size.is_finite(), "{s:?}");
        losses.push(s.policy_loss + s.value_loss);
    }
    let w = common::weights(&agent);
    assert!(w.iter().all(|v| v.is_finite()), "non-finite weights");
    let moved = w.iter().zip(&w0).filter(|(a, b)| a != b).count();
    // About half move (802k–850k of 1.69M seen): ReLU units dead on these random frames pass
    // no gradient to their weights, and the count varies with rounding. A quarter is a floor
    // that only a step touching few layers would miss.
    assert!(moved > w.len() / 4, "{moved} of {} weights moved", w.len());
    // The same batch each time: the loss the update sees changes as the weights do.
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[0] != losses[2], "{losses:?}");
}

#[test]
fn conv_natural_gradient_solves_the_explicit_kronecker_system() {
    for method in [InverseMethod::Cholesky, InverseMethod::Eigh] {
        tch::manual_seed(21);
        let net = TorchNet::new(
            Arch::MinAtar,
            &[4, 10, 10],
            HeadKind::Categorical,
            3,
            Device::Cpu,
        )
        .unwrap();
        let x = Tensor::rand([8, 4, 10, 10], (Kind::Float, Device::Cpu)).round();
        let fw = net.forward(&x);
        let g: Vec<Tensor> = fw.pre.iter().map(|p| p.randn_like()).collect();
        let mut k = TorchKfac::new(&net);
        k.batch_stats(&net, &fw.inputs, &g);
        k.accumulate(0.0);
        k.set_inverse_method(method);
        let damping = 0.01;
        k.factorize(&net, damping).unwrap();
        let grads: Vec<Tensor> = net
            .params()
            .iter()
            .map(|p| p.detach().randn_like())
            .collect();
        let mut v = grads.iter().map(|t| t.copy()).collect::<Vec<_>>();
        k.precondition(&net, &mut v).unwrap();

        // Layer 0 is the conv layer, alone in input group 0: W [16, 4, 3, 3], b [16].
        let f64s = |t: &Tensor| t.detach().to_kind(Kind::Double);
        let a = f64s(k.a(0).unwrap());
        let s = f64s(k.s(0).unwrap());
        let (na, ns) = (a.size()[0], s.size()[0]);
        assert_eq!((na, ns), (4 * 9 + 1, 16));
        let tr = |m: &Tensor| f64::try_from(m.trace()).unwrap() as f32;
        let (da, ds) = acktr_core::damping_split(tr(&a), na as usize, tr(&s), ns as usize, damping);
        let eye = |n: i64| Tensor::eye(n, (Kind::Double, Device::Cpu));
        let a_d = &a + eye(na) * da as f64;
        let s_d = &s + eye(ns) * ds as f64;
        let gm = Tensor::cat(
            &[
                f64s(&grads[0]).reshape([ns, -1]),
                f64s(&grads[1]).unsqueeze(1),
            ],
            1,
        );
        let kron = s_d.kron(&a_d);
        let want = Tensor::linalg_solve(&kron, &gm.reshape([-1]), true).reshape([ns, na]);
        let got = Tensor::cat(
            &[f64s(&v[0]).reshape([ns, -1]), f64s(&v[1]).unsqueeze(1)],
            1,
        );
        let err =
            f64::try_from((&got - &want).norm()).unwrap() / f64::try_from(want.norm()).unwrap();
        assert!(err <= 1e-4, "{method:?}: ‖V − V_kron‖/‖V_kron‖ = {err}");
    }
}
