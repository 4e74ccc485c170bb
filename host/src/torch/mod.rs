//! The libtorch backend: networks, K-FAC on tensors, the update.

pub mod agent;
pub mod kfac;
pub mod learner;
pub mod net;
