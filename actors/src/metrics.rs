//! Metric names (one place, `byoc_gateway_` prefix) and their descriptions.
//!
//! Labels are bounded: `capability` is only ever a capability some orchestrator has offered
//! (anything else is reported as `unknown`; [`CapabilityLabel`] is the only value it takes),
//! `outcome`/`class`/`state`/`reason` come from fixed sets in the code. A capability an
//! operator forgets stops being exported ([`hidden`]).

pub mod hidden;
mod label;
pub(crate) mod pairs;

pub use hidden::hide_capability;
pub use label::CapabilityLabel;

/// Jobs answered, by `capability` and `outcome` (`success`, `client-error`, or an error code).
pub(crate) const REQUESTS_TOTAL: &str = "byoc_gateway_requests_total";
/// End-to-end job duration in seconds, by `capability`.
pub(crate) const REQUEST_DURATION_SECONDS: &str = "byoc_gateway_request_duration_seconds";
/// Upstream attempts, by `capability` and `result` (`success`, `http-4xx`, `http-5xx`, or an
/// upstream error class).
pub(crate) const ATTEMPTS_TOTAL: &str = "byoc_gateway_attempts_total";
/// Upstream call duration in seconds, by `capability`.
pub(crate) const UPSTREAM_DURATION_SECONDS: &str = "byoc_gateway_upstream_duration_seconds";
/// Pairs by breaker `state` (`closed`, `open`, `half_open`); refreshed every second.
pub(crate) const PAIRS: &str = "byoc_gateway_pairs";
/// Routable pairs; refreshed every second.
pub(crate) const PAIRS_ROUTABLE: &str = "byoc_gateway_pairs_routable";
/// Breaker transitions, by `from`, `to` and `reason`.
pub(crate) const BREAKER_TRANSITIONS_TOTAL: &str = "byoc_gateway_breaker_transitions_total";
/// Token probes, by `result` (`ok`, or a failure class).
pub(crate) const TOKEN_PROBES_TOTAL: &str = "byoc_gateway_token_probes_total";
/// Pair actor restarts by the supervisor.
pub(crate) const ACTOR_RESTARTS_TOTAL: &str = "byoc_gateway_actor_restarts_total";
/// Registered orchestrators.
pub(crate) const ORCHESTRATORS: &str = "byoc_gateway_orchestrators";
/// Messages that could not be delivered in time or at all (mailbox full, timed out or closed),
/// by `actor`.
pub(crate) const MAILBOX_ERRORS_TOTAL: &str = "byoc_gateway_mailbox_errors_total";

/// Retries (attempts after the first), by `capability`.
pub(crate) const RETRIES_TOTAL: &str = "byoc_gateway_retries_total";
/// Retries refused because the capability's retry budget was spent, by `capability`.
pub(crate) const RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "byoc_gateway_retry_budget_exhausted_total";
/// First answers of new or recovered pairs, by `slow` (`true` when over the threshold).
pub(crate) const COLD_STARTS_TOTAL: &str = "byoc_gateway_cold_starts_total";
/// Pairs out of rotation, by `reason` (`price-over-ceiling`, `breaker-open`, ...);
/// refreshed every second.
pub(crate) const PAIRS_UNROUTABLE: &str = "byoc_gateway_pairs_unroutable";
/// Node-level connect failures signalled to an orchestrator's sibling pairs.
pub(crate) const NODE_UNREACHABLE_TOTAL: &str = "byoc_gateway_node_unreachable_total";

/// Discovery webhook fetches, by `outcome` (`ok`, `connect`, `timeout`, `transport`,
/// `http-status`, `too-large`, `bad-json`, `too-many-entries`, `no-valid-entry`, `registry`).
pub(crate) const DISCOVERY_FETCHES_TOTAL: &str = "byoc_gateway_discovery_fetches_total";
/// Orchestrators registered with source `webhook`; set after every fetch.
pub(crate) const DISCOVERY_ORCHESTRATORS: &str = "byoc_gateway_discovery_orchestrators";

/// Bytes the store takes on disk; refreshed every ten seconds.
pub(crate) const STORE_SIZE_BYTES: &str = "byoc_gateway_store_size_bytes";
/// Duration of store flushes (fsync) in seconds.
pub(crate) const STORE_FLUSH_SECONDS: &str = "byoc_gateway_store_flush_duration_seconds";
/// Times the store reopened its database after a disk error.
pub(crate) const STORE_REOPENS: &str = "byoc_gateway_store_reopens_total";
/// Token probes spent surveying which orchestrators offer a registered capability.
pub(crate) const SURVEY_PROBES_TOTAL: &str = "byoc_gateway_survey_probes_total";
/// Fast-path answers not accounted because a pair's tally was full (its actor lagged).
pub(crate) const TALLY_DROPPED_TOTAL: &str = "byoc_gateway_tally_dropped_total";

/// Jobs waiting in a capability's queue for a free slot, by `capability`.
pub(crate) const QUEUE_DEPTH: &str = "byoc_gateway_queue_depth";
/// Time queued jobs waited before they got a slot, in seconds, by `capability`.
pub const QUEUE_WAIT_SECONDS: &str = "byoc_gateway_queue_wait_seconds";
/// Jobs that joined or were turned away from a capability's queue, by `capability` and
/// `outcome` (`dispatched`, `timeout`, `full`, `displaced`, `abandoned`).
pub(crate) const QUEUE_OUTCOMES_TOTAL: &str = "byoc_gateway_queue_outcomes_total";
/// Concurrency limit summed over a capability's routable pairs, by `capability`; refreshed
/// every second.
pub(crate) const SLOTS: &str = "byoc_gateway_slots";
/// Jobs in flight on a capability's pairs, by `capability`; refreshed every second.
pub(crate) const SLOTS_INFLIGHT: &str = "byoc_gateway_slots_inflight";
/// Attempts abandoned as stuck (far past the pair's measured latency while another pair had a
/// free slot), by `capability`.
pub(crate) const STUCK_ATTEMPTS_TOTAL: &str = "byoc_gateway_stuck_attempts_total";
/// Selections that chose to wait for a slot of a faster, full pair rather than take a much
/// slower free one (`scoreboard::worth_waiting`).
pub(crate) const WAITED_FOR_FASTER_TOTAL: &str = "byoc_gateway_waited_for_faster_total";

/// Jobs for a capability name nobody is known to offer, refused (503) because the probes for
/// such names were spent (`routing.discovery_probes_per_sec`).
pub const DISCOVERY_RATE_LIMITED_TOTAL: &str = "byoc_gateway_discovery_rate_limited_total";
/// Bytes of job bodies the gateway holds now (being read, waiting or being sent).
pub const BODY_BYTES: &str = "byoc_gateway_body_bytes";
/// Jobs refused with 503 because the body budget (`limits.body_budget_bytes`) was spent.
pub const BODY_BUDGET_REFUSED_TOTAL: &str = "byoc_gateway_body_budget_refused_total";

/// Jobs refused with 429 because their client (IP address) already held its share of the
/// body budget (`limits.body_budget_client_percent`).
pub const BODY_SHARE_REFUSED_TOTAL: &str = "byoc_gateway_body_share_refused_total";
/// Jobs refused with 408 because their body arrived slower than `limits.body_min_bytes_per_sec`.
pub const BODY_TOO_SLOW_TOTAL: &str = "byoc_gateway_body_too_slow_total";
/// Bytes of orchestrators' answers the gateway holds now (being read or relayed).
pub const ANSWER_BYTES: &str = "byoc_gateway_answer_bytes";
/// Jobs ended with 503 because the answer budget (`limits.answer_budget_bytes`) had no room for
/// their answer within their time.
pub const ANSWER_BUDGET_REFUSED_TOTAL: &str = "byoc_gateway_answer_budget_refused_total";

/// Jobs refused with 508 because they had already passed through this gateway.
pub const ROUTING_LOOPS_TOTAL: &str = "byoc_gateway_routing_loops_total";

/// Jobs refused at once because the gateway was at `limits.max_inflight_jobs`.
pub const JOBS_SHED_TOTAL: &str = "byoc_gateway_jobs_shed_total";

/// Jobs for a capability some orchestrator offers, refused (503) because
/// `routing.max_discovered_capabilities` capabilities were registered by discovery already.
pub(crate) const CAPABILITY_LIMIT_TOTAL: &str = "byoc_gateway_capability_limit_total";

/// Payment tickets sent, by `capability`.
pub(crate) const TICKETS_SENT_TOTAL: &str = "byoc_gateway_tickets_sent_total";
/// Expected value of the tickets sent, in wei, by `capability`.
pub(crate) const TICKET_EV_SENT_WEI_TOTAL: &str = "byoc_gateway_ticket_ev_sent_wei_total";

/// The operator's cap on payments per capability per hour (`payments.max_ev_per_capability_hour`,
/// wei); absent when there is no cap. Alerts compare the hour's spend with it.
pub const PAYMENT_EV_HOUR_LIMIT_WEI: &str = "byoc_gateway_payment_ev_per_capability_hour_limit_wei";

/// Exports the payment cap per capability and hour (`None`: no cap, no series).
pub fn set_payment_limit(max_ev_per_capability_hour: Option<f64>) {
    if let Some(limit) = max_ev_per_capability_hour {
        metrics::gauge!(PAYMENT_EV_HOUR_LIMIT_WEI).set(limit);
    }
}
/// Whether this replica's copy of the registry may miss changes made on other replicas
/// (etcd unreachable, or started from the local cache): 1 or 0.
pub(crate) const REGISTRY_STALE: &str = "byoc_gateway_registry_stale";
/// For how long the registry copy has been stale, in seconds (0 when fresh).
pub(crate) const REGISTRY_STALE_SECONDS: &str = "byoc_gateway_registry_stale_seconds";
/// The registry revision this replica has applied (etcd only).
pub(crate) const REGISTRY_REVISION: &str = "byoc_gateway_registry_revision";
/// Time from a registry write's commit (its writer's clock) to this replica applying it, in
/// seconds (etcd only).
pub(crate) const REGISTRY_APPLY_SECONDS: &str = "byoc_gateway_registry_apply_duration_seconds";
/// Registry writes, by `outcome` (`committed`, `conflict`, `not-applied`, `unknown`).
pub(crate) const REGISTRY_WRITES_TOTAL: &str = "byoc_gateway_registry_writes_total";
/// Times the registry watch was re-established, by `how` (`resumed` from the last revision,
/// `resynced` after a compaction or at start).
pub(crate) const REGISTRY_WATCH_RESTARTS_TOTAL: &str = "byoc_gateway_registry_watch_restarts_total";
/// Replicas of the fleet registered in etcd (this one included), as last listed.
pub(crate) const FLEET_REPLICAS: &str = "byoc_gateway_fleet_replicas";
/// Live Runner runners held, by `state` (`fresh`, `stale`, `expired`, `unlisted`); refreshed
/// every second.
pub(crate) const RUNNERS: &str = "byoc_gateway_runners";
/// Live Runner discovery fetches, by `result` (`ok`, `unsupported`, `status`, `bad-document`,
/// an upstream failure class, `signer-ok`, `signer-failed`).
pub(crate) const RUNNER_DISCOVERY_TOTAL: &str = "byoc_gateway_runner_discovery_total";
/// Discovery records left out (invalid, foreign URL, over the bounds).
pub(crate) const RUNNER_RECORDS_SKIPPED_TOTAL: &str = "byoc_gateway_runner_records_skipped_total";

/// Live Runner app calls and session reservations, by `app`, `kind` (`call`, `session`) and
/// `outcome` (`success`, `client-error`, `server-error`, or the gateway's error code).
pub(crate) const APP_REQUESTS_TOTAL: &str = "byoc_gateway_app_requests_total";
/// Duration of app calls (to the answer's head) and reservations, by `app` and `kind`.
pub(crate) const APP_REQUEST_DURATION_SECONDS: &str = "byoc_gateway_app_request_duration_seconds";
/// Live Runner sessions the gateway holds, by `app`.
pub(crate) const APP_SESSIONS: &str = "byoc_gateway_app_sessions";
/// Sessions ended, by `app` and `reason` (`stopped`, `idle`, `shutdown`, `runner-failed`).
pub(crate) const APP_SESSIONS_ENDED_TOTAL: &str = "byoc_gateway_app_sessions_ended_total";

/// Top-ups of metered Live Runner sessions, by `app` and `result` (`ok`, `refused`, `gone`).
pub(crate) const APP_TOP_UPS_TOTAL: &str = "byoc_gateway_app_top_ups_total";

/// Histogram buckets in seconds for request and upstream durations: 1 ms to 2 min.
pub const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Registers the description of every metric with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS_TOTAL, "Jobs answered, by capability and outcome");
    describe_histogram!(REQUEST_DURATION_SECONDS, Unit::Seconds, "End-to-end job duration");
    describe_counter!(ATTEMPTS_TOTAL, "Upstream attempts, by capability and result");
    describe_histogram!(UPSTREAM_DURATION_SECONDS, Unit::Seconds, "Upstream call duration");
    describe_gauge!(PAIRS, "Pair actors by breaker state");
    describe_gauge!(PAIRS_ROUTABLE, "Pair actors that can take a job now");
    describe_counter!(BREAKER_TRANSITIONS_TOTAL, "Breaker transitions by from, to and reason");
    describe_counter!(TOKEN_PROBES_TOTAL, "Token probes by result");
    describe_counter!(ACTOR_RESTARTS_TOTAL, "Pair actor restarts by the supervisor");
    describe_gauge!(ORCHESTRATORS, "Registered orchestrators");
    describe_counter!(MAILBOX_ERRORS_TOTAL, "Messages not delivered in time, by actor");
    describe_counter!(RETRIES_TOTAL, "Retries (attempts after the first), by capability");
    describe_counter!(RETRY_BUDGET_EXHAUSTED_TOTAL, "Retries refused by the retry budget, by capability");
    describe_counter!(COLD_STARTS_TOTAL, "First answers of new or recovered pairs, by slow");
    describe_gauge!(PAIRS_UNROUTABLE, "Pairs out of rotation, by reason");
    describe_counter!(NODE_UNREACHABLE_TOTAL, "Connect failures signalled to sibling pairs");
    describe_counter!(DISCOVERY_FETCHES_TOTAL, "Discovery webhook fetches, by outcome");
    describe_gauge!(DISCOVERY_ORCHESTRATORS, "Orchestrators registered by the discovery webhook");
    describe_gauge!(STORE_SIZE_BYTES, Unit::Bytes, "Bytes the store takes on disk");
    describe_histogram!(STORE_FLUSH_SECONDS, Unit::Seconds, "Store flush (fsync) duration");
    describe_counter!(STORE_REOPENS, "Times the store reopened its database after a disk error (writes resumed)");
    describe_counter!(
        SURVEY_PROBES_TOTAL,
        "Token probes spent asking orchestrators whether they offer a registered capability they do not declare"
    );
    describe_counter!(JOBS_SHED_TOTAL, "Jobs refused with 503 at the in-flight job limit");
    describe_counter!(
        CAPABILITY_LIMIT_TOTAL,
        "Jobs refused: routing.max_discovered_capabilities capabilities registered by discovery already"
    );
    describe_counter!(
        DISCOVERY_RATE_LIMITED_TOTAL,
        "Jobs for unknown capability names refused: discovery probes spent"
    );
    describe_gauge!(BODY_BYTES, Unit::Bytes, "Bytes of job bodies held now");
    describe_counter!(BODY_BUDGET_REFUSED_TOTAL, "Jobs refused with 503: the body budget was spent");
    describe_counter!(
        BODY_SHARE_REFUSED_TOTAL,
        "Jobs refused with 429: their client held its share of the body budget"
    );
    describe_counter!(BODY_TOO_SLOW_TOTAL, "Jobs refused with 408: their body arrived slower than the minimum rate");
    describe_gauge!(ANSWER_BYTES, Unit::Bytes, "Bytes of orchestrators' answers held now");
    describe_counter!(
        ANSWER_BUDGET_REFUSED_TOTAL,
        "Jobs ended with 503: no room in the answer budget for their answer"
    );
    describe_counter!(ROUTING_LOOPS_TOTAL, "Jobs refused with 508: they had already passed through this gateway");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting for a free slot, by capability");
    describe_histogram!(QUEUE_WAIT_SECONDS, Unit::Seconds, "Time queued jobs waited for a slot");
    describe_counter!(QUEUE_OUTCOMES_TOTAL, "Queued jobs by capability and outcome");
    describe_gauge!(SLOTS, "Concurrency limit summed over a capability's routable pairs");
    describe_gauge!(SLOTS_INFLIGHT, "Jobs in flight on a capability's pairs");
    describe_counter!(STUCK_ATTEMPTS_TOTAL, "Attempts abandoned as stuck, by capability");
    describe_counter!(WAITED_FOR_FASTER_TOTAL, "Selections that waited for a faster pair's slot");
    describe_gauge!(PAYMENT_EV_HOUR_LIMIT_WEI, "Cap on the expected value paid per capability over an hour (wei)");
    describe_gauge!(RUNNERS, "Live Runner runners held, by discovery state");
    describe_counter!(RUNNER_DISCOVERY_TOTAL, "Live Runner discovery fetches, by result");
    describe_counter!(RUNNER_RECORDS_SKIPPED_TOTAL, "Live Runner discovery records left out");
    describe_counter!(APP_REQUESTS_TOTAL, "Live Runner app calls and session reservations, by app, kind and outcome");
    describe_histogram!(
        APP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Live Runner call (to the answer's head) and reservation duration"
    );
    describe_gauge!(APP_SESSIONS, "Live Runner sessions held, by app");
    describe_counter!(APP_TOP_UPS_TOTAL, "Top-ups of metered Live Runner sessions, by app and result");
    describe_counter!(APP_SESSIONS_ENDED_TOTAL, "Live Runner sessions ended, by app and reason");
    describe_counter!(TALLY_DROPPED_TOTAL, "Fast-path answers dropped from accounting (pair tally full)");
    describe_gauge!(STREAMS_ACTIVE, "Live streams, by capability");
    describe_counter!(STREAM_STARTS_TOTAL, "Stream starts, by capability and outcome");
    describe_counter!(STREAM_ENDS_TOTAL, "Streams that ended, by capability and reason");
    describe_counter!(STREAM_SWAPS_TOTAL, "Orchestrator swaps of streams, by capability and reason");
    describe_counter!(STREAM_EVENTS_TOTAL, "Events from stream runners, by capability and kind");
    describe_counter!(STREAM_PAYMENTS_TOTAL, "Stream payment rounds, by capability and result");
    describe_histogram!(
        STREAM_SEGMENT_SECONDS,
        Unit::Seconds,
        "Time a media segment took through the gateway (first byte in to last byte out), by direction"
    );
    describe_histogram!(STREAM_DURATION_SECONDS, Unit::Seconds, "Stream lifetimes, by capability");
    describe_gauge!(REGISTRY_STALE, "1 while this replica's registry copy may miss other replicas' changes");
    describe_gauge!(REGISTRY_STALE_SECONDS, Unit::Seconds, "How long the registry copy has been stale");
    describe_gauge!(REGISTRY_REVISION, "Registry revision this replica has applied (etcd)");
    describe_histogram!(REGISTRY_APPLY_SECONDS, Unit::Seconds, "Registry write commit to apply on this replica");
    describe_counter!(REGISTRY_WRITES_TOTAL, "Registry writes by outcome");
    describe_counter!(REGISTRY_WATCH_RESTARTS_TOTAL, "Registry watch re-established, by how");
    describe_gauge!(FLEET_REPLICAS, "Replicas registered in the fleet");
}

/// Registers, at zero, every series whose labels are known at start, so dashboards show 0
/// rather than "no data" until the first event. Gauges are registered by adding 0, never set:
/// the recorder is process-wide, and setting one would overwrite a live value. Per-capability series are registered by
/// [`register_capability`] when a capability's board opens (an orchestrator offers it).
pub fn register_at_zero() {
    for name in [
        JOBS_SHED_TOTAL,
        BODY_BUDGET_REFUSED_TOTAL,
        BODY_SHARE_REFUSED_TOTAL,
        BODY_TOO_SLOW_TOTAL,
        ANSWER_BUDGET_REFUSED_TOTAL,
        DISCOVERY_RATE_LIMITED_TOTAL,
        ROUTING_LOOPS_TOTAL,
        NODE_UNREACHABLE_TOTAL,
        STORE_REOPENS,
        SURVEY_PROBES_TOTAL,
        TALLY_DROPPED_TOTAL,
        CAPABILITY_LIMIT_TOTAL,
        WAITED_FOR_FASTER_TOTAL,
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::counter!(ACTOR_RESTARTS_TOTAL, "actor" => "pair").increment(0);
    for actor in ["supervisor", "pair", "store"] {
        metrics::counter!(MAILBOX_ERRORS_TOTAL, "actor" => actor).increment(0);
    }
    for slow in ["true", "false"] {
        metrics::counter!(COLD_STARTS_TOTAL, "slow" => slow).increment(0);
    }
    metrics::counter!(TOKEN_PROBES_TOTAL, "result" => "ok").increment(0);
    metrics::counter!(DISCOVERY_FETCHES_TOTAL, "outcome" => "ok").increment(0);
    // The breaker's usual transitions (the rarer reasons appear with their first event).
    for (from, to, reason) in [
        ("closed", "open", "consecutive-failures"),
        ("closed", "open", "failure-rate"),
        ("open", "half_open", "backoff-elapsed"),
        ("half_open", "closed", "trials-succeeded"),
        ("half_open", "open", "trial-failed"),
    ] {
        metrics::counter!(BREAKER_TRANSITIONS_TOTAL, "from" => from, "to" => to, "reason" => reason).increment(0);
    }
    for outcome in ["committed", "conflict", "not-applied", "unknown"] {
        metrics::counter!(REGISTRY_WRITES_TOTAL, "outcome" => outcome).increment(0);
    }
    for how in ["resumed", "resynced"] {
        metrics::counter!(REGISTRY_WATCH_RESTARTS_TOTAL, "how" => how).increment(0);
    }
    let _ = metrics::histogram!(REGISTRY_APPLY_SECONDS);
    for name in [
        DISCOVERY_ORCHESTRATORS,
        STORE_SIZE_BYTES,
        BODY_BYTES,
        ANSWER_BYTES,
        ORCHESTRATORS,
        PAIRS_ROUTABLE,
        REGISTRY_STALE,
        REGISTRY_STALE_SECONDS,
        REGISTRY_REVISION,
        FLEET_REPLICAS,
    ] {
        metrics::gauge!(name).increment(0.0);
    }
    for direction in ["in", "out"] {
        let _ = metrics::histogram!(STREAM_SEGMENT_SECONDS, "direction" => direction);
    }
}

/// Registers, at zero, the series of one offered capability (its jobs, attempts, retries,
/// queue and slots), so they exist before its first job.
pub(crate) fn register_capability(label: &CapabilityLabel) {
    hidden::show_name(label.as_str());
    let c = label.value();
    metrics::counter!(REQUESTS_TOTAL, "capability" => c.clone(), "outcome" => "success").increment(0);
    metrics::counter!(ATTEMPTS_TOTAL, "capability" => c.clone(), "result" => "success").increment(0);
    for name in [
        RETRIES_TOTAL,
        RETRY_BUDGET_EXHAUSTED_TOTAL,
        STUCK_ATTEMPTS_TOTAL,
        TICKETS_SENT_TOTAL,
        TICKET_EV_SENT_WEI_TOTAL,
    ] {
        metrics::counter!(name, "capability" => c.clone()).increment(0);
    }
    for outcome in ["dispatched", "timeout", "full", "displaced", "abandoned"] {
        metrics::counter!(QUEUE_OUTCOMES_TOTAL, "capability" => c.clone(), "outcome" => outcome).increment(0);
    }
    for name in [QUEUE_DEPTH, SLOTS, SLOTS_INFLIGHT] {
        metrics::gauge!(name, "capability" => c.clone()).increment(0.0);
    }
    // Registered without a sample: rendered with zero counts.
    for name in [REQUEST_DURATION_SECONDS, UPSTREAM_DURATION_SECONDS, QUEUE_WAIT_SECONDS, STREAM_DURATION_SECONDS] {
        let _ = metrics::histogram!(name, "capability" => c.clone());
    }
    // Streams of the capability.
    metrics::gauge!(STREAMS_ACTIVE, "capability" => c.clone()).increment(0.0);
    metrics::counter!(STREAM_STARTS_TOTAL, "capability" => c.clone(), "outcome" => "started").increment(0);
    metrics::counter!(STREAM_ENDS_TOTAL, "capability" => c.clone(), "reason" => "stopped").increment(0);
    metrics::counter!(STREAM_EVENTS_TOTAL, "capability" => c.clone(), "kind" => "status").increment(0);
    metrics::counter!(STREAM_PAYMENTS_TOTAL, "capability" => c.clone(), "result" => "sent").increment(0);
    for reason in STREAM_SWAP_REASONS {
        metrics::counter!(STREAM_SWAPS_TOTAL, "capability" => c.clone(), "reason" => *reason).increment(0);
    }
}

/// Metric handles of the common outcomes of one capability's jobs, registered once: looking a
/// metric up by name and labels costs allocations and hashing, which the hot path pays per
/// job otherwise. Rarer outcomes (failures, refusals) use the macros directly.
pub(crate) struct JobMetrics {
    /// `requests_total{outcome="success"}`.
    pub(crate) requests_success: metrics::Counter,
    /// `requests_total{outcome="client-error"}`.
    pub(crate) requests_client_error: metrics::Counter,
    /// `request_duration_seconds`.
    pub(crate) request_duration: metrics::Histogram,
    /// `attempts_total{result="success"}`.
    pub(crate) attempts_success: metrics::Counter,
    /// `upstream_duration_seconds`.
    pub(crate) upstream_duration: metrics::Histogram,
}

impl JobMetrics {
    fn new(label: &CapabilityLabel) -> Self {
        let c = label.value();
        Self {
            requests_success: metrics::counter!(REQUESTS_TOTAL, "capability" => c.clone(), "outcome" => "success"),
            requests_client_error: metrics::counter!(REQUESTS_TOTAL, "capability" => c.clone(), "outcome" => "client-error"),
            request_duration: metrics::histogram!(REQUEST_DURATION_SECONDS, "capability" => c.clone()),
            attempts_success: metrics::counter!(ATTEMPTS_TOTAL, "capability" => c.clone(), "result" => "success"),
            upstream_duration: metrics::histogram!(UPSTREAM_DURATION_SECONDS, "capability" => c),
        }
    }
}

/// One HTTP worker's [`JobMetrics`] per label value, so its size is bounded like the label
/// values.
#[derive(Default, Clone)]
pub struct JobMetricsCache(
    std::rc::Rc<std::cell::RefCell<std::collections::HashMap<CapabilityLabel, std::rc::Rc<JobMetrics>>>>,
);

impl JobMetricsCache {
    /// The handles of `label`, registered on first use.
    pub(crate) fn get(&self, label: &CapabilityLabel) -> std::rc::Rc<JobMetrics> {
        if let Some(h) = self.0.borrow().get(label) {
            return h.clone();
        }
        let h = std::rc::Rc::new(JobMetrics::new(label));
        self.0.borrow_mut().insert(label.clone(), h.clone());
        h
    }
}

/// Live streams, by `capability`.
pub(crate) const STREAMS_ACTIVE: &str = "byoc_gateway_streams_active";
/// Stream starts, by `capability` and `outcome` (`started`, or an error code).
pub(crate) const STREAM_STARTS_TOTAL: &str = "byoc_gateway_stream_starts_total";
/// Streams that ended, by `capability` and `reason`.
pub(crate) const STREAM_ENDS_TOTAL: &str = "byoc_gateway_stream_ends_total";
/// Orchestrator swaps of streams, by `capability` and `reason` ([`STREAM_SWAP_REASONS`]).
pub(crate) const STREAM_SWAPS_TOTAL: &str = "byoc_gateway_stream_swaps_total";
/// The `reason` values of [`STREAM_SWAPS_TOTAL`] (`stream::SwapReason`'s names; a unit test
/// there keeps the two lists equal).
pub(crate) const STREAM_SWAP_REASONS: &[&str] = &[
    "events-timeout",
    "channel-gone",
    "channel-closed",
    "channel-failing",
    "ingress-backed-up",
    "no-output",
    "payment-refused",
    "start-refused",
];
/// Events from stream runners, by `capability` and `kind` (`status`, `other`, `invalid`).
pub(crate) const STREAM_EVENTS_TOTAL: &str = "byoc_gateway_stream_events_total";
/// Stream payment rounds, by `capability` and `result`.
pub(crate) const STREAM_PAYMENTS_TOTAL: &str = "byoc_gateway_stream_payments_total";
/// Time a media segment took through the gateway, from its first byte in to its last byte out,
/// by `direction` (`in`: client to orchestrator, `out`: orchestrator to client).
pub(crate) const STREAM_SEGMENT_SECONDS: &str = "byoc_gateway_stream_segment_duration_seconds";
/// Stream lifetimes in seconds, by `capability` (buckets [`STREAM_DURATION_BUCKETS`]).
pub const STREAM_DURATION_SECONDS: &str = "byoc_gateway_stream_duration_seconds";

/// Histogram buckets in seconds for stream lifetimes: 1 s to a day.
pub const STREAM_DURATION_BUCKETS: &[f64] =
    &[1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0];
