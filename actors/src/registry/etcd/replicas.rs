//! Fleet membership: each replica keeps a record of itself under `{prefix}replicas/{id}`,
//! attached to a lease it keeps alive. A replica that stops cleanly revokes its lease (it
//! disappears at once); one that dies stops renewing, and etcd removes its record when the
//! lease's TTL runs out. The record is rewritten at every renewal with the jobs and streams
//! in flight, so `GET /admin/fleet` shows each replica's load as of at most a third of the TTL
//! ago.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use serde::{Deserialize, Serialize};

use super::keys::decode;
use super::Inner;
use crate::metrics as m;

/// One replica as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaRecord {
    /// The replica's id (`registry.replica_id`, or the one generated for its data dir).
    pub id: String,
    /// Where its public API listens.
    pub http_addr: String,
    /// Where its admin API listens.
    pub admin_addr: String,
    /// The address clients reach it at (`public_url`), used in the URLs of the streams it owns.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Its byoc-gateway version.
    pub version: String,
    /// When it started (Unix ms).
    pub started_at_unix_ms: u64,
    /// Seconds since it started (computed when read).
    #[serde(default)]
    pub uptime_seconds: u64,
    /// Jobs in flight on it at its last renewal.
    pub jobs_in_flight: u64,
    /// Live streams it owns at its last renewal.
    #[serde(default)]
    pub streams_in_flight: u64,
    /// When the record was last written (Unix ms).
    pub updated_at_unix_ms: u64,
    /// The registry revision it had applied then.
    #[serde(default)]
    pub registry_revision: Option<i64>,
}

/// What a replica says about itself: its fixed part, and a reading of its load.
pub struct ReplicaSource {
    /// Id, addresses, version, start time (the counters are filled in at each write).
    pub record: ReplicaRecord,
    /// Jobs and streams in flight now.
    pub load: Arc<dyn Fn() -> (u64, u64) + Send + Sync>,
}

/// Keeps this replica registered until the etcd thread stops.
pub(super) async fn run(inner: Arc<Inner>, source: ReplicaSource) {
    let ttl = inner.settings.lease_ttl.max(Duration::from_secs(2));
    let renew_every = ttl / 3;
    let mut failures = 0u32;
    loop {
        match keep(&inner, &source, ttl, renew_every).await {
            Ok(()) => return,
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %e, "fleet membership lost; registering again when etcd answers");
                }
                tokio::time::sleep(Duration::from_millis(200u64.saturating_mul(1 << failures.min(3)))).await;
            }
        }
    }
}

/// Grants a lease, writes the record under it and renews both until something fails.
async fn keep(inner: &Inner, source: &ReplicaSource, ttl: Duration, every: Duration) -> Result<(), String> {
    let client = inner.client().await.map_err(|e| e.to_string())?;
    let mut leases = client.lease_client();
    let timeout = inner.settings.request_timeout;
    let grant = tokio::time::timeout(timeout, leases.grant(ttl.as_secs() as i64, None))
        .await
        .map_err(|_| "no answer to the lease grant".to_string())?
        .map_err(|e| format!("lease grant failed: {}", super::outcome::describe(&e)))?;
    let lease = grant.id();
    *inner.lease.lock() = Some(lease);
    let (mut keeper, mut stream): (LeaseKeeper, LeaseKeepAliveStream) =
        tokio::time::timeout(timeout, leases.keep_alive(lease))
            .await
            .map_err(|_| "no answer to the lease keep-alive".to_string())?
            .map_err(|e| format!("lease keep-alive failed: {e}"))?;
    let key = inner.keys.replica(&inner.settings.replica_id);
    let mut kv = client.kv_client();
    let mut first = true;
    loop {
        let mut record = source.record.clone();
        let (jobs, streams) = (source.load)();
        record.jobs_in_flight = jobs;
        record.streams_in_flight = streams;
        record.updated_at_unix_ms = crate::clock::unix_ms_now();
        record.registry_revision = inner.status.get().revision();
        let value = serde_json::to_vec(&record).unwrap_or_default();
        tokio::time::timeout(timeout, kv.put(key.clone(), value, Some(PutOptions::new().with_lease(lease))))
            .await
            .map_err(|_| "no answer to the membership write".to_string())?
            .map_err(|e| format!("membership write failed: {}", super::outcome::describe(&e)))?;
        if first {
            tracing::info!(replica = %record.id, lease_ttl_s = ttl.as_secs(), "registered in the fleet");
            first = false;
        }
        if let Ok(list) = tokio::time::timeout(timeout, list(inner)).await.unwrap_or(Err(String::new())) {
            metrics::gauge!(m::FLEET_REPLICAS).set(list.len() as f64);
        }
        tokio::time::sleep(every).await;
        keeper.keep_alive().await.map_err(|e| format!("lease keep-alive failed: {e}"))?;
        let answer = tokio::time::timeout(timeout, stream.message())
            .await
            .map_err(|_| "no answer to the lease keep-alive".to_string())?
            .map_err(|e| format!("lease keep-alive failed: {e}"))?;
        match answer {
            Some(a) if a.ttl() > 0 => {}
            _ => return Err("the lease expired (etcd was out of reach for longer than its TTL)".into()),
        }
    }
}

/// The fleet's replicas as etcd lists them now (uptime computed at read).
pub(super) async fn list(inner: &Inner) -> Result<Vec<ReplicaRecord>, String> {
    let client = inner.client().await.map_err(|e| e.to_string())?;
    let resp = super::read_prefix(&client, inner.keys.replicas()).await.map_err(|e| e.to_string())?;
    let now = crate::clock::unix_ms_now();
    let mut out: Vec<ReplicaRecord> = resp
        .kvs()
        .iter()
        .filter_map(|kv| decode::<ReplicaRecord>(kv.value()).ok())
        .map(|mut r| {
            r.uptime_seconds = now.saturating_sub(r.started_at_unix_ms) / 1000;
            r
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    *inner.last_replicas.lock() = out.clone();
    Ok(out)
}
