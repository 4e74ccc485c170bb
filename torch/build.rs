//! Embed rpaths so `acktr-torch` runs without `LD_LIBRARY_PATH`: libtorch's library folder
//! (`LIBTORCH`, from `.cargo/config.toml`, the project's .venv: see scripts/setup.sh), and the
//! libpython that pyo3 linked (else the loader may pick another 3.x build from /usr/lib).
//! acktr-host's build script does the latter for its own targets only.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
    #[cfg(feature = "gymnasium")]
    if let Some(dir) = pyo3_build_config::get().lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
