//! The smallest useful firmware with acktr-core, to measure what the library itself costs in
//! flash and RAM: load the embedded policy into a learner built by the compiler, act on 32
//! observations, run one ACKTR update on them, exit. No simulator, no prints, no measurement
//! code: the sensors and rewards are stand-ins (a fixed sequence of observations, reward 1 per
//! step), and the exit code is the only output (0: the policy loaded and the update ran).
//!
//! `cargo run --release --bin minimal`; sizes: `llvm-size` on the ELF (docs/embedded.md).
#![no_std]
#![no_main]

use acktr_core::env::Pcg64;
use acktr_core::{read_policy_into, Activation, Config, Ending, HeadKind, Learner, Rollout, Step};
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;

type Learn = Learner<4, 32, 2, 1>;
type Batch = Rollout<4, 2, 1, 32>;

static POLICY: &[u8] = include_bytes!("../../policy/cartpole.ackp");

/// The demo's fine-tuning settings.
const CONFIG: Config = Config {
    kl_clip: 3e-5,
    cold_iters: 0,
    value_coef: 0.05,
    ..Config::DEFAULT
};

/// Built by the compiler (in `.data`): no learner-sized value on the stack.
static mut LEARNER: Learn = Learner::zeroed(CONFIG, Activation::Tanh, HeadKind::Categorical);
static mut BATCH: Batch = Batch::new();

#[entry]
fn main() -> ! {
    let (learner, batch) = (&raw mut LEARNER, &raw mut BATCH);
    // SAFETY: `main` runs once and nothing else names these statics, so these are the only
    // references to them.
    let (learner, batch) = unsafe { (&mut *learner, &mut *batch) };
    let ok = run(learner, batch).is_ok();
    exit(ok)
}

/// Load, act, update; `Err(())` on any error from the core.
fn run(learner: &mut Learn, batch: &mut Batch) -> Result<(), ()> {
    read_policy_into(POLICY, &mut learner.net).map_err(|_| ())?;
    let mut rng = Pcg64::from_seed(1);
    let mut value = 0.0;
    for t in 0..32u32 {
        // A stand-in for the sensors: a small, varying state.
        let obs: [f32; 4] =
            core::array::from_fn(|i| ((t * 7 + i as u32) % 11) as f32 * 0.01 - 0.05);
        let (action, v, _) = learner.net.act(&obs, &mut rng);
        value = v;
        batch
            .push([Step::new(obs, action, 1.0, v, Ending::Continues)])
            .map_err(|_| ())?;
    }
    batch.compute_returns(&[value], CONFIG.gamma, CONFIG.gae_lambda);
    learner.update(batch, &mut rng).map_err(|_| ())?;
    Ok(())
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(false)
}

#[exception]
unsafe fn HardFault(_: &ExceptionFrame) -> ! {
    exit(false)
}
