//! Measurement helpers for the on-device ACKTR demo (`src/main.rs`), and its fault handling.
//!
//! - [`clock`]: an instruction clock on SysTick. Under QEMU with `-icount shift=0` every
//!   instruction advances virtual time by 1 ns and the MPS2 SysTick runs at 25 MHz, so one tick
//!   is 40 instructions, deterministically (QEMU is not cycle-accurate: these are instructions,
//!   not cycles). [`clock::calibrate`] checks the ratio with a loop of known length.
//! - [`memory`]: static RAM and flash use from the linker's symbols, and the stack high-water
//!   mark (cortex-m-rt's `paint-stack` fills the stack with `0xCCCC_CCCC` before `main`).
//! - [`report`]: the number formats and means the programs' reports share.
//! - A panic handler and a `HardFault` handler that print over semihosting and exit with a
//!   failure code, so nothing on this firmware ends in a silent fault loop.
#![no_std]

use cortex_m::asm;
use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};

/// The core and the QEMU machine this build is for (the `an505/` crate builds for the
/// Cortex-M33, the `blackpill/` crate for a real STM32F411).
#[cfg(not(any(mps2_an505, feature = "stm32f411")))]
pub const BOARD: &str = "Cortex-M4F (QEMU mps2-an386)";
/// The chip this build is for (the `stm32f411` feature).
#[cfg(all(feature = "stm32f411", not(mps2_an505)))]
pub const BOARD: &str = "Cortex-M4F (STM32F411, 16 MHz HSI reset clock)";
/// The core and the QEMU machine this build is for.
#[cfg(mps2_an505)]
pub const BOARD: &str = "Cortex-M33 (QEMU mps2-an505)";

/// Exit QEMU (or the probe-rs session) with `EXIT_FAILURE`. Without a semihosting host there
/// is nobody to exit to: then wait for the debugger forever.
pub fn exit_failure() -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        asm::wfi();
    }
}

/// Exit with `EXIT_SUCCESS`.
pub fn exit_success() -> ! {
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        asm::wfi();
    }
}

/// A program's start: the core peripherals taken and SysTick started as [`clock`], then its
/// `statics` (handed out once: `None` on a second call) returned. Exits with a failure when
/// either was taken already.
pub fn start<T>(statics: Option<T>) -> T {
    let (Some(cp), Some(statics)) = (cortex_m::Peripherals::take(), statics) else {
        hprintln!("error: peripherals or statics already taken");
        exit_failure()
    };
    clock::start(cp.SYST);
    statics
}

/// A program's end by its result: success for `Ok(true)` (every goal met), failure for
/// `Ok(false)` and for an error, which is printed first.
pub fn finish<E: core::fmt::Display>(result: Result<bool, E>) -> ! {
    match result {
        Ok(true) => exit_success(),
        Ok(false) => exit_failure(),
        Err(e) => {
            hprintln!("error: {}", e);
            exit_failure()
        }
    }
}

/// What the programs' reports share: percentages, one-decimal numbers, rows of numbers and the
/// mean learning curve over seeds.
pub mod report {
    use core::fmt;

    /// `part / whole` in percent (`whole` 0 counts as 1).
    pub fn percent(part: u64, whole: u64) -> f32 {
        100.0 * part as f32 / whole.max(1) as f32
    }

    /// A number with one decimal.
    pub struct Fixed1(pub f32);

    impl fmt::Display for Fixed1 {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:.1}", self.0)
        }
    }

    /// A row of numbers, each printed with the width and precision given to the row.
    pub struct Row<'a, T>(pub &'a [T]);

    impl<T: fmt::Display> fmt::Display for Row<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for v in self.0 {
                match (f.width(), f.precision()) {
                    (Some(w), Some(p)) => write!(f, " {v:>w$.p$}")?,
                    (Some(w), None) => write!(f, " {v:>w$}")?,
                    _ => write!(f, " {v}")?,
                }
            }
            Ok(())
        }
    }

    /// The mean over the seeds' curves at every checkpoint.
    pub fn mean_curve<const N: usize>(curves: &[[f32; N]]) -> [f32; N] {
        core::array::from_fn(|k| curves.iter().map(|c| c[k]).sum::<f32>() / curves.len() as f32)
    }
}

/// The instruction clock: SysTick counting core clock ticks, with wrap-arounds counted in its
/// exception so that measurements longer than one 24-bit period (0.67 s of virtual time,
/// 671 M instructions) stay exact.
pub mod clock {
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m::peripheral::{syst::SystClkSource, SCB, SYST};
    use cortex_m_rt::exception;

    /// SysTick reload value: the full 24-bit range.
    pub const RELOAD: u32 = 0x00FF_FFFF;

    /// Instructions per SysTick tick under QEMU's `mps2-an386` with `-icount shift=0`:
    /// 1 instruction = 1 ns of virtual time, SysTick at the 25 MHz system clock = 40 ns.
    #[cfg(not(any(mps2_an505, feature = "stm32f411")))]
    pub const INSTRUCTIONS_PER_TICK: u64 = 40;
    /// On a real STM32F411 (`stm32f411`) SysTick counts core cycles: one tick is one cycle,
    /// and the "instructions" of every figure are cycles (one or more per instruction).
    #[cfg(all(feature = "stm32f411", not(mps2_an505)))]
    pub const INSTRUCTIONS_PER_TICK: u64 = 1;
    /// On `mps2-an505` (the Cortex-M33 build) SysTick runs at its 20 MHz system clock: 50 ns.
    #[cfg(mps2_an505)]
    pub const INSTRUCTIONS_PER_TICK: u64 = 50;

    /// What the figures count, for the programs' reports.
    #[cfg(not(feature = "stm32f411"))]
    pub const COUNTS: &str = "instructions (QEMU -icount shift=0: 1 instruction = 1 virtual ns)";
    /// What the figures count, for the programs' reports.
    #[cfg(feature = "stm32f411")]
    pub const COUNTS: &str =
        "core cycles, read as instructions (SysTick on the chip's clock; cycles >= instructions)";
    /// The core clock when SysTick measures real time (a chip, not QEMU): the 16 MHz HSI that
    /// an STM32F4 runs on after reset (no PLL set up).
    pub const CORE_HZ: Option<u64> = if cfg!(feature = "stm32f411") {
        Some(16_000_000)
    } else {
        None
    };

    static WRAPS: AtomicU32 = AtomicU32::new(0);

    /// Start SysTick: core clock, reload [`RELOAD`], counting down, wrap exception on.
    pub fn start(mut syst: SYST) {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    /// Ticks since [`start`] (64-bit, monotonic).
    pub fn ticks() -> u64 {
        loop {
            let before = WRAPS.load(Ordering::Acquire);
            let current = SYST::get_current();
            let pending = SCB::is_pendst_pending();
            if WRAPS.load(Ordering::Acquire) != before {
                continue; // the wrap exception ran in between: read again
            }
            let mut wraps = u64::from(before);
            // A wrap whose exception has not run yet: it happened before `current` was read if
            // the counter has just been reloaded (counts down from RELOAD).
            if pending && current > RELOAD / 2 {
                wraps += 1;
            }
            return wraps * (u64::from(RELOAD) + 1) + u64::from(RELOAD - current);
        }
    }

    /// Ticks as instructions (see [`INSTRUCTIONS_PER_TICK`]).
    pub const fn instructions(ticks: u64) -> u64 {
        ticks * INSTRUCTIONS_PER_TICK
    }

    /// Run `f` and return its result with the instructions it took.
    #[inline(always)]
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let t0 = ticks();
        let r = f();
        let t1 = ticks();
        (r, instructions(t1 - t0))
    }

    /// `n` iterations of a two-instruction loop (`subs`, `bne`): `2n` instructions.
    #[inline(never)]
    pub fn spin(n: u32) {
        if n == 0 {
            return;
        }
        #[cfg(target_arch = "arm")]
        // SAFETY: register-only arithmetic and a local branch; touches no memory or stack.
        unsafe {
            core::arch::asm!(
                "2:",
                "subs {n}, {n}, #1",
                "bne 2b",
                n = inout(reg) n => _,
                options(nomem, nostack),
            );
        }
        #[cfg(not(target_arch = "arm"))]
        for _ in 0..core::hint::black_box(n) {}
    }

    /// Measured instructions per tick: ticks for a loop of 2·`n` more instructions, so that
    /// the fixed overhead of the calls cancels. Returns `(extra instructions, extra ticks)`.
    pub fn calibrate(n: u32) -> (u64, u64) {
        let t0 = ticks();
        spin(n);
        let t1 = ticks();
        spin(2 * n);
        let t2 = ticks();
        (2 * u64::from(n), (t2 - t1) - (t1 - t0))
    }

    /// How many times SysTick wrapped so far (a check that the wrap counting runs).
    pub fn wraps() -> u32 {
        WRAPS.load(Ordering::Acquire)
    }

    #[exception]
    fn SysTick() {
        WRAPS.fetch_add(1, Ordering::AcqRel);
    }
}

/// Accumulated cost of a repeated piece of work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Repetitions.
    pub count: u32,
    /// Total instructions.
    pub instructions: u64,
}

impl Tally {
    /// An empty tally.
    pub const fn new() -> Self {
        Self {
            count: 0,
            instructions: 0,
        }
    }

    /// Add one repetition that took `instructions`.
    pub fn add(&mut self, instructions: u64) {
        self.count += 1;
        self.instructions += instructions;
    }

    /// Mean instructions per repetition (0 if none).
    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.instructions / u64::from(self.count)
        }
    }
}

/// RAM and flash use, read from the linker's symbols at run time.
pub mod memory {
    /// What cortex-m-rt's `paint-stack` writes over the whole stack before `main`.
    pub const PAINT: u32 = 0xCCCC_CCCC;

    extern "C" {
        // cortex-m-rt's link.x (and our memory.x).
        static __vector_table: u32; // ORIGIN(FLASH)
        static __sidata: u32; // load address of .data in flash
        static __sdata: u32;
        static __edata: u32;
        static _ram_start: u32; // ORIGIN(RAM)
        static _stack_end: u32; // end of .data + .bss + .uninit: the lowest stack address
        static _stack_start: u32; // ORIGIN(RAM) + LENGTH(RAM): the initial stack pointer
    }

    fn addr(p: *const u32) -> usize {
        p as usize
    }

    /// The memory map as linked.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Usage {
        /// Flash bytes: vector table, code, constants (the policy file included) and the
        /// initial values of `.data`.
        pub flash: usize,
        /// Static RAM bytes: `.data` + `.bss` + `.uninit`.
        pub static_ram: usize,
        /// Bytes the stack may grow into: from the end of the statics to the top of RAM.
        pub stack_capacity: usize,
    }

    /// Read the memory map from the linker's symbols.
    pub fn usage() -> Usage {
        let flash_origin = addr(&raw const __vector_table);
        let data_len = addr(&raw const __edata) - addr(&raw const __sdata);
        let flash_end = addr(&raw const __sidata) + data_len;
        let ram = addr(&raw const _ram_start);
        let stack_end = addr(&raw const _stack_end);
        let stack_start = addr(&raw const _stack_start);
        Usage {
            flash: flash_end - flash_origin,
            static_ram: stack_end - ram,
            stack_capacity: stack_start - stack_end,
        }
    }

    /// Stack high-water mark in bytes since reset (or the last [`repaint`]): the deepest word
    /// below the initial stack pointer that no longer holds [`PAINT`]. The scan starts at the
    /// bottom, so a frame that happened to store `0xCCCC_CCCC` does not hide the frames above.
    pub fn stack_high_water() -> usize {
        let bottom = addr(&raw const _stack_end);
        let top = addr(&raw const _stack_start);
        let mut p = bottom;
        while p < top {
            // SAFETY: `[_stack_end, _stack_start)` is RAM reserved for the stack: reading any
            // aligned word of it is valid (the live frames above the stack pointer are only read).
            let w = unsafe { core::ptr::read_volatile(p as *const u32) };
            if w != PAINT {
                break;
            }
            p += 4;
        }
        top - p
    }

    /// Bytes below the stack pointer left alone by [`repaint`]: room for its own frame and an
    /// exception frame (SysTick) that may be pushed while it paints.
    const REPAINT_MARGIN: usize = 256;

    /// Paint the unused stack again, so that [`stack_high_water`] measures from here on (the
    /// frames live now count in full: their depth is at least the current one).
    #[inline(never)]
    pub fn repaint() {
        let sp = cortex_m::register::msp::read() as usize;
        let bottom = addr(&raw const _stack_end);
        let end = sp.saturating_sub(REPAINT_MARGIN) & !3;
        let mut p = bottom;
        while p < end {
            // SAFETY: `[_stack_end, sp − margin)` is stack RAM below every live frame: no
            // object lives there, and an exception taken meanwhile stacks above `end`.
            unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
            p += 4;
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("PANIC: {}", info);
    exit_failure()
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!(
        "HARD FAULT at pc {:#010x} (lr {:#010x})",
        frame.pc(),
        frame.lr()
    );
    exit_failure()
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    hprintln!("unexpected exception or interrupt {}", irqn);
    exit_failure()
}
