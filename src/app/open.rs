//! What the gateway starts with: the store opened and reconciled with the configuration, and the
//! capability policies resolved from the config and the store.

use std::collections::BTreeMap;

use byoc_actors::pair::PairKey;
use byoc_actors::registry::etcd::{EtcdRegistry, EtcdSettings};
use byoc_actors::registry::sled::SledRegistry;
use byoc_actors::registry::{Backend, Forced, Registry, RegistryStatus, Staleness};
use byoc_actors::store::{GetMirror, Load, MirrorRegistry};

use super::*;

/// What the gateway starts from: the store, the registry backend and its state.
pub(super) struct Opened {
    pub(super) store: Addr<Store>,
    pub(super) snapshot: store::Snapshot,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) status: RegistryStatus,
    /// Forced breaker states of the fleet (etcd).
    pub(super) forced: BTreeMap<PairKey, Forced>,
    /// The etcd backend, and the revision its watch resumes after (`None`: started from the
    /// local copy, the watch resyncs first).
    pub(super) etcd: Option<(EtcdRegistry, Option<i64>)>,
}

/// Opens the store and the registry backend the configuration names.
pub(super) async fn open_registry(v: &Validated) -> anyhow::Result<Opened> {
    let store = open_db(v).await?;
    match &v.etcd {
        None => {
            let snapshot = reconcile_sled(v, &store).await?;
            Ok(Opened {
                registry: Arc::new(SledRegistry::new(store.clone())),
                store,
                snapshot,
                status: RegistryStatus::sled(),
                forced: BTreeMap::new(),
                etcd: None,
            })
        }
        Some(settings) => open_etcd(v, settings.clone(), store).await,
    }
}

async fn open_db(v: &Validated) -> anyhow::Result<Addr<Store>> {
    let cfg = &v.config;
    let data_dir = cfg.data_dir.clone();
    let db = tokio::task::spawn_blocking(move || store::open(&data_dir))
        .await
        .context("store open task")?
        .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?;
    Ok(Store::start(db))
}

/// The sled registry: reconciles the configured orchestrators with the store, and forgets the
/// webhook's entries when no webhook is configured any more.
async fn reconcile_sled(v: &Validated, store: &Addr<Store>) -> anyhow::Result<store::Snapshot> {
    let cfg = &v.config;
    let mut snapshot = store
        .send(ReconcileConfig { entries: v.orchestrators.clone() })
        .await
        .context("store actor")?
        .context("cannot reconcile configured orchestrators with the store")?;
    if v.discovery.is_none() {
        forget_webhook_orchestrators(store, &mut snapshot).await?;
    }
    tracing::info!(
        orchestrators = snapshot.orchestrators.len(),
        pair_records = snapshot.pairs.len(),
        data_dir = %cfg.data_dir.display(),
        "store opened"
    );
    Ok(snapshot)
}

/// The etcd registry: loads the fleet's registry (adding the config file's orchestrators it
/// lacks) and keeps a copy in the data dir. When etcd is unreachable at start, the replica
/// starts from that copy with a loud warning (stale until the watch resyncs), or refuses to
/// start when the data dir holds no copy of this fleet's registry.
async fn open_etcd(v: &Validated, mut settings: EtcdSettings, store: Addr<Store>) -> anyhow::Result<Opened> {
    let data_dir = &v.config.data_dir;
    if settings.replica_id.is_empty() {
        settings.replica_id = replica_id(data_dir)?;
    }
    let prefix = settings.prefix.clone();
    let endpoints = settings.endpoints.join(",");
    let mirror = store
        .send(GetMirror { prefix: Some(prefix.clone()) })
        .await
        .context("store actor")?
        .context("cannot read the store")?;
    let local = store.send(Load).await.context("store actor")?.context("cannot read the store")?;
    let now = unix_ms();
    let status = RegistryStatus::new(Backend::Etcd, Staleness::from_cache(now, None, "connecting to etcd".into()));
    let etcd = EtcdRegistry::start(settings.clone(), Some(store.clone()), status.clone()).context("etcd registry")?;
    let (state, read_at) = match etcd.load().await {
        Ok(loaded) => loaded,
        Err(e) => {
            let Some(m) = mirror.filter(|m| m.prefix == prefix) else {
                etcd.shutdown().await;
                anyhow::bail!(
                    "{e}; this replica has no copy of the fleet's registry (prefix {prefix}) in {} to start from: \
                     start etcd or fix registry.etcd_endpoints, then start the replica again",
                    data_dir.display()
                );
            };
            tracing::error!(error = %e, endpoints = %endpoints, prefix = %prefix, revision = ?m.revision,
                copied_at_unix_ms = m.at_unix_ms, orchestrators = local.orchestrators.len(),
                "ETCD UNREACHABLE AT START: routing from this replica's last copy of the fleet's registry, which may \
                 be out of date; registry writes are refused and reads are marked stale until etcd answers");
            status.update(|s| {
                *s = Staleness::from_cache(now, m.revision, e.to_string());
            });
            return Ok(Opened {
                registry: Arc::new(etcd.clone()),
                store,
                snapshot: local,
                status,
                forced: BTreeMap::new(),
                etcd: Some((etcd, None)),
            });
        }
    };
    if mirror.is_none()
        && (!local.orchestrators.is_empty() || !local.policies.is_empty())
        && state.orchestrators.is_empty()
        && state.policies.is_empty()
    {
        etcd.shutdown().await;
        anyhow::bail!(
            "{} holds a registry of its own ({} orchestrators, {} policies) and the fleet's registry (etcd {endpoints}, \
             prefix {prefix}) is empty: move it into etcd first (byoc-gateway store export FILE --data-dir {0}, then \
             byoc-gateway store import FILE --registry-backend etcd --etcd-endpoints {endpoints}), or start this \
             replica with an empty data dir",
            data_dir.display(),
            local.orchestrators.len(),
            local.policies.len()
        );
    }
    status.update(|s| {
        s.connected(unix_ms());
        if let Some(r) = state.revision {
            s.applied(r);
        }
    });
    // The config file's orchestrators join the fleet's registry (none is removed: other
    // replicas' files may list others), and a label the file gives is set on its entry.
    let (state, read_at) = if v.orchestrators.is_empty() {
        (state, read_at)
    } else {
        let missing: Vec<_> =
            v.orchestrators
                .iter()
                .filter(|l| {
                    !state.orchestrators.values().any(|o| {
                        o.url == l.url && (l.label.is_none() || o.label == l.label || o.source == Source::Admin)
                    })
                })
                .cloned()
                .collect();
        if missing.is_empty() {
            (state, read_at)
        } else {
            etcd.reconcile_config(missing)
                .await
                .map_err(|e| anyhow::anyhow!("adding the configured orchestrators to etcd: {e}"))?;
            etcd.load().await.context("reading the registry after adding the configured orchestrators")?
        }
    };
    if let Some(r) = state.revision {
        status.update(|s| s.applied(r));
    }
    store
        .send(MirrorRegistry { state: state.copy() })
        .await
        .context("store actor")?
        .context("cannot write the local copy of the fleet's registry")?;
    let now = unix_ms();
    let forced = state.forced.iter().filter(|(_, f)| f.holds_at(now)).map(|(k, f)| (k.clone(), *f)).collect();
    tracing::info!(endpoints = %endpoints, prefix = %prefix, replica = %settings.replica_id, revision = ?state.revision,
        orchestrators = state.orchestrators.len(), policies = state.policies.len(), pair_records = local.pairs.len(),
        "fleet registry loaded from etcd");
    let snapshot = store::Snapshot {
        orchestrators: state.orchestrators.into_values().collect(),
        pairs: local.pairs,
        policies: state.policies.into_iter().collect(),
    };
    Ok(Opened { registry: Arc::new(etcd.clone()), store, snapshot, status, forced, etcd: Some((etcd, Some(read_at))) })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// This data dir's replica id: generated once (`replica-` and 12 hex digits) and kept in
/// `DATA_DIR/replica-id`, so a replica keeps its id across restarts.
fn replica_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        crate::config::check_replica_id(&id).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(id);
    }
    let id = format!("replica-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    std::fs::write(&path, format!("{id}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
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
