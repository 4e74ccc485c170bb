//! The policy file (docs/format.md).
//!
//! Where the truth comes from: expected files are built here from the spec alone, with this
//! file's own LEB128 varint writer and its own bitwise CRC-32C (checked against the catalogue
//! check value `"123456789"` → `0xE3069283`), never with the crate's encoder. The golden hex
//! literals were printed once by `write_policy` and are pinned so that any change of the bytes
//! is seen; they are also compared with the spec-built files and checked field by field.

mod common;

use acktr_core::{
    encoded_len, file_len, read_header, read_policy, read_policy_into, write_policy, Activation,
    ActorCritic, Error, HeadKind, ObsNorm, SeparateActorCritic, SharedActorCritic, MAGIC,
    MAX_HIDDEN_LAYERS, VERSION,
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
    let mut f = b"ACKP".to_vec();
    f.extend_from_slice(&1u16.to_le_bytes());
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
    assert_eq!(h.version, VERSION);
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
    f[4] = 2;
    assert_eq!(read(&f), Err(Error::DeserializeUnsupportedVersion(2)));
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
        read_policy_into::<2, 3, 2, 1>(&other, &mut net),
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
    ]
}

/// Try the bytes as a file of every sample's shape (and as a header); returns whether any
/// reader accepted them. Panics are the failure proptest looks for.
fn try_all(b: &[u8]) -> bool {
    let h = read_header(b).is_ok();
    let a = read_policy::<2, 3, 2, 1>(b).is_ok();
    let c = read_policy::<1, 1, 1, 2>(b).is_ok();
    let d = read_policy::<4, 8, 2, 2>(b).is_ok();
    if a || c || d {
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
        let mut f = b"ACKP\x01\x00".to_vec();
        f.extend_from_slice(&b);
        try_all(&f);
    }

    #[test]
    fn checksummed_random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        // Passes the CRC: exercises the header parser on arbitrary input.
        try_all(&file_from_body(&body));
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
    fn truncations_are_truncated(which in 0usize..3, cut in any::<prop::sample::Index>()) {
        let f = &sample_files()[which];
        let n = cut.index(f.len());
        prop_assert_eq!(read_header(&f[..n]), Err(Error::DeserializeTruncated));
        try_all(&f[..n]);
    }

    #[test]
    fn mutations_are_caught(
        which in 0usize..3,
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
        which in 0usize..3, other in 0usize..3,
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
