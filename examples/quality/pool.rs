//! The orchestrator pool of the routing-quality benchmark and its fault schedule.
//!
//! Every target (byoc-gateway, HAProxy, nginx) gets a fresh pool with the same knobs, and the
//! same schedule replayed from the moment its load starts, so the runs differ only in the
//! proxy in front.

use std::net::TcpListener;
use std::time::Duration;

use byoc_sim::{self as sim, Knobs, OverCapacity, SimHandle};
use serde_json::{json, Value};

/// The capability every job asks for.
pub const CAPABILITY: &str = "bench";
/// Concurrent jobs each orchestrator has room for.
pub const CAPACITY: i64 = 6;

/// One simulated orchestrator of the pool.
pub struct Member {
    /// What it stands for (printed with its stats).
    pub name: &'static str,
    /// Its knobs at the start.
    pub knobs: Knobs,
}

/// The pool: healthy orchestrators of three speeds, one shared with other gateways, and four
/// faulty ones. Latencies carry about 20 % jitter.
pub fn members(mode: OverCapacity) -> Vec<Member> {
    let base = |latency_ms: u64| Knobs {
        latency_ms,
        jitter_ms: latency_ms / 5,
        capacity: CAPACITY,
        over_capacity: mode,
        ..Knobs::default()
    };
    vec![
        Member { name: "fast", knobs: base(50) },
        Member { name: "medium", knobs: base(120) },
        Member { name: "slow", knobs: base(700) },
        // Shared with other gateways: `busy_slots` of its slots are taken by them (schedule).
        Member { name: "contended", knobs: base(80) },
        // 500s in alternating 3-second windows.
        Member { name: "flapping", knobs: base(60) },
        // 30 % of jobs answered `500 CUDA out of memory`.
        Member { name: "oom", knobs: Knobs { oom_rate: 0.3, ..base(60) } },
        // Takes jobs and never answers for a 10-second window.
        Member { name: "hang", knobs: base(60) },
        // Crashes (connections refused), comes back after a while with a 2-second cold start.
        Member { name: "crash", knobs: base(60) },
    ]
}

/// A running pool.
pub struct Pool {
    /// The members, in [`members`] order, with their simulators.
    pub sims: Vec<(&'static str, SimHandle)>,
}

impl Pool {
    /// Starts a fresh pool on free loopback ports.
    pub fn start(mode: OverCapacity) -> std::io::Result<Self> {
        let mut sims = Vec::new();
        for m in members(mode) {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            sims.push((m.name, sim::start(m.name, listener, &[(CAPABILITY, m.knobs)])?));
        }
        Ok(Self { sims })
    }

    fn sim(&self, name: &str) -> Option<&SimHandle> {
        self.sims.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// Stops every simulator.
    pub async fn stop(&self) {
        for (_, s) in &self.sims {
            s.stop().await;
        }
    }

    /// Per member: jobs received, answered OK, refused for capacity, most in flight at once.
    pub fn stats(&self) -> Vec<(&'static str, byoc_sim::CapStats)> {
        self.sims.iter().map(|(n, s)| (*n, s.state.stats(CAPABILITY))).collect()
    }

    /// Replays the fault schedule over `length` (times scale with it; written for 30 s).
    pub async fn run_schedule(&self, length: Duration) {
        let started = tokio::time::Instant::now();
        for (at, name, action) in schedule(length) {
            tokio::time::sleep_until(started + at).await;
            let Some(sim) = self.sim(name) else { continue };
            match action {
                Action::Patch(patch) => {
                    if let Err(e) = sim.state.patch(Some(CAPABILITY), &patch) {
                        eprintln!("schedule: {name}: {e}");
                    }
                }
                Action::Crash => sim.stop().await,
                Action::Restart => {
                    // The next job after the restart is a cold start (the model loads again).
                    let next = sim.state.stats(CAPABILITY).jobs + 1;
                    let cold = json!({"cold_start_jobs": next, "cold_start_ms": 2000});
                    if let Err(e) = sim.state.patch(Some(CAPABILITY), &cold) {
                        eprintln!("schedule: {name}: {e}");
                    }
                    if let Err(e) = sim.restart() {
                        eprintln!("schedule: {name} did not come back: {e}");
                    }
                }
            }
        }
    }
}

enum Action {
    Patch(Value),
    Crash,
    Restart,
}

/// The fault schedule: (when, member, what).
fn schedule(length: Duration) -> Vec<(Duration, &'static str, Action)> {
    let at = |s: f64| length.mul_f64(s / 30.0);
    let mut events = vec![
        (at(0.0), "contended", Action::Patch(json!({"busy_slots": 2}))),
        (at(4.0), "contended", Action::Patch(json!({"busy_slots": 6}))),
        (at(5.0), "crash", Action::Crash),
        (at(8.0), "contended", Action::Patch(json!({"busy_slots": 3}))),
        (at(8.0), "hang", Action::Patch(json!({"hang": true}))),
        (at(12.0), "contended", Action::Patch(json!({"busy_slots": 5}))),
        (at(13.0), "crash", Action::Restart),
        (at(16.0), "contended", Action::Patch(json!({"busy_slots": 6}))),
        (at(18.0), "hang", Action::Patch(json!({"hang": false}))),
        (at(20.0), "contended", Action::Patch(json!({"busy_slots": 1}))),
        (at(24.0), "contended", Action::Patch(json!({"busy_slots": 4}))),
        (at(28.0), "contended", Action::Patch(json!({"busy_slots": 0}))),
    ];
    // Flapping: 3 s of 500s, 3 s healthy, from t = 3 s.
    let mut t = 3.0;
    while t < 30.0 {
        events.push((at(t), "flapping", Action::Patch(json!({"error_rate": 1.0}))));
        events.push((at(t + 3.0), "flapping", Action::Patch(json!({"error_rate": 0.0}))));
        t += 6.0;
    }
    events.sort_by_key(|(when, _, _)| *when);
    events
}
