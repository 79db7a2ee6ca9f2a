//! Live payments, with the payments core (`route::Payments::issue`: the operator's limits, the
//! spend cap, nonces, ticket signatures): answering a runner's 402 challenge, and keeping a
//! metered session funded on a cadence through its `payment_url`.
//!
//! Both dialects are detected, not configured: the challenge is the same JSON in both
//! (`payment_params` is a base64 `net.OrchestratorInfo`); after a top-up go-livepeer answers a
//! protobuf `net.PaymentResult` and `livepeer/node` a fresh challenge JSON; either carries the
//! ticket params to pay against next. The balance is the session's own (go-livepeer keeps one
//! per sender and manifest): credited with the EV sent, debited with the time elapsed at the
//! runner's price.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message as _;
use serde::Deserialize;

use crate::capability::Capability;
use crate::payment::{PayError, TicketParams};
use crate::protocol::signer::Signer;
use crate::route::Payments;

use super::price::{RunnerPrice, Unit};
use super::wire::{AuthToken, OrchestratorInfo, PaymentResult};

/// Seconds of a metered session paid when it is reserved (go-livepeer's signer preloads 10 s
/// for `live`).
pub(crate) const PRELOAD_SECONDS: f64 = 10.0;

/// The request header naming the payer (go-livepeer `liveRunnerSenderHeader`).
pub const PAYER_HEADER: &str = "Livepeer-Payer-Address";

/// A 402 challenge's JSON.
#[derive(Debug, Deserialize)]
struct ChallengeJson {
    payment_params: String,
    #[serde(default)]
    orchestrator: String,
    #[serde(default)]
    manifest_id: String,
    #[serde(default)]
    payment_url: String,
}

/// What paying a runner's session takes, from its challenge (or a later top-up's answer).
#[derive(Debug, Clone)]
pub(crate) struct Terms {
    pub(crate) params: TicketParams,
    /// The expected price the payment names (`pricePerUnit`, `pixelsPerUnit`).
    pub(crate) price: (i64, i64),
    pub(crate) auth: AuthToken,
    pub(crate) manifest_id: String,
    pub(crate) payment_url: String,
    pub(crate) orchestrator: String,
    /// The `OrchestratorInfo` these terms came from, base64 (what a remote signer is sent).
    pub(crate) info_b64: String,
}

/// Why a challenge or a payment answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Not the challenge JSON.
    #[error("not a payment challenge: {0}")]
    NotAChallenge(String),
    /// `payment_params` is not base64 of an `OrchestratorInfo`.
    #[error("payment_params is not an OrchestratorInfo: {0}")]
    BadParams(String),
    /// The info has no ticket params or no auth token.
    #[error("the payment parameters lack {0}")]
    Missing(&'static str),
}

fn terms_of(
    info: OrchestratorInfo,
    manifest: &str,
    payment_url: &str,
    orchestrator: &str,
) -> Result<Terms, ChallengeError> {
    let params = info.ticket_params.as_ref().map(TicketParams::from).ok_or(ChallengeError::Missing("ticket_params"))?;
    let auth = info.auth_token.clone().ok_or(ChallengeError::Missing("auth_token"))?;
    let price = info.price_info.as_ref().map(|p| (p.price_per_unit, p.pixels_per_unit.max(1))).unwrap_or((0, 1));
    let manifest_id = if manifest.is_empty() { auth.session_id.clone() } else { manifest.to_string() };
    let orchestrator = if orchestrator.is_empty() { info.transcoder.clone() } else { orchestrator.to_string() };
    let info_b64 = STANDARD.encode(info.encode_to_vec());
    Ok(Terms { params, price, auth, manifest_id, payment_url: payment_url.to_string(), orchestrator, info_b64 })
}

fn decode_info(b64: &str) -> Result<OrchestratorInfo, ChallengeError> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|e| ChallengeError::BadParams(e.to_string()))?;
    OrchestratorInfo::decode(bytes.as_slice()).map_err(|e| ChallengeError::BadParams(e.to_string()))
}

/// The terms of a 402 challenge body.
pub(crate) fn parse_challenge(body: &[u8]) -> Result<Terms, ChallengeError> {
    let c: ChallengeJson = serde_json::from_slice(body).map_err(|e| ChallengeError::NotAChallenge(e.to_string()))?;
    terms_of(decode_info(&c.payment_params)?, &c.manifest_id, &c.payment_url, &c.orchestrator)
}

/// The terms after a top-up answered `body` (`json`: its content type says JSON), keeping
/// `previous`'s URLs where the answer has none: go-livepeer's protobuf `PaymentResult`, or
/// `livepeer/node`'s challenge JSON.
pub(crate) fn parse_top_up(body: &[u8], json: bool, previous: &Terms) -> Result<Terms, ChallengeError> {
    let mut t = if json || body.first() == Some(&b'{') {
        parse_challenge(body)?
    } else {
        let r = PaymentResult::decode(body).map_err(|e| ChallengeError::BadParams(e.to_string()))?;
        terms_of(r.info.ok_or(ChallengeError::Missing("info"))?, &previous.manifest_id, "", "")?
    };
    if t.payment_url.is_empty() {
        t.payment_url = previous.payment_url.clone();
    }
    if t.orchestrator.is_empty() {
        t.orchestrator = previous.orchestrator.clone();
    }
    Ok(t)
}

/// A session's (or a call's) payments: the terms to pay against and the credit it holds.
#[derive(Debug, Clone)]
pub(crate) struct LivePay {
    pub(crate) terms: Terms,
    /// The runner's price.
    pub(crate) price: RunnerPrice,
    /// Wei per second (0 for `fixed`: paid once).
    pub(crate) per_second: f64,
    /// EV sent less the time used, in wei, as of `at`.
    pub(crate) credit: f64,
    pub(crate) at: Instant,
    /// Tickets' EV sent in all (wei), for the admin view.
    pub(crate) ev_sent: f64,
    /// Paid through a remote signer: the last state it answered (`None` before its first
    /// payment); `None` outer: paid with the gateway's key.
    pub(crate) remote: Option<Option<serde_json::Value>>,
}

/// The two payment headers.
pub(crate) struct Headers {
    pub(crate) payment: String,
    pub(crate) segment: String,
}

/// Who pays and against which limits.
pub(crate) struct Payer<'a> {
    pub(crate) payments: &'a Payments,
    pub(crate) signer: &'a dyn Signer,
    pub(crate) app: &'a Capability,
    pub(crate) label: &'a str,
    pub(crate) spend_cap: Option<f64>,
}

impl LivePay {
    /// Payments of a runner priced `price` under `terms`.
    pub(crate) fn new(terms: Terms, price: RunnerPrice) -> Self {
        let per_second = match price.unit {
            Unit::Fixed => 0.0,
            _ => price.per_second().unwrap_or(0) as f64,
        };
        Self { terms, price, per_second, credit: 0.0, at: Instant::now(), ev_sent: 0.0, remote: None }
    }

    /// Payments of a runner priced `price` under `terms`, made by a remote signer.
    pub(crate) fn remote(terms: Terms, price: RunnerPrice) -> Self {
        Self { remote: Some(None), ..Self::new(terms, price) }
    }

    /// Counts a payment a remote signer made (`payment`, the `Livepeer-Payment` value) and keeps
    /// its `state` for the next one.
    pub(crate) fn paid_remotely(&mut self, payment: &str, state: serde_json::Value) {
        let now = Instant::now();
        let ev = payment_ev(payment);
        self.credit = self.credit_now(now) + ev;
        self.at = now;
        self.ev_sent += ev;
        self.remote = Some(Some(state));
    }

    /// The first payment: the fixed price, or [`PRELOAD_SECONDS`] of a metered price.
    pub(crate) fn first(&mut self, payer: &Payer<'_>, fixed_price: f64) -> Result<Option<Headers>, PayError> {
        let cost = if self.per_second > 0.0 { PRELOAD_SECONDS * self.per_second } else { fixed_price };
        self.pay(payer, cost)
    }

    /// The credit left now, the time since the last figure charged at the runner's price.
    pub(crate) fn credit_now(&self, now: Instant) -> f64 {
        self.credit - now.saturating_duration_since(self.at).as_secs_f64() * self.per_second
    }

    /// When the credit no longer covers `seconds`, a top-up to twice that (so a session pays
    /// every `seconds` or so, not a ticket every tick); `None` while the credit covers them.
    pub(crate) fn top_up(&mut self, payer: &Payer<'_>, seconds: f64) -> Result<Option<Headers>, PayError> {
        let now = Instant::now();
        self.credit = self.credit_now(now);
        self.at = now;
        if self.per_second <= 0.0 || self.credit >= seconds * self.per_second {
            return Ok(None);
        }
        self.pay(payer, 2.0 * seconds * self.per_second - self.credit)
    }

    fn pay(&mut self, payer: &Payer<'_>, cost: f64) -> Result<Option<Headers>, PayError> {
        let issued = payer.payments.issue(
            payer.app,
            payer.spend_cap,
            payer.label,
            &self.terms.params,
            cost,
            self.terms.price,
            payer.signer,
        )?;
        let Some((payment, ev)) = issued else { return Ok(None) };
        let Some(segment) = super::segment::seg_creds(&self.terms.manifest_id, &self.terms.auth, payer.signer) else {
            return Ok(None);
        };
        self.credit += ev;
        self.ev_sent += ev;
        Ok(Some(Headers { payment, segment }))
    }
}

/// The expected value of a `Livepeer-Payment` value (its tickets' EV), 0 when it cannot be
/// read: the figure a remote signer's payments are counted with.
pub(crate) fn payment_ev(payment: &str) -> f64 {
    let Ok(bytes) = STANDARD.decode(payment.trim()) else { return 0.0 };
    let Ok(p) = crate::payment::wire::WirePayment::decode(bytes.as_slice()) else { return 0.0 };
    p.ticket_params.as_ref().map_or(0.0, |t| TicketParams::from(t).ev() * p.ticket_sender_params.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liverunner::wire::OrchestratorInfo;
    use crate::payment::wire::{WirePriceInfo, WireTicketParams};

    fn info(session: &str) -> OrchestratorInfo {
        OrchestratorInfo {
            transcoder: "https://o".into(),
            ticket_params: Some(WireTicketParams::from(&crate::payment::params::tests::sound())),
            price_info: Some(WirePriceInfo { price_per_unit: 7, pixels_per_unit: 1, ..Default::default() }),
            address: vec![1; 20],
            auth_token: Some(AuthToken { token: vec![1], session_id: session.into(), expiration: 1 << 40 }),
        }
    }

    #[test]
    fn both_dialects_answers_are_read() {
        let b64 = STANDARD.encode(info("session_a").encode_to_vec());
        let challenge = serde_json::json!({"payment_params": b64, "orchestrator": "https://o", "manifest_id": "session_a",
            "payment_url": "https://o/apps/r/session/session_a/payment"});
        let t = parse_challenge(challenge.to_string().as_bytes()).expect("challenge");
        assert_eq!((t.price, t.manifest_id.as_str()), ((7, 1), "session_a"));
        // go-livepeer: protobuf PaymentResult; the URLs stay.
        let pb = PaymentResult { info: Some(info("session_a")) }.encode_to_vec();
        let next = parse_top_up(&pb, false, &t).expect("protobuf");
        assert_eq!(next.payment_url, t.payment_url);
        // livepeer/node: a challenge JSON.
        let node = parse_top_up(challenge.to_string().as_bytes(), true, &t).expect("json");
        assert_eq!(node.manifest_id, "session_a");
        assert!(matches!(parse_challenge(b"{\"error\":\"x\"}"), Err(ChallengeError::NotAChallenge(_))));
        let bad = serde_json::json!({"payment_params": "%%"});
        assert!(matches!(parse_challenge(bad.to_string().as_bytes()), Err(ChallengeError::BadParams(_))));
        let no_token = OrchestratorInfo { auth_token: None, ..info("s") };
        let j = serde_json::json!({"payment_params": STANDARD.encode(no_token.encode_to_vec())});
        assert_eq!(parse_challenge(j.to_string().as_bytes()).unwrap_err(), ChallengeError::Missing("auth_token"));
    }
}
