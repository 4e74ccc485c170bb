//! The elementary functions the dynamics call, and numpy's own float32 sine/cosine.
//!
//! Gymnasium's arithmetic (`+ − × ÷`, `fmod`, comparisons, casts) is IEEE-754 and reproduced
//! exactly here. What is *not* pinned down by IEEE-754 is the last bit of `sin`, `cos` and
//! `pow`: numpy and Python call the C library (glibc on Linux), this crate calls the `libm`
//! crate (a port of musl/FreeBSD msun), and the two disagree by one ulp on roughly 1–3 % of
//! `sin`/`cos` arguments (measured on glibc 2.36, x86-64 with FMA). glibc's `pow` does not
//! special-case `y = 2`, so numpy's `x**2` on a float64 scalar differs from the correctly
//! rounded `x·x` (which is what `libm::pow(x, 2.0)` returns) on about 0.08 % of arguments, and
//! glibc's `powf(u, 2.0f)` (numpy's `u**2` on a float32 scalar) differs from `u·u` by one
//! float32 ulp on about 0.07 %.
//!
//! The environments are therefore generic over [`Math`]: the default [`LibmMath`] is portable
//! and gives the same bits on every target (host, Cortex-M, …); a test (with `std`) can plug in
//! the platform C library instead and then reproduces Gymnasium's trajectories bit for bit (see
//! `core/tests/gym_replay.rs` and `docs/environments.md`).

/// Elementary functions used by the dynamics (static methods: zero-sized, no state).
pub trait Math {
    /// `sin(x)` (numpy `np.sin` on a float64 / Python `math.sin`: C `sin`).
    fn sin(x: f64) -> f64;
    /// `cos(x)` (numpy `np.cos` on a float64 / Python `math.cos`: C `cos`).
    fn cos(x: f64) -> f64;
    /// `(sin(x), cos(x))`; must return the same bits as the two separate calls.
    #[inline]
    fn sin_cos(x: f64) -> (f64, f64) {
        (Self::sin(x), Self::cos(x))
    }
    /// `x ** 2` on a numpy float64 scalar or a Python float: C `pow(x, 2.0)`.
    fn pow2(x: f64) -> f64;
    /// `u ** 2` on a numpy float32 scalar: C `powf(u, 2.0f)`.
    fn powf2(x: f32) -> f32;
}

/// The portable default: the `libm` crate (`no_std`, identical results on every target).
///
/// `pow2`/`powf2` are the correctly rounded squares `x·x`: that is exactly what `libm::pow(x,
/// 2.0)` / `libm::powf(x, 2.0)` return (msun special-cases `y = 2`), without the call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LibmMath;

impl Math for LibmMath {
    #[inline]
    fn sin(x: f64) -> f64 {
        libm::sin(x)
    }
    #[inline]
    fn cos(x: f64) -> f64 {
        libm::cos(x)
    }
    /// One argument reduction for both (`libm::sincos`, bit-identical to `sin` and `cos`).
    #[inline]
    fn sin_cos(x: f64) -> (f64, f64) {
        libm::sincos(x)
    }
    #[inline]
    fn pow2(x: f64) -> f64 {
        x * x
    }
    #[inline]
    fn powf2(x: f32) -> f32 {
        x * x
    }
}

// numpy's float32 sin/cos (numpy ≥ 1.22 on CPUs with FMA3, `loops_trigonometric.dispatch`):
// Cody–Waite reduction by π/2 in three fused steps, then minimax polynomials on [−π/4, π/4].
const TWO_OVER_PI: f32 = f32::from_bits(0x3F22_F983); // 0x1.45f306p-1
const PIO2_HI: f32 = -f32::from_bits(0x3FC9_0FD8); // -0x1.921fb0p+00
const PIO2_MED: f32 = -f32::from_bits(0x34A8_885A); // -0x1.5110b4p-22
const PIO2_LO: f32 = -f32::from_bits(0x27C2_34C4); // -0x1.846988p-48
const RINT_MAGIC: f32 = 12_582_912.0; // 0x1.8p23
const COS_C8: f32 = f32::from_bits(0x37CC_730B); // 0x1.98e616p-16
const COS_C6: f32 = -f32::from_bits(0x3AB6_036E); // -0x1.6c06dcp-10
const COS_C4: f32 = f32::from_bits(0x3D2A_AA9E); // 0x1.55553cp-05
const COS_C2: f32 = -0.5;
const SIN_C9: f32 = f32::from_bits(0x363E_9DDE); // 0x1.7d3bbcp-19
const SIN_C7: f32 = -f32::from_bits(0x3950_35DD); // -0x1.a06bbap-13
const SIN_C5: f32 = f32::from_bits(0x3C08_88CD); // 0x1.11119ap-07
const SIN_C3: f32 = -f32::from_bits(0x3E2A_AAAB); // -0x1.555556p-03
/// Beyond these magnitudes numpy calls the C library's `sinf`/`cosf`; we call `libm`'s.
const SIN_MAX_CODY: f32 = f32::from_bits(0x47E5_5DFF); // 117435.992f
const COS_MAX_CODY: f32 = f32::from_bits(0x478B_9A08); // 71476.0625f

#[inline]
fn np_sincos_f32(x: f32, cosine: bool) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    let max = if cosine { COS_MAX_CODY } else { SIN_MAX_CODY };
    if libm::fabsf(x) > max {
        return if cosine { libm::cosf(x) } else { libm::sinf(x) };
    }
    // quadrant = rint(x·2/π) by the 1.5·2²³ trick (f32 arithmetic).
    let q = (x * TWO_OVER_PI + RINT_MAGIC) - RINT_MAGIC;
    let r = libm::fmaf(q, PIO2_HI, x);
    let r = libm::fmaf(q, PIO2_MED, r);
    let r = libm::fmaf(q, PIO2_LO, r);
    let r2 = r * r;
    let c = libm::fmaf(COS_C8, r2, COS_C6);
    let c = libm::fmaf(c, r2, COS_C4);
    let c = libm::fmaf(c, r2, COS_C2);
    let c = libm::fmaf(c, r2, 1.0);
    let s = libm::fmaf(SIN_C9, r2, SIN_C7);
    let s = libm::fmaf(s, r2, SIN_C5);
    let s = libm::fmaf(s, r2, SIN_C3);
    let s = libm::fmaf(s, r2, 0.0);
    let s = libm::fmaf(s, r, r);
    let mut iq = q as i32;
    if cosine {
        iq = iq.wrapping_add(1);
    }
    let v = if iq & 1 == 0 { s } else { c };
    if iq & 2 == 2 {
        0.0 - v
    } else {
        v
    }
}

/// `np.sin` on a float32 (numpy's vectorised algorithm, FMA3 build: what x86-64 CPUs with
/// AVX2/FMA and AArch64 run). Used where Gymnasium applies `np.sin` to a float32 state.
#[inline]
pub fn np_sin_f32(x: f32) -> f32 {
    np_sincos_f32(x, false)
}

/// `np.cos` on a float32 (see [`np_sin_f32`]).
#[inline]
pub fn np_cos_f32(x: f32) -> f32 {
    np_sincos_f32(x, true)
}

/// numpy's float remainder (`x % y` on float64, `npy_remainder`): `fmod`, then shifted by `y`
/// when the signs of the `fmod` result and `y` differ; a zero result takes the sign of `y`.
#[inline]
pub fn np_remainder(a: f64, b: f64) -> f64 {
    let m = libm::fmod(a, b);
    if b == 0.0 {
        return m;
    }
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m + b
        } else {
            m
        }
    } else {
        libm::copysign(0.0, b)
    }
}

/// `np.clip(x, lo, hi)` for a float (NaN propagates).
#[inline]
pub fn clip_f64(x: f64, lo: f64, hi: f64) -> f64 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// `np.clip(u, lo, hi)` for a float32 (NaN propagates).
#[inline]
pub fn clip_f32(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libm_sincos_is_sin_and_cos() {
        let mut x = -40.0f64;
        while x < 40.0 {
            let (s, c) = LibmMath::sin_cos(x);
            assert_eq!(s.to_bits(), libm::sin(x).to_bits());
            assert_eq!(c.to_bits(), libm::cos(x).to_bits());
            x += 0.000_731_3;
        }
    }

    #[test]
    fn np_f32_trig_matches_numpy() {
        // python -c "import numpy as np; x=np.array([0.1,-0.05,0.0731,3.0,-100.5,1e-3,-0.0,0.7853982],dtype=np.float32); print([hex(v) for v in np.sin(x).view(np.uint32)], [hex(v) for v in np.cos(x).view(np.uint32)])"
        // (numpy 2.4.6 on an AVX-512 x86-64)
        let xs: [f32; 8] = [
            0.1,
            -0.05,
            0.0731,
            3.0,
            -100.5,
            1e-3,
            -0.0,
            core::f32::consts::FRAC_PI_4,
        ];
        let sin: [u32; 8] = [
            0x3dcc7577, 0xbd4cb6f5, 0x3d959354, 0x3e1081c3, 0x3cfd9fc2, 0x3a83126e, 0x80000000,
            0x3f3504f3,
        ];
        let cos: [u32; 8] = [
            0x3f7eb898, 0x3f7fae19, 0x3f7f50fb, 0xbf7d7026, 0x3f7fe095, 0x3f7ffff8, 0x3f800000,
            0x3f3504f3,
        ];
        for i in 0..xs.len() {
            assert_eq!(np_sin_f32(xs[i]).to_bits(), sin[i], "sin({})", xs[i]);
            assert_eq!(np_cos_f32(xs[i]).to_bits(), cos[i], "cos({})", xs[i]);
        }
    }

    #[test]
    fn remainder_like_numpy() {
        // python -c "import numpy as np; print([float(np.float64(a) % b).hex() for a,b in [(-1.0, 6.283185307179586), (7.0, 6.283185307179586), (-0.0, 2.0), (0.0, -2.0), (-1e-20, 6.283185307179586)]])"
        let tau = 2.0 * core::f64::consts::PI;
        assert_eq!(np_remainder(-1.0, tau), tau - 1.0);
        assert_eq!(np_remainder(7.0, tau), 7.0 - tau);
        assert_eq!(np_remainder(-0.0, 2.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(np_remainder(0.0, -2.0).to_bits(), (-0.0f64).to_bits());
        // fmod gives -1e-20; adding 2π rounds back to 2π (numpy returns 0x1.921fb54442d18p+2).
        assert_eq!(np_remainder(-1e-20, tau), tau);
    }
}
