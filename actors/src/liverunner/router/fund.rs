//! Keeping metered sessions funded: every `payment_interval`, each paid session whose credit
//! would not cover the next stretch (two intervals plus go-livepeer's 5 s debit period) is
//! topped up through its `payment_url`. The answer brings the ticket params to pay against
//! next (either dialect); a refused top-up asks `/refresh-payment` for fresh ones; a session the
//! runner no longer knows is ended like any runner failure. Through a remote signer, each round
//! asks it for the payment (it bills the time since its last one), with its 480/481/482.

use std::time::Duration;

use serde_json::json;

use crate::outcome::Outcome;
use crate::protocol::client::excerpt;

use super::super::pay::{parse_challenge, parse_top_up, LivePay, Payer};
use super::super::remote::{PaymentAsk, SignerAnswer};
use super::super::sessions::EndReason;
use super::super::AppName;
use super::{AppRouter, ERROR_READ_BYTES};

/// The orchestrator's debit period (go-livepeer `-livePaymentInterval` default).
const ORCHESTRATOR_DEBIT: Duration = Duration::from_secs(5);

/// What one round of paying came to.
enum Round {
    /// Paid, or nothing due, or a failure to try again next round: the payments go on.
    Paid,
    /// The runner no longer knows the session or call (404, with what it said).
    Gone(String),
    /// The remote signer refuses the runner's price (481): it cannot be paid any longer.
    PriceRefused,
}

/// What a remote signer gave for one round.
enum Signed {
    /// The `Livepeer-Payment` and `Livepeer-Segment` values.
    Headers(String, String),
    /// Nothing to send this round.
    Nothing,
    /// 481.
    PriceRefused,
}

impl AppRouter {
    /// Tops up metered sessions forever (spawned once, with its own client).
    pub async fn fund(self) {
        let interval = self.sessions.settings.payment_interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let metered = self.sessions.table.lock().metered();
            for (id, app, pay) in metered {
                self.fund_one(&id, &app, pay, interval).await;
            }
        }
    }

    async fn fund_one(&self, id: &str, app: &AppName, mut pay: LivePay, interval: Duration) {
        match self.pay_round(id, app, &mut pay, interval).await {
            Round::Paid => self.keep(id, pay),
            Round::Gone(body) => {
                let up = self.sessions.table.lock().upstream(id);
                if let Some(up) = up {
                    let why = format!("the runner no longer knows the session: {body}");
                    self.runner_failed(id, &up, Outcome::ServerError(404, body), why).await;
                }
            }
            Round::PriceRefused => {
                tracing::warn!(session = id, app = %app, "the remote signer refuses the runner's price; ending the session");
                self.sessions.end(&self.client, id, EndReason::PaymentRefused).await;
            }
        }
    }

    /// Keeps a metered single-shot call funded while its answer streams: go-livepeer debits
    /// a call as it debits a session and cancels it once the credit runs out (the reason for
    /// its #4008). Ends with the call (`alive` gone), or when the runner no longer knows it or
    /// its price cannot be paid.
    pub(crate) async fn fund_call(self, app: AppName, mut pay: LivePay, alive: std::sync::Weak<()>) {
        let interval = self.sessions.settings.payment_interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let call = format!("call {}", pay.terms.manifest_id);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 {
                return;
            }
            match self.pay_round(&call, &app, &mut pay, interval).await {
                Round::Paid => {}
                Round::Gone(_) | Round::PriceRefused => return,
            }
        }
    }

    /// One round of paying for `what` (a session id, or a call): the top-up when one is due,
    /// sent to the runner's `payment_url`; `pay` holds what to pay against next.
    async fn pay_round(&self, what: &str, app: &AppName, pay: &mut LivePay, interval: Duration) -> Round {
        let key = app.board_key();
        let label = self.metrics(app).label().to_string();
        let payer = Payer {
            payments: &self.payments,
            signer: &*self.signer,
            app: &key,
            label: &label,
            spend_cap: self.policies.spend_limit(&key),
        };
        let before = pay.clone();
        let remote = pay.remote.is_some();
        let (payment, segment) = if remote {
            match self.sign_remotely(what, app, &label, pay).await {
                Signed::Headers(p, s) => (p, s),
                Signed::Nothing => return Round::Paid,
                Signed::PriceRefused => return Round::PriceRefused,
            }
        } else {
            let ahead = (interval * 2 + ORCHESTRATOR_DEBIT).as_secs_f64();
            match pay.top_up(&payer, ahead) {
                Ok(Some(h)) => (h.payment, h.segment),
                Ok(None) => return Round::Paid,
                Err(e) => {
                    // The runner releases the session once its credit runs out; the next
                    // request then ends it here.
                    tracing::warn!(what, app = %app, error = %e, "cannot top up");
                    *pay = before;
                    return Round::Paid;
                }
            }
        };
        // If the runner refuses this payment, things go on as before it; but a remote signer
        // has moved its state (and maybe the terms) on, and that is kept.
        let before =
            if remote { LivePay { remote: pay.remote.clone(), terms: pay.terms.clone(), ..before } } else { before };
        let mut req = self.client.post(&pay.terms.payment_url).timeout(self.settings.head_timeout);
        for (n, v) in self.payer_header() {
            req = req.insert_header((n, v));
        }
        let answer =
            req.insert_header(("Livepeer-Payment", payment)).insert_header(("Livepeer-Segment", segment)).send().await;
        let mut resp = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(what, error = %e, "top-up did not reach the runner");
                *pay = before;
                return Round::Paid;
            }
        };
        let status = resp.status().as_u16();
        let json = resp.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = resp.body().limit(ERROR_READ_BYTES).await.unwrap_or_default();
        match status {
            200..=299 => {
                match parse_top_up(&body, json, &pay.terms) {
                    Ok(t) => pay.terms = t,
                    Err(e) => tracing::warn!(what, error = %e, "top-up answer without fresh ticket params"),
                }
                metrics::counter!(crate::metrics::APP_TOP_UPS_TOTAL, "app" => label, "result" => "ok").increment(1);
                Round::Paid
            }
            404 => {
                metrics::counter!(crate::metrics::APP_TOP_UPS_TOTAL, "app" => label, "result" => "gone").increment(1);
                Round::Gone(excerpt(&body))
            }
            _ => {
                // 400/403 (tickets or credentials refused), 409 (price changed): fresh params.
                tracing::warn!(what, status, answer = %excerpt(&body), "top-up refused; refreshing the payment parameters");
                metrics::counter!(crate::metrics::APP_TOP_UPS_TOTAL, "app" => label, "result" => "refused")
                    .increment(1);
                *pay = before;
                if let Some(t) = self.refresh(pay).await {
                    pay.terms = t;
                }
                Round::Paid
            }
        }
    }

    /// A remote signer's payment for `what`: [`Signed::Nothing`] when there is nothing to
    /// send this round (482: the balance covers it; the last state is kept, go-livepeer #4077)
    /// or when the signer failed (tried again next round); [`Signed::PriceRefused`] when it
    /// refuses the runner's price (481). A 480 gets fresh ticket params from the orchestrator
    /// (`/refresh-payment`) and asks once more.
    async fn sign_remotely(&self, what: &str, app: &AppName, label: &str, pay: &mut LivePay) -> Signed {
        let Some(remote) = self.remote.clone() else { return Signed::Nothing };
        let top_up = |result: &'static str| {
            metrics::counter!(crate::metrics::APP_TOP_UPS_TOTAL, "app" => label.to_string(), "result" => result)
                .increment(1);
        };
        let mut refreshed = false;
        loop {
            let state = pay.remote.clone().flatten();
            let ask = PaymentAsk {
                orchestrator: &pay.terms.info_b64,
                price: pay.price,
                manifest_id: &pay.terms.manifest_id,
                app: app.as_str(),
                ceilings: self.policies.ceilings(&app.board_key()),
                state: state.as_ref(),
            };
            match remote.generate(&self.client, &ask).await {
                SignerAnswer::Paid { payment, seg_creds, state } => {
                    pay.paid_remotely(&payment, state);
                    return Signed::Headers(payment, seg_creds);
                }
                SignerAnswer::NoTickets => {
                    top_up("skipped");
                    return Signed::Nothing;
                }
                SignerAnswer::Refresh if !refreshed => {
                    refreshed = true;
                    match self.refresh(pay).await {
                        Some(t) => pay.terms = t,
                        None => {
                            top_up("signer-failed");
                            return Signed::Nothing;
                        }
                    }
                }
                SignerAnswer::PriceExceeded(why) => {
                    top_up("signer-refused");
                    tracing::warn!(what, app = %app, why, "the remote signer refuses the runner's price");
                    return Signed::PriceRefused;
                }
                other => {
                    top_up("signer-failed");
                    tracing::warn!(what, app = %app, answer = ?other, "the remote signer did not pay; trying again next round");
                    return Signed::Nothing;
                }
            }
        }
    }

    /// Writes a session's payments back (unless it ended meanwhile).
    fn keep(&self, id: &str, pay: LivePay) {
        if let Some(h) = self.sessions.table.lock().held_mut(id) {
            h.pay = Some(pay);
        }
    }

    /// `POST {orchestrator}/refresh-payment`: fresh ticket params for the session's manifest.
    async fn refresh(&self, pay: &LivePay) -> Option<super::super::pay::Terms> {
        let sender = self.payer()?;
        let url = format!("{}/refresh-payment", pay.terms.orchestrator.trim_end_matches('/'));
        let body = json!({"sender": format!("0x{}", hex::encode(sender)), "manifest_id": pay.terms.manifest_id});
        let mut r = self.client.post(&url).timeout(self.settings.head_timeout).send_json(&body).await.ok()?;
        let bytes = r.body().limit(ERROR_READ_BYTES).await.ok()?;
        if !r.status().is_success() {
            tracing::warn!(url, status = r.status().as_u16(), "refresh-payment refused");
            return None;
        }
        let mut t = parse_challenge(&bytes).ok()?;
        // go-livepeer names its generic /payment: the session's own URL still works and is
        // the one livepeer/node (without /payment) serves.
        t.payment_url = pay.terms.payment_url.clone();
        Some(t)
    }
}
