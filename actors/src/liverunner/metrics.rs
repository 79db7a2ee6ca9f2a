//! Metrics per app. The `app` label is the app's name while some runner serves it (names come
//! from discovery, bounded by `live_runner.max_apps`), `unknown` otherwise: a client cannot
//! mint series by naming apps.

use std::time::Duration;

use crate::metrics as m;

use super::{AppName, Boards};

/// The metric handles of one request's app.
pub(crate) struct AppMetrics {
    label: String,
}

impl AppMetrics {
    pub(crate) fn new(boards: &Boards, app: &AppName) -> Self {
        let label = if boards.known(app) { app.to_string() } else { "unknown".to_string() };
        Self { label }
    }

    /// The handles of a request whose path names no app a runner serves.
    pub(crate) fn unknown() -> Self {
        Self { label: "unknown".to_string() }
    }

    /// The `app` label.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// A call or reservation (`kind`) ended with the runner's `status` or an error `code`.
    pub(crate) fn request(&self, kind: &'static str, result: Result<u16, &'static str>, elapsed: Duration) {
        let outcome = match result {
            Ok(s) if s < 400 => "success",
            Ok(s) if s < 500 => "client-error",
            Ok(_) => "server-error",
            Err(code) => code,
        };
        metrics::counter!(m::APP_REQUESTS_TOTAL, "app" => self.label.clone(), "kind" => kind, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(m::APP_REQUEST_DURATION_SECONDS, "app" => self.label.clone(), "kind" => kind)
            .record(elapsed.as_secs_f64());
    }

    /// A call or reservation (`kind`) refused with error `code` before any runner was asked
    /// (counted; no duration: nothing was timed).
    pub(crate) fn refused(&self, kind: &'static str, code: &'static str) {
        metrics::counter!(m::APP_REQUESTS_TOTAL, "app" => self.label.clone(), "kind" => kind, "outcome" => code)
            .increment(1);
    }

    /// A session opened.
    pub(crate) fn session_opened(&self) {
        metrics::gauge!(m::APP_SESSIONS, "app" => self.label.clone()).increment(1.0);
    }

    /// A session ended for `reason`.
    pub(crate) fn session_ended(&self, reason: &'static str) {
        metrics::gauge!(m::APP_SESSIONS, "app" => self.label.clone()).decrement(1.0);
        metrics::counter!(m::APP_SESSIONS_ENDED_TOTAL, "app" => self.label.clone(), "reason" => reason).increment(1);
    }
}
