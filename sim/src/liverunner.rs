//! The orchestrator side of Live Runner (go-livepeer `server/ai_http.go`,
//! `ai/runner/live_runner.go`, and `livepeer/node`'s dialect): `GET /discovery`, persistent
//! sessions with capacity (`POST /apps/{runner}/session`, `.../stop`, `.../app/...`),
//! single-shot calls (`/apps/{runner}/app/...`), with the runners' apps served in process
//! (echo, Server-Sent Events, WebSocket echo, a held request), and the faults a gateway must
//! survive: a runner gone, capacity full, a slow or failing app, discovery failing or stale.
//! Payments (the 402 challenge, tickets and segment credentials checked as `payments.rs` checks
//! BYOC tickets, the debit loop) are in `liverunner/pay.rs`.
//!
//! Runners are added with [`SimHandle::add_runner`](crate::SimHandle::add_runner) or
//! `POST /sim/live` and changed at runtime the same way.

mod app;
mod discovery;
mod pay;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub(crate) use app::{app_call, session_app};
pub(crate) use discovery::discovery;
pub(crate) use pay::{debit_round, generic_payment, refresh_payment, session_payment};
pub(crate) use session::{reserve, stop};

/// Which orchestrator implementation the simulator answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// go-livepeer master: text errors (`http.Error`), `204` stops (also of unknown sessions),
    /// `503 no capacity available for runner`, protobuf `PaymentResult` after a payment, a 402
    /// challenge only when both payment headers are missing.
    #[default]
    GoLivepeer,
    /// `livepeer/node`: JSON errors (`{"error": "..."}`), `200 {"ok":true}` stops (`404` for
    /// unknown sessions), `409 runner at capacity` (and full runners hidden from discovery),
    /// `price_info` always present (price 0 when unpriced), the challenge JSON after a payment,
    /// `409 runner price changed` when the price moved since the challenge.
    Node,
}

/// What `GET /discovery` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoveryFault {
    /// Answers the runners.
    #[default]
    None,
    /// Answers `500` (a broken discovery, the orchestrator otherwise up).
    Status500,
    /// Never answers (the gateway's fetch times out).
    Hang,
    /// Answers `200` with a body that is not a discovery document.
    Garbage,
    /// Answers `404 live runners are not supported`.
    Unsupported,
}

/// One runner registered at the simulated orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerSpec {
    /// Its id in URLs (`/apps/{route}/...`).
    pub route: String,
    /// The app it serves.
    pub app: String,
    /// `persistent` or `single-shot`.
    pub mode: String,
    /// Sessions (or single-shot calls) it holds at once.
    pub capacity: i64,
    /// Sessions held by other clients (counted against `capacity`).
    pub busy: i64,
    /// Price in wei per `unit`; `None`: unpriced.
    pub price: Option<u64>,
    /// `seconds`, `720p-pixel-seconds` or `fixed`.
    pub unit: String,
    /// GPU name listed.
    pub gpu: String,
    /// Version listed.
    pub version: String,
    /// Time the app takes to answer.
    pub latency_ms: u64,
    /// Extra time, uniform in `[0, jitter_ms]`.
    pub jitter_ms: u64,
    /// Listed in discovery (a runner not ready is not).
    pub listed: bool,
    /// Removed: unlisted, and every request to it answers `404 runner not found`.
    pub gone: bool,
    /// The app answers every request with this status.
    pub status: Option<u16>,
    /// Share of app answers that are `500`.
    pub error_rate: f64,
    /// The app never answers.
    pub hang: bool,
    /// Refuse every reservation for capacity, whatever it holds.
    pub refuse: bool,
}

impl Default for RunnerSpec {
    fn default() -> Self {
        Self {
            route: "runner-1".into(),
            app: "echo".into(),
            mode: "persistent".into(),
            capacity: 2,
            busy: 0,
            price: None,
            unit: "seconds".into(),
            gpu: "NVIDIA L40S".into(),
            version: "1.0.0".into(),
            latency_ms: 0,
            jitter_ms: 0,
            listed: true,
            gone: false,
            status: None,
            error_rate: 0.0,
            hang: false,
            refuse: false,
        }
    }
}

impl RunnerSpec {
    /// A persistent runner `route` of `app`.
    pub fn persistent(route: &str, app: &str, capacity: i64) -> Self {
        Self { route: route.into(), app: app.into(), capacity, ..Self::default() }
    }

    /// A single-shot runner `route` of `app`.
    pub fn single_shot(route: &str, app: &str, capacity: i64) -> Self {
        Self { route: route.into(), app: app.into(), mode: "single-shot".into(), capacity, ..Self::default() }
    }

    pub(crate) fn persistent_mode(&self) -> bool {
        self.mode != "single-shot"
    }
}

/// The orchestrator's Live Runner knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveKnobs {
    /// Live Runner is on (set when a runner is added); off, `/discovery` answers 404 as an
    /// orchestrator without Live Runner does.
    pub enabled: bool,
    /// Which implementation it answers as.
    pub dialect: Dialect,
    /// What `/discovery` does.
    pub discovery: DiscoveryFault,
    /// Priced runners challenge for payment (402) and verify tickets and segment credentials.
    pub tickets: bool,
    /// How often paid metered sessions are debited (go-livepeer's `-livePaymentInterval`).
    pub debit_interval_ms: u64,
    /// Answer discovery with another `address` (and runner URLs there): a service URI.
    pub address: Option<String>,
}

impl Default for LiveKnobs {
    fn default() -> Self {
        Self {
            enabled: false,
            dialect: Dialect::GoLivepeer,
            discovery: DiscoveryFault::None,
            tickets: false,
            debit_interval_ms: 5_000,
            address: None,
        }
    }
}

/// What the simulator counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveRunnerStats {
    /// `/discovery` requests.
    pub discovery: u64,
    /// Reservations granted (sessions and single-shot calls).
    pub reserved: u64,
    /// Sessions stopped by a client.
    pub stopped: u64,
    /// Sessions released by the debit loop for want of balance.
    pub released_unpaid: u64,
    /// Reservations refused for capacity.
    pub refused_capacity: u64,
    /// 402 challenges answered.
    pub challenges: u64,
    /// Payments accepted (reservations and session top-ups).
    pub payments: u64,
    /// Payments refused (tickets, segment credentials).
    pub payments_refused: u64,
    /// Requests served by runners' apps.
    pub app_requests: u64,
    /// `POST /refresh-payment` answered with fresh ticket params.
    pub refreshes: u64,
}

/// One live session (or single-shot reservation).
#[derive(Debug)]
pub(crate) struct SimSession {
    /// A single-shot call's reservation.
    pub(crate) single_shot: bool,
    /// Released (stop, payment, runner gone): in-flight app traffic ends.
    pub(crate) cancel: tokio::sync::watch::Sender<bool>,
    /// Who pays it, when paid.
    pub(crate) payer: Option<String>,
    /// Its price per second (metered) when paid.
    pub(crate) per_second: f64,
    /// When it was last debited.
    pub(crate) debited_at: Instant,
}

/// A runner and its sessions.
#[derive(Debug)]
pub(crate) struct SimRunner {
    pub(crate) spec: RunnerSpec,
    pub(crate) sessions: BTreeMap<String, SimSession>,
}

impl SimRunner {
    /// Reservations held now (its own and other clients').
    pub(crate) fn used(&self) -> i64 {
        self.sessions.len() as i64 + self.spec.busy
    }
}

/// The orchestrator's Live Runner state.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) knobs: LiveKnobs,
    pub(crate) runners: BTreeMap<String, SimRunner>,
    pub(crate) stats: LiveRunnerStats,
    /// Challenges handed out: manifest id -> (runner, payer, price in wei, unit).
    pub(crate) challenges: HashMap<String, pay::Challenge>,
    /// The auth-token secret.
    pub(crate) secret: [u8; 32],
    /// Payments taken, verified as BYOC payments are (`payments.rs`), credited per (payer,
    /// session).
    pub(crate) ledger: crate::payments::Ledger,
}

impl Live {
    /// Adds or replaces a runner (its sessions are kept when it is replaced).
    pub(crate) fn set_runner(&mut self, spec: RunnerSpec) {
        self.knobs.enabled = true;
        if spec.gone {
            // A removed runner's sessions are released.
            if let Some(r) = self.runners.get_mut(&spec.route) {
                for (_, s) in std::mem::take(&mut r.sessions) {
                    let _ = s.cancel.send(true);
                }
            }
        }
        match self.runners.get_mut(&spec.route) {
            Some(r) => r.spec = spec,
            None => {
                self.runners.insert(spec.route.clone(), SimRunner { spec, sessions: BTreeMap::new() });
            }
        }
    }

    /// Releases session `id` of runner `route`; whether it existed.
    pub(crate) fn release(&mut self, route: &str, id: &str) -> bool {
        let Some(r) = self.runners.get_mut(route) else { return false };
        match r.sessions.remove(id) {
            Some(s) => {
                let _ = s.cancel.send(true);
                true
            }
            None => false,
        }
    }

    /// A JSON report of the runners, their sessions and the stats.
    pub(crate) fn report(&self) -> serde_json::Value {
        let runners: BTreeMap<&String, serde_json::Value> = self
            .runners
            .iter()
            .map(|(k, r)| {
                let sessions: BTreeMap<&String, serde_json::Value> = r
                    .sessions
                    .iter()
                    .map(|(id, s)| (id, serde_json::json!({"single_shot": s.single_shot, "paid": s.payer.is_some()})))
                    .collect();
                (k, serde_json::json!({"spec": r.spec, "sessions": sessions, "used": r.used()}))
            })
            .collect();
        serde_json::json!({"knobs": self.knobs, "runners": runners, "stats": self.stats})
    }
}

/// A random session id as go-livepeer makes them (`session_` and random characters).
pub(crate) fn session_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..10).map(|_| CHARS[rand::random::<u8>() as usize % CHARS.len()] as char).collect();
    format!("session_{tail}")
}
