//! Named networks: one name per net that the host, the firmware and the tests share, so a
//! change of shape happens in one place.

use crate::{ActorCritic, ConvEncoder, Learner};

/// The small MinAtar encoder: a 10×10×4 observation, channel-last (MinAtar's HWC,
/// `IN` = 400 = [`BREAKOUT_OBS`](crate::env::BREAKOUT_OBS)), 4 filters 4×4 at stride 2
/// (`N` = 4·4·4 = 64 patch inputs, a 4×4 output that reads every cell), ReLU, flattened
/// channel-major to 64 features. 4·65 = 260 parameters.
pub type MinAtarSmallEncoder = ConvEncoder<4, 4, 4, 2, 64, 10, 10, 4, 4, true>;

/// The small MinAtar actor-critic: [`MinAtarSmallEncoder`] → one shared 32-32 trunk (ReLU) →
/// a categorical head over 3 actions (Breakout's) and a value; 3,531 parameters
/// ([`MINATAR_SMALL_PARAMS`]). Built with `Activation::Relu` and `HeadKind::Categorical`.
pub type MinAtarSmall = ActorCritic<64, 32, 3, 1, 400, MinAtarSmallEncoder>;

/// The [`Learner`] of [`MinAtarSmall`]: the net, its gradient, momentum and K-FAC factors,
/// all inline; [`MINATAR_SMALL_LEARNER_BYTES`] bytes.
pub type MinAtarSmallLearner = Learner<64, 32, 3, 1, 400, MinAtarSmallEncoder>;

/// Trainable scalars of [`MinAtarSmall`]: conv 4·(64+1), trunk 32·(64+1) + 32·(32+1), policy
/// head 3·(32+1), value head 32+1, log-std 3 (stored, unused by a categorical head).
pub const MINATAR_SMALL_PARAMS: usize = 4 * 65 + 32 * 65 + 32 * 33 + 3 * 33 + 33 + 3;

/// `size_of::<MinAtarSmallLearner>()`: the RAM a firmware needs for its whole training
/// state (the rollout and stack come on top). 144,400 bytes (141 KiB) on x86-64; checked
/// below 144 KiB on every target at compile time.
pub const MINATAR_SMALL_LEARNER_BYTES: usize = core::mem::size_of::<MinAtarSmallLearner>();

const _: () = assert!(MinAtarSmall::num_params() == MINATAR_SMALL_PARAMS);
const _: () = assert!(MINATAR_SMALL_LEARNER_BYTES <= 144 * 1024);

#[cfg(test)]
mod tests {
    #[test]
    fn shapes() {
        #[cfg(feature = "envs")]
        assert_eq!(crate::env::BREAKOUT_OBS, 400);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(super::MINATAR_SMALL_LEARNER_BYTES, 144_400);
    }
}
