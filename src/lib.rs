//! The byoc-gateway service: command line, configuration, the public and admin HTTP APIs,
//! telemetry, and the simulated orchestrator used by the demo and the tests. The domain
//! (actors, health model, protocol, store) lives in the `byoc-actors` crate.
//!
//! # Layout
//! - [`cli`]: flags and subcommands.
//! - [`config`]: layered, validated configuration.
//! - [`app`]: start-up and shutdown of a [`app::Gateway`].
//! - [`http`]: public and admin handlers and the error mapping.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`sim`]: a simulated BYOC orchestrator with runtime-changeable faults.
//! - [`demo`]: the gateway plus simulators in one process.
//! - [`store_cmd`]: `store export|import`.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod sim;
pub mod store_cmd;
pub mod telemetry;
