//! Live Runner apps on the public listener (issue 28), thin over
//! [`AppRouter`](byoc_actors::liverunner::AppRouter):
//!
//! - `ANY /apps/{app}/{path...}`: a single-shot call (failover before any byte);
//! - `POST /apps/{app}/session`: a session the gateway owns: `{session_id, app_url, control_url}`
//!   with the gateway's URLs;
//! - `ANY /apps/{app}/session/{id}/app/{path...}`: a request of the session (streamed), or its
//!   WebSocket (relayed frame by frame, [`ws`]);
//! - `POST /apps/{app}/session/{id}/stop`: ends it (the runner's session is released).
//!
//! `{app}` is an app name (`live-video-to-video/scope`, its `/` as is or percent-encoded as one
//! segment) or an operator's alias; the longest known name wins.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::liverunner::forward::{end_to_end_headers, Forward, Relay};
use byoc_actors::liverunner::{AppError, AppRouter};
use serde_json::json;

use super::body::{read_body, BodyReservation};
use super::error::ApiError;
use super::public::PublicState;

mod ws;

/// Per-worker state of the app routes.
pub struct AppsState {
    /// This worker's app router.
    pub router: AppRouter,
}

/// Registers `/apps/...` (a scope: its prefix matches by string comparison).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/apps").default_service(web::to(apps)));
}

/// What a path under `/apps/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// A request of session `id`, with the app path after `/app`.
    SessionApp { id: &'a str, tail: String },
    /// Stop session `id`.
    Stop { id: &'a str },
    /// Open a session of the app taking `segments` segments.
    Open,
    /// A single-shot call with the app path after the app's name.
    Call { tail: String },
}

/// The route of `rest` (the segments after the app's name).
fn route<'a>(method: &actix_web::http::Method, rest: &[&'a str]) -> Option<Route<'a>> {
    let join = |s: &[&str]| if s.is_empty() { String::new() } else { format!("/{}", s.join("/")) };
    match rest {
        ["session"] if method == actix_web::http::Method::POST => Some(Route::Open),
        ["session", id, "stop"] if method == actix_web::http::Method::POST => Some(Route::Stop { id }),
        ["session", id, "app", tail @ ..] => Some(Route::SessionApp { id, tail: join(tail) }),
        ["session", ..] => None,
        tail => Some(Route::Call { tail: join(tail) }),
    }
}

fn app_error(e: AppError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    ApiError::new(status, e.code(), e.to_string())
}

fn respond(relay: Relay) -> HttpResponse {
    let status = StatusCode::from_u16(relay.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = HttpResponse::build(status);
    for (n, v) in relay.headers {
        resp.append_header((n, v));
    }
    resp.insert_header(("X-Gateway-Runner", relay.runner));
    resp.insert_header(("X-Gateway-Attempts", relay.attempts.to_string()));
    resp.streaming(relay.body)
}

async fn apps(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppsState>,
    public: web::Data<PublicState>,
) -> Result<HttpResponse, ApiError> {
    let router = &state.router;
    let raw = req.uri().path().strip_prefix("/apps/").unwrap_or("");
    let segments: Vec<&str> = raw.split('/').collect();
    // A session's URLs work whatever discovery says of its app meanwhile.
    let session_at = segments.windows(2).position(|w| w[0] == "session" && w[1].starts_with("gws_"));
    let (app, rest) = match session_at {
        Some(i) => (None, &segments[i..]),
        None => {
            let Some(resolved) = router.boards.resolve(&segments) else {
                let session = req.method() == actix_web::http::Method::POST && segments.last() == Some(&"session");
                router.count_unknown_app(session);
                return Err(app_error(AppError::UnknownApp(segments.first().copied().unwrap_or("").to_string())));
            };
            (Some(resolved.app), &segments[resolved.segments..])
        }
    };
    let route =
        route(req.method(), rest).ok_or_else(|| ApiError::route_not_found(req.method().as_str(), req.uri().path()))?;
    let fwd = |body: bytes::Bytes, tail: String| Forward {
        method: req.method().clone(),
        tail,
        query: req.uri().query().unwrap_or("").to_string(),
        headers: end_to_end_headers(req.headers()),
        body,
    };
    match (route, app) {
        (Route::SessionApp { id, tail }, _) if ws::is_upgrade(&req) => {
            ws::session_ws(router, id, &tail, &req, payload).await
        }
        (Route::SessionApp { id, tail }, _) => {
            let f = fwd(bytes::Bytes::new(), tail);
            router.session_request(id, &f, payload).await.map(respond).map_err(app_error)
        }
        (Route::Stop { id }, _) => {
            router.stop_session(id).await.map_err(app_error)?;
            Ok(HttpResponse::Ok().json(json!({"stopped": id})))
        }
        (Route::Open, Some(app)) => {
            let opened = router.open_session(&app).await.map_err(app_error)?;
            let base = {
                let ci = req.connection_info();
                format!("{}://{}", ci.scheme(), ci.host())
            };
            let control = format!("{base}/apps/{app}/session/{}", opened.id);
            Ok(HttpResponse::Ok().insert_header(("X-Gateway-Runner", opened.runner.clone())).json(json!({
                "session_id": opened.id,
                "app": app.as_str(),
                "app_url": format!("{control}/app"),
                "control_url": control,
                "runner": opened.runner,
                "attempts": opened.attempts,
            })))
        }
        (Route::Call { tail }, Some(app)) => {
            // Held whole within the body budget: a failover replays it.
            let mut reservation = BodyReservation::new(&public.bodies, req.peer_addr().map(|a| a.ip()));
            let body = read_body(&req, payload, &public.body, &mut reservation).await?;
            let f = fwd(body.to_bytes(), tail);
            drop(body);
            let relay = router.call(&app, &f).await.map_err(app_error)?;
            drop(reservation);
            Ok(respond(relay))
        }
        (Route::Open | Route::Call { .. }, None) => {
            Err(ApiError::route_not_found(req.method().as_str(), req.uri().path()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;

    #[test]
    fn paths_after_the_app_name_route_to_calls_sessions_and_stops() {
        assert_eq!(route(&Method::POST, &["session"]), Some(Route::Open));
        assert_eq!(route(&Method::GET, &["session"]), None, "only POST opens");
        assert_eq!(route(&Method::POST, &["session", "gws_1", "stop"]), Some(Route::Stop { id: "gws_1" }));
        assert_eq!(
            route(&Method::GET, &["session", "gws_1", "app", "sse"]),
            Some(Route::SessionApp { id: "gws_1", tail: "/sse".into() })
        );
        assert_eq!(
            route(&Method::GET, &["session", "gws_1", "app"]),
            Some(Route::SessionApp { id: "gws_1", tail: String::new() })
        );
        assert_eq!(route(&Method::PUT, &["v1", "x"]), Some(Route::Call { tail: "/v1/x".into() }));
        assert_eq!(route(&Method::GET, &[]), Some(Route::Call { tail: String::new() }));
    }
}
