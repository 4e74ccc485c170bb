//! `acktr`: train, evaluate, export, plot and benchmark ACKTR / A2C policies. The lean binary:
//! it does not link libtorch and hands work that needs it to `acktr-torch` (see
//! `acktr_host::cli`).

fn main() -> std::process::ExitCode {
    acktr_host::cli::main(None)
}
