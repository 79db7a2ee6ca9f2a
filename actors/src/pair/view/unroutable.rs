//! Why a pair cannot take a job: one field-less list of reasons, named once, used by the 503
//! body, the admin API and the gauges alike.

use super::*;

/// Why a pair cannot take a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unroutable {
    /// Its orchestrator was removed.
    Retired,
    /// Its orchestrator is disabled (draining) by the operator.
    Disabled,
    /// Its first token probe has not finished yet.
    TokenPending,
    /// It never offered the capability.
    NotOffered,
    /// The last token probe failed.
    TokenUnavailable,
    /// The token reports no capacity.
    NoCapacity,
    /// A connect failure on this orchestrator; waiting for a re-probe.
    NodeUnreachable,
    /// A job sent here came back to a gateway it had passed (its token's `service_addr` leads
    /// back to a gateway).
    RoutingLoop,
    /// The orchestrator refused a job's credentials (`400 Could not verify job creds`).
    CredentialsRejected,
    /// The orchestrator could not price the capability (`400 Could not get job price`).
    PriceUnavailable,
    /// The advertised price is over the capability's ceiling.
    PriceOverCeiling,
    /// A priced capability without enough credit: the token's balance is under 60 s x price,
    /// or the orchestrator answered `400 Insufficient balance for request`. The gateway does
    /// not pay yet.
    PaymentRequired,
    /// The configured warm-up job has not succeeded yet.
    WarmingUp,
    /// The orchestrator refused for capacity with none of the gateway's jobs there; out until
    /// the instant (about one of its jobs' time).
    CapacityBackoff(Instant),
    /// The breaker is open (until the instant, if known) or out of trial permits.
    BreakerOpen(Option<Instant>),
}

impl Unroutable {
    /// The name of every reason, in the order of [`PairView::routable_at`]'s checks (gauges list
    /// each, at zero when no pair has it).
    pub const NAMES: [&'static str; 15] = [
        "retired",
        "disabled",
        "token-pending",
        "not-offered",
        "token-unavailable",
        "node-unreachable",
        "routing-loop",
        "credentials-rejected",
        "price-unavailable",
        "no-capacity",
        "price-over-ceiling",
        "payment-required",
        "warming-up",
        "capacity-backoff",
        "breaker-open",
    ];

    /// Stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unroutable::Retired => "retired",
            Unroutable::Disabled => "disabled",
            Unroutable::TokenPending => "token-pending",
            Unroutable::NotOffered => "not-offered",
            Unroutable::TokenUnavailable => "token-unavailable",
            Unroutable::NoCapacity => "no-capacity",
            Unroutable::NodeUnreachable => "node-unreachable",
            Unroutable::RoutingLoop => "routing-loop",
            Unroutable::CredentialsRejected => "credentials-rejected",
            Unroutable::PriceUnavailable => "price-unavailable",
            Unroutable::PriceOverCeiling => "price-over-ceiling",
            Unroutable::PaymentRequired => "payment-required",
            Unroutable::WarmingUp => "warming-up",
            Unroutable::CapacityBackoff(_) => "capacity-backoff",
            Unroutable::BreakerOpen(_) => "breaker-open",
        }
    }
}

impl From<Refusal> for Unroutable {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RoutingLoop => Unroutable::RoutingLoop,
            Refusal::CredentialsRejected => Unroutable::CredentialsRejected,
            Refusal::PaymentRequired => Unroutable::PaymentRequired,
            Refusal::PriceUnavailable => Unroutable::PriceUnavailable,
        }
    }
}
