//! Settings every pair actor shares (per-capability knobs come from its policy).

use super::*;

/// Settings shared by every pair actor (per-capability knobs come from its policy).
#[derive(Clone)]
pub struct PairSettings {
    /// Token refresh period while healthy (jittered by +-20 %).
    pub token_refresh: Duration,
    /// Token refresh period while the orchestrator reports no free slot, and the first retry
    /// after a failed probe (failures in a row double it, up to `token_retry_max`).
    pub token_retry: Duration,
    /// Longest wait between failing probes.
    pub token_retry_max: Duration,
    /// Bound on one token probe (go-livepeer: 500 ms per request, 1 s overall).
    pub token_timeout: Duration,
    /// Identity used on token probes and warm-up jobs.
    pub signer: SharedSigner,
    /// The gateway's loop marker, sent on warm-up jobs too.
    pub marker: Arc<crate::protocol::via::LoopMarker>,
    /// Peak-EWMA decay.
    pub ewma_decay: Duration,
    /// Latency a pair starts with before it has answered (neutral).
    pub initial_latency_ms: f64,
    /// Extra time past a lease's own deadline before it is presumed lost.
    pub lease_slack: Duration,
    /// Mailbox capacity of each pair actor.
    pub mailbox_capacity: usize,
    /// Token probes in flight at once, over all pairs. At start every pair probes at once:
    /// unbounded, 10,000 pairs made 10,000 simultaneous requests (each with its own request
    /// and connection buffers, up to `max_connections` sockets), a ~190 MB heap peak that the
    /// allocator then kept as RSS. At steady state probes are spread by their jittered timers
    /// and this bound is never reached.
    pub probe_permits: Arc<tokio::sync::Semaphore>,
    /// The operator's payment limits: a priced pair whose ticket params exceed them is out of
    /// rotation (`payment-over-limit`).
    pub payment_limits: crate::payment::Limits,
    /// Pairs whose token probes are failing now: how far their back-off may grow
    /// ([`probe::retry_cap`](super::probe::retry_cap)).
    pub failing_probes: Arc<std::sync::atomic::AtomicUsize>,
    /// The budget warm-up answers are held in (the gateway's answer budget).
    pub answers: Arc<crate::memory::ByteBudget>,
}

/// Default bound on token probes in flight at once (see [`PairSettings::probe_permits`]):
/// enough to probe 10,000 pairs on loopback in about a second, and to keep start-up probing
/// over a WAN (hundreds of ms per first probe) within seconds.
pub const PROBE_CONCURRENCY: usize = 256;

impl Default for PairSettings {
    fn default() -> Self {
        Self {
            token_refresh: Duration::from_secs(10),
            token_retry: Duration::from_secs(1),
            token_retry_max: Duration::from_secs(30),
            token_timeout: Duration::from_secs(1),
            signer: Arc::new(crate::protocol::signer::Offchain),
            marker: Arc::default(),
            ewma_decay: Duration::from_secs(10),
            initial_latency_ms: 100.0,
            lease_slack: Duration::from_secs(5),
            mailbox_capacity: 1024,
            probe_permits: Arc::new(tokio::sync::Semaphore::new(PROBE_CONCURRENCY)),
            payment_limits: crate::payment::Limits::default(),
            failing_probes: Arc::default(),
            answers: crate::protocol::client::ClientSettings::default().answers,
        }
    }
}
