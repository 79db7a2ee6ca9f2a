//! Command-line interface: `run` (the default), `check-config`, `sim` and `demo`.
//!
//! Every `run` flag is optional and also readable from a `BYOC_GATEWAY_*` environment
//! variable; clap resolves flag over env, and [`crate::config`] layers the result over the
//! config file and the defaults (defaults < file < env < flags).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::config::RunArgs;

/// byoc-gateway: routes Livepeer BYOC jobs by capability to the healthiest orchestrator.
#[derive(Debug, Parser)]
#[command(name = "byoc-gateway", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run` when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run(RunArgs),
    /// Validate the configuration and exit (non-zero with a clear message when invalid).
    CheckConfig(RunArgs),
    /// Run one simulated orchestrator.
    Sim(byoc_sim::SimArgs),
    /// Run the gateway with several simulated orchestrators and print curl commands.
    Demo(DemoArgs),
    /// Export or import the store (backups, moving a gateway).
    #[command(subcommand)]
    Store(crate::store_cmd::StoreCommand),
}

/// `byoc-gateway demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Public API address.
    #[arg(long, default_value = "127.0.0.1:9935")]
    pub http_addr: String,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:5935")]
    pub admin_addr: String,
    /// Data dir (default: a fresh directory under the system temp dir, removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Admin token.
    #[arg(long, default_value = "demo-token")]
    pub admin_token: String,
    /// Jobs sent in the opening burst.
    #[arg(long, default_value_t = 24)]
    pub jobs: usize,
    /// Exit after the burst instead of waiting for Ctrl-C (for scripts and CI).
    #[arg(long)]
    pub exit: bool,
}
