//! The `acktr` binary as a user runs it: training to a target with both backends, export into
//! the core's format, and every bad input ending in a clear message and a non-zero exit.
//!
//! `acktr` is the lean binary (no libtorch): the tests of libtorch work go through its hand-over
//! to `acktr-torch` in the same folder, which `cargo test --workspace` builds (it is the binary of
//! the workspace member acktr-torch, which has integration tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn acktr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acktr"))
        .args(args)
        .output()
        .expect("run acktr")
}

/// `acktr-torch` next to `acktr`: the tests that need libtorch fail clearly without it.
fn torch_sibling() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_acktr"))
        .with_file_name(format!("acktr-torch{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.is_file(),
        "{} is missing: the libtorch tests need it (run `cargo test --workspace`, or \
         `cargo build -p acktr-torch` with this profile first)",
        p.display()
    );
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `acktr args` fails with a message containing `needle`, without a panic trace.
fn assert_refused(args: &[&str], needle: &str) {
    let o = acktr(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

/// `acktr export RUN -o RUN.ackp`, which must succeed: the file's bytes.
fn export_bytes(run: &Path) -> Vec<u8> {
    let file = run.with_extension("ackp");
    let o = acktr(&[
        "export",
        run.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "export {}: {}",
        run.display(),
        stderr(&o)
    );
    std::fs::read(&file).unwrap()
}

fn eval_rows(run: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(run.join("progress.csv")).expect("progress.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let steps = header
        .iter()
        .position(|h| *h == "time/total_timesteps")
        .expect("steps column");
    let eval = header
        .iter()
        .position(|h| *h == "eval/mean_reward")
        .expect("eval column");
    lines
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            Some((c.get(steps)?.parse().ok()?, c.get(eval)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn tch_acktr_solves_cartpole() {
    torch_sibling();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = acktr(&[
        "train",
        "--env",
        "CartPole-v1",
        "--backend",
        "tch",
        "--seed",
        "0",
        "--total-steps",
        "200000",
        "--eval-every",
        "3200",
        "--stop-at",
        "475",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let evals = eval_rows(&run);
    let best = evals.iter().map(|e| e.1).fold(f64::MIN, f64::max);
    assert!(
        best >= 475.0,
        "best 20-episode evaluation {best} after {:?}",
        evals.last()
    );
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"backend\": \"Tch\""), "{config}");
}

#[test]
fn native_run_exports_a_policy_the_core_loads() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = acktr(&[
        "train",
        "--env",
        "CartPole-v1",
        "--total-steps",
        "6400",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(
        config.contains("\"backend\": \"Native\""),
        "auto picks native for a 64-64 MLP: {config}"
    );
    // The sample preset's separate actor and critic trunks.
    assert!(config.contains("\"separate\": true"), "{config}");
    let bytes = export_bytes(&run);
    let (net, norm) =
        acktr_core::read_policy::<4, 64, 2, 2>(&bytes).expect("the core loads the export");
    assert!(norm.is_none() && net.is_finite());
    // Exporting leaves the run usable: it still evaluates. (That the core acts as the trained
    // policy is checked in tests/tests/native_vs_core.rs and, for tch, torch/tests/export_core.rs.)
    let o = acktr(&["eval", run.to_str().unwrap(), "--episodes", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The CartPole firmware's net as docs/embedded.md trains it (one shared 32-32 tanh trunk): the
/// sample preset's own critic trust region needs separate trunks, so `--separate false` alone
/// is refused with the way out; with `--preset fast` the export is the shape the firmware reads.
#[test]
fn a_shared_trunk_for_the_firmware_needs_the_fast_preset() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let net = [
        "train",
        "--env",
        "CartPole-v1",
        "--arch",
        "mlp",
        "--hidden",
        "32,32",
        "--separate",
        "false",
        "--activation",
        "tanh",
        "--total-steps",
        "3200",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ];
    assert_refused(&net, "add --preset fast");
    assert!(!run.exists(), "a refused run writes nothing");
    let o = acktr(&[&net[..], &["--preset", "fast"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = export_bytes(&run);
    let (net, _) = acktr_core::read_policy::<4, 32, 2, 1>(&bytes).expect("the firmware's shape");
    assert!(net.is_finite());
}

/// The small MinAtar conv net (`--arch minatar-small`) end to end on the native backend:
/// train, resume, export (a version-2 policy file), evaluate; then acktr-core's `MinAtarSmall`
/// loaded from the export acts as the run's checkpointed agent: the same deterministic action
/// and the same value (bit for bit: the same core code on the same weights) on observations of
/// the core's own Breakout, channel-last for the core and channel-first (the host env's
/// layout) for the agent.
#[test]
fn minatar_small_trains_natively_and_exports_what_the_core_runs() {
    conv_run_exports_what_the_core_runs::<64, 32, acktr_core::MinAtarSmallEncoder>(
        &["--arch", "minatar-small"],
        "MinatarSmall",
        "conv 4×4×4 stride 2 on 4×10×10",
        14_144,
    );
}

#[test]
fn minatar_breakouts_default_is_the_native_medium_net() {
    // No --arch: the preset's net (8 filters, one 64-64 trunk), native, exported as version 2.
    conv_run_exports_what_the_core_runs::<
        128,
        64,
        acktr_core::ConvEncoder<4, 8, 4, 2, 64, 10, 10, 4, 4, true>,
    >(
        &[],
        "MinatarMedium",
        "conv 8×4×4 stride 2 on 4×10×10",
        10 + 18 + 4 * (8 * 65 + 64 * 129 + 64 * 65 + 3 * 65 + 65) + 4,
    );
}

/// MinAtar Asterix (4 channels, 5 actions) and SpaceInvaders (6 channels, 4 actions) through
/// Gymnasium: no --arch gives the native medium net built for the game, and the export is
/// that net as a version-2 file the core reads back with the game's sizes.
#[test]
fn minatar_asterix_and_space_invaders_default_to_native_medium_nets() {
    use acktr_core::{
        read_header, read_policy_into, Activation, ActorCritic, ConvEncoder, HeadKind,
    };
    fn check<const C: usize, const N: usize, const IN: usize, const A: usize>(id: &str) {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let r = run.to_str().unwrap();
        let o = acktr(&[
            "train",
            "--env",
            id,
            "--total-steps",
            "800",
            "--eval-episodes",
            "0",
            "--out",
            r,
            "--quiet",
        ]);
        assert!(o.status.success(), "{id}: {}", stderr(&o));
        let config = std::fs::read_to_string(run.join("config.json")).unwrap();
        for want in [
            "\"backend\": \"Native\"".to_string(),
            "\"arch\": \"MinatarMedium\"".to_string(),
            format!("conv 8×4×4 stride 2 on {C}×10×10 → 128-64-64 shared trunk"),
        ] {
            assert!(config.contains(&want), "{id}: {want}: {config}");
        }
        let bytes = export_bytes(&run);
        let h = read_header(&bytes).unwrap();
        assert_eq!((h.version, h.obs_dim as usize), (2, IN), "{id}");
        let mut net = ActorCritic::<
            128,
            64,
            A,
            1,
            IN,
            ConvEncoder<C, 8, 4, 2, N, 10, 10, 4, 4, true>,
        >::zeros(Activation::Tanh, HeadKind::Gaussian);
        assert_eq!(read_policy_into(&bytes, &mut net), Ok(None), "{id}");
        assert!(net.is_finite() && net.head == HeadKind::Categorical, "{id}");
    }
    check::<4, 64, 400, 5>("MinAtar/Asterix-v1");
    check::<6, 96, 600, 4>("MinAtar/SpaceInvaders-v1");
}

/// Train MinAtar/Breakout-v1 with `arch` (800 env steps, then `--resume` to 1,600), check the
/// run's settings, `eval` it, `export` it, read the file into the core's net (`X` features,
/// hidden `H`, encoder `E`) and check that the core acts as the checkpointed host agent on
/// 300 Breakout states (same deterministic actions, bit-identical values).
fn conv_run_exports_what_the_core_runs<const X: usize, const H: usize, E>(
    arch: &[&str],
    arch_name: &str,
    network: &str,
    file_len: usize,
) where
    E: acktr_core::Encoder<400, X>,
{
    use acktr_core::env::{Action, Breakout, Env, Pcg64, BREAKOUT_OBS};
    use acktr_core::{read_header, read_policy_into, Activation, ActorCritic, HeadKind};
    use rand_core::SeedableRng;

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let common = [
        &["--env", "MinAtar/Breakout-v1", "--out", r, "--quiet"][..],
        &["--eval-episodes", "0"],
        arch,
    ]
    .concat();
    let o = acktr(&[&["train", "--total-steps", "800"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = acktr(&[&["train", "--resume", "--total-steps", "1600"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    for want in [
        "\"backend\": \"Native\"",
        &format!("\"arch\": \"{arch_name}\""),
        "\"num_steps\": 5",
        &format!("\"{network}"),
    ] {
        assert!(config.contains(want), "{want}: {config}");
    }
    let o = acktr(&["eval", r, "--episodes", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let bytes = export_bytes(&run);
    assert_eq!(bytes, std::fs::read(run.join("policy.ackp")).unwrap());
    let h = read_header(&bytes).unwrap();
    assert_eq!((h.version, h.obs_dim, bytes.len()), (2, 400, file_len));
    let mut net = ActorCritic::<X, H, 3, 1, 400, E>::zeros(Activation::Tanh, HeadKind::Gaussian);
    assert_eq!(read_policy_into(&bytes, &mut net), Ok(None));
    assert_eq!(
        (net.activation, net.head),
        (Activation::Relu, HeadKind::Categorical)
    );
    // An MLP reader refuses it by name.
    assert!(matches!(
        acktr_core::read_policy::<400, H, 3, 1>(&bytes),
        Err(acktr_core::Error::DeserializeShapeMismatch {
            what: "encoder",
            ..
        })
    ));

    let (_, mut agent) = acktr_host::train::load_run(&run).expect("load the run");
    let mut env = Breakout::default();
    let mut rng = Pcg64::seed_from_u64(7);
    let mut obs = env.reset(Some(3));
    let mut actions_seen = [0usize; 3];
    for t in 0..300 {
        // Channel-first for the host agent: plane c holds channel c of every cell.
        let chw: Vec<f32> = (0..4)
            .flat_map(|c| obs.iter().skip(c).step_by(4).copied())
            .collect();
        assert_eq!(chw.len(), BREAKOUT_OBS);
        let (a, v) = agent.act(&chw, 1, true).unwrap();
        let core_a = net.act_deterministic(&obs);
        assert_eq!(a, core_a.to_vec(), "step {t}");
        assert_eq!(v[0].to_bits(), net.value(&obs).to_bits(), "step {t}");
        let k = core_a.iter().position(|&x| x == 1.0).unwrap();
        actions_seen[k] += 1;
        // Move by a random action so that the states vary.
        let tr = env
            .step(Action::Discrete((rng.next_u32() % 3) as usize))
            .unwrap();
        obs = if tr.terminated {
            env.reset(None)
        } else {
            tr.obs
        };
    }
    assert!(actions_seen.iter().filter(|&&n| n > 0).count() >= 1);
}

#[test]
fn conv_policies_refuse_export_with_a_reason() {
    // The MinAtar conv net (`--arch minatar`, tch only) has no core counterpart: a clear
    // error that names what can be exported, not a panic.
    torch_sibling();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = acktr(&[
        "train",
        "--env",
        "MinAtar/Breakout-v1",
        "--arch",
        "minatar",
        "--total-steps",
        "320",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--eval-episodes",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = acktr(&[
        "export",
        run.to_str().unwrap(),
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("only MLP policies and --arch minatar-small can be exported"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_lean_binary_hands_libtorch_work_to_acktr_torch() {
    torch_sibling();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let o = acktr(&[
        "train",
        "--env",
        "CartPole-v1",
        "--backend",
        "tch",
        "--total-steps",
        "640",
        "--eval-episodes",
        "0",
        "--out",
        r,
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("backend Tch"), "{err}");
    assert!(!err.contains("error"), "{err}");
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"backend\": \"Tch\""), "{config}");
    // Loading a tch run hands over too.
    let o = acktr(&["eval", r, "--episodes", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 episodes"),
        "{o:?}"
    );
}

#[test]
fn without_acktr_torch_libtorch_work_is_refused_before_any_write() {
    // A copy of the lean binary alone in a folder: no sibling to hand over to.
    let dir = tempfile::tempdir().unwrap();
    let lone = dir
        .path()
        .join(format!("acktr{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(env!("CARGO_BIN_EXE_acktr"), &lone).unwrap();
    let run = dir.path().join("run");
    let cases: [&[&str]; 3] = [
        &["train", "--backend", "tch"],
        &["train", "--env", "CartPole-v1", "--device", "cuda"],
        &["train", "--env", "CartPole-v1", "--arch", "minatar"],
    ];
    for args in cases {
        let o = Command::new(&lone)
            .args(args)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("needs libtorch"), "{args:?}: {err}");
        assert!(
            err.contains("cargo build --release -p acktr-torch"),
            "{args:?}: {err}"
        );
        assert!(!run.exists(), "{args:?} created the run folder");
    }
    // Native work is unaffected.
    let o = Command::new(&lone)
        .args([
            "train",
            "--total-steps",
            "640",
            "--eval-episodes",
            "0",
            "--quiet",
        ])
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
#[cfg(target_os = "linux")]
fn the_lean_binary_does_not_link_libtorch() {
    let Ok(o) = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_acktr")])
        .output()
    else {
        eprintln!("readelf not found: skipped");
        return;
    };
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("NEEDED"), "{text}");
    for lib in ["libtorch", "libc10"] {
        assert!(!text.contains(lib), "acktr needs {lib}: {text}");
    }
}

#[test]
fn bad_input_gives_a_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "train".into(),
                "--env".into(),
                "NoSuchEnv-v9".into(),
                "--out".into(),
                out("a"),
            ],
            "NoSuchEnv",
        ),
        (
            vec![
                "train".into(),
                "--num-envs".into(),
                "0".into(),
                "--out".into(),
                out("b"),
            ],
            "--num-envs",
        ),
        (
            vec![
                "train".into(),
                "--hidden".into(),
                "0,64".into(),
                "--out".into(),
                out("c"),
            ],
            "--hidden",
        ),
        (
            vec![
                "train".into(),
                "--damping=-1".into(),
                "--out".into(),
                out("d"),
            ],
            "damping",
        ),
        (
            vec![
                "train".into(),
                "--backend".into(),
                "native".into(),
                "--hidden".into(),
                "48,48".into(),
                "--out".into(),
                out("e"),
            ],
            "built in",
        ),
        (vec!["eval".into(), out("missing")], "config.json"),
        // A first-order step of 1e30 makes the weights overflow: a non-finite loss is an error.
        (
            vec![
                "train".into(),
                "--algo".into(),
                "a2c".into(),
                "--lr".into(),
                "1e30".into(),
                "--max-grad-norm".into(),
                "0".into(),
                "--total-steps".into(),
                "20000".into(),
                "--out".into(),
                out("f"),
            ],
            "non-finite",
        ),
        (
            vec![
                "train".into(),
                "--stop-at-train-mean".into(),
                "100".into(),
                "--train-mean-window".into(),
                "0".into(),
                "--out".into(),
                out("g"),
            ],
            "--train-mean-window must be at least 1",
        ),
        (
            vec![
                "train".into(),
                "--stop-at-train-mean".into(),
                "nan".into(),
                "--out".into(),
                out("h"),
            ],
            "--stop-at-train-mean must be a finite return",
        ),
    ];
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_refused(&a, needle);
    }
}

/// A tch run whose checkpoints were overwritten: `--resume` and `eval` both refuse with a
/// message naming the checkpoint, and no panic.
#[test]
fn unreadable_tch_checkpoint_is_reported_on_resume() {
    torch_sibling();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let common = [
        "--backend",
        "tch",
        "--out",
        r,
        "--quiet",
        "--eval-episodes",
        "0",
    ];
    let o = acktr(&[&["train", "--total-steps", "3200"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["checkpoint.ackc", "checkpoint.prev.ackc"] {
        if run.join(f).exists() {
            std::fs::write(run.join(f), b"garbage").unwrap();
        }
    }
    for args in [
        [&["train", "--resume", "--total-steps", "6400"][..], &common].concat(),
        vec!["eval", r],
    ] {
        assert_refused(&args, "checkpoint");
    }
}

/// Settings that cannot run are refused before any work: a network too large for the
/// machine's memory (about 256 GiB for a 65536-65536 MLP's weights and factors) and CUDA on
/// the CPU-only native backend.
#[test]
fn oversized_networks_and_cuda_native_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (a, b) = (out("a"), out("b"));
    let cases: [(Vec<&str>, &str); 2] = [
        (
            vec!["train", "--hidden", "65536,65536", "--out", &a],
            "of physical memory",
        ),
        (
            vec![
                "train",
                "--backend",
                "native",
                "--device",
                "cuda",
                "--out",
                &b,
            ],
            "--device cuda needs --backend tch",
        ),
    ];
    for (args, needle) in cases {
        // A refusal before any allocation: also no "memory allocation of … failed" abort,
        // which would not contain the needle.
        assert_refused(&args, needle);
    }
}

/// The tch backend ends a run whose loss overflows with the same clear error as the native
/// one (an A2C step of 1e30 without clipping).
#[test]
fn tch_non_finite_loss_is_an_error() {
    torch_sibling();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert_refused(
        &[
            "train",
            "--backend",
            "tch",
            "--algo",
            "a2c",
            "--lr",
            "1e30",
            "--max-grad-norm",
            "0",
            "--total-steps",
            "20000",
            "--out",
            run.to_str().unwrap(),
            "--quiet",
        ],
        "non-finite",
    );
}

#[test]
fn unreadable_checkpoint_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = acktr(&[
        "train",
        "--total-steps",
        "3200",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--eval-episodes",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["checkpoint.ackc", "checkpoint.prev.ackc"] {
        if run.join(f).exists() {
            std::fs::write(run.join(f), b"garbage").unwrap();
        }
    }
    let o = acktr(&["eval", run.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("checkpoint"), "{}", stderr(&o));
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint() {
    killed_run_resumes("native");
}

#[test]
fn a_killed_tch_run_resumes_from_its_checkpoint() {
    torch_sibling();
    killed_run_resumes("tch");
}

fn killed_run_resumes(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_acktr"))
        .args([
            "train",
            "--backend",
            backend,
            "--total-steps",
            "100000000",
            "--checkpoint-every",
            "3200",
            "--out",
            r,
            "--quiet",
        ])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !run.join("checkpoint.prev.ackc").exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(run.join("checkpoint.ackc").exists());
    let o = acktr(&[
        "train",
        "--resume",
        "--backend",
        backend,
        "--out",
        r,
        "--total-steps",
        "20000",
        "--quiet",
        "--eval-episodes",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The monitor was cut back to the checkpoint and continued: rows are well formed and the
    // episode lengths add up to at most the env steps done.
    let text = std::fs::read_to_string(run.join("monitor.csv")).unwrap();
    let lens: u64 = text
        .lines()
        .skip(2)
        .map(|l| l.split(',').nth(1).unwrap().trim().parse::<u64>().unwrap())
        .sum();
    assert!(
        lens > 0 && lens <= 20_000 + 16 * 500,
        "episode steps {lens}"
    );
}

/// The returns (`r`) and lengths (`l`) of a run's monitor.csv, in completion order.
fn monitor_rows(run: &Path) -> Vec<(f64, u64)> {
    acktr_host::run::read_monitor_rows(&run.join("monitor.csv"))
        .expect("monitor.csv")
        .into_iter()
        .map(|(r, l, _)| (r, l))
        .collect()
}

/// The last row of the first 20 consecutive monitor rows whose mean return is ≥ `target`, and
/// that mean.
fn first_window_reaching(rows: &[(f64, u64)], target: f64) -> (usize, f64) {
    let mean = |i: usize| rows[i - 19..=i].iter().map(|r| r.0).sum::<f64>() / 20.0;
    let first = (19..rows.len())
        .find(|&i| mean(i) >= target)
        .unwrap_or_else(|| panic!("no window of 20 monitor rows with mean >= {target}"));
    (first, mean(first))
}

/// A native CartPole run (seed 0) with `--stop-at-train-mean target` and `extra` arguments,
/// into `run`: its stderr, its `done:` line, and where that line says the target was reached.
fn train_to_train_mean(
    run: &Path,
    budget: u64,
    target: &str,
    extra: &[&str],
) -> (
    String,
    acktr_host::train::DoneLine,
    acktr_host::train::TrainMeanReached,
) {
    let budget = budget.to_string();
    let mut args = vec![
        "train",
        "--env",
        "CartPole-v1",
        "--backend",
        "native",
        "--seed",
        "0",
        "--total-steps",
        &budget,
        "--stop-at-train-mean",
        target,
        "--eval-episodes",
        "0",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = acktr(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let done = acktr_host::train::DoneLine::find(&err).expect("an `acktr: done:` line");
    let reached = done.reached.unwrap_or_else(|| panic!("not reached: {err}"));
    (err, done, reached)
}

#[test]
fn stop_at_train_mean_stops_early_where_the_monitor_says() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let budget = 200_000u64;
    let (err, done, reached) = train_to_train_mean(&run, budget, "100", &[]);
    assert_eq!((reached.window, reached.target), (20, 100.0), "{err}");
    assert!(reached.mean >= 100.0, "{err}");
    assert!(
        reached.env_steps <= done.env_steps && done.env_steps < budget,
        "{err}"
    );
    // It stopped within one batch (16 × 20) of reaching the target.
    assert!(done.env_steps - reached.env_steps < 320, "{err}");
    assert!(reached.secs > 0.0, "{err}");

    // monitor.csv: the first 20-episode window with mean ≥ 100 is the one reported, and the
    // episodes up to it fit in the env steps reported.
    let rows = monitor_rows(&run);
    let (first, mean) = first_window_reaching(&rows, 100.0);
    assert!(
        (mean - reached.mean).abs() < 0.006,
        "monitor {mean}, reported {reached:?}"
    );
    let steps: u64 = rows[..=first].iter().map(|r| r.1).sum();
    assert!(
        steps <= reached.env_steps,
        "{steps} episode steps > {reached:?}"
    );
    let all: u64 = rows.iter().map(|r| r.1).sum();
    assert!(all <= done.env_steps, "{all} episode steps > {done:?}");

    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"stop_at_train_mean\": 100.0"), "{config}");
    assert!(config.contains("\"train_mean_window\": 20"), "{config}");
}

#[test]
fn train_mean_no_stop_records_the_target_and_trains_to_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let budget = 128_000u64;
    let extra = ["--train-mean-no-stop", "--checkpoint-every", "0"];
    let (err, done, reached) = train_to_train_mean(&run, budget, "60", &extra);
    assert!(done.env_steps >= budget, "stopped early: {err}");
    assert!(reached.mean >= 60.0 && reached.env_steps < budget, "{err}");
    // The first window that reached the target, as the monitor has it, not a later one.
    let (_, mean) = first_window_reaching(&monitor_rows(&run), 60.0);
    assert!((mean - reached.mean).abs() < 0.006, "{mean} vs {reached:?}");

    // Without --stop-at-train-mean the flag is refused.
    let o = acktr(&["train", "--train-mean-no-stop", "--total-steps", "320"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--stop-at-train-mean"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn configs_without_the_train_mean_settings_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = acktr(&[
        "train",
        "--total-steps",
        "3200",
        "--eval-episodes",
        "0",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A config.json written before --stop-at-train-mean existed.
    let path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let settings = config["settings"].as_object_mut().unwrap();
    assert!(settings.remove("stop_at_train_mean").is_some());
    assert!(settings.remove("train_mean_window").is_some());
    // ... and before --kfac-inverse.
    assert!(settings.remove("kfac_inverse").is_some());
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let o = acktr(&["eval", run.to_str().unwrap(), "--episodes", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = acktr(&[
        "train",
        "--resume",
        "--out",
        run.to_str().unwrap(),
        "--total-steps",
        "6400",
        "--quiet",
        "--eval-episodes",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--lr-schedule linear` on the tch backend: the `η_max` the learner holds at each update
/// (progress.csv's `train/learning_rate`, read back from the agent) is `η₀·(1 − t/T)` at the
/// env steps `t` of that row, to f32 rounding, and falls from row to row.
#[test]
fn tch_linear_schedule_decays_the_learning_rate() {
    torch_sibling();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let total = 6400.0;
    let o = acktr(&[
        "train",
        "--backend",
        "tch",
        "--lr",
        "0.25",
        "--lr-schedule",
        "linear",
        "--total-steps",
        "6400",
        "--log-every",
        "1",
        "--eval-episodes",
        "0",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(run.join("progress.csv")).expect("progress.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (steps, lr) = (col("time/total_timesteps"), col("train/learning_rate"));
    let rows: Vec<(f64, f64)> = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[steps].parse().unwrap(), c[lr].parse().unwrap())
        })
        .collect();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for &(t, got) in &rows {
        let want = (0.25 * (1.0 - t / total)).max(1e-12);
        assert!(
            (got - want).abs() <= 1e-6 * 0.25,
            "at {t} steps: learning rate {got}, linear decay gives {want}"
        );
    }
    assert!(rows.windows(2).all(|w| w[1].1 < w[0].1), "{rows:?}");
}
