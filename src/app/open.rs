//! What the gateway starts with: the store opened and reconciled with the configuration, and the
//! capability policies resolved from the config and the store.

use super::*;

/// Opens the store, reconciles the configured orchestrators with it, and forgets the webhook's
/// entries when no webhook is configured any more: the registry and scores the gateway starts
/// with.
pub(super) async fn open_store(v: &Validated) -> anyhow::Result<(Addr<Store>, store::Snapshot)> {
    let cfg = &v.config;
    let data_dir = cfg.data_dir.clone();
    let db = tokio::task::spawn_blocking(move || store::open(&data_dir))
        .await
        .context("store open task")?
        .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?;
    let store = Store::start(db);
    let mut snapshot = store
        .send(ReconcileConfig { entries: v.orchestrators.clone() })
        .await
        .context("store actor")?
        .context("cannot reconcile configured orchestrators with the store")?;
    if v.discovery.is_none() {
        forget_webhook_orchestrators(&store, &mut snapshot).await?;
    }
    tracing::info!(
        orchestrators = snapshot.orchestrators.len(),
        pair_records = snapshot.pairs.len(),
        data_dir = %cfg.data_dir.display(),
        "store opened"
    );
    Ok((store, snapshot))
}

/// The capability policies in force: the config file's, then those set through the admin API
/// (persisted), which win. Also returns the config file's alone (what a reload compares with)
/// and the capabilities to start pairs for eagerly.
pub(super) fn resolve_policies(
    v: &Validated,
    snapshot: &store::Snapshot,
) -> (
    PolicyBook,
    std::collections::HashMap<byoc_actors::capability::Capability, byoc_actors::policy::CapabilityPolicy>,
    Vec<byoc_actors::capability::Capability>,
) {
    let cfg = &v.config;
    // Policies: the config file's, then those set through the admin API (persisted),
    // which win: they are the operator's most recent word.
    let config_policies: std::collections::HashMap<_, _> = v.policies.iter().cloned().collect();
    let mut per_capability = config_policies.clone();
    for (cap, policy) in &snapshot.policies {
        if let Err(e) = policy.validate_with(&cfg.breaker) {
            tracing::error!(capability = %cap, error = %e,
                "the policy stored through the admin API does not fit the current [breaker] table; ignoring it \
                 (fix it with PUT /admin/capabilities/NAME or remove it with DELETE)");
            continue;
        }
        if per_capability.contains_key(cap) {
            tracing::info!(capability = %cap, "policy set through the admin API overrides the config file's");
        }
        per_capability.insert(cap.clone(), policy.clone());
    }
    let eager: Vec<_> = per_capability.keys().cloned().collect();
    let globals = Globals { breaker: cfg.breaker.clone(), queue_depth: cfg.limits.queue_depth };
    let policies = PolicyBook::new(globals, cfg.default_policy.clone(), per_capability);
    (policies, config_policies, eager)
}

/// Without a webhook configured, orchestrators it once listed (persisted with source
/// `webhook`) have nothing left to reconcile them, so they are removed at start, as config
/// entries no longer in the config are.
pub(super) async fn forget_webhook_orchestrators(
    store: &Addr<Store>,
    snapshot: &mut store::Snapshot,
) -> anyhow::Result<()> {
    let stale: Vec<_> =
        snapshot.orchestrators.iter().filter(|o| o.source == Source::Webhook).map(|o| o.id.clone()).collect();
    if stale.is_empty() {
        return Ok(());
    }
    let delta = store
        .send(ApplyWebhook { add: Vec::new(), relabel: Vec::new(), remove: stale })
        .await
        .context("store actor")?
        .context("cannot remove the orchestrators of a webhook no longer configured")?;
    let gone: std::collections::HashSet<_> = delta.removed.iter().map(|o| o.id.clone()).collect();
    snapshot.orchestrators.retain(|o| !gone.contains(&o.id));
    snapshot.pairs.retain(|p| !gone.contains(&p.orchestrator));
    tracing::warn!(removed = ?delta.removed.iter().map(|o| &o.url).collect::<Vec<_>>(),
        "no discovery webhook configured: orchestrators a webhook had listed were removed");
    Ok(())
}
