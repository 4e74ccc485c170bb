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
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
