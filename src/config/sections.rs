//! The sections of the configuration file and their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An orchestrator listed in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticOrchestrator {
    /// URL or host:port.
    pub url: String,
    /// Capabilities declared for it (pairs are created at start).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The operator's label for it ("fast", "l40s-frankfurt"), shown beside its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest job body accepted from a client (it is buffered for failover).
    pub max_body_bytes: usize,
    /// Largest answer accepted from an orchestrator.
    pub max_response_bytes: usize,
    /// Largest admin API JSON body.
    pub admin_body_bytes: usize,
    /// A client must send its request headers within this time (slow-client bound).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A client must send its whole body within this time (slow-client bound); 408 otherwise.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Jobs in flight at once, gateway-wide (waiting in a queue included); a job takes its
    /// place once its body is read, and past the limit it gets an immediate 503 `overloaded`
    /// (with `Retry-After: 1`).
    pub max_inflight_jobs: usize,
    /// Connections each listener queues before accepting them (the kernel caps it at
    /// `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Bytes of job bodies the gateway holds at once (read, waiting in a queue or being sent);
    /// past it a job gets a fast 503 `body-budget-exhausted`. At least `max_body_bytes`.
    pub body_budget_bytes: usize,
    /// Share of `body_budget_bytes` (percent) that the bodies of one client (IP address) may
    /// hold at once; past it that client's job gets a 429 `body-share-exhausted`. 100 turns it
    /// off (behind a proxy every client has the proxy's address). A share is never less than
    /// `max_body_bytes`.
    pub body_budget_client_percent: u8,
    /// Once `body_rate_grace` has passed, a body must keep arriving at this many bytes a second
    /// on average over every `body_rate_grace`, or its job gets a 408 `body-too-slow` (0: no
    /// minimum; `body_read_timeout` still bounds the whole body).
    pub body_min_bytes_per_sec: u64,
    /// The grace period before the minimum rate applies, and the window it is measured over.
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Duration,
    /// Bytes of orchestrators' answers the gateway holds at once, over every job (being read or
    /// relayed to the client). An answer with a `Content-Length` waits for its room before it is
    /// read; a job whose answer finds no room within its time gets a 503
    /// `answer-budget-exhausted`. At least `max_response_bytes`.
    pub answer_budget_bytes: usize,
    /// Jobs that may wait in one capability's queue for a free slot when every orchestrator is
    /// at its concurrency limit (a capability's `queue_depth` overrides it; 0: no queue, a
    /// full pool answers 503 at once).
    pub queue_depth: u32,
    /// Live streams at once, gateway-wide; past it a start gets 503 `stream-limit`.
    pub max_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_response_bytes: 64 << 20,
            admin_body_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(30),
            max_inflight_jobs: 4096,
            body_budget_bytes: 256 << 20,
            body_budget_client_percent: 50,
            body_min_bytes_per_sec: 16 << 10,
            body_rate_grace: Duration::from_secs(5),
            answer_budget_bytes: byoc_actors::protocol::client::DEFAULT_ANSWER_BUDGET,
            listen_backlog: 4096,
            queue_depth: byoc_actors::policy::DEFAULT_QUEUE_DEPTH,
            max_streams: 1000,
        }
    }
}

/// Routing and upstream knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Token refresh period per pair (jittered).
    #[serde(with = "humantime_serde")]
    pub token_refresh: Duration,
    /// Token refresh period while the orchestrator reports no free slot, and the first retry
    /// after a failed probe.
    #[serde(with = "humantime_serde")]
    pub token_retry: Duration,
    /// Failed probes in a row back off, doubling from `token_retry`, up to this.
    #[serde(with = "humantime_serde")]
    pub token_retry_max: Duration,
    /// Token probes a second spent discovering capability names no orchestrator is known to
    /// offer (each such name probes every orchestrator once); past it such jobs get a 503.
    pub discovery_probes_per_sec: u32,
    /// Capabilities registered because a job asked for them and some orchestrator offered them
    /// (not declared by an orchestrator, not in `[capabilities]`, no policy), at most; past
    /// it a job naming another such capability gets a 503 `capability-limit`.
    pub max_discovered_capabilities: usize,
    /// Bound on one token probe.
    #[serde(with = "humantime_serde")]
    pub token_timeout: Duration,
    /// How long the first request for a capability nobody has offered yet waits for probes.
    #[serde(with = "humantime_serde")]
    pub probe_wait: Duration,
    /// Verify orchestrator TLS certificates (they are usually self-signed: off).
    pub tls_verify: bool,
    /// Bound on connect plus TLS handshake.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Upstream connections per HTTP worker.
    pub max_connections: usize,
    /// Bound on waiting for an actor's answer on the request path.
    #[serde(with = "humantime_serde")]
    pub mailbox_timeout: Duration,
    /// How often dirty pair scores are written to the store.
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            token_refresh: Duration::from_secs(10),
            token_retry: Duration::from_secs(1),
            token_retry_max: Duration::from_secs(30),
            discovery_probes_per_sec: 200,
            max_discovered_capabilities: 128,
            token_timeout: Duration::from_secs(1),
            probe_wait: Duration::from_millis(1500),
            tls_verify: false,
            connect_timeout: Duration::from_secs(2),
            max_connections: 4096,
            mailbox_timeout: Duration::from_secs(2),
            flush_every: Duration::from_secs(5),
        }
    }
}

/// The AI-runner paths (`POST /text-to-image`, ...): see [`crate::http::runner`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runner {
    /// `timeout_seconds` of the jobs built for these paths (their clients send no header).
    pub timeout_seconds: u64,
    /// Runner path (without `/`) -> capability it routes to, for paths whose capability has
    /// another name (`text-to-image = "sdxl-turbo"`). Paths not listed route to the
    /// capability of their own name. Keys must be runner paths: the aliases rename, they do
    /// not add routes.
    pub aliases: BTreeMap<String, String>,
}

impl Default for Runner {
    fn default() -> Self {
        Self { timeout_seconds: crate::http::runner::DEFAULT_TIMEOUT_SECONDS, aliases: BTreeMap::new() }
    }
}

/// Orchestrator discovery (go-livepeer's `-orchWebhookUrl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    /// Webhook answering `GET` with `[{"address": "https://host:port", "score": 1.0}, ...]`;
    /// also `--orch-webhook-url` / `BYOC_GATEWAY_ORCH_WEBHOOK_URL`. Unset: no discovery.
    pub webhook_url: Option<String>,
    /// Period between fetches.
    #[serde(with = "humantime_serde")]
    pub webhook_refresh: Duration,
    /// Bound on one fetch, body included.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Headers sent with every fetch, e.g. `{ Authorization = "Bearer ..." }` for a private
    /// registry. File only (no flag or environment variable, so they stay out of process
    /// listings); their values are never logged or shown by the admin API.
    pub webhook_headers: BTreeMap<String, String>,
}

impl Default for Discovery {
    fn default() -> Self {
        // go-livepeer's values: refreshed every minute, 3 s timeout.
        Self {
            webhook_url: None,
            webhook_refresh: Duration::from_secs(60),
            webhook_timeout: Duration::from_secs(3),
            webhook_headers: BTreeMap::new(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// Default filter when `RUST_LOG` is unset (tracing-subscriber EnvFilter syntax).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self { format: "text".into(), level: "info".into() }
    }
}

/// The status page's plots: a bounded in-memory history of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct History {
    /// Time between samples.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// How far back the plots reach (at most 1,000 samples are kept).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Pairs with plots, the first in (orchestrator id, capability) order.
    pub max_pairs: usize,
}

impl Default for History {
    fn default() -> Self {
        let d = byoc_actors::history::HistorySettings::default();
        Self { period: d.period, window: d.window, max_pairs: d.max_pairs }
    }
}

impl History {
    /// The settings the supervisor samples with.
    pub fn settings(&self) -> byoc_actors::history::HistorySettings {
        byoc_actors::history::HistorySettings { period: self.period, window: self.window, max_pairs: self.max_pairs }
    }
}

/// The gateway's Ethereum identity (go-livepeer `-ethKeystorePath` / `-ethPassword`). Without
/// a key the gateway runs offchain: zero address, empty signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerConfig {
    /// Signing scheme the orchestrators verify: only `v0` (go-livepeer master) exists.
    pub scheme: String,
    /// Keystore v3 JSON file holding the key (the file itself, not its directory).
    pub keystore: Option<PathBuf>,
    /// File whose contents (less one trailing newline) are the keystore's password.
    pub password_file: Option<PathBuf>,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self { scheme: "v0".into(), keystore: None, password_file: None }
    }
}

/// Spend limits on payments (go-livepeer's `-maxTicketEV`, `-maxTotalEV`, `-depositMultiplier`
/// equivalents, and an hourly cap), checked before a ticket is signed, and the back-off of an
/// orchestrator that refuses jobs it was paid for. Used only with a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Payments {
    /// Largest expected value of one ticket, in wei (go-livepeer: 3e12).
    pub max_ticket_ev: f64,
    /// Largest expected value of one payment, in wei (go-livepeer: 2e13).
    pub max_total_ev: f64,
    /// Largest face value of a ticket, in wei (the deposit divided by go-livepeer's
    /// `-depositMultiplier`), as a decimal string (default 10^16, 0.01 ETH).
    pub max_face_value: String,
    /// Largest expected value paid per capability over any hour, in wei (default 10^15).
    pub max_ev_per_capability_hour: f64,
    /// How long an orchestrator that refused a job after taking a payment is out of rotation
    /// the first time; the wait doubles with each such refusal until it answers a job.
    #[serde(with = "humantime_serde")]
    pub refusal_backoff: Duration,
    /// The longest that wait grows.
    #[serde(with = "humantime_serde")]
    pub refusal_backoff_max: Duration,
}

impl Default for Payments {
    fn default() -> Self {
        let limits = byoc_actors::payment::Limits::default();
        Self {
            max_ticket_ev: limits.max_ticket_ev,
            max_total_ev: limits.max_total_ev,
            max_face_value: byoc_actors::payment::DEFAULT_MAX_FACE_VALUE.to_string(),
            max_ev_per_capability_hour: byoc_actors::payment::DEFAULT_MAX_EV_PER_CAPABILITY_HOUR,
            refusal_backoff: limits.refusal_backoff,
            refusal_backoff_max: limits.refusal_backoff_max,
        }
    }
}
