//! A simulated go-livepeer remote signer (`server/remote_signer.go`): the payment side a Live
//! Runner client delegates to when the key is not its own.
//!
//! - `POST /sign-orchestrator-info` answers `{"address", "signature"}`: the payer a client names
//!   in `Livepeer-Payer-Address`.
//! - `POST /generate-live-payment` takes `{"orchestrator": <base64 net.OrchestratorInfo>, "type":
//!   "live"|"lv2v"|"fixed", "ManifestID", "app", "maxPrice", "state"}` and answers `{"payment",
//!   "segCreds", "state"}`: tickets drawn on the info's params and signed with the signer's key
//!   (the same payments core the gateway pays with, so the simulated orchestrator verifies them
//!   as it verifies any), segment credentials for the manifest, and the opaque signed state to
//!   send back next time. Billing as go-livepeer's: `live` charges the seconds since the
//!   state's last update (10 s the first time), `lv2v` a 720p 30 fps second's pixels per second
//!   (60 s the first time), `fixed` one price. A balance the state carries is spent first: when
//!   it covers the charge the answer is **482** "no tickets", with no state (go-livepeer #4077:
//!   the client must resend its last state).
//! - **481** when the orchestrator's price is over the request's `maxPrice`; **480** (with
//!   `Livepeer-Orchestrator-URL`) and any other status on demand ([`SignerHandle::fail_next`]);
//!   400 for a malformed request or a state this signer did not sign, or a missing `ManifestID`
//!   once state exists.
//! - `GET /discover-orchestrators` lists the orchestrators a test names
//!   ([`SignerHandle::list_orchestrators`]); 503 while it names none.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use byoc_actors::capability::Capability;
use byoc_actors::liverunner::segment;
use byoc_actors::liverunner::wire::OrchestratorInfo;
use byoc_actors::payment::plan::Limits;
use byoc_actors::payment::ticket::TicketParams;
use byoc_actors::protocol::signer::SharedSigner;
use byoc_actors::route::Payments;
use parking_lot::Mutex;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// go-livepeer `HTTPStatusRefreshSession`.
pub const REFRESH_SESSION: u16 = 480;
/// go-livepeer `HTTPStatusPriceExceeded`.
pub const PRICE_EXCEEDED: u16 = 481;
/// go-livepeer `HTTPStatusNoTickets`.
pub const NO_TICKETS: u16 = 482;

/// Pixels of a 720p 30 fps second (go-livepeer's `defaultSegInfo`).
const PIXELS_PER_SECOND: f64 = 1280.0 * 720.0 * 30.0;

/// What the signer saw.
#[derive(Debug, Clone, Default)]
pub struct SignerStats {
    /// `/sign-orchestrator-info` calls.
    pub orchestrator_info: u64,
    /// `/generate-live-payment` calls, whatever their answer.
    pub requests: u64,
    /// Payments generated (200).
    pub paid: u64,
    /// 482 answers (the balance covered the charge).
    pub no_tickets: u64,
    /// 480 answers.
    pub refresh: u64,
    /// 481 answers.
    pub price_exceeded: u64,
    /// Requests carrying a state.
    pub with_state: u64,
    /// The sequence numbers of the states requests carried, in order (`None`: no state).
    pub state_seqs: Vec<Option<u64>>,
    /// Each request's `type`, `ManifestID` and `app`.
    pub requests_seen: Vec<(String, String, String)>,
    /// The status each request was answered, in order.
    pub answers: Vec<u16>,
    /// `/discover-orchestrators` calls.
    pub discoveries: u64,
    /// The `Authorization` header of the last request (the client's configured headers).
    pub authorization: Option<String>,
}

/// The signer's state, shared with the test that drives it.
pub struct SignerState {
    signer: SharedSigner,
    payments: Payments,
    /// The payments core's spend key (one for everything this signer pays).
    capability: Capability,
    secret: [u8; 32],
    fail_next: Mutex<VecDeque<u16>>,
    stats: Mutex<SignerStats>,
    /// The orchestrators `/discover-orchestrators` lists.
    orchestrators: Mutex<Vec<String>>,
}

impl std::fmt::Debug for SignerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerState").field("address", &self.signer.address()).finish_non_exhaustive()
    }
}

impl SignerState {
    /// What it saw so far.
    pub fn stats(&self) -> SignerStats {
        self.stats.lock().clone()
    }
}

/// A running simulated signer.
#[derive(Debug, Clone)]
pub struct SignerHandle {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its state.
    pub state: Arc<SignerState>,
}

impl SignerHandle {
    /// The next `/generate-live-payment` answers `status` (480, 481, 482, 500...) instead of a
    /// payment; queued in order.
    pub fn fail_next(&self, status: u16) {
        self.state.fail_next.lock().push_back(status);
    }

    /// The orchestrators `GET /discover-orchestrators` lists from now on (none: 503, as
    /// go-livepeer's signer answers while its cache is empty).
    pub fn list_orchestrators(&self, urls: &[&str]) {
        *self.state.orchestrators.lock() = urls.iter().map(|u| u.to_string()).collect();
    }

    /// The payer address (`0x` + 40 hex).
    pub fn address(&self) -> String {
        self.state.signer.payer().map(|a| format!("0x{}", hex::encode(a))).unwrap_or_default()
    }
}

/// Starts a signer paying with `signer` (a keyed one) on `listener`; must run inside an actix
/// system.
pub fn start_signer(listener: TcpListener, signer: SharedSigner) -> std::io::Result<SignerHandle> {
    let url = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(SignerState {
        signer,
        payments: Payments::new(Limits::default()),
        capability: Capability::new("live-runner").map_err(std::io::Error::other)?,
        secret: rand::random(),
        fail_next: Mutex::default(),
        stats: Mutex::default(),
        orchestrators: Mutex::default(),
    });
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/sign-orchestrator-info", web::post().to(orchestrator_info))
            .route("/generate-live-payment", web::post().to(generate))
            .route("/discover-orchestrators", web::get().to(discover))
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service as _;
                if let Some(state) = req.app_data::<web::Data<SignerState>>() {
                    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    state.stats.lock().authorization = auth;
                }
                srv.call(req)
            })
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    actix_web::rt::spawn(server);
    Ok(SignerHandle { url, state })
}

/// go-livepeer's `respondJsonError`: `{"error": {"message": ...}}`.
fn error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .json(json!({"error": {"message": message}}))
}

async fn orchestrator_info(state: web::Data<SignerState>) -> HttpResponse {
    state.stats.lock().orchestrator_info += 1;
    let Some(address) = state.signer.payer() else { return error(500, "the signer has no key") };
    let address = format!("0x{}", hex::encode(address));
    HttpResponse::Ok().json(json!({"address": address, "signature": state.signer.sign(address.as_bytes())}))
}

/// `GET /discover-orchestrators` (`remote_discovery.go`): each listed orchestrator with its
/// score and no runner records of its own here (a client asks each orchestrator directly).
async fn discover(state: web::Data<SignerState>) -> HttpResponse {
    state.stats.lock().discoveries += 1;
    let list = state.orchestrators.lock().clone();
    if list.is_empty() {
        return error(503, "Service Unavailable Error");
    }
    let doc: Vec<_> =
        list.iter().map(|a| json!({"address": a, "score": 1.0, "capabilities": [], "runners": []})).collect();
    HttpResponse::Ok().json(doc)
}

/// The request body (go-livepeer `RemotePaymentRequest`, master's fields).
#[derive(Debug, Deserialize)]
struct Request {
    orchestrator: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default, rename = "ManifestID")]
    manifest_id: String,
    #[serde(default)]
    app: String,
    #[serde(default, rename = "maxPrice")]
    max_price: Option<MaxPrice>,
    #[serde(default)]
    state: Option<StateSig>,
}

#[derive(Debug, Deserialize)]
struct MaxPrice {
    price: f64,
}

/// go-livepeer `RemotePaymentStateSig`: base64 bytes in Go's field names.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateSig {
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Sig", default)]
    sig: String,
}

/// The state this signer keeps in its answers (opaque to clients).
#[derive(Debug, Default, Serialize, Deserialize)]
struct PaymentState {
    last_update_ms: u64,
    balance: f64,
    seq: u64,
    manifest: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn mac(secret: &[u8; 32], bytes: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac, SimpleHmac};
    let Ok(mut m) = <SimpleHmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else { return Vec::new() };
    m.update(bytes);
    m.finalize().into_bytes().to_vec()
}

/// The state a request carried, if it is one this signer signed.
fn open_state(secret: &[u8; 32], s: &StateSig) -> Result<PaymentState, &'static str> {
    let bytes = STANDARD.decode(&s.state).map_err(|_| "invalid state")?;
    let sig = STANDARD.decode(&s.sig).map_err(|_| "invalid sig")?;
    if sig != mac(secret, &bytes) {
        return Err("invalid sig");
    }
    serde_json::from_slice(&bytes).map_err(|_| "invalid state")
}

fn seal_state(secret: &[u8; 32], s: &PaymentState) -> StateSig {
    let bytes = serde_json::to_vec(s).unwrap_or_default();
    StateSig { sig: STANDARD.encode(mac(secret, &bytes)), state: STANDARD.encode(bytes) }
}

async fn generate(state: web::Data<SignerState>, body: web::Bytes) -> HttpResponse {
    let resp = answer(&state, &body);
    state.stats.lock().answers.push(resp.status().as_u16());
    resp
}

fn answer(state: &SignerState, body: &[u8]) -> HttpResponse {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(400, &e.to_string()),
    };
    let prior = req.state.as_ref().filter(|s| !s.state.is_empty() || !s.sig.is_empty());
    {
        let mut st = state.stats.lock();
        st.requests += 1;
        st.requests_seen.push((req.kind.clone(), req.manifest_id.clone(), req.app.clone()));
        st.with_state += u64::from(prior.is_some());
        st.state_seqs.push(prior.and_then(|p| open_state(&state.secret, p).ok()).map(|p| p.seq));
    }
    let Ok(bytes) = STANDARD.decode(req.orchestrator.trim()) else { return error(400, "orchestrator is not base64") };
    let Ok(info) = OrchestratorInfo::decode(bytes.as_slice()) else {
        return error(400, "orchestrator is not an OrchestratorInfo");
    };
    let price = info.price_info.as_ref().map(|p| (p.price_per_unit, p.pixels_per_unit)).unwrap_or((0, 0));
    if price.0 <= 0 || price.1 <= 0 {
        return error(400, "missing or zero priceInfo");
    }
    let (Some(wire_params), Some(token)) = (info.ticket_params.as_ref(), info.auth_token.as_ref()) else {
        return error(400, "missing ticketParams in OrchestratorInfo");
    };
    let mut pstate = match prior {
        Some(p) => match open_state(&state.secret, p) {
            Ok(s) => s,
            Err(why) => return error(400, why),
        },
        None => PaymentState::default(),
    };
    if prior.is_some() && req.manifest_id.is_empty() {
        return error(400, "missing manifestID");
    }
    if let Some(status) = state.fail_next.lock().pop_front() {
        let mut st = state.stats.lock();
        return match status {
            REFRESH_SESSION => {
                st.refresh += 1;
                HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
                    .insert_header(("Livepeer-Orchestrator-URL", info.transcoder.clone()))
                    .json(json!({"error": {"message": "refresh session for remote signer"}}))
            }
            NO_TICKETS => {
                st.no_tickets += 1;
                error(status, "no tickets")
            }
            PRICE_EXCEEDED => {
                st.price_exceeded += 1;
                error(status, "orchestrator price exceeds maximum price")
            }
            other => error(other, "injected failure"),
        };
    }
    let per_unit = price.0 as f64 / price.1 as f64;
    if req.max_price.as_ref().is_some_and(|m| per_unit > m.price) {
        state.stats.lock().price_exceeded += 1;
        return error(PRICE_EXCEEDED, &format!("orchestrator price {per_unit:.3} exceeds maximum price"));
    }
    let now = now_ms();
    let first = pstate.last_update_ms == 0;
    let seconds = if first { None } else { Some(now.saturating_sub(pstate.last_update_ms) as f64 / 1000.0) };
    let fee = match req.kind.as_str() {
        "live" => seconds.map_or(10.0, f64::ceil) * per_unit,
        "lv2v" => seconds.unwrap_or(60.0) * PIXELS_PER_SECOND * per_unit,
        "fixed" => per_unit,
        _ => return error(400, "invalid job type"),
    };
    let need = fee - pstate.balance;
    if need <= 0.0 {
        state.stats.lock().no_tickets += 1;
        return error(NO_TICKETS, "no tickets");
    }
    let params = TicketParams::from(wire_params);
    let manifest = if req.manifest_id.is_empty() { token.session_id.clone() } else { req.manifest_id.clone() };
    let issued = state.payments.issue(&state.capability, None, "live-runner", &params, need, price, &*state.signer);
    let (payment, ev) = match issued {
        Ok(Some(p)) => p,
        Ok(None) => return error(500, "the signer cannot sign tickets"),
        Err(e) => return error(400, &e.to_string()),
    };
    let Some(seg_creds) = segment::seg_creds(&manifest, token, &*state.signer) else {
        return error(500, "the signer cannot sign segment credentials");
    };
    pstate.balance += ev - fee;
    pstate.last_update_ms = now;
    pstate.seq = if first { 0 } else { pstate.seq + 1 };
    pstate.manifest = manifest;
    state.stats.lock().paid += 1;
    HttpResponse::Ok().json(json!({
        "payment": payment,
        "segCreds": seg_creds,
        "state": seal_state(&state.secret, &pstate),
    }))
}
