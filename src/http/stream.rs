//! The stream API (go-livepeer's `/process/stream/*`), thin handlers over
//! [`byoc_actors::stream::Streams`]: start, update, status, stop, data (SSE), the CORS preflight,
//! and the stream's media endpoints (trickle ingress `POST .../in/{seq}`, egress
//! `GET .../out/{seq}`, WHIP ingest `POST .../whip` in `whip.rs`), whose URLs do not change when
//! the orchestrator does.

mod whip;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::protocol::header::decode_client_header;
use byoc_actors::protocol::names;
use byoc_actors::protocol::trickle::serve::{self, GetBody, Reply};
use byoc_actors::protocol::trickle::RESET;
use byoc_actors::stream::{StartSpec, Stopper, StreamError, Streams};
use bytes::Bytes;

use super::body::{read_body, BodyReservation, BodyRules};
use super::error::ApiError;
use super::public::{content_type, request_id, PublicState};

/// go-livepeer's limit on a start or update body (`http.MaxBytesReader`, 10 MiB).
pub const MAX_STREAM_BODY: usize = 10 << 20;

/// Registers the stream routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Each resource answers a preflight and a JSON 405 for the methods it does not serve.
    let res = |path: &str, allowed: &'static str| {
        web::resource(path).default_service(web::to(move |req: HttpRequest, state: web::Data<PublicState>| {
            other_method(req, state, allowed)
        }))
    };
    cfg.service(
        web::scope("/process/stream")
            .service(res("/start", "POST").route(web::post().to(start)))
            .service(res("/{id}/update", "POST").route(web::post().to(update)))
            .service(res("/{id}/status", "GET").route(web::get().to(status)))
            .service(res("/{id}/stop", "POST").route(web::post().to(stop)))
            .service(res("/{id}/data", "GET").route(web::get().to(data)))
            .service(res("/{id}/in", "DELETE").route(web::delete().to(ingress_close)))
            .service(res("/{id}/in/{seq}", "POST").route(web::post().to(ingress_post)))
            .service(res("/{id}/out/next", "GET").route(web::get().to(egress_next)))
            .service(res("/{id}/out/{seq}", "GET").route(web::get().to(egress_get)))
            .service(res("/{id}/whip", "POST").route(web::post().to(whip::offer)))
            .service(res("/{id}/whip/{session}", "DELETE").route(web::delete().to(whip::delete)))
            .default_service(web::to(fallback)),
    );
}

/// A method a stream resource does not serve: the preflight, or a JSON 405.
async fn other_method(req: HttpRequest, state: web::Data<PublicState>, allowed: &'static str) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return cors(HttpResponse::NoContent().finish(), &state, true);
    }
    fail(ApiError::method_not_allowed(allowed), &state)
}

fn streams(state: &PublicState) -> &Streams {
    &state.streams
}

/// Adds the CORS headers when `streams.allow_cors` is on (go-livepeer's `corsHeaders`).
fn cors(mut resp: HttpResponse, state: &PublicState, preflight: bool) -> HttpResponse {
    if state.streams.settings().allow_cors {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Livepeer"));
        if preflight {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("OPTIONS, POST, GET, DELETE"));
        }
    }
    resp
}

fn fail(e: impl Into<ApiError>, state: &PublicState) -> HttpResponse {
    cors(actix_web::ResponseError::error_response(&e.into()), state, false)
}

/// The preflight of any stream path, and a JSON 404/405 for the rest.
async fn fallback(req: HttpRequest, state: web::Data<PublicState>) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return cors(HttpResponse::NoContent().finish(), &state, true);
    }
    fail(ApiError::route_not_found(req.method().as_str(), req.path()), &state)
}

/// Reads a start, update or stop body: the job bodies' rules (time, pace, the body budget) with
/// go-livepeer's 10 MiB bound; the bytes go back to the budget once read (a stream holds none).
async fn stream_body(req: &HttpRequest, payload: web::Payload, state: &PublicState) -> Result<Bytes, ApiError> {
    let rules = BodyRules { max_bytes: MAX_STREAM_BODY.min(state.body.max_bytes), ..state.body.clone() };
    let mut held = BodyReservation::new(&state.bodies, req.peer_addr().map(|a| a.ip()));
    let body = read_body(req, payload, &rules, &mut held).await?;
    Ok(body.to_bytes())
}

/// The base of a stream's URLs: `streams.public_url`, or the start request's scheme and host.
fn base_url(req: &HttpRequest, configured: &str) -> String {
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_string();
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

async fn start(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<PublicState>,
    configured: web::Data<PublicUrl>,
) -> HttpResponse {
    let client = match decode_client_header(req.headers().get(names::LIVEPEER).map(HeaderValue::as_bytes)) {
        Ok(c) => c,
        Err(e) => return fail(e, &state),
    };
    let body = match stream_body(&req, payload, &state).await {
        Ok(b) => b,
        Err(e) => return fail(e, &state),
    };
    let spec = StartSpec { client, body, base_url: base_url(&req, &configured.0), request_id: request_id(&req) };
    match streams(&state).start(&state.router, spec).await {
        Ok(urls) => {
            byoc_actors::media::start_outputs(streams(&state), &urls.stream_id);
            cors(HttpResponse::Ok().json(urls), &state, false)
        }
        Err(e) => fail(e, &state),
    }
}

async fn update(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<PublicState>,
) -> HttpResponse {
    // go-livepeer reads the update's header too (its capability and timeout).
    let client = match decode_client_header(req.headers().get(names::LIVEPEER).map(HeaderValue::as_bytes)) {
        Ok(c) => c,
        Err(e) => return fail(e, &state),
    };
    let body = match stream_body(&req, payload, &state).await {
        Ok(b) => b,
        Err(e) => return fail(e, &state),
    };
    match streams(&state).update(&id, &client, body, content_type(&req)).await {
        Ok(a) => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut b = HttpResponse::build(status);
            if let Some(ct) = &a.content_type {
                b.insert_header((header::CONTENT_TYPE, ct.as_str()));
            }
            if !a.orchestrator.is_empty() {
                b.insert_header((names::X_ORCHESTRATOR_URL, a.orchestrator.as_str()));
            }
            cors(b.body(a.body), &state, false)
        }
        Err(e) => fail(e, &state),
    }
}

async fn status(id: web::Path<String>, state: web::Data<PublicState>) -> HttpResponse {
    match streams(&state).status(&id) {
        Ok(doc) => cors(HttpResponse::Ok().json(doc), &state, false),
        Err(e) => fail(e, &state),
    }
}

async fn stop(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<PublicState>,
) -> HttpResponse {
    let body = match stream_body(&req, payload, &state).await {
        Ok(b) => b,
        Err(e) => return fail(e, &state),
    };
    match streams(&state).stop(&id, Stopper::Client, body).await {
        // go-livepeer answers 200 with the orchestrator's body (empty when it did not answer).
        Ok(a) => {
            let mut b = HttpResponse::Ok();
            if let Some(ct) = &a.content_type {
                b.insert_header((header::CONTENT_TYPE, ct.as_str()));
            }
            if let Some(o) = &a.orchestrator {
                b.insert_header((names::X_ORCHESTRATOR_URL, o.as_str()));
            }
            cors(b.body(a.body), &state, false)
        }
        Err(e) => fail(e, &state),
    }
}

async fn data(id: web::Path<String>, state: web::Data<PublicState>) -> HttpResponse {
    match streams(&state).data(&id) {
        Ok(events) => cors(
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .insert_header((header::HeaderName::from_static("x-accel-buffering"), "no"))
                .streaming(events),
            &state,
            false,
        ),
        Err(e) => fail(e, &state),
    }
}

fn trickle<B: actix_web::body::MessageBody + 'static>(r: Reply<B>) -> HttpResponse {
    let mut b = HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in r.headers {
        b.insert_header((k, v));
    }
    b.body(r.body)
}

fn seq(raw: &str) -> Result<i64, ApiError> {
    serve::parse_seq(raw).ok_or_else(|| {
        ApiError::bad_request("invalid-seq", format!("'{raw}' is not a segment number (an integer, -1 for the next)"))
    })
}

/// `POST /process/stream/{id}/in/{seq}`: one ingress segment, streamed to the orchestrator as it
/// arrives.
async fn ingress_post(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<PublicState>,
) -> HttpResponse {
    let (id, raw) = path.into_inner();
    let channel = match streams(&state).ingress(&id) {
        Ok(c) => c,
        Err(e) => return fail(e, &state),
    };
    let seq = match seq(&raw) {
        Ok(s) => s,
        Err(e) => return fail(e, &state),
    };
    let reset = req.headers().contains_key(RESET);
    cors(trickle(serve::post(&channel, seq, reset, payload).await), &state, false)
}

/// `DELETE /process/stream/{id}/in`: the client ended its ingress; the stream stops.
async fn ingress_close(id: web::Path<String>, state: web::Data<PublicState>) -> HttpResponse {
    if let Err(e) = streams(&state).ingress(&id) {
        return fail(e, &state);
    }
    match streams(&state).stop(&id, Stopper::IngressClosed, Bytes::from_static(b"the client closed its ingress")).await
    {
        Ok(_) | Err(StreamError::Ended { .. }) => cors(HttpResponse::Ok().finish(), &state, false),
        Err(e) => fail(e, &state),
    }
}

/// `GET /process/stream/{id}/out/{seq}`: one egress segment, streamed as it arrives.
async fn egress_get(path: web::Path<(String, String)>, state: web::Data<PublicState>) -> HttpResponse {
    let (id, raw) = path.into_inner();
    let channel = match streams(&state).egress(&id) {
        Ok(c) => c,
        Err(e) => return fail(e, &state),
    };
    let seq = match seq(&raw) {
        Ok(s) => s,
        Err(e) => return fail(e, &state),
    };
    let r = serve::get(&channel, seq).await;
    let mut b = HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK));
    for (k, v) in r.headers {
        b.insert_header((k, v));
    }
    let resp = match r.body {
        GetBody::Text(t) => b.body(t),
        GetBody::Segment(s) => b.content_type("video/MP2T").streaming(s.into_stream()),
    };
    cors(resp, &state, false)
}

/// `GET /process/stream/{id}/out/next`.
async fn egress_next(id: web::Path<String>, state: web::Data<PublicState>) -> HttpResponse {
    match streams(&state).egress(&id) {
        Ok(c) => cors(trickle(serve::next(&c)), &state, false),
        Err(e) => fail(e, &state),
    }
}

/// `streams.public_url`, shared by the workers.
#[derive(Debug, Clone)]
pub struct PublicUrl(pub String);
