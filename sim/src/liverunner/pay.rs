//! Live payments at the simulated orchestrator, checked as go-livepeer checks them
//! (`ai_http.go:reservePaidLiveRunnerSession`, `segment_rpc.go:verifySegCreds`,
//! `core/orchestrator.go:ProcessPayment`): a priced runner answers a reservation without
//! payment headers with the 402 challenge (fresh ticket params bound to the payer and the
//! price, an auth token for a new manifest); a paid retry has its tickets verified by the same
//! ledger as BYOC payments (`payments.rs`: params as issued, signatures, nonces) and its
//! segment credentials by [`segment::verify`] plus the auth token's HMAC and expiry; metered
//! sessions are debited every `debit_interval_ms` and released when their credit runs out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use byoc_actors::liverunner::segment;
use byoc_actors::liverunner::wire::{AuthToken, OrchestratorInfo, PaymentResult};
use byoc_actors::payment::wire::{WirePayment, WirePriceInfo, WireTicketParams};
use prost::Message as _;
use serde_json::json;

use super::discovery::fail;
use super::session::runner_not_found;
use super::{Dialect, Live, RunnerSpec};
use crate::knobs::ParamsQuirk;
use crate::state::SimState;

/// Pixels of a 720p 30 fps second.
const PIXELS_PER_SECOND: f64 = 1280.0 * 720.0 * 30.0;
/// How long an auth token is valid (go-livepeer's `authTokenValidPeriod`).
const TOKEN_VALIDITY: Duration = Duration::from_secs(30 * 60);

/// A challenge handed out.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    /// The runner it was for.
    pub(crate) route: String,
    /// Its price then (wei per unit).
    pub(crate) price: u64,
}

/// A paid reservation's payment, verified but not yet processed.
#[derive(Debug, Clone)]
pub(crate) struct Paid {
    pub(crate) manifest: String,
    pub(crate) payer: String,
    pub(crate) per_second: f64,
    header: String,
    fixed: Option<u64>,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// go-livepeer's `AuthToken(sessionID, expiration)`: an HMAC of both under the orchestrator's
/// secret.
fn token_bytes(secret: &[u8; 32], session_id: &str, expiration: i64) -> Vec<u8> {
    use hmac::{KeyInit, Mac, SimpleHmac};
    let Ok(mut mac) = <SimpleHmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else { return Vec::new() };
    mac.update(session_id.as_bytes());
    mac.update(&expiration.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn per_second(spec: &RunnerSpec) -> f64 {
    let price = spec.price.unwrap_or(0) as f64;
    match spec.unit.as_str() {
        "720p-pixel-seconds" => price * PIXELS_PER_SECOND,
        _ => price,
    }
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Fresh `OrchestratorInfo` for `payer` at `price`, authenticating `manifest`.
fn orch_info(live: &mut Live, service: &str, payer: &str, price: u64, manifest: &str) -> OrchestratorInfo {
    if live.secret == [0; 32] {
        live.secret = rand::random();
    }
    let price_i = i64::try_from(price).unwrap_or(i64::MAX);
    let params = live.ledger.issue(payer, (price_i, 1), ParamsQuirk::None);
    let expiration = unix_now() + TOKEN_VALIDITY.as_secs() as i64;
    OrchestratorInfo {
        transcoder: service.to_string(),
        ticket_params: Some(WireTicketParams::from(&params)),
        price_info: Some(WirePriceInfo { price_per_unit: price_i, pixels_per_unit: 1, ..Default::default() }),
        address: crate::payments::RECIPIENT.to_vec(),
        auth_token: Some(AuthToken {
            token: token_bytes(&live.secret, manifest, expiration),
            session_id: manifest.to_string(),
            expiration,
        }),
    }
}

/// The challenge JSON for `info`, paid at `payment_url`.
fn challenge_json(info: &OrchestratorInfo, payment_url: &str) -> serde_json::Value {
    json!({
        "payment_params": STANDARD.encode(info.encode_to_vec()),
        "orchestrator": info.transcoder,
        "manifest_id": info.auth_token.as_ref().map(|t| t.session_id.clone()).unwrap_or_default(),
        "payment_url": payment_url,
    })
}

/// The 402 challenge for a reservation of `spec`.
fn challenge(live: &mut Live, spec: &RunnerSpec, req: &HttpRequest, service: &str) -> HttpResponse {
    let dialect = live.knobs.dialect;
    let payer = header(req, "Livepeer-Payer-Address")
        .filter(|a| a.len() == 42 && a.starts_with("0x") && hex::decode(&a[2..]).is_ok());
    let Some(payer) = payer else {
        return match dialect {
            Dialect::GoLivepeer => HttpResponse::PaymentRequired()
                .json(json!({"error": {"message": "invalid live runner payment signer address"}})),
            Dialect::Node => fail(dialect, StatusCode::PAYMENT_REQUIRED, "Livepeer-Payer-Address is required"),
        };
    };
    let price = spec.price.unwrap_or(0);
    let manifest = super::session_id();
    let info = orch_info(live, service, &payer, price, &manifest);
    live.challenges.insert(manifest.clone(), Challenge { route: spec.route.clone(), price });
    live.stats.challenges += 1;
    let url = format!("{service}/apps/{}/session/{manifest}/payment", spec.route);
    HttpResponse::PaymentRequired().json(challenge_json(&info, &url))
}

/// The payment's sender (hex) and the segment's manifest, both checked: the credentials were
/// signed by the sender and carry one of this orchestrator's auth tokens, unexpired.
fn credentials(live: &Live, payment: &str, seg: &str) -> Result<(String, String, WirePayment), Box<HttpResponse>> {
    let dialect = live.knobs.dialect;
    let decoded = STANDARD.decode(payment.trim()).ok().and_then(|b| WirePayment::decode(b.as_slice()).ok());
    let Some(p) = decoded else {
        return Err(Box::new(fail(
            dialect,
            StatusCode::PAYMENT_REQUIRED,
            "base64 decode error: could not parse payment",
        )));
    };
    let Ok(sender) = <[u8; 20]>::try_from(p.sender.as_slice()) else {
        return Err(Box::new(fail(dialect, StatusCode::PAYMENT_REQUIRED, "invalid payment sender")));
    };
    let data =
        segment::verify(seg, sender).map_err(|e| Box::new(fail(dialect, StatusCode::FORBIDDEN, &e.to_string())))?;
    let token = data.auth_token.unwrap_or_default();
    if token.token != token_bytes(&live.secret, &token.session_id, token.expiration) {
        return Err(Box::new(fail(dialect, StatusCode::FORBIDDEN, "invalid auth token")));
    }
    if token.expiration < unix_now() {
        return Err(Box::new(fail(dialect, StatusCode::FORBIDDEN, "expired auth token")));
    }
    Ok((format!("0x{}", hex::encode(sender)), token.session_id, p))
}

/// A reservation of priced runner `spec`: the challenge when the payment headers are missing
/// (go-livepeer: both; `livepeer/node`: either), else the verified payment.
pub(crate) fn admit(
    live: &mut Live,
    spec: &RunnerSpec,
    req: &HttpRequest,
    service: &str,
) -> Result<Paid, Box<HttpResponse>> {
    let dialect = live.knobs.dialect;
    let (payment, seg) = (header(req, "Livepeer-Payment"), header(req, "Livepeer-Segment"));
    let challenge_now = match dialect {
        Dialect::GoLivepeer => payment.is_none() && seg.is_none(),
        Dialect::Node => payment.is_none() || seg.is_none(),
    };
    if challenge_now {
        return Err(Box::new(challenge(live, spec, req, service)));
    }
    let (payer, manifest, p) = credentials(live, &payment.unwrap_or_default(), &seg.unwrap_or_default())?;
    let Some(issued) = live.challenges.get(&manifest) else {
        return Err(Box::new(fail(dialect, StatusCode::FORBIDDEN, "payment challenge not found")));
    };
    let price = spec.price.unwrap_or(0);
    if dialect == Dialect::Node && issued.price != price {
        return Err(Box::new(fail(
            dialect,
            StatusCode::CONFLICT,
            "runner price changed; request a new payment challenge",
        )));
    }
    let fixed = spec.unit == "fixed";
    if fixed {
        let expected = p.expected_price.map(|e| (e.price_per_unit, e.pixels_per_unit));
        if expected != Some((i64::try_from(price).unwrap_or(i64::MAX), 1)) {
            return Err(Box::new(fail(
                dialect,
                StatusCode::BAD_REQUEST,
                "payment price does not match live runner price",
            )));
        }
    }
    Ok(Paid {
        manifest,
        payer,
        per_second: if fixed { 0.0 } else { per_second(spec) },
        header: req.headers().get("Livepeer-Payment").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
        fixed: fixed.then_some(price),
    })
}

/// Processes a verified payment for the reservation `id` (credited to the payer under the
/// session's manifest). A fixed price is charged at once.
pub(crate) fn process(live: &mut Live, id: &str, paid: &Paid) -> Result<(), Box<HttpResponse>> {
    let dialect = live.knobs.dialect;
    if let Err(e) = live.ledger.pay(&paid.header, &paid.payer, id, 0) {
        live.stats.payments_refused += 1;
        return Err(Box::new(fail(dialect, StatusCode::BAD_REQUEST, &e)));
    }
    live.stats.payments += 1;
    if let Some(price) = paid.fixed {
        let balance = live.ledger.balance(&paid.payer, id, 0);
        if (balance as f64) < price as f64 {
            let (status, message) = match dialect {
                Dialect::GoLivepeer => (StatusCode::BAD_REQUEST, "Insufficient balance"),
                Dialect::Node => (StatusCode::PAYMENT_REQUIRED, "insufficient payment balance"),
            };
            return Err(Box::new(fail(dialect, status, message)));
        }
        live.ledger.debit(&paid.payer, id, 1.0, price as f64);
    }
    Ok(())
}

/// `POST /apps/{runner}/session/{id}/payment`: a top-up of a metered session.
pub(crate) async fn session_payment(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (route, id) = path.into_inner();
    let service = state.runner_service();
    let mut live = state.live_runner.lock();
    let dialect = live.knobs.dialect;
    let Some(runner) = live.runners.get(&route).filter(|r| !r.spec.gone) else {
        return runner_not_found(dialect);
    };
    let Some(session) = runner.sessions.get(&id) else {
        return fail(dialect, StatusCode::NOT_FOUND, "runner session not found");
    };
    if session.payer.is_none() {
        return fail(dialect, StatusCode::BAD_REQUEST, "live runner session is not paid");
    }
    if runner.spec.unit == "fixed" {
        return fail(
            dialect,
            StatusCode::CONFLICT,
            "fixed-price live runner sessions do not accept follow-up payments",
        );
    }
    let price = runner.spec.price.unwrap_or(0);
    top_up(&mut live, &req, &id, price, &service, &format!("{service}/apps/{route}/session/{id}/payment"))
}

/// `POST /payment` (go-livepeer's generic payment route): a top-up of the session its segment
/// credentials name.
pub(crate) async fn generic_payment(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let service = state.runner_service();
    let mut live = state.live_runner.lock();
    let (Some(payment), Some(seg)) = (header(&req, "Livepeer-Payment"), header(&req, "Livepeer-Segment")) else {
        return fail(live.knobs.dialect, StatusCode::PAYMENT_REQUIRED, "missing payment");
    };
    let (_, manifest, _) = match credentials(&live, &payment, &seg) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let found = live
        .runners
        .iter()
        .find(|(_, r)| r.sessions.contains_key(&manifest))
        .map(|(k, r)| (k.clone(), r.spec.price.unwrap_or(0)));
    let Some((route, price)) = found else {
        return fail(live.knobs.dialect, StatusCode::NOT_FOUND, "runner session not found");
    };
    top_up(&mut live, &req, &manifest, price, &service, &format!("{service}/apps/{route}/session/{manifest}/payment"))
}

fn top_up(live: &mut Live, req: &HttpRequest, id: &str, price: u64, service: &str, payment_url: &str) -> HttpResponse {
    let dialect = live.knobs.dialect;
    let (payment, seg) =
        (header(req, "Livepeer-Payment").unwrap_or_default(), header(req, "Livepeer-Segment").unwrap_or_default());
    let (payer, manifest, _) = match credentials(live, &payment, &seg) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    if manifest != id {
        return fail(dialect, StatusCode::FORBIDDEN, "mismatched session and payment manifest");
    }
    if let Err(e) = live.ledger.pay(&payment, &payer, id, 0) {
        live.stats.payments_refused += 1;
        return fail(dialect, StatusCode::BAD_REQUEST, &e);
    }
    live.stats.payments += 1;
    let info = orch_info(live, service, &payer, price, id);
    match dialect {
        // go-livepeer answers the protobuf PaymentResult with fresh ticket params.
        Dialect::GoLivepeer => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(PaymentResult { info: Some(info) }.encode_to_vec()),
        Dialect::Node => HttpResponse::Ok().json(challenge_json(&info, payment_url)),
    }
}

/// Body of `POST /refresh-payment`.
#[derive(serde::Deserialize)]
pub(crate) struct Refresh {
    sender: String,
    manifest_id: String,
}

/// `POST /refresh-payment`: fresh ticket params for the same payer and manifest.
pub(crate) async fn refresh_payment(body: web::Json<Refresh>, state: web::Data<SimState>) -> HttpResponse {
    let service = state.runner_service();
    let mut live = state.live_runner.lock();
    let dialect = live.knobs.dialect;
    let Some(issued) = live.challenges.get(&body.manifest_id).cloned() else {
        return fail(dialect, StatusCode::NOT_FOUND, "payment challenge not found");
    };
    let price = live.runners.get(&issued.route).and_then(|r| r.spec.price).unwrap_or(issued.price);
    let info = orch_info(&mut live, &service, &body.sender, price, &body.manifest_id);
    live.stats.refreshes += 1;
    // go-livepeer names its generic route; livepeer/node the session's.
    let url = match dialect {
        Dialect::GoLivepeer => format!("{service}/payment"),
        Dialect::Node => format!("{service}/apps/{}/session/{}/payment", issued.route, body.manifest_id),
    };
    HttpResponse::Ok().json(challenge_json(&info, &url))
}

/// One round of the debit loop: each paid metered session is charged the time since its last
/// charge (go-livepeer's `LivePaymentProcessor` charges the elapsed time; `livepeer/node` whole
/// elapsed seconds, the remainder carried), and released when its credit does not cover it.
pub(crate) fn debit_round(live: &mut Live, now: Instant) {
    let node = live.knobs.dialect == Dialect::Node;
    let mut unpaid = Vec::new();
    for (route, r) in &mut live.runners {
        for (id, s) in &mut r.sessions {
            let Some(payer) = s.payer.as_ref().filter(|_| s.per_second > 0.0) else { continue };
            let elapsed = now.saturating_duration_since(s.debited_at).as_secs_f64();
            let seconds = if node { elapsed.floor() } else { elapsed };
            if seconds <= 0.0 {
                continue;
            }
            let fee = seconds * s.per_second;
            if (live.ledger.balance(payer, id, 0) as f64) < fee {
                unpaid.push((route.clone(), id.clone()));
            } else {
                live.ledger.debit_wei(payer, id, fee);
                s.debited_at += Duration::from_secs_f64(seconds);
            }
        }
    }
    for (route, id) in unpaid {
        live.release(&route, &id);
        live.stats.released_unpaid += 1;
    }
}
