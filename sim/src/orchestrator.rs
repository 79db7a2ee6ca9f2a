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
    let Some(offer) = offer(&state, &cap) else {
        return HttpResponse::Ok().json(token_body(&state, 0, (0, 1)));
    };
    let price = (offer.knobs.price_per_unit, offer.knobs.pixels_per_unit);
    let mut body = token_body(&state, offer.capacity, price);
    let per_second = price.0.max(0) as f64 / price.1.max(1) as f64;
    if offer.knobs.tickets && price.0 > 0 {
        // An on-chain orchestrator: fresh ticket params with every token, and the sender's own
        // balance.
        let mut ledger = state.payments.lock();
        let params = ledger.issue(&cred_addr, price, offer.knobs.params_quirk);
        body["ticket_params"] = crate::payments::Ledger::params_json(&params);
        body["balance"] = json!(ledger.balance(&cred_addr, &cap, offer.knobs.balance));
    } else if offer.knobs.balance != 0 {
        body["balance"] = json!(offer.knobs.balance);
    }
    if offer.knobs.balance_churn && price.0 > 0 {
        // A figure that changes with every refresh and never covers the 60 s minimum.
        body["balance"] = json!((rand::random::<f64>() * 60.0 * per_second) as i64);
    }
    HttpResponse::Ok().json(body)
}

/// What a token offers for one capability: its knobs as they stand for this token and the
/// capacity left.
struct Offer {
    knobs: crate::knobs::Knobs,
    capacity: i64,
}

/// The offer for `cap`, counting the token; `None` for a capability not served here (unless
/// the simulator offers any name, `any_capability`). A flipping price (`price_flip`) changes
/// here, with each token, so that the jobs after it pay the price it announced.
fn offer(state: &SimState, cap: &str) -> Option<Offer> {
    let mut caps = state.caps.lock();
    let Some(c) = caps.get_mut(cap) else {
        // A token for a name it does not serve: capacity as if it did. Its jobs still get
        // go-livepeer's 503 for an unregistered capability.
        return state
            .any_capability
            .load(Ordering::Relaxed)
            .then(|| Offer { capacity: crate::knobs::Knobs::default().capacity, knobs: Default::default() });
    };
    c.stats.tokens += 1;
    if let Some(other) = c.knobs.price_flip.as_mut() {
        std::mem::swap(&mut c.knobs.price_per_unit, other);
    }
    let load = c.inflight.load(Ordering::Relaxed) + c.knobs.busy_slots.max(0) + c.stats.leaked_slots;
    Some(Offer { capacity: (c.knobs.capacity - load).max(0), knobs: c.knobs.clone() })
}

/// A token shaped like go-livepeer's offchain `JobToken` (zero values omitted).
fn token_body(state: &SimState, capacity: i64, price: (i64, i64)) -> serde_json::Value {
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
    body
}
