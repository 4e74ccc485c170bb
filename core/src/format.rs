//! The policy file: one self-checking byte string holding an [`ActorCritic`] and an optional
//! observation normaliser, written on a host and loaded into a fixed-size network anywhere.
//! `docs/format.md` is the full specification; in short:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 4     | magic `ACKP`                                                 |
//! | 2     | version, `u16` little-endian (`1`: MLP, `2`: conv encoder)   |
//! | 4     | body length `n`, `u32` little-endian                         |
//! | `n`   | body: the postcard header, then the payload of `f32` LE       |
//! | 4     | CRC-32C (Castagnoli) little-endian of every byte before it   |
//!
//! Reading checks, in this order: magic, version, length, CRC, header, payload length,
//! finiteness, then (for [`read_policy`]) the compiled shape. An MLP (the [`Identity`](crate::Identity)
//! encoder) is written as version 1, a net with a [`ConvEncoder`](crate::ConvEncoder) as
//! version 2, whose header adds the convolution's [`ConvSpec`] after `obs_dim` and whose payload
//! starts with its weights and biases. Nothing the file says about
//! itself is trusted before its CRC has matched. No allocation: writing fills the caller's
//! buffer, reading decodes each `f32` straight into the target arrays.

use heapless::Vec as HVec;

use crate::dense::Activation;
use crate::encoder::Encoder;
use crate::error::Error;
use crate::head::HeadKind;
use crate::policy::ActorCritic;

/// First four bytes of every policy file.
pub const MAGIC: [u8; 4] = *b"ACKP";

/// The newest format version this build writes and reads. It reads every version from 1, and
/// writes the lowest that can express the net: 1 for an MLP, 2 for a net with a conv encoder.
pub const VERSION: u16 = 2;

/// The version of a file without an encoder (an MLP).
const VERSION_MLP: u16 = 1;

/// Most hidden layers a version-1 file may describe.
pub const MAX_HIDDEN_LAYERS: usize = 8;

/// Magic, version and body length.
const PREFIX_LEN: usize = 10;
/// The CRC-32C trailer.
const CRC_LEN: usize = 4;
/// Longest valid header: obs (5) + layer count (1) + sizes (5 each) + trunks (1) +
/// activation (1) + head (1) + outputs (5) + normaliser flag (1).
/// Version 2 adds the encoder: kind (1) + six sizes (5 each) + layout (1).
const MAX_HEADER_LEN: usize = 5 + 1 + 5 * MAX_HIDDEN_LAYERS + 1 + 1 + 1 + 5 + 1 + 1 + 6 * 5 + 1;

/// Encoder kind code of a convolution (version 2's only kind; `0`, no encoder, is version 1).
const ENCODER_CONV: u32 = 1;

/// A version-2 file's encoder: one valid-padding convolution of `filters` kernels
/// `kernel×kernel` over `channels` channels at stride `stride`, on a `height×width`
/// observation read channel-first (`o[(c·H + r)·W + q]`) or channel-last
/// (`o[(r·W + q)·C + c]`), then the net's activation and a channel-major flatten to
/// [`ConvSpec::features`] trunk inputs (as [`ConvEncoder`](crate::ConvEncoder)).
///
/// Valid when every size is `≥ 1`, `kernel ≤ height, width` and the stride tiles the input
/// (`(height − kernel)` and `(width − kernel)` multiples of `stride`), as the core's
/// compile-time check requires; the observation size is `channels·height·width`.
///
/// ```
/// use acktr_core::{ConvSpec, Encoder, MinAtarSmallEncoder};
/// let spec = <MinAtarSmallEncoder as Encoder<400, 64>>::SPEC.unwrap();
/// assert_eq!((spec.channels, spec.filters, spec.kernel, spec.stride), (4, 4, 4, 2));
/// assert_eq!((spec.out_height(), spec.out_width(), spec.features()), (4, 4, 64));
/// assert_eq!((spec.obs_dim(), spec.params()), (400, 260));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels `C`.
    pub channels: u32,
    /// Filters `F` (output channels).
    pub filters: u32,
    /// Kernel side `K`.
    pub kernel: u32,
    /// Stride `S`.
    pub stride: u32,
    /// Observation height `H`.
    pub height: u32,
    /// Observation width `W`.
    pub width: u32,
    /// The observation is channel-last (HWC, MinAtar's); channel-first (CHW) otherwise.
    pub channels_last: bool,
}

impl ConvSpec {
    /// Every size `≥ 1`, the kernel inside the input and a stride that tiles it.
    pub const fn is_valid(&self) -> bool {
        let (k, s) = (self.kernel, self.stride);
        self.channels > 0
            && self.filters > 0
            && k > 0
            && s > 0
            && k <= self.height
            && k <= self.width
            && (self.height - k) % s == 0
            && (self.width - k) % s == 0
    }

    /// Output height `⌊(H − K)/S⌋ + 1` (0 if the kernel does not fit).
    pub const fn out_height(&self) -> u64 {
        crate::conv_out(
            self.height as usize,
            self.kernel as usize,
            self.stride as usize,
        ) as u64
    }

    /// Output width `⌊(W − K)/S⌋ + 1` (0 if the kernel does not fit).
    pub const fn out_width(&self) -> u64 {
        crate::conv_out(
            self.width as usize,
            self.kernel as usize,
            self.stride as usize,
        ) as u64
    }

    /// The trunks' input size `F·Ho·Wo` (saturating at `u64::MAX`).
    pub const fn features(&self) -> u64 {
        (self.filters as u64)
            .saturating_mul(self.out_height())
            .saturating_mul(self.out_width())
    }

    /// The observation size `C·H·W` (saturating at `u64::MAX`).
    pub const fn obs_dim(&self) -> u64 {
        (self.channels as u64)
            .saturating_mul(self.height as u64)
            .saturating_mul(self.width as u64)
    }

    /// Parameters `F·(C·K·K + 1)`: the weights (`F×N` row-major, `N = C·K·K`), then a bias per
    /// filter (saturating at `u64::MAX`).
    pub const fn params(&self) -> u64 {
        let k = self.kernel as u64;
        let n = (self.channels as u64).saturating_mul(k).saturating_mul(k);
        (self.filters as u64).saturating_mul(n.saturating_add(1))
    }
}

/// Observation normalisation applied before the network: `x̂ᵢ = (xᵢ − meanᵢ) / stdᵢ`.
///
/// Valid when every value is finite and every `stdᵢ > 0`; [`write_policy`] refuses, and a
/// reader rejects, anything else.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObsNorm<const OBS: usize> {
    /// Per-dimension mean subtracted from the observation.
    pub mean: [f32; OBS],
    /// Per-dimension standard deviation dividing the centred observation (`> 0`).
    pub std: [f32; OBS],
}

impl<const OBS: usize> ObsNorm<OBS> {
    /// Mean `0`, std `1`: `normalize` is the identity.
    pub const fn identity() -> Self {
        Self {
            mean: [0.0; OBS],
            std: [1.0; OBS],
        }
    }

    /// `x̂ᵢ = (xᵢ − meanᵢ) / stdᵢ`, the network's input.
    pub fn normalize(&self, obs: &[f32; OBS]) -> [f32; OBS] {
        let mut x = *obs;
        for ((x, m), s) in x.iter_mut().zip(self.mean.iter()).zip(self.std.iter()) {
            *x = (*x - m) / s;
        }
        x
    }

    /// Every value finite and every `stdᵢ > 0`.
    pub fn is_valid(&self) -> bool {
        self.mean.iter().all(|m| m.is_finite())
            && self.std.iter().all(|s| s.is_finite() && *s > 0.0)
    }
}

/// What a policy file describes, without its weights (from [`read_header`]).
///
/// Every trunk is the chain `obs_dim → hidden[0] → … → hidden[last]` with the same activation
/// after every hidden layer; the policy head maps the last hidden layer (of trunk 0) to
/// `actions` outputs, the value head (of trunk `trunks − 1`) to one.
/// A version-2 file has an `encoder` between the observation and the trunks, whose input is
/// then [`ConvSpec::features`] wide instead of `obs_dim`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyHeader {
    /// Format version of the file: `1` (no encoder) or `2` (with one).
    pub version: u16,
    /// Observation size (the encoder's input in a version-2 file).
    pub obs_dim: u32,
    /// The convolution in front of the trunks (version 2), `None` in version 1.
    pub encoder: Option<ConvSpec>,
    /// Hidden layer widths, input side first.
    pub hidden: HVec<u32, MAX_HIDDEN_LAYERS>,
    /// `1` (one trunk shared by both heads) or `2` (policy trunk, value trunk).
    pub trunks: u32,
    /// Nonlinearity after every hidden layer.
    pub activation: Activation,
    /// Policy distribution.
    pub head: HeadKind,
    /// Policy head outputs: number of actions (categorical) or action dimension (Gaussian).
    pub actions: u32,
    /// The file carries an [`ObsNorm`].
    pub normalized: bool,
    /// Network parameters stored: the encoder's, weights, biases and, for a Gaussian head only,
    /// the log-std (the normaliser is not counted).
    pub num_params: u64,
    /// Total length of the file in bytes.
    pub file_len: usize,
}

/// CRC-32C (Castagnoli): reflected polynomial `0x82F63B78`, initial value and final XOR
/// `0xFFFFFFFF` (`crc::CRC_32_ISCSI`, the one postcard's CRC examples use).
/// Check value: `"123456789"` → `0xE3069283`. Public so that host tools (checkpoints,
/// TensorBoard records) use the same implementation.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Bytes of postcard's varint (LEB128) encoding of `v`.
const fn varint_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Compile-time check that the network fits the format's `u32` sizes and `T ∈ {1, 2}`, and
/// that an encoder's description agrees with the net's sizes (`IN = C·H·W`, `OBS = F·Ho·Wo`).
struct Fits<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    E: Encoder<IN, OBS>,
>(E);

impl<
        const OBS: usize,
        const H: usize,
        const P: usize,
        const T: usize,
        const IN: usize,
        E: Encoder<IN, OBS>,
    > Fits<OBS, H, P, T, IN, E>
{
    const OK: () = assert!(
        (T == 1 || T == 2)
            && OBS <= u32::MAX as usize
            && IN <= u32::MAX as usize
            && H <= u32::MAX as usize
            && P <= u32::MAX as usize
            && match E::SPEC {
                None => IN == OBS && E::PARAMS == 0,
                Some(c) => {
                    c.is_valid()
                        && c.obs_dim() == IN as u64
                        && c.features() == OBS as u64
                        && c.params() == E::PARAMS as u64
                }
            },
        "the policy file needs T = 1 or 2, sizes that fit in u32 and an encoder it can describe"
    );
}

/// Exact length of the file [`write_policy`] writes for `net` (and `norm`), in bytes:
/// `10 + header + 4·floats + 4`, where `floats` counts
/// `2·IN` (if `norm`) `+ E + T·(H·OBS + H + H·H + H) + P·H + P + H + 1 + P` (`E` the
/// encoder's parameters, `F·(C·K·K + 1)` for a convolution; the last `P`, the log-std, only for
/// a Gaussian head). A `const fn`, so it can size a buffer.
pub const fn encoded_len<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    E: Encoder<IN, OBS>,
>(
    net: &ActorCritic<OBS, H, P, T, IN, E>,
    norm: Option<&ObsNorm<IN>>,
) -> usize {
    let gaussian = matches!(net.head, HeadKind::Gaussian);
    // obs, layer count, two sizes, trunks, activation, head, outputs, normaliser flag.
    let mut header = varint_len(IN) + 1 + 2 * varint_len(H) + 1 + 1 + 1 + varint_len(P) + 1;
    if let Some(c) = E::SPEC {
        // kind, six sizes, layout.
        header += 1
            + varint_len(c.channels as usize)
            + varint_len(c.filters as usize)
            + varint_len(c.kernel as usize)
            + varint_len(c.stride as usize)
            + varint_len(c.height as usize)
            + varint_len(c.width as usize)
            + 1;
    }
    let mut floats = E::PARAMS + T * (H * OBS + H + H * H + H) + P * H + P + H + 1;
    if gaussian {
        floats += P;
    }
    if norm.is_some() {
        floats += 2 * IN;
    }
    PREFIX_LEN + header + 4 * floats + CRC_LEN
}

/// Write `net` (and `norm`) as a policy file into `out`; returns the bytes used, exactly
/// [`encoded_len`]. Only `out[..len]` is written.
///
/// The payload order is the normaliser (`mean`, then `std`), then the encoder's parameters
/// (a convolution's `W` row-major `F×C·K·K`, then `b`; version 2 only), then for each trunk its
/// first layer (`W` row-major `H×OBS`, then `b`) and second layer (`H×H`, `b`), then the policy
/// head (`P×H`, `b`), the value head (`1×H`, `b`) and, for a Gaussian head only, the log-std.
/// An MLP ([`Identity`](crate::Identity) encoder) is written as version 1, a conv net as version 2.
///
/// # Errors
/// - [`Error::SerializeNonFinite`]: a parameter (log-std included) or a normaliser value is
///   NaN or ±∞, or a normaliser std is not `> 0`: such a file would not load.
/// - [`Error::SerializeBufferFull`]: `out` is shorter than [`encoded_len`].
///
/// ```
/// use acktr_core::{encoded_len, read_policy, write_policy, Activation, HeadKind,
///                  SharedActorCritic};
/// let mut net = SharedActorCritic::<4, 32, 2>::zeros(Activation::Tanh, HeadKind::Categorical);
/// net.v.b[0] = 1.5;
/// // 10 (prefix) + 9 (header) + 4·(160 + 1056 + 66 + 33) floats + 4 (CRC) = 5283 bytes.
/// assert_eq!(encoded_len(&net, None), 5283);
/// let mut buf = [0u8; 5283];
/// let n = write_policy(&net, None, &mut buf).unwrap();
/// assert_eq!(&buf[..6], b"ACKP\x01\x00");
/// let (back, norm) = read_policy::<4, 32, 2, 1>(&buf[..n]).unwrap();
/// assert_eq!((back, norm), (net, None));
/// ```
pub fn write_policy<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    E: Encoder<IN, OBS>,
>(
    net: &ActorCritic<OBS, H, P, T, IN, E>,
    norm: Option<&ObsNorm<IN>>,
    out: &mut [u8],
) -> Result<usize, Error> {
    #[allow(clippy::let_unit_value)]
    let () = Fits::<OBS, H, P, T, IN, E>::OK;
    if norm.is_some_and(|n| !n.is_valid()) {
        return Err(Error::SerializeNonFinite);
    }
    let mut hidden = HVec::new();
    let _ = hidden.push(H as u32); // capacity MAX_HIDDEN_LAYERS ≥ 2
    let _ = hidden.push(H as u32);
    let arch = PolicyArch {
        obs_dim: IN as u32,
        hidden,
        trunks: T as u32,
        activation: net.activation,
        head: net.head,
        actions: P as u32,
        normalized: norm.is_some(),
    };
    let mut parts: HVec<&[f32], { crate::policy::MAX_SLICES }> = HVec::new();
    for p in net.encoder.slices() {
        let _ = parts.push(p); // capacity 2 + 4·T + 5 with T ≤ 2
    }
    for t in net.trunks.iter() {
        for p in [
            t.l1.w.as_flattened(),
            &t.l1.b,
            t.l2.w.as_flattened(),
            &t.l2.b,
        ] {
            let _ = parts.push(p);
        }
    }
    for p in [
        net.pi.w.as_flattened(),
        &net.pi.b,
        net.v.w.as_flattened(),
        &net.v.b,
    ] {
        let _ = parts.push(p);
    }
    if net.head == HeadKind::Gaussian {
        let _ = parts.push(&net.log_std);
    }
    let norm = norm.map(|n| (&n.mean[..], &n.std[..]));
    write_parts(E::SPEC.as_ref(), &arch, &parts, norm, out)
}

/// Write a policy whose sizes are known only at run time: `arch` describes it, `parts` are its
/// parameters in file order (trunk by trunk, layer by layer, `W` row-major then `b`; then
/// `W_π`, `b_π`, `W_v`, `b_v`; then the log-std for a Gaussian head), `norm` the optional
/// normaliser `(mean, std)`. Returns the bytes written.
///
/// # Errors
/// [`Error::SerializeShapeMismatch`] if the parts do not add up to what `arch` implies,
/// [`Error::SerializeNonFinite`] for NaN/±∞ values or a non-positive std,
/// [`Error::SerializeBufferFull`] if `out` is too small.
pub fn write_policy_parts(
    arch: &PolicyArch,
    parts: &[&[f32]],
    norm: Option<(&[f32], &[f32])>,
    out: &mut [u8],
) -> Result<usize, Error> {
    write_parts(None, arch, parts, norm, out)
}

/// [`write_policy_parts`] for a net with a convolution `conv` in front of its trunks: a
/// version-2 file. `arch.obs_dim` is the observation size (`conv.obs_dim()`), the trunks'
/// input is `conv.features()`, and `parts` start with the convolution's weights (`F×C·K·K`
/// row-major, PyTorch's `weight.flatten()`) and biases.
///
/// # Errors
/// As [`write_policy_parts`]; an invalid `conv` ([`ConvSpec::is_valid`]) or one whose
/// `obs_dim()` is not `arch.obs_dim` is [`Error::SerializeShapeMismatch`].
pub fn write_conv_policy_parts(
    conv: &ConvSpec,
    arch: &PolicyArch,
    parts: &[&[f32]],
    norm: Option<(&[f32], &[f32])>,
    out: &mut [u8],
) -> Result<usize, Error> {
    write_parts(Some(conv), arch, parts, norm, out)
}

/// [`write_policy_parts`] and [`write_conv_policy_parts`].
fn write_parts(
    enc: Option<&ConvSpec>,
    arch: &PolicyArch,
    parts: &[&[f32]],
    norm: Option<(&[f32], &[f32])>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let (params, floats) = counts(enc, arch).ok_or(Error::SerializeShapeMismatch)?;
    let given: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let norm_ok = match norm {
        Some((m, sd)) => {
            arch.normalized && m.len() == arch.obs_dim as usize && sd.len() == arch.obs_dim as usize
        }
        None => !arch.normalized,
    };
    if given != params
        || !norm_ok
        || arch.hidden.is_empty()
        || arch.obs_dim == 0
        || arch.actions == 0
    {
        return Err(Error::SerializeShapeMismatch);
    }
    if !(arch.trunks == 1 || arch.trunks == 2) {
        return Err(Error::SerializeShapeMismatch);
    }
    let finite = parts.iter().all(|p| p.iter().all(|v| v.is_finite()));
    let norm_valid = norm.is_none_or(|(m, sd)| {
        m.iter().all(|v| v.is_finite()) && sd.iter().all(|v| v.is_finite() && *v > 0.0)
    });
    if !finite || !norm_valid {
        return Err(Error::SerializeNonFinite);
    }
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut hw = Writer {
        buf: &mut header,
        pos: 0,
    };
    encode_header(&mut hw, enc, arch)?;
    let header_len = hw.pos;
    let len = PREFIX_LEN + header_len + 4 * floats as usize + CRC_LEN;
    let body_len =
        u32::try_from(len - PREFIX_LEN - CRC_LEN).map_err(|_| Error::SerializeBufferFull)?;
    let out = out.get_mut(..len).ok_or(Error::SerializeBufferFull)?;
    let mut w = Writer { buf: out, pos: 0 };
    w.bytes(&MAGIC)?;
    let version = if enc.is_some() { VERSION } else { VERSION_MLP };
    w.bytes(&version.to_le_bytes())?;
    w.bytes(&body_len.to_le_bytes())?;
    w.bytes(&header[..header_len])?;
    if let Some((m, sd)) = norm {
        w.f32s(m)?;
        w.f32s(sd)?;
    }
    for p in parts {
        w.f32s(p)?;
    }
    let crc = crc32c(w.buf.get(..w.pos).ok_or(Error::SerializeBufferFull)?);
    w.bytes(&crc.to_le_bytes())?;
    Ok(w.pos)
}

/// Bytes [`write_policy_parts`] writes for `arch`; `None` if the sizes overflow.
pub fn encoded_len_parts(arch: &PolicyArch) -> Option<usize> {
    len_parts(None, arch)
}

/// Bytes [`write_conv_policy_parts`] writes for `conv` and `arch`; `None` if the sizes
/// overflow or `conv` does not fit `arch` (invalid, or another observation size).
pub fn encoded_len_conv_parts(conv: &ConvSpec, arch: &PolicyArch) -> Option<usize> {
    len_parts(Some(conv), arch)
}

fn len_parts(enc: Option<&ConvSpec>, arch: &PolicyArch) -> Option<usize> {
    let (_, floats) = counts(enc, arch)?;
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut hw = Writer {
        buf: &mut header,
        pos: 0,
    };
    encode_header(&mut hw, enc, arch).ok()?;
    usize::try_from(floats)
        .ok()?
        .checked_mul(4)?
        .checked_add(PREFIX_LEN + hw.pos + CRC_LEN)
}

/// Total length of the policy file that starts with `prefix`, read from its first 10 bytes
/// (magic, version, body length) without checking anything else: to read a file from a
/// stream or out of a larger flash region, fetch 10 bytes, then this many.
///
/// # Errors
/// [`Error::DeserializeBadMagic`], [`Error::DeserializeUnsupportedVersion`], or
/// [`Error::DeserializeTruncated`] if `prefix` is shorter than 10 bytes (or the length does not
/// fit in `usize`).
pub fn file_len(prefix: &[u8]) -> Result<usize, Error> {
    read_prefix(prefix).map(|(_, len)| len)
}

/// The version and total length from the first 10 bytes ([`file_len`]).
fn read_prefix(prefix: &[u8]) -> Result<(u16, usize), Error> {
    let m = prefix.len().min(MAGIC.len());
    if prefix.get(..m) != MAGIC.get(..m) {
        return Err(Error::DeserializeBadMagic);
    }
    let (&[_, _, _, _, v0, v1], rest) = split::<6>(prefix)?;
    let version = u16::from_le_bytes([v0, v1]);
    if !(VERSION_MLP..=VERSION).contains(&version) {
        return Err(Error::DeserializeUnsupportedVersion(version));
    }
    let (&len, _) = split::<4>(rest)?;
    let total = u64::from(u32::from_le_bytes(len)) + (PREFIX_LEN + CRC_LEN) as u64;
    let total = usize::try_from(total).map_err(|_| Error::DeserializeTruncated)?;
    Ok((version, total))
}

/// Check a whole policy file (magic, version, length, CRC, header, payload length, finite
/// values, normaliser std `> 0`) and describe it. `bytes` must be exactly the file: use
/// [`file_len`] to cut it out of a larger region.
///
/// # Errors
/// [`Error::DeserializeBadMagic`], [`Error::DeserializeUnsupportedVersion`],
/// [`Error::DeserializeTruncated`] (shorter than the length field says),
/// [`Error::DeserializeBadChecksum`], [`Error::DeserializeMalformed`] (bytes after the CRC, an
/// invalid or non-canonical header, a payload whose length disagrees with the header, a
/// normaliser std `≤ 0`), [`Error::DeserializeNonFinite`] (NaN or ±∞ anywhere in the payload).
pub fn read_header(bytes: &[u8]) -> Result<PolicyHeader, Error> {
    parse(bytes).map(|(h, _)| h)
}

/// Load a policy file into a new MLP of the compiled sizes; returns it with the
/// normaliser if the file has one. Activation and head kind come from the file (check
/// `net.head` if the caller needs a particular one). A categorical file leaves `log_std` at 0.
/// A net with an encoder (a version-2 file) loads with [`read_policy_into`], e.g. into
/// [`MinAtarSmall::zeros`](crate::MinAtarSmall).
///
/// # Errors
/// Everything [`read_header`] reports, then [`Error::DeserializeShapeMismatch`] naming the
/// first dimension that differs: `"obs dim"`, `"encoder"` (expected 0: this network has none;
/// found 1: the file has a convolution), `"hidden layers"` (this network has 2),
/// `"hidden layer 1 size"`, `"hidden layer 2 size"`, `"trunks"`, `"actions"` (categorical) or
/// `"action dim"` (Gaussian).
pub fn read_policy<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    bytes: &[u8],
) -> Result<(ActorCritic<OBS, H, P, T>, Option<ObsNorm<OBS>>), Error> {
    let mut net = ActorCritic::zeros(Activation::Tanh, HeadKind::Categorical);
    let norm = read_policy_into(bytes, &mut net)?;
    Ok((net, norm))
}

/// [`read_policy`] into an existing network (no network-sized temporary on the stack, which
/// matters on a microcontroller), with or without an encoder. The whole file is checked before
/// `net` is touched: on error `net` is unchanged.
///
/// ```
/// use acktr_core::{encoded_len, read_policy_into, write_policy, Activation, HeadKind,
///                  MinAtarSmall};
/// # use acktr_core::env::Pcg64;
/// # use rand_core::SeedableRng;
/// let net = MinAtarSmall::new(Activation::Relu, HeadKind::Categorical, &mut Pcg64::from_seed(0));
/// let mut file = vec![0u8; encoded_len(&net, None)];
/// let n = write_policy(&net, None, &mut file).unwrap();
/// assert_eq!(&file[..6], b"ACKP\x02\x00"); // a conv net: version 2
/// let mut back = MinAtarSmall::zeros(Activation::Tanh, HeadKind::Categorical);
/// assert_eq!(read_policy_into(&file[..n], &mut back), Ok(None));
/// assert_eq!(back, net);
/// ```
///
/// # Errors
/// As [`read_policy`]; with an encoder, the dimensions compared are `"obs dim"` (the
/// observation, `C·H·W`), `"encoder"` (expected 1, found 0 for a version-1 file), then
/// `"conv channels"`, `"conv filters"`, `"conv kernel"`, `"conv stride"`, `"conv height"`,
/// `"conv width"`, `"conv layout"` (0 channel-first, 1 channel-last), then the trunks' as for
/// an MLP.
pub fn read_policy_into<
    const OBS: usize,
    const H: usize,
    const P: usize,
    const T: usize,
    const IN: usize,
    E: Encoder<IN, OBS>,
>(
    bytes: &[u8],
    net: &mut ActorCritic<OBS, H, P, T, IN, E>,
) -> Result<Option<ObsNorm<IN>>, Error> {
    #[allow(clippy::let_unit_value)]
    let () = Fits::<OBS, H, P, T, IN, E>::OK;
    let (h, payload) = parse(bytes)?;
    expect("obs dim", IN, h.obs_dim)?;
    expect(
        "encoder",
        usize::from(E::SPEC.is_some()),
        u32::from(h.encoder.is_some()),
    )?;
    if let (Some(want), Some(have)) = (E::SPEC, h.encoder) {
        for (what, w, f) in [
            ("conv channels", want.channels, have.channels),
            ("conv filters", want.filters, have.filters),
            ("conv kernel", want.kernel, have.kernel),
            ("conv stride", want.stride, have.stride),
            ("conv height", want.height, have.height),
            ("conv width", want.width, have.width),
            (
                "conv layout",
                u32::from(want.channels_last),
                u32::from(have.channels_last),
            ),
        ] {
            expect(what, w as usize, f)?;
        }
    }
    expect("hidden layers", 2, h.hidden.len() as u32)?;
    for (what, &size) in ["hidden layer 1 size", "hidden layer 2 size"]
        .into_iter()
        .zip(h.hidden.iter())
    {
        expect(what, H, size)?;
    }
    expect("trunks", T, h.trunks)?;
    let what = match h.head {
        HeadKind::Categorical => "actions",
        HeadKind::Gaussian => "action dim",
    };
    expect(what, P, h.actions)?;

    // Sizes agree and parse() matched the payload length to them: every fill is exact.
    let mut r = Reader(payload);
    let norm = if h.normalized {
        let mut n = ObsNorm::identity();
        r.fill(&mut n.mean);
        r.fill(&mut n.std);
        Some(n)
    } else {
        None
    };
    net.activation = h.activation;
    net.head = h.head;
    for p in net.encoder.slices_mut() {
        r.fill(p);
    }
    for t in net.trunks.iter_mut() {
        r.fill(t.l1.w.as_flattened_mut());
        r.fill(&mut t.l1.b);
        r.fill(t.l2.w.as_flattened_mut());
        r.fill(&mut t.l2.b);
    }
    r.fill(net.pi.w.as_flattened_mut());
    r.fill(&mut net.pi.b);
    r.fill(net.v.w.as_flattened_mut());
    r.fill(&mut net.v.b);
    if h.head == HeadKind::Gaussian {
        r.fill(&mut net.log_std);
    } else {
        net.log_std = [0.0; P];
    }
    Ok(norm)
}

/// `expected == found`, else the shape error naming `what`.
fn expect(what: &'static str, expected: usize, found: u32) -> Result<(), Error> {
    if expected as u64 == u64::from(found) {
        Ok(())
    } else {
        Err(Error::DeserializeShapeMismatch {
            what,
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
            found,
        })
    }
}

/// The architecture a file describes (its header fields), for writers whose sizes are only
/// known at run time (the host trainer); see [`write_policy_parts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyArch {
    /// Observation size.
    pub obs_dim: u32,
    /// Hidden layer widths, input side first.
    pub hidden: HVec<u32, MAX_HIDDEN_LAYERS>,
    /// `1` (shared trunk) or `2` (policy trunk, value trunk).
    pub trunks: u32,
    /// Nonlinearity after every hidden layer.
    pub activation: Activation,
    /// Policy distribution.
    pub head: HeadKind,
    /// Number of actions (categorical) or action dimension (Gaussian).
    pub actions: u32,
    /// Whether an observation normaliser follows the header.
    pub normalized: bool,
}

type Arch = PolicyArch;

/// Wire code of an observation layout.
const fn layout_code(channels_last: bool) -> u32 {
    if channels_last {
        1
    } else {
        0
    }
}

/// Wire codes: fixed here, independent of the enums' declaration order.
const fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Tanh => 0,
        Activation::Relu => 1,
        Activation::Identity => 2,
    }
}

const fn head_code(h: HeadKind) -> u32 {
    match h {
        HeadKind::Categorical => 0,
        HeadKind::Gaussian => 1,
    }
}

/// The header: version 1's fields, with (version 2) the encoder after `obs_dim`.
fn encode_header(w: &mut Writer<'_>, enc: Option<&ConvSpec>, a: &Arch) -> Result<(), Error> {
    w.varint(a.obs_dim)?;
    if let Some(c) = enc {
        w.varint(ENCODER_CONV)?;
        for v in [c.channels, c.filters, c.kernel, c.stride, c.height, c.width] {
            w.varint(v)?;
        }
        w.varint(layout_code(c.channels_last))?;
    }
    w.varint(a.hidden.len() as u32)?;
    for &h in a.hidden.iter() {
        w.varint(h)?;
    }
    w.varint(a.trunks)?;
    w.varint(activation_code(a.activation))?;
    w.varint(head_code(a.head))?;
    w.varint(a.actions)?;
    w.postcard(&a.normalized)
}

/// Decode and validate the header of a file of `version` at the start of `body`; returns it,
/// its encoder and its length.
fn decode_header(version: u16, body: &[u8]) -> Result<(Arch, Option<ConvSpec>, usize), Error> {
    let mut r = body;
    let obs_dim: u32 = take(&mut r)?;
    let enc = if version >= VERSION {
        if take::<u32>(&mut r)? != ENCODER_CONV {
            return Err(Error::DeserializeMalformed);
        }
        let mut s = [0u32; 6];
        for v in s.iter_mut() {
            *v = take(&mut r)?;
        }
        let channels_last = match take::<u32>(&mut r)? {
            0 => false,
            1 => true,
            _ => return Err(Error::DeserializeMalformed),
        };
        let [channels, filters, kernel, stride, height, width] = s;
        let c = ConvSpec {
            channels,
            filters,
            kernel,
            stride,
            height,
            width,
            channels_last,
        };
        if !c.is_valid() || c.obs_dim() != u64::from(obs_dim) {
            return Err(Error::DeserializeMalformed);
        }
        Some(c)
    } else {
        None
    };
    let layers: u32 = take(&mut r)?;
    if layers as usize > MAX_HIDDEN_LAYERS {
        return Err(Error::DeserializeMalformed);
    }
    let mut hidden = HVec::new();
    for _ in 0..layers {
        let size: u32 = take(&mut r)?;
        if size == 0 {
            return Err(Error::DeserializeMalformed);
        }
        hidden.push(size).map_err(|_| Error::DeserializeMalformed)?;
    }
    let trunks: u32 = take(&mut r)?;
    let activation = match take::<u32>(&mut r)? {
        0 => Activation::Tanh,
        1 => Activation::Relu,
        2 => Activation::Identity,
        _ => return Err(Error::DeserializeMalformed),
    };
    let head = match take::<u32>(&mut r)? {
        0 => HeadKind::Categorical,
        1 => HeadKind::Gaussian,
        _ => return Err(Error::DeserializeMalformed),
    };
    let actions: u32 = take(&mut r)?;
    let normalized: bool = take(&mut r)?;
    if obs_dim == 0 || actions == 0 || !(trunks == 1 || trunks == 2) {
        return Err(Error::DeserializeMalformed);
    }
    let arch = Arch {
        obs_dim,
        hidden,
        trunks,
        activation,
        head,
        actions,
        normalized,
    };
    Ok((arch, enc, body.len() - r.len()))
}

/// Number of network parameters and of payload `f32`s the header implies; `None` on overflow
/// or an encoder that does not fit `a.obs_dim`.
fn counts(enc: Option<&ConvSpec>, a: &Arch) -> Option<(u64, u64)> {
    let (mut prev, enc_params) = match enc {
        None => (u64::from(a.obs_dim), 0),
        Some(c) if c.is_valid() && c.obs_dim() == u64::from(a.obs_dim) => {
            (c.features(), c.params())
        }
        Some(_) => return None,
    };
    let mut per_trunk = 0u64;
    for &h in a.hidden.iter() {
        let h = u64::from(h);
        per_trunk = per_trunk.checked_add(h.checked_mul(prev)?.checked_add(h)?)?;
        prev = h;
    }
    let p = u64::from(a.actions);
    let heads = p.checked_mul(prev)?.checked_add(p)?.checked_add(prev + 1)?;
    let log_std = if a.head == HeadKind::Gaussian { p } else { 0 };
    let params = per_trunk
        .checked_mul(u64::from(a.trunks))?
        .checked_add(heads)?
        .checked_add(log_std)?
        .checked_add(enc_params)?;
    let norm = if a.normalized {
        2 * u64::from(a.obs_dim)
    } else {
        0
    };
    Some((params, params.checked_add(norm)?))
}

/// Every check that needs no compiled sizes; returns the header and the payload bytes.
fn parse(bytes: &[u8]) -> Result<(PolicyHeader, &[u8]), Error> {
    let (version, len) = read_prefix(bytes)?;
    if bytes.len() < len {
        return Err(Error::DeserializeTruncated);
    }
    if bytes.len() > len {
        return Err(Error::DeserializeMalformed);
    }
    let (covered, trailer) = bytes.split_at(len - CRC_LEN);
    let (&crc, _) = split::<4>(trailer)?;
    if crc32c(covered) != u32::from_le_bytes(crc) {
        return Err(Error::DeserializeBadChecksum);
    }

    // From here on the bytes are what the writer wrote: any inconsistency is malformed.
    let body = covered
        .get(PREFIX_LEN..)
        .ok_or(Error::DeserializeMalformed)?;
    let (arch, enc, header_len) = decode_header(version, body)?;
    // One encoding per header: no overlong varints.
    let mut canon = [0u8; MAX_HEADER_LEN];
    let mut w = Writer {
        buf: &mut canon,
        pos: 0,
    };
    encode_header(&mut w, enc.as_ref(), &arch).map_err(|_| Error::DeserializeMalformed)?;
    let canon_len = w.pos;
    if canon.get(..canon_len) != body.get(..header_len) {
        return Err(Error::DeserializeMalformed);
    }
    let payload = body.get(header_len..).ok_or(Error::DeserializeMalformed)?;
    let (num_params, floats) = counts(enc.as_ref(), &arch).ok_or(Error::DeserializeMalformed)?;
    if floats.checked_mul(4) != Some(payload.len() as u64) {
        return Err(Error::DeserializeMalformed);
    }
    if !payload.chunks_exact(4).map(f32_le).all(f32::is_finite) {
        return Err(Error::DeserializeNonFinite);
    }
    if arch.normalized {
        // 8·obs ≤ payload.len() here: no overflow.
        let obs = usize::try_from(arch.obs_dim).map_err(|_| Error::DeserializeMalformed)?;
        let std = payload
            .get(4 * obs..8 * obs)
            .ok_or(Error::DeserializeMalformed)?;
        if !std.chunks_exact(4).map(f32_le).all(|s| s > 0.0) {
            return Err(Error::DeserializeMalformed);
        }
    }
    let header = PolicyHeader {
        version,
        obs_dim: arch.obs_dim,
        encoder: enc,
        hidden: arch.hidden,
        trunks: arch.trunks,
        activation: arch.activation,
        head: arch.head,
        actions: arch.actions,
        normalized: arch.normalized,
        num_params,
        file_len: len,
    };
    Ok((header, payload))
}

/// The first `N` bytes as an array and the rest; [`Error::DeserializeTruncated`] if shorter.
fn split<const N: usize>(bytes: &[u8]) -> Result<(&[u8; N], &[u8]), Error> {
    let (head, rest) = bytes
        .split_at_checked(N)
        .ok_or(Error::DeserializeTruncated)?;
    let head = head.try_into().map_err(|_| Error::DeserializeTruncated)?;
    Ok((head, rest))
}

/// A 4-byte chunk as a little-endian `f32` (postcard's encoding of `f32`).
fn f32_le(c: &[u8]) -> f32 {
    match *c {
        [a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
        _ => f32::NAN,
    }
}

/// One postcard value from the front of `r`, advancing it.
fn take<'a, V: serde::Deserialize<'a>>(r: &mut &'a [u8]) -> Result<V, Error> {
    let (v, rest) = postcard::take_from_bytes(r).map_err(|_| Error::DeserializeMalformed)?;
    *r = rest;
    Ok(v)
}

/// Sequential writer into a caller's buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.pos + b.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(Error::SerializeBufferFull)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    fn postcard(&mut self, v: &impl serde::Serialize) -> Result<(), Error> {
        let rest = self
            .buf
            .get_mut(self.pos..)
            .ok_or(Error::SerializeBufferFull)?;
        let used = postcard::to_slice(v, rest)
            .map_err(|_| Error::SerializeBufferFull)?
            .len();
        self.pos += used;
        Ok(())
    }

    fn varint(&mut self, v: u32) -> Result<(), Error> {
        self.postcard(&v)
    }

    fn f32s(&mut self, s: &[f32]) -> Result<(), Error> {
        for v in s {
            self.bytes(&v.to_le_bytes())?;
        }
        Ok(())
    }
}

/// Sequential `f32` reader over a payload whose length has been checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn fill(&mut self, dst: &mut [f32]) {
        let (now, rest) = self.0.split_at(self.0.len().min(4 * dst.len()));
        for (d, c) in dst.iter_mut().zip(now.chunks_exact(4)) {
            *d = f32_le(c);
        }
        self.0 = rest;
    }
}
