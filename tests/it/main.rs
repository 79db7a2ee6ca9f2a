//! Integration tests: real simulated orchestrators and the real gateway on port 0, a real
//! sled store in a temp dir, real HTTP clients. No component of ours is mocked.

// Harness helpers outside #[test] functions may panic: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod bodies;
mod capabilities;
mod capacity;
mod cli;
mod clients;
mod deploy;
mod discovery;
mod disk;
mod edges;
mod errors;
mod fidelity;
mod fleet;
mod health;
mod labels;
mod liverunner;
mod operator;
mod payments;
mod persistence;
mod pool;
mod prometheus;
mod reliability;
mod routing;
mod signing;
mod streaming;
mod streams;
mod supervision;
mod support;
mod ui;
