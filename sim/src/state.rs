//! The shared state of one simulator: its capabilities (knobs, stats, jobs in flight), what it
//! last received, and the permits that release held jobs and streams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use parking_lot::Mutex;
use serde_json::json;

use crate::knobs::{CapStats, Knobs, LastSeen};

#[derive(Debug)]
pub(crate) struct Capability {
    pub(crate) knobs: Knobs,
    pub(crate) stats: CapStats,
    pub(crate) inflight: Arc<AtomicI64>,
    /// Cold-start jobs (the first `cold_start_jobs`) running now.
    pub(crate) cold: Arc<AtomicI64>,
}

/// Shared state of one simulator.
#[derive(Debug)]
pub struct SimState {
    /// Name echoed in answers (`"sim"` field and `X-Metadata`).
    pub name: String,
    /// `service_addr` advertised in tokens.
    pub service_addr: Mutex<String>,
    /// Where it listens, and whether over TLS (a restart binds the same).
    pub(crate) addr: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) caps: Mutex<BTreeMap<String, Capability>>,
    pub(crate) server: Mutex<Option<ServerHandle>>,
    pub(crate) last: Mutex<LastSeen>,
    pub(crate) last_job: Mutex<Option<ReceivedJob>>,
    /// Permits for held event streams (`sse_hold`), one per stream released.
    pub(crate) sse_release: tokio::sync::Semaphore,
    /// Permits for held jobs (`hold`), one per job released.
    pub(crate) job_release: tokio::sync::Semaphore,
    /// Payments taken (knob `tickets`).
    pub(crate) payments: Mutex<crate::payments::Ledger>,
    /// Answer a token offering capacity for any capability name, served or not (a hostile or
    /// misconfigured orchestrator); jobs for names not served still get a 503.
    pub any_capability: AtomicBool,
    /// Streams and their trickle channels.
    pub(crate) live: crate::live::Live,
    /// The base URL it answers as (`http(s)://addr`).
    pub url: String,
    /// Its Live Runner side (runners, sessions, payments).
    pub(crate) live_runner: Mutex<crate::liverunner::Live>,
    /// Permits for held Live Runner app requests (`hold`), one per request released.
    pub(crate) live_release: tokio::sync::Semaphore,
    /// The Live Runner debit loop runs (started once, survives restarts).
    pub(crate) debit_loop: AtomicBool,
}

/// A job as it arrived at the simulator (one with a valid job header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedJob {
    /// The path after `/process/request/`.
    pub path: String,
    /// The header's capability.
    pub capability: String,
    /// The header's `timeout_seconds`.
    pub timeout_seconds: u64,
    /// The header's `request`.
    pub request: String,
    /// The `Content-Type` received, as is.
    pub content_type: Option<String>,
    /// The body received, as is.
    pub body: bytes::Bytes,
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

impl SimState {
    /// A simulator named `name` listening on `addr` (over TLS when `tls`), advertising
    /// `service_addr` in its tokens, with no capability yet.
    pub(crate) fn new(name: &str, addr: SocketAddr, tls: bool, service_addr: String) -> Self {
        Self {
            name: name.to_string(),
            url: service_addr.clone(),
            live_runner: Mutex::default(),
            live_release: tokio::sync::Semaphore::new(0),
            debit_loop: AtomicBool::new(false),
            service_addr: Mutex::new(service_addr),
            addr,
            tls,
            caps: Mutex::new(BTreeMap::new()),
            server: Mutex::new(None),
            last: Mutex::new(LastSeen::default()),
            last_job: Mutex::new(None),
            sse_release: tokio::sync::Semaphore::new(0),
            job_release: tokio::sync::Semaphore::new(0),
            payments: Mutex::default(),
            any_capability: AtomicBool::new(false),
            live: crate::live::Live::default(),
        }
    }

    /// Current knobs and stats of every capability.
    pub fn report(&self) -> serde_json::Value {
        let caps = self.caps.lock();
        let c: BTreeMap<&String, serde_json::Value> = caps
            .iter()
            .map(|(k, v)| {
                (k, json!({"knobs": v.knobs, "stats": v.stats, "inflight": v.inflight.load(Ordering::Relaxed)}))
            })
            .collect();
        json!({"name": self.name, "service_addr": *self.service_addr.lock(), "capabilities": c,
            "payments": self.payments.lock().stats, "any_capability": self.any_capability.load(Ordering::Relaxed),
            "streams": self.live_stats()})
    }

    /// The last credential and job header received.
    pub fn last(&self) -> LastSeen {
        self.last.lock().clone()
    }

    /// Lets one held event stream (`sse_hold`) go on past its first event.
    pub fn release_sse(&self) {
        self.sse_release.add_permits(1);
    }

    /// Lets `n` held jobs (`hold`) answer; a release given before a job arrives lets it through.
    pub fn release_jobs(&self, n: usize) {
        self.job_release.add_permits(n);
    }

    /// Jobs of `capability` running now (refused ones excluded).
    pub fn inflight(&self, capability: &str) -> i64 {
        self.caps.lock().get(capability).map_or(0, |c| c.inflight.load(Ordering::Relaxed))
    }

    /// The last job received (with a valid job header), whatever it was answered.
    pub fn last_job(&self) -> Option<ReceivedJob> {
        self.last_job.lock().clone()
    }

    /// What the simulator received as payments (knob `tickets`).
    pub fn payment_stats(&self) -> crate::payments::PaymentStats {
        self.payments.lock().stats.clone()
    }

    /// Stats of one capability.
    pub fn stats(&self, capability: &str) -> CapStats {
        self.caps.lock().get(capability).map(|c| c.stats.clone()).unwrap_or_default()
    }

    /// Applies `patch` (a JSON object of knob fields) to one capability, or to all when
    /// `capability` is `None`. Returns an error (and changes nothing) on an invalid patch.
    pub fn patch(&self, capability: Option<&str>, patch: &serde_json::Value) -> Result<(), String> {
        let Some(fields) = patch.as_object() else {
            return Err("knobs must be a JSON object".into());
        };
        let mut caps = self.caps.lock();
        let names: Vec<String> = match capability {
            Some(c) if caps.contains_key(c) => vec![c.to_string()],
            Some(c) => return Err(format!("capability '{c}' is not served here")),
            None => caps.keys().cloned().collect(),
        };
        let mut updated = Vec::new();
        for name in &names {
            let mut v = serde_json::to_value(&caps[name].knobs).map_err(|e| e.to_string())?;
            if let Some(obj) = v.as_object_mut() {
                for (k, val) in fields {
                    obj.insert(k.clone(), val.clone());
                }
            }
            let knobs: Knobs = serde_json::from_value(v).map_err(|e| e.to_string())?;
            knobs.validate()?;
            updated.push((name.clone(), knobs));
        }
        for (name, knobs) in updated {
            if let Some(c) = caps.get_mut(&name) {
                c.knobs = knobs;
            }
        }
        Ok(())
    }

    /// Sets knobs of a capability (adding it if new).
    pub fn set(&self, capability: &str, knobs: Knobs) {
        let mut caps = self.caps.lock();
        match caps.get_mut(capability) {
            Some(c) => c.knobs = knobs,
            None => {
                caps.insert(
                    capability.to_string(),
                    Capability {
                        knobs,
                        stats: CapStats::default(),
                        inflight: Arc::new(AtomicI64::new(0)),
                        cold: Arc::new(AtomicI64::new(0)),
                    },
                );
            }
        }
    }

    /// The base URL its Live Runner routes answer for (the `address` knob, or its own).
    pub(crate) fn runner_service(&self) -> String {
        self.live_runner.lock().knobs.address.clone().unwrap_or_else(|| self.url.clone())
    }

    /// Adds (or replaces) a Live Runner runner.
    pub fn add_runner(&self, spec: crate::liverunner::RunnerSpec) {
        self.live_runner.lock().set_runner(spec);
    }

    /// Changes the orchestrator's Live Runner knobs.
    pub fn set_runner_knobs(&self, knobs: crate::liverunner::LiveKnobs) {
        let mut live = self.live_runner.lock();
        let enabled = live.knobs.enabled || knobs.enabled;
        live.knobs = crate::liverunner::LiveKnobs { enabled, ..knobs };
    }

    /// The orchestrator's Live Runner knobs.
    pub fn runner_knobs(&self) -> crate::liverunner::LiveKnobs {
        self.live_runner.lock().knobs.clone()
    }

    /// What its Live Runner side counted.
    pub fn runner_stats(&self) -> crate::liverunner::LiveRunnerStats {
        self.live_runner.lock().stats.clone()
    }

    /// Live sessions (and single-shot reservations) of runner `route`.
    pub fn runner_sessions(&self, route: &str) -> Vec<String> {
        self.live_runner.lock().runners.get(route).map(|r| r.sessions.keys().cloned().collect()).unwrap_or_default()
    }

    /// Its Live Runner state as JSON (`GET /sim/live`).
    pub fn runner_report(&self) -> serde_json::Value {
        self.live_runner.lock().report()
    }

    /// Releases session `id` of runner `route` (the runner stopped it, or its health failed).
    pub fn release_runner_session(&self, route: &str, id: &str) -> bool {
        self.live_runner.lock().release(route, id)
    }

    /// Lets `n` held app requests (`hold`) answer.
    pub fn release_runner_requests(&self, n: usize) {
        self.live_release.add_permits(n);
    }

    /// Stops listening (a crash as the gateway sees it: connections refused).
    pub async fn crash(&self) {
        let handle = self.server.lock().take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }
}

/// Decrements the in-flight count when the job ends, however it ends (including a client
/// that hangs up on a hanging job).
pub(crate) struct InflightGuard(pub(crate) Arc<AtomicI64>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SimState {
        let s = SimState::new("t", SocketAddr::from(([127, 0, 0, 1], 0)), false, String::new());
        s.set("a", Knobs::default());
        s.set("b", Knobs::default());
        s
    }

    #[test]
    fn patch_changes_one_or_all_and_rejects_bad_fields_atomically() {
        let s = state();
        s.patch(Some("a"), &json!({"error_rate": 1.0})).expect("ok");
        assert_eq!(s.caps.lock()["a"].knobs.error_rate, 1.0);
        assert_eq!(s.caps.lock()["b"].knobs.error_rate, 0.0);
        s.patch(None, &json!({"latency_ms": 7})).expect("ok");
        assert_eq!(s.caps.lock()["b"].knobs.latency_ms, 7);
        assert!(s.patch(None, &json!({"nonsense": 1})).is_err());
        assert!(s.patch(None, &json!({"latency_ms": "slow"})).is_err());
        assert!(s.patch(Some("zzz"), &json!({})).is_err());
        assert_eq!(s.caps.lock()["a"].knobs.latency_ms, 7);
    }
}
