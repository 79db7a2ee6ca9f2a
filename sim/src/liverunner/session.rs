//! Reserving and stopping sessions (`POST /apps/{runner}/session`, `.../{id}/stop`) as
//! go-livepeer's `ReserveLiveRunnerSession` / `StopLiveRunnerSession` and `livepeer/node`
//! answer them, and the reservation a single-shot call holds while it runs.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::discovery::fail;
use super::pay::{self, Paid};
use super::{Dialect, Live, SimSession};
use crate::state::SimState;

/// A reservation refused: the answer to send.
pub(crate) type Refusal = Box<HttpResponse>;

/// A reservation held: its session id and the receiver that says when it is released.
pub(crate) struct Held {
    pub(crate) id: String,
    pub(crate) cancel: tokio::sync::watch::Receiver<bool>,
}

/// `404 runner not found` in `dialect`.
pub(crate) fn runner_not_found(dialect: Dialect) -> HttpResponse {
    fail(dialect, StatusCode::NOT_FOUND, "runner not found")
}

/// Reserves a session (or a single-shot call's reservation) on runner `route`, paying as the
/// request's headers do when the runner is priced and the orchestrator takes tickets.
pub(crate) fn reserve_on(
    live: &mut Live,
    route: &str,
    req: &HttpRequest,
    single_shot: bool,
    service: &str,
) -> Result<Held, Refusal> {
    let dialect = live.knobs.dialect;
    let Some(runner) = live.runners.get(route).filter(|r| !r.spec.gone) else {
        return Err(Box::new(runner_not_found(dialect)));
    };
    let spec = runner.spec.clone();
    if spec.persistent_mode() == single_shot {
        let message = match (dialect, single_shot) {
            (Dialect::GoLivepeer, false) => "only persistent runners have sessions",
            (Dialect::GoLivepeer, true) => "runner is not single-shot",
            (Dialect::Node, false) => "runner is not persistent",
            (Dialect::Node, true) => "runner is not single-shot",
        };
        return Err(Box::new(fail(dialect, StatusCode::BAD_REQUEST, message)));
    }
    let priced = live.knobs.tickets && spec.price.is_some_and(|p| p > 0);
    let paid: Option<Paid> = if priced { Some(pay::admit(live, &spec, req, service)?) } else { None };
    let runner = live.runners.get_mut(route).ok_or_else(|| Box::new(runner_not_found(dialect)))?;
    if runner.spec.refuse || runner.used() >= runner.spec.capacity {
        live.stats.refused_capacity += 1;
        return Err(Box::new(match dialect {
            Dialect::GoLivepeer => fail(dialect, StatusCode::SERVICE_UNAVAILABLE, "no capacity available for runner"),
            Dialect::Node => fail(dialect, StatusCode::CONFLICT, "runner at capacity"),
        }));
    }
    let id = paid.as_ref().map_or_else(super::session_id, |p| p.manifest.clone());
    if runner.sessions.contains_key(&id) {
        return Err(Box::new(fail(dialect, StatusCode::CONFLICT, "session already exists")));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    runner.sessions.insert(
        id.clone(),
        SimSession {
            single_shot,
            cancel: tx,
            payer: paid.as_ref().map(|p| p.payer.clone()),
            per_second: paid.as_ref().map_or(0.0, |p| p.per_second),
            debited_at: Instant::now(),
        },
    );
    if let Some(p) = &paid {
        // The payment is processed once the reservation stands; a refused one releases it.
        if let Err(refused) = pay::process(live, &id, p) {
            live.release(route, &id);
            return Err(refused);
        }
    }
    live.stats.reserved += 1;
    Ok(Held { id, cancel: rx })
}

pub(crate) async fn reserve(req: HttpRequest, path: web::Path<String>, state: web::Data<SimState>) -> HttpResponse {
    let route = path.into_inner();
    let service = state.runner_service();
    let mut live = state.live_runner.lock();
    match reserve_on(&mut live, &route, &req, false, &service) {
        Ok(held) => {
            let control = format!("{service}/apps/{route}/session/{}", held.id);
            HttpResponse::Ok()
                .json(json!({"session_id": held.id, "app_url": format!("{control}/app"), "control_url": control}))
        }
        Err(refused) => *refused,
    }
}

pub(crate) async fn stop(path: web::Path<(String, String)>, state: web::Data<SimState>) -> HttpResponse {
    let (route, id) = path.into_inner();
    let mut live = state.live_runner.lock();
    let dialect = live.knobs.dialect;
    if live.runners.get(&route).is_none_or(|r| r.spec.gone) {
        return runner_not_found(dialect);
    }
    let existed = live.release(&route, &id);
    if existed {
        live.stats.stopped += 1;
    }
    match dialect {
        // go-livepeer releases without checking: an unknown session is a 204 too.
        Dialect::GoLivepeer => HttpResponse::NoContent().finish(),
        Dialect::Node if existed => HttpResponse::Ok().json(json!({"ok": true})),
        Dialect::Node => fail(dialect, StatusCode::NOT_FOUND, "session not found"),
    }
}
