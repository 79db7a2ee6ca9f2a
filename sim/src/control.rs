//! The simulator's own endpoints under `/sim/` (state, last job, knobs, crash, release) and
//! the worker registration go-livepeer's orchestrator accepts (`/capability/register`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::knobs::Knobs;
use crate::state::{sha256_hex, SimState};

#[derive(Debug, Deserialize)]
pub(crate) struct ReleaseQuery {
    /// Held jobs to release (`hold`); without it, one held event stream (`sse_hold`).
    jobs: Option<usize>,
}

pub(crate) async fn release(q: web::Query<ReleaseQuery>, state: web::Data<SimState>) -> HttpResponse {
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
/// Body of `POST /capability/register` (the fields the simulator uses; go-livepeer's body has
/// more, which are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct Register {
    name: String,
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    price_per_unit: Option<i64>,
}

pub(crate) async fn register(body: web::Json<Register>, state: web::Data<SimState>) -> HttpResponse {
    let r = body.into_inner();
    let knobs =
        Knobs { capacity: r.capacity.unwrap_or(4), price_per_unit: r.price_per_unit.unwrap_or(0), ..Knobs::default() };
    state.set(&r.name, knobs);
    HttpResponse::Ok().body("")
}

pub(crate) async fn state_report(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.report())
}

/// `GET /sim/last`: the last job received, with its body as length and SHA-256 (404 before
/// the first).
pub(crate) async fn last_seen(state: web::Data<SimState>) -> HttpResponse {
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
pub(crate) struct KnobQuery {
    capability: Option<String>,
}

pub(crate) async fn knobs(
    q: web::Query<KnobQuery>,
    body: web::Json<serde_json::Value>,
    state: web::Data<SimState>,
) -> HttpResponse {
    match state.patch(q.capability.as_deref(), &body) {
        Ok(()) => HttpResponse::Ok().json(state.report()),
        Err(e) => HttpResponse::BadRequest().json(json!({"error": {"code": "invalid-knobs", "message": e}})),
    }
}

pub(crate) async fn crash(state: web::Data<SimState>) -> HttpResponse {
    let s = state.into_inner();
    actix_web::rt::spawn(async move { s.crash().await });
    HttpResponse::Ok().json(json!({"crashing": true}))
}

/// `POST /sim/streams/vanish`: every stream here loses its channels (404 from now on).
pub(crate) async fn vanish_streams(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"vanished": state.vanish_streams()}))
}

/// `GET /sim/live`: the Live Runner side's runners, sessions, knobs and stats.
pub(crate) async fn live_report(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.runner_report())
}

/// Body of `POST /sim/live`: orchestrator knobs and/or runners to add or replace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LivePatch {
    #[serde(default)]
    knobs: Option<crate::liverunner::LiveKnobs>,
    #[serde(default)]
    runners: Vec<crate::liverunner::RunnerSpec>,
}

/// `POST /sim/live`: changes the Live Runner side.
pub(crate) async fn live(body: web::Json<LivePatch>, state: web::Data<SimState>) -> HttpResponse {
    let patch = body.into_inner();
    if let Some(k) = patch.knobs {
        state.set_runner_knobs(k);
    }
    for r in patch.runners {
        state.add_runner(r);
    }
    HttpResponse::Ok().json(state.runner_report())
}

/// `POST /sim/live/release?n=N`: lets held app requests (`hold`) answer.
pub(crate) async fn live_release(q: web::Query<ReleaseQuery>, state: web::Data<SimState>) -> HttpResponse {
    let n = q.jobs.unwrap_or(1).min(1 << 20);
    state.release_runner_requests(n);
    HttpResponse::Ok().json(json!({"released": n}))
}
