//! Paying for a running stream with the gateway's payments core (`route::Payments`): before each
//! payment a fresh token is asked of the orchestrator running the stream **now** (go-livepeer pays
//! after a swap with the token of the orchestrator it started on), and the payment keeps the
//! balance there above the orchestrator's 60 s minimum: the core tops it up to
//! `120 s + 70 s` of the price whenever it is under `120 s`, and the orchestrator debits 23 s of it
//! every 23 s, so a payment every `streams.payment_interval` (30 s) leaves a margin. The stream's
//! time is debited from the gateway's own ledger each round (at least a second per round, as the
//! orchestrator charges whole seconds), so the core's rule against believing a lower balance
//! right after a payment (a taker's lie) does not starve a stream whose balance is really being
//! used. The operator's limits (per ticket, per payment, per capability and hour) apply as to any
//! job.

use std::sync::Arc;
use std::time::Duration;

use crate::pair::PaymentTerms;
use crate::payment::{PayError, TicketParams};
use crate::protocol::client::fetch_token;
use crate::route::Router;

use super::place::Accepted;
use super::upstream::{self, stream_header, Call};

/// Seconds a stream payment covers (go-livepeer's `sendPaymentForStream`: 70).
pub(crate) const PAYMENT_SECONDS: u64 = 70;
/// Bound on the payment call (go-livepeer: 10 s).
const PAYMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a payment round went.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Paid {
    /// Tickets were sent and taken.
    Sent,
    /// Nothing was due (free, offchain, or the balance is enough).
    NotDue,
}

/// Why a payment round failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PayFailure {
    /// The orchestrator refused the payment: the stream moves.
    Refused(String),
    /// The orchestrator's tickets are beyond the operator's per-ticket limits: the stream moves.
    OverLimit(PayError),
    /// The operator's spend cap is reached: the stream ends.
    SpendCap(PayError),
    /// No fresh token could be had: counted, tried again next round.
    Token(String),
}

/// One payment round for the stream placed at `accepted`, which has run `used` since the last
/// round (or since its start there).
pub(crate) async fn pay(
    router: &Router,
    stream_id: &str,
    accepted: &Accepted,
    token_timeout: Duration,
    used: Duration,
) -> Result<Paid, PayFailure> {
    let signer = &*router.signer;
    let mut view = accepted.picked.view.read().clone();
    if signer.payer().is_none() || view.price_per_unit <= 0 {
        return Ok(Paid::NotDue);
    }
    let cap = view.key.capability.clone();
    let token = fetch_token(&router.client, &view.orchestrator.url, &cap, signer, token_timeout)
        .await
        .map_err(|e| PayFailure::Token(e.to_string()))?;
    // The fresh token's terms: its price, its ticket params, the balance it reports.
    if let Some(p) = token.price {
        view.price_per_unit = p.price_per_unit;
        view.pixels_per_unit = p.pixels_per_unit.max(1);
    }
    if view.price_per_unit <= 0 {
        return Ok(Paid::NotDue);
    }
    let params = token
        .ticket_params
        .as_ref()
        .and_then(|v| serde_json::from_value::<TicketParams>(v.clone()).ok())
        .ok_or(PayFailure::OverLimit(PayError::NoTicketParams))?;
    view.payment = Some(Arc::new(PaymentTerms { params, balance: token.balance }));
    router.payments.debit(&view, used.as_secs_f64());
    let label = router.scoreboard.label(&cap);
    let header = match router.payments.prepare(&view, &label, PAYMENT_SECONDS, signer) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(Paid::NotDue),
        Err(e @ PayError::SpendCapReached { .. }) => return Err(PayFailure::SpendCap(e)),
        Err(e) => return Err(PayFailure::OverLimit(e)),
    };
    let job = stream_header(signer, stream_id, cap.as_str(), PAYMENT_SECONDS);
    let answer = upstream::post(
        &router.client,
        Call {
            service_addr: &accepted.service_addr,
            path: upstream::PAYMENT,
            header: &job,
            body: bytes::Bytes::new(),
            content_type: None,
            payment: Some(&header),
            timeout: PAYMENT_TIMEOUT,
        },
    )
    .await;
    let refused = |why: String| {
        // Its next token's balance is believed again, even right after this payment.
        router.payments.refused(&view.key);
        PayFailure::Refused(why)
    };
    match answer {
        Ok(a) if (200..300).contains(&a.status) => Ok(Paid::Sent),
        Ok(a) => Err(refused(format!("answered {}: {}", a.status, crate::protocol::client::excerpt(&a.body)))),
        // A master orchestrator that cannot process a payment crashes its handler.
        Err(e) => Err(refused(format!("no answer to the payment: {e}"))),
    }
}
