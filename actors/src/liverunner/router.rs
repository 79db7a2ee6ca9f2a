//! `AppRouter`: what an HTTP worker needs to serve `/apps/{app}/...` (the boards, its own
//! upstream client, the shared sessions), and the single-shot call: the attempt loop of
//! [`dispatch`](super::dispatch) on the single-shot board, failing over while nothing has
//! reached the client, relaying the first answer that is the app's.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::outcome::Outcome;
use crate::protocol::client::excerpt;

use super::classify::classify;
use super::dispatch::{account, place, DispatchSettings, Placed, QueueBound, Tries};
use super::error::AppError;
use super::forward::{end_to_end_headers, relay, relay_bytes, ExtraHeaders, Forward, Relay};
use super::metrics::AppMetrics;
use super::pay::{parse_challenge, LivePay, Payer, PAYER_HEADER};
use super::price::{RunnerPrice, Unit};
use super::record::Mode;
use super::remote::{Generated, PaymentAsk, RemoteSigner, SignerAnswer};
use super::sessions::Sessions;
use super::{AppName, Boards};

/// Most bytes of a runner's error answer read to classify it before relaying it.
pub(crate) const ERROR_READ_BYTES: usize = 64 * 1024;

/// One HTTP worker's view of Live Runner apps.
#[derive(Clone)]
pub struct AppRouter {
    /// The app boards (filled by discovery).
    pub boards: Boards,
    /// This worker's upstream client.
    pub client: awc::Client,
    /// How calls run.
    pub settings: Arc<DispatchSettings>,
    /// The gateway's sessions (shared by every worker).
    pub sessions: Sessions,
    /// The payments core (shared with BYOC jobs: limits, spend caps, nonces).
    pub payments: Arc<crate::route::Payments>,
    /// The gateway's identity (pays priced runners when it has a key).
    pub signer: crate::protocol::signer::SharedSigner,
    /// Per-app settings (spend limits).
    pub policies: super::AppPolicies,
    /// A remote signer that pays instead of the gateway's key, if configured.
    pub remote: Option<Arc<RemoteSigner>>,
}

impl AppRouter {
    /// The `app` label of `app` for metrics: its name while a runner serves it.
    pub(crate) fn metrics(&self, app: &AppName) -> AppMetrics {
        AppMetrics::new(&self.boards, app)
    }

    /// How long a request of `app` may wait for a slot, and how many may (its policy's
    /// `queue_timeout`, `queue_depth`).
    pub(crate) fn queue_bound(&self, app: &AppName) -> QueueBound {
        let e = self.policies.book().effective(&app.board_key());
        QueueBound { depth: e.queue_depth as usize, timeout: e.queue_timeout }
    }

    /// Counts a call (or, `session`, a reservation) of a path that names no app a runner serves,
    /// under `app="unknown"`.
    pub fn count_unknown_app(&self, session: bool) {
        AppMetrics::unknown().refused(if session { "session" } else { "call" }, "unknown-app");
    }

    /// The payment headers every request to a runner carries when the gateway can pay (go-livepeer
    /// challenges on-chain only with the payer named).
    pub(crate) fn payer_header(&self) -> ExtraHeaders {
        self.payer().map(|a| vec![(PAYER_HEADER, format!("0x{}", hex::encode(a)))]).unwrap_or_default()
    }

    /// Who pays: the remote signer's address when one pays (once it said it), else the key's.
    pub(crate) fn payer(&self) -> Option<[u8; 20]> {
        match &self.remote {
            Some(r) => r.cached_payer(),
            None => self.signer.payer(),
        }
    }

    /// Asks the remote signer its address if it has not said it yet (once; a failure is
    /// logged, and priced runners then refuse the gateway until it answers).
    pub(crate) async fn learn_payer(&self) {
        if let Some(r) = self.remote.as_ref().filter(|r| r.cached_payer().is_none()) {
            if let Err(e) = r.payer(&self.client).await {
                tracing::warn!(error = %e, "the remote signer did not say its address; priced runners cannot be paid");
            }
        }
    }

    /// Answers runner `placed`'s 402 `body`: with the remote signer when one pays, else with
    /// the gateway's key ([`Self::answer_challenge`]).
    pub(crate) async fn pay_challenge(
        &self,
        app: &AppName,
        placed: &Placed,
        body: &[u8],
    ) -> Result<(ExtraHeaders, LivePay), String> {
        let Some(remote) = &self.remote else { return self.answer_challenge(app, placed, body) };
        let terms = parse_challenge(body).map_err(|e| e.to_string())?;
        let price = runner_price(placed).ok_or("the runner's record has no price")?;
        let payer = remote.payer(&self.client).await?;
        let ask = PaymentAsk {
            orchestrator: &terms.info_b64,
            price,
            manifest_id: &terms.manifest_id,
            app: app.as_str(),
            ceilings: self.policies.ceilings(&app.board_key()),
            state: None,
        };
        let paid = match Generated::of(remote.generate(&self.client, &ask).await) {
            Ok(p) => p,
            Err(SignerAnswer::PriceExceeded(m)) => {
                return Err(format!("the remote signer refuses its price (481): {m}"))
            }
            Err(SignerAnswer::Refresh) => return Err("the remote signer asks for fresh ticket params (480)".into()),
            Err(SignerAnswer::NoTickets) => return Err("the remote signer made no tickets (482)".into()),
            Err(SignerAnswer::Failed(status, m)) => return Err(format!("the remote signer failed ({status}): {m}")),
            Err(SignerAnswer::Paid { .. }) => return Err("the remote signer's answer was not read".into()),
        };
        let mut pay = LivePay::remote(terms, price);
        pay.paid_remotely(&paid.payment, paid.state);
        let headers = vec![
            (PAYER_HEADER, format!("0x{}", hex::encode(payer))),
            ("Livepeer-Payment", paid.payment),
            ("Livepeer-Segment", paid.seg_creds),
        ];
        Ok((headers, pay))
    }

    /// Answers runner `placed`'s 402 `body` for `app`: the headers to retry with (the payer's
    /// and the payment's) and the payments of what it reserves; `Err` says why the gateway
    /// cannot pay (the refusal then stands and the call goes to the next runner).
    pub(crate) fn answer_challenge(
        &self,
        app: &AppName,
        placed: &Placed,
        body: &[u8],
    ) -> Result<(ExtraHeaders, LivePay), String> {
        if self.signer.payer().is_none() {
            return Err("the gateway has no key to pay with (nor a remote signer that pays)".into());
        }
        let terms = parse_challenge(body).map_err(|e| e.to_string())?;
        let price = runner_price(placed).ok_or("the runner's record has no price")?;
        let mut pay = LivePay::new(terms, price);
        let key = app.board_key();
        let label = self.metrics(app).label().to_string();
        let payer = Payer {
            payments: &self.payments,
            signer: &*self.signer,
            app: &key,
            label: &label,
            spend_cap: self.policies.spend_limit(&key),
        };
        let headers =
            pay.first(&payer, price.price as f64).map_err(|e| e.to_string())?.ok_or("the signer cannot pay")?;
        let mut out = self.payer_header();
        out.push(("Livepeer-Payment", headers.payment));
        out.push(("Livepeer-Segment", headers.segment));
        Ok((out, pay))
    }

    /// Serves a single-shot call of `app`: the first runner whose answer is the app's (a 2xx,
    /// or a 4xx of its own) is relayed as it arrives; refusals before any byte (capacity,
    /// runner gone, 5xx, a payment it wants) go to the next runner.
    pub async fn call(&self, app: &AppName, fwd: &Forward) -> Result<Relay, AppError> {
        let started = Instant::now();
        let metrics = self.metrics(app);
        let result = self.call_attempts(app, fwd).await;
        metrics.request("call", result.as_ref().map(|r| r.status).map_err(AppError::code), started.elapsed());
        result
    }

    async fn call_attempts(&self, app: &AppName, fwd: &Forward) -> Result<Relay, AppError> {
        self.learn_payer().await;
        let mut tries = Tries::default();
        while tries.tried.len() < self.settings.max_attempts {
            let placed =
                place(&self.boards, &self.settings, app, Mode::SingleShot, &mut tries, self.queue_bound(app)).await?;
            let runner = placed.picked.key.orchestrator.to_string();
            let attempt = Instant::now();
            let url = fwd.url(&placed.url);
            let mut extra = self.payer_header();
            let mut metered = None;
            let mut resp = fwd.send(&self.client, &url, self.settings.head_timeout, &extra).await;
            // A priced runner challenges the first request (402): paid, the same request again.
            if let Ok(r) =
                resp.as_mut().map_err(|_| ()).and_then(|r| if r.status().as_u16() == 402 { Ok(r) } else { Err(()) })
            {
                let body = r.body().limit(ERROR_READ_BYTES).await.unwrap_or_default();
                match self.pay_challenge(app, &placed, &body).await {
                    Ok((headers, pay)) => {
                        metered = Some(pay).filter(|p| p.per_second > 0.0);
                        extra = headers;
                        resp = fwd.send(&self.client, &url, self.settings.head_timeout, &extra).await;
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
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(runner, error = %e, "single-shot call failed before any byte; next runner");
                    tries.last = Some(format!("{runner}: {e}"));
                    account(&self.settings, &placed, &Outcome::Failed(e), elapsed).await;
                    tries.tried.push(placed.picked.key.orchestrator.clone());
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let attempts = tries.tried.len() + 1;
            if status < 400 {
                account(&self.settings, &placed, &Outcome::Success, elapsed).await;
                // The slot is held until the answer's last byte (or the client hangs up); a
                // metered call is kept funded as long.
                let funding = metered.map(|pay| {
                    let alive = Arc::new(());
                    actix::spawn(self.clone().fund_call(app.clone(), pay, Arc::downgrade(&alive)));
                    alive
                });
                return Ok(relay(resp, (placed.guard, funding), runner, attempts));
            }
            // An error: read its head to tell the runner's refusal from the app's answer.
            let headers = end_to_end_headers(resp.headers());
            let body: Bytes = match resp.body().limit(ERROR_READ_BYTES).await {
                Ok(b) => b,
                Err(awc::error::PayloadError::Overflow) => {
                    account(&self.settings, &placed, &Outcome::ServerError(status, String::new()), elapsed).await;
                    return Err(AppError::ErrorTooLarge(ERROR_READ_BYTES));
                }
                Err(e) => {
                    let e = crate::protocol::client::UpstreamError::Transport(e.to_string());
                    tries.last = Some(format!("{runner}: {e}"));
                    account(&self.settings, &placed, &Outcome::Failed(e), elapsed).await;
                    tries.tried.push(placed.picked.key.orchestrator.clone());
                    continue;
                }
            };
            let outcome = classify(status, &body);
            account(&self.settings, &placed, &outcome, elapsed).await;
            if !outcome.retryable() {
                return Ok(relay_bytes(status, headers, body, runner, attempts));
            }
            tracing::info!(runner, status, answer = %excerpt(&body), "runner refused the call; next runner");
            tries.last = Some(format!("{runner} answered {status}: {}", excerpt(&body)));
            tries.tried.push(placed.picked.key.orchestrator.clone());
        }
        Err(tries.exhausted(app))
    }
}

/// The price of runner `placed`, from its discovery record.
fn runner_price(placed: &Placed) -> Option<RunnerPrice> {
    let view = placed.picked.view.read();
    let p = &view.details.as_ref()?["price"];
    Some(RunnerPrice { price: p["price"].as_u64()?, unit: Unit::parse(p["unit"].as_str()?)? })
}

mod fund;
mod session;
pub use session::{Opened, SessionActivity};
