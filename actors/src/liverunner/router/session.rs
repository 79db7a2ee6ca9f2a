//! Sessions through the router: reserving one (the attempt loop on the persistent board, the
//! same failover before the client has anything), relaying its requests to the runner's
//! `app_url` (bodies streamed both ways), and ending it when its runner fails.

use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;

use crate::outcome::Outcome;
use crate::protocol::client::{excerpt, UpstreamError};

use super::super::classify::classify;
use super::super::dispatch::{account, place, Tries};
use super::super::error::AppError;
use super::super::forward::{relay, ExtraHeaders, Forward, Relay};
use super::super::record::Mode;
use super::super::sessions::{EndReason, Held, Upstream};
use super::super::AppName;
use super::{AppRouter, ERROR_READ_BYTES};

/// A runner's answer to a reservation (both dialects).
#[derive(Debug, Deserialize)]
struct Reserved {
    session_id: String,
    app_url: String,
    control_url: String,
}

/// A session the gateway opened: its id (the client's URLs are built from it).
#[derive(Debug, Clone)]
pub struct Opened {
    /// The gateway session id.
    pub id: String,
    /// The runner that holds it (`orchestrator:route`).
    pub runner: String,
    /// Runners tried.
    pub attempts: usize,
}

/// A new gateway session id: `gws_` and 128 random bits in hex.
fn new_id() -> String {
    format!("gws_{:032x}", rand::random::<u128>())
}

/// A request of a session in flight (a WebSocket the binary relays): the session is not idle
/// until it is dropped.
pub struct SessionActivity(#[allow(dead_code)] Active);

/// The in-flight mark of a session request; the request's end (or the client hanging up)
/// ends it.
struct Active {
    sessions: super::super::sessions::Sessions,
    id: String,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.sessions.table.lock().end_request(&self.id, Instant::now());
    }
}

impl AppRouter {
    /// Reserves a session of `app` on the best persistent runner.
    pub async fn open_session(&self, app: &AppName) -> Result<Opened, AppError> {
        let started = Instant::now();
        let metrics = self.metrics(app);
        let result = self.reserve(app).await;
        metrics.request("session", result.as_ref().map(|_| 200).map_err(AppError::code), started.elapsed());
        result
    }

    async fn reserve(&self, app: &AppName) -> Result<Opened, AppError> {
        if !self.sessions.table.lock().has_room() {
            return Err(AppError::TooManySessions(self.sessions.settings.max_sessions));
        }
        self.learn_payer().await;
        let mut tries = Tries::default();
        while tries.tried.len() < self.settings.max_attempts {
            let placed =
                place(&self.boards, &self.settings, app, Mode::Persistent, &mut tries, self.queue_bound(app)).await?;
            let runner = placed.picked.key.orchestrator.to_string();
            let attempt = Instant::now();
            let mut pay = None;
            let mut answer = self.post_reserve(&placed.url, &self.payer_header()).await;
            // A priced runner challenges the reservation (402): paid, the reservation again.
            if let Ok((402, challenge)) = &answer {
                match self.pay_challenge(app, &placed, challenge).await {
                    Ok((headers, p)) => {
                        pay = Some(p);
                        answer = self.post_reserve(&placed.url, &headers).await;
                    }
                    Err(why) => {
                        let outcome = Outcome::Refused(crate::outcome::Refusal::PaymentRequired, why.clone());
                        tries.last = Some(format!("{runner} asked for a payment the gateway cannot make: {why}"));
                        account(&self.settings, &placed, &outcome, attempt.elapsed()).await;
                        tries.tried.push(placed.picked.key.orchestrator.clone());
                        continue;
                    }
                }
            }
            let elapsed = attempt.elapsed();
            let (status, body) = match answer {
                Ok(x) => x,
                Err(e) => {
                    tries.last = Some(format!("{runner}: {e}"));
                    account(&self.settings, &placed, &Outcome::Failed(e), elapsed).await;
                    tries.tried.push(placed.picked.key.orchestrator.clone());
                    continue;
                }
            };
            let outcome = classify(status, &body);
            if outcome == Outcome::Success {
                let Ok(r) = serde_json::from_slice::<Reserved>(&body) else {
                    let o = Outcome::ServerError(status, format!("not a session: {}", excerpt(&body)));
                    tries.last = Some(format!("{runner} answered a reservation with no session: {}", excerpt(&body)));
                    account(&self.settings, &placed, &o, elapsed).await;
                    tries.tried.push(placed.picked.key.orchestrator.clone());
                    continue;
                };
                account(&self.settings, &placed, &outcome, elapsed).await;
                let id = new_id();
                let up = Upstream {
                    app: app.clone(),
                    runner: runner.clone(),
                    runner_session: r.session_id,
                    app_url: r.app_url,
                    control_url: r.control_url,
                };
                let metrics = self.metrics(app);
                // A fixed price is paid once; a metered session is kept funded (`fund`).
                let pay = pay.filter(|p| p.per_second > 0.0);
                let held = Held { _guard: placed.guard, picked: placed.picked, metrics, pay };
                let inserted = self.sessions.table.lock().insert(id.clone(), up.clone(), held, Instant::now());
                if let Err((full, _held)) = inserted {
                    // Filled meanwhile: the runner's session goes back at once.
                    super::super::sessions::release(&self.client, &up, self.sessions.settings.stop_timeout).await;
                    return Err(AppError::TooManySessions(full.0));
                }
                self.metrics(app).session_opened();
                tracing::info!(session = id, runner, app = %app, "session opened");
                return Ok(Opened { id, runner, attempts: tries.tried.len() + 1 });
            }
            account(&self.settings, &placed, &outcome, elapsed).await;
            if !outcome.retryable() {
                // The runner's own answer (a 4xx): nothing another runner would do better.
                tries.last = Some(format!("{runner} answered {status}: {}", excerpt(&body)));
                return Err(tries.exhausted(app));
            }
            tracing::info!(runner, status, answer = %excerpt(&body), "runner refused a reservation; next runner");
            tries.last = Some(format!("{runner} answered {status}: {}", excerpt(&body)));
            tries.tried.push(placed.picked.key.orchestrator.clone());
        }
        Err(tries.exhausted(app))
    }

    /// `POST {url}` (a reservation) with `headers`: the status and the first bytes of the body.
    async fn post_reserve(&self, url: &str, headers: &ExtraHeaders) -> Result<(u16, Bytes), UpstreamError> {
        let mut req = self.client.post(url).timeout(self.settings.head_timeout);
        for (n, v) in headers {
            req = req.insert_header((*n, v.as_str()));
        }
        let mut r =
            req.send().await.map_err(|e| crate::protocol::client::map_send_error(e, self.settings.head_timeout))?;
        let body = r.body().limit(ERROR_READ_BYTES).await.map_err(|e| UpstreamError::Transport(e.to_string()))?;
        Ok((r.status().as_u16(), body))
    }

    /// Relays a request of session `id` to its runner, streaming `body` up and the answer down.
    /// A runner that is gone or unreachable ends the session (`session-ended`).
    pub async fn session_request<S, E>(&self, id: &str, fwd: &Forward, body: S) -> Result<Relay, AppError>
    where
        S: Stream<Item = Result<Bytes, E>> + 'static,
        E: Into<Box<dyn std::error::Error>> + 'static,
    {
        let up = self.begin(id)?;
        let active = Active { sessions: self.sessions.clone(), id: id.to_string() };
        let url = fwd.url(&up.app_url);
        let resp = fwd.request(&self.client, &url, self.settings.head_timeout).send_stream(body).await;
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let e = crate::protocol::client::map_send_error(e, self.settings.head_timeout);
                drop(active);
                return Err(self.runner_failed(id, &up, Outcome::Failed(e.clone()), e.to_string()).await);
            }
        };
        let status = resp.status().as_u16();
        if status == 404 {
            // The orchestrator's 404 (the runner or the session is gone) ends the session; the
            // app's own 404 is relayed.
            let body = resp.body().limit(ERROR_READ_BYTES).await.unwrap_or_default();
            let outcome = classify(status, &body);
            if outcome.retryable() {
                drop(active);
                return Err(self
                    .runner_failed(id, &up, outcome, format!("the runner answered 404: {}", excerpt(&body)))
                    .await);
            }
            let headers = super::super::forward::end_to_end_headers(resp.headers());
            return Ok(super::super::forward::relay_bytes(status, headers, body, up.runner, 1));
        }
        Ok(relay(resp, active, up.runner, 1))
    }

    /// Starts a request of session `id` relayed outside the router (a WebSocket): the session's
    /// app URL, and its activity mark.
    pub fn begin_session(&self, id: &str) -> Result<(String, SessionActivity), AppError> {
        let up = self.begin(id)?;
        Ok((up.app_url, SessionActivity(Active { sessions: self.sessions.clone(), id: id.to_string() })))
    }

    fn begin(&self, id: &str) -> Result<Upstream, AppError> {
        match self.sessions.table.lock().begin(id) {
            Ok(up) => Ok(up),
            Err(Some(reason)) => {
                Err(AppError::SessionEnded { id: id.to_string(), reason: reason.as_str().to_string() })
            }
            Err(None) => Err(AppError::UnknownSession(id.to_string())),
        }
    }

    /// The WebSocket upgrade of session `id` at its runner failed with `e`: a runner that is
    /// gone or unreachable ends the session; an app that refuses to upgrade does not.
    pub async fn session_ws_failed(&self, id: &str, e: awc::error::WsClientError) -> AppError {
        use awc::error::WsClientError as W;
        let up = match self.sessions.table.lock().begin(id) {
            Ok(up) => up,
            Err(_) => return AppError::UnknownSession(id.to_string()),
        };
        self.sessions.table.lock().end_request(id, Instant::now());
        let outcome = match e {
            W::SendRequest(e) => {
                Outcome::Failed(crate::protocol::client::map_send_error(e, self.settings.head_timeout))
            }
            W::InvalidResponseStatus(s) if matches!(s.as_u16(), 404 | 502 | 503) => {
                Outcome::ServerError(s.as_u16(), "the runner refused the session's WebSocket".into())
            }
            W::InvalidResponseStatus(s) => return AppError::UpgradeRefused(s.as_u16()),
            other => Outcome::Failed(UpstreamError::Transport(other.to_string())),
        };
        let why = format!("{outcome:?}");
        self.runner_failed(id, &up, outcome, why).await
    }

    /// Ends session `id` whose runner failed, charging the failure to the runner's pair.
    pub(super) async fn runner_failed(&self, id: &str, up: &Upstream, outcome: Outcome, why: String) -> AppError {
        tracing::warn!(session = id, runner = up.runner, error = %why, "session's runner failed; session ended");
        let held = self.sessions.table.lock().remove(id, EndReason::RunnerFailed);
        if let Some((up, held)) = held {
            held.metrics.session_ended(EndReason::RunnerFailed.as_str());
            let record = crate::pair::Record { lease: None, outcome, elapsed: std::time::Duration::ZERO, paid: false };
            if held.picked.addr.send(record).timeout(self.settings.mailbox_timeout).await.is_err() {
                metrics::counter!(crate::metrics::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
            }
            drop(held);
            // Best effort: a runner that is gone releases nothing, one that lost the session
            // answers 204/404.
            super::super::sessions::release(&self.client, &up, self.sessions.settings.stop_timeout).await;
        }
        AppError::RunnerFailed { id: id.to_string(), reason: why }
    }

    /// Stops session `id` on the client's word.
    pub async fn stop_session(&self, id: &str) -> Result<(), AppError> {
        if self.sessions.end(&self.client, id, EndReason::Stopped).await {
            Ok(())
        } else {
            Err(AppError::UnknownSession(id.to_string()))
        }
    }
}
