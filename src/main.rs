//! Entry point: parse the command line and run the chosen subcommand.

use std::process::ExitCode;

use byoc_gateway::cli::{Cli, Command};
use byoc_gateway::config::Config;
use byoc_gateway::{app, demo, signals, store_cmd, telemetry};
use clap::Parser as _;

/// mimalloc: per-thread free lists suit a proxy's many short-lived allocations per job (glibc
/// malloc and free were about 8 % of the gateway's CPU in `bench/proxy.sh` profiles).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an invalid configuration (sysexits `EX_CONFIG`).
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::CheckConfig(args)) => match Config::load(&args) {
            Ok(v) => {
                println!(
                    "configuration OK: http={} admin={} data_dir={} orchestrators={} capabilities={} signer={} address={}",
                    v.http_addr,
                    v.admin_addr,
                    v.config.data_dir.display(),
                    v.orchestrators.len(),
                    v.policies.len(),
                    v.signer.scheme(),
                    v.signer.address()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("byoc-gateway: {e}");
                ExitCode::from(EX_CONFIG)
            }
        },
        Some(Command::Sim(args)) => {
            telemetry::init_tracing("text", "info");
            report(actix_web::rt::System::new().block_on(async {
                byoc_sim::run(args, signals::shutdown_signal()?).await.map_err(anyhow::Error::from)
            }))
        }
        Some(Command::Demo(args)) => report(actix_web::rt::System::new().block_on(demo::run(args))),
        Some(Command::Store(cmd)) => report(actix_web::rt::System::new().block_on(store_cmd::run(cmd))),
    }
}

fn run(args: byoc_gateway::cli::RunArgs) -> ExitCode {
    let v = match Config::load(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("byoc-gateway: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    telemetry::init_tracing(&v.config.log.format, &v.config.log.level);
    report(actix_web::rt::System::new().block_on(app::run(v)))
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("byoc-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
