//! The orchestrator side of the BYOC protocol as go-livepeer's orchestrator answers it:
//! `GET /process/token` here and `POST /process/request/...` in `orchestrator/job.rs`, with the
//! faults the knobs ask for.

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::protocol::names;
use byoc_actors::protocol::token::decode_eth_address_header;
use serde_json::json;

use crate::state::SimState;

mod job;
pub(crate) use job::job;

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
