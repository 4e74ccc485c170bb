//! The policy file (docs/format.md).
//!
//! Where the truth comes from: expected files are built here from the spec alone, with this
//! file's own LEB128 varint writer and its own bitwise CRC-32C (checked against the catalogue
//! check value `"123456789"` → `0xE3069283`), never with the crate's encoder. The golden hex
//! literals were printed once by `write_policy` and are pinned so that any change of the bytes
//! is seen; they are also compared with the spec-built files and checked field by field.

mod common;

use acktr_core::{
    encoded_len, encoded_len_conv_parts, encoded_len_parts, file_len, read_header, read_policy,
    read_policy_into, write_conv_policy_parts, write_policy, write_policy_parts, Activation,
    ActorCritic, ConvEncoder, ConvSpec, Encoder, Error, HeadKind, MinAtarSmall, ObsNorm,
    PolicyArch, SeparateActorCritic, SharedActorCritic, MAGIC, MAX_HIDDEN_LAYERS, VERSION,
};
use common::Rng;
use proptest::prelude::*;

// ---------------------------------------------------------------- spec-side helpers

/// CRC-32C bit by bit: reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            let lsb = c & 1;
            c >>= 1;
            if lsb == 1 {
                c ^= 0x82F6_3B78;
            }
        }
    }
    c ^ 0xFFFF_FFFF
}

/// LEB128: 7 bits per byte, least significant first, high bit set on all but the last.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Header fields as raw wire values (codes: activation 0 tanh / 1 relu / 2 identity; head
/// 0 categorical / 1 Gaussian; norm 0 / 1).
#[derive(Clone, Debug)]
struct Spec {
    obs: u32,
    hidden: Vec<u32>,
    trunks: u32,
    act: u32,
    head: u32,
    actions: u32,
    norm: u32,
}

impl Spec {
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        varint(self.obs.into(), &mut h);
        varint(self.hidden.len() as u64, &mut h);
        for &s in &self.hidden {
            varint(s.into(), &mut h);
        }
        varint(self.trunks.into(), &mut h);
        varint(self.act.into(), &mut h);
        varint(self.head.into(), &mut h);
        varint(self.actions.into(), &mut h);
        varint(self.norm.into(), &mut h);
        h
    }

    /// Payload floats the spec asks for.
    fn floats(&self) -> u64 {
        let mut prev = u64::from(self.obs);
        let mut trunk = 0;
        for &h in &self.hidden {
            trunk += u64::from(h) * prev + u64::from(h);
            prev = h.into();
        }
        let p = u64::from(self.actions);
        let mut n = u64::from(self.trunks) * trunk + p * prev + p + prev + 1;
        if self.head == 1 {
            n += p;
        }
        if self.norm == 1 {
            n += 2 * u64::from(self.obs);
        }
        n
    }
}

/// Magic, version 1, body length, body, CRC-32C of all that.
fn file_from_body(body: &[u8]) -> Vec<u8> {
    file_from_body_v(1, body)
}

/// Magic, `version`, body length, body, CRC-32C of all that.
fn file_from_body_v(version: u16, body: &[u8]) -> Vec<u8> {
    let mut f = b"ACKP".to_vec();
    f.extend_from_slice(&version.to_le_bytes());
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(body);
    let crc = crc32c(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

fn file_from(header: &[u8], floats: &[f32]) -> Vec<u8> {
    let mut body = header.to_vec();
    for v in floats {
        body.extend_from_slice(&v.to_le_bytes());
    }
    file_from_body(&body)
}

/// Recompute the trailing CRC after editing a file.
fn recrc(f: &mut [u8]) {
    let n = f.len() - 4;
    let crc = crc32c(&f[..n]);
    f[n..].copy_from_slice(&crc.to_le_bytes());
}

/// The payload in the spec's order, read field by field from the network.
fn spec_floats<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    net: &ActorCritic<OBS, H, P, T>,
    norm: Option<&ObsNorm<OBS>>,
) -> Vec<f32> {
    let mut v = Vec::new();
    if let Some(n) = norm {
        v.extend_from_slice(&n.mean);
        v.extend_from_slice(&n.std);
    }
    for t in &net.trunks {
        for o in 0..H {
            for i in 0..OBS {
                v.push(t.l1.w[o][i]);
            }
        }
        v.extend_from_slice(&t.l1.b);
        for o in 0..H {
            for i in 0..H {
                v.push(t.l2.w[o][i]);
            }
        }
        v.extend_from_slice(&t.l2.b);
    }
    for o in 0..P {
        for i in 0..H {
            v.push(net.pi.w[o][i]);
        }
    }
    v.extend_from_slice(&net.pi.b);
    v.extend_from_slice(&net.v.w[0]);
    v.push(net.v.b[0]);
    if net.head == HeadKind::Gaussian {
        v.extend_from_slice(&net.log_std);
    }
    v
}

fn spec_of<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    net: &ActorCritic<OBS, H, P, T>,
    norm: bool,
) -> Spec {
    Spec {
        obs: OBS as u32,
        hidden: vec![H as u32, H as u32],
        trunks: T as u32,
        act: match net.activation {
            Activation::Tanh => 0,
            Activation::Relu => 1,
            Activation::Identity => 2,
        },
        head: match net.head {
            HeadKind::Categorical => 0,
            HeadKind::Gaussian => 1,
        },
        actions: P as u32,
        norm: norm as u32,
    }
}

fn write_vec<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    net: &ActorCritic<OBS, H, P, T>,
    norm: Option<&ObsNorm<OBS>>,
) -> Vec<u8> {
    let mut buf = vec![0u8; encoded_len(net, norm)];
    let n = write_policy(net, norm, &mut buf).expect("write");
    assert_eq!(n, buf.len());
    buf
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A network with every parameter random (biases and Gaussian log-std included).
fn random_net<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    activation: Activation,
    head: HeadKind,
    seed: u64,
) -> ActorCritic<OBS, H, P, T> {
    let mut rng = Rng(seed);
    let mut net = ActorCritic::new(activation, head, &mut rng);
    net.map_mut(|p| *p += rng.sym());
    if head == HeadKind::Categorical {
        net.log_std = [0.0; P]; // not stored for a categorical head
    }
    net
}

fn random_norm<const OBS: usize>(seed: u64) -> ObsNorm<OBS> {
    let mut rng = Rng(seed);
    let mut n = ObsNorm::identity();
    for k in 0..OBS {
        n.mean[k] = 3.0 * rng.sym();
        n.std[k] = 0.1 + rng.sym().abs() * 5.0;
    }
    n
}

// ---------------------------------------------------------------- the spec helpers themselves

#[test]
fn crc32c_check_value() {
    // CRC catalogue (reveng) CRC-32/ISCSI: check = 0xE3069283.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn varint_examples() {
    // postcard's spec: 127 → 7F, 128 → 80 01, 300 → AC 02.
    for (v, bytes) in [
        (0u64, &[0x00][..]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (300, &[0xAC, 0x02]),
    ] {
        let mut out = Vec::new();
        varint(v, &mut out);
        assert_eq!(out, bytes);
    }
}

// ---------------------------------------------------------------- golden bytes

/// OBS 2, H 3, P 2, shared trunk, tanh, categorical, no normaliser; the k-th stored parameter
/// (in file order) is `(k − 8)·0.5`.
fn golden_shared() -> SharedActorCritic<2, 3, 2> {
    let mut net = SharedActorCritic::<2, 3, 2>::zeros(Activation::Tanh, HeadKind::Categorical);
    let mut k = 0.0f32;
    let mut next = || {
        let v = (k - 8.0) * 0.5;
        k += 1.0;
        v
    };
    let t = &mut net.trunks[0];
    t.l1.w.iter_mut().flatten().for_each(|p| *p = next());
    t.l1.b.iter_mut().for_each(|p| *p = next());
    t.l2.w.iter_mut().flatten().for_each(|p| *p = next());
    t.l2.b.iter_mut().for_each(|p| *p = next());
    net.pi.w.iter_mut().flatten().for_each(|p| *p = next());
    net.pi.b.iter_mut().for_each(|p| *p = next());
    net.v.w.iter_mut().flatten().for_each(|p| *p = next());
    net.v.b.iter_mut().for_each(|p| *p = next());
    net
}

const GOLDEN_SHARED: &str = "
    41434b50 0100 8d000000
    020203030100000200
    000080c0 000060c0 000040c0 000020c0 000000c0 0000c0bf 000080bf 000000bf
    00000000 0000003f 0000803f 0000c03f 00000040 00002040 00004040 00006040
    00008040 00009040 0000a040 0000b040 0000c040 0000d040 0000e040 0000f040
    00000041 00000841 00001041 00001841 00002041 00002841 00003041 00003841
    00004041
    183ea140
    ";

#[test]
fn golden_shared_categorical() {
    let net = golden_shared();
    let bytes = write_vec(&net, None);
    assert_eq!(bytes, hex(GOLDEN_SHARED), "golden bytes changed");

    // Field by field, from the spec.
    assert_eq!(bytes.len(), 10 + 9 + 33 * 4 + 4);
    assert_eq!(&bytes[0..4], b"ACKP");
    assert_eq!(&bytes[4..6], &[0x01, 0x00]); // version 1, u16 LE
    assert_eq!(&bytes[6..10], &[141, 0, 0, 0]); // body = 9 header + 132 payload
                                                // obs 2 | 2 hidden layers: 3, 3 | 1 trunk | tanh 0 | categorical 0 | 2 actions | no norm
    assert_eq!(&bytes[10..19], &[2, 2, 3, 3, 1, 0, 0, 2, 0]);
    assert_eq!(&bytes[19..23], &(-4.0f32).to_le_bytes()); // W1[0][0] = (0 − 8)·0.5
    assert_eq!(&bytes[19..23], &[0x00, 0x00, 0x80, 0xC0]);
    assert_eq!(&bytes[19 + 4 * 32..19 + 4 * 33], &12.0f32.to_le_bytes()); // v.b = (32 − 8)·0.5
    assert_eq!(&bytes[151..155], &crc32c(&bytes[..151]).to_le_bytes());

    // The whole file rebuilt from the spec.
    let spec = spec_of(&net, false);
    assert_eq!(bytes, file_from(&spec.header(), &spec_floats(&net, None)));

    let (back, norm) = read_policy::<2, 3, 2, 1>(&bytes).unwrap();
    assert_eq!((back, norm), (net, None));
}

/// OBS 1, H 1, P 1, separate trunks, relu, Gaussian, normaliser mean 0.25 std 2; the k-th
/// stored network parameter is `k + 1`.
fn golden_separate() -> (SeparateActorCritic<1, 1, 1>, ObsNorm<1>) {
    let mut net = SeparateActorCritic::<1, 1, 1>::zeros(Activation::Relu, HeadKind::Gaussian);
    let mut k = 0.0f32;
    net.map_mut(|p| {
        k += 1.0;
        *p = k;
    });
    let norm = ObsNorm {
        mean: [0.25],
        std: [2.0],
    };
    (net, norm)
}

const GOLDEN_SEPARATE: &str = "
    41434b50 0100 45000000
    010201010201010101
    0000803e 00000040
    0000803f 00000040 00004040 00008040
    0000a040 0000c040 0000e040 00000041
    00001041 00002041 00003041 00004041 00005041
    fad849a1
    ";

#[test]
fn golden_separate_gaussian_normalized() {
    let (net, norm) = golden_separate();
    let bytes = write_vec(&net, Some(&norm));
    assert_eq!(bytes, hex(GOLDEN_SEPARATE), "golden bytes changed");

    assert_eq!(bytes.len(), 10 + 9 + 15 * 4 + 4);
    assert_eq!(&bytes[6..10], &[69, 0, 0, 0]);
    // obs 1 | 2 layers: 1, 1 | 2 trunks | relu 1 | Gaussian 1 | dim 1 | normaliser present
    assert_eq!(&bytes[10..19], &[1, 2, 1, 1, 2, 1, 1, 1, 1]);
    assert_eq!(&bytes[19..23], &0.25f32.to_le_bytes()); // mean first
    assert_eq!(&bytes[23..27], &2.0f32.to_le_bytes()); // then std
    assert_eq!(&bytes[27..31], &1.0f32.to_le_bytes()); // trunk 0, W1[0][0]
    assert_eq!(&bytes[75..79], &13.0f32.to_le_bytes()); // log-std last
    assert_eq!(&bytes[79..83], &crc32c(&bytes[..79]).to_le_bytes());
    let spec = spec_of(&net, true);
    assert_eq!(
        bytes,
        file_from(&spec.header(), &spec_floats(&net, Some(&norm)))
    );

    let (back, n) = read_policy::<1, 1, 1, 2>(&bytes).unwrap();
    assert_eq!((back, n), (net, Some(norm)));
}

// ---------------------------------------------------------------- round trips

fn roundtrip<const OBS: usize, const H: usize, const P: usize, const T: usize>(
    activation: Activation,
    head: HeadKind,
    with_norm: bool,
    seed: u64,
) {
    let net = random_net::<OBS, H, P, T>(activation, head, seed);
    let norm = with_norm.then(|| random_norm::<OBS>(seed + 1));
    let bytes = write_vec(&net, norm.as_ref());

    let spec = spec_of(&net, with_norm);
    assert_eq!(
        bytes,
        file_from(&spec.header(), &spec_floats(&net, norm.as_ref()))
    );

    let h = read_header(&bytes).unwrap();
    assert_eq!(h.version, 1, "an MLP is written as version 1");
    assert_eq!(h.encoder, None);
    assert_eq!(h.obs_dim as usize, OBS);
    assert_eq!(h.hidden.as_slice(), &[H as u32, H as u32]);
    assert_eq!(h.trunks as usize, T);
    assert_eq!((h.activation, h.head), (activation, head));
    assert_eq!(h.actions as usize, P);
    assert_eq!(h.normalized, with_norm);
    let log_std = if head == HeadKind::Gaussian { 0 } else { P };
    assert_eq!(
        h.num_params as usize,
        ActorCritic::<OBS, H, P, T>::num_params() - log_std
    );
    assert_eq!(h.file_len, bytes.len());
    assert_eq!(file_len(&bytes[..10]), Ok(bytes.len()));

    let (back, back_norm) = read_policy::<OBS, H, P, T>(&bytes).unwrap();
    assert_eq!(back, net);
    assert_eq!(back_norm, norm);
    let mut into = ActorCritic::<OBS, H, P, T>::zeros(Activation::Identity, HeadKind::Gaussian);
    into.log_std = [7.0; P];
    assert_eq!(read_policy_into(&bytes, &mut into), Ok(norm));
    assert_eq!(into, net);
    assert_eq!(
        write_vec(&back, back_norm.as_ref()),
        bytes,
        "rewrite differs"
    );
}

#[test]
fn roundtrip_shared_categorical() {
    roundtrip::<4, 8, 2, 1>(Activation::Tanh, HeadKind::Categorical, false, 1);
    roundtrip::<4, 8, 2, 1>(Activation::Relu, HeadKind::Categorical, true, 2);
}

#[test]
fn roundtrip_shared_gaussian() {
    roundtrip::<3, 16, 1, 1>(Activation::Tanh, HeadKind::Gaussian, false, 3);
    roundtrip::<3, 16, 1, 1>(Activation::Identity, HeadKind::Gaussian, true, 4);
}

#[test]
fn roundtrip_separate_categorical() {
    roundtrip::<6, 5, 3, 2>(Activation::Relu, HeadKind::Categorical, false, 5);
    roundtrip::<6, 5, 3, 2>(Activation::Tanh, HeadKind::Categorical, true, 6);
}

#[test]
fn roundtrip_separate_gaussian() {
    // The paper's MuJoCo layout.
    roundtrip::<17, 64, 6, 2>(Activation::Tanh, HeadKind::Gaussian, false, 7);
}

#[test]
fn roundtrip_two_byte_varints() {
    // Sizes ≥ 128 take two varint bytes. Large nets live on the stack in debug: give it room.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            roundtrip::<200, 8, 6, 2>(Activation::Tanh, HeadKind::Gaussian, true, 8);
            roundtrip::<3, 129, 130, 1>(Activation::Relu, HeadKind::Categorical, false, 9);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn size_of_4_32_32_shared_categorical() {
    let net = SharedActorCritic::<4, 32, 2>::zeros(Activation::Tanh, HeadKind::Categorical);
    // 10 + 9 header + 4·(4·32+32 + 32·32+32 + 2·32+2 + 32+1) + 4
    assert_eq!(encoded_len(&net, None), 10 + 9 + 4 * 1315 + 4);
    assert_eq!(encoded_len(&net, None), 5283);
    assert_eq!(encoded_len(&net, Some(&ObsNorm::identity())), 5283 + 32);
    // encoded_len is const: it can size a static buffer.
    const LEN: usize = encoded_len(
        &SharedActorCritic::<4, 32, 2>::zeros(Activation::Tanh, HeadKind::Categorical),
        None,
    );
    let mut buf = [0u8; LEN];
    assert_eq!(write_policy(&net, None, &mut buf), Ok(5283));
}

#[test]
fn normalize_is_centre_then_scale() {
    let n = ObsNorm {
        mean: [1.0, -2.0],
        std: [2.0, 0.5],
    };
    assert_eq!(n.normalize(&[3.0, -1.0]), [1.0, 2.0]);
    assert_eq!(
        ObsNorm::<2>::identity().normalize(&[3.0, -1.0]),
        [3.0, -1.0]
    );
    assert!(n.is_valid());
    assert!(!ObsNorm {
        mean: [0.0],
        std: [0.0]
    }
    .is_valid());
}

#[test]
fn file_inside_a_larger_region() {
    // E.g. a flash partition padded with 0xFF: file_len cuts the file out.
    let net = golden_shared();
    let bytes = write_vec(&net, None);
    let mut region = bytes.clone();
    region.resize(4096, 0xFF);
    assert_eq!(read_header(&region), Err(Error::DeserializeMalformed));
    let n = file_len(&region[..10]).unwrap();
    assert_eq!(read_policy::<2, 3, 2, 1>(&region[..n]).unwrap().0, net);
}

#[test]
fn other_depths_are_describable() {
    // A file from a future (e.g. libtorch) writer with three hidden layers reads as a header,
    // and is refused by the compiled two-layer network by name.
    let spec = Spec {
        obs: 3,
        hidden: vec![5, 4, 300],
        trunks: 1,
        act: 1,
        head: 0,
        actions: 2,
        norm: 0,
    };
    let floats = vec![0.5f32; spec.floats() as usize];
    let f = file_from(&spec.header(), &floats);
    let h = read_header(&f).unwrap();
    assert_eq!(h.hidden.as_slice(), &[5, 4, 300]);
    assert_eq!(h.num_params, spec.floats());
    assert_eq!(
        read_policy::<3, 5, 2, 1>(&f).unwrap_err(),
        Error::DeserializeShapeMismatch {
            what: "hidden layers",
            expected: 2,
            found: 3
        }
    );
    // No hidden layer at all (a linear policy) is describable too.
    let spec = Spec {
        hidden: vec![],
        ..spec
    };
    let f = file_from(&spec.header(), &vec![0.5f32; spec.floats() as usize]);
    assert_eq!(read_header(&f).unwrap().num_params, 3 * 2 + 2 + 3 + 1);
}

// ---------------------------------------------------------------- writing errors

#[test]
fn write_buffer_too_small() {
    let net = golden_shared();
    let len = encoded_len(&net, None);
    for short in 0..len {
        let mut buf = vec![0u8; short];
        assert_eq!(
            write_policy(&net, None, &mut buf),
            Err(Error::SerializeBufferFull),
            "{short}"
        );
    }
    let mut buf = vec![0xAAu8; len + 7];
    assert_eq!(write_policy(&net, None, &mut buf), Ok(len));
    assert_eq!(&buf[len..], &[0xAA; 7], "wrote past the file");
}

#[test]
fn write_refuses_what_would_not_load() {
    let mut net = golden_shared();
    net.trunks[0].l2.w[1][2] = f32::NAN;
    let mut buf = [0u8; 256];
    assert_eq!(
        write_policy(&net, None, &mut buf),
        Err(Error::SerializeNonFinite)
    );
    let net = golden_shared();
    for norm in [
        ObsNorm {
            mean: [0.0, f32::INFINITY],
            std: [1.0, 1.0],
        },
        ObsNorm {
            mean: [0.0, 0.0],
            std: [1.0, 0.0],
        },
        ObsNorm {
            mean: [0.0, 0.0],
            std: [-1.0, 1.0],
        },
        ObsNorm {
            mean: [0.0, 0.0],
            std: [f32::NAN, 1.0],
        },
    ] {
        assert_eq!(
            write_policy(&net, Some(&norm), &mut buf),
            Err(Error::SerializeNonFinite)
        );
    }
}

// ---------------------------------------------------------------- reading errors

#[test]
fn each_corruption_has_its_own_error() {
    let good = write_vec(&golden_shared(), None);
    let read = |b: &[u8]| read_policy::<2, 3, 2, 1>(b).map(|_| ());
    assert_eq!(read(&good), Ok(()));

    let mut f = good.clone();
    f[0] = b'X';
    assert_eq!(read(&f), Err(Error::DeserializeBadMagic));
    assert_eq!(read(b"PK\x03\x04"), Err(Error::DeserializeBadMagic)); // a zip
    assert_eq!(read(b"AC"), Err(Error::DeserializeTruncated));

    let mut f = good.clone();
    f[4] = 3;
    assert_eq!(read(&f), Err(Error::DeserializeUnsupportedVersion(3)));
    f[4] = 2; // a version this build reads, but the CRC covers the version
    assert_eq!(read(&f), Err(Error::DeserializeBadChecksum));
    f[4..6].copy_from_slice(&0x0100u16.to_le_bytes());
    assert_eq!(read(&f), Err(Error::DeserializeUnsupportedVersion(256)));

    assert_eq!(
        read(&good[..good.len() - 1]),
        Err(Error::DeserializeTruncated)
    );

    let mut f = good.clone();
    f[40] ^= 0x10;
    assert_eq!(read(&f), Err(Error::DeserializeBadChecksum));
    let mut f = good.clone();
    *f.last_mut().unwrap() ^= 1;
    assert_eq!(read(&f), Err(Error::DeserializeBadChecksum));

    let mut f = good.clone();
    f.push(0);
    assert_eq!(read(&f), Err(Error::DeserializeMalformed));

    let mut f = good.clone();
    f[19..23].copy_from_slice(&f32::NAN.to_le_bytes());
    recrc(&mut f);
    assert_eq!(read(&f), Err(Error::DeserializeNonFinite));

    let f = write_vec(
        &SharedActorCritic::<3, 3, 2>::zeros(Activation::Tanh, HeadKind::Categorical),
        None,
    );
    assert_eq!(
        read(&f),
        Err(Error::DeserializeShapeMismatch {
            what: "obs dim",
            expected: 2,
            found: 3
        })
    );
}

#[test]
fn every_prefix_is_truncated() {
    for f in [
        write_vec(&golden_shared(), None),
        write_vec(&golden_separate().0, Some(&golden_separate().1)),
    ] {
        for n in 0..f.len() {
            assert_eq!(
                read_header(&f[..n]),
                Err(Error::DeserializeTruncated),
                "prefix {n}"
            );
            assert_eq!(
                read_policy::<1, 1, 1, 2>(&f[..n]).map(|_| ()),
                Err(Error::DeserializeTruncated)
            );
        }
    }
}

#[test]
fn every_single_bit_flip_is_caught() {
    let good = write_vec(&golden_shared(), None);
    for byte in 0..good.len() {
        for bit in 0..8 {
            let mut f = good.clone();
            f[byte] ^= 1 << bit;
            let e = read_policy::<2, 3, 2, 1>(&f).map(|_| ()).unwrap_err();
            let expected_ok = match byte {
                0..=3 => e == Error::DeserializeBadMagic,
                4..=5 => matches!(e, Error::DeserializeUnsupportedVersion(_)),
                // A longer length: truncated; a shorter one: bytes after the CRC.
                6..=9 => matches!(e, Error::DeserializeTruncated | Error::DeserializeMalformed),
                _ => e == Error::DeserializeBadChecksum,
            };
            assert!(expected_ok, "byte {byte} bit {bit}: {e:?}");
        }
    }
}

#[test]
fn malformed_but_checksummed() {
    let base = Spec {
        obs: 2,
        hidden: vec![3, 3],
        trunks: 1,
        act: 0,
        head: 0,
        actions: 2,
        norm: 0,
    };
    let good = |s: &Spec| file_from(&s.header(), &vec![0.25; s.floats() as usize]);
    assert!(read_header(&good(&base)).is_ok());
    let variants: Vec<(&str, Spec)> = vec![
        (
            "obs 0",
            Spec {
                obs: 0,
                ..base.clone()
            },
        ),
        (
            "hidden size 0",
            Spec {
                hidden: vec![3, 0],
                ..base.clone()
            },
        ),
        (
            "9 hidden layers",
            Spec {
                hidden: vec![1; MAX_HIDDEN_LAYERS + 1],
                ..base.clone()
            },
        ),
        (
            "trunks 0",
            Spec {
                trunks: 0,
                ..base.clone()
            },
        ),
        (
            "trunks 3",
            Spec {
                trunks: 3,
                ..base.clone()
            },
        ),
        (
            "activation 3",
            Spec {
                act: 3,
                ..base.clone()
            },
        ),
        (
            "head 2",
            Spec {
                head: 2,
                ..base.clone()
            },
        ),
        (
            "actions 0",
            Spec {
                actions: 0,
                ..base.clone()
            },
        ),
        (
            "norm flag 2",
            Spec {
                norm: 2,
                ..base.clone()
            },
        ),
    ];
    for (name, s) in variants {
        assert_eq!(
            read_header(&good(&s)),
            Err(Error::DeserializeMalformed),
            "{name}"
        );
    }
    let header = base.header();
    let n = base.floats() as usize;
    for (name, floats) in [
        ("one float short", n - 1),
        ("one float long", n + 1),
        ("empty", 0),
    ] {
        let f = file_from(&header, &vec![0.25; floats]);
        assert_eq!(read_header(&f), Err(Error::DeserializeMalformed), "{name}");
    }
    // Not a whole number of floats.
    let mut body = header.clone();
    body.extend(std::iter::repeat_n(0u8, 4 * n + 1));
    assert_eq!(
        read_header(&file_from_body(&body)),
        Err(Error::DeserializeMalformed)
    );
    // Header cut short by the body length.
    assert_eq!(
        read_header(&file_from_body(&header[..4])),
        Err(Error::DeserializeMalformed)
    );
    assert_eq!(
        read_header(&file_from_body(&[])),
        Err(Error::DeserializeMalformed)
    );
    // An overlong varint (obs 2 as 0x82 0x00) is valid postcard but not canonical.
    let mut body = vec![0x82, 0x00];
    body.extend_from_slice(&header[1..]);
    body.extend(std::iter::repeat_n(0u8, 4 * n));
    assert_eq!(
        read_header(&file_from_body(&body)),
        Err(Error::DeserializeMalformed)
    );
    // A varint longer than u32.
    let mut body = vec![0xFF, 0xFF, 0xFF, 0xFF, 0x1F];
    body.extend_from_slice(&header[1..]);
    assert_eq!(
        read_header(&file_from_body(&body)),
        Err(Error::DeserializeMalformed)
    );
    // Sizes whose parameter count overflows u64.
    let s = Spec {
        obs: u32::MAX,
        hidden: vec![u32::MAX; 8],
        trunks: 2,
        ..base.clone()
    };
    assert_eq!(
        read_header(&file_from(&s.header(), &[])),
        Err(Error::DeserializeMalformed)
    );
    // Normaliser std ≤ 0 (finite).
    let s = Spec {
        norm: 1,
        ..base.clone()
    };
    for std in [0.0f32, -1.0, -0.0] {
        let mut floats = vec![0.25; s.floats() as usize];
        floats[3] = std; // mean[0], mean[1], std[0], std[1]
        assert_eq!(
            read_header(&file_from(&s.header(), &floats)),
            Err(Error::DeserializeMalformed)
        );
    }
}

#[test]
fn non_finite_anywhere() {
    let s = Spec {
        obs: 2,
        hidden: vec![3, 3],
        trunks: 1,
        act: 0,
        head: 1,
        actions: 2,
        norm: 1,
    };
    let n = s.floats() as usize;
    for at in [0, 3, n / 2, n - 1] {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut floats = vec![0.25; n];
            floats[at] = bad;
            let f = file_from(&s.header(), &floats);
            assert_eq!(
                read_header(&f),
                Err(Error::DeserializeNonFinite),
                "{at} {bad}"
            );
        }
    }
}

#[test]
fn shape_mismatch_names_the_dimension() {
    fn mismatch(f: &[u8]) -> Error {
        read_policy::<2, 3, 2, 1>(f).map(|_| ()).unwrap_err()
    }
    let base = Spec {
        obs: 2,
        hidden: vec![3, 3],
        trunks: 1,
        act: 0,
        head: 0,
        actions: 2,
        norm: 0,
    };
    let cases = [
        (
            "obs dim",
            2,
            5,
            Spec {
                obs: 5,
                ..base.clone()
            },
        ),
        (
            "hidden layers",
            2,
            1,
            Spec {
                hidden: vec![3],
                ..base.clone()
            },
        ),
        (
            "hidden layer 1 size",
            3,
            4,
            Spec {
                hidden: vec![4, 3],
                ..base.clone()
            },
        ),
        (
            "hidden layer 2 size",
            3,
            7,
            Spec {
                hidden: vec![3, 7],
                ..base.clone()
            },
        ),
        (
            "trunks",
            1,
            2,
            Spec {
                trunks: 2,
                ..base.clone()
            },
        ),
        (
            "actions",
            2,
            4,
            Spec {
                actions: 4,
                ..base.clone()
            },
        ),
        (
            "action dim",
            2,
            1,
            Spec {
                head: 1,
                actions: 1,
                ..base.clone()
            },
        ),
    ];
    for (what, expected, found, s) in cases {
        let f = file_from(&s.header(), &vec![0.5; s.floats() as usize]);
        assert_eq!(
            mismatch(&f),
            Error::DeserializeShapeMismatch {
                what,
                expected,
                found
            }
        );
    }
}

#[test]
fn failed_read_leaves_the_network_alone() {
    let good = write_vec(&golden_shared(), None);
    let before = random_net::<2, 3, 2, 1>(Activation::Relu, HeadKind::Gaussian, 9);
    let mut net = before;
    let mut bad = good.clone();
    bad[60] ^= 4;
    assert!(read_policy_into(&bad, &mut net).is_err());
    let mut nan = good.clone();
    nan[147..151].copy_from_slice(&f32::INFINITY.to_le_bytes());
    recrc(&mut nan);
    assert_eq!(
        read_policy_into(&nan, &mut net),
        Err(Error::DeserializeNonFinite)
    );
    let other = write_vec(
        &SharedActorCritic::<2, 3, 3>::zeros(Activation::Tanh, HeadKind::Categorical),
        None,
    );
    assert!(matches!(
        read_policy_into(&other, &mut net),
        Err(Error::DeserializeShapeMismatch {
            what: "actions",
            ..
        })
    ));
    assert_eq!(net, before);
}

#[test]
fn file_len_reads_only_the_prefix() {
    let good = write_vec(&golden_shared(), None);
    assert_eq!(file_len(&good[..10]), Ok(good.len()));
    assert_eq!(file_len(&good[..9]), Err(Error::DeserializeTruncated));
    assert_eq!(file_len(&good[..5]), Err(Error::DeserializeTruncated));
    assert_eq!(file_len(&[]), Err(Error::DeserializeTruncated));
    assert_eq!(file_len(b"ACKQ"), Err(Error::DeserializeBadMagic));
    assert_eq!(
        file_len(b"ACKP\x00\x00"),
        Err(Error::DeserializeUnsupportedVersion(0))
    );
    assert_eq!(&MAGIC, b"ACKP");
}

// ---------------------------------------------------------------- never panics

fn sample_files() -> Vec<Vec<u8>> {
    let (sep, norm) = golden_separate();
    vec![
        write_vec(&golden_shared(), None),
        write_vec(&sep, Some(&norm)),
        write_vec(
            &random_net::<4, 8, 2, 2>(Activation::Tanh, HeadKind::Gaussian, 11),
            Some(&random_norm::<4>(12)),
        ),
        write_conv(&golden_conv(), None),
        write_conv(&random_conv(13), Some(&random_norm::<12>(14))),
    ]
}

/// Number of [`sample_files`].
const SAMPLES: usize = 5;

/// Try the bytes as a file of every sample's shape (and as a header); returns whether any
/// reader accepted them. Panics are the failure proptest looks for.
fn try_all(b: &[u8]) -> bool {
    let h = read_header(b).is_ok();
    let a = read_policy::<2, 3, 2, 1>(b).is_ok();
    let c = read_policy::<1, 1, 1, 2>(b).is_ok();
    let d = read_policy::<4, 8, 2, 2>(b).is_ok();
    let mut conv = ConvNet::zeros(Activation::Tanh, HeadKind::Categorical);
    let e = read_policy_into(b, &mut conv).is_ok();
    if a || c || d || e {
        assert!(h, "a file that loads must have a valid header");
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(!try_all(&b));
        // The same behind a valid prefix, so the length and CRC paths are reached.
        for version in [b"\x01\x00", b"\x02\x00"] {
            let mut f = b"ACKP".to_vec();
            f.extend_from_slice(version);
            f.extend_from_slice(&b);
            try_all(&f);
        }
    }

    #[test]
    fn checksummed_random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        // Passes the CRC: exercises the header parser on arbitrary input.
        try_all(&file_from_body(&body));
        try_all(&file_from_body_v(2, &body));
    }

    #[test]
    fn random_headers_load_iff_valid(
        obs in 0u32..4, hidden in prop::collection::vec(0u32..4, 0..10), trunks in 0u32..4,
        act in 0u32..4, head in 0u32..3, actions in 0u32..4, norm in 0u32..3,
        extra in -2i64..=2,
    ) {
        let s = Spec { obs, hidden, trunks, act, head, actions, norm };
        let n = (s.floats() as i64 + extra).max(0) as usize;
        let f = file_from(&s.header(), &vec![1.5; n]);
        let valid = obs >= 1 && s.hidden.len() <= MAX_HIDDEN_LAYERS
            && s.hidden.iter().all(|&h| h >= 1) && (trunks == 1 || trunks == 2) && act < 3
            && head < 2 && actions >= 1 && norm < 2 && extra == 0;
        prop_assert_eq!(read_header(&f).is_ok(), valid);
        if valid {
            prop_assert_eq!(read_header(&f).unwrap().file_len, f.len());
        }
        try_all(&f);
    }

    #[test]
    fn truncations_are_truncated(which in 0usize..SAMPLES, cut in any::<prop::sample::Index>()) {
        let f = &sample_files()[which];
        let n = cut.index(f.len());
        prop_assert_eq!(read_header(&f[..n]), Err(Error::DeserializeTruncated));
        try_all(&f[..n]);
    }

    #[test]
    fn mutations_are_caught(
        which in 0usize..SAMPLES,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let good = &sample_files()[which];
        let mut f = good.clone();
        for (at, x) in &edits {
            f[at.index(good.len())] ^= x;
        }
        if &f != good {
            prop_assert!(read_header(&f).is_err());
            prop_assert!(!try_all(&f));
        }
    }

    #[test]
    fn splices_are_caught(
        which in 0usize..SAMPLES, other in 0usize..SAMPLES,
        a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(),
        c in any::<prop::sample::Index>(), d in any::<prop::sample::Index>(),
        junk in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        // Replace a range of one file with a range of another (or itself), or with junk.
        let files = sample_files();
        let (x, y) = (&files[which], &files[other]);
        let (i, j) = { let (i, j) = (a.index(x.len() + 1), b.index(x.len() + 1)); (i.min(j), i.max(j)) };
        let (k, l) = { let (k, l) = (c.index(y.len() + 1), d.index(y.len() + 1)); (k.min(l), k.max(l)) };
        for insert in [&y[k..l], &junk[..]] {
            let mut f = x[..i].to_vec();
            f.extend_from_slice(insert);
            f.extend_from_slice(&x[j..]);
            if files.iter().all(|g| g != &f) {
                prop_assert!(read_header(&f).is_err());
                prop_assert!(!try_all(&f));
            }
        }
    }
}

// ---------------------------------------------------------------- version 2: a conv encoder

/// The conv net of the version-2 tests: 2 channels 3 high × 2 wide, channel-last, 2 filters
/// 2×2 at stride 1 (2×1 outputs, 4 features), one 2-2 trunk, 2 actions. Height ≠ width and
/// 2 channels so that a swapped size or layout shows.
type ConvEnc = ConvEncoder<2, 2, 2, 1, 8, 3, 2, 2, 1, true>;
type ConvNet = ActorCritic<4, 2, 2, 1, 12, ConvEnc>;

/// Conv header fields as raw wire values: the MLP part (`mlp.obs` is the observation size)
/// and `[kind, C, F, K, S, H, W, layout]`.
#[derive(Clone, Debug)]
struct Spec2 {
    mlp: Spec,
    conv: [u32; 8],
}

impl Spec2 {
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        varint(self.mlp.obs.into(), &mut h);
        for &v in &self.conv {
            varint(v.into(), &mut h);
        }
        let mut obs = Vec::new();
        varint(self.mlp.obs.into(), &mut obs);
        h.extend_from_slice(&self.mlp.header()[obs.len()..]);
        h
    }

    /// Payload floats: the normaliser (of the observation), `F·(C·K·K + 1)`, then the MLP's
    /// with the trunks' input `F·Ho·Wo`.
    fn floats(&self) -> u64 {
        let [_, c, f, k, s, h, w, _] = self.conv.map(u64::from);
        let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
        let mlp = Spec {
            obs: (f * ho * wo) as u32,
            norm: 0,
            ..self.mlp.clone()
        };
        let norm = if self.mlp.norm == 1 {
            2 * u64::from(self.mlp.obs)
        } else {
            0
        };
        norm + f * (c * k * k + 1) + mlp.floats()
    }

    fn file(&self, floats: &[f32]) -> Vec<u8> {
        let mut body = self.header();
        for v in floats {
            body.extend_from_slice(&v.to_le_bytes());
        }
        file_from_body_v(2, &body)
    }
}

fn conv_base() -> Spec2 {
    Spec2 {
        mlp: Spec {
            obs: 12,
            hidden: vec![2, 2],
            trunks: 1,
            act: 1,
            head: 0,
            actions: 2,
            norm: 0,
        },
        conv: [1, 2, 2, 2, 1, 3, 2, 1],
    }
}

/// The payload of a conv net in the spec's order, read field by field.
fn conv_floats(net: &ConvNet, norm: Option<&ObsNorm<12>>) -> Vec<f32> {
    let mut v = Vec::new();
    if let Some(n) = norm {
        v.extend_from_slice(&n.mean);
        v.extend_from_slice(&n.std);
    }
    for f in 0..2 {
        v.extend_from_slice(&net.encoder.conv.w[f]); // (c·K + i)·K + j
    }
    v.extend_from_slice(&net.encoder.conv.b);
    let t = &net.trunks[0];
    t.l1.w.iter().for_each(|r| v.extend_from_slice(r));
    v.extend_from_slice(&t.l1.b);
    t.l2.w.iter().for_each(|r| v.extend_from_slice(r));
    v.extend_from_slice(&t.l2.b);
    net.pi.w.iter().for_each(|r| v.extend_from_slice(r));
    v.extend_from_slice(&net.pi.b);
    v.extend_from_slice(&net.v.w[0]);
    v.push(net.v.b[0]);
    v
}

/// Relu, categorical; the k-th stored parameter (file order) is `(k − 20)·0.25`.
fn golden_conv() -> ConvNet {
    let mut net = ConvNet::zeros(Activation::Relu, HeadKind::Categorical);
    let mut k = 0.0f32;
    let mut next = || {
        let v = (k - 20.0) * 0.25;
        k += 1.0;
        v
    };
    let e = &mut net.encoder.conv;
    e.w.iter_mut().flatten().for_each(|p| *p = next());
    e.b.iter_mut().for_each(|p| *p = next());
    let t = &mut net.trunks[0];
    t.l1.w.iter_mut().flatten().for_each(|p| *p = next());
    t.l1.b.iter_mut().for_each(|p| *p = next());
    t.l2.w.iter_mut().flatten().for_each(|p| *p = next());
    t.l2.b.iter_mut().for_each(|p| *p = next());
    net.pi.w.iter_mut().flatten().for_each(|p| *p = next());
    net.pi.b.iter_mut().for_each(|p| *p = next());
    net.v.w.iter_mut().flatten().for_each(|p| *p = next());
    net.v.b.iter_mut().for_each(|p| *p = next());
    net
}

fn random_conv(seed: u64) -> ConvNet {
    let mut rng = Rng(seed);
    let mut net = ConvNet::new(Activation::Tanh, HeadKind::Categorical, &mut rng);
    net.map_mut(|p| *p += rng.sym());
    net.log_std = [0.0; 2];
    net
}

fn write_conv(net: &ConvNet, norm: Option<&ObsNorm<12>>) -> Vec<u8> {
    let mut buf = vec![0u8; encoded_len(net, norm)];
    let n = write_policy(net, norm, &mut buf).expect("write");
    assert_eq!(n, buf.len());
    buf
}

const GOLDEN_CONV: &str = "
    41434b50 0200 bd000000
    0c 01 02 02 02 01 03 02 01 02020201010002 00
    0000a0c0 000098c0 000090c0 000088c0 000080c0 000070c0 000060c0 000050c0
    000040c0 000030c0 000020c0 000010c0 000000c0 0000e0bf 0000c0bf 0000a0bf
    000080bf 000040bf 000000bf 000080be 00000000 0000803e 0000003f 0000403f
    0000803f 0000a03f 0000c03f 0000e03f 00000040 00001040 00002040 00003040
    00004040 00005040 00006040 00007040 00008040 00008840 00009040 00009840
    0000a040 0000a840 0000b040
    9ad09987
    ";

#[test]
fn golden_conv_channel_last() {
    assert_eq!(VERSION, 2);
    let net = golden_conv();
    let bytes = write_conv(&net, None);
    // Field by field, from the spec.
    assert_eq!(bytes.len(), 10 + 17 + 43 * 4 + 4);
    assert_eq!(&bytes[4..6], &[0x02, 0x00]); // version 2: an encoder
    assert_eq!(&bytes[6..10], &[189, 0, 0, 0]); // 17 header + 43 floats · 4
                                                // obs 12 | conv kind 1, C 2, F 2, K 2, S 1, H 3, W 2, channel-last 1 |
                                                // 2 layers: 2, 2 | 1 trunk | relu 1 | categorical 0 | 2 actions | no norm
    assert_eq!(
        &bytes[10..27],
        &[12, 1, 2, 2, 2, 1, 3, 2, 1, 2, 2, 2, 1, 1, 0, 2, 0]
    );
    assert_eq!(&bytes[27..31], &(-5.0f32).to_le_bytes()); // conv W[0][0] = (0 − 20)·0.25
    assert_eq!(&bytes[27 + 4 * 16..27 + 4 * 17], &(-1.0f32).to_le_bytes()); // conv b[0]
    assert_eq!(&bytes[27 + 4 * 42..27 + 4 * 43], &5.5f32.to_le_bytes()); // b_v
    assert_eq!(&bytes[199..203], &crc32c(&bytes[..199]).to_le_bytes());
    let spec = conv_base();
    assert_eq!(spec.floats(), 43);
    assert_eq!(bytes, spec.file(&conv_floats(&net, None)));
    // The pinned bytes, both ways.
    assert_eq!(bytes, hex(GOLDEN_CONV), "golden bytes changed");
    let mut back = ConvNet::zeros(Activation::Tanh, HeadKind::Gaussian);
    assert_eq!(read_policy_into(&hex(GOLDEN_CONV), &mut back), Ok(None));
    assert_eq!(back, net);

    let h = read_header(&bytes).unwrap();
    assert_eq!(h.version, 2);
    assert_eq!(h.obs_dim, 12);
    assert_eq!(
        h.encoder,
        Some(ConvSpec {
            channels: 2,
            filters: 2,
            kernel: 2,
            stride: 1,
            height: 3,
            width: 2,
            channels_last: true
        })
    );
    assert_eq!(h.num_params, 43);
    assert_eq!(h.num_params as usize, ConvNet::num_params() - 2); // no log-std stored
}

#[test]
fn conv_roundtrip_with_normaliser_and_the_parts_writer() {
    let net = random_conv(21);
    let norm = random_norm::<12>(22);
    let bytes = write_conv(&net, Some(&norm));
    let mut spec = conv_base();
    spec.mlp.act = 0;
    spec.mlp.norm = 1;
    assert_eq!(bytes, spec.file(&conv_floats(&net, Some(&norm))));
    let mut back = ConvNet::zeros(Activation::Relu, HeadKind::Gaussian);
    back.log_std = [3.0; 2];
    assert_eq!(read_policy_into(&bytes, &mut back), Ok(Some(norm)));
    assert_eq!(back, net);

    // The run-time writer (the tch backend's) gives the same bytes.
    let conv = <ConvEnc as Encoder<12, 4>>::SPEC.unwrap();
    let arch = PolicyArch {
        obs_dim: 12,
        hidden: heapless::Vec::from_slice(&[2, 2]).unwrap(),
        trunks: 1,
        activation: Activation::Tanh,
        head: HeadKind::Categorical,
        actions: 2,
        normalized: true,
    };
    let floats = conv_floats(&net, None);
    assert_eq!(encoded_len_conv_parts(&conv, &arch), Some(bytes.len()));
    let mut buf = vec![0u8; bytes.len()];
    let n = write_conv_policy_parts(
        &conv,
        &arch,
        &[&floats],
        Some((&norm.mean, &norm.std)),
        &mut buf,
    );
    assert_eq!(n, Ok(bytes.len()));
    assert_eq!(buf, bytes);
    // Parts that do not add up, an encoder that does not fit the observation, or an invalid
    // one are refused.
    assert_eq!(
        write_conv_policy_parts(
            &conv,
            &arch,
            &[&floats[1..]],
            Some((&norm.mean, &norm.std)),
            &mut buf
        ),
        Err(Error::SerializeShapeMismatch)
    );
    let other = PolicyArch {
        obs_dim: 13,
        ..arch.clone()
    };
    assert_eq!(encoded_len_conv_parts(&conv, &other), None);
    for bad in [
        ConvSpec { kernel: 0, ..conv },
        ConvSpec { kernel: 4, ..conv },
        ConvSpec {
            stride: 2,
            height: 4,
            width: 2,
            channels: 3,
            ..conv
        }, // (4 − 2) % 2 = 0 but obs 24
        ConvSpec { stride: 2, ..conv }, // (3 − 2) % 2 ≠ 0: a row unread
    ] {
        assert_eq!(
            write_conv_policy_parts(
                &bad,
                &arch,
                &[&floats],
                Some((&norm.mean, &norm.std)),
                &mut buf
            ),
            Err(Error::SerializeShapeMismatch),
            "{bad:?}"
        );
    }
    // An MLP written through the parts writer stays version 1.
    let mlp = PolicyArch {
        obs_dim: 4,
        normalized: false,
        ..arch
    };
    let n = encoded_len_parts(&mlp).unwrap();
    let mut buf = vec![0u8; n];
    assert_eq!(
        write_policy_parts(&mlp, &[&floats[18..]], None, &mut buf),
        Ok(n)
    );
    assert_eq!(&buf[4..6], &[1, 0]);
}

#[test]
fn minatar_small_roundtrip() {
    // 10 + 18 header (obs 400 takes 2 bytes) + 4 · 3,528 floats (no log-std) + 4.
    let mut rng = Rng(5);
    let net = MinAtarSmall::new(Activation::Relu, HeadKind::Categorical, &mut rng);
    assert_eq!(encoded_len(&net, None), 10 + 18 + 4 * 3528 + 4);
    let mut buf = vec![0u8; encoded_len(&net, None)];
    let n = write_policy(&net, None, &mut buf).unwrap();
    let mut back = MinAtarSmall::zeros(Activation::Tanh, HeadKind::Categorical);
    read_policy_into(&buf[..n], &mut back).unwrap();
    assert_eq!(back, net);
}

#[test]
fn conv_shape_mismatch_names_the_dimension() {
    let mut into = random_conv(3);
    let before = into;
    let mut mismatch = |f: &[u8]| read_policy_into(f, &mut into).map(|_| ()).unwrap_err();
    // [kind, C, F, K, S, H, W, layout], each with the observation size 12 (C·H·W) of the net.
    // (A stride mismatch needs another net: with K 2 on 3×2 only stride 1 tiles.)
    let cases = [
        ("conv channels", 2, 1, [1, 1, 2, 2, 1, 3, 4, 1]),
        ("conv filters", 2, 3, [1, 2, 3, 2, 1, 3, 2, 1]),
        ("conv kernel", 2, 1, [1, 2, 2, 1, 1, 3, 2, 1]),
        ("conv height", 3, 2, [1, 2, 2, 2, 1, 2, 3, 1]),
        ("conv layout", 1, 0, [1, 2, 2, 2, 1, 3, 2, 0]),
    ];
    for (what, expected, found, conv) in cases {
        let s = Spec2 {
            conv,
            ..conv_base()
        };
        let f = s.file(&vec![0.5; s.floats() as usize]);
        assert!(read_header(&f).is_ok(), "{what}");
        assert_eq!(
            mismatch(&f),
            Error::DeserializeShapeMismatch {
                what,
                expected,
                found
            },
        );
    }
    // A version-1 file of the same observation size into the conv net.
    let v1 = Spec {
        obs: 12,
        ..conv_base().mlp
    };
    let f = file_from(&v1.header(), &vec![0.5; v1.floats() as usize]);
    assert_eq!(
        mismatch(&f),
        Error::DeserializeShapeMismatch {
            what: "encoder",
            expected: 1,
            found: 0
        }
    );
    // The trunks are compared after the encoder.
    let mut s = conv_base();
    s.mlp.hidden = vec![2, 3];
    let f = s.file(&vec![0.5; s.floats() as usize]);
    assert_eq!(
        mismatch(&f),
        Error::DeserializeShapeMismatch {
            what: "hidden layer 2 size",
            expected: 2,
            found: 3
        }
    );
    assert_eq!(into, before, "a refused file leaves the net alone");
    // A version-2 file into an MLP of the observation's size.
    assert_eq!(
        read_policy::<12, 2, 2, 1>(&write_conv(&golden_conv(), None)).map(|_| ()),
        Err(Error::DeserializeShapeMismatch {
            what: "encoder",
            expected: 0,
            found: 1
        })
    );
}

#[test]
fn conv_malformed_but_checksummed() {
    let base = conv_base();
    let good = |s: &Spec2| s.file(&vec![0.25; s.floats() as usize]);
    assert!(read_header(&good(&base)).is_ok());
    let with = |i: usize, v: u32| {
        let mut s = base.clone();
        s.conv[i] = v;
        s
    };
    for (name, s) in [
        ("kind 0", with(0, 0)),
        ("kind 2", with(0, 2)),
        ("channels 0", with(1, 0)),
        ("filters 0", with(2, 0)),
        ("kernel 0", with(3, 0)),
        ("kernel above the width", with(3, 3)),
        ("stride 0", with(4, 0)),
        ("height 0", with(5, 0)),
        ("width 0", with(6, 0)),
        ("layout 2", with(7, 2)),
        (
            "obs dim ≠ C·H·W",
            Spec2 {
                mlp: Spec {
                    obs: 13,
                    ..base.mlp.clone()
                },
                ..base.clone()
            },
        ),
    ] {
        // floats() needs a geometry: give the others a payload of the base's length.
        let [_, c, f, k, st, h, w, _] = s.conv;
        let geometry = c.min(f).min(k).min(st).min(h).min(w) >= 1 && k <= h.min(w);
        let n = if geometry { s.floats() } else { base.floats() };
        let f = s.file(&vec![0.25; n as usize]);
        assert_eq!(read_header(&f), Err(Error::DeserializeMalformed), "{name}");
    }
    // Sizes whose products overflow u64 (C·H·W, F·Ho·Wo, F·C·K·K): refused, no overflow.
    for conv in [
        [1, u32::MAX, 1, 1, 1, u32::MAX, u32::MAX, 0],
        [1, 1, u32::MAX, 1, 1, u32::MAX, u32::MAX, 0],
        [1, u32::MAX, u32::MAX, u32::MAX, 1, u32::MAX, u32::MAX, 0],
    ] {
        let mlp = Spec {
            obs: u32::MAX,
            ..base.mlp.clone()
        };
        let s = Spec2 { mlp, conv };
        let f = s.file(&[0.25; 8]);
        assert_eq!(
            read_header(&f),
            Err(Error::DeserializeMalformed),
            "{conv:?}"
        );
    }
    // A stride that leaves a row unread (H 3, K 2, S 2), with the payload it would imply.
    let mut s = base.clone();
    s.conv = [1, 2, 2, 2, 2, 3, 2, 1];
    let f = s.file(&vec![0.25; s.floats() as usize]);
    assert_eq!(read_header(&f), Err(Error::DeserializeMalformed));
    // One float short or long.
    let n = base.floats() as usize;
    for m in [n - 1, n + 1, 0] {
        assert_eq!(
            read_header(&base.file(&vec![0.25; m])),
            Err(Error::DeserializeMalformed)
        );
    }
    // A version-2 header under version 1, and a version-1 header under version 2.
    let floats: Vec<u8> = vec![0.25f32; n]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut body = base.header();
    body.extend_from_slice(&floats);
    assert_eq!(
        read_header(&file_from_body_v(1, &body)),
        Err(Error::DeserializeMalformed)
    );
    let v1 = Spec {
        obs: 12,
        ..base.mlp.clone()
    };
    let mut body = v1.header();
    body.extend(std::iter::repeat_n(0u8, 4 * v1.floats() as usize));
    assert_eq!(
        read_header(&file_from_body_v(2, &body)),
        Err(Error::DeserializeMalformed)
    );
    // An overlong varint in the encoder (C 2 as 0x82 0x00).
    let h = base.header();
    let mut body = h[..2].to_vec();
    body.extend_from_slice(&[0x82, 0x00]);
    body.extend_from_slice(&h[3..]);
    body.extend_from_slice(&floats);
    assert_eq!(
        read_header(&file_from_body_v(2, &body)),
        Err(Error::DeserializeMalformed)
    );
    // Non-finite conv weights.
    let mut fl = vec![0.25f32; n];
    fl[3] = f32::NAN;
    assert_eq!(
        read_header(&base.file(&fl)),
        Err(Error::DeserializeNonFinite)
    );
}

#[test]
fn conv_every_prefix_and_bit_flip() {
    let good = write_conv(&golden_conv(), None);
    let mut net = ConvNet::zeros(Activation::Tanh, HeadKind::Categorical);
    for n in 0..good.len() {
        assert_eq!(
            read_header(&good[..n]),
            Err(Error::DeserializeTruncated),
            "prefix {n}"
        );
    }
    for byte in 0..good.len() {
        for bit in 0..8 {
            let mut f = good.clone();
            f[byte] ^= 1 << bit;
            let e = read_policy_into(&f, &mut net).map(|_| ()).unwrap_err();
            let expected_ok = match byte {
                0..=3 => e == Error::DeserializeBadMagic,
                4..=5 => matches!(
                    e,
                    Error::DeserializeUnsupportedVersion(_) | Error::DeserializeBadChecksum
                ),
                6..=9 => matches!(e, Error::DeserializeTruncated | Error::DeserializeMalformed),
                _ => e == Error::DeserializeBadChecksum,
            };
            assert!(expected_ok, "byte {byte} bit {bit}: {e:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_conv_headers_load_iff_valid(
        kind in 0u32..3, c in 0u32..3, f in 0u32..3, k in 0u32..4, s in 0u32..3,
        h in 0u32..5, w in 0u32..5, layout in 0u32..3, obs_delta in -1i64..=1,
        hidden in prop::collection::vec(0u32..3, 0..3), extra in -1i64..=1,
    ) {
        let geometry = c >= 1 && f >= 1 && k >= 1 && s >= 1 && k <= h && k <= w
            && (h - k) % s == 0 && (w - k) % s == 0;
        let obs = (i64::from(c * h * w) + obs_delta).max(0) as u32;
        let spec = Spec2 {
            mlp: Spec { obs, hidden, trunks: 1, act: 1, head: 0, actions: 2, norm: 0 },
            conv: [kind, c, f, k, s, h, w, layout],
        };
        let n = if geometry { spec.floats() as i64 } else { 40 };
        let file = spec.file(&vec![0.5; (n + extra).max(0) as usize]);
        let valid = geometry && kind == 1 && layout < 2 && obs_delta == 0 && obs >= 1
            && spec.mlp.hidden.iter().all(|&x| x >= 1) && extra == 0;
        prop_assert_eq!(read_header(&file).is_ok(), valid);
        if valid {
            let hd = read_header(&file).unwrap();
            prop_assert_eq!(hd.file_len, file.len());
            prop_assert_eq!(hd.num_params, spec.floats());
        }
        try_all(&file);
    }
}
