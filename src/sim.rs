//! A simulated BYOC orchestrator speaking the orchestrator side of the real protocol
//! (`GET /process/token`, `POST /process/request/...`, `POST /capability/register`), with
//! faults that can be changed at runtime: latency (with jitter), cold start, error rate, GPU
//! out-of-memory 500s, hang, wrong content type, forced status, capacity (reported, and
//! optionally enforced as a full GPU worker does: refusing or slowing down), slots held by
//! other gateways, price. A stopped simulator can be restarted on the same address (a crashed
//! container coming back).
//!
//! Used by the demo, the integration tests and the benchmarks; operators can run it with
//! `byoc-gateway sim` to rehearse routing policies. Control endpoints live under `/sim/`.
//!
//! A job's answer echoes what arrived (path, job header fields, body length and SHA-256,
//! `Content-Type`), and on the AI-runner paths it also has the fields of the runner's response
//! (`{"images":[{"url","seed","nsfw"}]}` for the image and video pipelines, `{"text"}` for the
//! text ones), so the `livepeer-ai` SDK parses it. The last job received is kept whole
//! ([`SimState::last_job`], `GET /sim/last`) so a test can compare the bytes that arrived with
//! those it sent; `GET /sim/last` also shows the last token credential and job header, so the
//! gateway's signatures can be checked from outside.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use byoc_actors::protocol::header::{decode_job_request, JobRequest};
use byoc_actors::protocol::token::{decode_eth_address_header, EthAddressCredential};
use byoc_actors::protocol::{HEADER_BALANCE, HEADER_CAPABILITY, HEADER_ETH_ADDRESS, HEADER_LIVEPEER, HEADER_METADATA};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a simulated orchestrator does with a job that arrives while `capacity` jobs (its own
/// plus [`Knobs::busy_slots`]) are already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverCapacity {
    /// Runs it: capacity is only reported in tokens. go-livepeer's orchestrator does this (it
    /// refuses only a capability nobody registered).
    #[default]
    Ignore,
    /// Answers `503 No capacity available for capability`, as a worker with no free slot does.
    Refuse,
    /// Answers `429 Too Many Requests`.
    Refuse429,
    /// Runs it, and every job started while over capacity takes longer in proportion (a GPU
    /// time-sliced between more jobs than it has room for): `latency x running / capacity`.
    Slow,
}

/// Behaviour of one capability on the simulator. Every field can be changed at runtime with
/// `POST /sim/knobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knobs {
    /// Time to answer a job.
    pub latency_ms: u64,
    /// Extra time per job, uniform in `[0, jitter_ms]` (real inference times vary).
    pub jitter_ms: u64,
    /// Share of jobs answered `500 job not able to be processed`.
    pub error_rate: f64,
    /// Share of jobs answered `500 CUDA out of memory`.
    pub oom_rate: f64,
    /// Concurrent jobs this orchestrator has room for: reported in tokens (minus jobs in
    /// flight and `busy_slots`), enforced as `over_capacity` says.
    pub capacity: i64,
    /// What happens to a job past `capacity`.
    pub over_capacity: OverCapacity,
    /// Slots held by other gateways' jobs: they count against `capacity` like this
    /// simulator's own jobs (an orchestrator shared with other gateways).
    pub busy_slots: i64,
    /// Price in wei per `pixels_per_unit`.
    pub price_per_unit: i64,
    /// Units the price covers.
    pub pixels_per_unit: i64,
    /// The first this-many jobs are cold starts.
    pub cold_start_jobs: u64,
    /// Extra time of a cold-start job.
    pub cold_start_ms: u64,
    /// Never answer jobs (the caller's timeout decides).
    pub hang: bool,
    /// Hold each job, after its latency, until it is released (`POST /sim/release?jobs=N`,
    /// [`SimState::release_jobs`]) or its `timeout_seconds` passes: lets a test keep jobs in
    /// flight for exactly as long as it needs.
    pub hold: bool,
    /// Answer successes as `text/plain` instead of JSON.
    pub wrong_content_type: bool,
    /// Answer every job with this status (and `status_body`).
    pub status: Option<u16>,
    /// Body sent with `status`.
    pub status_body: String,
    /// Answer jobs 503 `No capacity available for capability` (as an orchestrator at
    /// capacity or without the capability does).
    pub refuse: bool,
    /// Answer successes as Server-Sent Events: this many `data: {"n": i, ...}` events, then
    /// `data: [DONE]` (0: a JSON answer).
    pub sse_events: u32,
    /// Pause between two events.
    pub sse_interval_ms: u64,
    /// After the first event, wait until released (`POST /sim/release`) before the rest: shows
    /// that the first event reaches a client before the stream ends.
    pub sse_hold: bool,
    /// Break the stream (abort the connection) after this many events.
    pub sse_fail_after: Option<u32>,
    /// Linger after `[DONE]` as go-livepeer's orchestrator does (`job_orchestrator.go`, SSE
    /// branch): a `data: {"balance": X}` line before `[DONE]`, then blank lines until the
    /// job's `timeout_seconds`, holding the job's capacity slot all the while. Only a client
    /// that hangs up ends it sooner.
    pub sse_linger: bool,
    /// Refuse every job `400 Could not verify job creds` while serving tokens as usual: an
    /// orchestrator built from a fork that expects another signature scheme.
    pub reject_creds: bool,
    /// The job price lookup fails: `400 Could not get job price`, and the capacity slot
    /// reserved for the job is never freed (as go-livepeer's orchestrator does).
    pub price_unavailable: bool,
    /// The gateway's credit in wei, reported as the token's `balance`. With a price, a job
    /// needs `balance >= 60 s x price` or gets `400 Insufficient balance for request`.
    pub balance: i64,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            oom_rate: 0.0,
            capacity: 4,
            over_capacity: OverCapacity::Ignore,
            busy_slots: 0,
            price_per_unit: 0,
            pixels_per_unit: 1,
            cold_start_jobs: 0,
            cold_start_ms: 0,
            hang: false,
            hold: false,
            wrong_content_type: false,
            status: None,
            status_body: String::new(),
            refuse: false,
            sse_events: 0,
            sse_interval_ms: 0,
            sse_hold: false,
            sse_fail_after: None,
            sse_linger: false,
            reject_creds: false,
            price_unavailable: false,
            balance: 0,
        }
    }
}

/// Counters per capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapStats {
    /// Token probes answered.
    pub tokens: u64,
    /// Jobs received (valid header).
    pub jobs: u64,
    /// Jobs answered 2xx.
    pub ok: u64,
    /// Jobs answered with an error status.
    pub errors: u64,
    /// Jobs refused because the orchestrator was at capacity (`over_capacity` refuse modes;
    /// also counted in `errors`).
    pub refused: u64,
    /// Most jobs that were running at once (this simulator's own, refused ones excluded).
    pub max_inflight: i64,
    /// Capacity slots reserved for jobs and never freed, as go-livepeer's orchestrator leaks
    /// them when it refuses a job after reserving (a `request` it cannot decode, a price it
    /// cannot get). They count against `capacity` from then on.
    pub leaked_slots: i64,
}

/// What the simulator last received from a gateway (`GET /sim/last`), decoded. The simulator
/// does not verify signatures (an offchain orchestrator accepts any); this lets a test or an
/// operator verify them independently.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    /// The `Livepeer-Eth-Address` credential of the last token probe.
    pub token_credential: Option<EthAddressCredential>,
    /// The `Livepeer` header of the last job.
    pub job: Option<JobRequest>,
}

#[derive(Debug)]
struct Capability {
    knobs: Knobs,
    stats: CapStats,
    inflight: Arc<AtomicI64>,
}

/// Shared state of one simulator.
#[derive(Debug)]
pub struct SimState {
    /// Name echoed in answers (`"sim"` field and `X-Metadata`).
    pub name: String,
    /// `service_addr` advertised in tokens.
    pub service_addr: Mutex<String>,
    /// Where it listens, and whether over TLS (a restart binds the same).
    addr: SocketAddr,
    tls: bool,
    caps: Mutex<BTreeMap<String, Capability>>,
    server: Mutex<Option<ServerHandle>>,
    last: Mutex<LastSeen>,
    last_job: Mutex<Option<ReceivedJob>>,
    /// Permits for held event streams (`sse_hold`), one per stream released.
    sse_release: tokio::sync::Semaphore,
    /// Permits for held jobs (`hold`), one per job released.
    job_release: tokio::sync::Semaphore,
}

/// A job as it arrived at the simulator (one with a valid job header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedJob {
    /// The path after `/process/request/`.
    pub path: String,
    /// The header's capability.
    pub capability: String,
    /// The header's `timeout_seconds`.
    pub timeout_seconds: u64,
    /// The header's `request`.
    pub request: String,
    /// The `Content-Type` received, as is.
    pub content_type: Option<String>,
    /// The body received, as is.
    pub body: bytes::Bytes,
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

impl SimState {
    /// Current knobs and stats of every capability.
    pub fn report(&self) -> serde_json::Value {
        let caps = self.caps.lock();
        let c: BTreeMap<&String, serde_json::Value> = caps
            .iter()
            .map(|(k, v)| {
                (k, json!({"knobs": v.knobs, "stats": v.stats, "inflight": v.inflight.load(Ordering::Relaxed)}))
            })
            .collect();
        json!({"name": self.name, "service_addr": *self.service_addr.lock(), "capabilities": c})
    }

    /// The last credential and job header received.
    pub fn last(&self) -> LastSeen {
        self.last.lock().clone()
    }

    /// Lets one held event stream (`sse_hold`) go on past its first event.
    pub fn release_sse(&self) {
        self.sse_release.add_permits(1);
    }

    /// Lets `n` held jobs (`hold`) answer; a release given before a job arrives lets it through.
    pub fn release_jobs(&self, n: usize) {
        self.job_release.add_permits(n);
    }

    /// Jobs of `capability` running now (refused ones excluded).
    pub fn inflight(&self, capability: &str) -> i64 {
        self.caps.lock().get(capability).map_or(0, |c| c.inflight.load(Ordering::Relaxed))
    }

    /// The last job received (with a valid job header), whatever it was answered.
    pub fn last_job(&self) -> Option<ReceivedJob> {
        self.last_job.lock().clone()
    }

    /// Stats of one capability.
    pub fn stats(&self, capability: &str) -> CapStats {
        self.caps.lock().get(capability).map(|c| c.stats.clone()).unwrap_or_default()
    }

    /// Applies `patch` (a JSON object of knob fields) to one capability, or to all when
    /// `capability` is `None`. Returns an error (and changes nothing) on an invalid patch.
    pub fn patch(&self, capability: Option<&str>, patch: &serde_json::Value) -> Result<(), String> {
        let Some(fields) = patch.as_object() else {
            return Err("knobs must be a JSON object".into());
        };
        let mut caps = self.caps.lock();
        let names: Vec<String> = match capability {
            Some(c) if caps.contains_key(c) => vec![c.to_string()],
            Some(c) => return Err(format!("capability '{c}' is not served here")),
            None => caps.keys().cloned().collect(),
        };
        let mut updated = Vec::new();
        for name in &names {
            let mut v = serde_json::to_value(&caps[name].knobs).map_err(|e| e.to_string())?;
            if let Some(obj) = v.as_object_mut() {
                for (k, val) in fields {
                    obj.insert(k.clone(), val.clone());
                }
            }
            let knobs: Knobs = serde_json::from_value(v).map_err(|e| e.to_string())?;
            updated.push((name.clone(), knobs));
        }
        for (name, knobs) in updated {
            if let Some(c) = caps.get_mut(&name) {
                c.knobs = knobs;
            }
        }
        Ok(())
    }

    /// Sets knobs of a capability (adding it if new).
    pub fn set(&self, capability: &str, knobs: Knobs) {
        let mut caps = self.caps.lock();
        match caps.get_mut(capability) {
            Some(c) => c.knobs = knobs,
            None => {
                caps.insert(
                    capability.to_string(),
                    Capability { knobs, stats: CapStats::default(), inflight: Arc::new(AtomicI64::new(0)) },
                );
            }
        }
    }

    /// Stops listening (a crash as the gateway sees it: connections refused).
    pub async fn crash(&self) {
        let handle = self.server.lock().take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct SimHandle {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its state (knobs, stats).
    pub state: Arc<SimState>,
}

impl SimHandle {
    /// Stops listening: later connections are refused.
    pub async fn stop(&self) {
        self.state.crash().await;
    }

    /// Listens again on the same address after [`SimHandle::stop`], with the same knobs and
    /// stats (a crashed container coming back; set `cold_start_jobs` for a cold first answer).
    /// Must run inside an actix system.
    pub fn restart(&self) -> std::io::Result<()> {
        if self.state.server.lock().is_some() {
            return Ok(());
        }
        serve(&self.state, TcpListener::bind(self.state.addr)?)
    }
}

/// Starts a plain-HTTP simulator on `listener` serving `capabilities` with `knobs` each;
/// must run inside an actix system.
pub fn start(name: &str, listener: TcpListener, capabilities: &[(&str, Knobs)]) -> std::io::Result<SimHandle> {
    start_with(name, listener, capabilities, false)
}

/// Like [`start`], but serving HTTPS with a self-signed certificate generated now, as
/// go-livepeer orchestrators do.
pub fn start_tls(name: &str, listener: TcpListener, capabilities: &[(&str, Knobs)]) -> std::io::Result<SimHandle> {
    start_with(name, listener, capabilities, true)
}

fn start_with(
    name: &str,
    listener: TcpListener,
    capabilities: &[(&str, Knobs)],
    tls: bool,
) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let url = format!("{}://{addr}", if tls { "https" } else { "http" });
    let state = Arc::new(SimState {
        name: name.to_string(),
        service_addr: Mutex::new(url.clone()),
        addr,
        tls,
        caps: Mutex::new(BTreeMap::new()),
        server: Mutex::new(None),
        last: Mutex::new(LastSeen::default()),
        last_job: Mutex::new(None),
        sse_release: tokio::sync::Semaphore::new(0),
        job_release: tokio::sync::Semaphore::new(0),
    });
    for (cap, knobs) in capabilities {
        state.set(cap, knobs.clone());
    }
    serve(&state, listener)?;
    Ok(SimHandle { url, state })
}

/// Serves `state` on `listener` (one worker: a simulator is tiny).
fn serve(state: &Arc<SimState>, listener: TcpListener) -> std::io::Result<()> {
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
    let server = if state.tls {
        let acceptor = self_signed_acceptor().map_err(|e| std::io::Error::other(format!("TLS setup: {e}")))?;
        server.listen_openssl(listener, acceptor)?.run()
    } else {
        server.listen(listener)?.run()
    };
    *state.server.lock() = Some(server.handle());
    actix_web::rt::spawn(server);
    Ok(())
}

/// A TLS acceptor with a fresh self-signed P-256 certificate for `localhost`/127.0.0.1.
fn self_signed_acceptor() -> Result<openssl::ssl::SslAcceptorBuilder, openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "byoc-gateway-sim")?;
    let name = name.build();
    let mut cert = X509Builder::new()?;
    cert.set_version(2)?;
    let serial = BigNum::from_u32(rand::random::<u32>() >> 1)?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new().dns("localhost").ip("127.0.0.1").build(&cert.x509v3_context(None, None))?;
    cert.append_extension(san)?;
    cert.sign(&key, MessageDigest::sha256())?;
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    acceptor.set_private_key(&key)?;
    acceptor.set_certificate(&cert.build())?;
    Ok(acceptor)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(256 << 20))
        .service(web::resource("/process/token").route(web::get().to(token)))
        .service(web::resource("/process/request/{tail:.*}").route(web::post().to(job)))
        .service(web::resource("/capability/register").route(web::post().to(register)))
        .service(web::resource("/sim/state").route(web::get().to(state_report)))
        .service(web::resource("/sim/last").route(web::get().to(last_seen)))
        .service(web::resource("/sim/knobs").route(web::post().to(knobs)))
        .service(web::resource("/sim/crash").route(web::post().to(crash)))
        .service(web::resource("/sim/release").route(web::post().to(release)));
}

fn text(status: StatusCode, body: &str) -> HttpResponse {
    // go-livepeer answers errors with http.Error: text/plain and a trailing newline.
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(format!("{body}\n"))
}

async fn token(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(cred) = header(HEADER_ETH_ADDRESS) else {
        return text(StatusCode::BAD_REQUEST, "Must have eth address and signature on request");
    };
    let Some(cred) = decode_eth_address_header(&cred) else {
        return text(StatusCode::BAD_REQUEST, "Invalid eth address header ");
    };
    state.last.lock().token_credential = Some(cred);
    let Some(cap) = header(HEADER_CAPABILITY).filter(|c| !c.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Job capabilities not provided, must provide comma separated capabilities",
        );
    };
    let mut caps = state.caps.lock();
    let (capacity, price) = match caps.get_mut(&cap) {
        Some(c) => {
            c.stats.tokens += 1;
            let load = c.inflight.load(Ordering::Relaxed) + c.knobs.busy_slots.max(0) + c.stats.leaked_slots;
            ((c.knobs.capacity - load).max(0), (c.knobs.price_per_unit, c.knobs.pixels_per_unit, c.knobs.balance))
        }
        None => (0, (0, 1, 0)),
    };
    drop(caps);
    // Shaped like go-livepeer's offchain JobToken: zero values omitted.
    let mut body = json!({
        "sender_address": {"addr": "0x0000000000000000000000000000000000000000", "sig": ""},
        "price": {"pixelsPerUnit": price.1},
        "service_addr": *state.service_addr.lock(),
        "LastNonce": 0,
    });
    if price.0 > 0 {
        body["price"]["pricePerUnit"] = json!(price.0);
    }
    if capacity > 0 {
        body["available_capacity"] = json!(capacity);
    }
    if price.2 != 0 {
        body["balance"] = json!(price.2);
    }
    HttpResponse::Ok().json(body)
}

/// Decrements the in-flight count when the job ends, however it ends (including a client
/// that hangs up on a hanging job).
struct InflightGuard(Arc<AtomicI64>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn job(req: HttpRequest, body: web::Bytes, tail: web::Path<String>, state: web::Data<SimState>) -> HttpResponse {
    let Some(raw) = req.headers().get(HEADER_LIVEPEER).and_then(|v| v.to_str().ok()) else {
        return text(StatusCode::BAD_REQUEST, "Could not verify job creds");
    };
    let Ok(header) = decode_job_request(raw) else {
        return text(StatusCode::BAD_REQUEST, "Could not verify job creds");
    };
    state.last.lock().job = Some(header.clone());
    let rejects_creds = match state.caps.lock().get_mut(&header.capability) {
        Some(c) if c.knobs.reject_creds => {
            c.stats.jobs += 1;
            c.stats.errors += 1;
            true
        }
        _ => false,
    };
    if rejects_creds {
        return text(StatusCode::BAD_REQUEST, "Could not verify job creds");
    }
    if header.timeout_seconds == 0 {
        return text(StatusCode::BAD_REQUEST, "no timeout_seconds set with request, timeout_seconds is required");
    }
    let tail = tail.into_inner();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    // A refcounted handle on the received buffer, not a copy.
    *state.last_job.lock() = Some(ReceivedJob {
        path: tail.clone(),
        capability: header.capability.clone(),
        timeout_seconds: header.timeout_seconds,
        request: header.request.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
    });
    let (knobs, inflight, nth, leaked) = {
        let mut caps = state.caps.lock();
        let Some(c) = caps.get_mut(&header.capability) else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "No capacity available for capability");
        };
        c.stats.jobs += 1;
        (c.knobs.clone(), c.inflight.clone(), c.stats.jobs, c.stats.leaked_slots)
    };
    let record = |ok: bool| {
        if let Some(c) = state.caps.lock().get_mut(&header.capability) {
            if ok {
                c.stats.ok += 1;
            } else {
                c.stats.errors += 1;
            }
        }
    };
    if knobs.refuse {
        record(false);
        return text(StatusCode::SERVICE_UNAVAILABLE, "No capacity available for capability");
    }
    let running = inflight.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = InflightGuard(inflight);
    let used = running + knobs.busy_slots.max(0) + leaked;
    let over = used > knobs.capacity;
    match knobs.over_capacity {
        OverCapacity::Refuse | OverCapacity::Refuse429 if over => {
            if let Some(c) = state.caps.lock().get_mut(&header.capability) {
                c.stats.errors += 1;
                c.stats.refused += 1;
            }
            return if knobs.over_capacity == OverCapacity::Refuse {
                text(StatusCode::SERVICE_UNAVAILABLE, "No capacity available for capability")
            } else {
                text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
            };
        }
        _ => {}
    }
    if let Some(c) = state.caps.lock().get_mut(&header.capability) {
        c.stats.max_inflight = c.stats.max_inflight.max(running);
    }
    // What go-livepeer's orchestrator checks after reserving the slot, in its order.
    if let Some(refusal) = refuse_after_reserving(&knobs, &header) {
        if let Some(c) = state.caps.lock().get_mut(&header.capability) {
            c.stats.errors += 1;
            c.stats.leaked_slots += i64::from(refusal.leaks_slot);
        }
        return text(StatusCode::BAD_REQUEST, &refusal.message);
    }

    let mut delay = Duration::from_millis(knobs.latency_ms);
    if knobs.jitter_ms > 0 {
        delay += Duration::from_millis(rand::random_range(0..=knobs.jitter_ms));
    }
    if knobs.over_capacity == OverCapacity::Slow && over && knobs.capacity > 0 {
        delay = delay.mul_f64(used as f64 / knobs.capacity as f64);
    }
    if nth <= knobs.cold_start_jobs {
        delay += Duration::from_millis(knobs.cold_start_ms);
    }
    if knobs.hang {
        delay = Duration::from_secs(3600);
    }
    let deadline = Duration::from_secs(header.timeout_seconds);
    if delay > deadline {
        tokio::time::sleep(deadline).await;
        record(false);
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job not able to be processed, removing capability err=context deadline exceeded",
        );
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if knobs.hold {
        let remaining = deadline.saturating_sub(delay);
        match tokio::time::timeout(remaining, state.job_release.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                record(false);
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "job not able to be processed, removing capability err=context deadline exceeded",
                );
            }
        }
    }
    if let Some(status) = knobs.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        record(status.is_success());
        return text(status, &knobs.status_body);
    }
    let roll: f64 = rand::random();
    if roll < knobs.oom_rate {
        record(false);
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)",
        );
    }
    if roll < knobs.oom_rate + knobs.error_rate {
        record(false);
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "job not able to be processed, removing capability err=worker error",
        );
    }
    record(true);
    if knobs.sse_events > 0 {
        let linger = knobs.sse_linger.then(|| deadline.saturating_sub(delay));
        return event_stream(state.into_inner(), &knobs, header.id.clone(), linger, _guard);
    }
    let mut answer = json!({
        "sim": state.name,
        "capability": header.capability,
        "path": tail,
        "job_id": header.id,
        "request": header.request,
        "parameters": header.parameters,
        "body_bytes": body.len(),
        "body_sha256": sha256_hex(&body),
        "content_type": content_type,
    });
    if let (Some(obj), Some(serde_json::Value::Object(runner))) = (answer.as_object_mut(), runner_answer(&tail, nth)) {
        obj.extend(runner);
    }
    let content_type = if knobs.wrong_content_type { "text/plain; charset=utf-8" } else { "application/json" };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((HEADER_BALANCE, "1000"))
        .insert_header((HEADER_METADATA, json!({"sim": state.name}).to_string()))
        .body(answer.to_string())
}

/// The simulator's stream error (a broken stream aborts the connection).
#[derive(Debug, thiserror::Error)]
#[error("simulated stream failure")]
struct StreamFailure;

/// A job refused after its capacity slot was reserved.
struct LateRefusal {
    message: String,
    /// go-livepeer's orchestrator returns without freeing the slot.
    leaks_slot: bool,
}

/// The checks go-livepeer's orchestrator makes after reserving a capacity slot
/// (`job_orchestrator.go:setupOrchJob`), in its order: the job's price, the sender's balance
/// on a priced capability (60 s of compute), then the `request` document.
fn refuse_after_reserving(knobs: &Knobs, header: &JobRequest) -> Option<LateRefusal> {
    if knobs.price_unavailable {
        return Some(LateRefusal { message: "Could not get job price".into(), leaks_slot: true });
    }
    if knobs.price_per_unit > 0 {
        let units = i128::from(knobs.pixels_per_unit.max(1));
        if i128::from(knobs.balance) * units < 60 * i128::from(knobs.price_per_unit) {
            return Some(LateRefusal { message: "Insufficient balance for request".into(), leaks_slot: false });
        }
    }
    #[derive(Deserialize)]
    struct Details {
        #[serde(rename = "stream_id")]
        _stream_id: Option<String>,
    }
    if let Err(e) = serde_json::from_str::<Details>(&header.request) {
        return Some(LateRefusal {
            message: format!("Unable to unmarshal job request details err={e}"),
            leaks_slot: true,
        });
    }
    None
}

/// A `text/event-stream` answer as go-livepeer's orchestrator relays a worker's: `data:` lines,
/// `[DONE]` at the end, `Livepeer-Payment-Balance` (its SSE name for the balance header). With
/// `linger` (the job's time left), it then writes blank lines until that time is up, as
/// go-livepeer's orchestrator does, holding the job's slot.
fn event_stream(
    state: Arc<SimState>,
    knobs: &Knobs,
    job_id: String,
    linger: Option<Duration>,
    guard: InflightGuard,
) -> HttpResponse {
    let (events, interval, hold, fail_after) =
        (knobs.sse_events, Duration::from_millis(knobs.sse_interval_ms), knobs.sse_hold, knobs.sse_fail_after);
    let linger_until = linger.map(|d| tokio::time::Instant::now() + d);
    let chunks = futures_util::stream::unfold((0u32, Some(guard)), move |(n, guard)| {
        let state = state.clone();
        let job_id = job_id.clone();
        async move {
            guard.as_ref()?;
            if n > 0 {
                if hold && n == 1 {
                    // Bounded: a test that never releases still ends (the stream is cut).
                    match tokio::time::timeout(Duration::from_secs(30), state.sse_release.acquire()).await {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => return Some((Err(StreamFailure), (n, None))),
                    }
                }
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
            }
            if fail_after == Some(n) {
                return Some((Err(StreamFailure), (n, None)));
            }
            if n > events {
                // Lingering after [DONE]: a blank line every few milliseconds (go-livepeer's
                // writer loop spins on its closed channel) until the job's time is up.
                let until = linger_until?;
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                tokio::time::sleep(LINGER_TICK).await;
                return Some((Ok(web::Bytes::from_static(b"\n")), (n, guard)));
            }
            if n == events {
                if linger_until.is_some() {
                    let done = web::Bytes::from_static(b"data: {\"balance\": 1000}\ndata: [DONE]\n\n");
                    return Some((Ok(done), (n + 1, guard)));
                }
                return Some((Ok(web::Bytes::from_static(b"data: [DONE]\n\n")), (n + 1, None)));
            }
            let event = json!({"n": n, "sim": state.name, "job_id": job_id});
            Some((Ok(web::Bytes::from(format!("data: {event}\n\n"))), (n + 1, guard)))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Livepeer-Payment-Balance", "1000"))
        .streaming(chunks)
}

/// Pause between two blank lines of a lingering stream.
const LINGER_TICK: Duration = Duration::from_millis(5);

#[derive(Debug, Deserialize)]
struct ReleaseQuery {
    /// Held jobs to release (`hold`); without it, one held event stream (`sse_hold`).
    jobs: Option<usize>,
}

async fn release(q: web::Query<ReleaseQuery>, state: web::Data<SimState>) -> HttpResponse {
    match q.jobs {
        Some(n) => {
            let n = n.min(1 << 20);
            state.release_jobs(n);
            HttpResponse::Ok().json(json!({"released_jobs": n}))
        }
        None => {
            state.release_sse();
            HttpResponse::Ok().json(json!({"released": 1}))
        }
    }
}

/// A 1x1 PNG, the image every simulated image pipeline "generates".
pub const SIM_IMAGE_URL: &str =
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

/// The AI runner's response fields for a runner path (`runner/openapi.yaml`: `ImageResponse`,
/// `VideoResponse`, `ImageToTextResponse`, `TextResponse`), or `None` for other paths. The seed
/// is the job's number on this simulator, so a test can tell answers apart.
fn runner_answer(path: &str, nth: u64) -> Option<serde_json::Value> {
    let media = json!({"images": [{"url": SIM_IMAGE_URL, "seed": nth, "nsfw": false}]});
    match path {
        "text-to-image" | "image-to-image" | "upscale" | "image-to-video" => Some(media),
        "image-to-text" => Some(json!({"text": "a simulated caption"})),
        "audio-to-text" => Some(json!({"text": "a simulated transcript", "chunks": []})),
        _ => None,
    }
}

/// Body of `POST /capability/register` (the fields the simulator uses; go-livepeer's body has
/// more, which are ignored).
#[derive(Debug, Deserialize)]
struct Register {
    name: String,
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    price_per_unit: Option<i64>,
}

async fn register(body: web::Json<Register>, state: web::Data<SimState>) -> HttpResponse {
    let r = body.into_inner();
    let knobs =
        Knobs { capacity: r.capacity.unwrap_or(4), price_per_unit: r.price_per_unit.unwrap_or(0), ..Knobs::default() };
    state.set(&r.name, knobs);
    HttpResponse::Ok().body("")
}

async fn state_report(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.report())
}

/// `GET /sim/last`: the last job received, with its body as length and SHA-256 (404 before
/// the first).
async fn last_seen(state: web::Data<SimState>) -> HttpResponse {
    // The decoded credential and job header, plus what the last job's request carried.
    let received = state.last_job().map(|j| {
        json!({
            "path": j.path,
            "capability": j.capability,
            "timeout_seconds": j.timeout_seconds,
            "request": j.request,
            "content_type": j.content_type,
            "body_bytes": j.body.len(),
            "body_sha256": sha256_hex(&j.body),
        })
    });
    let mut v = serde_json::to_value(state.last()).unwrap_or_else(|_| json!({}));
    v["received"] = received.unwrap_or(serde_json::Value::Null);
    HttpResponse::Ok().json(v)
}

#[derive(Debug, Deserialize)]
struct KnobQuery {
    capability: Option<String>,
}

async fn knobs(
    q: web::Query<KnobQuery>,
    body: web::Json<serde_json::Value>,
    state: web::Data<SimState>,
) -> HttpResponse {
    match state.patch(q.capability.as_deref(), &body) {
        Ok(()) => HttpResponse::Ok().json(state.report()),
        Err(e) => HttpResponse::BadRequest().json(json!({"error": {"code": "invalid-knobs", "message": e}})),
    }
}

async fn crash(state: web::Data<SimState>) -> HttpResponse {
    let s = state.into_inner();
    actix_web::rt::spawn(async move { s.crash().await });
    HttpResponse::Ok().json(json!({"crashing": true}))
}

/// `byoc-gateway sim` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Listen address; several (repeat or comma separate) make one process answer as that
    /// many orchestrators, each on its own address with its own state (scale benchmarks).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8935")]
    pub addr: Vec<String>,
    /// Name echoed in answers.
    #[arg(long, default_value = "sim")]
    pub name: String,
    /// Capabilities served (repeat or comma separate).
    #[arg(long = "capability", value_delimiter = ',', default_value = "image-to-image")]
    pub capabilities: Vec<String>,
    /// Job latency in ms.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Share of jobs answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of jobs answered 500 CUDA out of memory.
    #[arg(long, default_value_t = 0.0)]
    pub oom_rate: f64,
    /// Concurrent jobs it has room for (reported in tokens).
    #[arg(long, default_value_t = 4)]
    pub capacity: i64,
    /// What a job past `--capacity` gets: run anyway (go-livepeer), refused with 503 or 429,
    /// or slowed down with the others (a time-sliced GPU).
    #[arg(long, value_enum, default_value_t = OverCapacity::Ignore)]
    pub over_capacity: OverCapacity,
    /// Extra time per job, uniform in [0, this] ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Price per unit in wei.
    #[arg(long, default_value_t = 0)]
    pub price: i64,
    /// The gateway's credit in wei, reported in tokens; with `--price`, a job needs 60 s of it
    /// (as go-livepeer's orchestrator), otherwise 400 Insufficient balance for request.
    #[arg(long, default_value_t = 0)]
    pub balance: i64,
    /// Cold-start jobs at start.
    #[arg(long, default_value_t = 0)]
    pub cold_start_jobs: u64,
    /// Extra time of a cold-start job in ms.
    #[arg(long, default_value_t = 0)]
    pub cold_start_ms: u64,
    /// Serve HTTPS with a self-signed certificate generated at start (as go-livepeer does).
    #[arg(long)]
    pub tls: bool,
    /// Answer jobs as Server-Sent Events: this many events, then `data: [DONE]` (0: JSON).
    #[arg(long, default_value_t = 0)]
    pub sse_events: u32,
    /// Pause between two events in ms.
    #[arg(long, default_value_t = 0)]
    pub sse_interval_ms: u64,
}

/// Runs `byoc-gateway sim` until SIGINT/SIGTERM.
pub async fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    crate::telemetry::init_tracing("text", "info");
    let knobs = Knobs {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        oom_rate: args.oom_rate,
        capacity: args.capacity,
        over_capacity: args.over_capacity,
        jitter_ms: args.jitter_ms,
        price_per_unit: args.price,
        balance: args.balance,
        cold_start_jobs: args.cold_start_jobs,
        cold_start_ms: args.cold_start_ms,
        sse_events: args.sse_events,
        sse_interval_ms: args.sse_interval_ms,
        ..Knobs::default()
    };
    let caps: Vec<(&str, Knobs)> = args.capabilities.iter().map(|c| (c.as_str(), knobs.clone())).collect();
    // One server per address (not one server with many listeners) so that each answers its
    // own `service_addr` and keeps its own knobs and stats, as distinct orchestrators do.
    let mut sims = Vec::with_capacity(args.addr.len());
    for addr in &args.addr {
        let listener = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot bind {addr}: {e}"))?;
        sims.push(if args.tls { start_tls(&args.name, listener, &caps)? } else { start(&args.name, listener, &caps)? });
    }
    let shutdown = crate::app::shutdown_signal()?;
    for sim in &sims {
        println!("byoc-gateway sim ready url={} capabilities={}", sim.url, args.capabilities.join(","));
    }
    if let Some(sim) = sims.first() {
        println!("  change faults at runtime: curl -X POST '{}/sim/knobs?capability={}' -d '{{\"error_rate\":1.0}}' -H 'Content-Type: application/json'", sim.url, args.capabilities[0]);
    }
    let _ = shutdown.await;
    for sim in &sims {
        sim.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SimState {
        let s = SimState {
            name: "t".into(),
            service_addr: Mutex::new(String::new()),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            caps: Mutex::new(BTreeMap::new()),
            server: Mutex::new(None),
            last: Mutex::new(LastSeen::default()),
            last_job: Mutex::new(None),
            sse_release: tokio::sync::Semaphore::new(0),
            job_release: tokio::sync::Semaphore::new(0),
        };
        s.set("a", Knobs::default());
        s.set("b", Knobs::default());
        s
    }

    #[test]
    fn patch_changes_one_or_all_and_rejects_bad_fields_atomically() {
        let s = state();
        s.patch(Some("a"), &json!({"error_rate": 1.0})).expect("ok");
        assert_eq!(s.caps.lock()["a"].knobs.error_rate, 1.0);
        assert_eq!(s.caps.lock()["b"].knobs.error_rate, 0.0);
        s.patch(None, &json!({"latency_ms": 7})).expect("ok");
        assert_eq!(s.caps.lock()["b"].knobs.latency_ms, 7);
        assert!(s.patch(None, &json!({"nonsense": 1})).is_err());
        assert!(s.patch(None, &json!({"latency_ms": "slow"})).is_err());
        assert!(s.patch(Some("zzz"), &json!({})).is_err());
        assert_eq!(s.caps.lock()["a"].knobs.latency_ms, 7);
    }
}
