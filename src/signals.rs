//! The signals that end a long-running command (`run`, `demo`, `sim`): a leaf module, so
//! the commands need not import each other.

/// Installs SIGTERM and SIGINT handlers and returns a future that ends at the first of them.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed now, not at the first poll: a signal between a ready line and the await must
    // not meet the default action.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
