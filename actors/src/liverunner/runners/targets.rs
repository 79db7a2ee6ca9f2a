//! Which orchestrators' discovery is fetched: the registry's (read from the supervisor every
//! `registry_sync`; the registry is not this actor's), and those a remote signer's
//! `GET /discover-orchestrators` lists when it is configured for discovery. The signer's own
//! runner records can be 25 minutes stale (go-livepeer #3974), so only its addresses are
//! used: each orchestrator is then asked directly.

use super::*;
use crate::liverunner::record;
use crate::orchestrator::Orchestrator;
use crate::supervisor::ListOrchestrators;

impl Runners {
    /// Reads the registry and reconciles the targets with it.
    pub(super) fn sync_registry(&mut self, ctx: &mut Context<Self>) {
        let fut = self.supervisor.send(ListOrchestrators).timeout(Duration::from_secs(5));
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(list) => act.reconcile(&list, ctx),
            Err(e) => tracing::debug!(error = %e, "the supervisor did not list the registry; runners kept as they are"),
        }));
    }

    fn reconcile(&mut self, list: &[Orchestrator], ctx: &mut Context<Self>) {
        let mut seen = std::collections::HashSet::new();
        for o in list {
            seen.insert(o.id.clone());
            // A registry entry replaces the signer's own entry for the same address.
            if let Some(sid) = self.signer_ids.remove(&o.url) {
                self.remove_target(&sid);
            }
            match self.targets.get_mut(&o.id) {
                Some(t) => {
                    if t.enabled != o.enabled {
                        t.enabled = o.enabled;
                        for r in self.runners.values().filter(|r| r.target == o.id) {
                            r.addr.do_send(SetEnabled(o.enabled));
                        }
                    }
                    if t.url != o.url {
                        t.url = o.url.clone();
                    }
                }
                None => self.add_target(o.id.clone(), o.url.clone(), TargetSource::Registry, o.enabled, ctx),
            }
        }
        let removed: Vec<OrchestratorId> = self
            .targets
            .iter()
            .filter(|(id, t)| t.source == TargetSource::Registry && !seen.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in removed {
            tracing::info!(orchestrator = %id, "orchestrator left the registry; its runners retire");
            self.remove_target(&id);
        }
    }

    pub(super) fn add_target(
        &mut self,
        id: OrchestratorId,
        url: String,
        source: TargetSource,
        enabled: bool,
        ctx: &mut Context<Self>,
    ) {
        let t = Target {
            url,
            source,
            enabled,
            freshness: Freshness::default(),
            fetching: false,
            again: false,
            last_fetch: None,
            timer: None,
            any_full: false,
            expired_told: false,
        };
        self.targets.insert(id.clone(), t);
        self.fetch(&id, ctx);
    }

    /// Stops fetching `id` and retires its runners.
    pub(super) fn remove_target(&mut self, id: &OrchestratorId) {
        self.targets.remove(id);
        let runners: Vec<OrchestratorId> =
            self.runners.iter().filter(|(_, r)| &r.target == id).map(|(rid, _)| rid.clone()).collect();
        for rid in &runners {
            self.remove_runner(rid);
        }
        if !runners.is_empty() {
            self.index_apps();
        }
    }

    /// Fetches the signer's orchestrator list and adds the orchestrators it names that the
    /// registry does not (removing those it no longer names).
    pub(super) fn fetch_signer(&mut self, ctx: &mut Context<Self>) {
        let Some(signer) = self.settings.signer_discovery.clone() else { return };
        self.signer_fetching = true;
        let client = self.client.clone();
        let (timeout, limit) = (self.settings.timeout, self.settings.max_document_bytes);
        let url = format!("{}/discover-orchestrators", signer.url);
        let origin = signer.url.clone();
        let headers = signer.headers.clone();
        let fut = async move { fetch_addresses(&client, &url, &origin, headers.pairs(), timeout, limit).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.signer_fetching = false;
            match res {
                Ok(addresses) => {
                    metrics::counter!(crate::metrics::RUNNER_DISCOVERY_TOTAL, "result" => "signer-ok").increment(1);
                    act.apply_signer(addresses, ctx);
                }
                Err(e) => {
                    metrics::counter!(crate::metrics::RUNNER_DISCOVERY_TOTAL, "result" => "signer-failed").increment(1);
                    // Its orchestrators are kept: a signer that fails says nothing about them.
                    tracing::warn!(error = %e, "remote signer discovery failed; the orchestrators it listed are kept");
                }
            }
        }));
    }

    fn apply_signer(&mut self, addresses: Vec<String>, ctx: &mut Context<Self>) {
        let registered: std::collections::HashSet<String> =
            self.targets.values().filter(|t| t.source == TargetSource::Registry).map(|t| t.url.clone()).collect();
        let wanted: std::collections::HashSet<String> =
            addresses.into_iter().filter(|a| !registered.contains(a)).take(MAX_SIGNER_TARGETS).collect();
        for url in &wanted {
            if !self.signer_ids.contains_key(url) {
                let id = OrchestratorId(Arc::from(format!("signer-{}", self.next_signer_id)));
                self.next_signer_id += 1;
                tracing::info!(orchestrator = %id, %url, "orchestrator found by the remote signer");
                self.signer_ids.insert(url.clone(), id.clone());
                self.add_target(id, url.clone(), TargetSource::Signer, true, ctx);
            }
        }
        let dropped: Vec<(String, OrchestratorId)> = self
            .signer_ids
            .iter()
            .filter(|(u, _)| !wanted.contains(*u))
            .map(|(u, id)| (u.clone(), id.clone()))
            .collect();
        for (url, id) in dropped {
            self.signer_ids.remove(&url);
            tracing::info!(orchestrator = %id, %url, "no longer listed by the remote signer");
            self.remove_target(&id);
        }
    }
}

/// Most orchestrators taken from a signer's list.
const MAX_SIGNER_TARGETS: usize = 1024;

/// The orchestrator addresses (normalised origins) of a signer's discovery answer.
async fn fetch_addresses(
    client: &awc::Client,
    url: &str,
    origin: &str,
    headers: &[(awc::http::header::HeaderName, awc::http::header::HeaderValue)],
    timeout: Duration,
    limit: usize,
) -> Result<Vec<String>, FetchError> {
    let doc = fetch::fetch(client, url, origin, headers, timeout, limit).await?;
    Ok(doc.entries.iter().filter_map(|e| e.address.clone()).filter(|a| record::origin_of(a).is_some()).collect())
}
