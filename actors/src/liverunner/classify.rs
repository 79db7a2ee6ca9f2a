//! How a runner's answer to a reservation or a single-shot call is classified: the one place
//! Live Runner answers become the pair's [`Outcome`], for both dialects (go-livepeer's plain
//! text, `livepeer/node`'s `{"error": "..."}`).
//!
//! What matters is the answer *before any byte* is relayed: a refusal the client should never
//! see (no capacity, runner gone, bad gateway, a payment the gateway cannot make) fails over to
//! the next runner; anything else is the app's answer and is relayed as is.

use crate::outcome::{Outcome, Refusal};
use crate::protocol::client::excerpt;

/// The outcome of a runner's answer with `status` and the first bytes of its body.
///
/// - `503` (go-livepeer: no capacity, price unavailable), `429`, and a `409` that says the
///   runner is full (`livepeer/node`: `runner at capacity`): capacity, the next runner.
/// - `404` naming the runner or the session (`runner not found`, `session not found`): the
///   runner is gone; a failure of the pair, the next runner.
/// - `402`: a payment the gateway has not made; the pair leaves rotation for payment.
/// - `409 runner price changed` (`livepeer/node`): the price moved under the challenge.
/// - `5xx`: a failure; `2xx`: success; other `4xx`: the app's answer to the client.
pub(crate) fn classify(status: u16, body: &[u8]) -> Outcome {
    let lower = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    match status {
        200..=299 => Outcome::Success,
        429 | 503 => Outcome::CapacityRefused(status),
        409 if lower.contains("capacity") => Outcome::CapacityRefused(status),
        409 if lower.contains("price") => Outcome::Refused(Refusal::PriceUnavailable, excerpt(body)),
        404 if gone(&lower) => Outcome::ServerError(status, excerpt(body)),
        402 => Outcome::Refused(Refusal::PaymentRequired, excerpt(body)),
        400..=499 => Outcome::ClientError(status),
        500..=599 => Outcome::ServerError(status, excerpt(body)),
        _ => Outcome::BadStatus(status),
    }
}

/// Whether a 404's body is the orchestrator's (the runner or session is gone) rather than
/// the app's own 404.
fn gone(lower: &str) -> bool {
    ["runner not found", "runner is not ready", "session not found", "unknown session", "runner not ready"]
        .iter()
        .any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_before_any_byte_fail_over_and_the_apps_own_answers_are_relayed() {
        // go-livepeer (text) and livepeer/node (JSON) say "full" differently.
        assert_eq!(classify(503, b"no capacity available for runner\n"), Outcome::CapacityRefused(503));
        assert_eq!(classify(409, br#"{"error":"runner at capacity"}"#), Outcome::CapacityRefused(409));
        assert!(matches!(classify(404, b"runner not found\n"), Outcome::ServerError(404, _)));
        assert!(matches!(classify(404, br#"{"error":"runner not found"}"#), Outcome::ServerError(404, _)));
        assert!(matches!(classify(502, b"bad gateway"), Outcome::ServerError(502, _)));
        assert!(matches!(classify(402, b"{}"), Outcome::Refused(Refusal::PaymentRequired, _)));
        assert!(matches!(
            classify(409, br#"{"error":"runner price changed; request a new payment challenge"}"#),
            Outcome::Refused(Refusal::PriceUnavailable, _)
        ));
        for o in [classify(503, b""), classify(404, b"runner not found"), classify(502, b""), classify(402, b"")] {
            assert!(o.retryable(), "{o:?}");
        }
        // The app's own answers.
        assert_eq!(classify(200, b"ok"), Outcome::Success);
        assert_eq!(classify(404, b"no such page"), Outcome::ClientError(404));
        assert_eq!(classify(422, b"bad input"), Outcome::ClientError(422));
        assert_eq!(classify(409, b"conflict in the app"), Outcome::ClientError(409));
        assert_eq!(classify(302, b""), Outcome::BadStatus(302));
    }
}
