//! `Discovery`: orchestrators listed by a webhook, as go-livepeer's `-orchWebhookUrl`.
//!
//! The actor fetches the webhook at start and then every `refresh` (one fetch at a time: a
//! tick that finds the previous fetch still running is skipped), parses the answer off the
//! supervisor's mailbox, and hands the outcome to the supervisor (any recipient of it) as one
//! [`WebhookFetched`] message. The supervisor owns the registry, so it decides what changes:
//! - URLs listed and not registered by any source are added with source `webhook` (no
//!   declared capabilities: like `--orch-addr` entries, they get a pair for every registered
//!   capability and are probed lazily for any other);
//! - entries with source `webhook` no longer listed are removed; their pairs drain (in-flight
//!   jobs finish), exactly as an admin `DELETE` does;
//! - entries of other sources (flag, file, admin API) are never added, changed or removed by
//!   discovery, whether or not the webhook lists them;
//! - a failed fetch (connect error, timeout, non-200, bad body, store failure) changes nothing
//!   and is retried at the next tick.
//!
//! Webhook entries are persisted like the others, so a restart while the webhook is down still
//! routes to the last known set; the next successful fetch reconciles it.

pub mod webhook;

use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use crate::clock::unix_ms_now;
use crate::metrics as m;
use crate::protocol::client::{build_client, ClientBuildError, ClientSettings};
use webhook::{SkippedEntry, WebhookError, WebhookList};

/// Bound on the supervisor applying one fetch (it includes a store round trip of up to 10 s).
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how often to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// The webhook URL (http or https; path and query allowed).
    pub webhook_url: String,
    /// Period between fetches (go-livepeer: 1 min).
    pub refresh: Duration,
    /// Bound on one fetch, body included (go-livepeer: 3 s).
    pub timeout: Duration,
    /// Headers sent with every fetch (values never shown).
    pub headers: webhook::WebhookHeaders,
}

/// The fetcher.
pub struct Discovery {
    settings: DiscoverySettings,
    client: awc::Client,
    /// Who applies a fetch: the supervisor, which owns the registry.
    supervisor: Recipient<WebhookFetched>,
    in_flight: bool,
}

impl Discovery {
    /// Builds the fetcher; must run on the arbiter it will be started on (it builds an
    /// `awc::Client`). TLS follows `client` (`routing.tls_verify`: off by default).
    pub fn new(
        settings: DiscoverySettings,
        client: &ClientSettings,
        supervisor: Recipient<WebhookFetched>,
    ) -> Result<Self, ClientBuildError> {
        Ok(Self { settings, client: build_client(client)?, supervisor, in_flight: false })
    }

    fn fetch(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            tracing::debug!("discovery: previous webhook fetch still running; tick skipped");
            return;
        }
        self.in_flight = true;
        let (client, url, timeout) = (self.client.clone(), self.settings.webhook_url.clone(), self.settings.timeout);
        let headers = self.settings.headers.clone();
        let supervisor = self.supervisor.clone();
        let fut = async move {
            let started = Instant::now();
            let result = webhook::fetch(&client, &url, &headers, timeout).await;
            let msg = WebhookFetched {
                fetched_at_unix_ms: unix_ms_now(),
                took_ms: started.elapsed().as_millis() as u64,
                result,
            };
            supervisor.send(msg).timeout(APPLY_TIMEOUT).await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _ctx| {
            act.in_flight = false;
            if let Err(e) = res {
                metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "supervisor").increment(1);
                tracing::warn!(error = %e, "discovery: the supervisor did not take the webhook result; retrying next tick");
            }
        }));
    }
}

impl Actor for Discovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(
            webhook = %webhook::redact(&self.settings.webhook_url),
            refresh_ms = self.settings.refresh.as_millis() as u64,
            headers = ?self.settings.headers,
            "discovery started"
        );
        self.fetch(ctx);
        ctx.run_interval(self.settings.refresh, |act, ctx| act.fetch(ctx));
    }
}

/// The outcome of one webhook fetch, for the supervisor to apply (on success) and record.
/// Sent by [`Discovery`]; handled in `supervisor/webhook.rs`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WebhookFetched {
    /// When the answer (or the failure) came (Unix ms).
    pub(crate) fetched_at_unix_ms: u64,
    /// How long the fetch took.
    pub(crate) took_ms: u64,
    /// The parsed list, or why nothing may change.
    pub(crate) result: Result<WebhookList, WebhookError>,
}

/// Discovery as `GET /admin/discovery` shows it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DiscoveryReport {
    /// Whether a webhook is configured.
    pub(crate) enabled: bool,
    /// The webhook URL without query string or credentials.
    pub(crate) webhook_url: Option<String>,
    /// Period between fetches (ms).
    pub(crate) refresh_ms: Option<u64>,
    /// Bound on one fetch (ms).
    pub(crate) timeout_ms: Option<u64>,
    /// Names of the headers sent with each fetch (`discovery.webhook_headers`; values are
    /// never shown).
    pub(crate) header_names: Vec<String>,
    /// Orchestrators registered now with source `webhook`.
    pub(crate) orchestrators: usize,
    /// Successful fetches since start.
    pub(crate) fetches_ok: u64,
    /// Failed fetches since start.
    pub(crate) fetches_failed: u64,
    /// When a fetch last succeeded (Unix ms).
    pub(crate) last_success_at_unix_ms: Option<u64>,
    /// The last fetch, successful or not.
    pub(crate) last_fetch: Option<FetchReport>,
}

impl DiscoveryReport {
    /// The report of a configured, not yet fetched webhook.
    pub fn configured(settings: &DiscoverySettings) -> Self {
        Self {
            enabled: true,
            webhook_url: Some(webhook::redact(&settings.webhook_url)),
            refresh_ms: Some(settings.refresh.as_millis() as u64),
            timeout_ms: Some(settings.timeout.as_millis() as u64),
            header_names: settings.headers.names(),
            ..Self::default()
        }
    }
}

/// One fetch as the admin view shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct FetchReport {
    /// When it ended (Unix ms).
    pub(crate) at_unix_ms: u64,
    /// How long it took (ms).
    pub(crate) took_ms: u64,
    /// `ok`, or why it failed (`connect`, `timeout`, `transport`, `http-status`, `too-large`,
    /// `bad-json`, `too-many-entries`, `no-valid-entry`, `registry`).
    pub(crate) outcome: &'static str,
    /// The failure in words; null on success.
    pub(crate) error: Option<String>,
    /// Usable orchestrator URLs listed.
    pub(crate) listed: usize,
    /// Entries skipped as invalid, with reasons (they did not stop the rest from applying).
    pub(crate) skipped: Vec<SkippedEntry>,
    /// URLs added by this fetch.
    pub(crate) added: Vec<String>,
    /// URLs removed by this fetch (their pairs drain).
    pub(crate) removed: Vec<String>,
    /// URLs listed but already registered by another source (flag, file, admin API), which
    /// discovery leaves alone.
    pub(crate) registered_elsewhere: Vec<String>,
}

/// Asks the supervisor for the discovery report.
#[derive(Message)]
#[rtype(result = "DiscoveryReport")]
pub struct GetDiscovery;
