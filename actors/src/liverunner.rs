//! Live Runner apps: the routing gateway the Live Runner network does not have.
//!
//! In go-livepeer's Live Runner design (PR #3938) orchestrators expose `GET /discovery` and
//! `/apps/{runner}/...`, and the "gateway" is a client library that tries runners one by one.
//! Here a runner of an orchestrator is a pair like any other, (runner, app), fed by discovery
//! instead of token probes, with the BYOC pair's health model (breaker, latency, slots, price
//! ceiling), selected on the BYOC scoreboard, paid with the payments core, and its sessions
//! owned by the gateway. The protocol: `docs/live-runner.md`.
//!
//! # Layout
//! - [`app`]: app names; [`record`]: discovery documents; [`price`]: runner prices and units;
//!   [`freshness`]: when records are fresh, stale or expired (pure, tested).
//! - [`boards`]: the app boards (BYOC scoreboards keyed by app) and the app-name index.
//! - [`policy`]: per-app ceilings, spend limits and routing policy.
//! - [`runners`]: `Runners`, the discovery actor that keeps one pair actor per runner.
//! - `fetch`, `offer`: fetching a document; a record as a pair's offer.
//! - [`router`]: `AppRouter`, the client side: single-shot calls and sessions, through
//!   `dispatch` (select, admit, account: the BYOC steps on the app boards), `classify` (the one
//!   place runners' answers are classified, both dialects), [`forward`] (headers, streaming);
//!   [`sessions`]: the sessions the gateway owns and always releases; [`error`]: `AppError`.
//! - `pay`: paying a runner with the gateway's key (the payments core); [`remote`]: paying
//!   through a go-livepeer remote signer instead.

pub mod app;
pub mod boards;
mod classify;
mod dispatch;
pub mod error;
mod fetch;
pub mod forward;
pub mod freshness;
mod metrics;
mod offer;
mod pay;
pub mod policy;
pub mod price;
pub mod record;
pub mod remote;
pub mod router;
pub mod runners;
pub mod segment;
pub mod sessions;
pub mod wire;

use std::time::Duration;

pub use app::AppName;
pub use boards::Boards;
pub use dispatch::DispatchSettings;
pub use error::AppError;
pub use policy::{AppPolicies, AppPolicy};
pub use remote::RemoteSigner;
pub use router::AppRouter;
pub use runners::Runners;
pub use sessions::{SessionSettings, Sessions};

use crate::pair::probe::Cadence;

/// A remote signer used for discovery (`GET /discover-orchestrators`).
#[derive(Debug, Clone)]
pub struct SignerDiscovery {
    /// Its base URL (`http(s)://host:port`).
    pub url: String,
    /// Headers sent with each request (go-livepeer's `-remoteSignerHeaders`); values secret.
    pub headers: crate::discovery::webhook::WebhookHeaders,
}

/// How discovery runs.
#[derive(Debug, Clone)]
pub struct LiveRunnerSettings {
    /// An orchestrator's discovery is fetched this often while it answers (jittered).
    pub refresh: Duration,
    /// ... this soon after a failure (doubling up to `retry_max`), or when a runner has no
    /// free slot.
    pub retry: Duration,
    /// Longest wait between failing fetches.
    pub retry_max: Duration,
    /// Bound on one fetch (go-livepeer: 2 s).
    pub timeout: Duration,
    /// Largest discovery answer read (go-livepeer: 1 MiB).
    pub max_document_bytes: usize,
    /// Records of an orchestrator whose discovery fails are kept (stale) this long after its
    /// last success, then expire.
    pub grace: Duration,
    /// A runner unlisted or expired this long is retired.
    pub forget_after: Duration,
    /// How often the registry is re-read.
    pub registry_sync: Duration,
    /// Most distinct apps held (each is a board and a metric label).
    pub max_apps: usize,
    /// Whether the gateway can pay priced runners (a key, or a remote signer).
    pub payable: bool,
    /// A remote signer to find more orchestrators with, if any.
    pub signer_discovery: Option<SignerDiscovery>,
    /// How often the signer's list is read.
    pub signer_refresh: Duration,
}

impl Default for LiveRunnerSettings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            retry: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            max_document_bytes: record::MAX_DOCUMENT_BYTES,
            grace: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
            registry_sync: Duration::from_secs(2),
            max_apps: 1024,
            payable: false,
            signer_discovery: None,
            signer_refresh: Duration::from_secs(60),
        }
    }
}

impl LiveRunnerSettings {
    /// The fetch cadence.
    pub(crate) fn cadence(&self) -> Cadence {
        Cadence { refresh: self.refresh, retry: self.retry, retry_max: self.retry_max }
    }
}
