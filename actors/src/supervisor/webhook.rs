//! How the supervisor applies a discovery webhook fetch ([`WebhookFetched`]) to the registry
//! and reports it ([`GetDiscovery`]).
//!
//! The change is worked out against the supervisor's own registry (the truth the boards
//! follow), not against the backend, and written as a delta (`Registry::apply_webhook`): so a
//! fetch that races an admin add or delete changes only what it means to change, and a fetch
//! whose write failed is simply worked out again at the next tick. In a fleet every replica
//! with the webhook configured applies the same delta; the writes are idempotent (a URL is
//! registered once, an entry removed once).

use std::collections::HashSet;

use actix::prelude::*;

use super::Supervisor;
use crate::discovery::webhook::{WebhookError, WebhookList};
use crate::discovery::{DiscoveryReport, FetchReport, GetDiscovery, WebhookFetched};
use crate::metrics as m;
use crate::orchestrator::{Label, Listed, Orchestrator, OrchestratorId, Source};
use crate::registry::Change;
use crate::store::WebhookDelta;

/// How many skipped-entry reasons one log line carries (the admin view has them all).
const LOGGED_SKIPS: usize = 5;

impl Supervisor {
    fn webhook_orchestrators(&self) -> usize {
        self.orchestrators.values().filter(|o| o.source == Source::Webhook).count()
    }

    /// Records a fetch in the report, the metrics and the log.
    fn record_fetch(&mut self, report: FetchReport) {
        let webhook_orchestrators = self.webhook_orchestrators();
        let d = &mut self.discovery;
        metrics::counter!(m::DISCOVERY_FETCHES_TOTAL, "outcome" => report.outcome).increment(1);
        match &report.error {
            None => {
                d.fetches_ok += 1;
                d.last_success_at_unix_ms = Some(report.at_unix_ms);
                if !report.skipped.is_empty() {
                    let first: Vec<String> = report
                        .skipped
                        .iter()
                        .take(LOGGED_SKIPS)
                        .map(|s| format!("#{}: {}", s.index, s.reason))
                        .collect();
                    tracing::warn!(skipped = report.skipped.len(), first = ?first,
                        "discovery: invalid webhook entries skipped; the others applied");
                }
                if !report.added.is_empty() || !report.removed.is_empty() {
                    tracing::info!(added = ?report.added, removed = ?report.removed, listed = report.listed,
                        "discovery: webhook orchestrators changed");
                }
            }
            Some(e) => {
                d.fetches_failed += 1;
                tracing::warn!(outcome = report.outcome, error = %e,
                    "discovery: webhook fetch failed; nothing changed, retrying at the next tick");
            }
        }
        d.last_fetch = Some(report);
        d.orchestrators = webhook_orchestrators;
        metrics::gauge!(m::DISCOVERY_ORCHESTRATORS).set(d.orchestrators as f64);
    }
}

fn failed(msg: &WebhookFetched, e: &WebhookError, list: Option<&WebhookList>) -> FetchReport {
    FetchReport {
        at_unix_ms: msg.fetched_at_unix_ms,
        took_ms: msg.took_ms,
        outcome: e.outcome(),
        error: Some(e.to_string()),
        listed: list.map_or(0, |l| l.entries.len()),
        skipped: list.map(|l| l.skipped.clone()).unwrap_or_default(),
        added: Vec::new(),
        removed: Vec::new(),
        registered_elsewhere: Vec::new(),
    }
}

impl Handler<WebhookFetched> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: WebhookFetched, _ctx: &mut Self::Context) -> Self::Result {
        let list = match &msg.result {
            Ok(list) => list.clone(),
            Err(e) => {
                let report = failed(&msg, e, None);
                self.record_fetch(report);
                return Box::pin(actix::fut::ready(()));
            }
        };
        let listed: HashSet<&str> = list.entries.iter().map(|l| l.url.as_str()).collect();
        let by_url: std::collections::HashMap<&str, &Orchestrator> =
            self.orchestrators.values().map(|o| (o.url.as_str(), o)).collect();
        let add: Vec<Listed> = list.entries.iter().filter(|l| !by_url.contains_key(l.url.as_str())).cloned().collect();
        // A label the webhook gives its own entry wins; an entry listed without one keeps its own.
        let relabel: Vec<(OrchestratorId, Label)> = list
            .entries
            .iter()
            .filter_map(|l| {
                let o = by_url.get(l.url.as_str()).filter(|o| o.source == Source::Webhook)?;
                let label = l.label.as_ref().filter(|label| o.label.as_ref() != Some(*label))?;
                Some((o.id.clone(), label.clone()))
            })
            .collect();
        let registered_elsewhere: Vec<String> = list
            .entries
            .iter()
            .filter(|l| by_url.get(l.url.as_str()).is_some_and(|o| o.source != Source::Webhook))
            .map(|l| l.url.clone())
            .collect();
        let remove: Vec<OrchestratorId> = self
            .orchestrators
            .values()
            .filter(|o| o.source == Source::Webhook && !listed.contains(o.url.as_str()))
            .map(|o| o.id.clone())
            .collect();
        let mut report = FetchReport {
            at_unix_ms: msg.fetched_at_unix_ms,
            took_ms: msg.took_ms,
            outcome: "ok",
            error: None,
            listed: list.entries.len(),
            skipped: list.skipped.clone(),
            added: Vec::new(),
            removed: Vec::new(),
            registered_elsewhere,
        };
        if add.is_empty() && remove.is_empty() && relabel.is_empty() {
            self.record_fetch(report);
            return Box::pin(actix::fut::ready(()));
        }
        let fut = self.registry.apply_webhook(add, relabel, remove);
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| match res {
            Ok(committed) => {
                report.added = committed
                    .value
                    .added
                    .iter()
                    .filter(|o| o.source == Source::Webhook)
                    .map(|o| o.url.clone())
                    .collect();
                report.removed = committed.value.removed.iter().map(|o| o.url.clone()).collect();
                Box::pin(act.applied(committed, delta_changes, ctx).map(move |_, act, _| act.record_fetch(report)))
                    as ResponseActFuture<Self, ()>
            }
            Err(e) => {
                let report = failed(&msg, &WebhookError::Registry(e.to_string()), Some(&list));
                act.record_fetch(report);
                Box::pin(actix::fut::ready(()))
            }
        }))
    }
}

/// The registry changes of a webhook delta.
fn delta_changes(delta: &WebhookDelta) -> Vec<Change> {
    delta
        .removed
        .iter()
        .map(|o| Change::OrchestratorRemoved(o.id.clone()))
        .chain(delta.added.iter().chain(&delta.relabelled).map(|o| Change::Orchestrator(o.clone())))
        .collect()
}

impl Handler<GetDiscovery> for Supervisor {
    type Result = MessageResult<GetDiscovery>;

    fn handle(&mut self, _msg: GetDiscovery, _ctx: &mut Self::Context) -> Self::Result {
        let mut report: DiscoveryReport = self.discovery.clone();
        // Admin adds, deletes and reloads change the count between fetches.
        report.orchestrators = self.webhook_orchestrators();
        MessageResult(report)
    }
}
