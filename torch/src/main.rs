//! `acktr-torch`: `acktr` with the libtorch backend (conv nets, any MLP size, CUDA). Same
//! commands and options; the lean `acktr` hands work that needs libtorch over to it.

fn main() -> std::process::ExitCode {
    acktr_host::cli::main(Some(acktr_torch::hooks()))
}
