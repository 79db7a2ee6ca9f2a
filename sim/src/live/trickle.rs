//! The trickle server under `/ai/trickle/`: go-livepeer's `trickle_server.go` rules, answered by
//! `byoc_actors::protocol::trickle::serve` (the same code behind the gateway's own endpoints).
//! Channels exist only while their stream runs (no auto-create: an unknown channel is a 404).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::protocol::trickle::serve::{self, GetBody, Reply};
use byoc_actors::protocol::trickle::RESET;

use crate::state::SimState;

fn respond<B: actix_web::body::MessageBody + 'static>(r: Reply<B>) -> HttpResponse {
    let mut b = HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in r.headers {
        b.insert_header((k, v));
    }
    b.body(r.body)
}

fn seq(raw: &str) -> Option<i64> {
    serve::parse_seq(raw)
}

pub(crate) async fn channel_get(path: web::Path<(String, String)>, state: web::Data<SimState>) -> HttpResponse {
    let (name, raw) = path.into_inner();
    let Some(ch) = state.live.channel(&name) else { return respond(serve::not_found()) };
    let Some(seq) = seq(&raw) else { return HttpResponse::BadRequest().body("Invalid idx") };
    let r = serve::get(&ch, seq).await;
    let mut b = HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK));
    for (k, v) in r.headers {
        b.insert_header((k, v));
    }
    match r.body {
        GetBody::Text(t) => b.body(t),
        GetBody::Segment(s) => b.streaming(s.into_stream()),
    }
}

pub(crate) async fn channel_next(name: web::Path<String>, state: web::Data<SimState>) -> HttpResponse {
    match state.live.channel(&name) {
        Some(ch) => respond(serve::next(&ch)),
        None => respond(serve::not_found()),
    }
}

pub(crate) async fn channel_post(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (name, raw) = path.into_inner();
    let Some(ch) = state.live.channel(&name) else { return respond(serve::not_found()) };
    let Some(seq) = seq(&raw) else { return HttpResponse::BadRequest().body("Invalid idx") };
    if stalled(&state, &name) {
        // Not taking the segment: its body is not read and no answer comes while the knob holds
        // (bounded, so a forgotten knob does not hold connections for ever).
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !stalled(&state, &name) {
                break;
            }
        }
    }
    let reset = req.headers().contains_key(RESET);
    respond(serve::post(&ch, seq, reset, payload).await)
}

/// Whether `name` is the ingress channel of a stream whose capability has `stream_ingress_stall`.
fn stalled(state: &SimState, name: &str) -> bool {
    let cap = match state.live.streams.lock().get(name) {
        Some(s) => s.capability.clone(),
        None => return false,
    };
    state.caps.lock().get(&cap).is_some_and(|c| c.knobs.stream_ingress_stall)
}

pub(crate) async fn channel_delete(name: web::Path<String>, state: web::Data<SimState>) -> HttpResponse {
    if state.live.remove_channel(&name) {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::BadRequest().body("Invalid stream")
    }
}

pub(crate) async fn segment_delete(path: web::Path<(String, String)>, state: web::Data<SimState>) -> HttpResponse {
    let (name, raw) = path.into_inner();
    let Some(ch) = state.live.channel(&name) else { return respond(serve::not_found()) };
    match seq(&raw) {
        Some(s) if ch.close_segment(s) => HttpResponse::Ok().finish(),
        _ => HttpResponse::BadRequest().body("Nonexistent segment"),
    }
}
