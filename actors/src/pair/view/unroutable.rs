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
    /// The operator tripped its breaker (`POST /admin/pairs/{o}/{c}/trip`): out until reset,
    /// or until the instant when the trip was given a duration.
    ForcedOpen(Option<Instant>),
    /// Its first token probe has not finished yet.
    TokenPending,
    /// The last token probe could not reach the orchestrator (connect refused, timeout).
    Unreachable,
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
    /// The orchestrator refused the gateway's payment tickets.
    PaymentRejected,
    /// The advertised price is over the capability's ceiling.
    PriceOverCeiling,
    /// A priced capability without enough credit: the token's balance is under 60 s x price,
    /// or the orchestrator answered `400 Insufficient balance for request`, and the gateway
    /// cannot pay there (no signing key, or a token without ticket params).
    PaymentRequired,
    /// The token's ticket params are over the operator's payment limits (`[payments]`).
    PaymentOverLimit,
    /// The token's ticket params are unfit to pay against (an empty `recipient_rand_hash`, no
    /// expiry, a negative round, ...): its last error names the field.
    TicketParamsInvalid,
    /// It refused a job after taking a payment (a taker, or a refusal of the tickets it took):
    /// out until the instant, whatever its tokens say; the wait doubles with each such refusal
    /// until it answers a job.
    PaymentBackoff(Instant),
    /// The configured warm-up job has not succeeded yet.
    WarmingUp,
    /// The orchestrator refused for capacity with none of the gateway's jobs there; out until
    /// the instant (about one of its jobs' time).
    CapacityBackoff(Instant),
    /// The breaker is open (until the instant, if known) or out of trial permits.
    BreakerOpen(Option<Instant>),
}

/// The name of an [`Unroutable`] without its data: one field-less, exhaustive list of the
/// reasons a pair is out of rotation. The 503 body counts pairs per reason, the admin API
/// names a pair's, the gauges list every one (at zero when no pair has it), all from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// [`Unroutable::Retired`].
    Retired,
    /// [`Unroutable::Disabled`].
    Disabled,
    /// [`Unroutable::ForcedOpen`].
    ForcedOpen,
    /// [`Unroutable::TokenPending`].
    TokenPending,
    /// [`Unroutable::Unreachable`].
    Unreachable,
    /// [`Unroutable::NotOffered`].
    NotOffered,
    /// [`Unroutable::TokenUnavailable`].
    TokenUnavailable,
    /// [`Unroutable::NodeUnreachable`].
    NodeUnreachable,
    /// [`Unroutable::RoutingLoop`].
    RoutingLoop,
    /// [`Unroutable::CredentialsRejected`].
    CredentialsRejected,
    /// [`Unroutable::PriceUnavailable`].
    PriceUnavailable,
    /// [`Unroutable::PaymentRejected`].
    PaymentRejected,
    /// [`Unroutable::NoCapacity`].
    NoCapacity,
    /// [`Unroutable::PriceOverCeiling`].
    PriceOverCeiling,
    /// [`Unroutable::PaymentRequired`].
    PaymentRequired,
    /// [`Unroutable::PaymentOverLimit`].
    PaymentOverLimit,
    /// [`Unroutable::TicketParamsInvalid`].
    TicketParamsInvalid,
    /// [`Unroutable::PaymentBackoff`].
    PaymentBackoff,
    /// [`Unroutable::WarmingUp`].
    WarmingUp,
    /// [`Unroutable::CapacityBackoff`].
    CapacityBackoff,
    /// [`Unroutable::BreakerOpen`].
    BreakerOpen,
}

impl Reason {
    /// Every reason, in the order of [`PairView::routable_at`]'s checks.
    pub(crate) const ALL: [Reason; 21] = [
        Reason::Retired,
        Reason::Disabled,
        Reason::ForcedOpen,
        Reason::TokenPending,
        Reason::Unreachable,
        Reason::NotOffered,
        Reason::TokenUnavailable,
        Reason::NodeUnreachable,
        Reason::RoutingLoop,
        Reason::CredentialsRejected,
        Reason::PriceUnavailable,
        Reason::PaymentRejected,
        Reason::NoCapacity,
        Reason::PriceOverCeiling,
        Reason::PaymentRequired,
        Reason::PaymentOverLimit,
        Reason::TicketParamsInvalid,
        Reason::PaymentBackoff,
        Reason::WarmingUp,
        Reason::CapacityBackoff,
        Reason::BreakerOpen,
    ];

    /// Stable kebab-case name (API field, metric label).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Retired => "retired",
            Reason::Disabled => "disabled",
            Reason::ForcedOpen => "forced-open",
            Reason::TokenPending => "token-pending",
            Reason::Unreachable => "unreachable",
            Reason::NotOffered => "not-offered",
            Reason::TokenUnavailable => "token-unavailable",
            Reason::NodeUnreachable => "node-unreachable",
            Reason::RoutingLoop => "routing-loop",
            Reason::CredentialsRejected => "credentials-rejected",
            Reason::PriceUnavailable => "price-unavailable",
            Reason::PaymentRejected => "payment-rejected",
            Reason::NoCapacity => "no-capacity",
            Reason::PriceOverCeiling => "price-over-ceiling",
            Reason::PaymentRequired => "payment-required",
            Reason::PaymentOverLimit => "payment-over-limit",
            Reason::TicketParamsInvalid => "ticket-params-invalid",
            Reason::PaymentBackoff => "payment-backoff",
            Reason::WarmingUp => "warming-up",
            Reason::CapacityBackoff => "capacity-backoff",
            Reason::BreakerOpen => "breaker-open",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Unroutable {
    /// Which reason this is, without its data.
    pub(crate) fn reason(self) -> Reason {
        match self {
            Unroutable::Retired => Reason::Retired,
            Unroutable::Disabled => Reason::Disabled,
            Unroutable::ForcedOpen(_) => Reason::ForcedOpen,
            Unroutable::TokenPending => Reason::TokenPending,
            Unroutable::Unreachable => Reason::Unreachable,
            Unroutable::NotOffered => Reason::NotOffered,
            Unroutable::TokenUnavailable => Reason::TokenUnavailable,
            Unroutable::NoCapacity => Reason::NoCapacity,
            Unroutable::NodeUnreachable => Reason::NodeUnreachable,
            Unroutable::RoutingLoop => Reason::RoutingLoop,
            Unroutable::CredentialsRejected => Reason::CredentialsRejected,
            Unroutable::PriceUnavailable => Reason::PriceUnavailable,
            Unroutable::PaymentRejected => Reason::PaymentRejected,
            Unroutable::PriceOverCeiling => Reason::PriceOverCeiling,
            Unroutable::PaymentRequired => Reason::PaymentRequired,
            Unroutable::PaymentOverLimit => Reason::PaymentOverLimit,
            Unroutable::TicketParamsInvalid => Reason::TicketParamsInvalid,
            Unroutable::PaymentBackoff(_) => Reason::PaymentBackoff,
            Unroutable::WarmingUp => Reason::WarmingUp,
            Unroutable::CapacityBackoff(_) => Reason::CapacityBackoff,
            Unroutable::BreakerOpen(_) => Reason::BreakerOpen,
        }
    }

    /// Stable kebab-case name ([`Reason::as_str`]).
    pub(crate) fn as_str(self) -> &'static str {
        self.reason().as_str()
    }
}

impl From<Refusal> for Unroutable {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RoutingLoop => Unroutable::RoutingLoop,
            Refusal::CredentialsRejected => Unroutable::CredentialsRejected,
            Refusal::PaymentRequired => Unroutable::PaymentRequired,
            Refusal::PriceUnavailable => Unroutable::PriceUnavailable,
            Refusal::PaymentRejected => Unroutable::PaymentRejected,
        }
    }
}
