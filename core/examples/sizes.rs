//! Print the memory of the whole training state (`cargo run -p acktr-core --example sizes`):
//! weights, gradient and momentum buffers, Kronecker factors with their decompositions
//! (`Learner`), and a 32-step rollout of one environment.

use acktr_core::{Curvature, Learner, Rollout, SeparateActorCritic, SharedActorCritic};
use core::mem::size_of;

fn row<const H: usize, const T: usize>(name: &str) {
    let learner = size_of::<Learner<4, H, 2, T>>();
    let curv = size_of::<Curvature<4, H, 2, T>>();
    let net = size_of::<acktr_core::ActorCritic<4, H, 2, T>>();
    let rollout = size_of::<Rollout<4, 2, 1, 32>>();
    println!(
        "| {name} | {} | {net} | {curv} | {learner} | {rollout} | {} ({:.1} KiB) |",
        acktr_core::ActorCritic::<4, H, 2, T>::num_params(),
        learner + rollout,
        (learner + rollout) as f64 / 1024.0
    );
}

fn main() {
    let _ = (
        size_of::<SharedActorCritic<4, 32, 2>>(),
        size_of::<SeparateActorCritic<4, 32, 2>>(),
    );
    println!("| net (obs-hidden-hidden, 2 actions) | params | policy bytes | curvature bytes | learner bytes | rollout (32 steps) bytes | training state bytes |");
    println!("|---|---|---|---|---|---|---|");
    row::<32, 1>("4-32-32 shared");
    row::<32, 2>("4-32-32 separate");
    row::<64, 1>("4-64-64 shared");
    row::<64, 2>("4-64-64 separate");
}
