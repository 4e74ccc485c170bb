//! Put `memory.x` where the linker looks for it.
//!
//! cortex-m-rt's `link.x` does `INCLUDE memory.x`, and the linker resolves that against its
//! search path, not against this crate's folder. Copying the file into `OUT_DIR` and adding
//! `OUT_DIR` to the search path makes the build independent of the directory cargo is run from
//! (and of a `memory.x` that some dependency might provide), and the `rerun-if-changed` line
//! relinks when the budget changes.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    // The Cortex-M33 build (thumbv8m.main, the `an505/` crate) runs on QEMU's mps2-an505,
    // whose SysTick counts a 20 MHz clock (`clock::INSTRUCTIONS_PER_TICK`).
    println!("cargo:rustc-check-cfg=cfg(mps2_an505)");
    if env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv8m.main")) {
        println!("cargo:rustc-cfg=mps2_an505");
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
