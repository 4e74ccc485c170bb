//! Embed an rpath to the libpython that pyo3 linked, so `acktr` runs without
//! `LD_LIBRARY_PATH` (else the loader may pick another 3.x build from /usr/lib). No libtorch
//! here: that is acktr-torch's (see its build script).
fn main() {
    #[cfg(feature = "gymnasium")]
    if let Some(dir) = pyo3_build_config::get().lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
