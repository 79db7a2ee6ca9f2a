//! `POST /ai/stream/start`, `/update`, `/stop` and `/payment` as go-livepeer's orchestrator
//! answers them (`byoc/stream_orchestrator.go`), in its order: the job header, the capacity slot
//! (held for the stream's life), the payment and balance (402 on a start), the runner's start.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::protocol::header::{decode_job_request, JobRequest};
use byoc_actors::protocol::names;
use byoc_actors::stream::request::Features;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{push, LiveStream, TRICKLE_PATH};
use crate::knobs::Knobs;
use crate::orchestrator::text;
use crate::state::{InflightGuard, SimState};

/// go-livepeer's answer of a full orchestrator to a stream start.
const NO_CAPACITY: &str = "No capacity available for capability";

/// The job header, or go-livepeer's refusal.
fn header(req: &HttpRequest, state: &SimState) -> Result<JobRequest, Box<HttpResponse>> {
    let creds = || Box::new(text(StatusCode::BAD_REQUEST, "Could not verify job creds"));
    let raw = req.headers().get(names::LIVEPEER).and_then(|v| v.to_str().ok()).ok_or_else(creds)?;
    let header = decode_job_request(raw).map_err(|_| creds())?;
    state.last.lock().job = Some(header.clone());
    if header.timeout_seconds == 0 {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "no timeout_seconds set with request, timeout_seconds is required",
        )));
    }
    Ok(header)
}

fn knobs(state: &SimState, capability: &str) -> Option<Knobs> {
    state.caps.lock().get(capability).map(|c| c.knobs.clone())
}

/// The stream a call is about (`request` is `{"stream_id": ...}`).
fn stream_id(header: &JobRequest) -> String {
    serde_json::from_str::<Value>(&header.request)
        .ok()
        .and_then(|v| v.get("stream_id").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Takes a payment and checks the balance, as the orchestrator does before a stream call; the
/// error is its answer's text.
fn pay(req: &HttpRequest, state: &SimState, header: &JobRequest, k: &Knobs) -> Result<(), String> {
    if k.price_per_unit <= 0 {
        return Ok(());
    }
    let per_second = k.price_per_unit as f64 / k.pixels_per_unit.max(1) as f64;
    if !k.tickets {
        let covered = i128::from(k.balance) * i128::from(k.pixels_per_unit.max(1)) >= 60 * i128::from(k.price_per_unit);
        return if covered { Ok(()) } else { Err("Insufficient balance for request".into()) };
    }
    let mut ledger = state.payments.lock();
    if let Some(p) = req.headers().get(names::LIVEPEER_PAYMENT).and_then(|v| v.to_str().ok()) {
        state.last.lock().payment = Some(p.to_string());
        ledger.pay(p, &header.sender, &header.capability, k.balance)?;
    }
    if ledger.covers(&header.sender, &header.capability, k.balance, per_second) {
        Ok(())
    } else {
        Err("Insufficient balance for request".into())
    }
}

fn refused(state: &SimState, response: HttpResponse) -> HttpResponse {
    state.live.stats.lock().refused += 1;
    response
}

/// `POST /ai/stream/start`.
pub(crate) async fn start(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let header = match header(&req, &state) {
        Ok(h) => h,
        Err(r) => return refused(&state, *r),
    };
    let Some(k) = knobs(&state, &header.capability) else {
        return refused(&state, text(StatusCode::BAD_REQUEST, NO_CAPACITY));
    };
    if k.stream_start_hang {
        // Bounded: a forgotten knob still lets the simulator stop.
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        return refused(&state, text(StatusCode::INTERNAL_SERVER_ERROR, "hung"));
    }
    if let Some(status) = k.stream_start_status {
        let body = match status {
            400 => NO_CAPACITY,
            402 => "Insufficient balance for request",
            _ => "stream start refused",
        };
        return refused(&state, text(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), body));
    }
    // Reserve a capacity slot for the stream's life (go-livepeer's `ReserveExternalCapabilityCapacity`).
    let slot = {
        let caps = state.caps.lock();
        let Some(c) = caps.get(&header.capability) else {
            return refused(&state, text(StatusCode::BAD_REQUEST, NO_CAPACITY));
        };
        let used = c.inflight.load(Ordering::Relaxed) + k.busy_slots.max(0) + c.stats.leaked_slots;
        if used >= k.capacity {
            drop(caps);
            return refused(&state, text(StatusCode::BAD_REQUEST, NO_CAPACITY));
        }
        c.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(c.inflight.clone())
    };
    if let Err(e) = pay(&req, &state, &header, &k) {
        let status = if e.starts_with("Insufficient") { StatusCode::PAYMENT_REQUIRED } else { StatusCode::BAD_REQUEST };
        return refused(&state, text(status, &e));
    }
    let Ok(Value::Object(request_body)) = serde_json::from_slice::<Value>(&body) else {
        return refused(&state, text(StatusCode::BAD_REQUEST, "Invalid JSON body"));
    };
    let id = header.id.clone();
    if state.live.streams.lock().contains_key(&id) || id.is_empty() {
        // go-livepeer answers a duplicate start with a 500 (the 3.6a correction).
        return refused(
            &state,
            text(StatusCode::INTERNAL_SERVER_ERROR, "Error adding stream to external capabilities"),
        );
    }
    let features = Features::of(&header.parameters);
    let base = format!("{}{TRICKLE_PATH}", state.service_addr.lock().trim_end_matches('/'));
    let mut names = vec![format!("{id}-control"), format!("{id}-events")];
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Control-Url", format!("{base}/{id}-control")));
    resp.insert_header(("X-Events-Url", format!("{base}/{id}-events")));
    if features.ingress {
        names.push(id.clone());
        resp.insert_header(("X-Publish-Url", format!("{base}/{id}")));
    }
    if features.egress {
        names.push(format!("{id}-out"));
        resp.insert_header(("X-Subscribe-Url", format!("{base}/{id}-out")));
    }
    if features.data {
        names.push(format!("{id}-data"));
        resp.insert_header(("X-Data-Url", format!("{base}/{id}-data")));
    }
    for n in &names {
        state.live.create(n);
    }
    let params = Arc::new(Mutex::new(request_body.get("params").filter(|p| !p.is_null()).cloned()));
    let runner = actix_web::rt::spawn(super::runner::run(
        state.clone().into_inner(),
        id.clone(),
        header.clone(),
        features,
        params.clone(),
    ));
    state.live.streams.lock().insert(
        id.clone(),
        LiveStream {
            capability: header.capability.clone(),
            channels: names,
            params,
            runner: Some(runner),
            _slot: slot,
        },
    );
    {
        let mut stats = state.live.stats.lock();
        stats.starts += 1;
        stats.live += 1;
        stats.last_start_body = Some(String::from_utf8_lossy(&body).into_owned());
    }
    resp.insert_header(("Livepeer-Payment-Balance", "0")).finish()
}

/// `POST /ai/stream/update`: the new params reach the runner.
pub(crate) async fn update(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let header = match header(&req, &state) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let k = knobs(&state, &header.capability).unwrap_or_default();
    if let Err(e) = pay(&req, &state, &header, &k) {
        return text(StatusCode::BAD_REQUEST, &format!("Failed to stop stream, request not valid err={e}"));
    }
    let id = stream_id(&header);
    let params = state.live.streams.lock().get(&id).map(|s| s.params.clone());
    let Some(params) = params else { return text(StatusCode::NOT_FOUND, "Stream not found") };
    *params.lock() = serde_json::from_slice(&body).ok();
    state.live.stats.lock().updates += 1;
    HttpResponse::Ok().json(json!({"updated": true, "sim": state.name, "stream_id": id}))
}

/// `POST /ai/stream/stop`: the runner stops, the channels go, the slot frees.
pub(crate) async fn stop(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let header = match header(&req, &state) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let id = stream_id(&header);
    let removed = state.live.remove(&id);
    {
        let mut stats = state.live.stats.lock();
        stats.stops += 1;
        push(&mut stats.stop_bodies, String::from_utf8_lossy(&body).into_owned());
    }
    HttpResponse::Ok().json(json!({"stopped": removed, "sim": state.name, "stream_id": id}))
}

/// `POST /ai/stream/payment`: the payment is taken, the balance answered.
pub(crate) async fn payment(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let header = match header(&req, &state) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let k = knobs(&state, &header.capability).unwrap_or_default();
    if let Some(status) = k.stream_payment_status {
        state.live.stats.lock().payment_refusals += 1;
        return text(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), "payment refused");
    }
    if let Err(e) = pay(&req, &state, &header, &k) {
        state.live.stats.lock().payment_refusals += 1;
        return text(StatusCode::BAD_REQUEST, &format!("Failed to process payment, request not valid err={e}"));
    }
    state.live.stats.lock().payments += 1;
    let balance = state.payments.lock().balance(&header.sender, &header.capability, k.balance);
    HttpResponse::Ok().insert_header(("Livepeer-Payment-Balance", balance.to_string())).finish()
}
