//! Why a Live Runner call or session could not be served: one enum, each variant with its HTTP
//! status and stable code (the binary's error mapping turns it into the JSON error body).

use crate::liverunner::AppName;

/// Why an app call or a session failed before the client got an answer of the runner's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// No runner serves this app (or the path names no known app).
    #[error("no runner serves app {0:?}")]
    UnknownApp(String),
    /// Runners serve it, but none of this mode (`single-shot` call on a persistent-only app, or
    /// the reverse).
    #[error("app {app} has no {mode} runner")]
    WrongMode {
        /// The app.
        app: AppName,
        /// The mode asked for.
        mode: &'static str,
    },
    /// Every runner of the app is at its capacity.
    #[error("every runner of app {0} is at capacity")]
    NoCapacity(AppName),
    /// Runners exist but none is routable (breakers open, stale records, priced past the
    /// ceiling...), after `tried` attempts; `last` is what the last one said, if any.
    #[error("no runner of app {app} could take the request ({tried} tried){}", last.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
    NoRunner {
        /// The app.
        app: AppName,
        /// Runners tried.
        tried: usize,
        /// The last failure.
        last: Option<String>,
    },
    /// The request body is over the limit (a single-shot body is held to be replayed on
    /// failover).
    #[error("the request body is over the {0}-byte limit")]
    BodyTooLarge(usize),
    /// The client's body could not be read.
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// No such gateway session (stopped, idle past the timeout, or never made).
    #[error("no session {0}")]
    UnknownSession(String),
    /// The session had ended (stopped, idle, its runner failed) when this request came.
    #[error("session {id} has ended ({reason})")]
    SessionEnded {
        /// The session.
        id: String,
        /// Why.
        reason: String,
    },
    /// The session's runner failed during this request; the session is ended (sessions hold
    /// state: no silent failover).
    #[error("session {id} ended, its runner failed: {reason}")]
    RunnerFailed {
        /// The session.
        id: String,
        /// What failed.
        reason: String,
    },
    /// The runner's app did not accept a WebSocket upgrade (it answered this status).
    #[error("the runner's app refused the WebSocket upgrade with {0}")]
    UpgradeRefused(u16),
    /// The gateway holds its most sessions.
    #[error("the gateway holds its limit of {0} sessions")]
    TooManySessions(usize),
    /// The runner's error answer is over the size the gateway reads before deciding.
    #[error("the runner's error answer is over {0} bytes")]
    ErrorTooLarge(usize),
}

impl AppError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            AppError::UnknownApp(_) | AppError::WrongMode { .. } | AppError::UnknownSession(_) => 404,
            AppError::NoCapacity(_) | AppError::NoRunner { .. } | AppError::TooManySessions(_) => 503,
            AppError::BodyTooLarge(_) => 413,
            AppError::BadBody(_) => 400,
            AppError::SessionEnded { .. } => 410,
            AppError::RunnerFailed { .. } | AppError::ErrorTooLarge(_) | AppError::UpgradeRefused(_) => 502,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::UnknownApp(_) => "unknown-app",
            AppError::WrongMode { .. } => "no-runner-of-mode",
            AppError::NoCapacity(_) => "no-capacity",
            AppError::NoRunner { .. } => "no-runner-available",
            AppError::BodyTooLarge(_) => "body-too-large",
            AppError::BadBody(_) => "bad-body",
            AppError::UnknownSession(_) => "unknown-session",
            AppError::SessionEnded { .. } => "session-ended",
            AppError::RunnerFailed { .. } => "session-runner-failed",
            AppError::UpgradeRefused(_) => "websocket-refused",
            AppError::TooManySessions(_) => "too-many-sessions",
            AppError::ErrorTooLarge(_) => "upstream-error-too-large",
        }
    }
}
