//! `GET /discovery` as go-livepeer (`ai_http.go:DiscoverLiveRunners`) and `livepeer/node` answer
//! it, with the faults of the `discovery` knob.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{Dialect, DiscoveryFault};
use crate::state::SimState;

/// An error answer in `dialect`: go-livepeer's `http.Error` text, or `livepeer/node`'s JSON.
pub(crate) fn fail(dialect: Dialect, status: StatusCode, message: &str) -> HttpResponse {
    match dialect {
        Dialect::GoLivepeer => crate::orchestrator::text(status, message),
        Dialect::Node => HttpResponse::build(status).json(json!({"error": message})),
    }
}

pub(crate) async fn discovery(state: web::Data<SimState>) -> HttpResponse {
    let (fault, body, enabled) = {
        let mut live = state.live_runner.lock();
        live.stats.discovery += 1;
        let address = live.knobs.address.clone().unwrap_or_else(|| state.url.clone());
        let node = live.knobs.dialect == Dialect::Node;
        let runners: Vec<Value> = live
            .runners
            .values()
            .filter(|r| r.spec.listed && !r.spec.gone)
            // livepeer/node hides full runners.
            .filter(|r| !node || r.used() < r.spec.capacity)
            .map(|r| {
                let s = &r.spec;
                let kind = if s.persistent_mode() { "session" } else { "app" };
                let mut rec = json!({
                    "url": format!("{address}/apps/{}/{kind}", s.route),
                    "gpu": {"id": "0", "name": s.gpu, "vram_mb": 46068},
                    "app": s.app, "version": s.version, "metadata": "{}", "mode": s.mode,
                    "capacity": s.capacity, "capacity_used": r.used().min(s.capacity),
                    "capacity_available": (s.capacity - r.used()).max(0),
                });
                match s.price {
                    Some(p) => rec["price_info"] = json!({"price": p, "currency": "wei", "unit": s.unit}),
                    None if node => rec["price_info"] = json!({"price": 0, "currency": "wei", "unit": "seconds"}),
                    None => {}
                }
                rec
            })
            .collect();
        let mut entry = json!({"address": address});
        if !runners.is_empty() || node {
            // go-livepeer omits an empty list (`omitempty`).
            entry["runners"] = Value::Array(runners);
        }
        (live.knobs.discovery, json!([entry]), live.knobs.enabled)
    };
    if !enabled {
        return crate::orchestrator::text(StatusCode::NOT_FOUND, "live runners are not supported");
    }
    match fault {
        DiscoveryFault::None => HttpResponse::Ok().json(body),
        DiscoveryFault::Status500 => {
            crate::orchestrator::text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        DiscoveryFault::Hang => {
            std::future::pending::<()>().await;
            HttpResponse::Ok().finish()
        }
        DiscoveryFault::Garbage => HttpResponse::Ok().content_type("text/html").body("<html>maintenance</html>"),
        DiscoveryFault::Unsupported => {
            crate::orchestrator::text(StatusCode::NOT_FOUND, "live runners are not supported")
        }
    }
}
