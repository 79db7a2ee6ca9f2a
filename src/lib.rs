//! The byoc-gateway service: command line, configuration, the public and admin HTTP APIs,
//! telemetry and the demo. The domain (actors, health model, protocol, store) lives in the
//! `byoc-actors` crate; the simulated orchestrator in the `byoc-sim` crate.
//!
//! # Layout
//! - [`cli`]: flags and subcommands.
//! - [`config`]: layered, validated configuration.
//! - [`app`]: start-up and shutdown of a [`app::Gateway`].
//! - [`http`]: public and admin handlers and the error mapping.
//! - [`telemetry`]: tracing and the Prometheus recorder.
//! - [`signals`]: the shutdown signals every long-running command waits for.
//! - [`demo`]: the gateway plus simulators in one process.
//! - [`store_cmd`]: `store export|import`.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod signals;
pub mod store_cmd;
pub mod telemetry;
