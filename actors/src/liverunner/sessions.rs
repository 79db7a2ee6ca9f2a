//! Sessions the gateway owns. A client's `POST /apps/{app}/session` reserves a session on the
//! best persistent runner; the client gets a gateway id and gateway URLs, never the runner's.
//! The gateway **always releases** the runner's session (`POST {control_url}/stop`): on the
//! client's stop, when the session sat idle past the timeout (no request in flight; a client
//! that died, go-livepeer #4016), at shutdown, and when its runner failed (the client then gets
//! `session-ended` with the reason; sessions hold state, so there is no silent failover).
//!
//! The table is a plain struct ([`SessionTable`], tested alone); [`Sessions`] shares it between
//! workers and does the HTTP of releasing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::pair::SlotGuard;
use crate::scoreboard::Picked;

use super::metrics::AppMetrics;
use super::AppName;

/// Tombstones kept of ended sessions (so a client asking after one learns why it ended).
const ENDED_KEPT: usize = 1024;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// The client (or an operator) stopped it.
    Stopped,
    /// No request for longer than the idle timeout.
    Idle,
    /// The gateway shut down.
    Shutdown,
    /// Its runner failed (gone, unreachable, or it released the session).
    RunnerFailed,
    /// It could not be paid any longer (the remote signer refuses its runner's price).
    PaymentRefused,
}

impl EndReason {
    /// Stable name (metrics, events).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::Idle => "idle",
            EndReason::Shutdown => "shutdown",
            EndReason::RunnerFailed => "runner-failed",
            EndReason::PaymentRefused => "payment-refused",
        }
    }
}

/// What a session is, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// The gateway's session id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The runner (`orchestrator:route`).
    pub runner: String,
    /// The runner's session id.
    pub runner_session: String,
    /// The runner's control URL (released through `{control_url}/stop`).
    pub control_url: String,
    /// Milliseconds since it was reserved.
    pub age_ms: u64,
    /// Milliseconds since its last request ended (0 while one is in flight).
    pub idle_ms: u64,
    /// Requests in flight.
    pub active: u32,
    /// Its payments, when its runner is priced (EV sent, credit left, the manifest).
    pub payment: Option<serde_json::Value>,
}

/// One session's upstream side.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) app: AppName,
    pub(crate) runner: String,
    pub(crate) runner_session: String,
    pub(crate) app_url: String,
    pub(crate) control_url: String,
}

struct Entry<H> {
    up: Upstream,
    created: Instant,
    last_active: Instant,
    active: u32,
    held: H,
}

/// The sessions and the tombstones of ended ones. `H` is what a session holds while it lives
/// (its runner's slot).
pub(crate) struct SessionTable<H> {
    live: HashMap<String, Entry<H>>,
    ended: VecDeque<(String, EndReason)>,
    max: usize,
}

/// The table is full.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full(pub(crate) usize);

impl<H> SessionTable<H> {
    pub(crate) fn new(max: usize) -> Self {
        Self { live: HashMap::new(), ended: VecDeque::new(), max }
    }

    /// Whether one more session fits.
    pub(crate) fn has_room(&self) -> bool {
        self.live.len() < self.max
    }

    /// Adds session `id`.
    pub(crate) fn insert(&mut self, id: String, up: Upstream, held: H, now: Instant) -> Result<(), (Full, H)> {
        if !self.has_room() {
            return Err((Full(self.max), held));
        }
        self.live.insert(id, Entry { up, created: now, last_active: now, active: 0, held });
        Ok(())
    }

    /// A request of session `id` starts: its upstream, or why it has none (`Err(Some(reason))`
    /// for an ended session, `Err(None)` for an unknown one).
    pub(crate) fn begin(&mut self, id: &str) -> Result<Upstream, Option<EndReason>> {
        match self.live.get_mut(id) {
            Some(e) => {
                e.active += 1;
                Ok(e.up.clone())
            }
            None => Err(self.ended.iter().find(|(i, _)| i == id).map(|(_, r)| *r)),
        }
    }

    /// A request of session `id` ended at `now`.
    pub(crate) fn end_request(&mut self, id: &str, now: Instant) {
        if let Some(e) = self.live.get_mut(id) {
            e.active = e.active.saturating_sub(1);
            e.last_active = now;
        }
    }

    /// Sessions idle (no request in flight) for `timeout` or longer at `now`.
    pub(crate) fn idle(&self, now: Instant, timeout: Duration) -> Vec<String> {
        self.live
            .iter()
            .filter(|(_, e)| e.active == 0 && now.saturating_duration_since(e.last_active) >= timeout)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends session `id` for `reason`: its upstream and what it held (`None` when it had ended).
    pub(crate) fn remove(&mut self, id: &str, reason: EndReason) -> Option<(Upstream, H)> {
        let e = self.live.remove(id)?;
        if self.ended.len() >= ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back((id.to_string(), reason));
        Some((e.up, e.held))
    }

    /// Every live session id.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    /// Session `id`'s upstream side.
    pub(crate) fn upstream(&self, id: &str) -> Option<Upstream> {
        self.live.get(id).map(|e| e.up.clone())
    }

    /// What session `id` holds.
    pub(crate) fn held_mut(&mut self, id: &str) -> Option<&mut H> {
        self.live.get_mut(id).map(|e| &mut e.held)
    }

    /// The admin view, sorted by id, with `payment` saying what each holds of payments.
    pub(crate) fn list_with(
        &self,
        now: Instant,
        payment: impl Fn(&H) -> Option<serde_json::Value>,
    ) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .live
            .iter()
            .map(|(id, e)| SessionInfo {
                id: id.clone(),
                app: e.up.app.to_string(),
                runner: e.up.runner.clone(),
                runner_session: e.up.runner_session.clone(),
                control_url: e.up.control_url.clone(),
                age_ms: now.saturating_duration_since(e.created).as_millis() as u64,
                idle_ms: if e.active > 0 { 0 } else { now.saturating_duration_since(e.last_active).as_millis() as u64 },
                active: e.active,
                payment: payment(&e.held),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// What a live session holds: its runner's slot, the pair (to account a failure), its metrics,
/// its payments (a priced runner).
pub(crate) struct Held {
    pub(crate) _guard: SlotGuard,
    pub(crate) picked: Picked,
    pub(crate) metrics: AppMetrics,
    pub(crate) pay: Option<super::pay::LivePay>,
}

impl SessionTable<Held> {
    /// The sessions that pay as they go: id, app and payments.
    pub(crate) fn metered(&self) -> Vec<(String, AppName, super::pay::LivePay)> {
        self.live.iter().filter_map(|(id, e)| e.held.pay.clone().map(|p| (id.clone(), e.up.app.clone(), p))).collect()
    }
}

/// Settings of sessions.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session with no request in flight for this long is released.
    pub idle_timeout: Duration,
    /// Most sessions held at once.
    pub max_sessions: usize,
    /// Bound on a runner's answer to a stop.
    pub stop_timeout: Duration,
    /// How often metered sessions are topped up (the SDK pays every 3 s; go-livepeer debits
    /// every 5 s by default).
    pub payment_interval: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            max_sessions: 10_000,
            stop_timeout: Duration::from_secs(5),
            payment_interval: Duration::from_secs(3),
        }
    }
}

/// The gateway's sessions, shared by every worker and the reaper.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) table: Arc<Mutex<SessionTable<Held>>>,
    pub(crate) settings: Arc<SessionSettings>,
}

impl Sessions {
    /// No sessions yet.
    pub fn new(settings: SessionSettings) -> Self {
        Self { table: Arc::new(Mutex::new(SessionTable::new(settings.max_sessions))), settings: Arc::new(settings) }
    }

    /// The admin view.
    pub fn list(&self) -> Vec<SessionInfo> {
        let now = Instant::now();
        self.table.lock().list_with(now, |h| {
            h.pay.as_ref().map(|p| {
                serde_json::json!({
                    "manifest_id": p.terms.manifest_id,
                    "ev_sent_wei": p.ev_sent.round(),
                    "credit_wei": p.credit_now(now).round(),
                    "wei_per_second": p.per_second,
                    "paid_by": if p.remote.is_some() { "remote-signer" } else { "key" },
                })
            })
        })
    }

    /// Ends session `id` for `reason` and releases it at its runner; `false` when it was not
    /// live.
    pub async fn end(&self, client: &awc::Client, id: &str, reason: EndReason) -> bool {
        let Some((up, held)) = self.table.lock().remove(id, reason) else { return false };
        held.metrics.session_ended(reason.as_str());
        tracing::info!(
            session = id,
            runner = up.runner,
            reason = reason.as_str(),
            "session ended; releasing it at its runner"
        );
        drop(held);
        release(client, &up, self.settings.stop_timeout).await;
        true
    }

    /// Ends every session (gateway shutdown), releasing them at their runners concurrently.
    pub async fn end_all(&self, client: &awc::Client, reason: EndReason) -> usize {
        let ids = self.table.lock().ids();
        let n = ids.len();
        futures_util::future::join_all(ids.iter().map(|id| self.end(client, id, reason))).await;
        n
    }

    /// Releases sessions idle past the timeout, forever (spawned on the system arbiter with
    /// its own client).
    pub async fn reap(self, client: awc::Client) {
        let tick = (self.settings.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let idle = self.table.lock().idle(Instant::now(), self.settings.idle_timeout);
            for id in idle {
                self.end(&client, &id, EndReason::Idle).await;
            }
        }
    }
}

/// `POST {control_url}/stop` at the runner: go-livepeer answers 204 (also for an unknown
/// session), `livepeer/node` `200 {"ok":true}` or 404 for an unknown one; all mean released.
pub(crate) async fn release(client: &awc::Client, up: &Upstream, timeout: Duration) {
    let url = format!("{}/stop", up.control_url.trim_end_matches('/'));
    match client.post(&url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {}
        Ok(r) => tracing::warn!(runner = up.runner, status = r.status().as_u16(), "runner refused a session stop"),
        Err(e) => tracing::warn!(runner = up.runner, error = %e, "session stop did not reach the runner"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: &str) -> Upstream {
        Upstream {
            app: AppName::new("a").expect("valid"),
            runner: "o:r".into(),
            runner_session: id.into(),
            app_url: format!("http://o/apps/r/session/{id}/app"),
            control_url: format!("http://o/apps/r/session/{id}"),
        }
    }

    #[test]
    fn idle_counts_only_without_requests_in_flight_and_ended_sessions_say_why() {
        let t0 = Instant::now();
        let mut t: SessionTable<()> = SessionTable::new(2);
        t.insert("s1".into(), up("r1"), (), t0).expect("room");
        t.insert("s2".into(), up("r2"), (), t0).expect("room");
        assert!(t.insert("s3".into(), up("r3"), (), t0).is_err(), "bounded");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(t.begin("s1").map(|u| u.runner_session), Ok("r1".into()));
        let mut idle = t.idle(later, Duration::from_secs(5));
        idle.sort();
        assert_eq!(idle, vec!["s2".to_string()], "s1 has a request in flight");
        t.end_request("s1", later);
        assert!(t.idle(later + Duration::from_secs(4), Duration::from_secs(5)).contains(&"s2".to_string()));
        assert!(!t.idle(later + Duration::from_secs(4), Duration::from_secs(5)).contains(&"s1".to_string()));
        assert!(t.idle(later + Duration::from_secs(5), Duration::from_secs(5)).contains(&"s1".to_string()));
        assert!(t.remove("s2", EndReason::Idle).is_some());
        assert!(t.remove("s2", EndReason::Stopped).is_none(), "ends once");
        assert_eq!(t.begin("s2").map(|_| ()), Err(Some(EndReason::Idle)));
        assert_eq!(t.begin("nope").map(|_| ()), Err(None));
        assert!(t.has_room());
        assert_eq!(t.list_with(later, |_| None).len(), 1);
    }

    #[test]
    fn tombstones_are_bounded() {
        let t0 = Instant::now();
        let mut t: SessionTable<()> = SessionTable::new(ENDED_KEPT * 2);
        for i in 0..ENDED_KEPT + 10 {
            t.insert(format!("s{i}"), up("r"), (), t0).expect("room");
            t.remove(&format!("s{i}"), EndReason::Stopped);
        }
        assert_eq!(t.ended.len(), ENDED_KEPT);
        assert_eq!(t.begin("s0").map(|_| ()), Err(None), "the oldest tombstone went");
    }
}
