//! The core's one error type. Variant names start with the phase that failed.

/// Everything that can go wrong in `acktr-core`; the core never panics on data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) value is out of range; names the field.
    ConfigInvalid(&'static str),
    /// `Rollout::push` on a full rollout.
    RolloutFull,
    /// The environment rejected a step.
    Env(crate::env::EnvError),
    /// The policy's action space does not match the environment's.
    EnvActionSpaceMismatch,
    /// `update` on a rollout with no samples.
    UpdateEmptyRollout,
    /// The rollout holds NaN or ±∞ (observations, rewards, values, returns); nothing changed.
    UpdateNonFiniteInput,
    /// The rollout holds a finite number out of range (`Step::in_range`); nothing changed.
    UpdateInputOutOfRange,
    /// The gradient or the trust-region quadratic form is not finite; weights untouched.
    UpdateNonFiniteGradient,
    /// The curvature statistics overflowed; they were reset, weights untouched.
    UpdateNonFiniteCurvature,
    /// A damped factor was not numerically positive definite; weights untouched.
    UpdateNotPositiveDefinite,
    /// Stored forward passes do not match the steps (count or inputs); weights untouched.
    UpdateForwardMismatch,
    /// A collective operation across the processes of a data-parallel update failed
    /// ([`crate::Collective`]); the learner's state is unspecified (restore a copy).
    UpdateCollectiveFailed,
    /// The parameters handed to the writer do not match the architecture it was given.
    SerializeShapeMismatch,
    /// The output buffer is too small for the serialized policy.
    SerializeBufferFull,
    /// The network or normaliser holds NaN or ±∞, or a normaliser std is not `> 0`: the policy
    /// file would not load, so none is written.
    SerializeNonFinite,
    /// The input does not start with the policy-file magic.
    DeserializeBadMagic,
    /// The file's format version is not supported by this build.
    DeserializeUnsupportedVersion(u16),
    /// The input ends before the file does.
    DeserializeTruncated,
    /// The CRC-32 over the file does not match.
    DeserializeBadChecksum,
    /// The file is not a valid encoding (bad tag, bad length, invalid value).
    DeserializeMalformed,
    /// The file describes a different network than the one being loaded into.
    DeserializeShapeMismatch {
        /// Which part differs (e.g. `"trunk 0 layer 1 inputs"`, `"head kind"`).
        what: &'static str,
        /// What the compiled network has.
        expected: u32,
        /// What the file has.
        found: u32,
    },
    /// The file holds NaN or ±∞ weights.
    DeserializeNonFinite,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::ConfigInvalid(field) => write!(f, "invalid configuration value: {field}"),
            Error::RolloutFull => f.write_str("rollout is full"),
            Error::Env(e) => write!(f, "environment: {e}"),
            Error::EnvActionSpaceMismatch => {
                f.write_str("the policy's action space does not match the environment's")
            }
            Error::UpdateEmptyRollout => f.write_str("update on an empty rollout"),
            Error::UpdateNonFiniteInput => f.write_str("rollout contains NaN or infinite values"),
            Error::UpdateInputOutOfRange => f.write_str(
                "rollout contains an observation beyond ±1e6 or a reward, value or return beyond ±1e9",
            ),
            Error::UpdateNonFiniteGradient => {
                f.write_str("gradient is NaN or infinite; weights left unchanged")
            }
            Error::UpdateNonFiniteCurvature => {
                f.write_str("curvature statistics overflowed and were reset; weights left unchanged")
            }
            Error::UpdateNotPositiveDefinite => {
                f.write_str("damped curvature factor is not positive definite; weights left unchanged")
            }
            Error::UpdateForwardMismatch => f.write_str(
                "stored forward passes do not match the rollout's steps; weights left unchanged",
            ),
            Error::UpdateCollectiveFailed => f.write_str(
                "a collective operation across the data-parallel processes failed",
            ),
            Error::SerializeShapeMismatch => {
                f.write_str("policy parameters do not match the architecture being written")
            }
            Error::SerializeBufferFull => f.write_str("buffer too small for the policy file"),
            Error::SerializeNonFinite => {
                f.write_str("policy has NaN or infinite values (or a std <= 0); not written")
            }
            Error::DeserializeBadMagic => f.write_str("not an acktr policy file (bad magic)"),
            Error::DeserializeUnsupportedVersion(v) => {
                write!(f, "unsupported policy file version {v}")
            }
            Error::DeserializeTruncated => f.write_str("policy file is truncated"),
            Error::DeserializeBadChecksum => f.write_str("policy file checksum mismatch (corrupt)"),
            Error::DeserializeMalformed => f.write_str("policy file is malformed"),
            Error::DeserializeShapeMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "policy file does not fit this network: {what} is {found} in the file, {expected} here"
            ),
            Error::DeserializeNonFinite => f.write_str("policy file contains NaN or infinite weights"),
        }
    }
}

impl core::error::Error for Error {}
