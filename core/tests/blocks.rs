//! The block size is a speed knob only: `Learner::update_steps_in_blocks::<B>` gives the same
//! weights, bit for bit, for every `B` (the kernels sum every sample-lane in the same order),
//! with the statistics from every sample or from every third.

use acktr_core::env::Pcg64;
use acktr_core::{
    standard_normal, Activation, ActorCritic, Config, Ending, Error, ForwardBlock, HeadKind,
    Learner, Step,
};

fn steps<const OBS: usize, const P: usize>(rng: &mut Pcg64, n: usize) -> Vec<Step<OBS, P>> {
    (0..n)
        .map(|i| {
            let obs = core::array::from_fn(|_| standard_normal(rng));
            let mut a = [0.0; P];
            a[i % P] = 1.0;
            let mut s = Step::new(obs, a, 0.0, 0.0, Ending::Continues);
            s.advantage = standard_normal(rng);
            s.ret = standard_normal(rng);
            s
        })
        .collect()
}

fn weights<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    head: HeadKind,
    stat_stride: u32,
    run: impl Fn(&mut Learner<OBS, H, P, T>, &[Step<OBS, P>], &mut Pcg64),
) -> Vec<u32> {
    let mut rng = Pcg64::from_seed(11);
    let net = ActorCritic::<OBS, H, P, T>::new(Activation::Tanh, head, &mut rng);
    let cfg = Config {
        cold_iters: 1,
        inverse_every: 2,
        stat_stride,
        ..Config::DEFAULT
    };
    let mut learner = Learner::new(cfg, net).unwrap();
    for _ in 0..4 {
        let batch = steps::<OBS, P>(&mut rng, 37); // not a multiple of any block below
        run(&mut learner, &batch, &mut rng);
    }
    let mut bits = Vec::new();
    learner.visit_state_mut(|s| bits.extend(s.iter().map(|v| v.to_bits())));
    bits
}

/// The forward passes of `steps`, `B` at a time, as a rollout would have stored them.
fn forwards<const OBS: usize, const H: usize, const P: usize, const T: usize, const B: usize>(
    net: &ActorCritic<OBS, H, P, T>,
    steps: &[Step<OBS, P>],
) -> Vec<ForwardBlock<OBS, H, P, T, B>> {
    steps
        .chunks(B)
        .map(|c| {
            let mut f = ForwardBlock::zeros();
            for (b, s) in c.iter().enumerate() {
                f.set_obs(b, &s.obs);
            }
            net.forward_block(&mut f);
            f
        })
        .collect()
}

fn check<const OBS: usize, const H: usize, const P: usize, const T: usize>(head: HeadKind) {
    for stride in [1, 3] {
        let one = weights::<OBS, H, P, T>(head, stride, |l, s, r| {
            l.update_steps_in_blocks::<1>(s, r).unwrap();
        });
        let by4 = weights::<OBS, H, P, T>(head, stride, |l, s, r| {
            l.update_steps(s, r).unwrap();
        });
        let by7 = weights::<OBS, H, P, T>(head, stride, |l, s, r| {
            l.update_steps_in_blocks::<7>(s, r).unwrap();
        });
        let by16 = weights::<OBS, H, P, T>(head, stride, |l, s, r| {
            l.update_steps_in_blocks::<16>(s, r).unwrap();
        });
        let stored7 = weights::<OBS, H, P, T>(head, stride, |l, s, r| {
            let f = forwards::<OBS, H, P, T, 7>(&l.net, s);
            l.update_steps_with_forwards::<7>(s, &f, r).unwrap();
        });
        let stored16 = weights::<OBS, H, P, T>(head, stride, |l, s, r| {
            let f = forwards::<OBS, H, P, T, 16>(&l.net, s);
            l.update_steps_with_forwards::<16>(s, &f, r).unwrap();
        });
        assert_eq!(one, stored7, "{head:?} T={T} stride {stride}: stored, B=7");
        assert_eq!(
            one, stored16,
            "{head:?} T={T} stride {stride}: stored, B=16"
        );
        assert_eq!(one, by4, "{head:?} T={T} stride {stride}: B=4");
        assert_eq!(one, by7, "{head:?} T={T} stride {stride}: B=7");
        assert_eq!(one, by16, "{head:?} T={T} stride {stride}: B=16");
    }
}

#[test]
fn every_block_size_gives_the_same_weights() {
    check::<4, 8, 2, 1>(HeadKind::Categorical);
    check::<3, 12, 1, 2>(HeadKind::Gaussian);
    check::<5, 16, 3, 2>(HeadKind::Categorical);
}

/// A stride changes the statistics (fewer samples), so it must change the weights: the test
/// above would pass vacuously if the stride were ignored.
#[test]
fn a_stride_changes_the_statistics() {
    let all = weights::<4, 8, 2, 1>(HeadKind::Categorical, 1, |l, s, r| {
        l.update_steps(s, r).unwrap();
    });
    let third = weights::<4, 8, 2, 1>(HeadKind::Categorical, 3, |l, s, r| {
        l.update_steps(s, r).unwrap();
    });
    assert_ne!(all, third);
}

/// Stored forward passes that are not the steps' (a block short, or another observation) are
/// refused before anything changes.
#[test]
fn mismatched_forwards_are_refused() {
    let mut rng = Pcg64::from_seed(5);
    let net = ActorCritic::<4, 8, 2, 1>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let mut learner = Learner::new(Config::DEFAULT, net).unwrap();
    let batch = steps::<4, 2>(&mut rng, 20);
    let before = learner.clone();
    let mut f = forwards::<4, 8, 2, 1, 8>(&learner.net, &batch);
    let short = &f[..2];
    assert_eq!(
        learner
            .update_steps_with_forwards::<8>(&batch, short, &mut rng)
            .unwrap_err(),
        Error::UpdateForwardMismatch
    );
    f[2].x[1][3] += 1.0; // step 19's second input
    assert_eq!(
        learner
            .update_steps_with_forwards::<8>(&batch, &f, &mut rng)
            .unwrap_err(),
        Error::UpdateForwardMismatch
    );
    let mut a = Vec::new();
    let mut b = Vec::new();
    learner.visit_state_mut(|s| a.extend_from_slice(s));
    before.clone().visit_state_mut(|s| b.extend_from_slice(s));
    assert_eq!(a, b);
    assert_eq!(learner.updates(), 0);
}

/// A learner restored from its state (`visit_state_mut`, `set_updates`), as a checkpoint does,
/// continues bit for bit like the one it was saved from: between two factorizations, so the
/// restored one preconditions with what it rebuilds from the saved decompositions (hosts form
/// explicit inverses from them).
#[test]
fn a_restored_learner_continues_bit_for_bit() {
    let mut rng = Pcg64::from_seed(5);
    let net = ActorCritic::<3, 16, 2, 2>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let cfg = Config {
        cold_iters: 1,
        inverse_every: 4,
        ..Config::DEFAULT
    };
    let mut a = Learner::new(cfg, net).unwrap();
    for _ in 0..3 {
        let batch = steps::<3, 2>(&mut rng, 24);
        a.update_steps(&batch, &mut rng).unwrap();
    }
    assert!(a.curvature().is_factorized());
    let mut saved = Vec::new();
    a.clone().visit_state_mut(|s| saved.extend_from_slice(s));
    let fresh = ActorCritic::<3, 16, 2, 2>::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    let mut b = Learner::new(cfg, fresh).unwrap();
    let mut pos = 0;
    b.visit_state_mut(|s| {
        s.copy_from_slice(&saved[pos..pos + s.len()]);
        pos += s.len();
    });
    b.set_updates(a.updates(), a.curvature().is_factorized());
    for _ in 0..2 {
        let batch = steps::<3, 2>(&mut rng, 24);
        let mut r = rng.clone();
        a.update_steps(&batch, &mut rng).unwrap();
        b.update_steps(&batch, &mut r).unwrap();
    }
    let (mut wa, mut wb) = (Vec::new(), Vec::new());
    a.visit_state_mut(|s| wa.extend(s.iter().map(|v| v.to_bits())));
    b.visit_state_mut(|s| wb.extend(s.iter().map(|v| v.to_bits())));
    assert_eq!(wa, wb);
}
