//! How one upstream call ended, as far as a pair's health is concerned: the one place where
//! an orchestrator's answer (or the lack of one) is classified. The router decides from it
//! whether to relay or fail over; the pair actor decides from it what to hold against the
//! pair.

use std::time::Duration;

use crate::policy::Effective;
use crate::protocol::client::{excerpt, UpstreamError};

/// An orchestrator's refusal that is not the client's fault and says nothing about the
/// orchestrator's health: the job fails over, and the pair leaves rotation with this reason
/// until its token changes or an operator resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// A 508 Loop Detected: the job came back to a gateway it had passed (this one, through an
    /// orchestrator whose `service_addr` points at it, or another).
    RoutingLoop,
    /// `400 Could not verify job creds`: the orchestrator does not accept the gateway's job
    /// signature (for example one built from a fork expecting another scheme).
    CredentialsRejected,
    /// `400 Insufficient balance for request`: a priced capability and not enough credit.
    PaymentRequired,
    /// `400 Could not get job price`: the orchestrator cannot price the capability.
    PriceUnavailable,
    /// The orchestrator refused the gateway's payment (`Could not parse payment`,
    /// `invalid ticket ...`, `invalid recipientRand ...`, `TicketParams expired`).
    PaymentRejected,
}

impl Refusal {
    /// A refusal for payment: for want of balance, or of the tickets sent.
    pub(crate) fn is_payment(self) -> bool {
        matches!(self, Refusal::PaymentRequired | Refusal::PaymentRejected)
    }

    /// Stable name: the failure class of the attempt and the pair's unroutable reason.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::RoutingLoop => "routing-loop",
            Refusal::CredentialsRejected => "credentials-rejected",
            Refusal::PaymentRequired => "payment-required",
            Refusal::PriceUnavailable => "price-unavailable",
            Refusal::PaymentRejected => "payment-rejected",
        }
    }

    /// The refusal a 400 answer's body names, if it is one of go-livepeer's orchestrator
    /// answers that are not the client's fault (`job_orchestrator.go`; text/plain, matched at
    /// the start of the body as `http.Error` writes it).
    fn of_400(body: &[u8]) -> Option<Self> {
        let text = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
        let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
        let text = &text[start..];
        [
            (&b"Could not verify job creds"[..], Refusal::CredentialsRejected),
            (b"Insufficient balance for request", Refusal::PaymentRequired),
            (b"Could not get job price", Refusal::PriceUnavailable),
            (b"Could not parse payment", Refusal::PaymentRejected),
            (b"invalid ticket", Refusal::PaymentRejected),
            (b"invalid recipientRand", Refusal::PaymentRejected),
            (b"TicketParams expired", Refusal::PaymentRejected),
        ]
        .into_iter()
        .find(|(prefix, _)| text.starts_with(prefix))
        .map(|(_, r)| r)
    }
}

/// How one upstream call ended, as far as the pair's health is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx answer honouring the response contract.
    Success,
    /// A 4xx answer: the client's fault, relayed, not held against the pair.
    ClientError(u16),
    /// A 503 or 429: the orchestrator is busy. Retried elsewhere; the pair backs off without
    /// being treated as broken.
    CapacityRefused(u16),
    /// A refusal that is not the client's fault (a 508 loop, or one of go-livepeer's 400s
    /// that concern the gateway: credentials, payment, price), with the body excerpt. The job
    /// fails over; the pair leaves rotation.
    Refused(Refusal, String),
    /// A 5xx whose body says the GPU ran out of memory.
    OutOfMemory(String),
    /// Another 5xx, with a body excerpt.
    ServerError(u16, String),
    /// A 2xx with another content type than the capability's contract (the one received).
    ContractMismatch(String),
    /// A status no job can end with: informational (1xx, a `101 Switching Protocols`
    /// included), a redirect (3xx: the gateway follows none and relays no `Location`), or
    /// outside 100-599. The orchestrator answered garbage: a failure, never relayed.
    BadStatus(u16),
    /// No usable answer.
    Failed(UpstreamError),
    /// Abandoned by the gateway after this long: far past what the pair normally takes while
    /// another pair had a free slot. The job fails over; the pair is charged a timeout.
    Stuck(Duration),
}

/// Body fragments by which GPU out-of-memory errors are recognised (PyTorch, CUDA, ONNX
/// runtime, TensorFlow).
const OOM_MARKERS: &[&str] = &["out of memory", "outofmemoryerror", "cuda_error_out_of_memory", "oom when allocating"];

impl Outcome {
    /// Stable class name (metrics label, attempt reports).
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError(_) => "http-4xx",
            Outcome::CapacityRefused(_) => "capacity",
            Outcome::Refused(r, _) => r.as_str(),
            Outcome::OutOfMemory(_) => "oom",
            Outcome::ServerError(..) => "http-5xx",
            Outcome::ContractMismatch(_) => "contract-mismatch",
            Outcome::BadStatus(_) => "bad-status",
            Outcome::Failed(e) => e.class(),
            Outcome::Stuck(_) => "stuck",
        }
    }

    /// Whether this is one of go-livepeer's 400 answers that are not the client's fault.
    pub(crate) fn refused_400(&self) -> bool {
        matches!(self, Outcome::Refused(r, _) if *r != Refusal::RoutingLoop)
    }

    /// Whether the job should go to another orchestrator.
    pub(crate) fn retryable(&self) -> bool {
        !matches!(self, Outcome::Success | Outcome::ClientError(_))
    }

    /// Classifies an HTTP answer against the capability's policy. Only a 2xx or a 4xx can be
    /// relayed; a 5xx is a failure; any other status is [`Outcome::BadStatus`].
    pub(crate) fn classify(status: u16, content_type: Option<&str>, body: &[u8], policy: &Effective) -> Self {
        match status {
            200..=299 if policy.contract_mismatch(content_type) => {
                Outcome::ContractMismatch(content_type.unwrap_or("(none)").to_string())
            }
            200..=299 => Outcome::Success,
            429 | 503 => Outcome::CapacityRefused(status),
            508 => Outcome::Refused(Refusal::RoutingLoop, excerpt(body)),
            400 => match Refusal::of_400(body) {
                Some(r) => Outcome::Refused(r, excerpt(body)),
                None => Outcome::ClientError(status),
            },
            401..=499 => Outcome::ClientError(status),
            500..=599 => {
                let text = excerpt(body);
                let lower = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
                if OOM_MARKERS.iter().any(|m| lower.contains(m)) {
                    Outcome::OutOfMemory(text)
                } else {
                    Outcome::ServerError(status, text)
                }
            }
            _ => Outcome::BadStatus(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CapabilityPolicy;

    #[test]
    fn classify_recognises_every_class() {
        let plain = CapabilityPolicy::default().effective();
        let json = CapabilityPolicy { response_content_type: Some("application/json".into()), ..Default::default() }
            .effective();
        assert_eq!(Outcome::classify(200, Some("image/png"), b"", &plain), Outcome::Success);
        assert_eq!(Outcome::classify(200, Some("application/json"), b"{}", &json), Outcome::Success);
        assert_eq!(
            Outcome::classify(200, Some("text/plain"), b"x", &json),
            Outcome::ContractMismatch("text/plain".into())
        );
        assert_eq!(Outcome::classify(422, None, b"bad", &plain), Outcome::ClientError(422));
        assert_eq!(
            Outcome::classify(503, None, b"No capacity available for capability", &plain),
            Outcome::CapacityRefused(503)
        );
        assert_eq!(Outcome::classify(429, None, b"", &plain), Outcome::CapacityRefused(429));
        assert!(matches!(
            Outcome::classify(500, None, b"CUDA out of memory. Tried to allocate 2.00 GiB", &plain),
            Outcome::OutOfMemory(_)
        ));
        assert!(matches!(
            Outcome::classify(500, None, b"torch.OutOfMemoryError: ...", &plain),
            Outcome::OutOfMemory(_)
        ));
        assert!(matches!(Outcome::classify(502, None, b"bad gateway", &plain), Outcome::ServerError(502, _)));
        assert_eq!(Outcome::classify(508, None, b"", &plain), Outcome::Refused(Refusal::RoutingLoop, String::new()));
        assert!(Outcome::Refused(Refusal::RoutingLoop, String::new()).retryable());
        assert!(!Outcome::Success.retryable());
        assert!(!Outcome::ClientError(404).retryable());
        assert!(Outcome::CapacityRefused(503).retryable());
        assert!(Outcome::ContractMismatch(String::new()).retryable());
        assert!(Outcome::Stuck(Duration::from_millis(300)).retryable());
        assert_eq!(Outcome::Stuck(Duration::ZERO).class(), "stuck");
    }

    #[test]
    fn only_2xx_and_4xx_can_be_relayed_and_other_non_5xx_statuses_are_bad() {
        let plain = CapabilityPolicy::default().effective();
        let json = CapabilityPolicy { response_content_type: Some("application/json".into()), ..Default::default() }
            .effective();
        for status in [0, 100, 101, 103, 199, 300, 302, 304, 399, 600, 999] {
            let o = Outcome::classify(status, Some("application/json"), b"{}", &json);
            assert_eq!(o, Outcome::BadStatus(status));
            assert!(o.retryable(), "{status}");
            assert_eq!(o.class(), "bad-status");
            // Not a contract question either: the status alone is wrong.
            assert_eq!(Outcome::classify(status, Some("text/plain"), b"", &json), Outcome::BadStatus(status));
            assert_eq!(Outcome::classify(status, None, b"", &plain), Outcome::BadStatus(status));
        }
        for status in [200, 204, 299] {
            assert_eq!(Outcome::classify(status, None, b"", &plain), Outcome::Success);
        }
        assert!(matches!(Outcome::classify(599, None, b"", &plain), Outcome::ServerError(599, _)));
        assert_eq!(Outcome::classify(499, None, b"", &plain), Outcome::ClientError(499));
    }

    #[test]
    fn orchestrator_400s_that_are_not_the_clients_fault_are_refusals() {
        let plain = CapabilityPolicy::default().effective();
        for (body, refusal) in [
            (&b"Could not verify job creds\n"[..], Refusal::CredentialsRejected),
            (b"Insufficient balance for request\n", Refusal::PaymentRequired),
            (b"  Could not get job price\n", Refusal::PriceUnavailable),
        ] {
            let o = Outcome::classify(400, Some("text/plain; charset=utf-8"), body, &plain);
            assert!(matches!(&o, Outcome::Refused(r, _) if *r == refusal), "{o:?}");
            assert!(o.retryable());
            assert_eq!(o.class(), refusal.as_str());
        }
        // The client's own mistakes stay client errors, relayed.
        for body in [&b"Unable to unmarshal job request details err=..."[..], b"no timeout_seconds set", b""] {
            assert_eq!(Outcome::classify(400, None, body, &plain), Outcome::ClientError(400));
        }
        // Only a 400 carries these refusals.
        assert_eq!(Outcome::classify(403, None, b"Could not verify job creds", &plain), Outcome::ClientError(403));
    }
}
