//! Embed rpaths so `acktr` runs without `LD_LIBRARY_PATH`: libtorch's library folder
//! (`LIBTORCH`, from `.cargo/config.toml`, the project's .venv: see scripts/setup.sh), and the
//! libpython that pyo3 linked (else the loader may pick another 3.x build from /usr/lib).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        if let Ok(dir) = std::env::var("LIBTORCH") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
        }
    }
    #[cfg(feature = "gymnasium")]
    if let Some(dir) = pyo3_build_config::get().lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
