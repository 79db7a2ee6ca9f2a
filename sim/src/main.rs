//! `byoc-sim`: simulated BYOC orchestrators until SIGINT or SIGTERM (the same as
//! `byoc-gateway sim`).

use clap::Parser as _;

#[derive(clap::Parser)]
#[command(name = "byoc-sim", about = "Simulated Livepeer BYOC orchestrators")]
struct Cli {
    #[command(flatten)]
    args: byoc_sim::SimArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let result = actix_web::rt::System::new().block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        };
        byoc_sim::run(cli.args, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("byoc-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
