//! The fleet routes: the replicas sharing the registry (`GET /admin/fleet`), how fresh this
//! replica's copy of the registry is (`GET /admin/registry`), and the headers every admin
//! answer carries about it (`X-Registry-Backend`, `X-Registry-Revision`, and
//! `X-Registry-Stale` while the copy may miss other replicas' changes).

use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use byoc_actors::registry::etcd::{EtcdRegistry, ReplicaRecord, ReplicaSource};
use byoc_actors::registry::status::StatusReport;

use super::*;

/// This replica's part in the fleet.
pub struct Fleet {
    /// Its record (the counters are read when it is shown).
    pub record: ReplicaRecord,
    /// Its jobs in flight.
    pub jobs: Arc<crate::http::JobLimit>,
    /// Its live streams.
    pub streams: byoc_actors::stream::Streams,
    /// The etcd backend (`None`: sled, a fleet of one).
    pub etcd: Option<EtcdRegistry>,
    /// The membership lease's TTL (0 with sled).
    pub lease_ttl_seconds: u64,
}

impl Fleet {
    /// What the membership task writes: the record and a reading of the load.
    pub fn source(&self) -> ReplicaSource {
        let (jobs, streams) = (self.jobs.clone(), self.streams.clone());
        ReplicaSource {
            record: self.record.clone(),
            load: Arc::new(move || (jobs.inflight() as u64, streams.live_count() as u64)),
        }
    }

    /// This replica's record now.
    fn me(&self, revision: Option<i64>) -> ReplicaRecord {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        ReplicaRecord {
            uptime_seconds: now.saturating_sub(self.record.started_at_unix_ms) / 1000,
            jobs_in_flight: self.jobs.inflight() as u64,
            streams_in_flight: self.streams.live_count() as u64,
            updated_at_unix_ms: now,
            registry_revision: revision,
            ..self.record.clone()
        }
    }
}

/// `GET /admin/fleet`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct FleetReport {
    /// The membership lease's TTL: a replica that dies leaves the list within it.
    pub lease_ttl_seconds: u64,
    /// The replicas registered now, by id (with sled: this gateway alone).
    pub replicas: Vec<ReplicaRecord>,
}

/// The replicas sharing this registry, as etcd lists them now (each renews its record every
/// third of the lease TTL). While etcd does not answer, the list last read, marked stale.
#[utoipa::path(tag = "operations", responses((status = 200, body = FleetReport), (status = 401, body = ErrorBody)))]
#[get("/fleet")]
pub(super) async fn fleet(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let f = &state.fleet;
    let revision = state.registry.get().revision();
    let (replicas, fresh) = match &f.etcd {
        Some(etcd) => etcd.replicas().await,
        None => (vec![f.me(revision)], true),
    };
    let mut resp = HttpResponse::Ok();
    if !fresh {
        resp.insert_header(("X-Fleet-Stale", "etcd did not answer: the replicas as last listed"));
    }
    Ok(resp.json(FleetReport { lease_ttl_seconds: f.lease_ttl_seconds, replicas }))
}

/// How fresh this replica's copy of the registry is: backend, revision applied, whether it is
/// stale (etcd unreachable or started from the local copy), since when and why.
#[utoipa::path(tag = "operations", responses((status = 200, body = StatusReport), (status = 401, body = ErrorBody)))]
#[get("/registry")]
pub(super) async fn registry_status(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.registry.report()))
}

/// Adds the registry headers to every admin answer.
pub(super) async fn registry_headers(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let status = req.app_data::<web::Data<AdminState>>().map(|s| s.registry.clone());
    let mut res = next.call(req).await?;
    // Read after the call: a write's answer carries the revision it was applied at.
    if let Some(r) = status.map(|s| s.report()) {
        let headers = res.headers_mut();
        headers.insert(HeaderName::from_static("x-registry-backend"), HeaderValue::from_static(r.backend.as_str()));
        if let Some(rev) = r.revision {
            if let Ok(v) = HeaderValue::from_str(&rev.to_string()) {
                headers.insert(HeaderName::from_static("x-registry-revision"), v);
            }
        }
        if let Some(v) = r.stale_header().and_then(|s| HeaderValue::from_str(&s).ok()) {
            headers.insert(HeaderName::from_static("x-registry-stale"), v);
        }
    }
    Ok(res)
}
