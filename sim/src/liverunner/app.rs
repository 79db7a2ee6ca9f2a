//! The runners' apps, served in process behind the orchestrator's proxy routes
//! (`ANY /apps/{runner}/session/{id}/app/{path}` for a session,
//! `ANY /apps/{runner}/app/{path}` for a single-shot call, as go-livepeer's
//! `proxyLiveRunner` relays them with the `Livepeer-Session-*` headers set):
//!
//! - any path: a JSON echo of what arrived (method, path, query, body length and SHA-256, the
//!   session headers the orchestrator would set);
//! - `sse`: Server-Sent Events, `?n=` events `?interval_ms=` apart;
//! - `ws`: a WebSocket that echoes every message;
//! - `hold`: answers once released (`POST /sim/live/release`) or ends when the session does.
//!
//! A released session ends its in-flight requests (go-livepeer and `livepeer/node` cancel
//! them): a stream breaks off, a WebSocket closes.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;

use super::discovery::fail;
use super::session::{reserve_on, runner_not_found};
use super::RunnerSpec;
use crate::state::{sha256_hex, SimState};

/// One app request: who serves it and what ends it.
struct Call {
    spec: RunnerSpec,
    session: String,
    cancel: tokio::sync::watch::Receiver<bool>,
    /// A single-shot call's reservation: released when the answer (or its stream, or its
    /// socket) ends.
    guard: Option<Release>,
}

/// Waits until the session is released (or its sender is gone).
async fn released(cancel: &mut tokio::sync::watch::Receiver<bool>) {
    while !*cancel.borrow() {
        if cancel.changed().await.is_err() {
            return;
        }
    }
}

/// `ANY /apps/{runner}/session/{id}/app{/path}`.
pub(crate) async fn session_app(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<(String, String, String)>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (route, id, tail) = path.into_inner();
    if !(tail.is_empty() || tail.starts_with('/')) {
        return crate::orchestrator::text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let call = {
        let live = state.live_runner.lock();
        let dialect = live.knobs.dialect;
        let Some(runner) = live.runners.get(&route).filter(|r| !r.spec.gone) else {
            return runner_not_found(dialect);
        };
        let Some(session) = runner.sessions.get(&id) else {
            return fail(dialect, StatusCode::NOT_FOUND, "runner session not found");
        };
        Call { spec: runner.spec.clone(), session: id.clone(), cancel: session.cancel.subscribe(), guard: None }
    };
    serve(&req, body, &tail, call, &state).await
}

/// `ANY /apps/{runner}/app{/path}`: reserve, serve, release.
pub(crate) async fn app_call(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (route, tail) = path.into_inner();
    if !(tail.is_empty() || tail.starts_with('/')) {
        return crate::orchestrator::text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let service = state.runner_service();
    let (held, spec) = {
        let mut live = state.live_runner.lock();
        match reserve_on(&mut live, &route, &req, true, &service) {
            Ok(held) => {
                let spec = live.runners.get(&route).map(|r| r.spec.clone()).unwrap_or_default();
                (held, spec)
            }
            Err(refused) => return *refused,
        }
    };
    // Released when the answer is done (or the client hangs up), however it ends.
    let guard = Release { state: state.clone(), route, id: held.id.clone() };
    let call = Call { spec, session: held.id, cancel: held.cancel, guard: Some(guard) };
    serve(&req, body, &tail, call, &state).await
}

/// Releases a single-shot reservation when dropped.
struct Release {
    state: web::Data<SimState>,
    route: String,
    id: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.state.live_runner.lock().release(&self.route, &self.id);
    }
}

/// Serves one app request.
async fn serve(req: &HttpRequest, body: web::Payload, tail: &str, mut call: Call, state: &SimState) -> HttpResponse {
    let live_dialect = state.live_runner.lock().knobs.dialect;
    state.live_runner.lock().stats.app_requests += 1;
    let spec = call.spec.clone();
    let delay = spec.latency_ms + if spec.jitter_ms > 0 { rand::random::<u64>() % (spec.jitter_ms + 1) } else { 0 };
    if delay > 0 || spec.hang {
        let wait = async {
            if spec.hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
        };
        tokio::select! {
            () = wait => {}
            () = released(&mut call.cancel) => return fail(live_dialect, StatusCode::BAD_GATEWAY, "session released"),
        }
    }
    if let Some(status) = spec.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return HttpResponse::build(status).json(json!({"error": "the app answered with the status it was told to"}));
    }
    if spec.error_rate > 0.0 && rand::random::<f64>() < spec.error_rate {
        return HttpResponse::InternalServerError().json(json!({"error": "app failed"}));
    }
    let name = tail.trim_start_matches('/');
    match name {
        "ws" => websocket(req, body, call).await,
        "sse" => sse(req, call),
        "hold" => hold(call, state).await,
        _ => echo(req, body, tail, &call, state).await,
    }
}

/// The headers go-livepeer's proxy sets on the upstream request.
fn session_headers(call: &Call, state: &SimState) -> serde_json::Value {
    let control = format!("{}/runner/{}/session/{}", state.url, call.spec.route, call.session);
    json!({
        "livepeer-runner-route": call.spec.route,
        "livepeer-session-id": call.session,
        "livepeer-session-control": control,
    })
}

async fn echo(req: &HttpRequest, mut body: web::Payload, tail: &str, call: &Call, state: &SimState) -> HttpResponse {
    use futures_util::StreamExt as _;
    let mut hasher = openssl::sha::Sha256::new();
    let mut len = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                len += c.len();
                hasher.update(&c);
            }
            Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
        }
    }
    let sha: String = hasher.finish().iter().map(|b| format!("{b:02x}")).collect();
    let _ = sha256_hex;
    HttpResponse::Ok().json(json!({
        "sim": state.name,
        "runner": call.spec.route,
        "app": call.spec.app,
        "session": call.session,
        "method": req.method().as_str(),
        "path": if tail.is_empty() { "/" } else { tail },
        "query": req.query_string(),
        "body_len": len,
        "body_sha256": sha,
        "content_type": req.headers().get("content-type").and_then(|v| v.to_str().ok()),
        "headers": session_headers(call, state),
        "client_header": req.headers().get("x-client-test").and_then(|v| v.to_str().ok()),
    }))
}

#[derive(serde::Deserialize)]
struct SseQuery {
    n: Option<u32>,
    interval_ms: Option<u64>,
}

fn sse(req: &HttpRequest, call: Call) -> HttpResponse {
    let q = web::Query::<SseQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or(SseQuery { n: None, interval_ms: None });
    let (n, interval) = (q.n.unwrap_or(3).min(100_000), Duration::from_millis(q.interval_ms.unwrap_or(10)));
    let session = call.session.clone();
    let guard = call.guard;
    let stream = futures_util::stream::unfold((0u32, call.cancel), move |(i, mut cancel)| {
        let session = session.clone();
        let _held = &guard;
        async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = released(&mut cancel) => {
                        // The orchestrator cancels the request: the stream breaks off.
                        return Some((Err(actix_web::error::ErrorBadGateway("session released")), (n, cancel)));
                    }
                }
            }
            let event = format!("data: {}\n\n", json!({"n": i, "session": session}));
            Some((Ok::<Bytes, actix_web::Error>(Bytes::from(event)), (i + 1, cancel)))
        }
    });
    HttpResponse::Ok().content_type("text/event-stream").insert_header(("Cache-Control", "no-cache")).streaming(stream)
}

async fn hold(mut call: Call, state: &SimState) -> HttpResponse {
    tokio::select! {
        permit = state.live_release.acquire() => {
            if let Ok(p) = permit { p.forget(); }
            HttpResponse::Ok().json(json!({"released": true, "session": call.session}))
        }
        () = released(&mut call.cancel) => HttpResponse::BadGateway().body("session released"),
    }
}

async fn websocket(req: &HttpRequest, body: web::Payload, mut call: Call) -> HttpResponse {
    use futures_util::StreamExt as _;
    let (resp, mut session, mut messages) = match actix_ws::handle(req, body) {
        Ok(parts) => parts,
        Err(e) => return HttpResponse::BadRequest().body(format!("not a WebSocket upgrade: {e}")),
    };
    let messages_cap = messages.max_frame_size(1 << 20);
    messages = messages_cap;
    let guard = call.guard.take();
    actix_web::rt::spawn(async move {
        let _held = guard;
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(Ok(actix_ws::Message::Text(t))) => { if session.text(t).await.is_err() { break; } }
                    Some(Ok(actix_ws::Message::Binary(b))) => { if session.binary(b).await.is_err() { break; } }
                    Some(Ok(actix_ws::Message::Ping(p))) => { if session.pong(&p).await.is_err() { break; } }
                    Some(Ok(actix_ws::Message::Close(reason))) => { let _ = session.close(reason).await; return; }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                () = released(&mut call.cancel) => {
                    let _ = session.close(Some(actix_ws::CloseReason { code: actix_ws::CloseCode::Away, description: Some("session released".into()) })).await;
                    return;
                }
            }
        }
        let _ = session.close(None).await;
    });
    resp
}
