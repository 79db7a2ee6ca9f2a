//! How fresh this replica's copy of the registry is: [`Staleness`], a plain state machine
//! (connected, disconnected since when and why, the revision applied), and [`RegistryStatus`],
//! the shared handle that the watch writes and the admin API, `/metrics` and the status page
//! read.
//!
//! A replica whose watch is down keeps routing on the last registry it applied; every read of
//! the registry then says so (`X-Registry-Stale`, `byoc_gateway_registry_stale`, a banner on
//! the status page), and writes are refused until the watch is back.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use super::Backend;
use crate::metrics as m;

/// The registry copy's freshness, as a plain state machine (times are Unix ms, given by the
/// caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staleness {
    /// Whether the copy follows the shared registry (watch established and caught up).
    connected: bool,
    /// Since when `connected` has had its value.
    since_unix_ms: u64,
    /// Why it is not connected.
    error: Option<String>,
    /// Whether the copy came from this replica's local cache (it started while etcd was
    /// unreachable) and has not been replaced by a load from etcd yet.
    from_cache: bool,
    /// The registry revision applied (`None`: sled, or nothing written yet).
    revision: Option<i64>,
}

impl Staleness {
    /// A copy loaded from the shared registry at `now`.
    pub fn fresh(now_unix_ms: u64, revision: Option<i64>) -> Self {
        Self { connected: true, since_unix_ms: now_unix_ms, error: None, from_cache: false, revision }
    }

    /// A copy taken from the local cache because the shared registry was unreachable.
    pub fn from_cache(now_unix_ms: u64, revision: Option<i64>, error: String) -> Self {
        Self { connected: false, since_unix_ms: now_unix_ms, error: Some(error), from_cache: true, revision }
    }

    /// The watch is established (and the copy resynced if it had to be).
    pub fn connected(&mut self, now_unix_ms: u64) {
        if !self.connected {
            self.connected = true;
            self.since_unix_ms = now_unix_ms;
        }
        self.error = None;
        self.from_cache = false;
    }

    /// The watch broke; the first failure sets the time the copy went stale, later ones only
    /// the reason.
    pub fn disconnected(&mut self, now_unix_ms: u64, error: String) {
        if self.connected {
            self.connected = false;
            self.since_unix_ms = now_unix_ms;
        }
        self.error = Some(error);
    }

    /// A revision was applied.
    pub fn applied(&mut self, revision: i64) {
        self.revision = Some(self.revision.map_or(revision, |r| r.max(revision)));
    }

    /// Whether a read of the copy may miss changes made on other replicas.
    pub fn stale(&self) -> bool {
        !self.connected || self.from_cache
    }

    /// Whether writes may be sent (otherwise they are refused as not applied at once).
    pub fn writable(&self) -> bool {
        self.connected
    }

    /// The revision applied.
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// What the admin API shows.
    pub fn report(&self, backend: Backend, now_unix_ms: u64) -> StatusReport {
        let stale = self.stale();
        StatusReport {
            backend,
            revision: self.revision,
            stale,
            stale_since_unix_ms: stale.then_some(self.since_unix_ms),
            stale_seconds: stale.then(|| now_unix_ms.saturating_sub(self.since_unix_ms) / 1000),
            from_cache: self.from_cache,
            error: self.error.clone(),
        }
    }
}

/// The registry's freshness as the admin API, the metrics and the status page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    /// `sled` or `etcd`.
    pub backend: Backend,
    /// The registry revision applied (etcd only).
    pub revision: Option<i64>,
    /// The copy may miss changes made on other replicas (etcd unreachable, or started from
    /// the local cache): routing goes on with it, writes are refused.
    pub stale: bool,
    /// Since when (Unix ms).
    pub stale_since_unix_ms: Option<u64>,
    /// For how long, in seconds.
    pub stale_seconds: Option<u64>,
    /// The copy came from this replica's local cache at start.
    pub from_cache: bool,
    /// Why etcd cannot be used.
    pub error: Option<String>,
}

impl StatusReport {
    /// The `X-Registry-Stale` header value of a stale read: how long and why.
    pub fn stale_header(&self) -> Option<String> {
        if !self.stale {
            return None;
        }
        let why = self.error.as_deref().unwrap_or("not connected");
        let why: String = why.chars().filter(|c| !c.is_control()).take(200).collect();
        Some(format!("{}s; {why}", self.stale_seconds.unwrap_or(0)))
    }
}

/// The shared handle: the etcd watch and the supervisor write it, readers take a report.
#[derive(Clone)]
pub struct RegistryStatus {
    backend: Backend,
    inner: Arc<Mutex<Staleness>>,
}

impl RegistryStatus {
    /// A status for `backend` starting as `state`.
    pub fn new(backend: Backend, state: Staleness) -> Self {
        let status = Self { backend, inner: Arc::new(Mutex::new(state)) };
        status.publish();
        status
    }

    /// The sled backend's status: always fresh, no revision.
    pub fn sled() -> Self {
        Self::new(Backend::Sled, Staleness::fresh(crate::clock::unix_ms_now(), None))
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Changes the state and publishes the gauges.
    pub fn update(&self, f: impl FnOnce(&mut Staleness)) {
        f(&mut self.inner.lock());
        self.publish();
    }

    /// The state now.
    pub fn get(&self) -> Staleness {
        self.inner.lock().clone()
    }

    /// The report now.
    pub fn report(&self) -> StatusReport {
        self.inner.lock().report(self.backend, crate::clock::unix_ms_now())
    }

    fn publish(&self) {
        let s = self.inner.lock().clone();
        metrics::gauge!(m::REGISTRY_STALE).set(if s.stale() { 1.0 } else { 0.0 });
        if let Some(r) = s.revision() {
            metrics::gauge!(m::REGISTRY_REVISION).set(r as f64);
        }
    }

    /// Refreshes the stale-seconds gauge (once a tick).
    pub fn tick(&self) {
        let r = self.report();
        metrics::gauge!(m::REGISTRY_STALE_SECONDS).set(r.stale_seconds.unwrap_or(0) as f64);
        metrics::gauge!(m::REGISTRY_STALE).set(if r.stale { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_from_the_first_failure_until_connected_again() {
        let mut s = Staleness::fresh(1_000, Some(7));
        assert!(!s.stale() && s.writable());
        s.disconnected(2_000, "connection refused".into());
        s.disconnected(5_000, "still refused".into());
        let r = s.report(Backend::Etcd, 9_500);
        assert!(r.stale && !s.writable());
        assert_eq!((r.stale_since_unix_ms, r.stale_seconds), (Some(2_000), Some(7)), "since the first failure");
        assert_eq!(r.error.as_deref(), Some("still refused"));
        assert_eq!(r.stale_header().as_deref(), Some("7s; still refused"));
        s.applied(9);
        s.applied(8);
        assert_eq!(s.revision(), Some(9), "revisions only grow");
        s.connected(10_000);
        let r = s.report(Backend::Etcd, 11_000);
        assert!(!r.stale && r.error.is_none() && r.stale_header().is_none());
    }

    #[test]
    fn a_copy_from_the_cache_is_stale_until_a_load_replaces_it() {
        let mut s = Staleness::from_cache(0, Some(3), "etcd unreachable".into());
        assert!(s.stale() && !s.writable());
        assert!(s.report(Backend::Etcd, 0).from_cache);
        s.connected(50);
        assert!(!s.stale() && !s.report(Backend::Etcd, 60).from_cache);
    }
}
