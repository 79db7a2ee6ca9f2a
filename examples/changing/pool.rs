//! The changing pool of `bench/changing.sh`: seven simulated orchestrators of different sizes and
//! speeds that refuse jobs past their capacity, and a schedule that changes the pool while the
//! load runs (an orchestrator joining late, one flapping 500s in 4-second windows, one whose
//! latency jumps 30x for 10 s as a model is evicted and reloaded).
//!
//! The same schedule is replayed for every target and also read by the oracle (`oracle.rs`), so
//! both see one pool: [`Timeline`] says, for each member and each instant, whether it is up,
//! whether it answers well, and how long a job started then takes.

use std::net::TcpListener;
use std::time::Duration;

use byoc_sim::{self as sim, Knobs, OverCapacity, SimHandle};
use serde_json::{json, Value};

/// The capability every job asks for.
pub const CAPABILITY: &str = "bench";

/// One simulated orchestrator of the pool.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// What it stands for.
    pub name: &'static str,
    /// Concurrent jobs it has room for (a 503 past them).
    pub slots: i64,
    /// Time to answer a job while healthy, before jitter.
    pub latency_ms: u64,
}

impl Member {
    /// Extra time per job, uniform in `[0, jitter_ms]` (about 20 %).
    pub fn jitter_ms(&self) -> u64 {
        self.latency_ms / 5
    }

    /// Mean time of a job while healthy.
    pub fn mean_ms(&self) -> f64 {
        self.latency_ms as f64 + self.jitter_ms() as f64 / 2.0
    }
}

/// Latency of the `evicting` member while its model is evicted.
pub const EVICTED_MS: u64 = 1500;

/// The pool. Sizes and speeds differ, as GPUs do; the total is [`full_capacity`].
pub const MEMBERS: [Member; 7] = [
    Member { name: "big", slots: 8, latency_ms: 80 },
    Member { name: "small", slots: 2, latency_ms: 50 },
    Member { name: "medium", slots: 6, latency_ms: 150 },
    Member { name: "slow", slots: 6, latency_ms: 300 },
    // 500s in alternate 4-second windows.
    Member { name: "flapping", slots: 4, latency_ms: 60 },
    // Its latency jumps to EVICTED_MS for 10 s (a model evicted and reloaded).
    Member { name: "evicting", slots: 6, latency_ms: 50 },
    // Down (connections refused) until 15 s into the run.
    Member { name: "late", slots: 4, latency_ms: 70 },
];

/// Jobs per second the whole pool completes when every member is healthy.
pub fn full_capacity() -> f64 {
    MEMBERS.iter().map(|m| m.slots as f64 * 1000.0 / m.mean_ms()).sum()
}

/// A change to one member.
#[derive(Debug, Clone)]
pub enum Action {
    /// Knob changes (`POST /sim/knobs`).
    Patch(Value),
    /// Starts listening (the late member comes up).
    Up,
}

/// The schedule for a run of `length` (times written for 40 s and scaled): (when, member, what).
pub fn schedule(length: Duration) -> Vec<(Duration, &'static str, Action)> {
    let at = |s: f64| length.mul_f64(s / 40.0);
    let mut events = vec![
        (at(12.0), "evicting", Action::Patch(json!({"latency_ms": EVICTED_MS, "jitter_ms": 0}))),
        (at(15.0), "late", Action::Up),
        (at(22.0), "evicting", Action::Patch(json!({"latency_ms": 50, "jitter_ms": 10}))),
    ];
    let mut t = 4.0;
    while t < 40.0 {
        events.push((at(t), "flapping", Action::Patch(json!({"error_rate": 1.0}))));
        events.push((at(t + 4.0), "flapping", Action::Patch(json!({"error_rate": 0.0}))));
        t += 8.0;
    }
    events.sort_by_key(|(when, _, _)| *when);
    events
}

/// When the `late` member comes up, from the start of the run.
pub fn late_joins_at(length: Duration) -> Duration {
    schedule(length)
        .into_iter()
        .find(|(_, name, a)| *name == "late" && matches!(a, Action::Up))
        .map_or(Duration::ZERO, |(t, _, _)| t)
}

/// What one member is at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberState {
    /// Listening.
    pub up: bool,
    /// Answering jobs well (not in a window of 500s).
    pub healthy: bool,
    /// Time a job started now takes, before jitter.
    pub latency_ms: u64,
    /// Jitter of such a job.
    pub jitter_ms: u64,
}

/// Each member's states over the run, from the schedule.
pub struct Timeline {
    /// Per member (in [`MEMBERS`] order): the state from each instant on.
    changes: Vec<Vec<(Duration, MemberState)>>,
}

impl Timeline {
    /// The pool's states over a run of `length`.
    pub fn new(length: Duration) -> Self {
        let mut changes: Vec<Vec<(Duration, MemberState)>> = MEMBERS
            .iter()
            .map(|m| {
                let s = MemberState {
                    up: m.name != "late",
                    healthy: true,
                    latency_ms: m.latency_ms,
                    jitter_ms: m.jitter_ms(),
                };
                vec![(Duration::ZERO, s)]
            })
            .collect();
        for (at, name, action) in schedule(length) {
            let Some(i) = MEMBERS.iter().position(|m| m.name == name) else { continue };
            let mut s = changes[i].last().map(|(_, s)| *s).unwrap_or(changes[i][0].1);
            match action {
                Action::Up => s.up = true,
                Action::Patch(p) => {
                    if let Some(r) = p["error_rate"].as_f64() {
                        s.healthy = r < 1.0;
                    }
                    if let Some(l) = p["latency_ms"].as_u64() {
                        s.latency_ms = l;
                    }
                    if let Some(j) = p["jitter_ms"].as_u64() {
                        s.jitter_ms = j;
                    }
                }
            }
            changes[i].push((at, s));
        }
        Self { changes }
    }

    /// Member `i`'s state at `t`.
    pub fn at(&self, i: usize, t: Duration) -> MemberState {
        let c = &self.changes[i];
        let k = c.partition_point(|(from, _)| *from <= t);
        c[k.saturating_sub(1)].1
    }

    /// Jobs per second the members up and healthy at `t` complete.
    pub fn capacity_at(&self, t: Duration) -> f64 {
        (0..MEMBERS.len())
            .map(|i| {
                let s = self.at(i, t);
                if s.up && s.healthy {
                    MEMBERS[i].slots as f64 * 1000.0 / (s.latency_ms as f64 + s.jitter_ms as f64 / 2.0)
                } else {
                    0.0
                }
            })
            .sum()
    }
}

/// A running pool.
pub struct Pool {
    /// The members, in [`MEMBERS`] order, with their simulators.
    pub sims: Vec<(&'static str, SimHandle)>,
}

impl Pool {
    /// Starts a fresh pool on free loopback ports; the late member is stopped at once (its
    /// address is known, nothing listens there until the schedule brings it up).
    pub async fn start() -> std::io::Result<Self> {
        let mut sims = Vec::new();
        for m in MEMBERS {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let knobs = Knobs {
                latency_ms: m.latency_ms,
                jitter_ms: m.jitter_ms(),
                capacity: m.slots,
                over_capacity: OverCapacity::Refuse,
                ..Knobs::default()
            };
            let handle = sim::start(m.name, listener, &[(CAPABILITY, knobs)])?;
            if m.name == "late" {
                handle.stop().await;
            }
            sims.push((m.name, handle));
        }
        Ok(Self { sims })
    }

    /// The simulator of `name`.
    pub fn sim(&self, name: &str) -> Option<&SimHandle> {
        self.sims.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// Stops every simulator.
    pub async fn stop(&self) {
        for (_, s) in &self.sims {
            s.stop().await;
        }
    }

    /// Per member: its stats now.
    pub fn stats(&self) -> Vec<(&'static str, byoc_sim::CapStats)> {
        self.sims.iter().map(|(n, s)| (*n, s.state.stats(CAPABILITY))).collect()
    }

    /// Replays the schedule over `length` from now.
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
                Action::Up => {
                    if let Err(e) = sim.restart() {
                        eprintln!("schedule: {name} did not come up: {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_follows_the_schedule() {
        let t = Timeline::new(Duration::from_secs(40));
        let late = MEMBERS.iter().position(|m| m.name == "late").unwrap_or(0);
        let flapping = MEMBERS.iter().position(|m| m.name == "flapping").unwrap_or(0);
        let evicting = MEMBERS.iter().position(|m| m.name == "evicting").unwrap_or(0);
        assert!(!t.at(late, Duration::from_secs(14)).up);
        assert!(t.at(late, Duration::from_secs(15)).up);
        assert!(t.at(flapping, Duration::from_secs(3)).healthy);
        assert!(!t.at(flapping, Duration::from_secs(5)).healthy);
        assert!(t.at(flapping, Duration::from_secs(9)).healthy);
        assert_eq!(t.at(evicting, Duration::from_secs(13)).latency_ms, EVICTED_MS);
        assert_eq!(t.at(evicting, Duration::from_secs(23)).latency_ms, 50);
        assert!(t.capacity_at(Duration::from_secs(1)) < full_capacity());
    }
}
