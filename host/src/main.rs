//! `acktr`: the host trainer. The libtorch (tch) trainer is not built yet; until it is, this
//! binary says so and points at the core's own trainer instead of pretending to work.

fn main() -> std::process::ExitCode {
    eprintln!(
        "acktr: the libtorch trainer is not implemented yet.\n\
         Train CartPole-v1 with acktr-core instead:\n  \
         cargo run --release -p acktr-core --example train_cartpole"
    );
    std::process::ExitCode::from(2)
}
