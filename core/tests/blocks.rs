//! The block size is a speed knob only: `Learner::update_steps_in_blocks::<B>` gives the same
//! weights, bit for bit, for every `B` (the kernels sum every sample-lane in the same order),
//! with the statistics from every sample or from every third.

use acktr_core::env::Pcg64;
use acktr_core::{
    standard_normal, Activation, ActorCritic, Config, Ending, HeadKind, Learner, Step,
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
