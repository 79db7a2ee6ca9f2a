//! Payments delegated to a go-livepeer remote signer, for operators whose key lives there
//! (`server/remote_signer.go`): the payer address from `POST /sign-orchestrator-info`, and
//! each payment from `POST /generate-live-payment`, which answers the tickets, the segment
//! credentials and an opaque signed state to send back unchanged the next time.
//!
//! The signer bills by itself (`live`: the seconds since its state's last update, 10 s the first
//! time; `lv2v`: 720p pixels; `fixed`: one price), so a session asks it every payment interval.
//! Its answers, classified in one place ([`classify`]):
//! - **480** refresh: the orchestrator's ticket params are stale; the caller gets fresh ones
//!   (`/refresh-payment`) and asks again.
//! - **481** price exceeded: the signer refuses the runner's price (its ceiling, the request's
//!   `maxPrice`, or the session's first price): that runner cannot be paid.
//! - **482** no tickets: the balance still covers this round; nothing to send. Its answer has no
//!   state, so the caller keeps the last one (go-livepeer #4077: a client that dropped it paid
//!   once, then was released).

use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::discovery::webhook::WebhookHeaders;
use crate::protocol::client::excerpt;

use super::price::{Ceilings, RunnerPrice, Unit, PIXELS_PER_720P_SECOND};

/// Largest signer answer read (tickets for 100 winning chances are a few KiB).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A go-livepeer remote signer that pays for the gateway.
#[derive(Debug)]
pub struct RemoteSigner {
    /// Its base URL.
    url: String,
    /// Headers sent with every request (values secret).
    headers: WebhookHeaders,
    /// Bound on one request.
    timeout: Duration,
    /// The payer address, once the signer said it.
    address: Mutex<Option<[u8; 20]>>,
}

/// A payment the signer made.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub(crate) payment: String,
    pub(crate) seg_creds: String,
    pub(crate) state: Value,
}

/// What the signer answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SignerAnswer {
    /// A payment.
    Paid { payment: String, seg_creds: String, state: Value },
    /// 480: fresh ticket params needed.
    Refresh,
    /// 481: the runner's price is over a ceiling.
    PriceExceeded(String),
    /// 482: nothing owed this round.
    NoTickets,
    /// Anything else (its status, or 0 when it did not answer, and what it said).
    Failed(u16, String),
}

/// What one request asks the signer to pay.
#[derive(Debug)]
pub(crate) struct PaymentAsk<'a> {
    /// The challenge's `payment_params` (base64 `net.OrchestratorInfo`).
    pub(crate) orchestrator: &'a str,
    pub(crate) price: RunnerPrice,
    pub(crate) manifest_id: &'a str,
    pub(crate) app: &'a str,
    pub(crate) ceilings: Ceilings,
    /// The last state the signer answered (`None` the first time).
    pub(crate) state: Option<&'a Value>,
}

/// go-livepeer's job type for a runner's unit (`remote_signer.go`: `live` <-> seconds, `lv2v`
/// <-> 720p pixel-seconds, `fixed` <-> fixed).
pub(crate) fn job_type(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "live",
        Unit::PixelSeconds720p => "lv2v",
        Unit::Fixed => "fixed",
    }
}

/// The request body.
pub(crate) fn request_body(ask: &PaymentAsk<'_>) -> Value {
    let (unit, max) = match ask.price.unit {
        Unit::Seconds => ("seconds", ask.ceilings.per_second.map(|c| c as f64)),
        Unit::PixelSeconds720p => {
            ("720p-pixel-seconds", ask.ceilings.per_second.map(|c| c as f64 / PIXELS_PER_720P_SECOND as f64))
        }
        Unit::Fixed => ("fixed", ask.ceilings.per_request.map(|c| c as f64)),
    };
    let mut body = json!({
        "orchestrator": ask.orchestrator,
        "type": job_type(ask.price.unit),
        "ManifestID": ask.manifest_id,
        "app": ask.app,
    });
    if let Some(max) = max {
        body["maxPrice"] = json!({"price": max, "currency": "wei", "unit": unit});
    }
    if let Some(state) = ask.state {
        body["state"] = state.clone();
    }
    body
}

#[derive(Deserialize)]
struct PaidJson {
    payment: String,
    #[serde(rename = "segCreds", default)]
    seg_creds: String,
    #[serde(default)]
    state: Value,
}

/// The signer's `{"error": {"message"}}` (or the body as it is).
fn message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| excerpt(body))
}

/// Classifies the signer's answer `status` / `body`.
pub(crate) fn classify(status: u16, body: &[u8]) -> SignerAnswer {
    match status {
        200 => match serde_json::from_slice::<PaidJson>(body) {
            Ok(p) if !p.payment.is_empty() && !p.seg_creds.is_empty() && p.state.is_object() => {
                SignerAnswer::Paid { payment: p.payment, seg_creds: p.seg_creds, state: p.state }
            }
            Ok(_) => SignerAnswer::Failed(200, "the answer lacks payment, segCreds or state".into()),
            Err(e) => SignerAnswer::Failed(200, format!("not a payment: {e}")),
        },
        480 => SignerAnswer::Refresh,
        481 => SignerAnswer::PriceExceeded(message(body)),
        482 => SignerAnswer::NoTickets,
        s => SignerAnswer::Failed(s, message(body)),
    }
}

impl RemoteSigner {
    /// A signer at `url` (an `http(s)://host:port` origin).
    pub fn new(url: String, headers: WebhookHeaders, timeout: Duration) -> Self {
        Self { url: url.trim_end_matches('/').to_string(), headers, timeout, address: Mutex::new(None) }
    }

    /// The payer address, if the signer said it already.
    pub(crate) fn cached_payer(&self) -> Option<[u8; 20]> {
        *self.address.lock()
    }

    /// The payer address: asked once (`POST /sign-orchestrator-info`), then kept.
    pub(crate) async fn payer(&self, client: &awc::Client) -> Result<[u8; 20], String> {
        if let Some(a) = self.cached_payer() {
            return Ok(a);
        }
        let (status, body) = self.post(client, "/sign-orchestrator-info", &json!({})).await?;
        if status != 200 {
            return Err(format!("sign-orchestrator-info answered {status}: {}", message(&body)));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("sign-orchestrator-info: {e}"))?;
        let hex_addr = v["address"].as_str().ok_or("sign-orchestrator-info: no address")?;
        let bytes = hex::decode(hex_addr.trim().trim_start_matches("0x"))
            .map_err(|_| format!("sign-orchestrator-info: {hex_addr:?} is not an address"))?;
        let addr: [u8; 20] =
            bytes.try_into().map_err(|_| format!("sign-orchestrator-info: {hex_addr:?} is not 20 bytes"))?;
        *self.address.lock() = Some(addr);
        Ok(addr)
    }

    /// `POST /generate-live-payment`.
    pub(crate) async fn generate(&self, client: &awc::Client, ask: &PaymentAsk<'_>) -> SignerAnswer {
        match self.post(client, "/generate-live-payment", &request_body(ask)).await {
            Ok((status, body)) => classify(status, &body),
            Err(e) => SignerAnswer::Failed(0, e),
        }
    }

    async fn post(&self, client: &awc::Client, path: &str, body: &Value) -> Result<(u16, bytes::Bytes), String> {
        let mut req = client.post(format!("{}{path}", self.url)).timeout(self.timeout);
        for (n, v) in self.headers.pairs() {
            req = req.insert_header((n.clone(), v.clone()));
        }
        let mut resp = req.send_json(body).await.map_err(|e| format!("the remote signer: {e}"))?;
        let bytes =
            resp.body().limit(MAX_ANSWER_BYTES).await.map_err(|e| format!("the remote signer's answer: {e}"))?;
        Ok((resp.status().as_u16(), bytes))
    }
}

impl Generated {
    /// From a `Paid` answer.
    pub(crate) fn of(answer: SignerAnswer) -> Result<Self, SignerAnswer> {
        match answer {
            SignerAnswer::Paid { payment, seg_creds, state } => Ok(Self { payment, seg_creds, state }),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_go_livepeer_sends_them() {
        let paid = br#"{"payment":"cA==","segCreds":"cw==","state":{"State":"eA==","Sig":"eQ=="}}"#;
        assert!(matches!(classify(200, paid), SignerAnswer::Paid { .. }));
        assert!(matches!(classify(200, br#"{"payment":"cA=="}"#), SignerAnswer::Failed(200, _)));
        assert!(matches!(classify(200, b"<html>"), SignerAnswer::Failed(200, _)));
        assert_eq!(
            classify(480, br#"{"error":{"message":"refresh session for remote signer"}}"#),
            SignerAnswer::Refresh
        );
        assert_eq!(
            classify(481, br#"{"error":{"message":"orchestrator price 3.000 exceeds maximum price 2.000"}}"#),
            SignerAnswer::PriceExceeded("orchestrator price 3.000 exceeds maximum price 2.000".into())
        );
        assert_eq!(classify(482, br#"{"error":{"message":"no tickets"}}"#), SignerAnswer::NoTickets);
        assert_eq!(
            classify(400, br#"{"error":{"message":"invalid sig"}}"#),
            SignerAnswer::Failed(400, "invalid sig".into())
        );
        assert_eq!(classify(500, b"boom"), SignerAnswer::Failed(500, "boom".into()));
    }

    #[test]
    fn the_request_names_the_type_of_the_unit_and_the_ceiling_in_that_unit() {
        let state = json!({"State": "eA==", "Sig": "eQ=="});
        let ceilings = Ceilings { per_second: Some(PIXELS_PER_720P_SECOND * 2), per_request: Some(9) };
        let ask = |unit, state| PaymentAsk {
            orchestrator: "b64",
            price: RunnerPrice { price: 1, unit },
            manifest_id: "m",
            app: "a/b",
            ceilings,
            state,
        };
        let live = request_body(&ask(Unit::Seconds, None));
        assert_eq!((live["type"].as_str(), live["ManifestID"].as_str()), (Some("live"), Some("m")));
        assert_eq!(live["maxPrice"]["price"], (PIXELS_PER_720P_SECOND * 2) as f64);
        assert!(live.get("state").is_none(), "no state the first time");
        let lv2v = request_body(&ask(Unit::PixelSeconds720p, Some(&state)));
        assert_eq!((lv2v["type"].as_str(), lv2v["maxPrice"]["price"].as_f64()), (Some("lv2v"), Some(2.0)));
        assert_eq!(lv2v["state"], state, "sent back unchanged");
        let fixed = request_body(&ask(Unit::Fixed, None));
        assert_eq!((fixed["type"].as_str(), fixed["maxPrice"]["unit"].as_str()), (Some("fixed"), Some("fixed")));
        let none = request_body(&PaymentAsk { ceilings: Ceilings::default(), ..ask(Unit::Seconds, None) });
        assert!(none.get("maxPrice").is_none());
    }
}
