//! Who offers what. A pair exists for what an orchestrator declares or has been seen to offer;
//! every other (orchestrator, registered capability) is asked about by a survey: the pair is
//! started off the dispatcher's board, makes its first token probe, and goes on the board if
//! the token offered capacity, or is retired if not. This keeps the number of pairs near the
//! number of real offers (an orchestrator declaring nothing still gets pairs for what it
//! offers), where a pair per orchestrator per capability grew as their product.
//!
//! Surveys walk every capability and orchestrator in passes (a pass starts at most every
//! [`PASS_INTERVAL`], so an orchestrator that starts offering something, or was full when
//! asked, is found again). A hot-added orchestrator and a newly registered capability are
//! asked about first. The probes come out of the budget of discovery probes
//! (`routing.discovery_probes_per_sec`), at most [`IN_FLIGHT_MAX`] run at once, and each walk
//! step examines a bounded number of keys, so probe rate, memory and the supervisor's time
//! stay bounded whatever the registry's size.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Supervisor;
use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorId};
use crate::pair::{GetView, PairKey};

/// Shortest time between the starts of two survey passes.
pub(super) const PASS_INTERVAL: Duration = Duration::from_secs(60);
/// Surveys (off-board pairs awaiting their first probe) at most at once.
pub(super) const IN_FLIGHT_MAX: usize = 256;
/// Keys one step examines at most (most have a pair already and are skipped).
const SCAN_MAX: usize = 4096;

/// One walk over a row of the (capability x orchestrator) table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Walk {
    /// Every orchestrator, about one capability; resumes after `after`.
    Capability { cap: Capability, after: Option<OrchestratorId> },
    /// One orchestrator, about every registered capability; resumes after `after`.
    Orchestrator { id: OrchestratorId, after: Option<Capability> },
}

/// The survey's plan: pure, clock-free (callers pass the time), unit-tested.
#[derive(Debug)]
pub(super) struct Survey {
    /// Hot-added orchestrators and newly registered capabilities, asked about first.
    urgent: VecDeque<Walk>,
    /// The current pass: one walk per capability.
    pass: VecDeque<Walk>,
    /// When the next pass may start (`None`: now).
    next_pass: Option<Instant>,
    /// Pairs asked about since start.
    pub(super) asked: u64,
    /// Of those, pairs found offering.
    pub(super) found: u64,
}

impl Survey {
    pub(super) fn new() -> Self {
        Self { urgent: VecDeque::new(), pass: VecDeque::new(), next_pass: None, asked: 0, found: 0 }
    }

    /// Asks about `id` and every registered capability before the pass goes on.
    pub(super) fn orchestrator_added(&mut self, id: OrchestratorId) {
        self.urgent.push_back(Walk::Orchestrator { id, after: None });
    }

    /// Asks every orchestrator about `cap` before the pass goes on.
    pub(super) fn capability_registered(&mut self, cap: Capability) {
        let walk = Walk::Capability { cap, after: None };
        if !self.urgent.contains(&walk) {
            self.urgent.push_back(walk);
        }
    }

    /// Walks still queued (urgent and in the pass).
    pub(super) fn queued(&self) -> usize {
        self.urgent.len() + self.pass.len()
    }

    /// Up to `n` pairs to ask about now: keys of a registered capability and an enabled
    /// orchestrator for which `has_pair` is false, urgent walks first. Starts a pass when the
    /// last one is done and [`PASS_INTERVAL`] has passed since it started.
    pub(super) fn next(
        &mut self,
        n: usize,
        now: Instant,
        orchestrators: &BTreeMap<OrchestratorId, Orchestrator>,
        registered: &BTreeSet<Capability>,
        has_pair: impl Fn(&PairKey) -> bool,
    ) -> Vec<PairKey> {
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        if self.urgent.is_empty() && self.pass.is_empty() && self.next_pass.is_none_or(|t| now >= t) {
            self.pass = registered.iter().map(|cap| Walk::Capability { cap: cap.clone(), after: None }).collect();
            self.next_pass = Some(now + PASS_INTERVAL);
        }
        let mut scanned = 0;
        for queue in [&mut self.urgent, &mut self.pass] {
            while let Some(walk) = queue.front_mut() {
                let done = step(walk, &mut out, n, &mut scanned, orchestrators, registered, &has_pair);
                if done {
                    queue.pop_front();
                }
                if out.len() >= n || scanned >= SCAN_MAX {
                    self.asked += out.len() as u64;
                    return out;
                }
            }
        }
        self.asked += out.len() as u64;
        out
    }
}

/// Advances one walk, pushing the keys to ask about into `out`; true when the walk is done.
fn step(
    walk: &mut Walk,
    out: &mut Vec<PairKey>,
    n: usize,
    scanned: &mut usize,
    orchestrators: &BTreeMap<OrchestratorId, Orchestrator>,
    registered: &BTreeSet<Capability>,
    has_pair: &impl Fn(&PairKey) -> bool,
) -> bool {
    let consider = |key: PairKey, enabled: bool, out: &mut Vec<PairKey>| {
        if enabled && !has_pair(&key) {
            out.push(key);
        }
    };
    match walk {
        Walk::Capability { cap, after } => {
            if !registered.contains(cap) {
                return true;
            }
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            for (id, orch) in orchestrators.range((lower, Bound::Unbounded)) {
                if out.len() >= n || *scanned >= SCAN_MAX {
                    return false;
                }
                *scanned += 1;
                consider(PairKey { orchestrator: id.clone(), capability: cap.clone() }, orch.enabled, out);
                *after = Some(id.clone());
            }
            true
        }
        Walk::Orchestrator { id, after } => {
            let Some(orch) = orchestrators.get(id) else {
                return true;
            };
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            for cap in registered.range((lower, Bound::Unbounded)) {
                if out.len() >= n || *scanned >= SCAN_MAX {
                    return false;
                }
                *scanned += 1;
                consider(PairKey { orchestrator: id.clone(), capability: cap.clone() }, orch.enabled, out);
                *after = Some(cap.clone());
            }
            true
        }
    }
}

impl Supervisor {
    /// Starts as many surveys as the discovery budget and [`IN_FLIGHT_MAX`] allow. Each
    /// settles its pair when the first probe answers (the tick settles any it missed).
    pub(super) fn survey_step(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let room = IN_FLIGHT_MAX.saturating_sub(self.off_board.len());
        let budget = self.name_probes.available(self.discovery_burst(), now).min(room as u64) as usize;
        let pairs = &self.pairs;
        let keys = self.survey.next(budget, now, &self.orchestrators, &self.registered, |k| pairs.contains_key(k));
        if keys.is_empty() {
            return;
        }
        self.name_probes.spend(keys.len() as f64);
        metrics::counter!(crate::metrics::SURVEY_PROBES_TOTAL).increment(keys.len() as u64);
        let wait = self.probe_wait.max(self.settings.token_timeout) + Duration::from_secs(1);
        for key in keys {
            self.spawn_pair(key.clone(), false);
            let Some(entry) = self.pairs.get(&key) else { continue };
            let answered = entry.addr.send(GetView).timeout(wait);
            ctx.spawn(answered.into_actor(self).map(move |_res, act, _ctx| act.decide(&key)));
        }
    }

    /// Decides an off-board pair once it has probed: on the board if its capability is
    /// registered and the orchestrator declares or offers it, otherwise retired. A pair still
    /// waiting for its first probe is left alone unless it has waited too long.
    pub(super) fn decide(&mut self, key: &PairKey) {
        let Some(since) = self.off_board.get(key).copied() else { return };
        let Some(entry) = self.pairs.get(key) else {
            self.off_board.remove(key);
            return;
        };
        let (probed, offered) = {
            let v = entry.view.read();
            (v.probed, v.offered)
        };
        let declared = self.declares(key);
        let registered = self.registered.contains(&key.capability);
        if registered && (declared || offered) {
            if offered && !declared {
                self.survey.found += 1;
                tracing::info!(pair = %key, "survey: the orchestrator offers this capability; pair on the board");
            }
            self.put_on_board(key);
        } else if probed || since.elapsed() > self.probe_wait.max(self.settings.token_timeout) * 4 {
            self.remove_pair(key);
        }
    }

    /// Settles every off-board pair (the tick's safety net for surveys whose answer was lost).
    pub(super) fn decide_off_board(&mut self) {
        let keys: Vec<PairKey> = self.off_board.keys().cloned().collect();
        for key in &keys {
            self.decide(key);
        }
    }

    /// The most discovery probes saved up: a second's worth, or one per orchestrator (what
    /// probing one capability name costs).
    pub(super) fn discovery_burst(&self) -> f64 {
        self.name_probe_rate.max(self.orchestrators.len() as f64)
    }

    fn declares(&self, key: &PairKey) -> bool {
        self.orchestrators.get(&key.orchestrator).is_some_and(|o| o.capabilities.contains(&key.capability))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Source;

    fn cap(s: &str) -> Capability {
        Capability::new(s).expect("valid")
    }

    fn orchs(n: usize) -> BTreeMap<OrchestratorId, Orchestrator> {
        (0..n)
            .map(|i| {
                let id = OrchestratorId(format!("orch-{i:03}").into());
                let o = Orchestrator {
                    id: id.clone(),
                    url: format!("http://o{i}:1"),
                    capabilities: vec![],
                    added_at: 0,
                    source: Source::Admin,
                    enabled: true,
                };
                (id, o)
            })
            .collect()
    }

    fn keys(v: &[PairKey]) -> Vec<(String, String)> {
        v.iter().map(|k| (k.orchestrator.to_string(), k.capability.to_string())).collect()
    }

    #[test]
    fn a_pass_asks_about_every_key_without_a_pair_once_within_the_budget() {
        let o = orchs(3);
        let reg: BTreeSet<Capability> = [cap("a"), cap("b")].into();
        let has = |k: &PairKey| k.orchestrator.0.as_ref() == "orch-001" && k.capability.as_str() == "a";
        let mut s = Survey::new();
        let t0 = Instant::now();
        let mut all = Vec::new();
        for _ in 0..10 {
            let got = s.next(2, t0, &o, &reg, has);
            assert!(got.len() <= 2, "never more than asked for");
            all.extend(got);
        }
        let want = [("orch-000", "a"), ("orch-002", "a"), ("orch-000", "b"), ("orch-001", "b"), ("orch-002", "b")];
        assert_eq!(keys(&all), want.map(|(o, c)| (o.to_string(), c.to_string())));
        assert_eq!(s.asked, 5);
        // The next pass waits for its interval, then asks again.
        assert!(s.next(10, t0 + PASS_INTERVAL / 2, &o, &reg, has).is_empty());
        assert_eq!(s.next(10, t0 + PASS_INTERVAL, &o, &reg, has).len(), 5);
    }

    #[test]
    fn hot_added_orchestrators_and_new_capabilities_go_before_the_pass() {
        let mut o = orchs(3);
        let reg: BTreeSet<Capability> = [cap("a"), cap("b")].into();
        let none = |_: &PairKey| false;
        let mut s = Survey::new();
        let t0 = Instant::now();
        assert_eq!(s.next(1, t0, &o, &reg, none).len(), 1, "the pass has begun");
        let (new_id, new) = orchs(4).into_iter().next_back().expect("one more");
        o.insert(new_id.clone(), new);
        s.orchestrator_added(new_id);
        let got = s.next(2, t0, &o, &reg, none);
        assert_eq!(keys(&got), vec![("orch-003".into(), "a".into()), ("orch-003".into(), "b".into())]);
        s.capability_registered(cap("b"));
        s.capability_registered(cap("b"));
        assert_eq!(s.queued(), 3, "the pass (a, b) and one urgent walk for b: {s:?}");
        let got = s.next(4, t0, &o, &reg, none);
        assert!(got.iter().all(|k| k.capability.as_str() == "b"), "{got:?}");
    }

    #[test]
    fn a_step_examines_a_bounded_number_of_keys_and_skips_disabled_or_gone_subjects() {
        let mut o = orchs(SCAN_MAX + 10);
        let reg: BTreeSet<Capability> = [cap("a")].into();
        let mut s = Survey::new();
        let t0 = Instant::now();
        // Every key has a pair: one step stops after SCAN_MAX keys, the next finishes.
        assert!(s.next(5, t0, &o, &reg, |_| true).is_empty());
        assert_eq!(s.queued(), 1, "the walk resumes where it stopped");
        assert!(s.next(5, t0, &o, &reg, |_| true).is_empty());
        assert_eq!(s.queued(), 0);
        // A disabled orchestrator is not asked; a removed one's walk ends.
        for orch in o.values_mut() {
            orch.enabled = false;
        }
        s.orchestrator_added(OrchestratorId("orch-gone".into()));
        assert!(s.next(5, t0 + PASS_INTERVAL, &o, &reg, |_| false).is_empty());
    }
}
