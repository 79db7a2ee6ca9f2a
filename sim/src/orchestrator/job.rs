//! `POST /process/request/...` as go-livepeer's orchestrator answers it, in its phases: read
//! the job (credentials, timeout), reserve a capacity slot, check the payment, make the
//! refusals go-livepeer makes after reserving, run (latency, cold start, hold), then answer
//! with the outcome the knobs ask for. Each phase either passes the job on or answers early
//! (`Err` holds that early answer).

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::protocol::header::{check_request, decode_job_request, JobRequest, ParamsError};
use byoc_actors::protocol::names;
use serde_json::json;

use super::text;
use crate::knobs::{Knobs, OverCapacity};
use crate::runner::runner_answer;
use crate::state::{sha256_hex, InflightGuard, ReceivedJob, SimState};
use crate::stream::event_stream;

/// A phase's result: the job goes on, or this is the answer (boxed: a response is large).
type Phase<T> = Result<T, Box<HttpResponse>>;

/// An early answer, as go-livepeer words it.
fn refuse(status: StatusCode, body: &str) -> Box<HttpResponse> {
    Box::new(text(status, body))
}

/// go-livepeer's answer when it has no slot for the capability.
const NO_CAPACITY: &str = "No capacity available for capability";
/// go-livepeer's answer when the job outlives its `timeout_seconds`.
const DEADLINE_EXCEEDED: &str = "job not able to be processed, removing capability err=context deadline exceeded";

pub(crate) async fn job(
    req: HttpRequest,
    body: web::Bytes,
    tail: web::Path<String>,
    state: web::Data<SimState>,
) -> HttpResponse {
    match run(&req, body, tail.into_inner(), state).await {
        Ok(answer) => answer,
        Err(early) => *early,
    }
}

async fn run(req: &HttpRequest, body: web::Bytes, tail: String, state: web::Data<SimState>) -> Phase<HttpResponse> {
    let header = read(req, &state)?;
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
    let slot = reserve(&state, &header)?;
    let knobs = &slot.knobs;
    // What go-livepeer's orchestrator checks after reserving the slot, in its order.
    let per_second = knobs.price_per_unit.max(0) as f64 / knobs.pixels_per_unit.max(1) as f64;
    let pays = knobs.tickets && knobs.price_per_unit > 0 && !knobs.price_unavailable;
    if pays {
        pay(req, &state, &header, knobs, per_second)?;
    }
    if let Some(refusal) = refuse_after_reserving(knobs, &header) {
        if let Some(c) = state.caps.lock().get_mut(&header.capability) {
            c.stats.errors += 1;
            c.stats.leaked_slots += i64::from(refusal.leaks_slot);
        }
        return Err(refuse(StatusCode::BAD_REQUEST, &refusal.message));
    }
    if knobs.stall {
        // Wedged: the slot stays held until the gateway hangs up (which drops this future).
        std::future::pending::<()>().await;
    }
    let deadline = Duration::from_secs(header.timeout_seconds);
    let delay = slot.delay();
    work(&state, &header, delay, deadline).await?;
    if pays {
        state.payments.lock().debit(&header.sender, &header.capability, delay.as_secs_f64(), per_second);
    }
    if knobs.hold {
        hold(&state, &header, deadline.saturating_sub(delay)).await?;
    }
    outcome(&state, &header, knobs)?;
    record(&state, &header, true);
    if knobs.sse_events > 0 {
        let linger = (knobs.sse_linger || knobs.sse_flood).then(|| deadline.saturating_sub(delay));
        let knobs = knobs.clone();
        return Ok(event_stream(state.into_inner(), &knobs, header.id.clone(), linger, slot.guard));
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
    if let (Some(obj), Some(serde_json::Value::Object(runner))) =
        (answer.as_object_mut(), runner_answer(&tail, slot.nth))
    {
        obj.extend(runner);
    }
    let content_type = if knobs.wrong_content_type { "text/plain; charset=utf-8" } else { "application/json" };
    let mut ok = HttpResponse::Ok();
    ok.content_type(content_type)
        .insert_header((names::LIVEPEER_BALANCE, "1000"))
        .insert_header((names::X_METADATA, json!({"sim": state.name}).to_string()));
    if knobs.answer_bytes == 0 {
        return Ok(ok.body(answer.to_string()));
    }
    let chunks = padded(&answer, knobs.answer_bytes);
    if !knobs.answer_chunked {
        ok.no_chunking(chunks.iter().map(|c| c.len() as u64).sum());
    }
    Ok(ok.streaming(futures_util::stream::iter(chunks.into_iter().map(Ok::<_, actix_web::Error>))))
}

/// `answer` with a `"padding"` field of `x`s that makes it at least `at_least` bytes long, in
/// 64 KiB chunks that share one buffer (a simulator answering many large jobs at once holds
/// little).
fn padded(answer: &serde_json::Value, at_least: usize) -> Vec<web::Bytes> {
    const CHUNK: usize = 64 * 1024;
    static XS: std::sync::OnceLock<web::Bytes> = std::sync::OnceLock::new();
    let xs = XS.get_or_init(|| web::Bytes::from(vec![b'x'; CHUNK]));
    let mut plain = answer.to_string();
    plain.pop(); // the closing brace
    plain.push_str(r#","padding":""#);
    let mut pad = at_least.saturating_sub(plain.len() + 2);
    let mut chunks = vec![web::Bytes::from(plain)];
    while pad > 0 {
        let n = pad.min(CHUNK);
        chunks.push(xs.slice(..n));
        pad -= n;
    }
    chunks.push(web::Bytes::from_static(b"\"}"));
    chunks
}

/// Counts the job's end in the capability's stats.
fn record(state: &SimState, header: &JobRequest, ok: bool) {
    if let Some(c) = state.caps.lock().get_mut(&header.capability) {
        if ok {
            c.stats.ok += 1;
        } else {
            c.stats.errors += 1;
        }
    }
}

/// **Read**: the `Livepeer` header, the credentials (`reject_creds`), the timeout.
fn read(req: &HttpRequest, state: &SimState) -> Phase<JobRequest> {
    let creds = || refuse(StatusCode::BAD_REQUEST, "Could not verify job creds");
    let raw = req.headers().get(names::LIVEPEER).and_then(|v| v.to_str().ok()).ok_or_else(creds)?;
    let header = decode_job_request(raw).map_err(|_| creds())?;
    state.last.lock().job = Some(header.clone());
    if let Some(c) = state.caps.lock().get_mut(&header.capability).filter(|c| c.knobs.reject_creds) {
        c.stats.jobs += 1;
        c.stats.errors += 1;
        return Err(creds());
    }
    if header.timeout_seconds == 0 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "no timeout_seconds set with request, timeout_seconds is required",
        ));
    }
    Ok(header)
}

/// A job holding a capacity slot.
struct Slot {
    knobs: Knobs,
    /// The job's number for its capability (1 for the first).
    nth: u64,
    /// Slots in use with this job's (busy and leaked ones included).
    used: i64,
    /// Holds the slot while the job (or its stream) runs.
    guard: InflightGuard,
    /// Holds the cold-start count while a cold-start job runs.
    _cold: Option<InflightGuard>,
}

impl Slot {
    /// How long the job takes: latency, jitter, slowness past capacity (`over_capacity =
    /// slow`), the cold start, or for ever (`hang`).
    fn delay(&self) -> Duration {
        let k = &self.knobs;
        let mut delay = Duration::from_millis(k.latency_ms);
        if k.jitter_ms > 0 {
            delay += Duration::from_millis(rand::random_range(0..=k.jitter_ms));
        }
        if k.over_capacity == OverCapacity::Slow && self.used > k.capacity && k.capacity > 0 {
            delay = delay.mul_f64(self.used as f64 / k.capacity as f64);
        }
        if self.nth <= k.cold_start_jobs {
            delay += Duration::from_millis(k.cold_start_ms);
        }
        if k.hang {
            delay = Duration::from_secs(3600);
        }
        delay
    }
}

/// **Reserve** a capacity slot, refusing past capacity as the knobs say.
fn reserve(state: &SimState, header: &JobRequest) -> Phase<Slot> {
    let (knobs, inflight, cold, nth, leaked) = {
        let mut caps = state.caps.lock();
        let Some(c) = caps.get_mut(&header.capability) else {
            return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, NO_CAPACITY));
        };
        c.stats.jobs += 1;
        (c.knobs.clone(), c.inflight.clone(), c.cold.clone(), c.stats.jobs, c.stats.leaked_slots)
    };
    if knobs.refuse {
        record(state, header, false);
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, NO_CAPACITY));
    }
    let running = inflight.fetch_add(1, Ordering::Relaxed) + 1;
    let guard = InflightGuard(inflight);
    let used = running + knobs.busy_slots.max(0) + leaked;
    let refuses = matches!(knobs.over_capacity, OverCapacity::Refuse | OverCapacity::Refuse429);
    if refuses && used > knobs.capacity {
        if let Some(c) = state.caps.lock().get_mut(&header.capability) {
            c.stats.errors += 1;
            c.stats.refused += 1;
        }
        return Err(if knobs.over_capacity == OverCapacity::Refuse {
            refuse(StatusCode::SERVICE_UNAVAILABLE, NO_CAPACITY)
        } else {
            refuse(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
        });
    }
    let cold_guard = (nth <= knobs.cold_start_jobs).then(|| {
        cold.fetch_add(1, Ordering::Relaxed);
        InflightGuard(cold.clone())
    });
    if let Some(c) = state.caps.lock().get_mut(&header.capability) {
        c.stats.max_inflight = c.stats.max_inflight.max(running);
        if cold.load(Ordering::Relaxed) > 0 {
            c.stats.max_inflight_cold = c.stats.max_inflight_cold.max(running);
        }
    }
    Ok(Slot { knobs, nth, used, guard, _cold: cold_guard })
}

/// **Pay** (a priced capability paid with tickets): takes the `Livepeer-Payment`, then
/// refuses when the balance does not cover 60 s of compute, as go-livepeer does (a `taker`
/// refuses always).
fn pay(req: &HttpRequest, state: &SimState, header: &JobRequest, knobs: &Knobs, per_second: f64) -> Phase<()> {
    let mut ledger = state.payments.lock();
    let payment = req.headers().get("Livepeer-Payment").and_then(|v| v.to_str().ok());
    if let Some(p) = payment {
        state.last.lock().payment = Some(p.to_string());
        if knobs.reset_on_payment {
            drop(ledger);
            if let Some(c) = state.caps.lock().get_mut(&header.capability) {
                c.stats.errors += 1;
            }
            // The head goes out, then the connection breaks: the gateway sees a broken
            // answer right after its payment.
            let broken = futures_util::stream::once(async { Err::<web::Bytes, _>(crate::stream::StreamFailure) });
            return Err(Box::new(HttpResponse::Ok().content_type("application/json").streaming(broken)));
        }
    }
    let refusal = match payment {
        Some(p) => ledger.pay(p, &header.sender, &header.capability, knobs.balance).err(),
        None => None,
    }
    .or_else(|| {
        // A taker answers the balance check with a refusal whatever it was paid.
        (!ledger.covers(&header.sender, &header.capability, knobs.balance, per_second) || knobs.taker)
            .then(|| "Insufficient balance for request".to_string())
    });
    drop(ledger);
    match refusal {
        Some(message) => {
            if let Some(c) = state.caps.lock().get_mut(&header.capability) {
                c.stats.errors += 1;
            }
            Err(refuse(StatusCode::BAD_REQUEST, &message))
        }
        None => Ok(()),
    }
}

/// **Run** for `delay`, or fail at the job's deadline when it would take longer.
async fn work(state: &SimState, header: &JobRequest, delay: Duration, deadline: Duration) -> Phase<()> {
    if delay > deadline {
        tokio::time::sleep(deadline).await;
        record(state, header, false);
        return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, DEADLINE_EXCEEDED));
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

/// Waits for a test's release (`hold`), or fails at the job's deadline.
async fn hold(state: &SimState, header: &JobRequest, remaining: Duration) -> Phase<()> {
    match tokio::time::timeout(remaining, state.job_release.acquire()).await {
        Ok(Ok(permit)) => {
            permit.forget();
            Ok(())
        }
        _ => {
            record(state, header, false);
            Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, DEADLINE_EXCEEDED))
        }
    }
}

/// **Outcome**: a fixed status, an out-of-memory or another worker error at the knobs' rates.
fn outcome(state: &SimState, header: &JobRequest, knobs: &Knobs) -> Phase<()> {
    if let Some(status) = knobs.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        record(state, header, status.is_success());
        return Err(refuse(status, &knobs.status_body));
    }
    let roll: f64 = rand::random();
    let message = if roll < knobs.oom_rate {
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)"
    } else if roll < knobs.oom_rate + knobs.error_rate {
        "job not able to be processed, removing capability err=worker error"
    } else {
        return Ok(());
    };
    record(state, header, false);
    Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, message))
}

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
    if knobs.price_per_unit > 0 && !knobs.tickets {
        let units = i128::from(knobs.pixels_per_unit.max(1));
        if i128::from(knobs.balance) * units < 60 * i128::from(knobs.price_per_unit) {
            return Some(LateRefusal { message: "Insufficient balance for request".into(), leaks_slot: false });
        }
    }
    // The same decoding as go-livepeer's (`JobRequestDetails`), shared with the gateway's edge check.
    if let Err(ParamsError::Request(e) | ParamsError::Parameters(e)) = check_request(&header.request) {
        return Some(LateRefusal {
            message: format!("Unable to unmarshal job request details err={e}"),
            leaks_slot: true,
        });
    }
    None
}
