//! The orchestrator side of the BYOC protocol as go-livepeer's orchestrator answers it:
//! `GET /process/token` and `POST /process/request/...`, with the faults the knobs ask for.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::protocol::header::{check_request, decode_job_request, JobRequest, ParamsError};
use byoc_actors::protocol::names;
use byoc_actors::protocol::token::decode_eth_address_header;
use serde_json::json;

use crate::knobs::{Knobs, OverCapacity};
use crate::runner::runner_answer;
use crate::state::{sha256_hex, InflightGuard, ReceivedJob, SimState};
use crate::stream::event_stream;

pub(crate) fn text(status: StatusCode, body: &str) -> HttpResponse {
    // go-livepeer answers errors with http.Error: text/plain and a trailing newline.
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(format!("{body}\n"))
}

pub(crate) async fn token(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let header =
        |n: actix_web::http::header::HeaderName| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(cred) = header(names::LIVEPEER_ETH_ADDRESS) else {
        return text(StatusCode::BAD_REQUEST, "Must have eth address and signature on request");
    };
    let Some(cred) = decode_eth_address_header(&cred) else {
        return text(StatusCode::BAD_REQUEST, "Invalid eth address header ");
    };
    let cred_addr = cred.addr.clone();
    state.last.lock().token_credential = Some(cred);
    let Some(cap) = header(names::LIVEPEER_CAPABILITY).filter(|c| !c.is_empty()) else {
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
            (
                (c.knobs.capacity - load).max(0),
                (c.knobs.price_per_unit, c.knobs.pixels_per_unit, c.knobs.balance, c.knobs.tickets),
            )
        }
        None => (0, (0, 1, 0, false)),
    };
    drop(caps);
    let paid_tickets = price.3 && price.0 > 0;
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
    if paid_tickets {
        // An on-chain orchestrator: fresh ticket params with every token, and the sender's own
        // balance.
        let mut ledger = state.payments.lock();
        let params = ledger.issue(&cred_addr, (price.0, price.1));
        body["ticket_params"] = crate::payments::Ledger::params_json(&params);
        body["balance"] = json!(ledger.balance(&cred_addr, &cap, price.2));
    } else if price.2 != 0 {
        body["balance"] = json!(price.2);
    }
    HttpResponse::Ok().json(body)
}

pub(crate) async fn job(
    req: HttpRequest,
    body: web::Bytes,
    tail: web::Path<String>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let Some(raw) = req.headers().get(names::LIVEPEER).and_then(|v| v.to_str().ok()) else {
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
    let (knobs, inflight, cold, nth, leaked) = {
        let mut caps = state.caps.lock();
        let Some(c) = caps.get_mut(&header.capability) else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "No capacity available for capability");
        };
        c.stats.jobs += 1;
        (c.knobs.clone(), c.inflight.clone(), c.cold.clone(), c.stats.jobs, c.stats.leaked_slots)
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
    let _cold_guard = (nth <= knobs.cold_start_jobs).then(|| {
        cold.fetch_add(1, Ordering::Relaxed);
        InflightGuard(cold.clone())
    });
    if let Some(c) = state.caps.lock().get_mut(&header.capability) {
        c.stats.max_inflight = c.stats.max_inflight.max(running);
        if cold.load(Ordering::Relaxed) > 0 {
            c.stats.max_inflight_cold = c.stats.max_inflight_cold.max(running);
        }
    }
    // What go-livepeer's orchestrator checks after reserving the slot, in its order.
    let per_second = knobs.price_per_unit.max(0) as f64 / knobs.pixels_per_unit.max(1) as f64;
    let pays = knobs.tickets && knobs.price_per_unit > 0 && !knobs.price_unavailable;
    if pays {
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
                return HttpResponse::Ok().content_type("application/json").streaming(broken);
            }
        }
        let refusal = match payment {
            Some(p) => ledger.pay(p, &header.sender, &header.capability, knobs.balance).err(),
            None => None,
        }
        .or_else(|| {
            (!ledger.covers(&header.sender, &header.capability, knobs.balance, per_second))
                .then(|| "Insufficient balance for request".to_string())
        });
        drop(ledger);
        if let Some(message) = refusal {
            if let Some(c) = state.caps.lock().get_mut(&header.capability) {
                c.stats.errors += 1;
            }
            return text(StatusCode::BAD_REQUEST, &message);
        }
    }
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
    if pays {
        state.payments.lock().debit(&header.sender, &header.capability, delay.as_secs_f64(), per_second);
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
        .insert_header((names::LIVEPEER_BALANCE, "1000"))
        .insert_header((names::X_METADATA, json!({"sim": state.name}).to_string()))
        .body(answer.to_string())
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
