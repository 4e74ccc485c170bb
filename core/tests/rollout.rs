//! Returns and advantages against their definitions computed directly (not recursively):
//! `R_t = Σ_{k<n} γᵏ r_{t+k} + γⁿ V_boot` and `Â_t = Σ_k (γλ)ᵏ δ_{t+k}` within an episode.
#![allow(clippy::needless_range_loop)]

mod common;

use acktr_core::{Ending, Rollout, Step};
use common::Rng;

const N: usize = 12;

fn make(rng: &mut Rng, ends: &[(usize, Ending)]) -> Rollout<1, 1, 2, N> {
    let mut r = Rollout::new();
    for t in 0..N {
        let mut pair = [Step::new([0.0], [0.0], 0.0, 0.0, Ending::Continues); 2];
        for (e, s) in pair.iter_mut().enumerate() {
            s.reward = rng.sym();
            s.value = rng.sym();
            if e == 0 {
                if let Some((_, end)) = ends.iter().find(|(u, _)| *u == t) {
                    s.end = *end;
                }
            }
        }
        r.push(pair).unwrap();
    }
    r
}

/// Direct sums over the segment that starts at `t` and ends at the episode end or the rollout end.
fn direct(
    r: &Rollout<1, 1, 2, N>,
    e: usize,
    last: f32,
    gamma: f64,
    lambda: f64,
) -> Vec<(f64, f64)> {
    let s = r.steps();
    (0..N)
        .map(|t| {
            let mut adv = 0.0;
            let mut ret = 0.0;
            let mut k = t;
            loop {
                let st = &s[k][e];
                let (next_v, stop) = match st.end {
                    Ending::Continues if k + 1 < N => (s[k + 1][e].value as f64, false),
                    Ending::Continues => (last as f64, true),
                    Ending::Terminated => (0.0, true),
                    Ending::Truncated { bootstrap } => (bootstrap as f64, true),
                };
                let delta = st.reward as f64 + gamma * next_v - st.value as f64;
                adv += (gamma * lambda).powi((k - t) as i32) * delta;
                ret += gamma.powi((k - t) as i32) * st.reward as f64;
                if stop {
                    ret += gamma.powi((k + 1 - t) as i32) * next_v;
                    break;
                }
                k += 1;
            }
            (adv, ret)
        })
        .collect()
}

#[test]
fn k_step_returns_and_gae_match_direct_sums() {
    let mut rng = Rng(3);
    let ends = [
        (3, Ending::Terminated),
        (7, Ending::Truncated { bootstrap: 0.75 }),
    ];
    for &(gamma, lambda) in &[(0.99f32, 1.0f32), (0.9, 0.95), (0.5, 0.0)] {
        let mut r = make(&mut rng, &ends);
        let last = [0.4, -0.3];
        r.compute_returns(&last, gamma, lambda);
        for e in 0..2 {
            let want = direct(&r, e, last[e], gamma as f64, lambda as f64);
            for (t, (adv, ret)) in want.iter().enumerate() {
                let s = &r.steps()[t][e];
                assert!((s.advantage as f64 - adv).abs() < 1e-5, "adv t={t} e={e}");
                if lambda == 1.0 {
                    // λ = 1: the k-step bootstrapped return.
                    assert!((s.ret as f64 - ret).abs() < 1e-5, "ret t={t} e={e}");
                }
                assert!((s.ret - s.advantage - s.value).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn termination_does_not_bootstrap_and_truncation_does() {
    let mut r = Rollout::<1, 1, 1, 2>::new();
    r.push([Step::new([0.0], [0.0], 1.0, 0.5, Ending::Terminated)])
        .unwrap();
    r.push([Step::new(
        [0.0],
        [0.0],
        1.0,
        0.5,
        Ending::Truncated { bootstrap: 10.0 },
    )])
    .unwrap();
    r.compute_returns(&[100.0], 0.5, 1.0);
    assert_eq!(r.steps()[0][0].ret, 1.0); // 1 + 0.5·0
    assert_eq!(r.steps()[1][0].ret, 6.0); // 1 + 0.5·10, not 0.5·100
    assert!(r
        .push([Step::new([0.0], [0.0], 0.0, 0.0, Ending::Continues)])
        .is_err());
}
